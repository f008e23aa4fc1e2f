//! The MySQL flavor of the database container: Oracle MySQL from the Debian sid chroot that
//! `scripts/mysql-chroot.sh` builds and caches. Every pod of every cluster shares that one chroot,
//! so nothing may ever be written into it: `chroot-exec` makes the pod's view of it (its DNS
//! files, and /tmp where all the harness's paths live) in a private mount namespace that dies
//! with the command.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use super::layout::PodPaths;
use super::server::{self, ServerSetup, Step};

const CHROOT_ENV: &str = "MSA_MYSQL_CHROOT";
const DEFAULT_CHROOT: &str = "/var/cache/mysql-sts-agent/mysql-sid";
/// Written by `scripts/mysql-chroot.sh` last, once the chroot is whole.
const COMPLETE_MARKER: &str = ".mysql-sts-agent-complete";
/// What chroot-exec mounts over inside the chroot; a bind mount needs its target to exist.
const MOUNT_POINTS: [&str; 3] = ["etc/resolv.conf", "etc/hosts", "tmp"];
const MYSQLD: &str = "/usr/sbin/mysqld";

/// The chroot (`$MSA_MYSQL_CHROOT`, or the cache's default place), checked to be complete.
pub fn locate_chroot() -> Result<PathBuf> {
    let chroot = std::env::var_os(CHROOT_ENV).map_or_else(|| DEFAULT_CHROOT.into(), PathBuf::from);
    let build = "as root, run scripts/mysql-chroot.sh (it reads MSA_MYSQL_CHROOT too)";
    ensure!(
        chroot.join(COMPLETE_MARKER).is_file(),
        "the MySQL chroot {} is missing or incomplete (no {COMPLETE_MARKER}): {build}",
        chroot.display()
    );
    for point in MOUNT_POINTS {
        ensure!(
            chroot.join(point).exists(),
            "the MySQL chroot {} lacks {point}: {build}",
            chroot.display()
        );
    }
    ensure!(
        chroot.join(MYSQLD.trim_start_matches('/')).is_file(),
        "the MySQL chroot {} has no {MYSQLD}: {build}",
        chroot.display()
    );
    Ok(chroot)
}

/// `<root>/bin/chroot-exec CMD ARGS...` runs CMD inside the chroot as the calling pod sees the
/// world: its resolv.conf and hosts (those `ip netns exec` put in place), and the host's /tmp, so
/// every harness path is the same inside and out. Every step execs: the PID stays CMD's own, and
/// killing that PID kills CMD. The mounts go away with the namespace when CMD exits.
pub fn chroot_exec_script(chroot: &Path) -> String {
    format!(
        r#"#!/bin/sh
exec unshare --mount --propagation private sh -euc '
chroot=$1
shift
mount --bind /etc/resolv.conf "$chroot/etc/resolv.conf"
mount --bind /etc/hosts "$chroot/etc/hosts"
mount --rbind /tmp "$chroot/tmp"
exec chroot "$chroot" "$@"
' chroot-exec {} "$@"
"#,
        sh_quote(&chroot.to_string_lossy())
    )
}

/// `<pod>/bin/mysqld`: the chroot's mysqld with the pod's my.cnf. The agent gets it as its mysqld
/// and may add options; `--defaults-file` must stay the first.
pub fn pod_mysqld_script(chroot_exec: &Path, pod: &PodPaths) -> String {
    format!(
        "#!/bin/sh\nexec {} {MYSQLD} {} \"$@\"\n",
        sh_quote(&chroot_exec.to_string_lossy()),
        sh_quote(&server::defaults_file(pod).to_string_lossy())
    )
}

/// mysqld runs as root inside the chroot (the chroot has no mysql user owning the pod's files).
/// secure_file_priv must be set: its default, /var/lib/mysql-files, is missing and mysqld aborts.
/// The small redo log keeps --initialize fast; the agent reads performance_schema.clone_progress.
pub fn my_cnf(pod: &PodPaths, setup: &ServerSetup) -> String {
    server::my_cnf(
        pod,
        setup,
        "root",
        "innodb_redo_log_capacity=32M
mysqlx=OFF
secure_file_priv=
performance_schema=ON
",
    )
}

/// What the official mysql image's entrypoint does on an empty volume.
pub fn initialize(pod: &PodPaths) -> Step {
    Step {
        kind: "initialize",
        program: pod.mysqld().into(),
        args: vec!["--initialize-insecure".into()],
    }
}

pub fn server(pod: &PodPaths) -> Step {
    Step {
        kind: "mysqld",
        program: pod.mysqld().into(),
        args: Vec::new(),
    }
}

/// `text` as one single-quoted shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
