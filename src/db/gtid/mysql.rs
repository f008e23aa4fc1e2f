//! MySQL GTID sets: `uuid:1-5:7,uuid2:1-3`, and since 8.3 tags, `uuid:1-5:batch:1-2`.
//!
//! A set is a union of transaction numbers per (source uuid, tag), so "has applied everything
//! of" is interval containment, and gaps are possible (unlike a MariaDB position).

use std::collections::BTreeMap;
use std::fmt;

/// Transactions of one source and tag: sorted, disjoint, non-adjacent inclusive ranges.
type Intervals = Vec<(u64, u64)>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    /// Keyed by (lowercase uuid, lowercase tag or "" for untagged).
    by_source: BTreeMap<(String, String), Intervals>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a MySQL GTID set (expected uuid:interval[:tag:interval...][,...])")]
pub struct GtidSetError(pub String);

impl GtidSet {
    pub fn parse(text: &str) -> Result<Self, GtidSetError> {
        let bad = || GtidSetError(text.to_owned());
        let mut set = GtidSet::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut items = part.split(':');
            let uuid = items.next().filter(|u| is_uuid(u)).ok_or_else(bad)?;
            let uuid = uuid.to_ascii_lowercase();
            let mut tag = String::new();
            let mut intervals_since_tag = 0;
            for item in items {
                if let Some(range) = parse_interval(item) {
                    set.add(&uuid, &tag, range);
                    intervals_since_tag += 1;
                } else if is_tag(item) && (tag.is_empty() || intervals_since_tag > 0) {
                    tag = item.to_ascii_lowercase();
                    intervals_since_tag = 0;
                } else {
                    return Err(bad());
                }
            }
            // Every uuid and every tag needs at least one interval.
            if intervals_since_tag == 0 {
                return Err(bad());
            }
        }
        Ok(set)
    }

    fn add(&mut self, uuid: &str, tag: &str, range: (u64, u64)) {
        let intervals = self
            .by_source
            .entry((uuid.to_owned(), tag.to_owned()))
            .or_default();
        intervals.push(range);
        intervals.sort_unstable();
        let mut merged: Intervals = Vec::with_capacity(intervals.len());
        for &(start, end) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        *intervals = merged;
    }

    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// True when every transaction of `other` is in `self`.
    pub fn contains(&self, other: &GtidSet) -> bool {
        self.missing_from(other) == 0
    }

    /// Every transaction of `self` or `other`.
    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        for ((uuid, tag), theirs) in &other.by_source {
            for &range in theirs {
                out.add(uuid, tag, range);
            }
        }
        out
    }

    /// The transactions of `self` that are not in `other`.
    pub fn difference(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::default();
        for ((uuid, tag), ours) in &self.by_source {
            let theirs = other
                .by_source
                .get(&(uuid.clone(), tag.clone()))
                .map_or(&[][..], Vec::as_slice);
            for &range in ours {
                for left in subtract(range, theirs) {
                    out.add(uuid, tag, left);
                }
            }
        }
        out
    }

    /// How many transactions of `ahead` are not in `self`.
    pub fn missing_from(&self, ahead: &GtidSet) -> u64 {
        ahead
            .by_source
            .iter()
            .map(|(key, theirs)| {
                let ours = self.by_source.get(key).map_or(&[][..], Vec::as_slice);
                theirs
                    .iter()
                    .map(|&range| count(range) - overlap(range, ours))
                    .sum::<u64>()
            })
            .sum()
    }
}

fn count((start, end): (u64, u64)) -> u64 {
    end - start + 1
}

fn overlap((start, end): (u64, u64), intervals: &[(u64, u64)]) -> u64 {
    intervals
        .iter()
        .filter(|&&(s, e)| s <= end && e >= start)
        .map(|&(s, e)| count((s.max(start), e.min(end))))
        .sum()
}

/// The parts of `range` outside the sorted, disjoint `intervals`.
fn subtract((start, end): (u64, u64), intervals: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut left = Vec::new();
    let mut next = start;
    for &(s, e) in intervals.iter().filter(|&&(s, e)| s <= end && e >= start) {
        if s > next {
            left.push((next, s - 1));
        }
        next = next.max(e.saturating_add(1));
    }
    if next <= end {
        left.push((next, end));
    }
    left
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A tag: up to 32 letters, digits and underscores, not starting with a digit.
fn is_tag(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `7` or `1-5`; transaction numbers start at 1.
fn parse_interval(text: &str) -> Option<(u64, u64)> {
    let number = |t: &str| {
        t.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse::<u64>().ok())
            .flatten()
            .filter(|n| *n > 0)
    };
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (number(start)?, number(end)?),
        None => (number(text)?, number(text)?),
    };
    (start <= end).then_some((start, end))
}

