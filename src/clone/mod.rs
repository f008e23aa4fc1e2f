//! Cloning ordinal-1's data (or, falling back, another healthy pod's) into an empty datadir,
//! through a staging directory that is removed whenever the clone fails, so that nothing partial
//! ever looks like data.
//!
//! MariaDB: the donor's agent streams a mariadb-backup, the joiner checks, extracts and
//! prepares it. MySQL: a temporary local server pulls the donor's data with the CLONE plugin.

pub mod agent;
pub mod datadir;
pub mod fallback;
pub mod mariadb;
pub mod mysql;
pub mod ownership;
pub mod progress;
pub mod reclone;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use crate::db::DbError;
use crate::dns::{DnsError, RESOLV_CONF, ResolvConf, fully_qualified};
use crate::duration::{millis, seconds};
use crate::metrics::Reason;
use crate::tool::ToolError;
use datadir::{CloneMarker, DataDir};
use mariadb::frame::FrameError;
use mariadb::position::PositionError;
use ownership::Ownership;
use progress::{ClonePhase, Progress, ProgressLabel};

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("donor {donor} did not serve a clone within {deadline}: {last}")]
    Deadline {
        donor: String,
        deadline: String,
        last: String,
    },
    #[error("no donor served a clone within {deadline}: {reasons}")]
    NoDonor { deadline: String, reasons: String },
    #[error("donor {0} refused the clone token (401): every pod must mount the same clone token")]
    Unauthorized(String),
    #[error("donor {donor} refused the clone: {answer}")]
    Refused { donor: String, answer: String },
    #[error("clone stream from {donor} broke after {bytes} bytes: {reason}")]
    Broken {
        donor: String,
        bytes: u64,
        reason: String,
    },
    #[error("clone stream from {donor} is invalid: {source}")]
    Frame { donor: String, source: FrameError },
    #[error("the donor's backup failed: {0}")]
    DonorFailed(String),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Position(#[from] PositionError),
    #[error("{what}: {source}")]
    Sql { what: String, source: DbError },
    #[error("the temporary server {0}")]
    TempServer(String),
    #[error("CLONE INSTANCE from {donor} failed: {message}")]
    Plugin { donor: String, message: String },
    #[error("interrupted by shutdown")]
    Cancelled,
}

pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CloneError {
    let context = context.into();
    move |source| CloneError::Io { context, source }
}

pub(crate) fn sql_error(what: impl Into<String>) -> impl FnOnce(DbError) -> CloneError {
    let what = what.into();
    move |source| CloneError::Sql { what, source }
}

