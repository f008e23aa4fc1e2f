//! The server's config fragment: pure rendering, plus an atomic write.

use std::path::{Path, PathBuf};

use crate::config::TlsFiles;
use crate::db::flavor::Flavor;
use crate::fsutil;
use crate::identity::{Identity, Role};

pub const FRAGMENT_NAME: &str = "mysql-sts-agent.cnf";
/// The binary log's base name (`log_bin`); MariaDB reads `<base>.state` for its GTID state
/// when it starts without binary logs.
pub const BINLOG_BASE: &str = "mysql-bin";
/// The relay log's base name (`relay_log`).
pub const RELAY_LOG_BASE: &str = "mysql-relay-bin";

/// Only options every supported version of the flavor knows: an unknown one stops the server.
/// `hold_writes`: a restored first ordinal starts read-only until its sidecar promoted it.
/// `semi_sync`: MySQL loads semi-sync's plugins (MariaDB has it built in); the sidecar turns it on.
/// `tls`: the server's own certificate, key and CA (both flavors know these three names).
pub fn render(
    identity: &Identity,
    flavor: Flavor,
    hold_writes: bool,
    semi_sync: bool,
    tls: Option<&TlsFiles>,
) -> String {
    let read_only = match identity.role {
        Role::Primary if !hold_writes => "OFF",
        Role::Primary | Role::Replica => "ON",
    };
    let flavor_specific = match flavor {
        Flavor::MariaDb => "binlog_format = ROW\n\
                            log_slave_updates = ON\n\
                            gtid_strict_mode = ON\n"
            .to_owned(),
        // Replicas refuse writes even from SUPER users; the CLONE plugin serves the next pod.
        Flavor::MySql => format!(
            "gtid_mode = ON\n\
             enforce_gtid_consistency = ON\n\
             super_read_only = {read_only}\n\
             plugin_load_add = mysql_clone.so\n{}",
            // Both on every pod, whatever its role: an unused plugin costs nothing, and a missing
            // library only logs an error, the server still starts.
            if semi_sync {
                "plugin_load_add = semisync_source.so\n\
                 plugin_load_add = semisync_replica.so\n"
            } else {
                ""
            }
        ),
    };
    format!(
        "# Written by mysql-sts-agent init for {host} (ordinal {ordinal}, {role}).\n\
         # Rewritten at every start of the pod: change the pod template, not this file.\n\
         [mysqld]\n\
         server_id = {server_id}\n\
         report_host = {fqdn}\n\
         log_bin = {BINLOG_BASE}\n\
         log_bin_index = {BINLOG_BASE}.index\n\
         relay_log = {RELAY_LOG_BASE}\n\
         relay_log_index = {RELAY_LOG_BASE}.index\n\
         read_only = {read_only}\n\
         {flavor_specific}{tls}",
        host = identity.hostname,
        ordinal = identity.ordinal,
        role = identity.role,
        server_id = identity.server_id,
        fqdn = identity.fqdn,
        tls = tls.map_or_else(String::new, |tls| format!(
            "ssl_cert = {}\nssl_key = {}\nssl_ca = {}\n",
            tls.cert.display(),
            tls.key.display(),
            tls.ca.display()
        )),
    )
}

/// Writes the fragment into `conf_dir` and returns its path.
pub fn write(
    conf_dir: &Path,
    identity: &Identity,
    flavor: Flavor,
    hold_writes: bool,
    semi_sync: bool,
    tls: Option<&TlsFiles>,
) -> std::io::Result<PathBuf> {
    let path = conf_dir.join(FRAGMENT_NAME);
    let text = render(identity, flavor, hold_writes, semi_sync, tls);
    fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
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
            first_ordinal: 0,
        };
        Identity::derive(hostname, &naming, 100).unwrap()
    }

    #[test]
    fn replica_fragment_is_read_only_with_gtid_settings() {
        let text = render(&identity("mysql-1"), Flavor::MariaDb, false, false, None);
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
        let text = render(&identity("mysql-0"), Flavor::MariaDb, false, false, None);
        assert!(text.contains("\nserver_id = 100\n"));
        assert!(text.contains("\nread_only = OFF\n"));
        let restored = render(&identity("mysql-0"), Flavor::MySql, true, false, None);
        assert!(restored.contains("\nread_only = ON\n"), "{restored}");
        assert!(restored.contains("\nsuper_read_only = ON\n"), "{restored}");
    }

    #[test]
    fn mysql_fragment_has_gtids_the_clone_plugin_and_super_read_only_replicas() {
        let replica = render(&identity("mysql-2"), Flavor::MySql, false, false, None);
        for line in [
            "server_id = 102",
            "gtid_mode = ON",
            "enforce_gtid_consistency = ON",
            "read_only = ON",
            "super_read_only = ON",
            "plugin_load_add = mysql_clone.so",
        ] {
            assert!(
                replica.lines().any(|l| l == line),
                "missing {line:?} in\n{replica}"
            );
        }
        assert!(
            !replica.contains("gtid_strict_mode"),
            "MariaDB only:\n{replica}"
        );
        let primary = render(&identity("mysql-0"), Flavor::MySql, false, false, None);
        assert!(primary.contains("\nsuper_read_only = OFF\n"));
    }

    #[test]
    fn semi_sync_loads_mysqls_plugins_and_nothing_on_mariadb() {
        let plugins = [
            "plugin_load_add = semisync_source.so",
            "plugin_load_add = semisync_replica.so",
        ];
        let mysql = render(&identity("mysql-1"), Flavor::MySql, false, true, None);
        for line in plugins {
            assert!(
                mysql.lines().any(|l| l == line),
                "missing {line:?} in\n{mysql}"
            );
        }
        let off = render(&identity("mysql-1"), Flavor::MySql, false, false, None);
        let mariadb = render(&identity("mysql-1"), Flavor::MariaDb, false, true, None);
        for text in [off, mariadb] {
            assert!(!text.contains("semisync"), "{text}");
        }
    }

    #[test]
    fn tls_files_give_the_server_its_certificate_key_and_ca() {
        let tls = TlsFiles {
            cert: "/etc/mysql-sts-agent/tls/tls.crt".into(),
            key: "/etc/mysql-sts-agent/tls/tls.key".into(),
            ca: "/etc/mysql-sts-agent/tls/ca.crt".into(),
        };
        for flavor in [Flavor::MariaDb, Flavor::MySql] {
            let text = render(&identity("mysql-1"), flavor, false, false, Some(&tls));
            for line in [
                "ssl_cert = /etc/mysql-sts-agent/tls/tls.crt",
                "ssl_key = /etc/mysql-sts-agent/tls/tls.key",
                "ssl_ca = /etc/mysql-sts-agent/tls/ca.crt",
            ] {
                assert!(
                    text.lines().any(|l| l == line),
                    "missing {line:?} in\n{text}"
                );
            }
            let plain = render(&identity("mysql-1"), flavor, false, false, None);
            assert!(!plain.contains("ssl_"), "{plain}");
        }
    }

    #[test]
    fn writing_twice_gives_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity("mysql-2");
        let path = write(dir.path(), &id, Flavor::MySql, false, false, None).unwrap();
        let first = std::fs::read(&path).unwrap();
        write(dir.path(), &id, Flavor::MySql, false, false, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
