//! `mysql-sts-agent sidecar`: one control loop that brings replication up and samples state,
//! the HTTP server that answers from its snapshots, and the donor for the next pod.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use mysql_async::Conn;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clone::datadir::{CloneMarker, DataDir, Promotion, RECLONE_FILE};
use crate::clone::mariadb::donor::{Donor, DonorSettings};
use crate::clone::now_unix;
use crate::clone::reclone::RecloneRequest;
use crate::config::{CloneChannel, Endpoint, SidecarConfig};
use crate::control::{self, Cadence, Event, Pause, Stage};
use crate::db::dialect::{self, Source};
use crate::db::flavor::{Dialect, ServerVersion};
use crate::db::gtid::{self, Binlogged, Gtids};
use crate::db::status::{IoThread, ReplicaStatus};
use crate::db::{self, DbError};
use crate::duration::millis;
use crate::health::{
    self, ErrantCheck, Phase, PrimaryHistory, PrimaryLink, ReplicaFacts, Rules, Snapshot, Timings,
};
use crate::http::{self, AppState, CloneService, Endpoints, HttpLimits};
use crate::identity::Role;
use crate::metrics::{self, Metrics, Operation, Retries};
use crate::replication::{self, GapAction, Plan};
use crate::semisync::{self, Action, Names, SemiSyncFacts};
use crate::tls;

/// Long enough for any ?lag= a probe may ask about.
const HISTORY: Duration = Duration::from_secs(600);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
// The HTTP server cuts the responses it cannot finish before the sidecar stops waiting for it.
const _: () = assert!(HttpLimits::PRODUCTION.drain_within.as_millis() < SHUTDOWN_GRACE.as_millis());
const CONNECT_RETRY_SECS: u32 = 2;

