#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian 12, reusing whatever is already there.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: run as root (network namespaces and database servers need it)" >&2
  exit 1
fi
# util-linux: setpriv and unshare run the pods' containers as their securityContext says.
# strace: the fault suite holds an init between two steps of its clone.
# prometheus: its promtool lints the agents' /metrics in the e2e suite.
# socat, fonts-dejavu-core: the benchmarks' raw pipeline and link, and their plots' text.
# wrk: the benchmarks' probe cost (GET /readyz under load).
# ncat, sysbench: the tutorial's clone channel and the time-to-Ready benchmark's data and writes.
packages=(mariadb-server mariadb-backup dnsmasq iproute2 util-linux curl python3 python3-venv binutils strace prometheus socat fonts-dejavu-core wrk ncat sysbench)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# kubectl builds the manifests (`kubectl kustomize`) for the e2e suite and the deploy checks;
# Debian 12 has no current one, so it must come with the machine (any release since 1.21).
if ! command -v kubectl >/dev/null; then
  echo "deps: kubectl not found: install a kubectl client (1.21 or later)" >&2
  exit 1
fi
if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
