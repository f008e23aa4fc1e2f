//! Setting up replication once and resuming it afterwards: a pure plan from what the server
//! and the datadir say, and a thin step that carries it out.

use std::path::Path;

use mysql_async::Conn;

use crate::clone::datadir::CloneMarker;
use crate::db::dialect::{self, Source};
use crate::db::flavor::{Dialect, Flavor};
use crate::db::gtid::{Binlogged, Gtids};
use crate::db::status::{IoThread, ReplicaStatus};
use crate::db::{self, DbError};
use crate::health::Phase;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Never configured: start from the clone's position.
    Configure { start_at: Gtids, donor: String },
    /// Configured for another source host: point it at ordinal 0, keep the applied position.
    Repoint { from: String },
    /// Configured for this source without TLS verified against the CA replication must use
    /// (`verified_with`: the CA file it verifies against, if any): configure it again with TLS,
    /// keeping the applied position.
    Secure { verified_with: Option<String> },
    /// Configured for this source but not running (e.g. after a restart): start it.
    Resume,
    /// Configured and running: leave it alone.
    Keep,
    /// Not configured and nothing says where to start: a person has to decide.
    Blocked(String),
}

/// `tls_ca`: replication must use TLS verified against this CA file (a configuration without it
/// is redone, as is one that names another file, e.g. a donor's path kept by a MySQL clone; one
/// with TLS is kept when the setting is off, since the primary may still require it).
pub fn plan(
    flavor: Flavor,
    status: Option<&ReplicaStatus>,
    marker: Option<&CloneMarker>,
    source_host: &str,
    tls_ca: Option<&Path>,
) -> Plan {
    let Some(status) = status else {
        return match marker {
            Some(marker) => match Gtids::parse(flavor, &marker.gtid_position) {
                Ok(start_at) => Plan::Configure {
                    start_at,
                    donor: marker.donor.clone(),
                },
                Err(e) => Plan::Blocked(format!("the clone marker's position is unreadable: {e}")),
            },
            None => Plan::Blocked(
                "replication is not configured and the datadir holds no clone marker, so the \
                 start position is unknown: configure replication by hand, or empty the volume \
                 to clone again"
                    .to_owned(),
            ),
        };
    };
    if status.source_host != source_host {
        return Plan::Repoint {
            from: status.source_host.clone(),
        };
    }
    if let Some(ca) = tls_ca
        && status.verified_tls_ca.as_deref().map(Path::new) != Some(ca)
    {
        return Plan::Secure {
            verified_with: status.verified_tls_ca.clone(),
        };
    }
    if status.io_thread == IoThread::Stopped || !status.sql_running {
        return Plan::Resume;
    }
    Plan::Keep
}

/// The GTID state a restored MariaDB primary's binlog must be reset to, if its binlog does not
/// already hold the clone's position (init's `<log_bin>.state` normally gives it at the first
/// start). MySQL's gtid_executed comes with the clone: never.
pub fn binlog_reset<'a>(flavor: Flavor, binlog: &Gtids, position: &'a Gtids) -> Option<&'a Gtids> {
    (flavor == Flavor::MariaDb && !binlog.contains(position)).then_some(position)
}

/// What to do about a replica that cannot resume because the primary purged binlogs it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapAction {
    Reclone {
        reason: String,
    },
    /// A person decides: re-cloning would lose what only this replica has, or data the agent
    /// cannot prove is its clone.
    Blocked {
        reason: String,
    },
}

/// `needed`: what the primary purged that this replica lacks; `errant`: what it has that the
/// primary lacks, read before the primary's state.
pub fn gap_action(needed: &str, errant: &Binlogged, has_marker: bool) -> GapAction {
    let gap = format!("the primary purged binary logs this replica still needs ({needed})");
    if !errant.is_empty() {
        return GapAction::Blocked {
            reason: format!(
                "{gap}, and it has errant transactions {errant}: not re-cloned, which would \
                 lose them; bring them to the primary, or delete this pod's data volume"
            ),
        };
    }
    if !has_marker {
        return GapAction::Blocked {
            reason: format!(
                "{gap}, and its data is not a clone the agent made (no clone marker): not \
                 re-cloned; delete this pod's data volume to give it a new clone"
            ),
        };
    }
    GapAction::Reclone { reason: gap }
}

/// MariaDB's error for an IO thread that cannot queue an event: after a primary's node died, the
/// relay log can end in part of an event group whose GTID a restored primary reused.
const RELAY_LOG_WRITE_FAILURE: u32 = 1595;

