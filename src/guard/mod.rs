//! The first ordinal's volume-loss guard. On an empty datadir the first ordinal asks its peers
//! whether any holds data before the server may initialize an empty database: a lost volume is
//! restored from the most advanced peer instead of becoming an empty primary that takes writes.
//!
//! `decide` is the pure decision; `survey` finds and asks the peers.

pub mod survey;

use serde::{Deserialize, Serialize};

use crate::db::gtid::Gtids;

/// What a sidecar says about its data (`GET /data`). Unauthenticated, like `/status`: GTID
/// sets are not secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    pub hostname: String,
    pub ordinal: u32,
    /// True when the server has applied any transaction.
    pub holds_data: bool,
    /// What the server has applied (MariaDB `gtid_slave_pos`, MySQL `gtid_executed`).
    pub gtids: String,
    /// What its IO thread received (in the relay log, applied or not): semi-sync acknowledges
    /// a commit once it is there. Reports of earlier versions have none.
    #[serde(default)]
    pub received: String,
}

/// A peer that answered, with its parsed GTID state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnswer {
    pub ordinal: u32,
    pub name: String,
    /// What it has applied and what it received: what it holds once its relay log is applied,
    /// which a restore from it waits for (the donor serves only then).
    pub gtids: Gtids,
}

impl PeerAnswer {
    fn holds_data(&self) -> bool {
        !self.gtids.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to lose: the server may initialize an empty datadir.
    StartEmpty { reason: String },
    /// Restore from this peer: its data contains every other peer's.
    Restore { peer: PeerAnswer, reason: String },
    /// Peers hold data, but none holds all of it: a person has to choose.
    Refuse { reason: String },
}

/// Decides from the peers that answered (every peer whose name resolves, in ordinal order).
pub fn decide(peers: &[PeerAnswer]) -> Decision {
    if peers.is_empty() {
        return Decision::StartEmpty {
            reason: "no peer's name resolves: a new cluster".to_owned(),
        };
    }
    let holders: Vec<&PeerAnswer> = peers.iter().filter(|p| p.holds_data()).collect();
    if holders.is_empty() {
        return Decision::StartEmpty {
            reason: format!(
                "every peer answered and holds no data ({})",
                names(peers.iter())
            ),
        };
    }
    let mut by_ordinal = holders.clone();
    by_ordinal.sort_by_key(|p| p.ordinal);
    // The lowest ordinal whose set contains every other's: the most advanced, ties to the lowest.
    let most_advanced = by_ordinal
        .iter()
        .find(|candidate| holders.iter().all(|p| candidate.gtids.contains(&p.gtids)));
    match most_advanced {
        Some(peer) => Decision::Restore {
            peer: (*peer).clone(),
            reason: format!(
                "its GTID set {} contains every peer's ({})",
                peer.gtids,
                sets(holders.iter().copied())
            ),
        },
        None => Decision::Refuse {
            reason: format!(
                "the peers' data diverged, no GTID set contains all the others ({}): restore \
                 the first ordinal's data by hand, or set --allow-empty-start to start it empty",
                sets(holders.iter().copied())
            ),
        },
    }
}

fn names<'a>(peers: impl Iterator<Item = &'a PeerAnswer>) -> String {
    peers
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn sets<'a>(peers: impl Iterator<Item = &'a PeerAnswer>) -> String {
    peers
        .map(|p| format!("{} has {}", p.name, p.gtids))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::flavor::Flavor;

    const UUID: &str = "83f00eb9-e579-11f1-a5e0-02fc00000001";

    fn peer(ordinal: u32, flavor: Flavor, gtids: &str) -> PeerAnswer {
        PeerAnswer {
            ordinal,
            name: format!("mysql-{ordinal}"),
            gtids: Gtids::parse(flavor, gtids).unwrap(),
        }
    }

    fn restored_from(decision: Decision) -> u32 {
        match decision {
            Decision::Restore { peer, .. } => peer.ordinal,
            other => panic!("expected a restore, got {other:?}"),
        }
    }

    #[test]
    fn a_new_cluster_or_empty_peers_start_empty() {
        assert!(
            matches!(decide(&[]), Decision::StartEmpty { reason } if reason.contains("new cluster"))
        );
        let empty = [peer(1, Flavor::MariaDb, ""), peer(2, Flavor::MariaDb, "")];
        assert!(matches!(
            decide(&empty),
            Decision::StartEmpty { reason } if reason.contains("mysql-1, mysql-2")
        ));
    }

    #[test]
    fn the_most_advanced_peer_is_chosen_ties_to_the_lowest_ordinal() {
        let maria = [
            peer(1, Flavor::MariaDb, "0-100-7"),
            peer(2, Flavor::MariaDb, "0-100-9"),
            peer(3, Flavor::MariaDb, ""),
        ];
        assert_eq!(restored_from(decide(&maria)), 2);
        let tie = [
            peer(1, Flavor::MariaDb, "0-100-9"),
            peer(2, Flavor::MariaDb, "0-100-9"),
        ];
        assert_eq!(restored_from(decide(&tie)), 1);
        let mysql = [
            peer(1, Flavor::MySql, &format!("{UUID}:1-20")),
            peer(2, Flavor::MySql, &format!("{UUID}:1-25")),
        ];
        assert_eq!(restored_from(decide(&mysql)), 2);
    }

    #[test]
    fn diverged_peers_are_refused_naming_the_sets() {
        let mysql = [
            peer(1, Flavor::MySql, &format!("{UUID}:1-20")),
            peer(2, Flavor::MySql, &format!("{UUID}:1-10:12-20")),
        ];
        let mysql = [
            mysql[0].clone(),
            PeerAnswer {
                gtids: Gtids::parse(
                    Flavor::MySql,
                    &format!("{UUID}:1-19,93a00eb9-e579-11f1-a5e0-02fc00000002:1"),
                )
                .unwrap(),
                ..mysql[1].clone()
            },
        ];
        let Decision::Refuse { reason } = decide(&mysql) else {
            panic!("diverged sets must be refused")
        };
        assert!(
            reason.contains("mysql-1 has") && reason.contains("mysql-2 has"),
            "{reason}"
        );
        let maria = [
            peer(1, Flavor::MariaDb, "0-100-9,1-101-3"),
            peer(2, Flavor::MariaDb, "0-100-10"),
        ];
        assert!(matches!(decide(&maria), Decision::Refuse { .. }));
    }

    #[test]
    fn a_report_without_received_gtids_is_an_earlier_versions() {
        let old = r#"{"hostname":"db-1","ordinal":1,"holds_data":true,"gtids":"0-100-5"}"#;
        let report: DataReport = serde_json::from_str(old).unwrap();
        assert_eq!(
            (report.gtids.as_str(), report.received.as_str()),
            ("0-100-5", "")
        );
    }
}
