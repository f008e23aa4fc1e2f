//! How far a clone has come. `Transfer` is the arithmetic (rate, ETA). `ProgressRecord` is what
//! the joiner keeps in its staging directory (`progress.json`, rewritten every few seconds):
//! `mysql-sts-agent status` reads it while no agent answers (an init container has no sidecar
//! beside it), and the sidecar's `/status` shows it during a re-clone. `Progress` is the
//! joiner's reporter: it logs the clone every few seconds and keeps the file current.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{mib, now_unix, rate_mib_s};
use crate::duration::millis;
use crate::fsutil;

/// In the staging directory, so that it goes with it whenever the clone ends.
pub const PROGRESS_FILE: &str = "progress.json";
/// How often a clone in progress is logged, on both sides.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
/// How often the progress file is rewritten: a person asking sees at most this old a state.
const WRITE_EVERY: Duration = Duration::from_secs(2);

/// Bytes moved so far, over how long, and the total expected if the sender estimated it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub bytes: u64,
    pub estimated_total: Option<u64>,
    pub elapsed: Duration,
}

impl Transfer {
    /// Time left at the average rate so far. Unknown without an estimate, before the first
    /// byte, and once past the estimate (it was short; nothing tells by how much).
    pub fn eta(&self) -> Option<Duration> {
        let total = self.estimated_total?;
        if self.bytes == 0 || self.bytes >= total {
            return None;
        }
        let left_per_done = (total - self.bytes) as f64 / self.bytes as f64;
        Duration::try_from_secs_f64(self.elapsed.as_secs_f64() * left_per_done).ok()
    }

    pub fn view(&self) -> TransferView {
        TransferView {
            bytes: self.bytes,
            estimated_total_bytes: self.estimated_total,
            mib_per_s: rate_mib_s(self.bytes, self.elapsed),
            eta_secs: self.eta().map(|eta| eta.as_secs_f64().ceil() as u64),
        }
    }
}

/// A transfer as `/status`, the progress file and the progress lines name it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferView {
    pub bytes: u64,
    /// Always an estimate: MariaDB, the donor's datadir without what a backup leaves out (sent
    /// before the stream); MySQL, the CLONE plugin's own (`performance_schema.clone_progress`).
    pub estimated_total_bytes: Option<u64>,
    /// The average since the data started to move.
    pub mib_per_s: f64,
    pub eta_secs: Option<u64>,
}

/// Where a joiner's clone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClonePhase {
    /// The donor's name does not resolve (yet).
    WaitingForDns,
    /// The donor resolves but does not serve yet: not answering, not healthy, or busy.
    WaitingForDonor,
    /// Data moves (MySQL: from the temporary server's initialization to CLONE INSTANCE's end).
    Cloning,
    /// MariaDB: `mariadb-backup --prepare`; MySQL: the temporary server's second start, which
    /// completes the clone, and its proof.
    Preparing,
    /// The prepared clone is synced and moved into place.
    Installing,
}

impl std::fmt::Display for ClonePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::metrics::serde_name(self))
    }
}

/// Why a joiner waits for its donor, and when it asks again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub reason: String,
    pub attempt: u32,
    pub next_delay_ms: u64,
}

/// The progress file's content. Every field but `phase` and `donor` has a default, so that a
/// record of another version still reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// The joiner's pod.
    #[serde(default)]
    pub hostname: String,
    pub phase: ClonePhase,
    pub donor: String,
    /// Which clone attempt this is: 1 from ordinal-1, 2 and on from a donor a fallback search
    /// chose.
    #[serde(default)]
    pub donor_attempt: u32,
    #[serde(default)]
    pub waiting: Option<Waiting>,
    #[serde(flatten)]
    pub transfer: TransferView,
    /// MySQL: the CLONE plugin's stage, e.g. `FILE COPY`.
    #[serde(default)]
    pub stage: Option<String>,
    /// When this donor was first asked.
    #[serde(default)]
    pub started_unix: u64,
    #[serde(default)]
    pub updated_unix: u64,
}

#[cfg(test)]
impl ProgressRecord {
    /// mysql-1 cloning mysql-0, started at 2026-11-30T01:02:03Z and updated 4 s later.
    pub(crate) fn example(transfer: TransferView) -> Self {
        ProgressRecord {
            hostname: "mysql-1".into(),
            phase: ClonePhase::Cloning,
            donor: "mysql-0.mysql.db.svc.cluster.local".into(),
            donor_attempt: 1,
            waiting: None,
            transfer,
            stage: None,
            started_unix: 1_796_000_523,
            updated_unix: 1_796_000_527,
        }
    }
}

/// Who clones, for the record: the joiner, and which donor of its search this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressLabel {
    pub hostname: String,
    pub donor_attempt: u32,
}

