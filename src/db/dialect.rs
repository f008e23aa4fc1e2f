//! The SQL the agent sends, as pure text. MariaDB keeps the MASTER/SLAVE words.

use crate::db::gtid::GtidPosition;
use crate::secret::Secret;

pub const SHOW_REPLICA_STATUS: &str = "SHOW SLAVE STATUS";
pub const START_REPLICA: &str = "START SLAVE";
pub const SERVER_FACTS: &str =
    "SELECT @@read_only, @@gtid_current_pos, @@gtid_slave_pos, @@gtid_binlog_pos, VERSION()";
pub const PRIMARY_POSITION: &str = "SELECT @@gtid_binlog_pos";

/// Where and how a replica connects to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub connect_retry_secs: u32,
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

/// Creates the replication user if missing, (re)sets its password so a rotated secret applies,
/// and grants what a replica's IO thread needs and nothing else.
pub fn ensure_replication_user(user: &str, password: &Secret) -> Vec<String> {
    let account = account(user);
    let password = literal(password.expose());
    vec![
        format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"),
        format!("ALTER USER {account} IDENTIFIED BY {password}"),
        format!("GRANT REPLICATION SLAVE ON *.* TO {account}"),
    ]
}

fn change_source(source: &Source) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={}",
        literal(&source.host),
        source.port,
        literal(&source.user),
        literal(source.password.expose()),
        source.connect_retry_secs,
    )
}

/// First configuration of a fresh replica: start from the clone's GTID position.
pub fn configure_replica(source: &Source, start_at: &GtidPosition) -> Vec<String> {
    vec![
        "STOP SLAVE".to_owned(),
        format!(
            "SET GLOBAL gtid_slave_pos = {}",
            literal(&start_at.to_string())
        ),
        change_source(source),
        START_REPLICA.to_owned(),
    ]
}

/// Points an already configured replica at another source, keeping its applied position.
pub fn repoint_replica(source: &Source) -> Vec<String> {
    vec![
        "STOP SLAVE".to_owned(),
        change_source(source),
        START_REPLICA.to_owned(),
    ]
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
        }
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(literal("nul\0"), "'nul\\0'");
    }

    #[test]
    fn configures_a_replica_from_the_clone_position() {
        let start = GtidPosition::parse("0-100-42").unwrap();
        assert_eq!(
            configure_replica(&source(), &start),
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
    fn repointing_keeps_the_position() {
        let sql = repoint_replica(&source());
        assert_eq!(sql.len(), 3);
        assert!(sql.iter().all(|s| !s.contains("gtid_slave_pos")));
    }

    #[test]
    fn replication_user_gets_only_replication_slave() {
        let sql = ensure_replication_user("repl", &Secret::new("pw".into()));
        assert_eq!(
            sql,
            [
                "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'pw'",
                "ALTER USER 'repl'@'%' IDENTIFIED BY 'pw'",
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
            ]
        );
    }
}
