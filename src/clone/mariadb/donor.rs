//! The donor side of a clone: one `mariadb-backup --stream` at a time, framed onto an HTTP body.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mysql_async::prelude::Queryable;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::compression::{self, Compression};
use super::frame::{self, HEADER_LEN};
use crate::clone::datadir::{MARKER_FILE, RECLONE_FILE};
use crate::clone::progress::{LOG_EVERY, Transfer, TransferView, estimate_note};
use crate::clone::{mib, now_unix, rate_mib_s};
use crate::config::{Credentials, Endpoint};
use crate::db::{self, DbError};
use crate::metrics::{LastClone, Reason, Tally};
use crate::mycnf::{BINLOG_BASE, RELAY_LOG_BASE};
use crate::tool::{self, Running, ToolError};

/// Large reads keep the per-frame overhead negligible (the backup's pipe holds 1 MiB).
const CHUNK: usize = 256 * 1024;
/// Frames buffered towards a slow joiner before the backup tool is paused by backpressure.
const QUEUE: usize = 8;

#[derive(Debug, Clone)]
pub struct DonorSettings {
    pub mariadb_backup: PathBuf,
    pub datadir: PathBuf,
    pub tmp_dir: PathBuf,
    pub server: Endpoint,
    pub admin: Credentials,
    /// Replicas add `--slave-info`, so the joiner learns the position they had applied.
    pub is_replica: bool,
}

/// Why a clone request was refused before any byte streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Unauthorized,
    NotADonor,
    Busy,
}

impl Reason for Refusal {
    const ALL: &'static [Self] = &[Refusal::Unauthorized, Refusal::NotADonor, Refusal::Busy];
}

/// Why a clone that started streaming failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServeFailure {
    Scratch,
    BackupFailed,
    ReadError,
    JoinerGone,
    ShuttingDown,
}

impl Reason for ServeFailure {
    const ALL: &'static [Self] = &[
        ServeFailure::Scratch,
        ServeFailure::BackupFailed,
        ServeFailure::ReadError,
        ServeFailure::JoinerGone,
        ServeFailure::ShuttingDown,
    ];
}

#[derive(Debug, serde::Serialize)]
pub struct CloneCounters {
    pub active: AtomicU64,
    pub completed: AtomicU64,
    /// Backup bytes streamed, as they go.
    pub bytes: AtomicU64,
    /// Seconds each clone took, for /metrics.
    #[serde(skip)]
    pub durations: Histogram,
    #[serde(skip)]
    pub refusals: Tally<Refusal>,
    /// Clones that failed once streaming, by reason; `/status` shows their sum as `failed`.
    #[serde(rename = "failed", serialize_with = "Tally::serialize_total")]
    pub failures: Tally<ServeFailure>,
    /// The last clone served to its end, for /metrics.
    #[serde(skip)]
    pub last_served: Mutex<Option<LastClone>>,
}

impl Default for CloneCounters {
    fn default() -> Self {
        CloneCounters {
            active: AtomicU64::default(),
            completed: AtomicU64::default(),
            bytes: AtomicU64::default(),
            // From a second to about four hours.
            durations: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            refusals: Tally::default(),
            failures: Tally::default(),
            last_served: Mutex::default(),
        }
    }
}