pub async fn run(cfg: SidecarConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let timings = Arc::new(Timings::starting_now());
    let identity = Arc::new(cfg.common.identity.clone());
    super::log_identity(&cfg.common);
    // A replica starts replication from its marker; a restored primary owes a promotion.
    let marker = DataDir::new(&cfg.common.datadir)
        .read_marker()
        .with_context(|| {
            format!(
                "reading the clone marker in {}",
                cfg.common.datadir.display()
            )
        })?;

    let marker_published = watch::Sender::new(marker.clone().map(Arc::new));
    let tracker = TaskTracker::new();
    let (publish, snapshots) = watch::channel(Snapshot::phase(Phase::WaitingForServer, None));
    let rules = Rules {
        role: identity.role,
        primary_name: identity.primary_name(),
        max_lag: cfg.max_lag,
        stale_after: (cfg.poll_interval * 5).max(Duration::from_secs(15)),
        outage_grace: cfg.primary_outage_grace,
    };
    let clone_service = match &cfg.common.clone {
        CloneChannel::BackupStream {
            token,
            mariadb_backup,
            ..
        } => Some(CloneService {
            donor: Arc::new(Donor::new(
                DonorSettings {
                    mariadb_backup: mariadb_backup.clone(),
                    datadir: cfg.common.datadir.clone(),
                    tmp_dir: cfg.tmp_dir.clone(),
                    server: cfg.local_server.clone(),
                    admin: cfg.admin.clone(),
                    is_replica: identity.role == Role::Replica,
                },
                tracker.clone(),
                shutdown.clone(),
            )),
            token: token.clone(),
        }),
        CloneChannel::ClonePlugin { .. } => None,
    };
    let retries = Retries::default();
    let metrics = Metrics::new(metrics::Sources {
        snapshots: snapshots.clone(),
        rules: rules.clone(),
        flavor: cfg.common.flavor,
        retries: retries.clone(),
        clones: clone_service
            .as_ref()
            .map(|service| service.donor.counters().clone()),
        marker: marker_published.subscribe(),
    });
    let state = AppState {
        snapshots: snapshots.clone(),
        rules: rules.clone(),
        live_after: (cfg.poll_interval * 10).max(Duration::from_secs(60)),
        identity: identity.clone(),
        marker: marker_published.subscribe(),
        datadir: DataDir::new(&cfg.common.datadir),
        timings: timings.clone(),
        clone_service,
        metrics: Arc::new(metrics),
        peer_port: cfg.common.peer.port(),
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let local = match &cfg.peer_tls {
        None => {
            tracing::info!(address = %cfg.listen, flavor = %cfg.common.flavor, "serving /livez /readyz /status /metrics /data /clone /donor over HTTP");
            Endpoints::All
        }
        Some(peer_tls) => {
            let address = std::net::SocketAddr::new(cfg.listen.ip(), cfg.common.peer.port());
            let peers = TcpListener::bind(address)
                .await
                .with_context(|| format!("listening on {address}"))?;
            let certificate = peer_tls.certificate.as_ref();
            tracing::info!(
                address = %cfg.listen, peer_address = %address, channel = %cfg.common.peer,
                serial = certificate.map_or("?", |c| c.serial.as_str()),
                not_after = certificate.map_or("?", |c| c.not_after.as_str()),
                "serving /livez /readyz /status /metrics over HTTP (the kubelet and Prometheus need no certificate) and the peer endpoints /data /clone /donor over TLS only, the certificate reloaded when its files change"
            );
            tracker.spawn(http::serve(
                peers,
                http::router(state.clone(), Endpoints::Peers),
                Some(peer_tls.tls.clone()),
                HttpLimits::PRODUCTION,
                shutdown.clone(),
            ));
            tracker.spawn(
                peer_tls
                    .tls
                    .clone()
                    .watch(tls::RELOAD_CHECK_EVERY, shutdown.clone()),
            );
            Endpoints::Local
        }
    };
    tracker.spawn(http::serve(
        listener,
        http::router(state, local),
        None,
        HttpLimits::PRODUCTION,
        shutdown.clone(),
    ));
    tracker.spawn(health::log_readiness_changes(
        snapshots,
        rules.clone(),
        shutdown.clone(),
    ));
    let shared = Shared {
        marker_published,
        publish,
        rules,
        retries,
        timings,
    };
    tracker.spawn(ControlLoop::new(cfg, marker, shared).run(shutdown.clone()));
    tracker.close();

    shutdown.cancelled().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Logs a recurring failure once, and again only when its text changes.
#[derive(Default)]
struct Repeats(Option<String>);

impl Repeats {
    /// Whether `error` is not the one last logged; remembers it.
    fn is_new(&mut self, error: &str) -> bool {
        let new = self.0.as_deref() != Some(error);
        if new {
            self.0 = Some(error.to_owned());
        }
        new
    }

    fn warn(&mut self, what: &str, error: &str) {
        if self.is_new(error) {
            tracing::warn!("{what}: {error}");
        }
    }

    /// A failure retried after the reconnect backoff's next delay: with its attempt number.
    fn warn_retry(&mut self, failed: &Failed, attempt: u32, next_delay: Duration) {
        if self.is_new(&failed.error) {
            tracing::warn!(
                attempt,
                next_delay_ms = millis(next_delay),
                "{}: {}",
                failed.what,
                failed.error
            );
        }
    }

    fn recovered(&mut self, what: &str) {
        if self.0.take().is_some() {
            tracing::info!("{what}: recovered");
        }
    }
}

/// A session with the local server: the connection, and what the server said it is.
struct LocalServer {
    conn: Conn,
    version: ServerVersion,
    dialect: Dialect,
}

/// A failure of the loop's last action, which the loop retries after its backoff.
struct Failed {
    what: &'static str,
    error: String,
}

/// The reconnect backoff, counting the retries since the last good poll.
struct Reconnect {
    delays: ExponentialBackoff,
    attempts: u32,
}

impl Reconnect {
    fn new() -> Self {
        Reconnect {
            delays: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_factor(1.5)
                .with_max_delay(Duration::from_secs(5))
                .without_max_times()
                .build(),
            attempts: 0,
        }
    }

    /// The next retry's number and the delay before it.
    fn next(&mut self) -> (u32, Duration) {
        self.attempts += 1;
        let delay = self.delays.next().unwrap_or(Duration::from_secs(5));
        (self.attempts, delay)
    }
}

/// What the control loop shares with the rest of the sidecar.
struct Shared {
    /// The marker as /status shows it.
    marker_published: watch::Sender<Option<Arc<CloneMarker>>>,
    publish: watch::Sender<Snapshot>,
    /// What readiness is judged against: the loop polls quickly until it is first ready.
    rules: Rules,
    retries: Retries,
    timings: Arc<Timings>,
}

/// What setting up came to.
enum SetUp {
    Done,
    /// Set-up must not go on, for this reason.
    Blocked(String),
    /// The replica cannot catch up by replication: clone it again, for this reason.
    Reclone(String),
}

struct ControlLoop {
    cfg: SidecarConfig,
    marker: Option<CloneMarker>,
    shared: Shared,
    stage: Stage<LocalServer>,
    /// What the local server was at the last connect, to log a change once.
    last_seen: Option<(ServerVersion, Dialect)>,
    /// An open connection to the primary (replicas), reused across polls.
    primary: Option<Conn>,
    history: PrimaryHistory,
    errant: ErrantCheck,
    link: PrimaryLink,
    local_errors: Repeats,
    primary_errors: Repeats,
    semi_sync_errors: Repeats,
    /// The primary's commits no longer waiting for a replica (a fallback to asynchronous).
    semi_sync_fallback: Repeats,
    /// The up-front check for purged binlogs could not ask the primary.
    gap_check_errors: Repeats,
    /// What the last action failed at, if the loop retries it.
    failed: Option<Failed>,
    /// With the TLS files: when to tell the server to read them again.
    server_tls: Option<tls::ServerFiles>,
    server_tls_errors: Repeats,
}

impl ControlLoop {
    fn new(cfg: SidecarConfig, marker: Option<CloneMarker>, shared: Shared) -> Self {
        ControlLoop {
            marker,
            shared,
            stage: Stage::Disconnected { set_up: false },
            last_seen: None,
            primary: None,
            history: PrimaryHistory::new(HISTORY),
            errant: ErrantCheck::default(),
            link: PrimaryLink::default(),
            local_errors: Repeats::default(),
            primary_errors: Repeats::default(),
            semi_sync_errors: Repeats::default(),
            semi_sync_fallback: Repeats::default(),
            gap_check_errors: Repeats::default(),
            failed: None,
            server_tls: cfg.common.tls.clone().map(tls::ServerFiles::new),
            server_tls_errors: Repeats::default(),
            cfg,
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        self.shared.publish.send_replace(snapshot);
    }

    fn publish_phase(&self, phase: Phase, error: String) {
        self.publish(Snapshot::phase(phase, Some(error)));
    }

    /// `operation` failed: counted, and logged with its retry once the loop knows the delay.
    fn failed(&mut self, operation: Operation, what: &'static str, error: String) {
        self.shared.retries.record(operation);
        self.failed = Some(Failed { what, error });
    }

    /// What the pod does once set up, by its role.
    fn set_up_phase(&self) -> Phase {
        Phase::set_up(self.cfg.common.identity.role)
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let interval = self.cfg.poll_interval;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cadence = Cadence::settling(Instant::now());
        let mut reconnect = Reconnect::new();
        let mut pause = Pause::Tick;
        loop {
            let failed = self.failed.take();
            // None: the poll interval's ticker.
            let sleep = match pause {
                Pause::None => Some(Duration::ZERO),
                Pause::Tick => {
                    reconnect = Reconnect::new();
                    cadence.poll_pause(interval)
                }
                Pause::Recheck => Some(interval),
                Pause::Backoff => {
                    let (attempt, delay) = reconnect.next();
                    if let Some(failed) = &failed {
                        self.local_errors.warn_retry(failed, attempt, delay);
                    }
                    Some(delay)
                }
            };
            match sleep {
                Some(Duration::ZERO) => {}
                Some(delay) => tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                },
                None => tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => break,
                },
            }
            let from = std::mem::replace(&mut self.stage, Stage::Disconnected { set_up: false });
            let kind = from.kind();
            let event = tokio::select! {
                event = self.act(from) => event,
                () = shutdown.cancelled() => break,
            };
            (self.stage, pause) = control::advance(kind.clone(), event);
            let now = Instant::now();
            let ready =
                || health::readiness(&self.shared.publish.borrow(), &self.shared.rules, now).ready;
            cadence.observe(&kind, &self.stage, ready, now);
        }
        if let Stage::SettingUp(server) | Stage::Blocked(server) | Stage::Running(server) =
            std::mem::replace(&mut self.stage, Stage::Disconnected { set_up: false })
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), server.conn.disconnect()).await;
        }
        if let Some(conn) = self.primary.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
        }
    }

    /// The action of the stage the loop is in, and what it came to.
    async fn act(&mut self, stage: Stage<LocalServer>) -> Event<LocalServer> {
        match stage {
            Stage::Disconnected { .. } => self.connect_local().await,
            Stage::SettingUp(server) => self.set_up(server, false).await,
            Stage::Blocked(server) => self.set_up(server, true).await,
            Stage::Running(server) => self.poll(server).await,
        }
    }

    /// Connects and learns what the server is; refuses a server the agent must not manage.
    async fn connect_local(&mut self) -> Event<LocalServer> {
        let connected = async {
            // The local server is on loopback or a socket: nothing leaves the pod.
            let mut conn = db::connect(&self.cfg.local_server, &self.cfg.admin, None).await?;
            let version = db::server_version(&mut conn).await?;
            Ok::<_, DbError>((conn, version))
        }
        .await;
        let (conn, version) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                self.failed(
                    Operation::ConnectLocal,
                    "waiting for the local server",
                    e.to_string(),
                );
                match self.datadir().read_reclone() {
                    Ok(Some(request)) => self.publish_phase(
                        Phase::Recloning,
                        format!(
                            "{}; the database container clones again before its server starts",
                            request.reason
                        ),
                    ),
                    _ => self.publish_phase(Phase::WaitingForServer, e.to_string()),
                }
                return Event::Unreachable;
            }
        };
        let configured = self.cfg.common.flavor;
        let dialect = if version.flavor == configured {
            version.dialect().map_err(|e| e.to_string())
        } else {
            Err(format!(
                "the local server is {version} but --flavor is {configured}: fix the pod template"
            ))
        };
        let dialect = match dialect {
            Ok(dialect) => dialect,
            Err(reason) => {
                self.local_errors
                    .warn("refusing to manage the server", &reason);
                self.publish_phase(Phase::Blocked, reason);
                return Event::Refused;
            }
        };
        self.local_errors.recovered("local server");
        if self.last_seen.as_ref() != Some(&(version.clone(), dialect)) {
            tracing::info!(
                server = %self.cfg.local_server, version = %version,
                "connected to the local server: speaking {}", dialect.describe()
            );
            self.last_seen = Some((version.clone(), dialect));
        }
        Event::Connected(LocalServer {
            conn,
            version,
            dialect,
        })
    }

    fn source(&self) -> Source {
        let identity = &self.cfg.common.identity;
        Source {
            host: identity.primary_fqdn.clone(),
            port: self.cfg.common.mysql_port,
            user: self.cfg.repl.user.clone(),
            password: self
                .cfg
                .repl
                .password
                .clone()
                .expect("validated: the replication password is required"),
            connect_retry_secs: CONNECT_RETRY_SECS,
            tls_ca: self
                .cfg
                .common
                .replication_ca()
                .map(|ca| ca.display().to_string()),
        }
    }

    /// Sets up replication (a replica) or the users (the primary). A blocked pod re-checks every
    /// poll and stays reported as blocked meanwhile.
    async fn set_up(&mut self, mut server: LocalServer, blocked: bool) -> Event<LocalServer> {
        if !blocked {
            self.publish(Snapshot::phase(Phase::Configuring, None));
        }
        match self.bootstrap(&mut server).await {
            Ok(SetUp::Done) => {
                self.shared.timings.configured_now();
                Event::SetUp(server)
            }
            Ok(SetUp::Blocked(reason)) => {
                self.local_errors.warn("replication not set up", &reason);
                self.publish_phase(Phase::Blocked, reason);
                Event::SetupBlocked(server)
            }
            Ok(SetUp::Reclone(reason)) => self.request_reclone(server, reason).await,
            Err(e) => {
                self.failed(Operation::SetUp, "setting up", e.to_string());
                self.publish_phase(Phase::Configuring, e.to_string());
                Event::SetupFailed
            }
        }
    }

    async fn bootstrap(&mut self, server: &mut LocalServer) -> Result<SetUp, DbError> {
        let source = self.source();
        let dialect = server.dialect;
        // A re-clone may have replaced the data since the last set-up.
        if let Ok(marker) = self.datadir().read_marker() {
            self.set_marker(marker);
        }
        let conn = &mut server.conn;
        match self.cfg.common.identity.role {
            Role::Primary => {
                if let Some(reason) = self.promote(conn, dialect).await? {
                    return Ok(SetUp::Blocked(reason));
                }
                replication::ensure_user(
                    conn,
                    dialect,
                    &source.user,
                    &source.password,
                    dialect.replication_privileges(),
                    self.cfg.common.replication_tls,
                    "replication",
                )
                .await?;
                if let CloneChannel::ClonePlugin { user } = &self.cfg.common.clone {
                    let password = user.password.as_ref().expect("validated: required");
                    replication::ensure_user(
                        conn,
                        dialect,
                        &user.user,
                        password,
                        dialect::CLONE_PRIVILEGE,
                        self.cfg.common.peer.tls_files().is_some(),
                        "clone",
                    )
                    .await?;
                }
            }
            Role::Replica => {
                if let Some(pending) = self.pending_reclone(conn).await? {
                    return Ok(pending);
                }
                let status = db::replica_status(conn, dialect).await?;
                let plan = replication::plan(
                    dialect.flavor(),
                    status.as_ref(),
                    self.marker.as_ref(),
                    &source.host,
                    self.cfg.common.replication_ca(),
                );
                if let Plan::Blocked(reason) = plan {
                    return Ok(SetUp::Blocked(reason));
                }
                if plan != Plan::Keep
                    && let Some(action) = self.check_gap(server, &plan, status.as_ref()).await
                {
                    return Ok(match action {
                        GapAction::Reclone { reason } => SetUp::Reclone(reason),
                        GapAction::Blocked { reason } => SetUp::Blocked(reason),
                    });
                }
                // Before replication starts, so that a thread the plan starts acknowledges from
                // its first event (a poll right after START may see it not running yet).
                let io_thread_running = status.is_some_and(|s| s.io_thread != IoThread::Stopped);
                self.semi_sync(server, io_thread_running).await;
                replication::apply(&mut server.conn, &plan, &source, dialect).await?;
            }
        }
        Ok(SetUp::Done)
    }

    fn set_marker(&mut self, marker: Option<CloneMarker>) {
        if marker != self.marker {
            self.shared
                .marker_published
                .send_replace(marker.clone().map(Arc::new));
            self.marker = marker;
        }
    }

    fn datadir(&self) -> DataDir {
        DataDir::new(&self.cfg.common.datadir)
    }

    /// A re-clone requested earlier: the server it was requested of was not shut down (ask
    /// again), or a server started since on the same data without the `exec` wrapper, which
    /// would carry it out (a person must act).
    async fn pending_reclone(&mut self, conn: &mut Conn) -> Result<Option<SetUp>, DbError> {
        let Ok(Some(request)) = self.datadir().read_reclone() else {
            return Ok(None);
        };
        let started = now_unix().saturating_sub(db::uptime(conn).await?.as_secs());
        if request.names_server_started_at(started) {
            return Ok(Some(SetUp::Reclone(request.reason)));
        }
        Ok(Some(SetUp::Blocked(format!(
            "a re-clone was requested ({}), but the server started again on the old data: the \
             database container's command must be `mysql-sts-agent exec -- <the image's \
             entrypoint>`, which carries it out (see the README); remove {} from the datadir \
             to cancel the re-clone",
            request.reason, RECLONE_FILE
        ))))
    }

    /// Before replication starts or resumes: would the replica ask the primary for
    /// transactions whose binlogs are purged? `None` when not, or when the primary cannot be
    /// asked (then the IO thread's error tells, and the running loop acts on it).
    async fn check_gap(
        &mut self,
        server: &mut LocalServer,
        plan: &Plan,
        status: Option<&ReplicaStatus>,
    ) -> Option<GapAction> {
        let dialect = server.dialect;
        let result = async {
            // The replica first: what it binlogged is compared with a later primary state.
            let facts = db::server_facts(&mut server.conn, &server.version).await?;
            let none = Gtids::parse(dialect.flavor(), "")?;
            let (applied, received) = match plan {
                Plan::Configure { start_at, .. } => (start_at.clone(), none),
                _ => (
                    facts.gtid_applied,
                    status.map_or(none, |status| status.received.clone()),
                ),
            };
            let primary = self.primary_conn().await?;
            let purged = db::primary_purged(primary, dialect).await?;
            let state = db::primary_state(primary, dialect).await?;
            Ok::<_, DbError>(
                gtid::purged_gap(&purged, &applied, &received)
                    .map(|needed| (needed, facts.gtid_binlog.errant(&state.binlogged))),
            )
        }
        .await;
        match result {
            Ok(gap) => {
                self.gap_check_errors
                    .recovered("checking the primary's purged binlogs");
                let (needed, errant) = gap?;
                Some(replication::gap_action(
                    &needed,
                    &errant,
                    self.marker.is_some(),
                ))
            }
            Err(e) => {
                self.primary = None;
                self.gap_check_errors.warn(
                    "cannot check the primary's purged binlogs before replication starts; \
                     starting it (its IO thread reports a gap)",
                    &e.to_string(),
                );
                None
            }
        }
    }

    /// Restarts replication from the applied position with an empty relay log (MariaDB's CHANGE
    /// MASTER discards it); the IO thread fetches again what the primary has.
    async fn discard_relay_log(&mut self, server: &mut LocalServer, reason: &str) {
        let statements = server.dialect.repoint_replica(&self.source());
        match db::execute_all(&mut server.conn, &statements).await {
            Ok(()) => tracing::warn!(
                "{reason}: discarding the relay log and restarting replication from the applied \
                 position, which the primary sends again"
            ),
            Err(e) => self
                .local_errors
                .warn("discarding the relay log", &e.to_string()),
        }
    }

    /// Records the request in the datadir, then shuts the server down: the database container
    /// restarts, and its `exec` wrapper clones again before the server starts.
    async fn request_reclone(
        &mut self,
        mut server: LocalServer,
        reason: String,
    ) -> Event<LocalServer> {
        let requested = async {
            let uptime = db::uptime(&mut server.conn).await?;
            let now = now_unix();
            Ok::<_, DbError>(RecloneRequest {
                reason: reason.clone(),
                requested_unix: now,
                server_started_unix: now.saturating_sub(uptime.as_secs()),
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            })
        }
        .await;
        let written = requested.map_err(|e| e.to_string()).and_then(|request| {
            self.datadir()
                .request_reclone(&request)
                .map_err(|e| format!("writing {RECLONE_FILE}: {e}"))
        });
        if let Err(e) = written {
            let reason = format!("{reason}; cannot request a re-clone: {e}");
            self.local_errors.warn("replication not set up", &reason);
            self.publish_phase(Phase::Blocked, reason);
            return Event::SetupBlocked(server);
        }
        tracing::warn!(
            donor = self
                .cfg
                .common
                .identity
                .donor_fqdn
                .as_deref()
                .unwrap_or("none"),
            "re-clone requested: {reason}; shutting the server down so that the database \
             container clones again before it restarts (the old data is set aside until the new \
             clone is in place)"
        );
        // The server closes the connection as it goes: no answer is expected.
        let _ = db::execute_all(&mut server.conn, &["SHUTDOWN".to_owned()]).await;
        // What was learnt about the old data says nothing about the new.
        self.errant = ErrantCheck::default();
        self.link = PrimaryLink::default();
        self.publish_phase(Phase::Recloning, reason);
        Event::RecloneRequested
    }

    /// A first ordinal restored from a peer (its marker says so) becomes the primary before it
    /// takes writes: the donor's replication channel goes, MariaDB's binlog GTID state is set to
    /// the clone's position if it is not there yet, the marker records `Done`, and only then is
    /// the server made writable. A crash before `Done` redoes idempotent steps on data that took
    /// no writes (it is read-only); after it, only the last step is repeated.
    async fn promote(
        &mut self,
        conn: &mut Conn,
        dialect: Dialect,
    ) -> Result<Option<String>, DbError> {
        let Some(mut marker) = self.marker.clone() else {
            return Ok(None);
        };
        match marker.promotion {
            Promotion::None => return Ok(None),
            Promotion::Done { .. } => {}
            Promotion::Owed => {
                let flavor = dialect.flavor();
                let position = Gtids::parse(flavor, &marker.gtid_position)?;
                let binlog = db::primary_state(conn, dialect).await?.position;
                let reset = replication::binlog_reset(flavor, &binlog, &position);
                let statements = dialect.promote_restored(reset);
                db::execute_all(conn, &statements).await?;
                tracing::info!(
                    donor = %marker.donor, gtid = %position, binlog_reset = reset.is_some(),
                    "restored primary promoted: {}", statements.join("; ")
                );
                marker.promotion = Promotion::Done {
                    at_unix: now_unix(),
                };
                let datadir = DataDir::new(&self.cfg.common.datadir);
                if let Err(e) = datadir.rewrite_marker(&marker) {
                    return Ok(Some(format!(
                        "cannot record the promotion in the clone marker in {}: {e}",
                        datadir.path().display()
                    )));
                }
                self.set_marker(Some(marker));
            }
        }
        db::execute_all(conn, &dialect.make_writable()).await?;
        tracing::info!("restored primary is promoted: writable");
        Ok(None)
    }

    /// Samples the primary's position (replicas), then the local server's state, and publishes
    /// the snapshot.
    async fn poll(&mut self, mut server: LocalServer) -> Event<LocalServer> {
        let replica_role = self.cfg.common.identity.role == Role::Replica;
        let primary_error = if replica_role {
            self.sample_primary(server.dialect).await
        } else {
            None
        };
        let taken_at = Instant::now();
        let result = async {
            let conn = &mut server.conn;
            let facts = db::server_facts(conn, &server.version).await?;
            let status = if replica_role {
                Some(db::replica_status(conn, server.dialect).await?)
            } else {
                None
            };
            Ok::<_, DbError>((facts, status))
        }
        .await;
        match result {
            Ok((facts, status)) => {
                let io_thread_running = status
                    .as_ref()
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.io_thread != IoThread::Stopped);
                let semi_sync = self.semi_sync(&mut server, io_thread_running).await;
                self.reload_server_tls(&mut server).await;
                let applied = facts.gtid_applied.clone();
                let replica = status.map(|status| {
                    // Compared with the primary's next sample, which is taken after it.
                    self.errant.replica_read(facts.gtid_binlog.clone());
                    let connected = status
                        .as_ref()
                        .is_some_and(|s| s.io_thread == IoThread::Running);
                    ReplicaFacts {
                        link_lost_since: self
                            .link
                            .observe(primary_error.is_none() && connected, taken_at),
                        status,
                        applied_as_of: self.history.applied_as_of(&applied),
                        applied,
                        primary: self.history.latest(),
                        primary_error,
                        errant: self.errant.found().cloned(),
                        errant_checked: self.errant.checked(),
                    }
                });
                let reclone = replica.as_ref().and_then(|r| self.reclone_after(r));
                let flavor = self.cfg.common.flavor;
                let broken_relay_log = replica
                    .as_ref()
                    .and_then(|r| r.status.as_ref())
                    .and_then(|status| replication::relay_log_to_discard(flavor, status));
                self.publish(Snapshot {
                    taken_at,
                    phase: self.set_up_phase(),
                    last_error: None,
                    server: Some(facts),
                    replica,
                    semi_sync,
                });
                self.local_errors.recovered("local server");
                match (reclone, broken_relay_log) {
                    (Some(reason), _) => self.request_reclone(server, reason).await,
                    (None, Some(reason)) => {
                        self.discard_relay_log(&mut server, &reason).await;
                        Event::Polled(server)
                    }
                    (None, None) => Event::Polled(server),
                }
            }
            Err(e) => {
                let error = e.to_string();
                self.failed(
                    Operation::PollLocal,
                    "the local server does not answer",
                    error.clone(),
                );
                self.publish(Snapshot {
                    taken_at,
                    phase: self.set_up_phase(),
                    last_error: Some(error),
                    server: None,
                    replica: None,
                    semi_sync: None,
                });
                Event::PollFailed
            }
        }
    }

    /// With the TLS files: a certificate the server has not loaded (it reads its files only when
    /// it starts) is loaded now, and logged once; a failure is logged, never fatal.
    async fn reload_server_tls(&mut self, server: &mut LocalServer) {
        let Some(files) = &mut self.server_tls else {
            return;
        };
        let unloaded = match files.unloaded(Instant::now()) {
            Ok(Some(unloaded)) => unloaded,
            Ok(None) => return,
            Err(e) => {
                self.server_tls_errors
                    .warn("reading the server's TLS files", &e.to_string());
                return;
            }
        };
        let statement = server.dialect.reload_tls();
        match db::execute_all(&mut server.conn, &[statement.to_owned()]).await {
            Ok(()) => {
                let certificate = unloaded.certificate.as_ref();
                tracing::info!(
                    statement,
                    serial = certificate.map_or("?", |c| c.serial.as_str()),
                    not_after = certificate.map_or("?", |c| c.not_after.as_str()),
                    "the server loaded its TLS certificate from the files (it reads them only when it starts or is told)"
                );
                files.loaded(unloaded);
                self.server_tls_errors
                    .recovered("the server's TLS certificate");
            }
            Err(e) => self
                .server_tls_errors
                .warn("reloading the server's TLS certificate", &e.to_string()),
        }
    }

    /// With --semi-sync: reads the server's semi-sync state, turns it on where the decision says
    /// so, and logs a fallback to asynchronous once. Its failures are logged, never fatal:
    /// replication goes on without it.
    async fn semi_sync(
        &mut self,
        server: &mut LocalServer,
        io_thread_running: bool,
    ) -> Option<SemiSyncFacts> {
        if !self.cfg.common.semi_sync {
            return None;
        }
        let Some(names) = Names::of(&server.version) else {
            self.semi_sync_errors.warn(
                "semi-sync not turned on",
                &format!(
                    "{} has other semi-sync plugins: it needs MySQL 8.0.26 or later",
                    server.version
                ),
            );
            return None;
        };
        let (role, timeout) = (self.cfg.common.identity.role, self.cfg.semi_sync_timeout);
        let result = async {
            let facts = db::semi_sync_facts(&mut server.conn, names).await?;
            let action = semisync::decide(role, &facts, timeout, io_thread_running);
            if let Some(action) = action {
                self.turn_on_semi_sync(server, names, action).await?;
            }
            Ok::<_, DbError>(facts)
        }
        .await;
        match result {
            Ok(facts) => {
                self.semi_sync_errors.recovered("semi-sync");
                match semisync::fallen_back(role, &facts, timeout) {
                    Some(reason) => self
                        .semi_sync_fallback
                        .warn("semi-sync fell back to asynchronous replication", &reason),
                    None => self
                        .semi_sync_fallback
                        .recovered("semi-sync fell back to asynchronous replication"),
                }
                Some(facts)
            }
            Err(e) => {
                self.shared.retries.record(Operation::SemiSync);
                self.semi_sync_errors.warn("semi-sync", &e.to_string());
                None
            }
        }
    }

    async fn turn_on_semi_sync(
        &self,
        server: &mut LocalServer,
        names: Names,
        action: Action,
    ) -> Result<(), DbError> {
        let timeout = self.cfg.semi_sync_timeout;
        match action {
            Action::ConfigureSource { reason } => {
                let statements = names.configure_source(timeout);
                db::execute_all(&mut server.conn, &statements).await?;
                tracing::info!(
                    wait_point = semisync::WAIT_POINT, %timeout,
                    "semi-sync on for the primary ({reason}): a commit returns once a replica \
                     has it; {}", statements.join("; ")
                );
            }
            Action::EnableReplica { restart_io_thread } => {
                let mut statements = vec![names.enable_replica()];
                if restart_io_thread {
                    statements.extend(server.dialect.restart_io_thread());
                }
                db::execute_all(&mut server.conn, &statements).await?;
                let when = if restart_io_thread {
                    "the IO thread was restarted so that it acknowledges"
                } else {
                    "it takes effect when the IO thread, stopped now, starts"
                };
                tracing::info!(
                    "semi-sync on for this replica: {when}; {}",
                    statements.join("; ")
                );
            }
        }
        Ok(())
    }

    /// Every pod of the StatefulSet runs the same server, so the local dialect fits the primary.
    async fn sample_primary(&mut self, dialect: Dialect) -> Option<String> {
        let result = async { db::primary_state(self.primary_conn().await?, dialect).await }.await;
        match result {
            Ok(state) => {
                self.primary_errors
                    .recovered("sampling the primary's GTID position");
                self.history.record(state.position, Instant::now());
                let before = self.errant.found().cloned();
                self.errant.primary_sampled(&state.binlogged);
                self.log_errant_change(before.as_ref());
                None
            }
            Err(e) => {
                self.shared.retries.record(Operation::SamplePrimary);
                self.primary = None;
                self.primary_errors
                    .warn("sampling the primary's GTID position", &e.to_string());
                Some(e.to_string())
            }
        }
    }

    /// The open connection to the primary, opened if there is none.
    async fn primary_conn(&mut self) -> Result<&mut Conn, DbError> {
        let conn = match self.primary.take() {
            Some(conn) => conn,
            None => {
                let endpoint = Endpoint::Tcp {
                    host: self.cfg.common.identity.primary_fqdn.clone(),
                    port: self.cfg.common.mysql_port,
                };
                let primary = &self.cfg.common.identity.primary_fqdn;
                let tls = (self.cfg.common.replication_ca())
                    .map(|ca| db::VerifiedTls { ca, name: primary });
                db::connect(&endpoint, &self.cfg.repl, tls).await?
            }
        };
        Ok(self.primary.insert(conn))
    }

    /// A running replica whose IO thread was told the binlogs it needs are purged (a gap the
    /// up-front check could not see, e.g. purged while it was disconnected) is re-cloned once
    /// the errant check has compared it with the primary; otherwise readiness reports it.
    fn reclone_after(&self, replica: &ReplicaFacts) -> Option<String> {
        let status = replica.status.as_ref()?;
        let error = status
            .io_error
            .as_ref()
            .filter(|e| health::source_purged_needed_binlogs(e))?;
        if !replica.errant_checked {
            return None;
        }
        let none = Binlogged::parse(self.cfg.common.flavor, "").ok()?;
        let needed = format!("IO thread error {}: {}", error.errno, error.message);
        let errant = replica.errant.as_ref().unwrap_or(&none);
        match replication::gap_action(&needed, errant, self.marker.is_some()) {
            GapAction::Reclone { reason } => Some(reason),
            GapAction::Blocked { .. } => None,
        }
    }

    /// The fence's decision, once per change of the errant set.
    fn log_errant_change(&self, before: Option<&Binlogged>) {
        let primary = self.cfg.common.identity.primary_name();
        match (before, self.errant.found()) {
            (before, Some(now)) if before != Some(now) => tracing::warn!(
                errant = %now,
                "errant transactions found: this replica has transactions {primary} does not \
                 have; fenced: not ready and not a donor until a person re-clones it or brings \
                 them to {primary}"
            ),
            (Some(before), None) => tracing::info!(
                errant = %before,
                "errant transactions gone: {primary} has them now; the fence is lifted"
            ),
            _ => {}
        }
    }
}
