//! GTID state of either flavor, so that readiness asks one question of both: has this
//! replica applied everything the primary had at some time?

pub mod mariadb;
pub mod mysql;

use std::fmt;

pub use mariadb::{BinlogState, GtidError as GtidPositionError, GtidPosition};
pub use mysql::{GtidSet, GtidSetError};

use crate::db::flavor::Flavor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtids {
    /// MariaDB: the last GTID per replication domain.
    MariaDb(GtidPosition),
    /// MySQL: the set of all executed GTIDs.
    MySql(GtidSet),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GtidError {
    #[error(transparent)]
    MariaDb(#[from] GtidPositionError),
    #[error(transparent)]
    MySql(#[from] GtidSetError),
}

impl Gtids {
    pub fn parse(flavor: Flavor, text: &str) -> Result<Self, GtidError> {
        Ok(match flavor {
            Flavor::MariaDb => Gtids::MariaDb(GtidPosition::parse(text)?),
            Flavor::MySql => Gtids::MySql(GtidSet::parse(text)?),
        })
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Gtids::MariaDb(position) => position.is_empty(),
            Gtids::MySql(set) => set.is_empty(),
        }
    }

    /// True when every transaction of `other` is included in `self` (never across flavors).
    pub fn contains(&self, other: &Gtids) -> bool {
        match (self, other) {
            (Gtids::MariaDb(ours), Gtids::MariaDb(theirs)) => ours.contains(theirs),
            (Gtids::MySql(ours), Gtids::MySql(theirs)) => ours.contains(theirs),
            _ => false,
        }
    }

    /// What `self` or `other` holds (`self` across flavors).
    pub fn union(&self, other: &Gtids) -> Gtids {
        match (self, other) {
            (Gtids::MariaDb(ours), Gtids::MariaDb(theirs)) => Gtids::MariaDb(ours.union(theirs)),
            (Gtids::MySql(ours), Gtids::MySql(theirs)) => Gtids::MySql(ours.union(theirs)),
            _ => self.clone(),
        }
    }

    /// How many transactions of `ahead` `self` lacks (0 across flavors: nothing to compare).
    pub fn missing_from(&self, ahead: &Gtids) -> u64 {
        match (self, ahead) {
            (Gtids::MariaDb(ours), Gtids::MariaDb(theirs)) => ours.missing_from(theirs),
            (Gtids::MySql(ours), Gtids::MySql(theirs)) => ours.missing_from(theirs),
            _ => 0,
        }
    }
}

/// What a replica that applied `applied` (and whose IO thread received `received`, which it
/// asks for no more) would need that the primary purged, described; `None` when replication
/// can resume. MariaDB: `purged` is the state before the primary's oldest binlog; MySQL:
/// gtid_purged.
pub fn purged_gap(purged: &Gtids, applied: &Gtids, received: &Gtids) -> Option<String> {
    match (purged, applied, received) {
        (Gtids::MySql(purged), Gtids::MySql(applied), Gtids::MySql(received)) => {
            let needed = purged.difference(applied).difference(received);
            (!needed.is_empty()).then(|| needed.to_string())
        }
        (Gtids::MariaDb(purged), Gtids::MariaDb(applied), _) => (!applied.contains(purged))
            .then(|| format!("the transactions after {applied} up to {purged}")),
        _ => None,
    }
}

/// Everything a server has binlogged, in the form that tells errant transactions apart:
/// MariaDB `@@gtid_binlog_state` (per domain and server id), MySQL `@@gtid_executed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binlogged {
    MariaDb(BinlogState),
    MySql(GtidSet),
}

impl Binlogged {
    pub fn parse(flavor: Flavor, text: &str) -> Result<Self, GtidError> {
        Ok(match flavor {
            Flavor::MariaDb => Binlogged::MariaDb(BinlogState::parse(text)?),
            Flavor::MySql => Binlogged::MySql(GtidSet::parse(text)?),
        })
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Binlogged::MariaDb(state) => state.is_empty(),
            Binlogged::MySql(set) => set.is_empty(),
        }
    }

    /// Errant transactions: what this replica binlogged that `primary` does not have. Only
    /// meaningful when `primary` was read after `self` (a transaction the replica applied in
    /// between would look errant otherwise); across flavors, nothing.
    pub fn errant(&self, primary: &Binlogged) -> Binlogged {
        match (self, primary) {
            (Binlogged::MariaDb(ours), Binlogged::MariaDb(theirs)) => {
                Binlogged::MariaDb(ours.errant(theirs))
            }
            (Binlogged::MySql(ours), Binlogged::MySql(theirs)) => {
                Binlogged::MySql(ours.difference(theirs))
            }
            (Binlogged::MariaDb(_), _) => Binlogged::MariaDb(BinlogState::default()),
            (Binlogged::MySql(_), _) => Binlogged::MySql(GtidSet::default()),
        }
    }
}

