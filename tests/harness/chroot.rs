//! Database images that are chroots: Debian chroots that `scripts/db-chroot.sh` builds and
//! caches. Every pod of every cluster shares one, so nothing may ever be written into it:
//! `chroot-exec` makes the pod's view of it (read-only, its DNS files, /proc, and /tmp where all
//! the harness's paths live) in a private mount namespace that dies with the command.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use super::layout;

const CACHE: &str = "/var/cache/mysql-sts-agent";
/// Written by `scripts/db-chroot.sh` last, once the chroot is whole.
const COMPLETE_MARKER: &str = ".mysql-sts-agent-complete";
/// What chroot-exec mounts over inside the chroot; a bind mount needs its target to exist.
const MOUNT_POINTS: [&str; 4] = ["etc/resolv.conf", "etc/hosts", "tmp", "proc"];
/// The official images' mysql user, which the script gives the chroots too.
const MYSQL_IDS: (u32, u32) = (999, 999);

/// A chroot as `scripts/db-chroot.sh <name>` builds it, found at `$<env>` or in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChrootImage {
    pub name: &'static str,
    pub env: &'static str,
    /// A program the image must hold, e.g. "usr/sbin/mysqld".
    pub server: &'static str,
}

impl ChrootImage {
    /// The chroot, checked to be complete and of the current recipe.
    pub fn locate(&self) -> Result<PathBuf> {
        let chroot = std::env::var_os(self.env)
            .map_or_else(|| Path::new(CACHE).join(self.name), PathBuf::from);
        let build = format!(
            "as root, run scripts/db-chroot.sh {} (it reads {} too)",
            self.name, self.env
        );
        let shown = chroot.display();
        ensure!(
            chroot.join(COMPLETE_MARKER).is_file(),
            "the chroot {shown} is missing or incomplete (no {COMPLETE_MARKER}): {build}"
        );
        for point in MOUNT_POINTS.iter().chain([&self.server]) {
            ensure!(
                chroot.join(point).exists(),
                "the chroot {shown} lacks {point}: {build}"
            );
        }
        ensure!(
            layout::passwd_user(&chroot, "mysql").ok() == Some(MYSQL_IDS),
            "the chroot {shown} has no mysql user {MYSQL_IDS:?} (an older recipe): {build}"
        );
        Ok(chroot)
    }
}

/// `<root>/bin/chroot-exec CMD ARGS...` runs CMD inside the chroot as the calling pod sees the
/// world: a read-only root (readOnlyRootFilesystem, and no pod writes into the shared chroot),
/// its resolv.conf and hosts (those `ip netns exec` put in place), /proc, and the host's /tmp, so
/// every harness path is the same inside and out. It runs as root: CMD drops privileges itself
/// (`setpriv`). Every step execs, so the PID stays CMD's own; the mounts go with the namespace.
pub fn chroot_exec_script(chroot: &Path) -> String {
    format!(
        r#"#!/bin/sh
exec unshare --mount --propagation private sh -euc '
chroot=$1
shift
mount --bind "$chroot" "$chroot"
mount -o remount,bind,ro "$chroot"
mount --bind /etc/resolv.conf "$chroot/etc/resolv.conf"
mount --bind /etc/hosts "$chroot/etc/hosts"
mount -t proc proc "$chroot/proc"
mount --rbind /tmp "$chroot/tmp"
exec chroot "$chroot" "$@"
' chroot-exec {} "$@"
"#,
        sh_quote(&chroot.to_string_lossy())
    )
}

/// `text` as one single-quoted shell word.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
