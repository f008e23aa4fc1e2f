//! MySQL clones with the CLONE plugin: a temporary server on the staging directory pulls the
//! donor's data over its own datadir, then is started once more to finish the clone (recovery)
//! and to prove it: `performance_schema.clone_status` must say Completed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use super::agent::PeerClient;
use super::datadir::{CloneMarker, DataDir, Promotion};
use super::ownership::Ownership;
use super::progress::{ClonePhase, Progress, ProgressLabel};
use super::{
    Attempt, AttemptFailure, CloneError, FailedAttempts, agent, in_staging, io_error, mib,
    now_unix, rate_mib_s, sql_error, until_donor_answers,
};
use crate::config::{Credentials, Endpoint, TlsFiles};
use crate::db::flavor::{Flavor, ServerVersion};
use crate::db::gtid::Gtids;
use crate::db::{self, DbError, dialect};
use crate::dns::Resolver;
use crate::duration::seconds;
use crate::tool;

/// ER_CLONE_... "Restart server failed (mysqld is not managed by supervisor process)": the
/// plugin finished and shuts the server down so that its next start completes the clone.
const RESTART_WITHOUT_SUPERVISOR: u16 = 3707;
const START_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
const PROGRESS_POLL: Duration = Duration::from_secs(1);
const LOG_TAIL_LINES: usize = 8;

#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The donor's stable name (ordinal-1 or the pod fallback chose, or the peer a lost first
    /// ordinal restores from).
    pub donor: String,
    pub port: u16,
    /// How the donor's agent is asked `/donor`.
    pub peer: PeerClient,
    /// With the peer channel over TLS: the clone too (`REQUIRE SSL`, the donor verified
    /// against the CA), and the agent's check of the donor's server.
    pub tls: Option<TlsFiles>,
    pub user: Credentials,
    pub mysqld: PathBuf,
    pub deadline: Duration,
    /// A clone that moves no byte this long has lost its donor (the plugin would wait minutes).
    pub stall_timeout: Duration,
    pub ownership: Ownership,
    /// `Owed` when the first ordinal restores its lost volume from a peer.
    pub promotion: Promotion,
    pub label: ProgressLabel,
    pub failed_attempts: FailedAttempts,
}

/// Clones the donor into `datadir` (which the caller has found empty).
pub async fn clone(
    datadir: &DataDir,
    settings: &PluginSettings,
    resolver: &Resolver,
    shutdown: &CancellationToken,
) -> Result<CloneMarker, CloneError> {
    let (label, donor) = (&settings.label, &settings.donor);
    in_staging(datadir, &settings.ownership, label, donor, async |progress| {
        // Each mysqld the clone starts lives out here from its spawn on, so that it is dead
        // before staging is removed, however the clone ends.
        let mut server: Option<TempServer> = None;
        let result = tokio::select! {
            result = clone_in_staging(datadir, settings, resolver, progress, &mut server) => result,
            () = shutdown.cancelled() => Err(CloneError::Cancelled),
        };
        if let Some(server) = server {
            server.process.stop().await;
        }
        result
    })
    .await
}

