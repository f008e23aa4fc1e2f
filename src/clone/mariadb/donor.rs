//! The donor side of a clone: one `mariadb-backup --stream` at a time, framed onto an HTTP body.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::{self, HEADER_LEN};
use crate::config::{Credentials, Endpoint};
use crate::tool::{self, Running, ToolError};

/// Large reads keep the per-frame overhead negligible; the pipe hands over at most 64 KiB anyway.
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

#[derive(Debug, serde::Serialize)]
pub struct CloneCounters {
    pub active: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Backup bytes streamed, as they go.
    pub bytes: AtomicU64,
    /// Seconds each clone took, for /metrics.
    #[serde(skip)]
    pub durations: Histogram,
}

impl Default for CloneCounters {
    fn default() -> Self {
        CloneCounters {
            active: AtomicU64::default(),
            completed: AtomicU64::default(),
            failed: AtomicU64::default(),
            bytes: AtomicU64::default(),
            // From a second to about four hours.
            durations: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
        }
    }
}

pub struct Donor {
    settings: DonorSettings,
    one_at_a_time: Arc<Semaphore>,
    counters: Arc<CloneCounters>,
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

impl Donor {
    pub fn new(settings: DonorSettings, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Donor {
            settings,
            one_at_a_time: Arc::new(Semaphore::new(1)),
            counters: Arc::default(),
            tracker,
            shutdown,
        }
    }

    pub fn counters(&self) -> &Arc<CloneCounters> {
        &self.counters
    }

    /// Starts a backup for `joiner`; the receiver yields the framed stream.
    pub fn start(&self, joiner: SocketAddr) -> Result<mpsc::Receiver<Bytes>, Busy> {
        let permit = self
            .one_at_a_time
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let settings = self.settings.clone();
        let counters = self.counters.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            let _permit = permit;
            counters.active.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            tracing::info!(joiner = %joiner, "serving a clone: streaming a backup of this server");
            let served = stream_backup(&settings, &tx, &counters.bytes, &shutdown).await;
            let elapsed = started.elapsed();
            counters.durations.observe(elapsed.as_secs_f64());
            match served {
                Ok(bytes) => {
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        joiner = %joiner, bytes, mib = super::super::mib(bytes), secs = elapsed.as_secs_f64(),
                        mib_per_s = super::super::rate_mib_s(bytes, elapsed), "clone served"
                    );
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(frame::failed(&e.to_string())).await;
                    tracing::warn!(joiner = %joiner, "clone not served: {e}");
                }
            }
            counters.active.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(rx)
    }
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

/// Streams one backup into `tx`, adding its data bytes to `streamed` as they go; returns their
/// number after sending the end frame.
async fn stream_backup(
    settings: &DonorSettings,
    tx: &mpsc::Sender<Bytes>,
    streamed: &AtomicU64,
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
    let result = stream(&mut backup, tx, streamed, shutdown).await;
    if result.is_err() {
        // Gone before the scratch directory it writes into is removed.
        backup.stop().await;
    }
    result
}

/// Frames the running backup's output into `tx`; the end frame goes out only once the tool has
/// said it succeeded.
async fn stream(
    backup: &mut Running,
    tx: &mpsc::Sender<Bytes>,
    streamed: &AtomicU64,
    shutdown: &CancellationToken,
) -> Result<u64, DonorError> {
    let mut stdout = backup.child.stdout.take().expect("stdout is piped");
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
