//! MySQL clones with the CLONE plugin: a throwaway scratch server in the staging directory pulls
//! the donor's data into a directory of its own (`CLONE ... DATA DIRECTORY`), which needs no
//! restart of the recipient; the scratch server is then killed, and a server started on the
//! cloned directory finishes the clone (recovery), proves it, and forgets the donor's relay log
//! position (relay logs are never cloned). Only a statement that succeeded,
//! the scratch server's `performance_schema.clone_status` saying Completed, and the cloned
//! server's saying Completed again with its position make a clone.

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

/// The scratch server's datadir is thrown away, so it may lose anything on a crash: these cut
/// its initialization's and start's syncs (the clone it copies is synced by the install).
const SCRATCH_ONLY: &[&str] = &[
    "--innodb-doublewrite=OFF",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-flush-method=nosync",
    "--sync-binlog=0",
    "--skip-log-bin",
    // Its keys and certificates would only be thrown away (a TLS clone names its own).
    "--loose-auto-generate-certs=OFF",
    "--loose-caching-sha2-password-auto-generate-rsa-keys=OFF",
];
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
    // CLONE ... DATA DIRECTORY creates the directory itself and refuses one that exists.
    std::fs::remove_dir(&paths.clone_target).map_err(io_error(format!(
        "emptying {}",
        paths.clone_target.display()
    )))?;
    std::fs::create_dir(&paths.scratch)
        .map_err(io_error(format!("creating {}", paths.scratch.display())))?;
    if let Some((uid, gid)) = settings.ownership.chown_to() {
        // A root agent's temporary servers run as the server's user, in directories root made.
        for dir in [datadir.staging(), paths.scratch.clone()] {
            crate::fsutil::chown_one(&dir, uid, gid)
                .map_err(io_error(format!("giving {} to {uid}:{gid}", dir.display())))?;
        }
    }
    let started = Instant::now();
    TempServer::initialize(server, settings, &paths).await?;
    tracing::info!(secs = started.elapsed().as_secs_f64(), datadir = %paths.scratch.display(), "scratch server initialized in the staging directory");

    let started = Instant::now();
    let temp = TempServer::start(server, settings, &paths, &paths.scratch, SCRATCH_ONLY).await?;
    let mut conn = temp.connect().await?;
    let version = db::server_version(&mut conn)
        .await
        .map_err(sql_error("the temporary server"))?;
    if version.flavor != Flavor::MySql {
        return Err(CloneError::TempServer(format!(
            "is {version}, not MySQL: check --mysqld and --flavor"
        )));
    }
    tracing::info!(secs = started.elapsed().as_secs_f64(), local = %version, donor = %donor_version, "scratch server up");
    ensure_plugin(&mut conn).await?;

    let watcher = temp.connect().await?;
    progress.copy_starts();
    let copy_started = Instant::now();
    let password =
        (settings.user.password.as_ref()).expect("validated: MySQL needs a clone password");
    let statements = dialect::clone_instance(
        donor,
        &settings.user.user,
        password,
        &paths.clone_target,
        settings.tls.as_ref(),
    );
    let outcome = tokio::select! {
        outcome = run_clone(&mut conn, &statements) => outcome,
        stalled = watch_progress(watcher, donor_name, settings.stall_timeout, progress) => Err(ServerEnd::Stalled(stalled)),
    };
    let copy_secs = copy_started.elapsed();
    let plugin_failed = |message: String| CloneError::Plugin {
        donor: donor_name.to_owned(),
        message,
    };
    match outcome {
        Ok(()) => {}
        Err(ServerEnd::Error { code, message }) => {
            return Err(plugin_failed(format!("error {code}: {message}")));
        }
        Err(ServerEnd::Lost(message)) => {
            return Err(plugin_failed(format!(
                "the connection to the temporary server broke: {message}"
            )));
        }
        Err(ServerEnd::Stalled(message)) => return Err(plugin_failed(message)),
    }
    // The statement's success alone is not the proof: the plugin's own record must agree.
    let copied = read_status(&mut conn).await?;
    copied.completed().map_err(plugin_failed)?;
    drop(conn);
    // The scratch server's datadir is discarded with staging: no clean shutdown is owed to it.
    if let Some(scratch) = server.take() {
        scratch.process.stop().await;
    }
    tracing::info!(
        phase = %ClonePhase::Cloning, donor = %donor_name, source = %copied.source,
        secs = copy_secs.as_secs_f64(),
        "CLONE INSTANCE copied the donor's data into its own directory: clone_status says Completed"
    );

    // The first start on the cloned directory applies its redo and records where it stands;
    // only then is it a clone with a position.
    progress.phase(ClonePhase::Preparing);
    let started = Instant::now();
    let temp = TempServer::start(
        server,
        settings,
        &paths,
        &paths.clone_target,
        &["--skip-grant-tables"],
    )
    .await?;
    let mut conn = temp.connect().await?;
    let proof = read_proof(&mut conn).await?;
    proof.status.completed().map_err(plugin_failed)?;
    // A replica donor's applier position names relay logs the clone did not bring: the real
    // server's first start would fail to open them.
    let dialect = version
        .dialect()
        .map_err(|e| CloneError::TempServer(format!("is of no known dialect: {e}")))?;
    db::execute_all(&mut conn, &[dialect.reset_relay_log().to_owned()])
        .await
        .map_err(sql_error("resetting the cloned relay log position"))?;
    tracing::info!(
        phase = %ClonePhase::Preparing, donor = %donor_name, source = %proof.status.source,
        bytes = proof.bytes, mib = mib(proof.bytes), recovery_secs = started.elapsed().as_secs_f64(),
        secs = copy_secs.as_secs_f64(), mib_per_s = rate_mib_s(proof.bytes, copy_secs),
        binlog_file = %proof.status.binlog_file, binlog_position = proof.status.binlog_position,
        "clone copied and recovered: clone_status says Completed"
    );
    let started = Instant::now();
    temp.shutdown(conn).await?;
    tracing::info!(
        secs = started.elapsed().as_secs_f64(),
        "temporary server stopped"
    );

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

