//! What the sidecar knows (snapshots a background poller publishes on a watch channel) and
//! the readiness rules that judge it. Probes only read snapshots; they never run SQL.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::facts::ServerFacts;
use crate::db::gtid::{Binlogged, Gtids};
use crate::db::status::{IoThread, ReplicaStatus, ThreadError};
use crate::duration::{seconds, seconds_up};
use crate::identity::Role;
use crate::semisync::SemiSyncFacts;

/// What the sidecar is doing. (A clone it serves is not a phase: a replica serves one while it
/// replicates; `/status` shows it beside the phase.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No session with the local server: it starts, or is down.
    WaitingForServer,
    /// Setting up replication (a replica) or the replication and clone users (the primary).
    Configuring,
    /// A replica set up: the agent watches its replication (readiness says how it goes).
    Replicating,
    /// The primary set up: it takes the writes.
    Serving,
    /// Needs a person: the reason is in `last_error`.
    Blocked,
    /// The sidecar asked for a re-clone (the reason is in `last_error`); the database
    /// container carries it out when it restarts.
    Recloning,
}

impl Phase {
    /// The phase of a pod whose set-up is done: what its role does from then on.
    pub fn set_up(role: Role) -> Phase {
        match role {
            Role::Primary => Phase::Serving,
            Role::Replica => Phase::Replicating,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::metrics::serde_name(self))
    }
}

/// When the agent started and when it last finished setting up, for `/status`.
#[derive(Debug)]
pub struct Timings {
    pub agent_started_unix: u64,
    /// 0 until the first set-up is done.
    configured_unix: std::sync::atomic::AtomicU64,
}

impl Timings {
    pub fn starting_now() -> Self {
        Timings {
            agent_started_unix: crate::clone::now_unix(),
            configured_unix: Default::default(),
        }
    }

