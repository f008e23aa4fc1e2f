//! The sidecar's Prometheus metrics (`GET /metrics`), all named `mysql_sts_agent_*`. What
//! describes the server is read from the control loop's latest snapshot when scraped, as the
//! probes do: a scrape runs no SQL. Counters live where things happen: the control loop's
//! retries, the donor's clones. The clone this pod received is read from its marker as the
//! sidecar last published it: a scrape reads no file either.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelValueEncoder, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use tokio::sync::watch;

use crate::clone::AttemptFailure;
use crate::clone::datadir::CloneMarker;
use crate::clone::mariadb::donor::CloneCounters;
use crate::db::flavor::Flavor;
use crate::db::status::IoThread;
use crate::health::{self, Rules, Snapshot};
use crate::identity::Role;

/// The Prometheus text format (0.0.4): every Prometheus and promtool read it.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const PREFIX: &str = "mysql_sts_agent";

/// What the control loop tries again after it failed: the values of `operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    ConnectLocal,
    SetUp,
    PollLocal,
    SamplePrimary,
    SemiSync,
}

impl Operation {
    const ALL: [Operation; 5] = [
        Operation::ConnectLocal,
        Operation::SetUp,
        Operation::PollLocal,
        Operation::SamplePrimary,
        Operation::SemiSync,
    ];
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, &serde_name(self))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: Operation,
}

/// The control loop's failures: how often it tried each operation again, and when one last
/// failed.
#[derive(Debug, Clone)]
pub struct Retries {
    by_operation: Family<OperationLabels, Counter>,
    last_error: Gauge<f64, AtomicU64>,
}

impl Default for Retries {
    fn default() -> Self {
        let by_operation = Family::default();
        // Every series exists from the start, so that rate() sees the first retry.
        for operation in Operation::ALL {
            by_operation.get_or_create_owned(&OperationLabels { operation });
        }
        Retries {
            by_operation,
            last_error: Gauge::default(),
        }
    }
}

impl Retries {
    /// `operation` failed; the loop tries it again.
    pub fn record(&self, operation: Operation) {
        self.by_operation
            .get_or_create(&OperationLabels { operation })
            .inc();
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        self.last_error.set(now.unwrap_or_default().as_secs_f64());
    }
}

/// A bounded set of label values: why something failed or was refused.
pub trait Reason: Copy + Ord + Serialize + 'static {
    const ALL: &'static [Self];
}

/// Counts by reason; every reason has a series from the start, so that rate() sees the first.
#[derive(Debug)]
pub struct Tally<R: Reason>(BTreeMap<R, AtomicU64>);

impl<R: Reason> Default for Tally<R> {
    fn default() -> Self {
        Tally(R::ALL.iter().map(|&r| (r, AtomicU64::new(0))).collect())
    }
}

impl<R: Reason> Tally<R> {
    pub fn add(&self, reason: R) {
        if let Some(count) = self.0.get(&reason) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> impl Iterator<Item = (R, u64)> {
        self.0
            .iter()
            .map(|(&reason, count)| (reason, count.load(Ordering::Relaxed)))
    }

    /// Every reason's count together.
    pub fn total(&self) -> u64 {
        self.counts().map(|(_, count)| count).sum()
    }

    /// For `serialize_with`: the total, where a count without reasons is shown.
    pub fn serialize_total<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.total())
    }
}

/// A clone that completed, as `/metrics` shows the last one of each side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastClone {
    bytes: u64,
    duration: Duration,
    completed_unix: u64,
}

impl LastClone {
    pub fn new(bytes: u64, duration: Duration, completed_unix: u64) -> Self {
        LastClone {
            bytes,
            duration,
            completed_unix,
        }
    }

    /// `None` for a marker of an earlier version, which has no duration.
    fn of_marker(marker: &CloneMarker) -> Option<Self> {
        let duration = Duration::from_millis(marker.duration_ms?);
        Some(LastClone::new(
            marker.bytes,
            duration,
            marker.completed_unix,
        ))
    }

    fn rate(&self) -> Option<f64> {
        let secs = self.duration.as_secs_f64();
        (secs > 0.0).then(|| self.bytes as f64 / secs)
    }
}

