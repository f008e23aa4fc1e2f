//! `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` rows, parsed into what readiness and
//! replication decisions need.

use std::collections::HashMap;

use crate::db::flavor::Dialect;
use crate::db::gtid::{GtidError, Gtids};

/// One result row, by column name; SQL NULL is `None`.
pub type Row = HashMap<String, Option<String>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoThread {
    Running,
    Connecting,
    Stopped,
}

impl IoThread {
    pub const ALL: [IoThread; 3] = [IoThread::Running, IoThread::Connecting, IoThread::Stopped];
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadError {
    pub errno: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStatus {
    pub source_host: String,
    pub source_port: u16,
    pub io_thread: IoThread,
    pub sql_running: bool,
    pub io_error: Option<ThreadError>,
    pub sql_error: Option<ThreadError>,
    /// NULL while a thread is stopped or the lag is unknown.
    pub seconds_behind: Option<u64>,
    /// MariaDB's Using_Gtid (`Slave_Pos`), or MySQL's `Auto_Position` (`1`).
    pub gtid_mode: String,
    /// What the IO thread has received (MariaDB Gtid_IO_Pos, MySQL Retrieved_Gtid_Set).
    pub received: Gtids,
    /// The CA file the source's certificate is verified against, when replication is
    /// configured with TLS and verification (`*_SSL_Allowed` and `*_SSL_Verify_Server_Cert`
    /// both `Yes`); `None` otherwise.
    pub verified_tls_ca: Option<String>,
}

/// The columns that differ between dialects.
struct Columns {
    source_host: &'static str,
    source_port: &'static str,
    io_running: &'static str,
    sql_running: &'static str,
    seconds_behind: &'static str,
    gtid_mode: &'static str,
    received: &'static str,
    ssl_allowed: &'static str,
    ssl_verify: &'static str,
    ssl_ca_file: &'static str,
}

impl Columns {
    fn of(dialect: Dialect) -> Self {
        let master = Columns {
            source_host: "Master_Host",
            source_port: "Master_Port",
            io_running: "Slave_IO_Running",
            sql_running: "Slave_SQL_Running",
            seconds_behind: "Seconds_Behind_Master",
            gtid_mode: "Using_Gtid",
            received: "Gtid_IO_Pos",
            ssl_allowed: "Master_SSL_Allowed",
            ssl_verify: "Master_SSL_Verify_Server_Cert",
            ssl_ca_file: "Master_SSL_CA_File",
        };
        match dialect {
            Dialect::MariaDb => master,
            Dialect::MySqlMaster => Columns {
                gtid_mode: "Auto_Position",
                received: "Retrieved_Gtid_Set",
                ..master
            },
            Dialect::MySqlSource => Columns {
                source_host: "Source_Host",
                source_port: "Source_Port",
                io_running: "Replica_IO_Running",
                sql_running: "Replica_SQL_Running",
                seconds_behind: "Seconds_Behind_Source",
                gtid_mode: "Auto_Position",
                received: "Retrieved_Gtid_Set",
                ssl_allowed: "Source_SSL_Allowed",
                ssl_verify: "Source_SSL_Verify_Server_Cert",
                ssl_ca_file: "Source_SSL_CA_File",
            },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    #[error("replica status has no column {0}")]
    MissingColumn(&'static str),
    #[error("replica status column {column} has an unexpected value {value:?}")]
    BadValue { column: &'static str, value: String },
    #[error("replica status column {column}: {source}")]
    Gtids {
        column: &'static str,
        source: GtidError,
    },
}

impl ReplicaStatus {
    /// `None` for the empty result of a server that has no replication configured.
    pub fn from_row(row: Option<&Row>, dialect: Dialect) -> Result<Option<Self>, StatusError> {
        let Some(row) = row else { return Ok(None) };
        let columns = Columns::of(dialect);
        let text = |column: &'static str| -> Result<&str, StatusError> {
            row.get(column)
                .ok_or(StatusError::MissingColumn(column))
                .map(|v| v.as_deref().unwrap_or(""))
        };
        let number = |column: &'static str| -> Result<Option<u64>, StatusError> {
            let value = text(column)?;
            if value.is_empty() {
                return Ok(None);
            }
            value.parse().map(Some).map_err(|_| StatusError::BadValue {
                column,
                value: value.to_owned(),
            })
        };
        let thread_error = |errno: &'static str, error: &'static str| {
            Ok::<_, StatusError>(match number(errno)? {
                Some(n) if n != 0 => Some(ThreadError {
                    errno: u32::try_from(n).unwrap_or(u32::MAX),
                    message: text(error)?.to_owned(),
                }),
                _ => None,
            })
        };
        let io_thread = match text(columns.io_running)? {
            "Yes" => IoThread::Running,
            "Connecting" => IoThread::Connecting,
            _ => IoThread::Stopped,
        };
        let port = number(columns.source_port)?.unwrap_or(0);
        Ok(Some(ReplicaStatus {
            source_host: text(columns.source_host)?.to_owned(),
            source_port: u16::try_from(port).map_err(|_| StatusError::BadValue {
                column: columns.source_port,
                value: port.to_string(),
            })?,
            io_thread,
            sql_running: text(columns.sql_running)? == "Yes",
            io_error: thread_error("Last_IO_Errno", "Last_IO_Error")?,
            sql_error: thread_error("Last_SQL_Errno", "Last_SQL_Error")?,
            seconds_behind: number(columns.seconds_behind)?,
            gtid_mode: text(columns.gtid_mode)?.to_owned(),
            received: Gtids::parse(dialect.flavor(), text(columns.received)?).map_err(
                |source| StatusError::Gtids {
                    column: columns.received,
                    source,
                },
            )?,
            // Absent columns (a trimmed row) read as no TLS.
            verified_tls_ca: [columns.ssl_allowed, columns.ssl_verify]
                .iter()
                .all(|column| text(column).is_ok_and(|value| value == "Yes"))
                .then(|| text(columns.ssl_ca_file).unwrap_or_default().to_owned()),
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn row(pairs: &[(&str, Option<&str>)]) -> Row {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    /// A row as MariaDB 10.11 returns it for a running GTID replica (trimmed to the columns read).
    pub(crate) fn running_row() -> Row {
        row(&[
            (
                "Master_Host",
                Some("mysql-0.mysql.default.svc.cluster.local"),
            ),
            ("Master_Port", Some("3306")),
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("Yes")),
            ("Last_IO_Errno", Some("0")),
            ("Last_IO_Error", Some("")),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
            ("Seconds_Behind_Master", Some("0")),
            ("Using_Gtid", Some("Slave_Pos")),
            ("Gtid_IO_Pos", Some("0-100-42")),
        ])
    }

    #[test]
    fn parses_a_running_replica() {
        let status = ReplicaStatus::from_row(Some(&running_row()), Dialect::MariaDb)
            .unwrap()
            .unwrap();
        assert_eq!(
            status.source_host,
            "mysql-0.mysql.default.svc.cluster.local"
        );
        assert_eq!(status.source_port, 3306);
        assert_eq!(status.io_thread, IoThread::Running);
        assert!(status.sql_running);
        assert_eq!(status.verified_tls_ca, None, "no SSL columns");
        let mut tls = running_row();
        tls.insert("Master_SSL_Allowed".into(), Some("Yes".into()));
        let unverified = ReplicaStatus::from_row(Some(&tls), Dialect::MariaDb).unwrap();
        let unverified = unverified.unwrap().verified_tls_ca;
        assert_eq!(unverified, None, "allowed, not verified");
        tls.insert("Master_SSL_Verify_Server_Cert".into(), Some("Yes".into()));
        tls.insert("Master_SSL_CA_File".into(), Some("/tls/ca.crt".into()));
        let verified = ReplicaStatus::from_row(Some(&tls), Dialect::MariaDb).unwrap();
        let verified = verified.unwrap().verified_tls_ca;
        assert_eq!(verified.as_deref(), Some("/tls/ca.crt"));
        assert_eq!(status.io_error, None);
        assert_eq!(status.seconds_behind, Some(0));
        assert_eq!(status.gtid_mode, "Slave_Pos");
        assert_eq!(status.received.to_string(), "0-100-42");
    }

    #[test]
    fn parses_a_broken_replica() {
        let mut row = running_row();
        row.insert("Slave_IO_Running".into(), Some("Connecting".into()));
        row.insert("Slave_SQL_Running".into(), Some("No".into()));
        row.insert("Last_SQL_Errno".into(), Some("1062".into()));
        row.insert("Last_SQL_Error".into(), Some("Duplicate entry '1'".into()));
        row.insert("Seconds_Behind_Master".into(), None);
        let status = ReplicaStatus::from_row(Some(&row), Dialect::MariaDb)
            .unwrap()
            .unwrap();
        assert_eq!(status.io_thread, IoThread::Connecting);
        assert!(!status.sql_running);
        assert_eq!(
            status.sql_error,
            Some(ThreadError {
                errno: 1062,
                message: "Duplicate entry '1'".into()
            })
        );
        assert_eq!(status.seconds_behind, None);
    }

    #[test]
    fn no_row_means_not_configured_and_bad_rows_are_errors() {
        assert_eq!(ReplicaStatus::from_row(None, Dialect::MariaDb), Ok(None));
        let mut row = running_row();
        row.remove("Slave_SQL_Running");
        assert_eq!(
            ReplicaStatus::from_row(Some(&row), Dialect::MariaDb),
            Err(StatusError::MissingColumn("Slave_SQL_Running"))
        );
        let mut row = running_row();
        row.insert("Seconds_Behind_Master".into(), Some("soon".into()));
        assert!(matches!(
            ReplicaStatus::from_row(Some(&row), Dialect::MariaDb),
            Err(StatusError::BadValue { .. })
        ));
    }

    #[test]
    fn parses_mysql_source_words() {
        let mysql = row(&[
            (
                "Source_Host",
                Some("mysql-0.mysql.default.svc.cluster.local"),
            ),
            ("Source_Port", Some("3306")),
            ("Replica_IO_Running", Some("No")),
            ("Replica_SQL_Running", Some("Yes")),
            ("Last_IO_Errno", Some("13114")),
            ("Last_IO_Error", Some("Got fatal error 1236 from source")),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
            ("Seconds_Behind_Source", None),
            ("Auto_Position", Some("1")),
            (
                "Retrieved_Gtid_Set",
                Some("83f00eb9-e579-11f1-a5e0-02fc00000001:1-7"),
            ),
        ]);
        let status = ReplicaStatus::from_row(Some(&mysql), Dialect::MySqlSource)
            .unwrap()
            .unwrap();
        assert_eq!(status.io_thread, IoThread::Stopped);
        assert!(status.sql_running);
        assert_eq!(status.io_error.map(|e| e.errno), Some(13114));
        assert_eq!(status.gtid_mode, "1");
        // The same row read with the 8.0.22 words misses its columns.
        assert_eq!(
            ReplicaStatus::from_row(Some(&mysql), Dialect::MySqlMaster),
            Err(StatusError::MissingColumn("Slave_IO_Running"))
        );
    }
}
