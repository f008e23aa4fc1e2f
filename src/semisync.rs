//! Lossless writes (`--semi-sync`): semi-synchronous replication with the AFTER_SYNC wait point,
//! so a commit the client saw succeed is on a replica's disk. What the agent sets is decided
//! here, purely, from the pod's role and what the server reports; the SQL is in `db::dialect`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::db::flavor::{Flavor, ServerVersion};
use crate::duration::{DurationError, parse_duration, seconds};
use crate::identity::Role;

/// How long the primary's commits wait for a replica's acknowledgement before the primary falls
/// back to asynchronous replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckTimeout {
    After(Duration),
    /// Never fall back: writes block while no replica acknowledges.
    Forever,
}

/// The largest timeout both servers take (MySQL's maximum, about 49.7 days): "forever".
const FOREVER_MS: u64 = u32::MAX as u64;

impl AckTimeout {
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        if text.trim() == "forever" {
            return Ok(AckTimeout::Forever);
        }
        parse_duration(text).map(AckTimeout::After)
    }

    /// In milliseconds, as the servers take it.
    pub fn millis(self) -> u64 {
        match self {
            AckTimeout::After(after) => {
                u64::try_from(after.as_millis()).map_or(FOREVER_MS, |ms| ms.min(FOREVER_MS))
            }
            AckTimeout::Forever => FOREVER_MS,
        }
    }
}

impl fmt::Display for AckTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckTimeout::After(after) => f.write_str(&seconds(*after)),
            AckTimeout::Forever => f.write_str("forever"),
        }
    }
}

/// The names of semi-sync's variables: MariaDB's built-in `master`/`slave`, MySQL 8.0.26+'s
/// plugins `source`/`replica`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Master,
    Source,
}

impl Names {
    /// None on MySQL before 8.0.26, whose plugins use the old names (not supported).
    pub fn of(version: &ServerVersion) -> Option<Self> {
        match version.flavor {
            Flavor::MariaDb => Some(Names::Master),
            Flavor::MySql => (version.number >= (8, 0, 26)).then_some(Names::Source),
        }
    }

    /// The source side's and the replica side's word.
    pub fn sides(self) -> (&'static str, &'static str) {
        match self {
            Names::Master => ("master", "slave"),
            Names::Source => ("source", "replica"),
        }
    }
}

/// What the server says of semi-sync (its global variables and status), as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SemiSyncFacts {
    /// The primary side's switch (`rpl_semi_sync_{master,source}_enabled`).
    pub enabled: bool,
    /// Whether commits wait for an acknowledgement now (`Rpl_semi_sync_*_status`): off after a
    /// fallback to asynchronous.
    pub active: bool,
    pub wait_point: String,
    pub timeout_ms: u64,
    /// Semi-sync replicas connected (`Rpl_semi_sync_*_clients`).
    pub clients: u64,
    /// Sessions waiting for an acknowledgement now.
    pub waiting_sessions: u64,
    /// Commits acknowledged by a replica (`*_yes_tx`), and those that were not (`*_no_tx`).
    pub acknowledged_commits: u64,
    pub unacknowledged_commits: u64,
    /// The replica side's switch (`rpl_semi_sync_{slave,replica}_enabled`), and whether its IO
    /// thread acknowledges (`Rpl_semi_sync_{slave,replica}_status`).
    pub replica_enabled: bool,
    pub replica_active: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the server has no {0} variable: is semi-sync's plugin loaded? (MySQL: it needs 8.0.26 or \
     later and the plugins init's config fragment loads)"
)]
pub struct MissingVariable(String);

impl SemiSyncFacts {
    /// From the rows of SHOW GLOBAL VARIABLES and SHOW GLOBAL STATUS, names in any case.
    pub fn from_rows(names: Names, rows: &[(String, String)]) -> Result<Self, MissingVariable> {
        let rows: BTreeMap<String, &str> = rows
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()))
            .collect();
        let (source, replica) = names.sides();
        let get = |name: String| rows.get(&name).copied().ok_or(MissingVariable(name));
        let on = |name: String| get(name).map(|v| v.eq_ignore_ascii_case("ON"));
        let number = |name: String| get(name).map(|v| v.parse().unwrap_or(0));
        let p = format!("rpl_semi_sync_{source}");
        let r = format!("rpl_semi_sync_{replica}");
        Ok(SemiSyncFacts {
            enabled: on(format!("{p}_enabled"))?,
            active: on(format!("{p}_status"))?,
            wait_point: get(format!("{p}_wait_point"))?.to_owned(),
            timeout_ms: number(format!("{p}_timeout"))?,
            clients: number(format!("{p}_clients"))?,
            waiting_sessions: number(format!("{p}_wait_sessions"))?,
            acknowledged_commits: number(format!("{p}_yes_tx"))?,
            unacknowledged_commits: number(format!("{p}_no_tx"))?,
            replica_enabled: on(format!("{r}_enabled"))?,
            replica_active: on(format!("{r}_status"))?,
        })
    }
}