/// Which side of a clone this pod was on: the `side` label.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum Side {
    Received,
    Served,
}

/// What the metrics are read from.
pub struct Sources {
    pub snapshots: watch::Receiver<Snapshot>,
    /// Readiness as `/readyz` judges it without `?lag=`.
    pub rules: Rules,
    pub flavor: Flavor,
    pub retries: Retries,
    /// MariaDB pods serve clones; MySQL pods have none.
    pub clones: Option<Arc<CloneCounters>>,
    /// The marker of the clone this pod's data came from, if it was cloned.
    pub marker: watch::Receiver<Option<Arc<CloneMarker>>>,
}

/// The registry `/metrics` encodes, one per sidecar.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "retries",
            "Failed operations the control loop tried again, by operation",
            sources.retries.by_operation,
        );
        registry.register_with_unit(
            "last_error_timestamp",
            "When an operation of the control loop last failed, in Unix time; 0: not since the \
             agent started",
            Unit::Seconds,
            sources.retries.last_error,
        );
        registry.register_collector(Box::new(SnapshotCollector {
            snapshots: sources.snapshots,
            rules: sources.rules,
            flavor: sources.flavor,
        }));
        registry.register_collector(Box::new(CloneCollector {
            marker: sources.marker,
            served: sources.clones,
        }));
        Metrics { registry }
    }

    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The name serde gives a unit variant (snake_case here), so that labels and log fields read as
/// `/status` does.
pub(crate) fn serde_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// A gauge written at scrape time. Help texts written here end with a period: the registry adds
/// one to those it holds.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn gauges<S: EncodeLabelSet, V: EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(S, V)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// Build, readiness and replication, from the control loop's latest snapshot.
#[derive(Debug)]
struct SnapshotCollector {
    snapshots: watch::Receiver<Snapshot>,
    rules: Rules,
    flavor: Flavor,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = self.snapshots.borrow().clone();
        let now = Instant::now();
        let verdict = health::readiness(&snap, &self.rules, now);
        let server_version = snap.server.as_ref().map(|s| s.version.as_str());
        let build = [
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("flavor", serde_name(&self.flavor)),
            (
                "server_version",
                server_version.unwrap_or_default().to_owned(),
            ),
        ];
        gauges(
            &mut encoder,
            "build_info",
            "The agent's version, its --flavor, and the local server's version as /status \
             shows it (empty while unknown); always 1.",
            None,
            &[(build, 1)],
        )?;
        gauge(
            &mut encoder,
            "ready",
            "1 when the pod is ready as /readyz judges it, else 0.",
            None,
            i64::from(verdict.ready),
        )?;
        gauges(
            &mut encoder,
            "readiness_reason",
            "Why the pod is ready or not, as a kind (the text is in /readyz); 1 for the current \
             kind only.",
            None,
            &[([("kind", serde_name(&verdict.kind))], 1)],
        )?;
        if let Some(semi_sync) = snap
            .semi_sync
            .as_ref()
            .filter(|_| self.rules.role == Role::Primary)
        {
            gauge(
                &mut encoder,
                "semi_sync_clients",
                "The primary's connected semi-sync replicas (Rpl_semi_sync_*_clients), with \
                 --semi-sync only; 0: no replica can acknowledge a commit.",
                None,
                semi_sync.clients,
            )?;
        }
        let Some(replica) = &snap.replica else {
            return Ok(());
        };
        if let Some(lag) = replica.lag(now) {
            gauge(
                &mut encoder,
                "replica_lag",
                "Since the primary last stood at a position this replica has wholly applied \
                 (/status lag_seconds); absent while unknown.",
                Some(&Unit::Seconds),
                lag.as_secs_f64(),
            )?;
        }
        if let Some(behind) = replica.transactions_behind() {
            gauge(
                &mut encoder,
                "replica_transactions_behind",
                "Transactions the primary had at its last sample that this replica has not \
                 applied; absent while the primary was never sampled.",
                None,
                behind,
            )?;
        }
        gauge(
            &mut encoder,
            "replica_fenced",
            "1 while this replica has transactions the primary does not (errant GTIDs): not \
             ready and no donor until a person acts.",
            None,
            i64::from(replica.errant.is_some()),
        )?;
        let Some(status) = &replica.status else {
            return Ok(());
        };
        let io_thread = IoThread::ALL.map(|state| {
            (
                [("state", serde_name(&state))],
                i64::from(status.io_thread == state),
            )
        });
        gauges(
            &mut encoder,
            "replica_io_thread",
            "The replica's IO thread: 1 for its current state (running, connecting, stopped).",
            None,
            &io_thread,
        )?;
        gauge(
            &mut encoder,
            "replica_sql_thread_running",
            "1 while the replica's SQL thread runs, else 0.",
            None,
            i64::from(status.sql_running),
        )
    }
}

