//! Connections to the local server and to the primary, and the few queries the agent runs.

pub mod dialect;
pub mod facts;
pub mod flavor;
pub mod gtid;
pub mod status;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts, Value};

use crate::config::{Credentials, Endpoint};
use crate::duration::seconds;
use facts::{PrimaryState, ServerFacts};
use flavor::{Dialect, Flavor, ServerVersion, VersionError};
use gtid::{Binlogged, GtidError, Gtids};
use status::{ReplicaStatus, Row, StatusError};

use crate::semisync::{MissingVariable, Names, SemiSyncFacts};

/// Every statement the agent runs is short; anything slower means a stuck server.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Except stopping replication: it waits for the applier to finish the transaction in hand,
/// which may be a long one.
pub const STOP_REPLICA_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `statement` may legitimately take.
pub fn statement_timeout(statement: &str) -> Duration {
    let mut words = statement.split_whitespace().map(str::to_ascii_uppercase);
    let (first, second) = (words.next(), words.next());
    match (first.as_deref(), second.as_deref()) {
        (Some("STOP"), Some("SLAVE" | "REPLICA")) => STOP_REPLICA_TIMEOUT,
        _ => QUERY_TIMEOUT,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{what} timed out after {}", seconds(*after))]
    Timeout { what: String, after: Duration },
    #[error("{0}")]
    Mysql(#[from] mysql_async::Error),
    /// Names what failed (a statement cut before its first literal, which may hold a password),
    /// so that e.g. a privilege the admin account lacks shows what needs it.
    #[error("{what}: {source}")]
    Failed {
        what: String,
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Gtid(#[from] GtidError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    SemiSync(#[from] MissingVariable),
}

pub async fn bounded<T, E: Into<DbError>>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    bounded_by(QUERY_TIMEOUT, what, work).await
}

async fn bounded_by<T, E: Into<DbError>>(
    after: Duration,
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    let what = what.to_owned();
    match tokio::time::timeout(after, work).await {
        Ok(result) => result.map_err(|e| match e.into() {
            DbError::Mysql(source) => DbError::Failed { what, source },
            other => other,
        }),
        Err(_) => Err(DbError::Timeout { what, after }),
    }
}

/// TLS to a server whose certificate must chain to `ca` (the only root) and hold `name`.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedTls<'a> {
    pub ca: &'a Path,
    /// The server's stable name, whatever address the connection goes to.
    pub name: &'a str,
}

pub async fn connect(
    endpoint: &Endpoint,
    credentials: &Credentials,
    tls: Option<VerifiedTls<'_>>,
) -> Result<Conn, DbError> {
    let builder = OptsBuilder::default()
        .user(Some(credentials.user.clone()))
        .pass(credentials.password.as_ref().map(|p| p.expose().to_owned()))
        .prefer_socket(false)
        // dialect::literal escapes backslashes, which this mode would make literal.
        .init(vec![
            "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
        ]);
    let builder = match endpoint {
        Endpoint::Tcp { host, port } => builder.ip_or_hostname(host.clone()).tcp_port(*port),
        Endpoint::Socket(path) => builder.socket(Some(path.to_string_lossy().into_owned())),
    };
    let builder = builder.ssl_opts(tls.map(|tls| {
        SslOpts::default()
            .with_root_certs(vec![tls.ca.to_owned().into()])
            .with_disable_built_in_roots(true)
            // Not a danger here: it names what the certificate must hold.
            .with_danger_tls_hostname_override(Some(tls.name.to_owned()))
    }));
    bounded("connecting", Conn::new(builder)).await
}

pub async fn execute_all(conn: &mut Conn, statements: &[String]) -> Result<(), DbError> {
    for statement in statements {
        let after = statement_timeout(statement);
        let what = before_literals(statement);
        bounded_by(after, what, conn.query_drop(statement)).await?;
    }
    Ok(())
}

/// The words of `statement` before its first string literal.
fn before_literals(statement: &str) -> &str {
    statement.split('\'').next().unwrap_or_default().trim_end()
}

/// The server as it describes itself.
pub async fn server_version(conn: &mut Conn) -> Result<ServerVersion, DbError> {
    let row: Option<(String, String)> = bounded(
        "reading the server version",
        conn.query_first("SELECT VERSION(), @@version_comment"),
    )
    .await?;
    let (version, comment) = row.unwrap_or_default();
    Ok(ServerVersion::detect(&version, &comment)?)
}

pub async fn server_facts(
    conn: &mut Conn,
    version: &ServerVersion,
) -> Result<ServerFacts, DbError> {
    let dialect = version.dialect()?;
    let row: Option<(i64, Option<i64>, String, String)> = bounded(
        "reading server state",
        conn.query_first(dialect.server_facts()),
    )
    .await?;
    let (read_only, super_read_only, applied, binlog) = row.unwrap_or_default();
    let flavor = dialect.flavor();
    Ok(ServerFacts {
        version: version.to_string(),
        read_only: read_only != 0,
        super_read_only: super_read_only.map(|on| on != 0),
        gtid_applied: Gtids::parse(flavor, &applied)?,
        gtid_binlog: Binlogged::parse(flavor, &binlog)?,
    })
}

pub async fn replica_status(
    conn: &mut Conn,
    dialect: Dialect,
) -> Result<Option<ReplicaStatus>, DbError> {
    let rows: Vec<mysql_async::Row> = bounded(
        "reading replica status",
        conn.query(dialect.show_replica_status()),
    )
    .await?;
    let row = rows.first().map(row_by_name);
    Ok(ReplicaStatus::from_row(row.as_ref(), dialect)?)
}

pub async fn primary_state(conn: &mut Conn, dialect: Dialect) -> Result<PrimaryState, DbError> {
    let row: Option<(String, String)> = bounded(
        "reading the primary's position",
        conn.query_first(dialect.primary_state()),
    )
    .await?;
    let (position, binlogged) = row.unwrap_or_default();
    let flavor = dialect.flavor();
    Ok(PrimaryState {
        position: Gtids::parse(flavor, &position)?,
        binlogged: Binlogged::parse(flavor, &binlogged)?,
    })
}

/// How long the server has been up.
pub async fn uptime(conn: &mut Conn) -> Result<Duration, DbError> {
    let row: Option<(String, u64)> = bounded(
        "reading the server's uptime",
        conn.query_first("SHOW GLOBAL STATUS LIKE 'Uptime'"),
    )
    .await?;
    Ok(Duration::from_secs(row.map_or(0, |(_, secs)| secs)))
}

/// What the primary purged: MySQL's gtid_purged; MariaDB's state before its oldest binlog.
pub async fn primary_purged(conn: &mut Conn, dialect: Dialect) -> Result<Gtids, DbError> {
    let flavor = dialect.flavor();
    let query = dialect.primary_purged();
    if flavor == Flavor::MySql {
        let purged: Option<String> = bounded(
            "reading the primary's purged GTIDs",
            conn.query_first(query),
        )
        .await?;
        return Ok(Gtids::parse(flavor, &purged.unwrap_or_default())?);
    }
    let rows: Vec<mysql_async::Row> =
        bounded("reading the primary's oldest binlog", conn.query(query)).await?;
    let rows: Vec<Row> = rows.iter().map(row_by_name).collect();
    Ok(Gtids::parse(flavor, gtid_list_of(&rows))?)
}

/// The GTIDs of the Gtid_list event among SHOW BINLOG EVENTS rows (`[0-1-5,1-2-7]`); none
/// when the binlog has no such event.
fn gtid_list_of(rows: &[Row]) -> &str {
    fn value<'a>(row: &'a Row, column: &str) -> Option<&'a str> {
        row.get(column).and_then(Option::as_deref)
    }
    rows.iter()
        .find(|row| value(row, "Event_type") == Some("Gtid_list"))
        .and_then(|row| value(row, "Info"))
        .map_or("", |info| info.trim_matches(['[', ']']))
}

