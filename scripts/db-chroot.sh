#!/usr/bin/env bash
# Builds, once, a named Debian chroot that stands for a database image, cached outside the repo;
# later runs reuse it. Prints the chroot's path.
#   mysql-sid       Debian unstable, Oracle MySQL 9.7 (mysqld, the CLONE plugin, the client)
#   mariadb-trixie  Debian 13, MariaDB 11.8 (mariadbd, mariadb-backup, mbstream, the client)
# Usage: scripts/db-chroot.sh NAME   (MSA_MYSQL_CHROOT / MSA_MARIADB_CHROOT move them)
set -euo pipefail
name="${1:?usage: db-chroot.sh mysql-sid|mariadb-trixie}"
cache=/var/cache/mysql-sts-agent
case "$name" in
  mysql-sid)
    suite=sid packages=(mysql-server-core mysql-client) server=mysqld
    dir="${MSA_MYSQL_CHROOT:-$cache/$name}" ;;
  mariadb-trixie)
    suite=trixie packages=(mariadb-server mariadb-backup mariadb-client) server=mariadbd
    dir="${MSA_MARIADB_CHROOT:-$cache/$name}" ;;
  *) echo "db-chroot: unknown chroot $name (mysql-sid, mariadb-trixie)" >&2; exit 2 ;;
esac
# The test harness bind-mounts each pod's resolv.conf and hosts over these, in a private mount
# namespace; a bind mount needs its target to exist, and debootstrap writes no /etc/hosts.
mount_points=(etc/hosts etc/resolv.conf)
marker=.mysql-sts-agent-complete
# As in the official images, mysql is uid and gid 999: pods run as that user.
is_complete() {
  [ -f "$1/$marker" ] || return 1
  for file in "${mount_points[@]}"; do [ -e "$1/$file" ] || return 1; done
  grep -q '^mysql:[^:]*:999:999:' "$1/etc/passwd"
}
if is_complete "$dir"; then
  echo "$dir"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "db-chroot: run as root (debootstrap needs it)" >&2
  exit 1
fi

# This machine's own Debian mirror: the main archive of its apt sources, never -security.
mirror() {
  local uri
  uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    # `deb [options] URI suite...`: the URI is the first field with a scheme.
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {
                if ($i !~ /security/) { print $i; exit } next } }' /etc/apt/sources.list)"
  fi
  [ -n "$uri" ] || { echo "db-chroot: no Debian mirror in this machine's apt sources" >&2; exit 1; }
  echo "$uri"
}

if ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
# Built beside its final place and renamed when whole: an interrupted build is never reused.
partial="$dir.partial"
log="$dir.log"
mkdir -p "$(dirname "$dir")"
if [ -e "$partial" ]; then
  echo "db-chroot: removing the unfinished build $partial" >&2
  rm -rf --one-file-system "$partial"
fi
fail() {
  echo "db-chroot: $1; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}
source_uri="$(mirror)"
echo "db-chroot: building $dir from $source_uri (about a minute)" >&2
debootstrap --variant=minbase "$suite" "$partial" "$source_uri" >"$log" 2>&1 ||
  fail "debootstrap failed"
# The user first, so that the packages keep its ids; no service may start during the build.
# (`&&`, not `set -e`: errexit does not apply left of `||`.)
printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
chmod 755 "$partial/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$partial/etc/resolv.conf"
{
  chroot "$partial" groupadd --system --gid 999 mysql &&
    chroot "$partial" useradd --system --uid 999 --gid 999 --home-dir /nonexistent \
      --shell /usr/sbin/nologin mysql &&
    # /proc for the packages' scripts, in a mount namespace that takes it away on exit. A
    # mirror may serve a Release past its Valid-Until; debootstrap does not check it either.
    unshare --mount --propagation private sh -euc '
      mount -t proc proc "$1/proc"
      chroot "$1" apt-get -q -o Acquire::Check-Valid-Until=false update
      shift
      DEBIAN_FRONTEND=noninteractive chroot "$@"
    ' db-chroot "$partial" "$partial" \
      apt-get install -y -q --no-install-recommends "${packages[@]}" &&
    chroot "$partial" apt-get clean
} >>"$log" 2>&1 || fail "installing ${packages[*]} failed"
rm -rf "$partial/var/lib/apt/lists/"*
: >"$partial/etc/resolv.conf"
for file in "${mount_points[@]}"; do [ -e "$partial/$file" ] || : >"$partial/$file"; done
chroot "$partial" "$server" --version >&2 || fail "no working $server in the chroot"
touch "$partial/$marker"
is_complete "$partial" || fail "the chroot lacks a mount point or a mysql user 999"
# A chroot of an older recipe (e.g. without the mysql user) is replaced whole.
if [ -e "$dir" ]; then
  mv "$dir" "$dir.old"
  rm -rf --one-file-system "$dir.old"
fi
mv "$partial" "$dir"
echo "$dir"