async fn clone_in_staging(
    datadir: &DataDir,
    settings: &PluginSettings,
    resolver: &Resolver,
    progress: &mut Progress,
    server: &mut Option<TempServer>,
) -> Result<CloneMarker, CloneError> {
    let donor_name = settings.donor.as_str();
    let (donor, donor_version) = until_donor_answers(
        donor_name,
        settings.deadline,
        progress,
        &settings.failed_attempts,
        || check_donor(settings, resolver),
    )
    .await?;
    progress.cloning(None);
    tracing::info!(phase = %ClonePhase::Cloning, donor = %donor_name, address = %donor, version = %donor_version, "donor answers as the clone user and its CLONE plugin is active");

    let paths = TempPaths::new(datadir);
    if let Some((uid, gid)) = settings.ownership.chown_to() {
        // A root agent's temporary server runs as the server's user, in directories root made.
        for dir in [datadir.staging(), paths.data.clone()] {
            crate::fsutil::chown_one(&dir, uid, gid)
                .map_err(io_error(format!("giving {} to {uid}:{gid}", dir.display())))?;
        }
    }
    let started = Instant::now();
    TempServer::initialize(server, settings, &paths).await?;
    tracing::info!(secs = started.elapsed().as_secs_f64(), datadir = %paths.data.display(), "temporary server initialized in the staging directory");

    let temp = TempServer::start(server, settings, &paths, &[]).await?;
    let mut conn = temp.connect().await?;
    let version = db::server_version(&mut conn)
        .await
        .map_err(sql_error("the temporary server"))?;
    if version.flavor != Flavor::MySql {
        return Err(CloneError::TempServer(format!(
            "is {version}, not MySQL: check --mysqld and --flavor"
        )));
    }
    tracing::info!(local = %version, donor = %donor_version, "temporary server up");
    ensure_plugin(&mut conn).await?;

    let watcher = temp.connect().await?;
    progress.copy_starts();
    let copy_started = Instant::now();
    let password =
        (settings.user.password.as_ref()).expect("validated: MySQL needs a clone password");
    let statements =
        dialect::clone_instance(donor, &settings.user.user, password, settings.tls.as_ref());
    let outcome = tokio::select! {
        outcome = run_clone(&mut conn, &statements) => outcome,
        stalled = watch_progress(watcher, donor_name, settings.stall_timeout, progress) => Err(ServerEnd::Stalled(stalled)),
    };
    let copy_secs = copy_started.elapsed();
    match outcome {
        Err(ServerEnd::Error { code, message }) if code == RESTART_WITHOUT_SUPERVISOR => {
            tracing::info!(
                "CLONE INSTANCE ended with error {code} ({message}): the expected end without a \
                 supervisor; the server shuts down and its next start completes the clone"
            );
        }
        Err(ServerEnd::Error { code, message }) => {
            return Err(CloneError::Plugin {
                donor: donor_name.to_owned(),
                message: format!("error {code}: {message}"),
            });
        }
        Err(ServerEnd::Lost(message)) => {
            return Err(CloneError::Plugin {
                donor: donor_name.to_owned(),
                message: format!("the connection to the temporary server broke: {message}"),
            });
        }
        Err(ServerEnd::Stalled(message)) => {
            return Err(CloneError::Plugin {
                donor: donor_name.to_owned(),
                message,
            });
        }
        // Only a supervised server restarts itself; this one has none, so this is no clone.
        Ok(()) => {
            return Err(CloneError::Plugin {
                donor: donor_name.to_owned(),
                message: "CLONE INSTANCE returned without the restart error 3707 of an \
                          unsupervised server"
                    .to_owned(),
            });
        }
    }
    drop(conn);
    progress.phase(ClonePhase::Preparing);
    let status = temp.wait_exit(STOP_TIMEOUT).await?;
    if !status.success() {
        return Err(CloneError::TempServer(format!(
            "exited with {status} after the clone: {}",
            paths.log_tail()
        )));
    }

    // The second start applies the cloned redo and swaps the files in; only then is it a clone.
    let temp = TempServer::start(server, settings, &paths, &["--skip-grant-tables"]).await?;
    let mut conn = temp.connect().await?;
    let proof = read_proof(&mut conn).await?;
    if proof.state != "Completed" || proof.error_no != 0 {
        return Err(CloneError::Plugin {
            donor: donor_name.to_owned(),
            message: format!(
                "clone_status says {} (error {}: {})",
                proof.state, proof.error_no, proof.error_message
            ),
        });
    }
    tracing::info!(
        phase = %ClonePhase::Preparing, donor = %donor_name, source = %proof.source,
        bytes = proof.bytes, mib = mib(proof.bytes),
        secs = copy_secs.as_secs_f64(), mib_per_s = rate_mib_s(proof.bytes, copy_secs),
        binlog_file = %proof.binlog_file, binlog_position = proof.binlog_position,
        "clone copied and recovered: clone_status says Completed"
    );
    temp.shutdown(conn).await?;

    let marker = CloneMarker {
        donor: donor_name.to_owned(),
        gtid_position: proof.gtid_executed.to_string(),
        position_source: "gtid_executed".to_owned(),
        bytes: proof.bytes,
        completed_unix: now_unix(),
        duration_ms: Some(progress.clone_ms()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        promotion: settings.promotion,
        failed_attempts: Some(settings.failed_attempts.counts()),
    };
    paths.remove_scratch()?;
    Ok(marker)
}

/// Resolves the donor and logs in to it as the clone user: the user exists (the primary's
/// sidecar creates it), the password matches, and the plugin is active.
async fn check_donor(
    settings: &PluginSettings,
    resolver: &Resolver,
) -> Result<(SocketAddr, ServerVersion), Attempt> {
    let ip = resolver.resolve(&settings.donor).await?;
    agent::ask_donor(&settings.donor, ip, &settings.peer, settings.promotion).await?;
    let address = SocketAddr::new(ip, settings.port);
    let endpoint = Endpoint::Tcp {
        host: ip.to_string(),
        port: settings.port,
    };
    let retry = |e: DbError| {
        Attempt::Retry(
            AttemptFailure::DonorLoginFailed,
            format!("{address} as {}: {e}", settings.user.user),
        )
    };
    let tls = (settings.tls.as_ref()).map(|files| db::VerifiedTls {
        ca: &files.ca,
        name: &settings.donor,
    });
    let mut conn = db::connect(&endpoint, &settings.user, tls)
        .await
        .map_err(retry)?;
    let version = db::server_version(&mut conn).await.map_err(retry)?;
    let plugin: Option<Option<String>> = db::bounded(
        "reading the donor's plugins",
        conn.query_first(dialect::CLONE_PLUGIN_STATUS),
    )
    .await
    .map_err(retry)?;
    let _ = conn.disconnect().await;
    if version.flavor != Flavor::MySql {
        return Err(Attempt::Fatal(CloneError::Plugin {
            donor: settings.donor.clone(),
            message: format!("the donor is {version}, not MySQL"),
        }));
    }
    match plugin.flatten().as_deref() {
        Some("ACTIVE") => Ok((address, version)),
        other => Err(Attempt::Retry(
            AttemptFailure::NotADonor,
            format!(
                "the donor's clone plugin is {}: its config must load mysql_clone.so",
                other.unwrap_or("not installed")
            ),
        )),
    }
}

/// Loads the plugin unless the rendered config already did (plugin_load_add).
async fn ensure_plugin(conn: &mut Conn) -> Result<(), CloneError> {
    let status: Option<String> = db::bounded(
        "reading plugins",
        conn.query_first(dialect::CLONE_PLUGIN_STATUS),
    )
    .await
    .map_err(sql_error("checking the clone plugin"))?;
    if status.as_deref() == Some("ACTIVE") {
        tracing::info!("clone plugin active (loaded by the config fragment)");
        return Ok(());
    }
    db::execute_all(
        conn,
        &["INSTALL PLUGIN clone SONAME 'mysql_clone.so'".to_owned()],
    )
    .await
    .map_err(sql_error("installing the clone plugin"))?;
    tracing::info!("clone plugin installed");
    Ok(())
}

/// How the CLONE statement ended, when it did not succeed.
enum ServerEnd {
    Error { code: u16, message: String },
    Lost(String),
    Stalled(String),
}

/// Runs the clone statements without a timeout: copying takes as long as the data needs.
async fn run_clone(conn: &mut Conn, statements: &[String]) -> Result<(), ServerEnd> {
    for statement in statements {
        conn.query_drop(statement).await.map_err(|e| match e {
            mysql_async::Error::Server(e) => ServerEnd::Error {
                code: e.code,
                message: e.message,
            },
            other => ServerEnd::Lost(other.to_string()),
        })?;
    }
    Ok(())
}

/// Reports the plugin's progress from a second session, and returns (with the reason) only
/// when nothing has moved for `stall`: the plugin itself waits minutes for a donor that is gone.
async fn watch_progress(
    mut conn: Conn,
    donor: &str,
    stall: Duration,
    progress: &mut Progress,
) -> String {
    // stage, state, estimate, data, network: any of them moving is progress.
    type Stage = (String, String, u64, u64, u64);
    let mut last: Vec<Stage> = Vec::new();
    let mut moved_at = Instant::now();
    let mut current_stage = String::new();
    loop {
        tokio::time::sleep(PROGRESS_POLL).await;
        let stages: Vec<Stage> = db::bounded(
            "reading clone_progress",
            conn.query(
                "SELECT STAGE, STATE, CAST(COALESCE(ESTIMATE, 0) AS UNSIGNED), \
                 CAST(COALESCE(DATA, 0) AS UNSIGNED), CAST(COALESCE(NETWORK, 0) AS UNSIGNED) \
                 FROM performance_schema.clone_progress",
            ),
        )
        .await
        .unwrap_or_default();
        if !stages.is_empty() && stages != last {
            moved_at = Instant::now();
        }
        if moved_at.elapsed() >= stall {
            let (stage, moved) = last
                .iter()
                .find(|(_, state, ..)| state == "In Progress")
                .map_or(("none", 0), |(stage, _, _, data, _)| {
                    (stage.as_str(), *data)
                });
            return format!(
                "no progress for {} in stage {stage} ({} MiB copied): the donor stopped sending",
                seconds(stall),
                mib(moved)
            );
        }
        let in_progress = stages.iter().find(|(_, state, ..)| state == "In Progress");
        if let Some((stage, ..)) = in_progress
            && *stage != current_stage
        {
            tracing::info!(donor = %donor, stage = %stage, "clone stage started");
            current_stage.clone_from(stage);
        }
        if !stages.is_empty() {
            // The plugin estimates each stage as it starts; the sum is what it expects in all.
            let data = stages.iter().map(|(_, _, _, data, _)| data).sum();
            let estimate: u64 = stages.iter().map(|(_, _, estimate, ..)| estimate).sum();
            let stage = in_progress.map(|(stage, ..)| stage.as_str());
            progress.moved(data, (estimate > 0).then_some(estimate), stage);
        }
        last = stages;
    }
}

/// What the restarted server says about the clone it finished.
struct Proof {
    state: String,
    error_no: i64,
    error_message: String,
    source: String,
    binlog_file: String,
    binlog_position: u64,
    bytes: u64,
    gtid_executed: Gtids,
}

/// What the proof's query errors add to their own words (each names what it read).
const CHECKING_THE_CLONE: &str = "checking the finished clone";

async fn read_proof(conn: &mut Conn) -> Result<Proof, CloneError> {
    let status: Option<(String, i64, String, String, String, u64)> = db::bounded(
        "reading clone_status",
        conn.query_first(
            "SELECT STATE, ERROR_NO, COALESCE(ERROR_MESSAGE, ''), COALESCE(SOURCE, ''), \
             COALESCE(BINLOG_FILE, ''), CAST(COALESCE(BINLOG_POSITION, 0) AS UNSIGNED) \
             FROM performance_schema.clone_status",
        ),
    )
    .await
    .map_err(sql_error(CHECKING_THE_CLONE))?;
    let Some((state, error_no, error_message, source, binlog_file, binlog_position)) = status
    else {
        return Err(CloneError::TempServer(
            "has no clone_status after the clone: it never ran".into(),
        ));
    };
    let bytes: Option<u64> = db::bounded(
        "reading clone_progress",
        conn.query_first(
            "SELECT CAST(COALESCE(SUM(DATA), 0) AS UNSIGNED) FROM performance_schema.clone_progress",
        ),
    )
    .await
    .map_err(sql_error(CHECKING_THE_CLONE))?;
    let gtid: Option<String> = db::bounded(
        "reading gtid_executed",
        conn.query_first("SELECT @@GLOBAL.gtid_executed"),
    )
    .await
    .map_err(sql_error(CHECKING_THE_CLONE))?;
    let gtid_executed = Gtids::parse(Flavor::MySql, &gtid.unwrap_or_default())
        .map_err(|e| sql_error("reading gtid_executed")(DbError::Gtid(e)))?;
    Ok(Proof {
        state,
        error_no,
        error_message,
        source,
        binlog_file,
        binlog_position,
        bytes: bytes.unwrap_or(0),
        gtid_executed,
    })
}

/// The last lines of a server's error log, for error messages.
fn tail_of(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" | ")
}

