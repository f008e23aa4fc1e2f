//! The MariaDB flavor of the database container: the host's mariadbd, run as user mysql.

use super::layout::PodPaths;
use super::server::{self, ServerSetup, Step};

pub fn my_cnf(pod: &PodPaths, setup: &ServerSetup) -> String {
    server::my_cnf(pod, setup, "mysql", "innodb_log_file_size=48M\n")
}

pub fn install_db(pod: &PodPaths) -> Step {
    Step {
        kind: "install-db",
        program: "mariadb-install-db".into(),
        args: vec![
            server::defaults_file(pod),
            "--user=mysql".into(),
            "--skip-test-db".into(),
            "--auth-root-authentication-method=normal".into(),
        ],
    }
}

pub fn server(pod: &PodPaths) -> Step {
    Step {
        kind: "mariadbd",
        program: "mariadbd".into(),
        args: vec![server::defaults_file(pod)],
    }
}