/// The wait point that makes writes lossless: the commit waits for the replica's acknowledgement
/// after the binlog is synced and before the storage engine commits, so no other client sees a
/// transaction no replica has.
pub const WAIT_POINT: &str = "AFTER_SYNC";

/// What the agent does to semi-sync on its own server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The primary: wait point, timeout, one acknowledging replica, then on.
    ConfigureSource { reason: &'static str },
    /// A replica: acknowledge; the IO thread reads the switch when it starts, so a running one
    /// is restarted once (one stopped by a person is left stopped).
    EnableReplica { restart_io_thread: bool },
}

/// Semi-sync on, given the role and what the server says. The primary keeps it off until a
/// replica connects, so a lone primary is neither stuck nor slowed; once on, it stays on, and a
/// replica lost later is what the timeout is for.
pub fn decide(
    role: Role,
    facts: &SemiSyncFacts,
    timeout: AckTimeout,
    io_thread_running: bool,
) -> Option<Action> {
    match role {
        Role::Primary if !facts.enabled && facts.clients > 0 => Some(Action::ConfigureSource {
            reason: "a semi-sync replica is connected",
        }),
        Role::Primary
            if facts.enabled
                && (facts.timeout_ms != timeout.millis()
                    || !facts.wait_point.eq_ignore_ascii_case(WAIT_POINT)) =>
        {
            Some(Action::ConfigureSource {
                reason: "the server's wait point or timeout differ from the agent's settings",
            })
        }
        Role::Primary => None,
        Role::Replica if !facts.replica_enabled => Some(Action::EnableReplica {
            restart_io_thread: io_thread_running,
        }),
        Role::Replica => None,
    }
}

