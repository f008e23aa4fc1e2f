#!/usr/bin/env bash
# Builds, once, a Debian unstable chroot holding Oracle MySQL (mysqld, the CLONE plugin, the
# client), cached outside the repo; later runs reuse it. Prints the chroot's path.
set -euo pipefail
dir="${MSA_MYSQL_CHROOT:-/var/cache/mysql-sts-agent/mysql-sid}"
# The test harness bind-mounts each pod's resolv.conf and hosts over these, in a private mount
# namespace; a bind mount needs its target to exist, and debootstrap writes no /etc/hosts.
mount_points=(etc/hosts etc/resolv.conf)
has_mount_points() {
  for file in "${mount_points[@]}"; do [ -e "$1/$file" ] || return 1; done
}
add_mount_points() {
  for file in "${mount_points[@]}"; do [ -e "$1/$file" ] || : >"$1/$file"; done
}
if [ -f "$dir/.mysql-sts-agent-complete" ] && has_mount_points "$dir"; then
  echo "$dir"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "mysql-chroot: run as root (debootstrap needs it)" >&2
  exit 1
fi
if [ -f "$dir/.mysql-sts-agent-complete" ]; then
  # Built before the harness needed them.
  add_mount_points "$dir"
  echo "$dir"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
# Built beside its final place and renamed when whole: an interrupted build is never reused.
partial="$dir.partial"
mkdir -p "$(dirname "$dir")"
if [ -e "$partial" ]; then
  echo "mysql-chroot: removing the unfinished build $partial" >&2
  rm -rf --one-file-system "$partial"
fi
echo "mysql-chroot: building $dir (about a minute)" >&2
debootstrap --variant=minbase --include=mysql-server-core,mysql-client \
  sid "$partial" http://deb.debian.org/debian >"$dir.log" 2>&1 || {
  echo "mysql-chroot: debootstrap failed; last lines of $dir.log:" >&2
  tail -n 20 "$dir.log" >&2
  exit 1
}
test -x "$partial/usr/sbin/mysqld" || {
  echo "mysql-chroot: no /usr/sbin/mysqld in the chroot" >&2
  exit 1
}
chroot "$partial" mysqld --version >&2
add_mount_points "$partial"
touch "$partial/.mysql-sts-agent-complete"
mv "$partial" "$dir"
echo "$dir"