/// The temporary server's files: its datadir is staging's data; the rest stays in staging so
/// that it never moves into place with the data.
struct TempPaths {
    data: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
}

impl TempPaths {
    fn new(datadir: &DataDir) -> Self {
        let staging = datadir.staging();
        TempPaths {
            data: datadir.staging_data(),
            socket: staging.join("mysqld.sock"),
            pid_file: staging.join("mysqld.pid"),
            log: staging.join("mysqld.err"),
        }
    }

    fn log_tail(&self) -> String {
        tail_of(&self.log)
    }

    fn remove_scratch(&self) -> Result<(), CloneError> {
        for file in [&self.socket, &self.pid_file, &self.log] {
            match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(format!("removing {}", file.display()))(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// How often a starting temporary server is asked whether it answers: it starts twice per
/// clone, and each ask costs a failed connect to a socket that is not there yet.
const START_POLL: Duration = Duration::from_millis(50);

/// A mysqld only the agent talks to: no network, a socket in staging, root without a password
/// (a fresh --initialize-insecure) or no grant checks at all (after the clone).
struct TempServer {
    process: tool::Running,
    socket: PathBuf,
    log: PathBuf,
}

impl TempServer {
    fn command(settings: &PluginSettings, paths: &TempPaths) -> tokio::process::Command {
        let mut cmd = tool::command(&settings.mysqld);
        cmd.arg(format!("--datadir={}", paths.data.display()))
            .arg(format!("--log-error={}", paths.log.display()));
        // mysqld refuses to run as root unless told whom to become.
        if let Some(user) = settings.ownership.server_user_arg() {
            cmd.arg(format!("--user={user}"));
        }
        cmd
    }

    /// Runs `mysqld --initialize-insecure` in `slot`.
    async fn initialize(
        slot: &mut Option<TempServer>,
        settings: &PluginSettings,
        paths: &TempPaths,
    ) -> Result<(), CloneError> {
        let mut cmd = Self::command(settings, paths);
        cmd.arg("--initialize-insecure");
        let failed =
            |e| CloneError::TempServer(format!("failed to initialize: {e}: {}", paths.log_tail()));
        let initializing = slot.insert(TempServer {
            process: tool::spawn(cmd, &settings.mysqld).map_err(failed)?,
            socket: paths.socket.clone(),
            log: paths.log.clone(),
        });
        initializing.process.finish().await.map_err(failed)
    }

    /// Starts the server in `slot` and waits until it answers.
    async fn start<'a>(
        slot: &'a mut Option<TempServer>,
        settings: &PluginSettings,
        paths: &TempPaths,
        extra: &[&str],
    ) -> Result<&'a mut TempServer, CloneError> {
        let mut cmd = Self::command(settings, paths);
        cmd.arg(format!("--socket={}", paths.socket.display()))
            .arg(format!("--pid-file={}", paths.pid_file.display()))
            .args([
                "--skip-networking",
                "--mysqlx=OFF",
                // Replicas render super_read_only, which refuses CLONE INSTANCE.
                "--read-only=OFF",
                "--super-read-only=OFF",
                // A donor replica's channel comes with the clone; it must not start here.
                "--loose-skip-replica-start",
                "--loose-skip-slave-start",
            ])
            .args(extra);
        let server = slot.insert(TempServer {
            process: tool::spawn(cmd, &settings.mysqld)
                .map_err(|e| CloneError::TempServer(format!("cannot start: {e}")))?,
            socket: paths.socket.clone(),
            log: paths.log.clone(),
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.process.child.try_wait().ok().flatten() {
                return Err(CloneError::TempServer(format!(
                    "exited with {status} while starting: {}",
                    paths.log_tail()
                )));
            }
            match server.connect().await {
                Ok(conn) => {
                    let _ = conn.disconnect().await;
                    return Ok(server);
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(CloneError::TempServer(format!(
                        "did not answer within {}: {e}: {}",
                        seconds(START_TIMEOUT),
                        paths.log_tail()
                    )));
                }
                Err(_) => tokio::time::sleep(START_POLL).await,
            }
        }
    }

    async fn connect(&self) -> Result<Conn, CloneError> {
        let root = Credentials {
            user: "root".into(),
            password: None,
        };
        db::connect(&Endpoint::Socket(self.socket.clone()), &root, None)
            .await
            .map_err(sql_error("connecting to the temporary server"))
    }

    /// Waits for the server to exit; one that does not is left to the slot's owner to kill.
    async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, CloneError> {
        match tokio::time::timeout(timeout, self.process.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(io_error("waiting for the temporary server")(e)),
            Err(_) => Err(CloneError::TempServer(format!(
                "did not exit within {}",
                seconds(timeout)
            ))),
        }
    }

    /// A clean shutdown: the data it leaves must need no recovery.
    async fn shutdown(&mut self, mut conn: Conn) -> Result<(), CloneError> {
        db::execute_all(&mut conn, &["SHUTDOWN".to_owned()])
            .await
            .map_err(sql_error("shutting the temporary server down"))?;
        drop(conn);
        let log = self.log.clone();
        let status = self.wait_exit(STOP_TIMEOUT).await?;
        if status.success() {
            Ok(())
        } else {
            Err(CloneError::TempServer(format!(
                "exited with {status} on shutdown: {}",
                tail_of(&log)
            )))
        }
    }
}