/// Why the primary's commits do not wait for a replica now, if they should and do not: it fell
/// back to asynchronous after a timeout (or has not switched back yet).
pub fn fallen_back(role: Role, facts: &SemiSyncFacts, timeout: AckTimeout) -> Option<String> {
    (role == Role::Primary && facts.enabled && !facts.active).then(|| {
        format!(
            "no replica acknowledged a commit within {timeout}: commits do not wait for a \
             replica, a failover now could lose them; semi-sync resumes once a replica catches up"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: AckTimeout = AckTimeout::After(Duration::from_secs(10));

    fn rows(names: Names, values: &[(&str, &str)]) -> Vec<(String, String)> {
        let (source, replica) = names.sides();
        values
            .iter()
            .map(|(name, value)| {
                let name = name.replace("SRC", source).replace("REP", replica);
                (name, (*value).to_owned())
            })
            .collect()
    }

    fn all(names: Names, enabled: &str, status: &str) -> Vec<(String, String)> {
        rows(
            names,
            &[
                ("rpl_semi_sync_SRC_enabled", enabled),
                ("Rpl_semi_sync_SRC_status", status),
                ("rpl_semi_sync_SRC_wait_point", "AFTER_SYNC"),
                ("rpl_semi_sync_SRC_timeout", "10000"),
                ("Rpl_semi_sync_SRC_clients", "1"),
                ("Rpl_semi_sync_SRC_wait_sessions", "0"),
                ("Rpl_semi_sync_SRC_yes_tx", "7"),
                ("Rpl_semi_sync_SRC_no_tx", "2"),
                ("rpl_semi_sync_REP_enabled", "OFF"),
                ("Rpl_semi_sync_REP_status", "OFF"),
            ],
        )
    }

    #[test]
    fn facts_are_read_under_each_servers_names() {
        for names in [Names::Master, Names::Source] {
            let facts = SemiSyncFacts::from_rows(names, &all(names, "ON", "ON")).unwrap();
            assert_eq!(
                facts,
                SemiSyncFacts {
                    enabled: true,
                    active: true,
                    wait_point: "AFTER_SYNC".into(),
                    timeout_ms: 10_000,
                    clients: 1,
                    waiting_sessions: 0,
                    acknowledged_commits: 7,
                    unacknowledged_commits: 2,
                    replica_enabled: false,
                    replica_active: false,
                }
            );
        }
        let mysql_rows = all(Names::Source, "ON", "ON");
        let missing = SemiSyncFacts::from_rows(Names::Master, &mysql_rows).unwrap_err();
        assert_eq!(
            missing,
            MissingVariable("rpl_semi_sync_master_enabled".into())
        );
    }

    #[test]
    fn mysql_needs_8_0_26_for_the_source_and_replica_plugins() {
        let names = |version: &str, comment: &str| {
            Names::of(&ServerVersion::detect(version, comment).unwrap())
        };
        assert_eq!(names("10.11.9-MariaDB", ""), Some(Names::Master));
        assert_eq!(names("9.7.4", "MySQL Community"), Some(Names::Source));
        assert_eq!(names("8.0.26", "MySQL Community"), Some(Names::Source));
        assert_eq!(names("8.0.25", "MySQL Community"), None);
    }

    #[test]
    fn timeouts_are_durations_or_forever_in_milliseconds() {
        assert_eq!(AckTimeout::parse("10s"), Ok(TEN_S));
        assert_eq!(TEN_S.millis(), 10_000);
        assert_eq!(AckTimeout::parse("forever"), Ok(AckTimeout::Forever));
        assert_eq!(AckTimeout::Forever.millis(), 4_294_967_295);
        let long = AckTimeout::After(Duration::from_secs(u64::MAX / 2));
        assert_eq!(long.millis(), AckTimeout::Forever.millis());
        assert!(AckTimeout::parse("never").is_err());
        assert_eq!(AckTimeout::Forever.to_string(), "forever");
        assert_eq!(TEN_S.to_string(), "10.0s");
    }

    fn primary(enabled: bool, clients: u64) -> SemiSyncFacts {
        SemiSyncFacts {
            enabled,
            active: enabled,
            wait_point: if enabled {
                "AFTER_SYNC"
            } else {
                "AFTER_COMMIT"
            }
            .into(),
            timeout_ms: if enabled { 10_000 } else { 0 },
            clients,
            ..SemiSyncFacts::default()
        }
    }

    #[test]
    fn the_primary_turns_it_on_once_a_replica_connects_and_keeps_it_on() {
        let lone = primary(false, 0);
        assert_eq!(decide(Role::Primary, &lone, TEN_S, false), None);
        assert!(matches!(
            decide(Role::Primary, &primary(false, 1), TEN_S, false),
            Some(Action::ConfigureSource { .. })
        ));
        // On, and the replica gone: the timeout decides, the agent does not switch it off.
        assert_eq!(decide(Role::Primary, &primary(true, 0), TEN_S, false), None);
        assert_eq!(decide(Role::Primary, &primary(true, 2), TEN_S, false), None);
        // On with other settings (a restarted agent with a new timeout): set again.
        assert!(matches!(
            decide(Role::Primary, &primary(true, 1), AckTimeout::Forever, false),
            Some(Action::ConfigureSource { .. })
        ));
    }

    #[test]
    fn a_replica_enables_it_and_restarts_only_a_running_io_thread() {
        let off = SemiSyncFacts::default();
        assert_eq!(
            decide(Role::Replica, &off, TEN_S, true),
            Some(Action::EnableReplica {
                restart_io_thread: true
            })
        );
        assert_eq!(
            decide(Role::Replica, &off, TEN_S, false),
            Some(Action::EnableReplica {
                restart_io_thread: false
            })
        );
        let on = SemiSyncFacts {
            replica_enabled: true,
            ..off
        };
        assert_eq!(decide(Role::Replica, &on, TEN_S, true), None);
    }

    #[test]
    fn only_an_enabled_primary_that_stopped_waiting_has_fallen_back() {
        let mut facts = primary(true, 0);
        assert_eq!(fallen_back(Role::Primary, &facts, TEN_S), None);
        facts.active = false;
        let reason = fallen_back(Role::Primary, &facts, TEN_S).unwrap();
        assert!(reason.contains("within 10.0s"), "{reason}");
        assert_eq!(fallen_back(Role::Replica, &facts, TEN_S), None);
        assert_eq!(fallen_back(Role::Primary, &primary(false, 0), TEN_S), None);
    }
}
