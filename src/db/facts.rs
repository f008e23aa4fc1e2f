//! What the agent observes of a server: below both the queries (`db`) and the readiness rules
//! (`health`), so that neither needs the other's types.

use serde::Serialize;

use super::gtid::{Binlogged, Gtids};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerFacts {
    /// Flavor and `VERSION()`, e.g. "MySQL 9.7.4-2".
    pub version: String,
    pub read_only: bool,
    /// MySQL only: read_only that binds privileged users too.
    pub super_read_only: Option<bool>,
    /// What this server has applied as a replica (MariaDB gtid_slave_pos, MySQL gtid_executed).
    pub gtid_applied: Gtids,
    /// What its binlog holds (MariaDB gtid_binlog_state, MySQL gtid_executed).
    pub gtid_binlog: Binlogged,
}

impl ServerFacts {
    /// Why clients can write here, if they can: `read_only` off, or on MySQL `super_read_only`
    /// off (privileged users, such as root, write through plain `read_only`).
    pub fn writable(&self) -> Option<&'static str> {
        match (self.read_only, self.super_read_only) {
            (false, _) => Some("read_only is OFF"),
            (true, Some(false)) => Some("super_read_only is OFF"),
            (true, _) => None,
        }
    }
}

/// What a replica samples on the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryState {
    /// For the lag: MariaDB gtid_binlog_pos, MySQL gtid_executed.
    pub position: Gtids,
    /// For errant transactions: MariaDB gtid_binlog_state, MySQL gtid_executed.
    pub binlogged: Binlogged,
}
