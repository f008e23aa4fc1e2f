//! What the agent observes of a server: below both the queries (`db`) and the readiness rules
//! (`health`), so that neither needs the other's types.

use serde::Serialize;

use super::gtid::Gtids;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerFacts {
    /// Flavor and `VERSION()`, e.g. "MySQL 9.7.4-2".
    pub version: String,
    pub read_only: bool,
    /// What this server has applied as a replica (MariaDB gtid_slave_pos, MySQL gtid_executed).
    pub gtid_applied: Gtids,
    /// What its binlog holds (MariaDB gtid_binlog_pos, MySQL gtid_executed).
    pub gtid_binlog: Gtids,
}