pub async fn semi_sync_facts(conn: &mut Conn, names: Names) -> Result<SemiSyncFacts, DbError> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for query in dialect::SEMI_SYNC_FACTS {
        rows.extend(
            bounded::<Vec<(String, String)>, _>("reading semi-sync state", conn.query(query))
                .await?,
        );
    }
    Ok(SemiSyncFacts::from_rows(names, &rows)?)
}

fn row_by_name(row: &mysql_async::Row) -> Row {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match row.as_ref(i) {
                None | Some(Value::NULL) => None,
                Some(Value::Bytes(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
                Some(other) => Some(other.as_sql(true).trim_matches('\'').to_owned()),
            };
            (column.name_str().into_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_replication_may_take_longer_than_other_statements() {
        for statement in ["STOP SLAVE", "STOP REPLICA", "stop  slave 'a'"] {
            assert_eq!(
                statement_timeout(statement),
                STOP_REPLICA_TIMEOUT,
                "{statement}"
            );
        }
        for statement in [
            "START SLAVE",
            "CHANGE MASTER TO MASTER_HOST='x'",
            "SHUTDOWN",
            "",
        ] {
            assert_eq!(statement_timeout(statement), QUERY_TIMEOUT, "{statement}");
        }
    }

    #[test]
    fn a_failed_statement_is_named_without_its_literals() {
        assert_eq!(
            before_literals("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'"),
            "GRANT REPLICATION SLAVE ON *.* TO"
        );
        assert_eq!(
            before_literals("CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD='secret'"),
            "CHANGE MASTER TO MASTER_HOST="
        );
        assert_eq!(before_literals("START SLAVE"), "START SLAVE");
    }

    #[test]
    fn the_oldest_binlogs_gtid_list_is_what_was_purged() {
        let row = |event: &str, info: &str| -> Row {
            [
                ("Event_type".to_owned(), Some(event.to_owned())),
                ("Info".to_owned(), Some(info.to_owned())),
            ]
            .into()
        };
        let rows = [
            row(
                "Format_desc",
                "Server ver: 10.11.14-MariaDB-log, Binlog ver: 4",
            ),
            row("Gtid_list", "[0-1-5,1-2-7]"),
        ];
        assert_eq!(gtid_list_of(&rows), "0-1-5,1-2-7");
        assert_eq!(gtid_list_of(&[row("Gtid_list", "[]")]), "");
        assert_eq!(
            gtid_list_of(&rows[..1]),
            "",
            "no Gtid_list: nothing known purged"
        );
    }
}
