//! The server's config fragment: pure rendering, plus an atomic write.

use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::identity::{Identity, Role};

pub const FRAGMENT_NAME: &str = "mysql-sts-agent.cnf";

pub fn render(identity: &Identity) -> String {
    let read_only = match identity.role {
        Role::Primary => "OFF",
        Role::Replica => "ON",
    };
    format!(
        "# Written by mysql-sts-agent init for {host} (ordinal {ordinal}, {role}).\n\
         # Rewritten at every start of the pod: change the pod template, not this file.\n\
         [mysqld]\n\
         server_id = {server_id}\n\
         report_host = {fqdn}\n\
         log_bin = mysql-bin\n\
         log_bin_index = mysql-bin.index\n\
         relay_log = mysql-relay-bin\n\
         relay_log_index = mysql-relay-bin.index\n\
         binlog_format = ROW\n\
         log_slave_updates = ON\n\
         gtid_strict_mode = ON\n\
         read_only = {read_only}\n",
        host = identity.hostname,
        ordinal = identity.ordinal,
        role = identity.role,
        server_id = identity.server_id,
        fqdn = identity.fqdn,
    )
}

/// Writes the fragment into `conf_dir` and returns its path.
pub fn write(conf_dir: &Path, identity: &Identity) -> std::io::Result<PathBuf> {
    let path = conf_dir.join(FRAGMENT_NAME);
    fsutil::write_atomic(&path, render(identity).as_bytes(), 0o644)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Naming;

    fn identity(hostname: &str) -> Identity {
        let naming = Naming {
            service: None,
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
        };
        Identity::derive(hostname, &naming, 100).unwrap()
    }

    #[test]
    fn replica_fragment_is_read_only_with_gtid_settings() {
        let text = render(&identity("mysql-1"));
        for line in [
            "[mysqld]",
            "server_id = 101",
            "report_host = mysql-1.mysql.default.svc.cluster.local",
            "log_bin = mysql-bin",
            "binlog_format = ROW",
            "log_slave_updates = ON",
            "gtid_strict_mode = ON",
            "read_only = ON",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn primary_fragment_is_writable() {
        let text = render(&identity("mysql-0"));
        assert!(text.contains("\nserver_id = 100\n"));
        assert!(text.contains("\nread_only = OFF\n"));
    }

    #[test]
    fn writing_twice_gives_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity("mysql-2");
        let path = write(dir.path(), &id).unwrap();
        let first = std::fs::read(&path).unwrap();
        write(dir.path(), &id).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