impl CloneCounters {
    pub fn last_served(&self) -> Option<LastClone> {
        *self
            .last_served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The clone being served now.
#[derive(Debug)]
pub struct Serving {
    joiner: SocketAddr,
    started: Instant,
    started_unix: u64,
    estimated_total: Option<u64>,
    bytes: AtomicU64,
    compression: Compression,
}

impl Serving {
    fn transfer(&self) -> Transfer {
        Transfer {
            bytes: self.bytes.load(Ordering::Relaxed),
            estimated_total: self.estimated_total,
            elapsed: self.started.elapsed(),
        }
    }

    pub fn view(&self) -> ServingView {
        ServingView {
            joiner: self.joiner.to_string(),
            started_unix: self.started_unix,
            transfer: self.transfer().view(),
            compression: self.compression,
        }
    }
}

/// The clone being served, as `/status` shows it (`serving_clone`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServingView {
    pub joiner: String,
    pub started_unix: u64,
    #[serde(flatten)]
    pub transfer: TransferView,
    /// How the stream goes on the wire (`zstd` when the joiner asked for it).
    #[serde(default)]
    pub compression: Compression,
}

/// A backup being streamed, and what the donor expects it to weigh.
pub struct Stream {
    pub frames: mpsc::Receiver<Bytes>,
    pub estimated_total: Option<u64>,
}

pub struct Donor {
    settings: DonorSettings,
    one_at_a_time: Arc<Semaphore>,
    counters: Arc<CloneCounters>,
    serving: Arc<Mutex<Option<Arc<Serving>>>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
#[error("a clone is already being served")]
pub struct Busy;

#[derive(Debug, thiserror::Error)]
enum DonorError {
    #[error("cannot prepare the backup's scratch space in {dir}: {source}")]
    Scratch {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("reading the backup stream: {0}")]
    Read(std::io::Error),
    #[error("the joiner went away")]
    JoinerGone,
    #[error("the donor is shutting down")]
    ShuttingDown,
}

impl DonorError {
    fn failure(&self) -> ServeFailure {
        match self {
            DonorError::Scratch { .. } => ServeFailure::Scratch,
            DonorError::Tool(_) => ServeFailure::BackupFailed,
            DonorError::Read(_) => ServeFailure::ReadError,
            DonorError::JoinerGone => ServeFailure::JoinerGone,
            DonorError::ShuttingDown => ServeFailure::ShuttingDown,
        }
    }
}

impl Donor {
    pub fn new(settings: DonorSettings, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Donor {
            settings,
            one_at_a_time: Arc::new(Semaphore::new(1)),
            counters: Arc::default(),
            serving: Arc::default(),
            tracker,
            shutdown,
        }
    }

    pub fn counters(&self) -> &Arc<CloneCounters> {
        &self.counters
    }