impl fmt::Display for Binlogged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binlogged::MariaDb(state) => state.fmt(f),
            Binlogged::MySql(set) => set.fmt(f),
        }
    }
}

impl serde::Serialize for Binlogged {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Gtids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtids::MariaDb(position) => position.fmt(f),
            Gtids::MySql(set) => set.fmt(f),
        }
    }
}

impl serde::Serialize for Gtids {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_flavor_and_never_compares_across_flavors() {
        let mariadb = Gtids::parse(Flavor::MariaDb, "0-100-5").unwrap();
        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let mysql = Gtids::parse(Flavor::MySql, &format!("{uuid}:1-5")).unwrap();
        assert!(Gtids::parse(Flavor::MySql, "0-100-5").is_err());
        assert!(Gtids::parse(Flavor::MariaDb, &format!("{uuid}:1-5")).is_err());
        assert!(mariadb.contains(&mariadb) && mysql.contains(&mysql));
        assert!(!mariadb.contains(&mysql) && !mysql.contains(&mariadb));
        assert_eq!(mysql.to_string(), format!("{uuid}:1-5"));
    }

    #[test]
    fn errant_transactions_per_flavor() {
        let mariadb = |t: &str| Binlogged::parse(Flavor::MariaDb, t).unwrap();
        let replica = mariadb("0-100-9,0-101-10");
        assert_eq!(replica.errant(&mariadb("0-100-9")).to_string(), "0-101-10");
        assert!(replica.errant(&replica).is_empty());
        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let mysql = |t: &str| Binlogged::parse(Flavor::MySql, &format!("{uuid}:{t}")).unwrap();
        assert_eq!(
            mysql("1-12").errant(&mysql("1-10")).to_string(),
            format!("{uuid}:11-12")
        );
        assert!(mysql("1-10").errant(&mysql("1-12")).is_empty());
        assert!(replica.errant(&mysql("1-10")).is_empty());
    }

    #[test]
    fn a_gap_is_what_the_primary_purged_that_the_replica_lacks() {
        let mariadb = |t: &str| Gtids::parse(Flavor::MariaDb, t).unwrap();
        let none = mariadb("");
        // The oldest binlog starts after 0-1-9: a replica at 0-1-9 resumes, one at 0-1-5 cannot.
        assert_eq!(
            purged_gap(&mariadb("0-1-9"), &mariadb("0-1-9"), &none),
            None
        );
        assert_eq!(
            purged_gap(&mariadb("0-1-9"), &mariadb("0-1-12"), &none),
            None
        );
        assert_eq!(
            purged_gap(&mariadb("0-1-9"), &mariadb("0-1-5"), &none).as_deref(),
            Some("the transactions after 0-1-5 up to 0-1-9")
        );
        assert!(
            purged_gap(&mariadb("0-1-9,1-2-3"), &mariadb("0-1-9"), &none).is_some(),
            "a domain the replica never saw"
        );
        assert_eq!(purged_gap(&none, &none, &none), None, "nothing purged yet");

        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let mysql = |t: &str| Gtids::parse(Flavor::MySql, &format!("{uuid}:{t}")).unwrap();
        let empty = Gtids::parse(Flavor::MySql, "").unwrap();
        assert_eq!(purged_gap(&mysql("1-10"), &mysql("1-10"), &empty), None);
        assert_eq!(
            purged_gap(&mysql("1-10"), &mysql("1-4"), &empty),
            Some(format!("{uuid}:5-10"))
        );
        assert_eq!(
            purged_gap(&mysql("1-10"), &mysql("1-4"), &mysql("5-10")),
            None,
            "received into the relay log, not needed again"
        );
        assert_eq!(purged_gap(&mysql("1-10"), &mariadb("0-1-1"), &empty), None);
    }

    #[test]
    fn a_union_holds_both() {
        let mariadb = |t: &str| Gtids::parse(Flavor::MariaDb, t).unwrap();
        assert_eq!(
            mariadb("0-1-5,1-2-3").union(&mariadb("0-1-7")),
            mariadb("0-1-7,1-2-3")
        );
        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let mysql = |t: &str| Gtids::parse(Flavor::MySql, &format!("{uuid}:{t}")).unwrap();
        assert_eq!(mysql("1-5").union(&mysql("6-9:12")), mysql("1-9:12"));
        assert_eq!(mysql("1-5").union(&mariadb("0-1-1")), mysql("1-5"));
    }
}