impl fmt::Display for GtidSet {
    /// MySQL's own form: uuids in order, untagged intervals first, then tags in order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last_uuid: Option<&str> = None;
        for ((uuid, tag), intervals) in &self.by_source {
            if last_uuid != Some(uuid.as_str()) {
                if last_uuid.is_some() {
                    f.write_str(",")?;
                }
                f.write_str(uuid)?;
                last_uuid = Some(uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(start, end) in intervals {
                if start == end {
                    write!(f, ":{start}")?;
                } else {
                    write!(f, ":{start}-{end}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "83f00eb9-e579-11f1-a5e0-02fc00000001";
    const B: &str = "8ad3c1c5-e579-11f1-a595-02fc00000001";

    fn set(text: &str) -> GtidSet {
        GtidSet::parse(text).unwrap()
    }

    #[test]
    fn parses_mysql_output_and_prints_it_back() {
        // As @@gtid_executed prints it: a newline after each comma, a tag after untagged ranges.
        let text = format!("{A}:1-6:batch_1:1,\n{B}:1-3:5");
        assert_eq!(set(&text).to_string(), text.replace('\n', ""));
        assert!(set("").is_empty());
        assert!(set(" \n").is_empty());
    }

    #[test]
    fn normalizes_case_order_and_adjacent_ranges() {
        let text = format!("{B}:5:1-3,{}:Batch_1:1:3-4:2", A.to_uppercase());
        assert_eq!(set(&text).to_string(), format!("{A}:batch_1:1-4,{B}:1-3:5"));
        assert_eq!(
            set(&format!("{A}:1-3:2-9:11")).to_string(),
            format!("{A}:1-9:11")
        );
    }

    #[test]
    fn refuses_malformed_sets() {
        for bad in [
            "0-100-42".to_owned(),
            A.to_owned(),
            format!("{A}:"),
            format!("{A}:0"),
            format!("{A}:5-3"),
            format!("{A}:1-x"),
            format!("{A}:tag"),
            format!("{A}:1:tag"),
            format!("{A}:1:9tag:1"),
            format!("{A}:1:a:b:1"),
            format!("{}:1", &A[1..]),
        ] {
            assert!(GtidSet::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn containment_is_per_source_and_tag_and_sees_gaps() {
        let replica = set(&format!("{A}:1-100:batch:1-2,{B}:1-5"));
        assert!(replica.contains(&set(&format!("{A}:1-100"))));
        assert!(replica.contains(&set(&format!("{A}:50:batch:2,{B}:3-5"))));
        assert!(replica.contains(&set("")));
        assert!(!replica.contains(&set(&format!("{A}:1-101"))));
        assert!(!replica.contains(&set(&format!("{A}:other:1"))));
        // A gap: 4 is missing even though higher numbers are present.
        assert!(!set(&format!("{A}:1-3:5-9")).contains(&set(&format!("{A}:1-9"))));
    }

    #[test]
    fn difference_keeps_what_the_other_set_lacks() {
        let replica = set(&format!("{A}:1-100:batch:1-2,{B}:1-5"));
        assert!(replica.difference(&replica).is_empty());
        let primary = set(&format!("{A}:1-10:20-100"));
        assert_eq!(
            replica.difference(&primary).to_string(),
            format!("{A}:11-19:batch:1-2,{B}:1-5")
        );
        assert_eq!(
            set(&format!("{A}:1-9")).difference(&set(&format!("{A}:3:5-6"))),
            set(&format!("{A}:1-2:4:7-9"))
        );
        assert!(set("").difference(&primary).is_empty());
    }

    #[test]
    fn counts_missing_transactions_across_gaps() {
        let primary = set(&format!("{A}:1-1276:batch:1-10,{B}:1-3"));
        let replica = set(&format!("{A}:1-42:50-59:batch:1-7"));
        assert_eq!(replica.missing_from(&primary), (1276 - 42 - 10) + 3 + 3);
        assert_eq!(primary.missing_from(&replica), 0);
        assert_eq!(set("").missing_from(&primary), 1276 + 10 + 3);
    }
}
