//! The SQL the agent sends, as pure text, in each dialect's words.

use std::net::SocketAddr;
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::config::TlsFiles;
use crate::db::flavor::Dialect;
use crate::db::gtid::Gtids;
use crate::secret::Secret;
use crate::semisync::{AckTimeout, Names, WAIT_POINT};

/// MySQL's IO thread gives up after this many failed reconnects (the default is 10, so a primary
/// down for 20 s would stop replication for good); 86400 tries, 2 s apart, is two days.
const SOURCE_RETRY_COUNT: u32 = 86_400;

/// Where and how a replica connects to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub connect_retry_secs: u32,
    /// Replication over TLS: the CA (a path the server reads) that the primary's certificate
    /// and host name are verified against.
    pub tls_ca: Option<String>,
}

/// A SQL string literal. Backslashes are escaped too, so the session must not use
/// NO_BACKSLASH_ESCAPES (the agent's connections clear it).
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A user account name with any host (`'repl'@'%'`).
pub fn account(user: &str) -> String {
    format!("{}@'%'", literal(user))
}

/// What a MySQL CLONE donor needs from the joiner's user, and nothing else.
pub const CLONE_PRIVILEGE: &str = "BACKUP_ADMIN";

/// MariaDB's `mysql_native_password` hash of `password` (its UTF-8 bytes), as `PASSWORD()`
/// computes it: `*` and the hex of SHA1(SHA1(password)).
fn native_password_hash(password: &Secret) -> String {
    let twice = Sha1::digest(Sha1::digest(password.expose().as_bytes()));
    let hex: String = twice.iter().map(|byte| format!("{byte:02X}")).collect();
    format!("*{hex}")
}

/// `ACTIVE` when the CLONE plugin is loaded; no row when it is not installed.
pub const CLONE_PLUGIN_STATUS: &str =
    "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone'";

/// Run on the joiner's scratch server: clone the donor into `data_directory` (which must not
/// exist; the plugin creates it), so the server itself needs no restart; with
/// `tls`, over TLS only, the donor's certificate verified against the CA and the pod's own
/// presented (the plugin's variables are the joiner's).
pub fn clone_instance(
    donor: SocketAddr,
    user: &str,
    password: &Secret,
    data_directory: &Path,
    tls: Option<&TlsFiles>,
) -> Vec<String> {
    let mut sql = vec![format!(
        "SET GLOBAL clone_valid_donor_list = {}",
        literal(&donor.to_string())
    )];
    let mut clone = format!(
        "CLONE INSTANCE FROM {}@{}:{} IDENTIFIED BY {} DATA DIRECTORY = {}",
        literal(user),
        literal(&donor.ip().to_string()),
        donor.port(),
        literal(password.expose()),
        literal(&data_directory.to_string_lossy()),
    );
    if let Some(tls) = tls {
        for (variable, path) in [
            ("clone_ssl_ca", &tls.ca),
            ("clone_ssl_cert", &tls.cert),
            ("clone_ssl_key", &tls.key),
        ] {
            let path = literal(&path.to_string_lossy());
            sql.push(format!("SET GLOBAL {variable} = {path}"));
        }
        clone.push_str(" REQUIRE SSL");
    }
    sql.push(clone);
    sql
}

/// Semi-sync's global variables, then its status: rows of (name, value), the same on both servers.
pub const SEMI_SYNC_FACTS: [&str; 2] = [
    "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'",
    "SHOW GLOBAL STATUS LIKE 'rpl_semi_sync%'",
];

impl Names {
    /// The primary's side: lossless wait point, the timeout, one replica to acknowledge (MariaDB
    /// always waits for one), and on last, so the first waiting commit has all the settings.
    pub fn configure_source(self, timeout: AckTimeout) -> Vec<String> {
        let (source, replica) = self.sides();
        let mut sql = vec![
            format!("SET GLOBAL rpl_semi_sync_{source}_wait_point = {WAIT_POINT}"),
            format!(
                "SET GLOBAL rpl_semi_sync_{source}_timeout = {}",
                timeout.millis()
            ),
        ];
        if self == Names::Source {
            sql.push(format!(
                "SET GLOBAL rpl_semi_sync_{source}_wait_for_{replica}_count = 1"
            ));
        }
        sql.push(format!("SET GLOBAL rpl_semi_sync_{source}_enabled = ON"));
        sql
    }

