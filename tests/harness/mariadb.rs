//! The MariaDB flavor of the database container: the host's mariadbd, or a chroot's.

use super::layout::PodPaths;
use super::server::{self, ServerSetup, Step};

pub fn my_cnf(pod: &PodPaths, setup: &ServerSetup, user: Option<&str>) -> String {
    server::my_cnf(pod, setup, user, "innodb_log_file_size=48M\n")
}

/// mariadb-install-db wants `--user` only when root (the server then runs as that user).
pub fn install_db(pod: &PodPaths, user: Option<&str>) -> Step {
    let mut args = vec![server::defaults_file(pod)];
    args.extend(user.map(|user| format!("--user={user}").into()));
    args.extend([
        "--skip-test-db".into(),
        "--auth-root-authentication-method=normal".into(),
    ]);
    Step {
        kind: "install-db",
        program: "mariadb-install-db".into(),
        args,
    }
}

pub fn server(pod: &PodPaths) -> Step {
    Step {
        kind: "mariadbd",
        program: "mariadbd".into(),
        args: vec![server::defaults_file(pod)],
    }
}