    /// The clone being served now, if one is.
    pub fn serving(&self) -> Option<Arc<Serving>> {
        self.serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts a backup for `joiner`, once its size is estimated (before the backup starts, so
    /// the joiner can tell its ETA); the stream yields the framed backup, compressed as granted.
    pub async fn start(
        &self,
        joiner: SocketAddr,
        compression: Compression,
    ) -> Result<Stream, Busy> {
        let permit = self
            .one_at_a_time
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let redo = match redo_since_checkpoint(&self.settings).await {
            Ok(redo) => redo,
            Err(e) => {
                tracing::debug!(
                    "the estimate counts the whole redo log: reading the redo since the last checkpoint failed: {e}"
                );
                None
            }
        };
        let datadir = self.settings.datadir.clone();
        let measured = tokio::task::spawn_blocking(move || backup_size(&datadir, redo))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let estimated_total = match measured {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(joiner = %joiner, "cannot estimate the backup's size from the datadir ({e}): the joiner gets no ETA");
                None
            }
        };
        let serving = Arc::new(Serving {
            joiner,
            started: Instant::now(),
            started_unix: now_unix(),
            estimated_total,
            bytes: AtomicU64::new(0),
            compression,
        });
        let (tx, frames) = mpsc::channel(QUEUE);
        // Compressed on a thread of its own, beside the reading of the backup; its channel
        // bounds what waits for the joiner.
        let (rx, compressor) = match compression {
            Compression::None => (frames, None),
            Compression::Zstd => {
                let (out, rx) = mpsc::channel(QUEUE);
                let compressing =
                    tokio::task::spawn_blocking(move || compression::compress(frames, &out));
                (rx, Some(compressing))
            }
        };
        let settings = self.settings.clone();
        let counters = self.counters.clone();
        let shutdown = self.shutdown.clone();
        let now_serving = self.serving.clone();
        self.tracker.spawn(async move {
            let _permit = permit;
            counters.active.fetch_add(1, Ordering::Relaxed);
            *now_serving.lock().unwrap_or_else(PoisonError::into_inner) = Some(serving.clone());
            tracing::info!(
                joiner = %joiner, estimated_total_bytes = estimated_total,
                compression = %compression,
                "serving a clone: streaming a backup of this server{}", estimate_note(estimated_total)
            );
            let served = stream_backup(&settings, &tx, &counters.bytes, &serving, &shutdown).await;
            if let Err(e) = &served {
                let _ = tx.send(frame::failed(&e.to_string())).await;
            }
            drop(tx);
            // The bytes on the wire, once the compressor has sent the last of them.
            let compressed_bytes = match compressor {
                Some(compressing) => compressing.await.ok().and_then(Result::ok),
                None => None,
            };
            let elapsed = serving.started.elapsed();
            counters.durations.observe(elapsed.as_secs_f64());
            match served {
                Ok(bytes) => {
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                    let last = LastClone::new(bytes, elapsed, now_unix());
                    *counters.last_served.lock().unwrap_or_else(PoisonError::into_inner) = Some(last);
                    tracing::info!(
                        joiner = %joiner, bytes, mib = mib(bytes), secs = elapsed.as_secs_f64(),
                        mib_per_s = rate_mib_s(bytes, elapsed), compression = %compression,
                        compressed_bytes,
                        ratio = compressed_bytes.map(|wire| compression::ratio(bytes, wire)),
                        "clone served"
                    );
                }
                Err(e) => {
                    counters.failures.add(e.failure());
                    tracing::warn!(joiner = %joiner, "clone not served: {e}");
                }
            }
            *now_serving.lock().unwrap_or_else(PoisonError::into_inner) = None;
            counters.active.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Stream {
            frames: rx,
            estimated_total,
        })
    }
}

/// The redo a backup copies: what the server wrote since its last checkpoint, as its status
/// says (`None` where it does not). Asked once per clone, never by a probe.
async fn redo_since_checkpoint(settings: &DonorSettings) -> Result<Option<u64>, DbError> {
    let mut conn = db::connect(&settings.server, &settings.admin, None).await?;
    let status: Vec<(String, String)> = db::bounded(
        "reading the redo log's checkpoint",
        conn.query(r"SHOW GLOBAL STATUS LIKE 'Innodb\_lsn\_%'"),
    )
    .await?;
    let _ = conn.disconnect().await;
    Ok(checkpoint_age(&status))
}

/// `Innodb_lsn_current - Innodb_lsn_last_checkpoint`, from `SHOW GLOBAL STATUS` rows.
fn checkpoint_age(status: &[(String, String)]) -> Option<u64> {
    let value = |name: &str| {
        let (_, value) = status.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        value.parse::<u64>().ok()
    };
    value("Innodb_lsn_current")?.checked_sub(value("Innodb_lsn_last_checkpoint")?)
}

/// What a backup of `datadir` streams, about: its files but those mariadb-backup does not copy
/// (binary and relay logs, the temporary tablespace) and the agent's own. Of the redo log, a
/// backup copies what was written since the last checkpoint (`redo`, when the server said it),
/// not the whole file; plus what is written while it runs: an estimate, never a promise.
fn backup_size(datadir: &Path, redo: Option<u64>) -> std::io::Result<u64> {
    let mut total = redo.unwrap_or_default();
    let mut dirs = vec![datadir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !in_backup(&name) || (redo.is_some() && name.starts_with(REDO_LOG)) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Dropped since it was listed (a table, a temporary file): not in the backup.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// InnoDB's redo log files: `ib_logfile0` (MariaDB 10.8+), `ib_logfile0..N` before.
const REDO_LOG: &str = "ib_logfile";

/// Whether a datadir entry of this name is part of a backup.
fn in_backup(name: &str) -> bool {
    let logs = [BINLOG_BASE, RELAY_LOG_BASE];
    let log = logs.iter().any(|base| {
        name.strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('.'))
    });
    let temporary = name.starts_with("ibtmp");
    !(log
        || temporary
        || name.starts_with(".mysql-sts-agent")
        || [MARKER_FILE, RECLONE_FILE].contains(&name))
}

/// The option file for the backup tool: it keeps the password off the command line, and,
/// given as --defaults-file, keeps the image's global option files out.
fn backup_options(settings: &DonorSettings) -> String {
    let mut text = String::from("[mariadb-backup]\n");
    text.push_str(&format!("user={}\n", option_value(&settings.admin.user)));
    if let Some(password) = &settings.admin.password {
        text.push_str(&format!("password={}\n", option_value(password.expose())));
    }
    match &settings.server {
        Endpoint::Socket(path) => text.push_str(&format!(
            "socket={}\n",
            option_value(&path.to_string_lossy())
        )),
        Endpoint::Tcp { host, port } => {
            text.push_str(&format!("host={}\nport={port}\n", option_value(host)))
        }
    }
    text.push_str(&format!(
        "datadir={}\n",
        option_value(&settings.datadir.to_string_lossy())
    ));
    text
}

/// A new file only this user may read: the option file holds the admin password.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Option-file values are quoted so that `#`, `;` and spaces survive; backslash escapes.
fn option_value(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// Streams one backup into `tx`, adding its data bytes to `streamed` and to `serving` as they
/// go; returns their number after sending the end frame.
async fn stream_backup(
    settings: &DonorSettings,
    tx: &mpsc::Sender<Bytes>,
    streamed: &AtomicU64,
    serving: &Serving,
    shutdown: &CancellationToken,
) -> Result<u64, DonorError> {
    let scratch_error = |source| DonorError::Scratch {
        dir: settings.tmp_dir.clone(),
        source,
    };
    let scratch = tempfile::Builder::new()
        .prefix("mysql-sts-agent-backup-")
        .tempdir_in(&settings.tmp_dir)
        .map_err(scratch_error)?;
    let options = scratch.path().join("backup.cnf");
    let target = scratch.path().join("target");
    write_private(&options, &backup_options(settings)).map_err(scratch_error)?;
    std::fs::create_dir(&target).map_err(scratch_error)?;

    let program = &settings.mariadb_backup;
    let mut cmd = tool::command(program);
    cmd.arg(format!("--defaults-file={}", options.display()))
        .args(["--backup", "--stream=xbstream"])
        .arg(format!("--target-dir={}", target.display()))
        .stdout(std::process::Stdio::piped());
    if settings.is_replica {
        cmd.arg("--slave-info");
    }
    let mut backup = tool::spawn(cmd, program)?;
    let result = stream(&mut backup, tx, streamed, serving, shutdown).await;
    if result.is_err() {
        // Gone before the scratch directory it writes into is removed.
        backup.stop().await;
    }
    result
}

/// Frames the running backup's output into `tx`, logging its progress every few seconds; the
/// end frame goes out only once the tool has said it succeeded.
async fn stream(
    backup: &mut Running,
    tx: &mpsc::Sender<Bytes>,
    streamed: &AtomicU64,
    serving: &Serving,
    shutdown: &CancellationToken,
) -> Result<u64, DonorError> {
    let mut stdout = backup.child.stdout.take().expect("stdout is piped");
    tool::enlarge_pipe(&stdout, backup.name());
    let send = |bytes: Bytes| async {
        tokio::select! {
            sent = tx.send(bytes) => sent.map_err(|_| DonorError::JoinerGone),
            () = shutdown.cancelled() => Err(DonorError::ShuttingDown),
        }
    };
    send(Bytes::from_static(frame::MAGIC)).await?;
    let mut crc = crc32fast::Hasher::new();
    let mut total = 0u64;
    let mut buf = BytesMut::new();
    let mut next_log = Instant::now() + LOG_EVERY;
    loop {
        buf.reserve(HEADER_LEN + CHUNK);
        frame::begin_data(&mut buf);
        let read = tokio::select! {
            read = stdout.read_buf(&mut buf) => read.map_err(DonorError::Read)?,
            () = shutdown.cancelled() => return Err(DonorError::ShuttingDown),
        };
        if read == 0 {
            break;
        }
        crc.update(&buf[HEADER_LEN..]);
        total += read as u64;
        frame::seal_data(&mut buf);
        send(buf.split().freeze()).await?;
        streamed.fetch_add(read as u64, Ordering::Relaxed);
        serving.bytes.fetch_add(read as u64, Ordering::Relaxed);
        if Instant::now() >= next_log {
            next_log += LOG_EVERY;
            let view = serving.transfer().view();
            tracing::info!(
                joiner = %serving.joiner, bytes = view.bytes, mib = mib(view.bytes),
                estimated_total_bytes = view.estimated_total_bytes, mib_per_s = view.mib_per_s,
                eta_secs = view.eta_secs,
                "serving a clone: in progress{}", estimate_note(view.estimated_total_bytes)
            );
        }
    }
    backup.finish().await?;
    send(frame::end(total, crc.finalize())).await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn a_backup_estimate_counts_the_data_but_not_the_logs_it_does_not_copy() {
        for name in [
            "ibdata1",
            "ib_logfile0",
            "app",
            "t.ibd",
            "mysql-bin",
            "aria_log.00000001",
        ] {
            assert!(in_backup(name), "{name}");
        }
        for name in [
            "mysql-bin.000001",
            "mysql-bin.index",
            "mysql-bin.state",
            "mysql-relay-bin.000002",
            "mysql-relay-bin.index",
            "ibtmp1",
            ".mysql-sts-agent-clone",
            ".mysql-sts-agent-set-aside",
            MARKER_FILE,
            RECLONE_FILE,
        ] {
            assert!(!in_backup(name), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ibdata1"), vec![0; 1000]).unwrap();
        std::fs::write(dir.path().join("mysql-bin.000001"), vec![0; 5000]).unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/t.ibd"), vec![0; 300]).unwrap();
        assert_eq!(backup_size(dir.path(), None).unwrap(), 1300);
        // With the server's checkpoint age, that replaces the redo log's size.
        std::fs::write(dir.path().join("ib_logfile0"), vec![0; 4000]).unwrap();
        assert_eq!(backup_size(dir.path(), None).unwrap(), 5300);
        assert_eq!(backup_size(dir.path(), Some(70)).unwrap(), 1370);
    }

    #[test]
    fn status_counts_failed_clones_of_every_reason() {
        let counters = CloneCounters::default();
        counters.failures.add(ServeFailure::JoinerGone);
        counters.failures.add(ServeFailure::BackupFailed);
        let json = serde_json::to_value(&counters).unwrap();
        assert_eq!(json["failed"], 2, "{json}");
        assert_eq!(json["completed"], 0, "{json}");
    }

    #[test]
    fn the_redo_a_backup_copies_is_the_checkpoint_age() {
        let status = |rows: &[(&str, &str)]| -> Vec<(String, String)> {
            (rows.iter())
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        let full = status(&[
            ("Innodb_lsn_current", "90000"),
            ("Innodb_lsn_flushed", "90000"),
            ("Innodb_lsn_last_checkpoint", "61234"),
        ]);
        assert_eq!(checkpoint_age(&full), Some(28766));
        assert_eq!(checkpoint_age(&full[..2]), None, "no checkpoint");
        let garbled = status(&[
            ("Innodb_lsn_current", "many"),
            ("Innodb_lsn_last_checkpoint", "1"),
        ]);
        assert_eq!(checkpoint_age(&garbled), None);
        let backwards = status(&[
            ("Innodb_lsn_current", "1"),
            ("Innodb_lsn_last_checkpoint", "2"),
        ]);
        assert_eq!(checkpoint_age(&backwards), None);
    }

    #[test]
    fn option_file_quotes_values_and_holds_the_password() {
        let settings = DonorSettings {
            mariadb_backup: "mariadb-backup".into(),
            datadir: "/var/lib/mysql".into(),
            tmp_dir: "/tmp".into(),
            server: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 3306,
            },
            admin: Credentials {
                user: "root".into(),
                password: Some(Secret::new("p#ss \"w\\d".into())),
            },
            is_replica: false,
        };
        assert_eq!(
            backup_options(&settings),
            "[mariadb-backup]\nuser=\"root\"\npassword=\"p#ss \\\"w\\\\d\"\n\
             host=\"127.0.0.1\"\nport=3306\ndatadir=\"/var/lib/mysql\"\n"
        );
    }

    #[test]
    fn the_option_file_is_the_agents_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.cnf");
        write_private(&path, "password=\"x\"\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "password=\"x\"\n");
        // Never through a file someone else put there first.
        assert!(write_private(&path, "again").is_err());
    }
}