/// Why the relay log should be discarded, if it should: it holds nothing applied, and what is
/// complete in it the primary sends again from the applied position (MASTER_USE_GTID=slave_pos);
/// a part of an event group from a former primary it never would, so the IO thread stays stuck.
pub fn relay_log_to_discard(flavor: Flavor, status: &ReplicaStatus) -> Option<String> {
    let error = status.io_error.as_ref()?;
    (flavor == Flavor::MariaDb && error.errno == RELAY_LOG_WRITE_FAILURE).then(|| {
        format!(
            "replica IO thread error {}: {}: the relay log ends in part of an event group the \
             primary does not continue",
            error.errno, error.message
        )
    })
}

/// Carries out a plan; `Blocked` is the caller's to report.
pub async fn apply(
    conn: &mut Conn,
    plan: &Plan,
    source: &Source,
    dialect: Dialect,
) -> Result<(), DbError> {
    match plan {
        Plan::Configure { start_at, donor } => {
            tracing::info!(
                phase = %Phase::Configuring, source = %source.host, port = source.port, user = %source.user,
                gtid = %start_at, donor = %donor,
                "configuring replication from the primary, starting at the clone's GTID position"
            );
            db::execute_all(conn, &dialect.configure_replica(source, start_at)).await
        }
        Plan::Repoint { from } => {
            tracing::info!(phase = %Phase::Configuring, from = %from, source = %source.host, "replication points at another host: repointing it at the primary, keeping the applied position");
            db::execute_all(conn, &dialect.repoint_replica(source)).await
        }
        Plan::Secure { verified_with } => {
            let now = match verified_with {
                Some(ca) => format!("verifies the primary against another CA file ({ca})"),
                None => "is configured without verified TLS".to_owned(),
            };
            tracing::info!(source = %source.host, "replication {now} and --replication-tls is set: configuring it again over TLS with --tls-ca-file, keeping the applied position");
            db::execute_all(conn, &dialect.repoint_replica(source)).await
        }
        Plan::Resume => {
            tracing::info!(phase = %Phase::Configuring, source = %source.host, "replication is configured but stopped: resuming it (not reconfiguring)");
            db::execute_all(conn, &[dialect.start_replica().to_owned()]).await
        }
        Plan::Keep => {
            tracing::info!(phase = %Phase::Configuring, source = %source.host, "replication is configured and running: leaving it as it is");
            Ok(())
        }
        Plan::Blocked(_) => Ok(()),
    }
}

