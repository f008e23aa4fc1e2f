//! The MySQL flavor of the database container: Oracle MySQL from the Debian sid chroot (see
//! `chroot.rs`), whose mysqld every process of the database image runs with the pod's my.cnf.

use super::chroot::sh_quote;
use super::layout::PodPaths;
use super::server::{self, ServerSetup, Step};

pub const MYSQLD: &str = "/usr/sbin/mysqld";

/// `<pod>/bin/mysqld`, run inside the chroot: its mysqld with the pod's my.cnf (where the image
/// has /etc/mysql/my.cnf). The agent gets it as its mysqld and may add options;
/// `--defaults-file` must stay the first.
pub fn pod_mysqld_script(pod: &PodPaths) -> String {
    format!(
        "#!/bin/sh\nexec {MYSQLD} {} \"$@\"\n",
        sh_quote(&server::defaults_file(pod).to_string_lossy())
    )
}

/// secure_file_priv must be set: its default, /var/lib/mysql-files, is missing and mysqld aborts.
/// The small redo log keeps --initialize fast; the agent reads performance_schema.clone_progress.
pub fn my_cnf(pod: &PodPaths, setup: &ServerSetup, user: Option<&str>) -> String {
    server::my_cnf(
        pod,
        setup,
        user,
        "innodb_redo_log_capacity=32M
mysqlx=OFF
secure_file_priv=
performance_schema=ON
",
    )
}

/// What the official mysql image's entrypoint does on an empty volume (as the server's user:
/// my.cnf's `user=` when root).
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