/// What a server's `performance_schema.clone_status` says about the last clone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CloneStatus {
    state: String,
    error_no: i64,
    error_message: String,
    source: String,
    binlog_file: String,
    binlog_position: u64,
}

impl CloneStatus {
    /// Whether the plugin recorded the clone as complete and without error; why not otherwise.
    fn completed(&self) -> Result<(), String> {
        if self.state == "Completed" && self.error_no == 0 {
            return Ok(());
        }
        Err(format!(
            "clone_status says {} (error {}: {})",
            self.state, self.error_no, self.error_message
        ))
    }
}

/// What the first server on the cloned directory says about the clone it finished.
struct Proof {
    status: CloneStatus,
    bytes: u64,
    gtid_executed: Gtids,
}

/// What the proof's query errors add to their own words (each names what it read).
const CHECKING_THE_CLONE: &str = "checking the finished clone";

async fn read_status(conn: &mut Conn) -> Result<CloneStatus, CloneError> {
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
    Ok(CloneStatus {
        state,
        error_no,
        error_message,
        source,
        binlog_file,
        binlog_position,
    })
}

async fn read_proof(conn: &mut Conn) -> Result<Proof, CloneError> {
    let status = read_status(conn).await?;
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
        status,
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

/// The temporary servers' files, all in staging, of which only `clone_target` moves into place:
/// the scratch server's datadir (the clone's recipient, thrown away with staging), the directory
/// the clone fills, and the servers' socket, pid file and log.
struct TempPaths {
    scratch: PathBuf,
    clone_target: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
}

impl TempPaths {
    fn new(datadir: &DataDir) -> Self {
        let staging = datadir.staging();
        TempPaths {
            scratch: staging.join(SCRATCH_DATADIR),
            clone_target: datadir.staging_data(),
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

/// The scratch server's datadir in staging.
const SCRATCH_DATADIR: &str = "scratch";

/// How often a starting temporary server is asked whether it answers: one starts twice per
/// clone, and each ask costs a failed connect to a socket that is not there yet.
const START_POLL: Duration = Duration::from_millis(50);

/// A mysqld only the agent talks to: no network, a socket in staging, root without a password
/// (the scratch server, fresh from --initialize-insecure) or no grant checks at all (the first
/// server on the cloned directory).
struct TempServer {
    process: tool::Running,
    socket: PathBuf,
    log: PathBuf,
}

impl TempServer {
    fn command(
        settings: &PluginSettings,
        paths: &TempPaths,
        datadir: &Path,
    ) -> tokio::process::Command {
        let mut cmd = tool::command(&settings.mysqld);
        cmd.arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--log-error={}", paths.log.display()));
        // mysqld refuses to run as root unless told whom to become.
        if let Some(user) = settings.ownership.server_user_arg() {
            cmd.arg(format!("--user={user}"));
        }
        cmd
    }

    /// Runs `mysqld --initialize-insecure` for the scratch server in `slot`.
    async fn initialize(
        slot: &mut Option<TempServer>,
        settings: &PluginSettings,
        paths: &TempPaths,
    ) -> Result<(), CloneError> {
        let mut cmd = Self::command(settings, paths, &paths.scratch);
        cmd.arg("--initialize-insecure").args(SCRATCH_ONLY);
        let failed =
            |e| CloneError::TempServer(format!("failed to initialize: {e}: {}", paths.log_tail()));
        let initializing = slot.insert(TempServer {
            process: tool::spawn(cmd, &settings.mysqld).map_err(failed)?,
            socket: paths.socket.clone(),
            log: paths.log.clone(),
        });
        initializing.process.finish().await.map_err(failed)
    }

    /// Starts a server on `datadir` in `slot` (which holds none that runs) and waits until it
    /// answers.
    async fn start<'a>(
        slot: &'a mut Option<TempServer>,
        settings: &PluginSettings,
        paths: &TempPaths,
        datadir: &Path,
        extra: &[&str],
    ) -> Result<&'a mut TempServer, CloneError> {
        let mut cmd = Self::command(settings, paths, datadir);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, error_no: i64) -> CloneStatus {
        CloneStatus {
            state: state.into(),
            error_no,
            error_message: String::new(),
            source: "169.254.250.10:3306".into(),
            binlog_file: String::new(),
            binlog_position: 0,
        }
    }

    #[test]
    fn only_a_completed_clone_without_error_is_complete() {
        assert_eq!(status("Completed", 0).completed(), Ok(()));
        for (state, error_no) in [("In Progress", 0), ("Failed", 3862), ("Completed", 1158)] {
            let refused = status(state, error_no).completed().unwrap_err();
            assert!(refused.contains(state), "{refused}");
        }
    }
}