/// The joiner's reporter for one clone attempt.
pub struct Progress {
    path: PathBuf,
    record: ProgressRecord,
    /// When the donor accepted: the clone's duration counts from here.
    accepted: Option<Instant>,
    /// When data started to move: the rate's clock.
    copying: Option<Instant>,
    next_log: Instant,
    next_write: Instant,
    /// Logged once: the clone goes on without its file.
    write_failed: bool,
}

impl Progress {
    /// Starts the record at `path`, waiting for `donor`.
    pub(crate) fn start(path: PathBuf, label: &ProgressLabel, donor: &str) -> Self {
        let now = now_unix();
        let mut progress = Progress {
            path,
            record: ProgressRecord {
                hostname: label.hostname.clone(),
                phase: ClonePhase::WaitingForDonor,
                donor: donor.to_owned(),
                donor_attempt: label.donor_attempt,
                waiting: None,
                transfer: TransferView::default(),
                stage: None,
                started_unix: now,
                updated_unix: now,
            },
            accepted: None,
            copying: None,
            next_log: Instant::now(),
            next_write: Instant::now(),
            write_failed: false,
        };
        progress.write();
        progress
    }

    /// One more retry while the donor does not serve (`phase`: a waiting one): why, and when
    /// the next one comes.
    pub(crate) fn waiting(
        &mut self,
        phase: ClonePhase,
        reason: String,
        attempt: u32,
        next: Duration,
    ) {
        self.record.phase = phase;
        self.record.waiting = Some(Waiting {
            reason,
            attempt,
            next_delay_ms: millis(next),
        });
        self.write();
    }

    /// The donor accepted: data starts to move, `estimated_total` bytes of it if it said so.
    pub(crate) fn cloning(&mut self, estimated_total: Option<u64>) {
        let now = Instant::now();
        (self.accepted, self.copying) = (Some(now), Some(now));
        self.next_log = now + LOG_EVERY;
        self.record.phase = ClonePhase::Cloning;
        self.record.waiting = None;
        self.record.transfer.estimated_total_bytes = estimated_total;
        self.write();
    }

    /// The copy itself starts later than the clone (MySQL: after the temporary server's start).
    pub(crate) fn copy_starts(&mut self) {
        let now = Instant::now();
        self.copying = Some(now);
        self.next_log = now + LOG_EVERY;
    }

    /// `bytes` have moved so far; logs and rewrites the file when it is time.
    pub(crate) fn moved(&mut self, bytes: u64, estimated_total: Option<u64>, stage: Option<&str>) {
        if estimated_total.is_some() {
            self.record.transfer.estimated_total_bytes = estimated_total;
        }
        self.record.transfer.bytes = bytes;
        self.record.stage = stage.map(str::to_owned);
        let now = Instant::now();
        if now >= self.next_log {
            self.next_log = now + LOG_EVERY;
            let view = self.transfer().view();
            let record = &self.record;
            tracing::info!(
                phase = %record.phase, donor = %record.donor, bytes, mib = mib(bytes),
                estimated_total_bytes = view.estimated_total_bytes, mib_per_s = view.mib_per_s,
                eta_secs = view.eta_secs, stage = record.stage.as_deref(),
                "clone in progress{}", estimate_note(view.estimated_total_bytes)
            );
        }
        if now >= self.next_write {
            self.write();
        }
    }

    /// The step after the copy.
    pub(crate) fn phase(&mut self, phase: ClonePhase) {
        self.record.phase = phase;
        self.write();
    }

    /// The copy so far.
    pub(crate) fn transfer(&self) -> Transfer {
        Transfer {
            bytes: self.record.transfer.bytes,
            estimated_total: self.record.transfer.estimated_total_bytes,
            elapsed: self.copying.map_or(Duration::ZERO, |t| t.elapsed()),
        }
    }

    /// How long the clone has taken since the donor accepted, for the marker.
    pub(crate) fn clone_ms(&self) -> u64 {
        self.accepted.map_or(0, |t| millis(t.elapsed()))
    }

    fn write(&mut self) {
        self.next_write = Instant::now() + WRITE_EVERY;
        self.record.updated_unix = now_unix();
        self.record.transfer = self.transfer().view();
        let written = serde_json::to_vec_pretty(&self.record)
            .map_err(std::io::Error::other)
            .and_then(|json| fsutil::write_replacing(&self.path, &json, 0o644));
        if let Err(e) = written
            && !std::mem::replace(&mut self.write_failed, true)
        {
            tracing::warn!(path = %self.path.display(), "cannot write the clone's progress file ({e}): `mysql-sts-agent status` cannot show this clone; the clone goes on");
        }
    }
}