/// Runs `work` in a fresh staging directory (the caller found the datadir empty, or holding the
/// data a re-clone replaces); what it prepared there is then installed. If the work fails, the
/// directory is removed, so that a retry starts clean. `work` may be cancelled (by shutdown);
/// the install is not: once the move into place has begun it runs to its marker, since a
/// half-moved clone without its marker would be taken for server data on the next start. The
/// clone's progress file lives in staging, so it goes with it.
pub(crate) async fn in_staging(
    datadir: &DataDir,
    ownership: &Ownership,
    label: &ProgressLabel,
    donor: &str,
    work: impl AsyncFnOnce(&mut Progress) -> Result<CloneMarker, CloneError>,
) -> Result<CloneMarker, CloneError> {
    datadir.create_staging().map_err(io_error(format!(
        "creating {}",
        datadir.staging().display()
    )))?;
    let mut progress = Progress::start(datadir.progress_file(), label, donor);
    let result = match work(&mut progress).await {
        Ok(marker) => {
            progress.phase(ClonePhase::Installing);
            tracing::info!(phase = %ClonePhase::Installing, donor = %marker.donor, "clone prepared: syncing it and moving it into place");
            install(datadir, marker, ownership).await
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        let staging = datadir.staging();
        match datadir.remove_staging() {
            Ok(()) => {
                tracing::info!(staging = %staging.display(), "removed the staging directory of the failed clone")
            }
            Err(e) => {
                tracing::warn!(staging = %staging.display(), "cannot remove the staging directory of the failed clone: {e}")
            }
        }
    }
    result
}

/// Syncs the staged data (giving it to the server's user when the agent is root), moves it into
/// place and writes the marker last.
async fn install(
    datadir: &DataDir,
    marker: CloneMarker,
    ownership: &Ownership,
) -> Result<CloneMarker, CloneError> {
    let datadir = datadir.clone();
    let owner = ownership.chown_to();
    tokio::task::spawn_blocking(move || {
        crate::fsutil::sync_tree(&datadir.staging_data(), owner)?;
        datadir.commit_prepared(marker, owner)
    })
    .await
    .map_err(|e| io_error("installing the clone")(std::io::Error::other(e)))?
    .map_err(io_error("installing the clone"))
}

/// Why a clone attempt failed, as a bounded label of `/metrics` and a key of the marker.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AttemptFailure {
    DonorUnresolved,
    /// No HTTP answer: connecting, the TLS handshake or the request failed or timed out.
    DonorUnreachable,
    /// The donor is not healthy enough to donate (503), or its clone plugin is not active.
    NotADonor,
    /// The donor serves another clone (429).
    Busy,
    Unauthorized,
    /// Any other answer of the donor.
    Refused,
    /// MySQL: logging in to the donor's server as the clone user, or asking it, failed.
    DonorLoginFailed,
    /// The stream broke, stalled, or was not a valid clone stream.
    StreamBroken,
    DonorBackupFailed,
    ClonePluginFailed,
    /// A local tool, file, temporary server or the position read from the backup.
    LocalFailed,
    TimedOut,
    Cancelled,
}

impl Reason for AttemptFailure {
    const ALL: &'static [Self] = &[
        AttemptFailure::DonorUnresolved,
        AttemptFailure::DonorUnreachable,
        AttemptFailure::NotADonor,
        AttemptFailure::Busy,
        AttemptFailure::Unauthorized,
        AttemptFailure::Refused,
        AttemptFailure::DonorLoginFailed,
        AttemptFailure::StreamBroken,
        AttemptFailure::DonorBackupFailed,
        AttemptFailure::ClonePluginFailed,
        AttemptFailure::LocalFailed,
        AttemptFailure::TimedOut,
        AttemptFailure::Cancelled,
    ];
}

impl CloneError {
    /// Why the clone failed, as a bounded reason.
    pub fn failure(&self) -> AttemptFailure {
        match self {
            CloneError::Deadline { .. } | CloneError::NoDonor { .. } => AttemptFailure::TimedOut,
            CloneError::Unauthorized(_) => AttemptFailure::Unauthorized,
            CloneError::Refused { .. } => AttemptFailure::Refused,
            CloneError::Broken { .. } | CloneError::Frame { .. } => AttemptFailure::StreamBroken,
            CloneError::DonorFailed(_) => AttemptFailure::DonorBackupFailed,
            CloneError::Plugin { .. } => AttemptFailure::ClonePluginFailed,
            CloneError::Tool(_)
            | CloneError::Io { .. }
            | CloneError::Position(_)
            | CloneError::Sql { .. }
            | CloneError::TempServer(_) => AttemptFailure::LocalFailed,
            CloneError::Cancelled => AttemptFailure::Cancelled,
        }
    }
}

/// The failed attempts of one init run, by reason, whichever donors it tried; the marker of the
/// clone that completed keeps them.
#[derive(Debug, Clone, Default)]
pub struct FailedAttempts(Arc<Mutex<BTreeMap<AttemptFailure, u32>>>);

impl FailedAttempts {
    fn record(&self, failure: AttemptFailure) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(failure).or_default() += 1;
    }

    /// By reason's name, as the marker keeps them.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (counts.iter())
            .map(|(failure, count)| (crate::metrics::serde_name(failure), *count))
            .collect()
    }
}

/// Why one attempt to reach the donor failed, and whether another attempt may succeed.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The donor's name does not resolve (yet: the pod may not exist).
    Unresolved(DnsError),
    Retry(AttemptFailure, String),
    Fatal(CloneError),
}