/// A counter family with one series per reason.
fn reason_counters<R: Reason>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    tally: &Tally<R>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (reason, count) in tally.counts() {
        let labels = [("reason", serde_name(&reason))];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// What a family of the last clones shows of one.
type LastCloneValue = fn(&LastClone) -> Option<f64>;

fn last_clone_families() -> [(&'static str, &'static str, Unit, LastCloneValue); 4] {
    [
        (
            "last_clone",
            "The size of the last clone this pod received (side=received, its data's) or served to \
             its end (side=served, MariaDB); absent when there is none.",
            Unit::Bytes,
            |clone| Some(clone.bytes as f64),
        ),
        (
            "last_clone_duration",
            "How long the last clone this pod received or served took, from the donor's acceptance \
             to the clone prepared (received) or streamed (served).",
            Unit::Seconds,
            |clone| Some(clone.duration.as_secs_f64()),
        ),
        (
            "last_clone_rate",
            "The last clone this pod received or served: its bytes over its duration.",
            Unit::Other("bytes_per_second".to_owned()),
            LastClone::rate,
        ),
        (
            "last_clone_completed_timestamp",
            "When the last clone this pod received or served completed, in Unix time.",
            Unit::Seconds,
            |clone| Some(clone.completed_unix as f64),
        ),
    ]
}

/// The clones this pod received (from the marker, when scraped) and served (MariaDB, as the
/// donor counts them).
#[derive(Debug)]
struct CloneCollector {
    marker: watch::Receiver<Option<Arc<CloneMarker>>>,
    served: Option<Arc<CloneCounters>>,
}

impl Collector for CloneCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let marker = self.marker.borrow().clone();
        let received = marker.as_deref().and_then(LastClone::of_marker);
        let served = self
            .served
            .as_ref()
            .and_then(|counters| counters.last_served());
        let sides: Vec<(Side, LastClone)> = [(Side::Received, received), (Side::Served, served)]
            .into_iter()
            .filter_map(|(side, clone)| Some((side, clone?)))
            .collect();
        for (name, help, unit, value) in last_clone_families() {
            let series: Vec<_> = sides
                .iter()
                .filter_map(|(side, clone)| Some(([("side", serde_name(side))], value(clone)?)))
                .collect();
            if series.is_empty() {
                continue;
            }
            gauges(&mut encoder, name, help, Some(&unit), &series)?;
        }
        if let Some(failed) = marker.as_deref().and_then(|m| m.failed_attempts.as_ref()) {
            let series: Vec<_> = AttemptFailure::ALL
                .iter()
                .map(|reason| {
                    let name = serde_name(reason);
                    let count = failed.get(&name).copied().unwrap_or_default();
                    ([("reason", name)], i64::from(count))
                })
                .collect();
            gauges(
                &mut encoder,
                "clone_attempt_failures",
                "The failed attempts to clone, by reason, of the init run that completed this \
                 pod's clone (failures that ended an earlier init run are not carried over).",
                None,
                &series,
            )?;
        }
        match &self.served {
            Some(counters) => encode_served(&mut encoder, counters),
            None => Ok(()),
        }
    }
}

