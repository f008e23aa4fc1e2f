#!/usr/bin/env bash
# cargo deny (advisories, licenses, bans, sources) with deny.toml. Installs cargo-deny into the
# machine's cache once; checks advisories against the live RustSec database when GitHub answers,
# else against the snapshot committed in third_party/ (saying so, with its date).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
root="${MSA_CARGO_DENY_ROOT:-/var/cache/mysql-sts-agent/cargo-deny}"
deny="$root/bin/cargo-deny"
if [ "$("$deny" --version 2>/dev/null)" != "cargo-deny $version" ]; then
  echo "supply-chain: installing cargo-deny $version into $root (a few minutes, once)" >&2
  cargo install --quiet --locked "cargo-deny@$version" --root "$root"
fi

# cargo-deny keeps the default database in this directory under db-path (deny.toml).
db=target/advisory-dbs/advisory-db-3157b0e258782691
snapshot=third_party/rustsec-advisory-db.tar.gz
snapshot_date=2026-08-21T08:28:40+02:00
rm -rf "$db.new"
if timeout 60 git clone --quiet --depth 1 https://github.com/rustsec/advisory-db "$db.new" 2>/dev/null; then
  echo "supply-chain: advisories from the live RustSec database ($(git -C "$db.new" log -1 --format=%cs))" >&2
else
  echo "supply-chain: GitHub is out of reach: advisories from the RustSec snapshot of $snapshot_date ($snapshot)" >&2
  mkdir -p "$db.new"
  tar -xzf "$snapshot" -C "$db.new"
  # cargo-deny reads the database's age from its git history.
  git -C "$db.new" init --quiet
  git -C "$db.new" add --all
  GIT_AUTHOR_DATE="$snapshot_date" GIT_COMMITTER_DATE="$snapshot_date" \
    git -C "$db.new" -c user.name=snapshot -c user.email=snapshot@localhost \
    commit --quiet -m "RustSec advisory-db snapshot"
fi
rm -rf "$db"
mv "$db.new" "$db"
"$deny" --offline --locked check --hide-inclusion-graph advisories licenses bans sources
