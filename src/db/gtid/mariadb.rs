//! MariaDB GTID positions (`domain-server-seq`, one per replication domain, comma separated).
//!
//! In a position, each domain has one last-applied GTID, and sequence numbers grow within a
//! domain (gtid_strict_mode), so "has applied everything of" is a per-domain comparison.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPosition {
    by_domain: BTreeMap<u32, Gtid>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a MariaDB GTID position (expected domain-server-seq[,...], e.g. 0-100-42)")]
pub struct GtidError(pub String);

impl GtidPosition {
    pub fn parse(text: &str) -> Result<Self, GtidError> {
        let mut by_domain = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid = parse_gtid(part).ok_or_else(|| GtidError(text.to_owned()))?;
            // A position lists a domain once; if a tool repeats one, the highest seq wins.
            by_domain
                .entry(gtid.domain)
                .and_modify(|known: &mut Gtid| {
                    if gtid.seq > known.seq {
                        *known = gtid
                    }
                })
                .or_insert(gtid);
        }
        Ok(GtidPosition { by_domain })
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// True when every transaction of `other` is included in `self`.
    pub fn contains(&self, other: &GtidPosition) -> bool {
        other.by_domain.values().all(|theirs| {
            self.by_domain
                .get(&theirs.domain)
                .is_some_and(|ours| ours.seq >= theirs.seq)
        })
    }

    /// The later GTID of each domain of `self` or `other`.
    pub fn union(&self, other: &GtidPosition) -> GtidPosition {
        let mut by_domain = self.by_domain.clone();
        for theirs in other.by_domain.values() {
            by_domain
                .entry(theirs.domain)
                .and_modify(|ours| {
                    if theirs.seq > ours.seq {
                        *ours = *theirs
                    }
                })
                .or_insert(*theirs);
        }
        GtidPosition { by_domain }
    }

    /// How many transactions of `ahead` are missing from `self`, counted by sequence numbers.
    pub fn missing_from(&self, ahead: &GtidPosition) -> u64 {
        ahead
            .by_domain
            .values()
            .map(|theirs| {
                let ours = self.by_domain.get(&theirs.domain).map_or(0, |g| g.seq);
                theirs.seq.saturating_sub(ours)
            })
            .sum()
    }
}

/// `@@gtid_binlog_state`: the last sequence number binlogged for every (domain, server id)
/// pair, so it shows who wrote what, unlike a position's one GTID per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinlogState {
    last: BTreeMap<(u32, u32), u64>,
}

impl BinlogState {
    pub fn parse(text: &str) -> Result<Self, GtidError> {
        let mut last = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid = parse_gtid(part).ok_or_else(|| GtidError(text.to_owned()))?;
            let seq = last
                .entry((gtid.domain, gtid.server_id))
                .or_insert(gtid.seq);
            *seq = (*seq).max(gtid.seq);
        }
        Ok(BinlogState { last })
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The entries of `self` that `primary` lacks or holds with a lower sequence number: what
    /// this server binlogged that never came from the primary.
    pub fn errant(&self, primary: &BinlogState) -> BinlogState {
        let last = self
            .last
            .iter()
            .filter(|(key, seq)| primary.last.get(key).is_none_or(|theirs| theirs < seq))
            .map(|(key, seq)| (*key, *seq))
            .collect();
        BinlogState { last }
    }
}

impl fmt::Display for BinlogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ((domain, server_id), seq)) in self.last.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{domain}-{server_id}-{seq}")?;
        }
        Ok(())
    }
}

fn parse_gtid(text: &str) -> Option<Gtid> {
    let mut fields = text.splitn(3, '-');
    let gtid = Gtid {
        domain: fields.next()?.parse().ok()?,
        server_id: fields.next()?.parse().ok()?,
        seq: fields.next()?.parse().ok()?,
    };
    Some(gtid)
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.by_domain.values().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}-{}-{}", g.domain, g.server_id, g.seq)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(text: &str) -> GtidPosition {
        GtidPosition::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_several_domains_in_order() {
        let p = pos("1-101-7, 0-100-42");
        assert_eq!(p.to_string(), "0-100-42,1-101-7");
        assert!(pos("").is_empty());
        assert_eq!(pos("0-100-42,0-100-40").to_string(), "0-100-42");
    }

    #[test]
    fn refuses_malformed_positions() {
        for bad in ["0-100", "a-b-c", "0-100-42-1", "0--1", "0-100-x", "-1-2-3"] {
            assert!(GtidPosition::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn containment_is_per_domain() {
        let replica = pos("0-100-42,1-101-7");
        assert!(replica.contains(&pos("0-100-42")));
        assert!(replica.contains(&pos("0-100-40,1-101-7")));
        assert!(replica.contains(&pos("")));
        assert!(!replica.contains(&pos("0-100-43")));
        assert!(!replica.contains(&pos("0-100-1,2-102-1")));
        assert!(pos("").contains(&pos("")));
        assert!(!pos("").contains(&pos("0-100-1")));
        // The server id of the last event does not matter: sequence numbers order a domain.
        assert!(pos("0-101-50").contains(&pos("0-100-42")));
    }

    #[test]
    fn errant_entries_are_those_the_primary_lacks_or_has_fewer_of() {
        let state = |t: &str| BinlogState::parse(t).unwrap();
        let primary = state("0-100-50,1-100-7");
        // Everything came from the primary, possibly not all of it yet.
        assert!(state("0-100-50,1-100-7").errant(&primary).is_empty());
        assert!(state("0-100-42").errant(&primary).is_empty());
        assert!(state("").errant(&primary).is_empty());
        // Written here (server 101), or by a former primary the current one never heard of.
        let replica = state("0-100-50,0-101-51,1-100-7,2-102-3");
        assert_eq!(replica.errant(&primary).to_string(), "0-101-51,2-102-3");
        // Ahead of the primary under its own server id: a transaction the primary lost.
        assert_eq!(state("0-100-52").errant(&primary).to_string(), "0-100-52");
        assert!(BinlogState::parse("0-100").is_err());
    }

    #[test]
    fn counts_missing_transactions() {
        let primary = pos("0-100-1276,1-101-10");
        assert_eq!(pos("0-100-42,1-101-7").missing_from(&primary), 1234 + 3);
        assert_eq!(pos("").missing_from(&primary), 1286);
        assert_eq!(primary.missing_from(&pos("0-100-5")), 0);
    }
}
