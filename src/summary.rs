//! A pod's state for a person, in a few lines (`mysql-sts-agent status`): from the sidecar's
//! `/status`, or, while no sidecar runs (an init container cloning), from the clone's progress
//! file. Pure: the text is a function of what was read and of the time.

use serde::Deserialize;

use crate::clone::datadir::CloneMarker;
use crate::clone::mariadb::compression::Compression;
use crate::clone::mariadb::donor::ServingView;
use crate::clone::progress::{ClonePhase, ProgressRecord, TransferView};
use crate::db::status::{IoThread, ThreadError};
use crate::duration::seconds;

/// A clone whose file has not changed this long while data should be moving may have stopped.
const STALE_AFTER_SECS: u64 = 30;
const MIB: f64 = 1024.0 * 1024.0;

/// `/status` as the summary reads it: only what it shows, each field optional, so that the
/// answer of an agent of another version still reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatusReport {
    pub hostname: String,
    pub role: String,
    pub phase: String,
    pub ready: bool,
    pub readiness: String,
    /// A replica's primary.
    pub source: Option<String>,
    pub replication: Option<ReplicationReport>,
    pub last_error: Option<String>,
    pub last_clone: Option<CloneMarker>,
    pub clone_progress: Option<ProgressRecord>,
    pub serving_clone: Option<ServingView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReplicationReport {
    pub status: Option<ThreadsReport>,
    pub lag_seconds: Option<f64>,
    pub transactions_behind: Option<u64>,
    pub errant_gtids: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ThreadsReport {
    pub io_thread: Option<IoThread>,
    pub sql_running: bool,
    pub io_error: Option<ThreadError>,
    pub sql_error: Option<ThreadError>,
}

/// The summary of a sidecar's `/status`.
pub fn render(report: &StatusReport, now_unix: u64) -> String {
    let role = match (report.role.as_str(), &report.source) {
        ("replica", Some(source)) => format!("replica of {}", pod_name(source)),
        (role, _) => role.to_owned(),
    };
    let ready = if report.ready { "yes" } else { "no" };
    let mut lines = vec![format!(
        "{}  {role}  phase: {}  ready: {ready} ({})",
        report.hostname, report.phase, report.readiness
    )];
    if report.role == "replica" {
        lines.extend(replication_lines(report.replication.as_ref()));
    }
    if let Some(progress) = &report.clone_progress {
        lines.push(format!("re-clone: {}", progress_line(progress, now_unix)));
    }
    if let Some(serving) = &report.serving_clone {
        let compressed = match serving.compression {
            Compression::None => "",
            Compression::Zstd => " (zstd-compressed)",
        };
        lines.push(format!(
            "serving a clone to {}{compressed}: {}",
            serving.joiner,
            transfer_text(&serving.transfer)
        ));
    }
    lines.push(match &report.last_clone {
        Some(marker) => clone_line(marker),
        None => "no clone marker: the data is the server's own".to_owned(),
    });
    let last_error = report.last_error.as_deref().unwrap_or("none");
    lines.push(format!("last error: {last_error}"));
    lines.join("\n")
}

/// The summary of a clone's progress file, while no agent answers.
pub fn render_progress(progress: &ProgressRecord, now_unix: u64) -> String {
    let mut head = progress_line(progress, now_unix);
    if !progress.hostname.is_empty() {
        head = format!("{}  {head}", progress.hostname);
    }
    let mut detail = format!(
        "clone started {}, progress updated {} ago",
        utc(progress.started_unix),
        eta_text(now_unix.saturating_sub(progress.updated_unix))
    );
    if progress.donor_attempt > 1 {
        detail.push_str(&format!(
            "; donor attempt {} (chosen by a fallback search)",
            progress.donor_attempt
        ));
    }
    format!("{head}\n{detail}")
}

fn replication_lines(replication: Option<&ReplicationReport>) -> Vec<String> {
    let Some(replication) = replication else {
        return vec!["replication: not sampled".to_owned()];
    };
    let Some(threads) = &replication.status else {
        return vec!["replication: not configured".to_owned()];
    };
    let lag = match (replication.lag_seconds, replication.transactions_behind) {
        (Some(lag), Some(behind)) => format!("lag: {lag:.1}s, {behind} transactions behind"),
        (Some(lag), None) => format!("lag: {lag:.1}s"),
        (None, Some(behind)) => format!("lag: unknown, {behind} transactions behind"),
        (None, None) => "lag: unknown".to_owned(),
    };
    let io = match threads.io_thread {
        Some(state) => crate::metrics::serde_name(&state),
        None => "unknown".to_owned(),
    };
    let sql = if threads.sql_running {
        "running"
    } else {
        "stopped"
    };
    let mut lines = vec![format!(
        "{lag}   IO thread: {io}{}   SQL thread: {sql}{}",
        error_text(threads.io_error.as_ref()),
        error_text(threads.sql_error.as_ref())
    )];
    if let Some(errant) = &replication.errant_gtids {
        lines.push(format!("errant GTIDs: {errant} (fenced)"));
    }
    lines
}

fn error_text(error: Option<&ThreadError>) -> String {
    error.map_or_else(String::new, |e| {
        format!(" (error {}: {})", e.errno, e.message)
    })
}

fn clone_line(marker: &CloneMarker) -> String {
    let size = size(marker.bytes);
    let took = match marker.duration_ms {
        Some(ms) => format!(
            "{size} in {}",
            seconds(std::time::Duration::from_millis(ms))
        ),
        None => size,
    };
    format!(
        "cloned from {} at {} ({took})",
        pod_name(&marker.donor),
        utc(marker.completed_unix)
    )
}

/// Where a clone is, in one line.
fn progress_line(progress: &ProgressRecord, now_unix: u64) -> String {
    let donor = pod_name(&progress.donor);
    let transfer = &progress.transfer;
    let waiting = |what: String| match &progress.waiting {
        Some(w) => format!(
            "{what}: {} (attempt {}, next in {})",
            w.reason,
            w.attempt,
            seconds(std::time::Duration::from_millis(w.next_delay_ms))
        ),
        None => what,
    };
    match progress.phase {
        ClonePhase::WaitingForDns => waiting(format!("waiting for DNS to resolve donor {donor}")),
        ClonePhase::WaitingForDonor => waiting(format!("waiting for donor {donor}")),
        ClonePhase::Cloning => {
            let mut line = format!("cloning from {donor}: {}", transfer_text(transfer));
            if let Some(stage) = &progress.stage {
                line.push_str(&format!(", stage {stage}"));
            }
            let silent = now_unix.saturating_sub(progress.updated_unix);
            if silent >= STALE_AFTER_SECS {
                line.push_str(&format!(
                    " (no update for {}: the clone may have stopped)",
                    eta_text(silent)
                ));
            }
            line
        }
        ClonePhase::Preparing => format!(
            "preparing the clone from {donor} ({} received)",
            size(transfer.bytes)
        ),
        ClonePhase::Installing => format!(
            "installing the clone from {donor} ({}): moving it into place",
            size(transfer.bytes)
        ),
    }
}

/// "412 MiB of ~806 MiB (estimate), 160.0 MiB/s, ETA 3s"
fn transfer_text(transfer: &TransferView) -> String {
    let (bytes, rate) = (size(transfer.bytes), transfer.mib_per_s);
    match (transfer.estimated_total_bytes, transfer.eta_secs) {
        (Some(total), Some(eta)) => format!(
            "{bytes} of ~{} (estimate), {rate:.1} MiB/s, ETA {}",
            size(total),
            eta_text(eta)
        ),
        (Some(total), None) if transfer.bytes >= total => format!(
            "{bytes} of ~{} (estimate), {rate:.1} MiB/s, past the estimate: ETA unknown",
            size(total)
        ),
        (Some(total), None) => format!("{bytes} of ~{} (estimate), starting", size(total)),
        (None, _) => format!("{bytes}, {rate:.1} MiB/s, no estimate of the total: no ETA"),
    }
}

/// 0.4 MiB, 412 MiB, 12.3 GiB: three significant figures at most.
fn size(bytes: u64) -> String {
    let mib = bytes as f64 / MIB;
    if mib < 10.0 {
        format!("{mib:.1} MiB")
    } else if mib < 10.0 * 1024.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

/// 3s, 2m05s, 1h02m.
fn eta_text(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A pod's name from its stable name: `mysql-0` of `mysql-0.mysql.db.svc.cluster.local`.
fn pod_name(fqdn: &str) -> &str {
    fqdn.split('.').next().unwrap_or(fqdn)
}

/// RFC 3339 in UTC, to the second.
fn utc(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clone::datadir::Promotion;
    use crate::clone::progress::Waiting;

    const MIB_U: u64 = 1024 * 1024;
    /// 2026-11-30T01:02:03Z
    const T: u64 = 1_796_000_523;

    fn report(json: serde_json::Value) -> StatusReport {
        serde_json::from_value(json).unwrap()
    }

    fn marker() -> CloneMarker {
        CloneMarker {
            donor: "mysql-0.mysql.db.svc.cluster.local".into(),
            gtid_position: "0-100-7".into(),
            position_source: "xtrabackup_binlog_info".into(),
            bytes: 812 * MIB_U,
            completed_unix: T,
            duration_ms: Some(4100),
            agent_version: "0.1.0".into(),
            promotion: Promotion::None,
            failed_attempts: None,
        }
    }

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(T), "2026-11-30T01:02:03Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn sizes_and_durations_read_short() {
        assert_eq!(size(400 * 1024), "0.4 MiB");
        assert_eq!(size(412 * MIB_U + 300_000), "412 MiB");
        assert_eq!(size(12_600 * MIB_U), "12.3 GiB");
        assert_eq!(eta_text(3), "3s");
        assert_eq!(eta_text(125), "2m05s");
        assert_eq!(eta_text(3720), "1h02m");
        assert_eq!(pod_name("mysql-0.mysql.db.svc.cluster.local"), "mysql-0");
        assert_eq!(pod_name("mysql-0"), "mysql-0");
    }

    #[test]
    fn a_replica_in_sync() {
        let mut status = report(serde_json::json!({
            "hostname": "mysql-1", "ordinal": 1, "role": "replica", "phase": "replicating",
            "ready": true, "readiness": "in sync with mysql-0: applied all it had 0.4s ago",
            "source": "mysql-0.mysql.db.svc.cluster.local",
            "replication": {
                "status": {"io_thread": "running", "sql_running": true, "io_error": null,
                           "sql_error": null, "seconds_behind": 0, "received": "0-100-7"},
                "gtid_applied": "0-100-7", "lag_seconds": 0.4, "transactions_behind": 0,
                "errant_gtids": null
            },
            "last_error": null, "clones_served": null, "serving_clone": null,
            "clone_progress": null, "some_field_of_a_newer_agent": [1, 2]
        }));
        status.last_clone = Some(marker());
        assert_eq!(
            render(&status, T + 60),
            "mysql-1  replica of mysql-0  phase: replicating  ready: yes (in sync with mysql-0: \
             applied all it had 0.4s ago)\n\
             lag: 0.4s, 0 transactions behind   IO thread: running   SQL thread: running\n\
             cloned from mysql-0 at 2026-11-30T01:02:03Z (812 MiB in 4.1s)\n\
             last error: none"
        );
    }

    #[test]
    fn a_primary_serving_a_clone() {
        let status = report(serde_json::json!({
            "hostname": "mysql-0", "role": "primary", "phase": "serving", "ready": true,
            "readiness": "primary is writable", "source": null, "replication": null,
            "last_clone": null,
            "serving_clone": {"joiner": "10.42.0.12:50122", "started_unix": T, "bytes": 412 * MIB_U,
                              "estimated_total_bytes": 806 * MIB_U, "mib_per_s": 160.2, "eta_secs": 3}
        }));
        assert_eq!(
            render(&status, T),
            "mysql-0  primary  phase: serving  ready: yes (primary is writable)\n\
             serving a clone to 10.42.0.12:50122: 412 MiB of ~806 MiB (estimate), 160.2 MiB/s, \
             ETA 3s\n\
             no clone marker: the data is the server's own\n\
             last error: none"
        );
        let mut compressed = status;
        if let Some(serving) = &mut compressed.serving_clone {
            serving.compression = Compression::Zstd;
        }
        assert!(
            render(&compressed, T)
                .contains("serving a clone to 10.42.0.12:50122 (zstd-compressed): ")
        );
    }

    #[test]
    fn a_blocked_replica_and_a_broken_one() {
        let reason = "replication is not configured and there is no clone marker";
        let blocked = report(serde_json::json!({
            "hostname": "mysql-2", "role": "replica", "phase": "blocked", "ready": false,
            "readiness": format!("blocked: {reason}"),
            "source": "mysql-0.mysql.db.svc.cluster.local", "replication": null,
            "last_error": reason
        }));
        assert_eq!(
            render(&blocked, T),
            format!(
                "mysql-2  replica of mysql-0  phase: blocked  ready: no (blocked: {reason})\n\
                 replication: not sampled\n\
                 no clone marker: the data is the server's own\n\
                 last error: {reason}"
            )
        );
        let broken = report(serde_json::json!({
            "hostname": "mysql-2", "role": "replica", "phase": "replicating", "ready": false,
            "readiness": "fenced: ...", "source": "mysql-0.mysql.db.svc.cluster.local",
            "replication": {
                "status": {"io_thread": "connecting", "sql_running": false,
                           "io_error": {"errno": 1236, "message": "purged"},
                           "sql_error": {"errno": 1062, "message": "dup"}},
                "lag_seconds": null, "transactions_behind": 3, "errant_gtids": "0-102-1"
            }
        }));
        let text = render(&broken, T);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "lag: unknown, 3 transactions behind   IO thread: connecting (error 1236: purged)   \
             SQL thread: stopped (error 1062: dup)"
        );
        assert_eq!(lines[2], "errant GTIDs: 0-102-1 (fenced)");
        let unconfigured = report(serde_json::json!({
            "role": "replica", "replication": {"status": null, "lag_seconds": null}
        }));
        assert!(render(&unconfigured, T).contains("\nreplication: not configured\n"));
    }

    fn cloning(bytes: u64, total: Option<u64>, eta_secs: Option<u64>) -> ProgressRecord {
        ProgressRecord::example(TransferView {
            bytes,
            estimated_total_bytes: total,
            mib_per_s: 160.0,
            eta_secs,
        })
    }

    #[test]
    fn an_init_cloning() {
        let progress = cloning(412 * MIB_U, Some(806 * MIB_U), Some(3));
        assert_eq!(
            render_progress(&progress, T + 5),
            "mysql-1  cloning from mysql-0: 412 MiB of ~806 MiB (estimate), 160.0 MiB/s, ETA 3s\n\
             clone started 2026-11-30T01:02:03Z, progress updated 1s ago"
        );
        let unknown = cloning(412 * MIB_U, None, None);
        assert!(
            render_progress(&unknown, T + 5).starts_with(
                "mysql-1  cloning from mysql-0: 412 MiB, 160.0 MiB/s, no estimate of the total: \
                 no ETA\n"
            ),
            "{}",
            render_progress(&unknown, T + 5)
        );
        let past = cloning(900 * MIB_U, Some(806 * MIB_U), None);
        assert!(render_progress(&past, T + 5).contains("past the estimate: ETA unknown"));
        let stalled = ProgressRecord {
            stage: Some("FILE COPY".into()),
            donor_attempt: 2,
            ..cloning(412 * MIB_U, Some(806 * MIB_U), Some(3))
        };
        let text = render_progress(&stalled, T + 64);
        assert!(
            text.contains(", stage FILE COPY (no update for 1m00s: the clone may have stopped)")
                && text.ends_with("; donor attempt 2 (chosen by a fallback search)"),
            "{text}"
        );
    }

    #[test]
    fn an_init_waiting_then_preparing() {
        let waiting = ProgressRecord {
            phase: ClonePhase::WaitingForDns,
            waiting: Some(Waiting {
                reason: "mysql-0.mysql.db.svc.cluster.local. does not resolve: no such name".into(),
                attempt: 4,
                next_delay_ms: 2000,
            }),
            ..cloning(0, None, None)
        };
        assert!(render_progress(&waiting, T + 5).starts_with(
            "mysql-1  waiting for DNS to resolve donor mysql-0: mysql-0.mysql.db.svc.cluster.local. \
             does not resolve: no such name (attempt 4, next in 2.0s)\n"
        ));
        let preparing = ProgressRecord {
            phase: ClonePhase::Preparing,
            ..cloning(806 * MIB_U, Some(806 * MIB_U), None)
        };
        assert!(
            render_progress(&preparing, T + 5)
                .starts_with("mysql-1  preparing the clone from mysql-0 (806 MiB received)\n")
        );
    }

    #[test]
    fn a_reclone_in_progress_shows_under_the_sidecars_state() {
        let mut status = report(serde_json::json!({
            "hostname": "mysql-1", "role": "replica", "phase": "recloning", "ready": false,
            "readiness": "re-cloning: the primary purged binary logs this replica still needs",
            "source": "mysql-0.mysql.db.svc.cluster.local", "replication": null
        }));
        status.clone_progress = Some(cloning(412 * MIB_U, Some(806 * MIB_U), Some(3)));
        status.last_clone = Some(CloneMarker {
            duration_ms: None,
            ..marker()
        });
        let text = render(&status, T + 5);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "re-clone: cloning from mysql-0: 412 MiB of ~806 MiB (estimate), 160.0 MiB/s, ETA 3s"
        );
        assert_eq!(
            lines[3],
            "cloned from mysql-0 at 2026-11-30T01:02:03Z (812 MiB)"
        );
    }
}