impl Attempt {
    /// Why the attempt failed, for a log line or an error.
    pub(crate) fn reason(&self) -> String {
        match self {
            Attempt::Unresolved(error) => error.to_string(),
            Attempt::Retry(_, reason) => reason.clone(),
            Attempt::Fatal(error) => error.to_string(),
        }
    }

    /// Why the attempt failed, as a bounded reason.
    pub(crate) fn failure(&self) -> AttemptFailure {
        match self {
            Attempt::Unresolved(_) => AttemptFailure::DonorUnresolved,
            Attempt::Retry(failure, _) => *failure,
            Attempt::Fatal(error) => error.failure(),
        }
    }
}

/// How often another pod (a donor, a peer) is asked again: capped, jittered.
pub(crate) fn peer_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

impl From<DnsError> for Attempt {
    fn from(error: DnsError) -> Self {
        Attempt::Unresolved(error)
    }
}

/// A name that has not resolved for this long (or half the deadline, if shorter) is more than a
/// pod not created yet: say what the pod's resolver is set up with.
const UNRESOLVED_ADVICE_AFTER: Duration = Duration::from_secs(30);

/// Retries `attempt` with a capped, jittered backoff until it succeeds, fails for good, or the
/// deadline passes; each retry is logged with its number and the delay before the next, and
/// recorded in the clone's progress and in `failed_attempts`.
pub(crate) async fn until_donor_answers<T, Fut>(
    donor: &str,
    deadline: Duration,
    progress: &mut Progress,
    failed_attempts: &FailedAttempts,
    attempt: impl FnMut() -> Fut,
) -> Result<T, CloneError>
where
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last_reason = String::from("no attempt finished");
    let mut failed = 0u32;
    let mut unresolved_since: Option<Instant> = None;
    let mut advised = false;
    let advise_after = UNRESOLVED_ADVICE_AFTER.min(deadline / 2);
    let attempts = attempt
        .retry(peer_backoff())
        .when(|e| !matches!(e, Attempt::Fatal(_)))
        .notify(|e, delay| {
            failed += 1;
            failed_attempts.record(e.failure());
            let reason = e.reason();
            let unresolved = matches!(e, Attempt::Unresolved(_));
            let phase = match unresolved {
                true => ClonePhase::WaitingForDns,
                false => ClonePhase::WaitingForDonor,
            };
            tracing::info!(
                %phase, donor = %donor, attempt = failed, next_delay_ms = millis(delay),
                "donor not available yet: {reason}"
            );
            progress.waiting(phase, reason.clone(), failed, delay);
            last_reason = reason;
            if !unresolved {
                unresolved_since = None;
                return;
            }
            let since = *unresolved_since.get_or_insert_with(Instant::now);
            if !advised && since.elapsed() >= advise_after {
                advised = true;
                let conf = ResolvConf::read(Path::new(RESOLV_CONF)).map_or_else(
                    |e| format!("{RESOLV_CONF} is unreadable: {e}"),
                    |conf| conf.summary(),
                );
                tracing::warn!(
                    donor = %donor, asked = %fully_qualified(donor), waited = %seconds(since.elapsed()),
                    "the donor's name still does not resolve; {RESOLV_CONF} says {conf}: check \
                     the namespace, the headless service and the cluster domain"
                );
            }
        });
    let deadline_error = |last: String| CloneError::Deadline {
        donor: donor.to_owned(),
        deadline: seconds(deadline),
        last,
    };
    match tokio::time::timeout(deadline, attempts).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(Attempt::Fatal(e))) => {
            failed_attempts.record(e.failure());
            Err(e)
        }
        Ok(Err(Attempt::Retry(_, reason))) => Err(deadline_error(reason)),
        Ok(Err(Attempt::Unresolved(error))) => Err(deadline_error(error.to_string())),
        Err(_) => Err(deadline_error(last_reason)),
    }
}

/// An error with its causes: many libraries' own message alone rarely says what happened.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// MiB/s for log lines.
pub fn rate_mib_s(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(1e-3);
    (bytes as f64 / (1024.0 * 1024.0) / secs * 10.0).round() / 10.0
}

pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// Seconds since the epoch, for markers.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