    pub fn enable_replica(self) -> String {
        let (_, replica) = self.sides();
        format!("SET GLOBAL rpl_semi_sync_{replica}_enabled = ON")
    }
}

impl Dialect {
    /// Creates a user if missing, (re)sets its password so a rotated secret applies, requires
    /// TLS of its connections or not (so turning the setting off applies too), and grants it one
    /// global privilege.
    pub fn ensure_user(
        self,
        user: &str,
        password: &Secret,
        privilege: &str,
        require_tls: bool,
    ) -> Vec<String> {
        let account = account(user);
        let password = self.identified_by(password);
        let require = if require_tls { "SSL" } else { "NONE" };
        vec![
            format!("CREATE USER IF NOT EXISTS {account} {password}"),
            format!("ALTER USER {account} {password} REQUIRE {require}"),
            format!("GRANT {privilege} ON *.* TO {account}"),
        ]
    }

    /// MariaDB writes `IDENTIFIED BY '<password>'` into its binlog as sent, and replicas copy
    /// the binlog: it gets the hash that clause would store instead. MySQL's binlog has the
    /// hash already.
    fn identified_by(self, password: &Secret) -> String {
        match self {
            Dialect::MariaDb => format!(
                "IDENTIFIED BY PASSWORD {}",
                literal(&native_password_hash(password))
            ),
            Dialect::MySqlMaster | Dialect::MySqlSource => {
                format!("IDENTIFIED BY {}", literal(password.expose()))
            }
        }
    }

    /// The IO thread alone, so that it reads the semi-sync switch again; the applier goes on.
    pub fn restart_io_thread(self) -> Vec<String> {
        let (stop, start) = (self.stop_replica(), self.start_replica());
        vec![format!("{stop} IO_THREAD"), format!("{start} IO_THREAD")]
    }