/// The clones this pod served (MariaDB), as the donor counts them.
fn encode_served(encoder: &mut DescriptorEncoder, counters: &CloneCounters) -> fmt::Result {
    let read = |count: &AtomicU64| count.load(Ordering::Relaxed);
    let outcomes = [
        ("completed", read(&counters.completed)),
        ("failed", counters.failures.total()),
    ];
    let mut family = encoder.encode_descriptor(
        "clones_served",
        "Clones this pod streamed to a joiner, by outcome.",
        None,
        MetricType::Counter,
    )?;
    for (outcome, count) in outcomes {
        ConstCounter::new(count).encode(family.encode_family(&[("outcome", outcome)])?)?;
    }
    reason_counters(
        encoder,
        "clone_serve_failures",
        "Clones this pod began to stream and did not finish, by reason.",
        &counters.failures,
    )?;
    reason_counters(
        encoder,
        "clone_serve_refusals",
        "Clone requests this pod refused before streaming, by reason (unauthorized: a missing \
         or wrong token; not_a_donor: not healthy enough; busy: serving another clone).",
        &counters.refusals,
    )?;
    let bytes = ConstCounter::new(read(&counters.bytes));
    bytes.encode(encoder.encode_descriptor(
        "clone_served",
        "Backup bytes streamed to joiners, failed clones included.",
        Some(&Unit::Bytes),
        bytes.metric_type(),
    )?)?;
    gauge(
        encoder,
        "clones_serving",
        "Clones being streamed now (one at a time).",
        None,
        read(&counters.active),
    )?;
    let durations = &counters.durations;
    durations.encode(encoder.encode_descriptor(
        "clone_serve_duration",
        "How long serving a clone took, whatever its outcome.",
        Some(&Unit::Seconds),
        durations.metric_type(),
    )?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clone::mariadb::donor::{Refusal, ServeFailure};
    use crate::db::facts::ServerFacts;
    use crate::db::gtid::{Binlogged, Gtids};
    use crate::db::status::ReplicaStatus;
    use crate::health::{Phase, PrimarySample, ReplicaFacts};
    use crate::semisync::SemiSyncFacts;

    fn gtids(text: &str) -> Gtids {
        Gtids::parse(Flavor::MariaDb, text).unwrap()
    }

    /// A MariaDB replica 3 transactions behind, whose primary was last at a position it
    /// applied 2 s ago, with its SQL thread stopped.
    fn replica(now: Instant) -> Snapshot {
        Snapshot {
            taken_at: now,
            phase: Phase::Replicating,
            last_error: None,
            server: Some(ServerFacts {
                version: "MariaDB 10.11.6-MariaDB-0+deb12u1".into(),
                read_only: true,
                super_read_only: None,
                gtid_applied: gtids("0-100-7"),
                gtid_binlog: Binlogged::parse(Flavor::MariaDb, "0-100-7").unwrap(),
            }),
            replica: Some(ReplicaFacts {
                status: Some(ReplicaStatus {
                    source_host: "mysql-0.mysql".into(),
                    source_port: 3306,
                    io_thread: IoThread::Connecting,
                    sql_running: false,
                    io_error: None,
                    sql_error: None,
                    seconds_behind: None,
                    gtid_mode: "Slave_Pos".into(),
                    received: gtids("0-100-10"),
                    verified_tls_ca: None,
                }),
                applied: gtids("0-100-7"),
                primary: Some(PrimarySample {
                    position: gtids("0-100-10"),
                    at: now,
                }),
                primary_error: None,
                applied_as_of: Some(now - Duration::from_secs(2)),
                errant: None,
                errant_checked: true,
                link_lost_since: None,
            }),
            semi_sync: None,
        }
    }

    fn replica_rules() -> Rules {
        Rules {
            role: Role::Replica,
            primary_name: "mysql-0".into(),
            max_lag: Duration::from_secs(5),
            stale_after: Duration::from_secs(15),
            outage_grace: Duration::from_secs(30),
        }
    }

    fn metrics(snapshot: Snapshot, retries: Retries, clones: Option<Arc<CloneCounters>>) -> String {
        metrics_with(snapshot, replica_rules(), retries, clones, None)
    }

    fn metrics_with(
        snapshot: Snapshot,
        rules: Rules,
        retries: Retries,
        clones: Option<Arc<CloneCounters>>,
        marker: Option<CloneMarker>,
    ) -> String {
        Metrics::new(Sources {
            snapshots: watch::channel(snapshot).1,
            rules,
            flavor: Flavor::MariaDb,
            retries,
            clones,
            marker: watch::channel(marker.map(Arc::new)).1,
        })
        .encode()
        .unwrap()
    }

    /// What a replica's metrics say of the clone its data came from.
    fn with_marker(marker: CloneMarker) -> String {
        let snapshot = replica(Instant::now());
        metrics_with(
            snapshot,
            replica_rules(),
            Retries::default(),
            None,
            Some(marker),
        )
    }

    /// 10 MB cloned in 4 s, after two answers that the donor was not ready and one busy.
    fn marker() -> CloneMarker {
        CloneMarker {
            donor: "mysql-0.mysql".into(),
            gtid_position: "0-100-7".into(),
            position_source: "xtrabackup_binlog_info".into(),
            bytes: 10_000_000,
            completed_unix: 1_800_000_000,
            duration_ms: Some(4000),
            agent_version: "test".into(),
            promotion: crate::clone::datadir::Promotion::None,
            failed_attempts: Some(BTreeMap::from([
                ("not_a_donor".to_owned(), 2),
                ("busy".to_owned(), 1),
                ("a_reason_of_a_later_version".to_owned(), 5),
            ])),
        }
    }

    /// The value of the one series named `series` (with its labels).
    fn value(text: &str, series: &str) -> f64 {
        let values: Vec<f64> = text
            .lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .collect();
        assert_eq!(values.len(), 1, "{series} in:\n{text}");
        values[0]
    }

    #[test]
    fn a_replica_snapshot_is_encoded_with_bounded_labels() {
        let now = Instant::now();
        let retries = Retries::default();
        retries.record(Operation::SamplePrimary);
        retries.record(Operation::SamplePrimary);
        let text = metrics(replica(now), retries, None);
        let build = format!(
            "mysql_sts_agent_build_info{{version=\"{}\",flavor=\"mariadb\",\
             server_version=\"MariaDB 10.11.6-MariaDB-0+deb12u1\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&text, &build), 1.0);
        assert_eq!(value(&text, "mysql_sts_agent_ready"), 0.0);
        assert_eq!(
            value(
                &text,
                "mysql_sts_agent_readiness_reason{kind=\"thread_stopped\"}"
            ),
            1.0
        );
        let lag = value(&text, "mysql_sts_agent_replica_lag_seconds");
        assert!((2.0..3.0).contains(&lag), "{lag}");
        assert_eq!(
            value(&text, "mysql_sts_agent_replica_transactions_behind"),
            3.0
        );
        assert_eq!(value(&text, "mysql_sts_agent_replica_fenced"), 0.0);
        for (state, expected) in [("running", 0.0), ("connecting", 1.0), ("stopped", 0.0)] {
            let series = format!("mysql_sts_agent_replica_io_thread{{state=\"{state}\"}}");
            assert_eq!(value(&text, &series), expected);
        }
        assert_eq!(
            value(&text, "mysql_sts_agent_replica_sql_thread_running"),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "mysql_sts_agent_retries_total{operation=\"sample_primary\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &text,
                "mysql_sts_agent_retries_total{operation=\"connect_local\"}"
            ),
            0.0
        );
        assert!(value(&text, "mysql_sts_agent_last_error_timestamp_seconds") > 1.7e9);
        assert!(text.contains("# TYPE mysql_sts_agent_retries_total counter\n"));
        // The reason's text stays in /readyz: no label carries it.
        let reason = health::readiness(&replica(now), &replica_rules(), now).reason;
        assert_eq!(reason, "replica IO thread is connecting to mysql-0");
        assert!(!text.contains("connecting to"), "{text}");
        assert!(
            !text.contains("clone"),
            "no clone metrics on MySQL:\n{text}"
        );
    }

    #[test]
    fn unknown_values_are_absent_and_served_clones_are_counted() {
        let now = Instant::now();
        let mut snapshot = replica(now);
        let facts = snapshot.replica.as_mut().unwrap();
        facts.applied_as_of = None;
        facts.primary = None;
        facts.errant = Some(Binlogged::parse(Flavor::MariaDb, "0-101-1").unwrap());
        let clones = Arc::new(CloneCounters::default());
        clones.completed.store(2, Ordering::Relaxed);
        clones.bytes.store(4096, Ordering::Relaxed);
        clones.durations.observe(3.0);
        clones.refusals.add(Refusal::NotADonor);
        clones.refusals.add(Refusal::NotADonor);
        clones.failures.add(ServeFailure::JoinerGone);
        *clones.last_served.lock().unwrap() = Some(LastClone::new(
            4096,
            Duration::from_millis(500),
            1_800_000_100,
        ));
        let text = metrics(snapshot, Retries::default(), Some(clones));
        assert!(!text.contains("replica_lag"), "{text}");
        assert!(!text.contains("transactions_behind"), "{text}");
        assert_eq!(value(&text, "mysql_sts_agent_replica_fenced"), 1.0);
        assert_eq!(
            value(&text, "mysql_sts_agent_readiness_reason{kind=\"fenced\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "mysql_sts_agent_last_error_timestamp_seconds"),
            0.0
        );
        let served = |outcome: &str| {
            value(
                &text,
                &format!("mysql_sts_agent_clones_served_total{{outcome=\"{outcome}\"}}"),
            )
        };
        assert_eq!((served("completed"), served("failed")), (2.0, 1.0));
        assert_eq!(
            value(&text, "mysql_sts_agent_clone_served_bytes_total"),
            4096.0
        );
        assert_eq!(value(&text, "mysql_sts_agent_clones_serving"), 0.0);
        assert_eq!(
            value(
                &text,
                "mysql_sts_agent_clone_serve_duration_seconds_bucket{le=\"4\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&text, "mysql_sts_agent_clone_serve_duration_seconds_count"),
            1.0
        );
        let counted = |name: &str, reason: &str| {
            value(
                &text,
                &format!("mysql_sts_agent_{name}_total{{reason=\"{reason}\"}}"),
            )
        };
        for (reason, count) in [("unauthorized", 0.0), ("not_a_donor", 2.0), ("busy", 0.0)] {
            assert_eq!(counted("clone_serve_refusals", reason), count, "{reason}");
        }
        for (reason, count) in [
            ("scratch", 0.0),
            ("backup_failed", 0.0),
            ("read_error", 0.0),
            ("joiner_gone", 1.0),
            ("shutting_down", 0.0),
        ] {
            assert_eq!(counted("clone_serve_failures", reason), count, "{reason}");
        }
        // The last served clone; this pod has no marker, so nothing of a received one.
        let served = |name: &str| {
            value(
                &text,
                &format!("mysql_sts_agent_last_clone_{name}{{side=\"served\"}}"),
            )
        };
        assert_eq!(served("bytes"), 4096.0);
        assert_eq!(served("duration_seconds"), 0.5);
        assert_eq!(served("rate_bytes_per_second"), 8192.0);
        assert_eq!(served("completed_timestamp_seconds"), 1_800_000_100.0);
        assert!(!text.contains("side=\"received\""), "{text}");
        assert!(!text.contains("clone_attempt_failures"), "{text}");
    }

    #[test]
    fn the_clone_a_replica_received_is_read_from_its_marker() {
        let text = with_marker(marker());
        let received = |name: &str| {
            value(
                &text,
                &format!("mysql_sts_agent_last_clone_{name}{{side=\"received\"}}"),
            )
        };
        assert_eq!(received("bytes"), 10_000_000.0);
        assert_eq!(received("duration_seconds"), 4.0);
        assert_eq!(received("rate_bytes_per_second"), 2_500_000.0);
        assert_eq!(received("completed_timestamp_seconds"), 1_800_000_000.0);
        assert!(!text.contains("side=\"served\""), "{text}");
        assert!(!text.contains("clones_served"), "no donor: {text}");
        // Every reason has a series, 0 when init saw none.
        let failures = |reason: &str| {
            value(
                &text,
                &format!("mysql_sts_agent_clone_attempt_failures{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(failures("not_a_donor"), 2.0);
        assert_eq!(failures("busy"), 1.0);
        for reason in AttemptFailure::ALL {
            failures(&serde_name(reason));
        }
        assert_eq!(failures("donor_unresolved"), 0.0);
        // A reason this version does not know (a later one wrote the marker) is left out.
        assert!(!text.contains("a_reason_of_a_later_version"), "{text}");
        assert!(
            text.contains("# TYPE mysql_sts_agent_last_clone_bytes gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn a_marker_of_an_earlier_version_shows_what_it_knows() {
        let text = with_marker(CloneMarker {
            duration_ms: None,
            failed_attempts: None,
            ..marker()
        });
        assert!(!text.contains("last_clone"), "no duration, no rate: {text}");
        assert!(!text.contains("clone_attempt_failures"), "{text}");
        // The first pod, never cloned, has no clone series at all.
        let text = metrics(replica(Instant::now()), Retries::default(), None);
        assert!(!text.contains("clone"), "{text}");
    }

    #[test]
    fn clone_errors_and_attempts_map_to_bounded_reasons() {
        use crate::clone::{Attempt, CloneError};
        use crate::dns::DnsError;
        let donor = || "mysql-0".to_owned();
        for (error, reason) in [
            (
                CloneError::Unauthorized(donor()),
                AttemptFailure::Unauthorized,
            ),
            (
                CloneError::Refused {
                    donor: donor(),
                    answer: "404".into(),
                },
                AttemptFailure::Refused,
            ),
            (
                CloneError::Broken {
                    donor: donor(),
                    bytes: 1,
                    reason: "reset".into(),
                },
                AttemptFailure::StreamBroken,
            ),
            (
                CloneError::DonorFailed("disk full".into()),
                AttemptFailure::DonorBackupFailed,
            ),
            (
                CloneError::Plugin {
                    donor: donor(),
                    message: "error 3862".into(),
                },
                AttemptFailure::ClonePluginFailed,
            ),
            (
                CloneError::TempServer("did not start".into()),
                AttemptFailure::LocalFailed,
            ),
            (
                CloneError::Deadline {
                    donor: donor(),
                    deadline: "6s".into(),
                    last: "503".into(),
                },
                AttemptFailure::TimedOut,
            ),
            (CloneError::Cancelled, AttemptFailure::Cancelled),
        ] {
            assert_eq!(error.failure(), reason, "{error}");
            assert_eq!(Attempt::Fatal(error).failure(), reason);
        }
        let unresolved = Attempt::Unresolved(DnsError::Config("no resolver".into()));
        assert_eq!(unresolved.failure(), AttemptFailure::DonorUnresolved);
        let busy = Attempt::Retry(AttemptFailure::Busy, "429 busy".into());
        assert_eq!(busy.failure(), AttemptFailure::Busy);
    }

    #[test]
    fn semi_sync_clients_are_the_primarys_only() {
        let now = Instant::now();
        let semi_sync = SemiSyncFacts {
            enabled: true,
            active: false,
            clients: 0,
            ..SemiSyncFacts::default()
        };
        let mut primary = replica(now);
        primary.replica = None;
        primary.semi_sync = Some(semi_sync.clone());
        let primary_rules = Rules {
            role: Role::Primary,
            ..replica_rules()
        };
        let series = "mysql_sts_agent_semi_sync_clients";
        let text = metrics_with(
            primary.clone(),
            primary_rules.clone(),
            Retries::default(),
            None,
            None,
        );
        assert_eq!(value(&text, series), 0.0);
        primary.semi_sync = Some(SemiSyncFacts {
            clients: 2,
            ..semi_sync.clone()
        });
        let text = metrics_with(
            primary.clone(),
            primary_rules.clone(),
            Retries::default(),
            None,
            None,
        );
        assert_eq!(value(&text, series), 2.0);
        // Without --semi-sync there are no facts, and a replica's side has no clients.
        primary.semi_sync = None;
        let text = metrics_with(primary, primary_rules, Retries::default(), None, None);
        assert!(!text.contains(series), "{text}");
        let mut replica = replica(now);
        replica.semi_sync = Some(semi_sync);
        let text = metrics(replica, Retries::default(), None);
        assert!(!text.contains(series), "{text}");
    }
}