/// Creates or updates a user the primary keeps for others (replicas, clone joiners); the
/// statements are binlogged, so every replica gets the same user.
pub async fn ensure_user(
    conn: &mut Conn,
    dialect: Dialect,
    user: &str,
    password: &Secret,
    privilege: &str,
    require_tls: bool,
    purpose: &str,
) -> Result<(), DbError> {
    db::execute_all(
        conn,
        &dialect.ensure_user(user, password, privilege, require_tls),
    )
    .await?;
    tracing::info!(user = %dialect::account(user), privilege, require_tls, "{purpose} user ensured with this privilege only");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::status::ReplicaStatus;

    const PRIMARY: &str = "mysql-0.mysql.default.svc.cluster.local";
    const MARIADB: Flavor = Flavor::MariaDb;
    const CA: &str = "/etc/mysql-sts-agent/tls/ca.crt";

    fn marker(gtid: &str) -> CloneMarker {
        CloneMarker {
            donor: "mysql-1.mysql.default.svc.cluster.local".into(),
            gtid_position: gtid.into(),
            position_source: "xtrabackup_slave_info".into(),
            bytes: 1,
            completed_unix: 1,
            duration_ms: None,
            agent_version: "test".into(),
            promotion: crate::clone::datadir::Promotion::None,
            failed_attempts: None,
        }
    }

    fn status(host: &str, io: IoThread, sql: bool) -> ReplicaStatus {
        ReplicaStatus {
            source_host: host.into(),
            source_port: 3306,
            io_thread: io,
            sql_running: sql,
            io_error: None,
            sql_error: None,
            seconds_behind: None,
            gtid_mode: "Slave_Pos".into(),
            received: Gtids::parse(MARIADB, "").unwrap(),
            verified_tls_ca: None,
        }
    }

    #[test]
    fn fresh_clone_is_configured_from_its_marker() {
        assert_eq!(
            plan(MARIADB, None, Some(&marker("0-100-7")), PRIMARY, None),
            Plan::Configure {
                start_at: Gtids::parse(MARIADB, "0-100-7").unwrap(),
                donor: "mysql-1.mysql.default.svc.cluster.local".into()
            }
        );
    }

    #[test]
    fn configured_replicas_are_resumed_not_reconfigured() {
        let marker = marker("0-100-7");
        let stopped = status(PRIMARY, IoThread::Stopped, false);
        assert_eq!(
            plan(MARIADB, Some(&stopped), Some(&marker), PRIMARY, None),
            Plan::Resume
        );
        let half = status(PRIMARY, IoThread::Running, false);
        assert_eq!(
            plan(MARIADB, Some(&half), Some(&marker), PRIMARY, None),
            Plan::Resume
        );
        let running = status(PRIMARY, IoThread::Connecting, true);
        assert_eq!(
            plan(MARIADB, Some(&running), Some(&marker), PRIMARY, None),
            Plan::Keep
        );
        let elsewhere = status("old-primary", IoThread::Running, true);
        assert_eq!(
            plan(MARIADB, Some(&elsewhere), None, PRIMARY, None),
            Plan::Repoint {
                from: "old-primary".into()
            }
        );
    }

    #[test]
    fn a_replica_without_verified_tls_is_configured_again_when_tls_is_wanted() {
        let plain = status(PRIMARY, IoThread::Running, true);
        assert_eq!(
            plan(MARIADB, Some(&plain), None, PRIMARY, Some(Path::new(CA))),
            Plan::Secure {
                verified_with: None
            }
        );
        assert_eq!(plan(MARIADB, Some(&plain), None, PRIMARY, None), Plan::Keep);
        let verified = ReplicaStatus {
            verified_tls_ca: Some(CA.to_owned()),
            ..plain
        };
        assert_eq!(
            plan(MARIADB, Some(&verified), None, PRIMARY, Some(Path::new(CA))),
            Plan::Keep
        );
        let elsewhere = "/donor/tls/ca.crt";
        let donors = ReplicaStatus {
            verified_tls_ca: Some(elsewhere.to_owned()),
            ..verified.clone()
        };
        assert_eq!(
            plan(MARIADB, Some(&donors), None, PRIMARY, Some(Path::new(CA))),
            Plan::Secure {
                verified_with: Some(elsewhere.to_owned())
            }
        );
        assert_eq!(
            plan(MARIADB, Some(&verified), None, PRIMARY, None),
            Plan::Keep
        );
    }

    #[test]
    fn a_restored_mariadb_binlog_is_reset_only_when_it_lacks_the_clone_position() {
        let position = Gtids::parse(MARIADB, "0-100-7").unwrap();
        let empty = Gtids::parse(MARIADB, "").unwrap();
        assert_eq!(binlog_reset(MARIADB, &empty, &position), Some(&position));
        assert_eq!(binlog_reset(MARIADB, &position, &position), None);
        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let set = Gtids::parse(Flavor::MySql, &format!("{uuid}:1-5")).unwrap();
        let none = Gtids::parse(Flavor::MySql, "").unwrap();
        assert_eq!(binlog_reset(Flavor::MySql, &none, &set), None);
    }

    #[test]
    fn no_marker_and_no_configuration_blocks() {
        assert!(matches!(
            plan(MARIADB, None, None, PRIMARY, None),
            Plan::Blocked(_)
        ));
        assert!(matches!(
            plan(MARIADB, None, Some(&marker("garbage")), PRIMARY, None),
            Plan::Blocked(_)
        ));
    }

    #[test]
    fn a_gap_is_recloned_only_without_errant_transactions_and_with_a_marker() {
        let none = Binlogged::parse(MARIADB, "").unwrap();
        let own = Binlogged::parse(MARIADB, "0-102-3").unwrap();
        assert!(matches!(
            gap_action("0-1-9", &none, true),
            GapAction::Reclone { reason } if reason.contains("purged binary logs this replica still needs (0-1-9)")
        ));
        assert!(matches!(
            gap_action("0-1-9", &own, true),
            GapAction::Blocked { reason } if reason.contains("errant transactions 0-102-3")
        ));
        assert!(matches!(
            gap_action("0-1-9", &none, false),
            GapAction::Blocked { reason } if reason.contains("no clone marker")
        ));
    }

    #[test]
    fn only_a_mariadb_relay_log_write_failure_discards_the_relay_log() {
        let mut stuck = status(PRIMARY, IoThread::Stopped, true);
        stuck.io_error = Some(crate::db::status::ThreadError {
            errno: 1595,
            message: "Relay log write failure: could not queue event from master".into(),
        });
        assert!(
            relay_log_to_discard(MARIADB, &stuck)
                .is_some_and(|reason| reason.starts_with("replica IO thread error 1595"))
        );
        assert_eq!(relay_log_to_discard(Flavor::MySql, &stuck), None);
        let purged = ReplicaStatus {
            io_error: Some(crate::db::status::ThreadError {
                errno: 1236,
                message: "purged".into(),
            }),
            ..stuck
        };
        assert_eq!(relay_log_to_discard(MARIADB, &purged), None);
        assert_eq!(
            relay_log_to_discard(MARIADB, &status(PRIMARY, IoThread::Running, true)),
            None
        );
    }
}