    pub fn show_replica_status(self) -> &'static str {
        match self {
            Dialect::MariaDb | Dialect::MySqlMaster => "SHOW SLAVE STATUS",
            Dialect::MySqlSource => "SHOW REPLICA STATUS",
        }
    }

    /// Makes the server read its certificate, key and CA files again (MariaDB 10.4+, MySQL
    /// 8.0.16+: every supported version). Never binlogged: on a replica it would be an errant
    /// transaction (MariaDB binlogs a plain FLUSH; MySQL's ALTER INSTANCE is not).
    pub fn reload_tls(self) -> &'static str {
        match self {
            Dialect::MariaDb => "FLUSH NO_WRITE_TO_BINLOG SSL",
            Dialect::MySqlMaster | Dialect::MySqlSource => "ALTER INSTANCE RELOAD TLS",
        }
    }

    pub fn start_replica(self) -> &'static str {
        match self {
            Dialect::MariaDb | Dialect::MySqlMaster => "START SLAVE",
            Dialect::MySqlSource => "START REPLICA",
        }
    }

    /// Forgets the applier's relay log position and the relay logs, keeping the connection
    /// settings: a MySQL clone brings its donor's applier position but not the relay logs it
    /// names; with GTID auto-positioning the channel resumes from gtid_executed.
    pub fn reset_relay_log(self) -> &'static str {
        match self {
            Dialect::MariaDb | Dialect::MySqlMaster => "RESET SLAVE",
            Dialect::MySqlSource => "RESET REPLICA",
        }
    }

    fn stop_replica(self) -> &'static str {
        match self {
            Dialect::MariaDb | Dialect::MySqlMaster => "STOP SLAVE",
            Dialect::MySqlSource => "STOP REPLICA",
        }
    }

    /// `read_only`, `super_read_only` (MySQL; NULL on MariaDB, which has none), what this
    /// server has applied as a replica, and what its binlog holds.
    pub fn server_facts(self) -> &'static str {
        match self {
            Dialect::MariaDb => "SELECT @@read_only, NULL, @@gtid_slave_pos, @@gtid_binlog_state",
            Dialect::MySqlMaster | Dialect::MySqlSource => {
                "SELECT @@read_only, @@super_read_only, @@GLOBAL.gtid_executed, \
                 @@GLOBAL.gtid_executed"
            }
        }
    }

    /// What the replication user needs on the primary: the IO thread's privilege and, on
    /// MariaDB, reading the oldest binlog's GTID list (replicas check for purged binlogs
    /// before they start replication; MySQL's gtid_purged needs nothing).
    pub fn replication_privileges(self) -> &'static str {
        match self {
            Dialect::MariaDb => "REPLICATION SLAVE, BINLOG MONITOR",
            Dialect::MySqlMaster | Dialect::MySqlSource => "REPLICATION SLAVE",
        }
    }

    /// What the primary no longer has binlogs for. MariaDB has no gtid_purged: the oldest
    /// binlog's Gtid_list event (its second) holds the state before it.
    pub fn primary_purged(self) -> &'static str {
        match self {
            Dialect::MariaDb => "SHOW BINLOG EVENTS LIMIT 2",
            Dialect::MySqlMaster | Dialect::MySqlSource => "SELECT @@GLOBAL.gtid_purged",
        }
    }

    /// The primary's position, as replicas sample it for the lag, and what its binlog holds,
    /// to find errant transactions.
    pub fn primary_state(self) -> &'static str {
        match self {
            Dialect::MariaDb => "SELECT @@gtid_binlog_pos, @@gtid_binlog_state",
            Dialect::MySqlMaster | Dialect::MySqlSource => {
                "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed"
            }
        }
    }

    fn change_source(self, source: &Source) -> String {
        let (host, port, user, password) = (
            literal(&source.host),
            source.port,
            literal(&source.user),
            literal(source.password.expose()),
        );
        let retry = source.connect_retry_secs;
        let words = match self {
            Dialect::MariaDb | Dialect::MySqlMaster => "MASTER",
            Dialect::MySqlSource => "SOURCE",
        };
        // Both flavors, all versions: the certificate chains to the CA and names the host.
        let tls = source.tls_ca.as_deref().map_or_else(String::new, |ca| {
            format!(
                ", {words}_SSL=1, {words}_SSL_CA={}, {words}_SSL_VERIFY_SERVER_CERT=1",
                literal(ca)
            )
        });
        let statement = match self {
            Dialect::MariaDb => format!(
                "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, MASTER_USER={user}, \
                 MASTER_PASSWORD={password}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={retry}"
            ),
            Dialect::MySqlMaster => format!(
                "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, MASTER_USER={user}, \
                 MASTER_PASSWORD={password}, MASTER_AUTO_POSITION=1, GET_MASTER_PUBLIC_KEY=1, \
                 MASTER_CONNECT_RETRY={retry}, MASTER_RETRY_COUNT={SOURCE_RETRY_COUNT}"
            ),
            Dialect::MySqlSource => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}, \
                 SOURCE_USER={user}, SOURCE_PASSWORD={password}, SOURCE_AUTO_POSITION=1, \
                 GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY={retry}, \
                 SOURCE_RETRY_COUNT={SOURCE_RETRY_COUNT}"
            ),
        };
        statement + &tls
    }

    /// First configuration of a fresh replica. MariaDB starts at the clone's position; MySQL's
    /// auto-position starts from gtid_executed, which the CLONE plugin brought with the data.
    pub fn configure_replica(self, source: &Source, start_at: &Gtids) -> Vec<String> {
        let mut sql = vec![self.stop_replica().to_owned()];
        if self == Dialect::MariaDb {
            sql.push(format!(
                "SET GLOBAL gtid_slave_pos = {}",
                literal(&start_at.to_string())
            ));
        }
        sql.push(self.change_source(source));
        sql.push(self.start_replica().to_owned());
        sql
    }

    /// A restored first ordinal drops the replication channel its donor's data came with (every
    /// step idempotent); MariaDB, when `binlog_state` is given, also restarts its binary log at
    /// that GTID state, so its next transactions follow what the replicas applied.
    pub fn promote_restored(self, binlog_state: Option<&Gtids>) -> Vec<String> {
        let reset = match self {
            Dialect::MariaDb | Dialect::MySqlMaster => "RESET SLAVE ALL",
            Dialect::MySqlSource => "RESET REPLICA ALL",
        };
        let mut sql = vec![self.stop_replica().to_owned(), reset.to_owned()];
        if let (Dialect::MariaDb, Some(state)) = (self, binlog_state) {
            sql.push("RESET MASTER".to_owned());
            sql.push(format!(
                "SET GLOBAL gtid_binlog_state = {}",
                literal(&state.to_string())
            ));
        }
        sql
    }

    /// Lifts the read-only start of a restored first ordinal, once it is promoted.
    pub fn make_writable(self) -> Vec<String> {
        match self {
            Dialect::MariaDb => vec!["SET GLOBAL read_only = OFF".to_owned()],
            Dialect::MySqlMaster | Dialect::MySqlSource => vec![
                "SET GLOBAL super_read_only = OFF".to_owned(),
                "SET GLOBAL read_only = OFF".to_owned(),
            ],
        }
    }

    /// Points an already configured replica at another source, keeping its applied position.
    pub fn repoint_replica(self, source: &Source) -> Vec<String> {
        vec![
            self.stop_replica().to_owned(),
            self.change_source(source),
            self.start_replica().to_owned(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            host: "mysql-0.mysql.default.svc.cluster.local".into(),
            port: 3306,
            user: "repl".into(),
            password: Secret::new("pa'ss\\word".into()),
            connect_retry_secs: 2,
            tls_ca: None,
        }
    }

    fn mariadb_start() -> Gtids {
        Gtids::parse(crate::db::flavor::Flavor::MariaDb, "0-100-42").unwrap()
    }

    #[test]
    fn a_restored_primary_drops_its_channel_and_mariadb_restarts_its_binlog_state() {
        let state = mariadb_start();
        assert_eq!(
            Dialect::MariaDb.promote_restored(Some(&state)),
            [
                "STOP SLAVE",
                "RESET SLAVE ALL",
                "RESET MASTER",
                "SET GLOBAL gtid_binlog_state = '0-100-42'"
            ]
        );
        assert_eq!(
            Dialect::MariaDb.promote_restored(None),
            ["STOP SLAVE", "RESET SLAVE ALL"]
        );
        assert_eq!(
            Dialect::MySqlSource.promote_restored(Some(&state)),
            ["STOP REPLICA", "RESET REPLICA ALL"]
        );
        assert_eq!(
            Dialect::MySqlSource.make_writable(),
            [
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
    }

    #[test]
    fn semi_sync_is_set_in_each_servers_words() {
        let ten_s = AckTimeout::After(std::time::Duration::from_secs(10));
        assert_eq!(
            Names::Master.configure_source(ten_s),
            [
                "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
                "SET GLOBAL rpl_semi_sync_master_timeout = 10000",
                "SET GLOBAL rpl_semi_sync_master_enabled = ON",
            ]
        );
        assert_eq!(
            Names::Source.configure_source(AckTimeout::Forever),
            [
                "SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC",
                "SET GLOBAL rpl_semi_sync_source_timeout = 4294967295",
                "SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = 1",
                "SET GLOBAL rpl_semi_sync_source_enabled = ON",
            ]
        );
        assert_eq!(
            Names::Master.enable_replica(),
            "SET GLOBAL rpl_semi_sync_slave_enabled = ON"
        );
        assert_eq!(
            Names::Source.enable_replica(),
            "SET GLOBAL rpl_semi_sync_replica_enabled = ON"
        );
        assert_eq!(
            Dialect::MariaDb.restart_io_thread(),
            ["STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"]
        );
        assert_eq!(
            Dialect::MySqlSource.restart_io_thread(),
            ["STOP REPLICA IO_THREAD", "START REPLICA IO_THREAD"]
        );
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(literal("nul\0"), "'nul\\0'");
    }

    #[test]
    fn mariadb_replica_starts_from_the_clone_position() {
        assert_eq!(
            Dialect::MariaDb.configure_replica(&source(), &mariadb_start()),
            [
                "STOP SLAVE",
                "SET GLOBAL gtid_slave_pos = '0-100-42'",
                "CHANGE MASTER TO MASTER_HOST='mysql-0.mysql.default.svc.cluster.local', \
                 MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='pa''ss\\\\word', \
                 MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=2",
                "START SLAVE",
            ]
        );
    }

    #[test]
    fn mysql_8_0_23_and_later_use_source_words_and_auto_position() {
        let start = Gtids::parse(
            crate::db::flavor::Flavor::MySql,
            "83f00eb9-e579-11f1-a5e0-02fc00000001:1-5",
        )
        .unwrap();
        assert_eq!(
            Dialect::MySqlSource.configure_replica(&source(), &start),
            [
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='mysql-0.mysql.default.svc.cluster.local', \
                 SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='pa''ss\\\\word', \
                 SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=2, \
                 SOURCE_RETRY_COUNT=86400",
                "START REPLICA",
            ]
        );
        assert_eq!(
            Dialect::MySqlSource.show_replica_status(),
            "SHOW REPLICA STATUS"
        );
    }

    #[test]
    fn mysql_8_0_17_to_8_0_22_use_master_words_and_auto_position() {
        assert_eq!(
            Dialect::MySqlMaster.repoint_replica(&source()),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_HOST='mysql-0.mysql.default.svc.cluster.local', \
                 MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='pa''ss\\\\word', \
                 MASTER_AUTO_POSITION=1, GET_MASTER_PUBLIC_KEY=1, MASTER_CONNECT_RETRY=2, \
                 MASTER_RETRY_COUNT=86400",
                "START SLAVE",
            ]
        );
        assert_eq!(
            Dialect::MySqlMaster.show_replica_status(),
            "SHOW SLAVE STATUS"
        );
        assert_eq!(
            Dialect::MySqlMaster.primary_state(),
            "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed"
        );
    }

    #[test]
    fn replication_over_tls_verifies_the_primary_in_each_dialects_words() {
        let tls = Source {
            tls_ca: Some("/etc/tls/ca.crt".into()),
            ..source()
        };
        for (dialect, tail) in [
            (
                Dialect::MariaDb,
                "MASTER_CONNECT_RETRY=2, MASTER_SSL=1, MASTER_SSL_CA='/etc/tls/ca.crt', \
                 MASTER_SSL_VERIFY_SERVER_CERT=1",
            ),
            (
                Dialect::MySqlMaster,
                "MASTER_RETRY_COUNT=86400, MASTER_SSL=1, MASTER_SSL_CA='/etc/tls/ca.crt', \
                 MASTER_SSL_VERIFY_SERVER_CERT=1",
            ),
            (
                Dialect::MySqlSource,
                "SOURCE_RETRY_COUNT=86400, SOURCE_SSL=1, SOURCE_SSL_CA='/etc/tls/ca.crt', \
                 SOURCE_SSL_VERIFY_SERVER_CERT=1",
            ),
        ] {
            let change = &dialect.repoint_replica(&tls)[1];
            assert!(change.ends_with(tail), "{change}");
        }
        for dialect in [Dialect::MariaDb, Dialect::MySqlMaster, Dialect::MySqlSource] {
            assert!(!dialect.repoint_replica(&source())[1].contains("SSL"));
        }
    }

    #[test]
    fn reloading_the_servers_certificate_is_never_binlogged() {
        assert_eq!(
            Dialect::MariaDb.reload_tls(),
            "FLUSH NO_WRITE_TO_BINLOG SSL"
        );
        assert_eq!(
            Dialect::MySqlSource.reload_tls(),
            "ALTER INSTANCE RELOAD TLS"
        );
    }

    #[test]
    fn repointing_keeps_the_position() {
        for dialect in [Dialect::MariaDb, Dialect::MySqlMaster, Dialect::MySqlSource] {
            let sql = dialect.repoint_replica(&source());
            assert_eq!(sql.len(), 3);
            assert!(sql.iter().all(|s| !s.contains("gtid_slave_pos")));
        }
    }

    #[test]
    fn users_get_only_what_they_need() {
        let mysql = Dialect::MySqlSource;
        let sql = mysql.ensure_user(
            "repl",
            &Secret::new("p'w".into()),
            mysql.replication_privileges(),
            false,
        );
        assert_eq!(
            sql,
            [
                "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'p''w'",
                "ALTER USER 'repl'@'%' IDENTIFIED BY 'p''w' REQUIRE NONE",
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
            ]
        );
        let sql = mysql.ensure_user("clone", &Secret::new("pw".into()), CLONE_PRIVILEGE, false);
        assert_eq!(sql[2], "GRANT BACKUP_ADMIN ON *.* TO 'clone'@'%'");
        let mariadb = Dialect::MariaDb;
        let sql = mariadb.ensure_user(
            "repl",
            &Secret::new("password".into()),
            mariadb.replication_privileges(),
            true,
        );
        assert_eq!(
            sql,
            [
                "CREATE USER IF NOT EXISTS 'repl'@'%' \
                 IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
                "ALTER USER 'repl'@'%' \
                 IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' REQUIRE SSL",
                "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'%'",
            ]
        );
    }

    #[test]
    fn the_native_password_hash_is_of_the_utf8_bytes() {
        // What SELECT PASSWORD('re"pl''\\ ü ✓') answers on MariaDB 10.11 over utf8mb4.
        assert_eq!(
            native_password_hash(&Secret::new("re\"pl'\\ ü ✓".into())),
            "*D1563B6222378DA419C5AEC189599C88D2A3F19F"
        );
    }

    #[test]
    fn clone_instance_names_the_donor_it_allows() {
        let donor: SocketAddr = "169.254.250.11:3306".parse().unwrap();
        let target = Path::new("/var/lib/mysql/.mysql-sts-agent-clone/data");
        assert_eq!(
            clone_instance(donor, "clone", &Secret::new("p'w".into()), target, None),
            [
                "SET GLOBAL clone_valid_donor_list = '169.254.250.11:3306'",
                "CLONE INSTANCE FROM 'clone'@'169.254.250.11':3306 IDENTIFIED BY 'p''w' \
                 DATA DIRECTORY = '/var/lib/mysql/.mysql-sts-agent-clone/data'",
            ]
        );
        let tls = TlsFiles {
            cert: "/tls/tls.crt".into(),
            key: "/tls/tls.key".into(),
            ca: "/tls/ca.crt".into(),
        };
        assert_eq!(
            clone_instance(
                donor,
                "clone",
                &Secret::new("pw".into()),
                target,
                Some(&tls)
            ),
            [
                "SET GLOBAL clone_valid_donor_list = '169.254.250.11:3306'",
                "SET GLOBAL clone_ssl_ca = '/tls/ca.crt'",
                "SET GLOBAL clone_ssl_cert = '/tls/tls.crt'",
                "SET GLOBAL clone_ssl_key = '/tls/tls.key'",
                "CLONE INSTANCE FROM 'clone'@'169.254.250.11':3306 IDENTIFIED BY 'pw' \
                 DATA DIRECTORY = '/var/lib/mysql/.mysql-sts-agent-clone/data' REQUIRE SSL",
            ]
        );
    }
}