    pub fn configured_now(&self) {
        let now = crate::clone::now_unix();
        self.configured_unix
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn configured_unix(&self) -> Option<u64> {
        let at = self
            .configured_unix
            .load(std::sync::atomic::Ordering::Relaxed);
        (at != 0).then_some(at)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrimarySample {
    pub position: Gtids,
    #[serde(skip)]
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFacts {
    pub status: Option<ReplicaStatus>,
    /// What the replica has applied.
    pub applied: Gtids,
    pub primary: Option<PrimarySample>,
    pub primary_error: Option<String>,
    /// The newest time at which the primary's position was wholly applied here.
    pub applied_as_of: Option<Instant>,
    /// Transactions this replica has that the primary does not (never empty).
    pub errant: Option<Binlogged>,
    /// Whether a reading of this replica was compared with the primary yet: until then it
    /// may hold errant transactions nobody has seen (e.g. after the agent restarted).
    pub errant_checked: bool,
    /// Since when the primary cannot be sampled or the IO thread is reconnecting to it, after
    /// both were fine.
    pub link_lost_since: Option<Instant>,
}

impl ReplicaFacts {
    /// How long ago the primary last stood at a position this replica has wholly applied.
    pub fn lag(&self, now: Instant) -> Option<Duration> {
        self.applied_as_of.map(|t| now.saturating_duration_since(t))
    }

    /// Transactions the primary had at its last sample that this replica has not applied.
    pub fn transactions_behind(&self) -> Option<u64> {
        let primary = self.primary.as_ref()?;
        Some(self.applied.missing_from(&primary.position))
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: Instant,
    pub phase: Phase,
    pub last_error: Option<String>,
    pub server: Option<ServerFacts>,
    pub replica: Option<ReplicaFacts>,
    /// With --semi-sync, as last read.
    pub semi_sync: Option<SemiSyncFacts>,
}

impl Snapshot {
    pub fn phase(phase: Phase, last_error: Option<String>) -> Self {
        Snapshot {
            taken_at: Instant::now(),
            phase,
            last_error,
            server: None,
            replica: None,
            semi_sync: None,
        }
    }

    /// What the replica's IO thread received, if it is a configured replica.
    pub fn received(&self) -> Option<&Gtids> {
        let status = self.replica.as_ref()?.status.as_ref()?;
        Some(&status.received)
    }
}

/// The primary's GTID position over time, so a replica's position can be dated.
#[derive(Debug)]
pub struct PrimaryHistory {
    seen: VecDeque<(Gtids, Instant)>,
    keep: Duration,
}

impl PrimaryHistory {
    pub fn new(keep: Duration) -> Self {
        PrimaryHistory {
            seen: VecDeque::new(),
            keep,
        }
    }

    pub fn record(&mut self, position: Gtids, at: Instant) {
        match self.seen.back_mut() {
            Some((last, last_seen)) if *last == position => *last_seen = at,
            _ => self.seen.push_back((position, at)),
        }
        while self.seen.len() > 1
            && self
                .seen
                .front()
                .is_some_and(|(_, t)| at.duration_since(*t) > self.keep)
        {
            self.seen.pop_front();
        }
    }

    pub fn latest(&self) -> Option<PrimarySample> {
        self.seen.back().map(|(position, at)| PrimarySample {
            position: position.clone(),
            at: *at,
        })
    }

    /// The last time the primary stood at a position that `applied` wholly contains.
    pub fn applied_as_of(&self, applied: &Gtids) -> Option<Instant> {
        self.seen
            .iter()
            .rev()
            .find(|(position, _)| applied.contains(position))
            .map(|(_, at)| *at)
    }
}

/// Finds errant transactions without racing replication: a replica's reading is compared with
/// the primary's next sample, taken after it, so that a transaction the replica applied just
/// before its reading is in that sample too. (Compared with a sample taken before the reading,
/// it would look errant.)
#[derive(Debug, Default)]
pub struct ErrantCheck {
    /// The replica's latest reading, not yet compared.
    pending: Option<Binlogged>,
    found: Option<Binlogged>,
    checked: bool,
}

impl ErrantCheck {
    pub fn replica_read(&mut self, binlogged: Binlogged) {
        self.pending = Some(binlogged);
    }

    /// The primary's state, sampled after the readings recorded so far.
    pub fn primary_sampled(&mut self, primary: &Binlogged) {
        if let Some(replica) = self.pending.take() {
            let errant = replica.errant(primary);
            self.found = (!errant.is_empty()).then_some(errant);
            self.checked = true;
        }
    }

    /// What the last comparison found; kept while the primary cannot be sampled.
    pub fn found(&self) -> Option<&Binlogged> {
        self.found.as_ref()
    }

    pub fn checked(&self) -> bool {
        self.checked
    }
}

/// Whether the replica is in touch with its primary: the agent samples it and the IO thread
/// is connected. Remembers when that was lost, if it had been whole first.
#[derive(Debug, Default)]
pub struct PrimaryLink {
    whole_once: bool,
    lost_since: Option<Instant>,
}

impl PrimaryLink {
    pub fn observe(&mut self, whole: bool, at: Instant) -> Option<Instant> {
        if whole {
            self.whole_once = true;
            self.lost_since = None;
        } else if self.whole_once && self.lost_since.is_none() {
            self.lost_since = Some(at);
        }
        self.lost_since
    }
}

/// What readiness is judged against.
#[derive(Debug, Clone)]
pub struct Rules {
    pub role: Role,
    /// The primary's pod name for messages, e.g. `mysql-0`.
    pub primary_name: String,
    pub max_lag: Duration,
    /// A snapshot older than this means the poller is stuck: nothing it says is current.
    pub stale_after: Duration,
    /// How long a replica that was in sync stays ready while its primary is unreachable; zero:
    /// not at all.
    pub outage_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Stale,
    WaitingForServer,
    Bootstrapping,
    Blocked,
    Recloning,
    ServerDown,
    ReadOnlyPrimary,
    WritablePrimary,
    WritableReplica,
    Fenced,
    ErrantUnchecked,
    NotConfigured,
    ReplicationError,
    ThreadStopped,
    LagUnknown,
    PrimaryUnknown,
    Behind,
    InSync,
    /// Ready: the primary is away, and this replica serves what it had.
    PrimaryOutage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub ready: bool,
    pub kind: VerdictKind,
    pub reason: String,
}

fn verdict(ready: bool, kind: VerdictKind, reason: String) -> Verdict {
    Verdict {
        ready,
        kind,
        reason,
    }
}

fn not_ready(kind: VerdictKind, reason: String) -> Verdict {
    verdict(false, kind, reason)
}

pub fn readiness(snap: &Snapshot, rules: &Rules, now: Instant) -> Verdict {
    use VerdictKind::*;
    let age = now.saturating_duration_since(snap.taken_at);
    if age > rules.stale_after {
        return not_ready(
            Stale,
            format!("agent state is stale: last poll {} ago", seconds(age)),
        );
    }
    let detail = |prefix: &str| match &snap.last_error {
        Some(error) => format!("{prefix}: {error}"),
        None => prefix.to_owned(),
    };
    match snap.phase {
        Phase::WaitingForServer => {
            return not_ready(WaitingForServer, detail("waiting for the local server"));
        }
        Phase::Configuring => return not_ready(Bootstrapping, detail("setting up")),
        Phase::Blocked => return not_ready(Blocked, detail("blocked")),
        Phase::Recloning => return not_ready(Recloning, detail("re-cloning")),
        Phase::Replicating | Phase::Serving => {}
    }
    let Some(server) = snap.server.as_ref().filter(|_| snap.last_error.is_none()) else {
        return not_ready(ServerDown, detail("the local server does not answer"));
    };
    match rules.role {
        Role::Primary if server.read_only => {
            not_ready(ReadOnlyPrimary, "primary is read-only".to_owned())
        }
        Role::Primary => verdict(true, WritablePrimary, "primary is writable".to_owned()),
        Role::Replica => match server.writable() {
            // Clients that write here write what the primary never sees.
            Some(why) => not_ready(WritableReplica, format!("replica is writable: {why}")),
            None => replica_readiness(snap.replica.as_ref(), rules, now),
        },
    }
}

/// Who asks to clone this pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiner {
    /// The next ordinal, to become a replica.
    Replica,
    /// The first ordinal restoring its lost volume: its primary is gone by definition, and it
    /// chose this pod as the most advanced peer.
    RestoringPrimary,
}

/// Whether this pod may serve its data to a joiner, who takes whatever it is given. For a new
/// replica: only while it is ready itself (the primary set up and writable; a replica in sync,
/// without replication error, not fenced), and not on a replica serving what it had through a
/// primary outage, since nobody can tell then what it lacks. For a restoring primary, whose
/// absence is why this replica cannot be in sync: its own data must be sound (its server
/// answers, read-only, not fenced, no SQL thread error).
pub fn donor_readiness(snap: &Snapshot, rules: &Rules, now: Instant, joiner: Joiner) -> Verdict {
    use VerdictKind::*;
    let verdict = readiness(snap, rules, now);
    // What the relay log holds was acknowledged to clients (semi-sync) and counted by the
    // guard's survey: a restore must carry it.
    if joiner == Joiner::RestoringPrimary
        && let (Some(replica), Some(received)) = (&snap.replica, snap.received())
        && !replica.applied.contains(received)
    {
        return not_ready(
            Behind,
            format!(
                "applying what its IO thread received before it serves a restore: received \
                 {received}, applied {}",
                replica.applied
            ),
        );
    }
    let sql_error = snap
        .replica
        .as_ref()
        .and_then(|r| r.status.as_ref())
        .is_some_and(|s| s.sql_error.is_some());
    match (joiner, verdict.kind) {
        (Joiner::Replica, PrimaryOutage) => not_ready(
            PrimaryOutage,
            format!(
                "{}; not a donor until {} answers",
                verdict.reason, rules.primary_name
            ),
        ),
        (Joiner::Replica, _) => verdict,
        (
            Joiner::RestoringPrimary,
            PrimaryOutage | PrimaryUnknown | ErrantUnchecked | ThreadStopped | LagUnknown | Behind,
        ) => restorable(verdict),
        (Joiner::RestoringPrimary, ReplicationError) if !sql_error => restorable(verdict),
        (Joiner::RestoringPrimary, _) => verdict,
    }
}

fn restorable(verdict: Verdict) -> Verdict {
    let reason = format!(
        "{}; sound enough to restore the primary from",
        verdict.reason
    );
    Verdict {
        ready: true,
        reason,
        ..verdict
    }
}

fn replica_readiness(facts: Option<&ReplicaFacts>, rules: &Rules, now: Instant) -> Verdict {
    use VerdictKind::*;
    let primary = &rules.primary_name;
    let Some(facts) = facts else {
        return not_ready(NotConfigured, "replication is not configured".to_owned());
    };
    if let Some(errant) = &facts.errant {
        return not_ready(
            Fenced,
            format!(
                "fenced: this replica has transactions {primary} does not have (errant GTIDs \
                 {errant}); it is neither made ready nor cloned from until a person decides: \
                 re-clone it (delete this pod's data volume), or bring those transactions to \
                 {primary}"
            ),
        );
    }
    let Some(status) = &facts.status else {
        return not_ready(NotConfigured, "replication is not configured".to_owned());
    };
    if !facts.errant_checked {
        return not_ready(
            ErrantUnchecked,
            format!("not yet compared with {primary} for errant transactions"),
        );
    }
    if let Some(verdict) = outage_readiness(facts, status, rules, now) {
        return verdict;
    }
    if let Some(e) = &status.sql_error {
        return not_ready(
            ReplicationError,
            format!("replica SQL thread error {}: {}", e.errno, e.message),
        );
    }
    if let Some(e) = &status.io_error {
        let advice = if source_purged_needed_binlogs(e) {
            format!(
                " (the primary purged binary logs this replica still needs: it cannot catch up \
                 by replication; the agent re-clones a replica whose data is its clone and has \
                 no errant transactions; otherwise give it a new clone by deleting this pod's \
                 data volume, or restore the missing transactions on {primary})"
            )
        } else {
            String::new()
        };
        return not_ready(
            ReplicationError,
            format!("replica IO thread error {}: {}{advice}", e.errno, e.message),
        );
    }
    match status.io_thread {
        IoThread::Running => {}
        IoThread::Connecting => {
            return not_ready(
                ThreadStopped,
                format!("replica IO thread is connecting to {primary}"),
            );
        }
        IoThread::Stopped => {
            return not_ready(ThreadStopped, "replica IO thread is not running".to_owned());
        }
    }
    if !status.sql_running {
        return not_ready(
            ThreadStopped,
            "replica SQL thread is not running".to_owned(),
        );
    }
    if status.seconds_behind.is_none() {
        return not_ready(
            LagUnknown,
            "the replica's seconds behind its source are unknown (NULL)".to_owned(),
        );
    }
    let Some(behind) = facts.transactions_behind() else {
        let why = facts.primary_error.as_deref().unwrap_or("no sample yet");
        return not_ready(
            PrimaryUnknown,
            format!("GTID position of {primary} unknown: {why}"),
        );
    };
    let behind = thousands(behind);
    match facts.lag(now) {
        Some(lag) if lag <= rules.max_lag => verdict(
            true,
            InSync,
            format!(
                "in sync with {primary}: applied all it had {} ago",
                seconds(lag)
            ),
        ),
        Some(lag) if facts.primary_error.is_some() && behind == "0" => not_ready(
            PrimaryUnknown,
            format!(
                "last GTID sample of {primary} is {} old: {}",
                seconds(lag),
                facts.primary_error.as_deref().unwrap_or_default()
            ),
        ),
        Some(lag) => not_ready(
            Behind,
            format!(
                "replica {behind} transactions behind {primary}: applied all it had {} ago (max {})",
                seconds(lag),
                seconds(rules.max_lag)
            ),
        ),
        None => not_ready(
            Behind,
            format!("replica {behind} transactions behind {primary}"),
        ),
    }
}

/// A replica that lost its primary (it cannot be sampled, or the IO thread reconnects) stays
/// ready for `outage_grace` if it was in sync when the link was lost, has applied all it had
/// received and its threads are running or reconnecting without an SQL error: it serves what it
/// had, so that a primary's restart does not empty the read Service. `None`: the usual rules
/// decide.
fn outage_readiness(
    facts: &ReplicaFacts,
    status: &ReplicaStatus,
    rules: &Rules,
    now: Instant,
) -> Option<Verdict> {
    let since = facts
        .link_lost_since
        .filter(|_| !rules.outage_grace.is_zero())?;
    let serving = status.sql_running
        && status.sql_error.is_none()
        && status.io_thread != IoThread::Stopped
        && facts.applied.contains(&status.received)
        && facts
            .applied_as_of
            .is_some_and(|t| t + rules.max_lag >= since);
    if !serving {
        return None;
    }
    let why = match (&facts.primary_error, &status.io_error) {
        (Some(error), _) => error.clone(),
        (None, Some(e)) => format!("replica IO thread error {}: {}", e.errno, e.message),
        (None, None) => "the replica IO thread is reconnecting".to_owned(),
    };
    let (primary, away) = (&rules.primary_name, now.saturating_duration_since(since));
    Some(if away <= rules.outage_grace {
        verdict(
            true,
            VerdictKind::PrimaryOutage,
            format!(
                "primary {primary} unreachable for {}, serving what it had: {why}",
                seconds(away)
            ),
        )
    } else {
        not_ready(
            VerdictKind::PrimaryUnknown,
            format!(
                "primary {primary} unreachable for {}, longer than the {} grace: {why}",
                seconds_up(away),
                seconds(rules.outage_grace)
            ),
        )
    })
}

/// The source answered the IO thread with error 1236 because the binlogs holding transactions
/// this replica lacks are gone (MySQL wraps it in 13114; MariaDB reports 1236 itself).
pub fn source_purged_needed_binlogs(error: &ThreadError) -> bool {
    let message = error.message.to_ascii_lowercase();
    (error.errno == 1236 || message.contains("fatal error 1236")) && message.contains("purged")
}

/// 1234567 -> "1,234,567"
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Logs every change of readiness (by kind, so moving numbers don't repeat it) with its reason.
pub async fn log_readiness_changes(
    mut snapshots: watch::Receiver<Snapshot>,
    rules: Rules,
    shutdown: CancellationToken,
) {
    let mut last: Option<VerdictKind> = None;
    loop {
        let (verdict, phase) = {
            let snap = snapshots.borrow_and_update();
            (readiness(&snap, &rules, Instant::now()), snap.phase)
        };
        if last != Some(verdict.kind) {
            last = Some(verdict.kind);
            if verdict.ready {
                tracing::info!(kind = ?verdict.kind, %phase, "ready: {}", verdict.reason);
            } else {
                tracing::info!(kind = ?verdict.kind, %phase, "not ready: {}", verdict.reason);
            }
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::flavor::Flavor;

    fn pos(text: &str) -> Gtids {
        Gtids::parse(Flavor::MariaDb, text).unwrap()
    }

    fn rules(role: Role) -> Rules {
        Rules {
            role,
            primary_name: "mysql-0".into(),
            max_lag: Duration::from_secs(5),
            stale_after: Duration::from_secs(10),
            outage_grace: Duration::from_secs(30),
        }
    }

    fn status() -> ReplicaStatus {
        ReplicaStatus {
            source_host: "mysql-0.mysql.default.svc.cluster.local".into(),
            source_port: 3306,
            io_thread: IoThread::Running,
            sql_running: true,
            io_error: None,
            sql_error: None,
            seconds_behind: Some(0),
            gtid_mode: "Slave_Pos".into(),
            received: pos("0-100-10"),
            verified_tls_ca: None,
        }
    }

    fn running(now: Instant, read_only: bool, replica: Option<ReplicaFacts>) -> Snapshot {
        Snapshot {
            taken_at: now,
            phase: match replica {
                Some(_) => Phase::Replicating,
                None => Phase::Serving,
            },
            last_error: None,
            server: Some(ServerFacts {
                version: "MariaDB 10.11.19-MariaDB".into(),
                read_only,
                super_read_only: None,
                gtid_applied: pos("0-100-10"),
                gtid_binlog: Binlogged::parse(Flavor::MariaDb, "0-100-10").unwrap(),
            }),
            replica,
            semi_sync: None,
        }
    }

    /// A replica that has applied `applied`, judged at `now` against a primary history.
    fn replica_at(now: Instant, applied: &str, history: &PrimaryHistory) -> Snapshot {
        replica_with(now, pos(applied), history)
    }

    fn replica_with(now: Instant, applied: Gtids, history: &PrimaryHistory) -> Snapshot {
        running(
            now,
            true,
            Some(ReplicaFacts {
                status: Some(status()),
                applied_as_of: history.applied_as_of(&applied),
                applied,
                primary: history.latest(),
                primary_error: None,
                errant: None,
                errant_checked: true,
                link_lost_since: None,
            }),
        )
    }

    #[test]
    fn primary_is_ready_when_writable() {
        let now = Instant::now();
        let r = rules(Role::Primary);
        assert!(readiness(&running(now, false, None), &r, now).ready);
        let v = readiness(&running(now, true, None), &r, now);
        assert_eq!((v.ready, v.kind), (false, VerdictKind::ReadOnlyPrimary));
    }

    #[test]
    fn each_phase_has_its_name_and_a_set_up_pod_serves_or_replicates_by_role() {
        assert_eq!(Phase::set_up(Role::Primary), Phase::Serving);
        assert_eq!(Phase::set_up(Role::Replica), Phase::Replicating);
        for (phase, name) in [
            (Phase::WaitingForServer, "waiting_for_server"),
            (Phase::Configuring, "configuring"),
            (Phase::Replicating, "replicating"),
            (Phase::Serving, "serving"),
            (Phase::Blocked, "blocked"),
            (Phase::Recloning, "recloning"),
        ] {
            assert_eq!(serde_json::to_value(phase).unwrap(), name);
            assert_eq!(phase.to_string(), name);
        }
    }

    #[test]
    fn a_pod_is_ready_only_in_the_phases_of_a_set_up_pod() {
        let r = rules(Role::Primary);
        for (phase, kind, reason) in [
            (
                Phase::WaitingForServer,
                VerdictKind::WaitingForServer,
                "waiting for the local server: e",
            ),
            (
                Phase::Configuring,
                VerdictKind::Bootstrapping,
                "setting up: e",
            ),
            (Phase::Blocked, VerdictKind::Blocked, "blocked: e"),
            (Phase::Recloning, VerdictKind::Recloning, "re-cloning: e"),
        ] {
            let snap = Snapshot::phase(phase, Some("e".into()));
            let v = readiness(&snap, &r, snap.taken_at);
            assert_eq!((v.ready, v.kind, v.reason.as_str()), (false, kind, reason));
        }
        let now = Instant::now();
        let serving = running(now, false, None);
        assert_eq!(serving.phase, Phase::Serving);
        assert!(readiness(&serving, &r, now).ready);
    }

    #[test]
    fn stale_or_unfinished_states_are_not_ready() {
        let now = Instant::now();
        let r = rules(Role::Primary);
        let old = running(now - Duration::from_secs(11), false, None);
        assert_eq!(readiness(&old, &r, now).kind, VerdictKind::Stale);
        let waiting = Snapshot::phase(Phase::WaitingForServer, Some("connection refused".into()));
        let v = readiness(&waiting, &r, waiting.taken_at);
        assert_eq!(v.reason, "waiting for the local server: connection refused");
        let mut down = running(now, false, None);
        down.last_error = Some("timed out".into());
        assert_eq!(readiness(&down, &r, now).kind, VerdictKind::ServerDown);
    }

    #[test]
    fn replica_in_sync_when_it_applied_a_recent_primary_position() {
        let t0 = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), t0);
        history.record(pos("0-100-10"), t0 + Duration::from_secs(1));
        let now = t0 + Duration::from_secs(2);
        let v = readiness(
            &replica_at(now, "0-100-10", &history),
            &rules(Role::Replica),
            now,
        );
        assert!(v.ready, "{v:?}");
        assert_eq!(
            v.reason,
            "in sync with mysql-0: applied all it had 1.0s ago"
        );
    }

    #[test]
    fn replica_behind_by_more_than_max_lag_is_not_ready_with_a_count() {
        let t0 = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), t0);
        history.record(pos("0-100-1244"), t0 + Duration::from_secs(1));
        let r = rules(Role::Replica);
        // 4 s after the primary was last at 0-100-10: still within max_lag.
        let now = t0 + Duration::from_secs(4);
        assert!(readiness(&replica_at(now, "0-100-10", &history), &r, now).ready);
        // 6 s after: behind.
        history.record(pos("0-100-1244"), t0 + Duration::from_secs(6));
        let now = t0 + Duration::from_secs(6);
        let v = readiness(&replica_at(now, "0-100-10", &history), &r, now);
        assert_eq!(v.kind, VerdictKind::Behind);
        assert_eq!(
            v.reason,
            "replica 1,234 transactions behind mysql-0: applied all it had 6.0s ago (max 5.0s)"
        );
        // A per-request max lag changes the verdict, not the facts.
        let relaxed = Rules {
            max_lag: Duration::from_secs(10),
            ..r
        };
        assert!(readiness(&replica_at(now, "0-100-10", &history), &relaxed, now).ready);
        // Never seen in the history at all.
        let v = readiness(
            &replica_at(now, "0-100-1", &history),
            &rules(Role::Replica),
            now,
        );
        assert_eq!(v.reason, "replica 1,243 transactions behind mysql-0");
    }

    #[test]
    fn replication_thread_problems_are_named() {
        let now = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), now);
        let r = rules(Role::Replica);
        let with = |change: &dyn Fn(&mut ReplicaStatus)| {
            let mut snap = replica_at(now, "0-100-10", &history);
            change(snap.replica.as_mut().unwrap().status.as_mut().unwrap());
            readiness(&snap, &r, now)
        };
        assert_eq!(
            with(&|s| s.sql_running = false).reason,
            "replica SQL thread is not running"
        );
        assert_eq!(
            with(&|s| s.io_thread = IoThread::Connecting).reason,
            "replica IO thread is connecting to mysql-0"
        );
        assert_eq!(
            with(&|s| s.seconds_behind = None).kind,
            VerdictKind::LagUnknown
        );
        let v = with(&|s| {
            s.sql_running = false;
            s.sql_error = Some(ThreadError {
                errno: 1062,
                message: "Duplicate entry".into(),
            })
        });
        assert_eq!(v.reason, "replica SQL thread error 1062: Duplicate entry");
        let mut unconfigured = replica_at(now, "0-100-10", &history);
        unconfigured.replica.as_mut().unwrap().status = None;
        assert_eq!(
            readiness(&unconfigured, &r, now).kind,
            VerdictKind::NotConfigured
        );
    }

    #[test]
    fn unreachable_primary_makes_the_lag_unknown_once_old() {
        let t0 = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), t0);
        let now = t0 + Duration::from_secs(8);
        let mut snap = replica_at(now, "0-100-10", &history);
        snap.replica.as_mut().unwrap().primary_error = Some("connection refused".into());
        let v = readiness(&snap, &rules(Role::Replica), now);
        assert_eq!(v.kind, VerdictKind::PrimaryUnknown);
        assert_eq!(
            v.reason,
            "last GTID sample of mysql-0 is 8.0s old: connection refused"
        );
    }

    #[test]
    fn a_writable_replica_is_not_ready() {
        let now = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), now);
        let r = rules(Role::Replica);
        let mut snap = replica_at(now, "0-100-10", &history);
        assert!(readiness(&snap, &r, now).ready);
        snap.server.as_mut().unwrap().read_only = false;
        let v = readiness(&snap, &r, now);
        assert_eq!(
            (v.ready, v.kind, v.reason.as_str()),
            (
                false,
                VerdictKind::WritableReplica,
                "replica is writable: read_only is OFF"
            )
        );
        // MySQL: read_only alone lets root write.
        let server = snap.server.as_mut().unwrap();
        server.read_only = true;
        server.super_read_only = Some(false);
        assert_eq!(
            readiness(&snap, &r, now).reason,
            "replica is writable: super_read_only is OFF"
        );
        snap.server.as_mut().unwrap().super_read_only = Some(true);
        assert!(readiness(&snap, &r, now).ready);
    }

    #[test]
    fn a_replica_with_errant_transactions_is_fenced_and_no_donor() {
        let now = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), now);
        let r = rules(Role::Replica);
        let mut snap = replica_at(now, "0-100-10", &history);
        let errant = Binlogged::parse(Flavor::MariaDb, "0-101-11").unwrap();
        snap.replica.as_mut().unwrap().errant = Some(errant);
        let v = readiness(&snap, &r, now);
        assert_eq!((v.ready, v.kind), (false, VerdictKind::Fenced));
        assert!(
            v.reason.starts_with(
                "fenced: this replica has transactions mysql-0 does not have (errant GTIDs \
                 0-101-11)"
            ),
            "{}",
            v.reason
        );
        for joiner in [Joiner::Replica, Joiner::RestoringPrimary] {
            assert_eq!(donor_readiness(&snap, &r, now, joiner), v);
        }
        // Not compared yet (the agent just started): it might hold errant transactions.
        let mut unchecked = replica_at(now, "0-100-10", &history);
        unchecked.replica.as_mut().unwrap().errant_checked = false;
        let v = readiness(&unchecked, &r, now);
        assert_eq!(
            (v.ready, v.reason.as_str()),
            (
                false,
                "not yet compared with mysql-0 for errant transactions"
            )
        );
    }

    #[test]
    fn errant_check_compares_a_reading_with_the_next_primary_sample() {
        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let own = "8ad3c1c5-e579-11f1-a595-02fc00000002";
        let set = |t: &str| Binlogged::parse(Flavor::MySql, t).unwrap();
        let primary_k = set(&format!("{uuid}:1-10"));
        // Between the primary's sample of poll k and the replica's reading, the primary
        // committed 11 and the replica applied it: compared the naive way, it looks errant.
        let replica_k = set(&format!("{uuid}:1-11"));
        assert!(!replica_k.errant(&primary_k).is_empty());
        let mut check = ErrantCheck::default();
        check.primary_sampled(&primary_k);
        check.replica_read(replica_k);
        assert!(!check.checked(), "nothing compared yet");
        assert_eq!(check.found(), None);
        // Poll k+1 samples the primary after that reading: it has 11 (and more).
        check.primary_sampled(&set(&format!("{uuid}:1-12")));
        assert!(check.checked());
        assert_eq!(check.found(), None, "a healthy replica is never fenced");

        // Written on the replica itself: errant against every later sample.
        check.replica_read(set(&format!("{uuid}:1-12,{own}:1")));
        check.primary_sampled(&set(&format!("{uuid}:1-13")));
        assert_eq!(check.found().unwrap().to_string(), format!("{own}:1"));
        // It stays found while the primary cannot be sampled...
        check.replica_read(set(&format!("{uuid}:1-13,{own}:1")));
        assert_eq!(check.found().unwrap().to_string(), format!("{own}:1"));
        // ...and goes once the primary has it (a person injected it there).
        check.primary_sampled(&set(&format!("{uuid}:1-13,{own}:1")));
        assert_eq!(check.found(), None);
    }

    #[test]
    fn the_link_to_the_primary_is_lost_only_after_it_was_whole() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut link = PrimaryLink::default();
        assert_eq!(link.observe(false, at(0)), None, "never connected yet");
        assert_eq!(link.observe(true, at(1)), None);
        assert_eq!(link.observe(false, at(2)), Some(at(2)));
        assert_eq!(link.observe(false, at(3)), Some(at(2)));
        assert_eq!(link.observe(true, at(4)), None);
    }

    /// A replica in sync at t0 whose primary is gone from t0 + 1 s on.
    fn outage(history: &mut PrimaryHistory, t0: Instant, now: Instant) -> Snapshot {
        history.record(pos("0-100-10"), t0);
        let mut snap = replica_at(now, "0-100-10", history);
        let facts = snap.replica.as_mut().unwrap();
        facts.primary_error = Some("Can't connect to server (111)".into());
        facts.link_lost_since = Some(t0 + Duration::from_secs(1));
        let status = facts.status.as_mut().unwrap();
        status.io_thread = IoThread::Connecting;
        status.io_error = Some(ThreadError {
            errno: 2003,
            message: "error reconnecting to master".into(),
        });
        status.seconds_behind = None;
        snap
    }

    #[test]
    fn a_replica_in_sync_serves_what_it_had_through_a_short_primary_outage() {
        let t0 = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        let r = rules(Role::Replica);
        let now = t0 + Duration::from_secs(21);
        let snap = outage(&mut history, t0, now);
        let v = readiness(&snap, &r, now);
        assert_eq!(
            (v.ready, v.kind, v.reason.as_str()),
            (
                true,
                VerdictKind::PrimaryOutage,
                "primary mysql-0 unreachable for 20.0s, serving what it had: Can't connect to \
                 server (111)"
            )
        );
        assert!(
            !donor_readiness(&snap, &r, now, Joiner::Replica).ready,
            "not a donor for a new replica meanwhile"
        );
        // A first ordinal restoring its lost volume is why the primary is away.
        let restore = donor_readiness(&snap, &r, now, Joiner::RestoringPrimary);
        assert!(restore.ready, "{restore:?}");
        assert!(
            restore
                .reason
                .ends_with("; sound enough to restore the primary from")
        );
        // Its relay log holds what it has not applied yet: a restore waits for it.
        let mut lagging = snap.clone();
        let status = lagging.replica.as_mut().unwrap().status.as_mut().unwrap();
        status.received = pos("0-100-12");
        let wait = donor_readiness(&lagging, &r, now, Joiner::RestoringPrimary);
        assert_eq!(
            (wait.ready, wait.reason.as_str()),
            (
                false,
                "applying what its IO thread received before it serves a restore: received \
                 0-100-12, applied 0-100-10"
            )
        );
        // Past the grace.
        let now = t0 + Duration::from_secs(32);
        let v = readiness(&outage(&mut history, t0, now), &r, now);
        assert_eq!((v.ready, v.kind), (false, VerdictKind::PrimaryUnknown));
        assert!(
            v.reason
                .starts_with("primary mysql-0 unreachable for 31.0s, longer than the 30.0s grace"),
            "{}",
            v.reason
        );
        // A grace of zero: as before, the reconnecting IO thread decides at once.
        let now = t0 + Duration::from_secs(2);
        let no_grace = Rules {
            outage_grace: Duration::ZERO,
            ..rules(Role::Replica)
        };
        let v = readiness(&outage(&mut history, t0, now), &no_grace, now);
        assert_eq!(v.kind, VerdictKind::ReplicationError);
    }

    #[test]
    fn a_replica_that_was_not_serving_everything_gets_no_grace() {
        let t0 = Instant::now();
        let r = rules(Role::Replica);
        let now = t0 + Duration::from_secs(3);
        let judge = |change: &dyn Fn(&mut ReplicaFacts)| {
            let mut history = PrimaryHistory::new(Duration::from_secs(600));
            let mut snap = outage(&mut history, t0, now);
            change(snap.replica.as_mut().unwrap());
            readiness(&snap, &r, now)
        };
        assert!(judge(&|_| {}).ready);
        let sql_error = judge(&|f| {
            let status = f.status.as_mut().unwrap();
            status.sql_running = false;
            status.sql_error = Some(ThreadError {
                errno: 1062,
                message: "Duplicate entry".into(),
            });
        });
        assert_eq!(sql_error.kind, VerdictKind::ReplicationError);
        // Received more than it applied.
        let unapplied = judge(&|f| f.status.as_mut().unwrap().received = pos("0-100-12"));
        assert!(!unapplied.ready, "{unapplied:?}");
        // Behind by more than max_lag when the link was lost.
        let behind = judge(&|f| f.applied_as_of = Some(t0 - Duration::from_secs(10)));
        assert!(!behind.ready, "{behind:?}");
        // Never in touch with the primary in this agent's life: the usual rules.
        let never = judge(&|f| f.link_lost_since = None);
        assert_eq!(never.kind, VerdictKind::ReplicationError);
    }

    #[test]
    fn history_keeps_a_bounded_window() {
        let t0 = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(10));
        for i in 0..100u64 {
            history.record(pos(&format!("0-100-{i}")), t0 + Duration::from_secs(i));
        }
        assert!(history.seen.len() <= 12);
        assert_eq!(history.applied_as_of(&pos("0-100-5")), None);
        assert_eq!(history.latest().unwrap().position, pos("0-100-99"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn mysql_replica_with_a_gap_is_behind_by_the_gap() {
        let uuid = "83f00eb9-e579-11f1-a5e0-02fc00000001";
        let set = |t: &str| Gtids::parse(Flavor::MySql, &format!("{uuid}:{t}")).unwrap();
        let t0 = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(set("1-100"), t0);
        let r = rules(Role::Replica);
        let now = t0 + Duration::from_secs(1);
        assert!(readiness(&replica_with(now, set("1-100"), &history), &r, now).ready);
        let now = t0 + Duration::from_secs(30);
        history.record(set("1-100"), now);
        let v = readiness(&replica_with(now, set("1-49:51-100"), &history), &r, now);
        assert_eq!(
            (v.ready, v.reason.as_str()),
            (false, "replica 1 transactions behind mysql-0")
        );
    }

    #[test]
    fn purged_binlogs_get_advice() {
        let now = Instant::now();
        let mut history = PrimaryHistory::new(Duration::from_secs(600));
        history.record(pos("0-100-10"), now);
        let mut snap = replica_at(now, "0-100-1", &history);
        let status = snap.replica.as_mut().unwrap().status.as_mut().unwrap();
        status.io_thread = IoThread::Stopped;
        status.io_error = Some(ThreadError {
            errno: 13114,
            message: "Got fatal error 1236 from source when reading data from binary log: \
                      'Cannot replicate because the source purged required binary logs.'"
                .into(),
        });
        let v = readiness(&snap, &rules(Role::Replica), now);
        assert_eq!(v.kind, VerdictKind::ReplicationError);
        assert!(
            v.reason
                .starts_with("replica IO thread error 13114: Got fatal error 1236")
        );
        assert!(
            v.reason.contains("deleting this pod's data volume"),
            "{}",
            v.reason
        );
    }
}