/// Says, in a progress line, that a total is an estimate, or that there is none.
pub fn estimate_note(estimated_total: Option<u64>) -> &'static str {
    match estimated_total {
        Some(_) => " (the total and the ETA are estimates)",
        None => " (no estimate of the total: no ETA)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn transfer(bytes: u64, estimated_total: Option<u64>, secs: u64) -> Transfer {
        Transfer {
            bytes,
            estimated_total,
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_eta_follows_the_average_rate_towards_the_estimate() {
        let halfway = transfer(400 * MIB, Some(800 * MIB), 4);
        assert_eq!(halfway.eta(), Some(Duration::from_secs(4)));
        let view = halfway.view();
        assert_eq!(view.mib_per_s, 100.0);
        assert_eq!(view.eta_secs, Some(4));
        assert_eq!(view.estimated_total_bytes, Some(800 * MIB));
        // A fraction of a second left is shown as a second, never as 0 while bytes remain.
        assert_eq!(
            transfer(799 * MIB, Some(800 * MIB), 4).view().eta_secs,
            Some(1)
        );
    }

    #[test]
    fn no_eta_without_an_estimate_before_the_first_byte_or_past_the_estimate() {
        assert_eq!(transfer(400 * MIB, None, 4).eta(), None);
        assert_eq!(transfer(400 * MIB, None, 4).view().mib_per_s, 100.0);
        assert_eq!(transfer(0, Some(800 * MIB), 4).eta(), None);
        assert_eq!(transfer(0, Some(800 * MIB), 4).view().mib_per_s, 0.0);
        assert_eq!(transfer(900 * MIB, Some(800 * MIB), 4).eta(), None);
        assert_eq!(transfer(800 * MIB, Some(800 * MIB), 4).eta(), None);
    }

    #[test]
    fn the_rate_of_a_transfer_that_just_started_is_finite() {
        let view = transfer(MIB, Some(2 * MIB), 0).view();
        assert!(
            view.mib_per_s.is_finite() && view.mib_per_s > 0.0,
            "{view:?}"
        );
    }

    fn record() -> ProgressRecord {
        ProgressRecord::example(transfer(412 * MIB, Some(806 * MIB), 3).view())
    }

    #[test]
    fn a_record_is_flat_json_and_reads_back() {
        let json = serde_json::to_value(record()).unwrap();
        assert_eq!(json["phase"], "cloning");
        assert_eq!(json["bytes"], 412 * MIB);
        assert_eq!(json["estimated_total_bytes"], 806 * MIB);
        assert_eq!(json["eta_secs"], 3);
        let back: ProgressRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record());
    }

    #[test]
    fn a_record_of_another_version_reads_with_defaults_and_garbage_does_not() {
        let partial = r#"{"phase":"waiting_for_dns","donor":"mysql-0"}"#;
        let read: ProgressRecord = serde_json::from_str(partial).unwrap();
        assert_eq!(read.phase, ClonePhase::WaitingForDns);
        assert_eq!((read.transfer.bytes, read.transfer.eta_secs), (0, None));
        assert_eq!(read.hostname, "");
        assert!(serde_json::from_str::<ProgressRecord>(r#"{"phase":"cloning"}"#).is_err());
        assert!(serde_json::from_str::<ProgressRecord>(r#"{"phase":"cloning","donor":"#).is_err());
        assert!(
            serde_json::from_str::<ProgressRecord>(r#"{"phase":"dancing","donor":"x"}"#).is_err()
        );
    }

    #[test]
    fn the_reporter_keeps_the_file_current_through_the_phases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        let read = || -> ProgressRecord {
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
        };
        let label = ProgressLabel {
            hostname: "mysql-2".into(),
            donor_attempt: 2,
        };
        let mut progress = Progress::start(path.clone(), &label, "mysql-0");
        assert_eq!(read().phase, ClonePhase::WaitingForDonor);
        assert_eq!(read().donor_attempt, 2);
        let (dns, reason) = (ClonePhase::WaitingForDns, "no such name".to_owned());
        progress.waiting(dns, reason, 3, Duration::from_millis(1500));
        let waiting = read();
        assert_eq!(waiting.phase, ClonePhase::WaitingForDns);
        assert_eq!(
            waiting.waiting,
            Some(Waiting {
                reason: "no such name".into(),
                attempt: 3,
                next_delay_ms: 1500
            })
        );
        progress.cloning(Some(10 * MIB));
        assert_eq!(read().waiting, None);
        assert_eq!(read().transfer.estimated_total_bytes, Some(10 * MIB));
        progress.moved(4 * MIB, None, Some("FILE COPY"));
        progress.phase(ClonePhase::Preparing);
        assert_eq!(read().phase, ClonePhase::Preparing);
        progress.phase(ClonePhase::Installing);
        let last = read();
        assert_eq!(last.phase, ClonePhase::Installing);
        assert_eq!(last.transfer.bytes, 4 * MIB);
        assert_eq!(last.transfer.estimated_total_bytes, Some(10 * MIB));
        assert_eq!(last.stage.as_deref(), Some("FILE COPY"));
        assert_eq!(progress.transfer().bytes, 4 * MIB);
    }
}
