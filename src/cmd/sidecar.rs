//! `mysql-sts-agent sidecar`: one control loop that brings replication up and samples state,
//! the HTTP server that answers from its snapshots, and the donor for the next pod.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use mysql_async::Conn;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clone::datadir::{CloneMarker, DataDir};
use crate::clone::mariadb::donor::{Donor, DonorSettings};
use crate::config::{CloneChannel, Endpoint, SidecarConfig};
use crate::db::dialect::{self, Source};
use crate::db::flavor::{Dialect, ServerVersion};
use crate::db::{self, DbError};
use crate::health::{self, Phase, PrimaryHistory, ReplicaFacts, Rules, Snapshot};
use crate::http::{self, AppState, CloneService};
use crate::identity::Role;
use crate::replication::{self, Plan};

/// Long enough for any ?lag= a probe may ask about.
const HISTORY: Duration = Duration::from_secs(600);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const CONNECT_RETRY_SECS: u32 = 2;

pub async fn run(cfg: SidecarConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let identity = Arc::new(cfg.common.identity.clone());
    super::log_identity(&cfg.common);
    let marker = match identity.role {
        Role::Primary => None,
        Role::Replica => DataDir::new(&cfg.common.datadir)
            .read_marker()
            .with_context(|| {
                format!(
                    "reading the clone marker in {}",
                    cfg.common.datadir.display()
                )
            })?,
    };

    let tracker = TaskTracker::new();
    let (publish, snapshots) = watch::channel(Snapshot::phase(Phase::WaitingForServer, None));
    let rules = Rules {
        role: identity.role,
        primary_name: identity.primary_name(),
        max_lag: cfg.max_lag,
        stale_after: (cfg.poll_interval * 5).max(Duration::from_secs(15)),
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
    let state = AppState {
        snapshots: snapshots.clone(),
        rules: rules.clone(),
        live_after: (cfg.poll_interval * 10).max(Duration::from_secs(60)),
        identity: identity.clone(),
        marker: marker.clone().map(Arc::new),
        clone_service,
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    tracing::info!(address = %cfg.listen, flavor = %cfg.common.flavor, "serving /livez /readyz /status /clone");

    tracker.spawn(http::serve(listener, state, shutdown.clone()));
    tracker.spawn(health::log_readiness_changes(
        snapshots,
        rules,
        shutdown.clone(),
    ));
    tracker.spawn(ControlLoop::new(cfg, marker, publish).run(shutdown.clone()));
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
    fn warn(&mut self, what: &str, error: &str) {
        if self.0.as_deref() != Some(error) {
            tracing::warn!("{what}: {error}");
            self.0 = Some(error.to_owned());
        }
    }

    fn recovered(&mut self, what: &str) {
        if self.0.take().is_some() {
            tracing::info!("{what}: recovered");
        }
    }
}

struct ControlLoop {
    cfg: SidecarConfig,
    marker: Option<CloneMarker>,
    publish: watch::Sender<Snapshot>,
    local: Option<Conn>,
    /// What the local server said it is, at the last connect.
    server: Option<(ServerVersion, Dialect)>,
    primary: Option<Conn>,
    bootstrapped: bool,
    history: PrimaryHistory,
    local_errors: Repeats,
    primary_errors: Repeats,
}

enum Bootstrap {
    Done,
    Blocked(String),
}

impl ControlLoop {
    fn new(
        cfg: SidecarConfig,
        marker: Option<CloneMarker>,
        publish: watch::Sender<Snapshot>,
    ) -> Self {
        ControlLoop {
            cfg,
            marker,
            publish,
            local: None,
            server: None,
            primary: None,
            bootstrapped: false,
            history: PrimaryHistory::new(HISTORY),
            local_errors: Repeats::default(),
            primary_errors: Repeats::default(),
        }
    }

    fn publish_phase(&self, phase: Phase, error: String) {
        self.publish
            .send_replace(Snapshot::phase(phase, Some(error)));
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.cfg.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconnect_delays = connect_backoff();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            let step = tokio::select! {
                step = self.step() => step,
                () = shutdown.cancelled() => break,
            };
            if let Err(delay) = step {
                let delay = delay
                    .unwrap_or_else(|| reconnect_delays.next().unwrap_or(Duration::from_secs(5)));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
            } else {
                reconnect_delays = connect_backoff();
            }
        }
        for conn in [self.local.take(), self.primary.take()]
            .into_iter()
            .flatten()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
        }
    }

    /// One iteration. `Err` asks for a pause before the next: a given one, or the backoff's.
    async fn step(&mut self) -> Result<(), Option<Duration>> {
        if self.local.is_none() {
            match self.connect_local().await {
                Ok(Ok(())) => self.local_errors.recovered("local server"),
                Ok(Err(reason)) => {
                    self.local_errors
                        .warn("refusing to manage the server", &reason);
                    self.publish_phase(Phase::Blocked, reason);
                    return Err(Some(self.cfg.poll_interval));
                }
                Err(e) => {
                    self.local_errors
                        .warn("waiting for the local server", &e.to_string());
                    self.publish_phase(Phase::WaitingForServer, e.to_string());
                    return Err(None);
                }
            }
        }
        if !self.bootstrapped {
            match self.bootstrap().await {
                Ok(Bootstrap::Done) => self.bootstrapped = true,
                Ok(Bootstrap::Blocked(reason)) => {
                    self.local_errors.warn("replication not set up", &reason);
                    self.publish_phase(Phase::Blocked, reason);
                    return Err(Some(self.cfg.poll_interval));
                }
                Err(e) => {
                    self.local_errors.warn("setting up", &e.to_string());
                    self.publish_phase(Phase::Bootstrapping, e.to_string());
                    self.local = None;
                    return Err(None);
                }
            }
        }
        let snapshot = self.poll().await;
        let failed = snapshot.last_error.clone();
        self.publish.send_replace(snapshot);
        match failed {
            Some(error) => {
                self.local_errors
                    .warn("the local server does not answer", &error);
                self.local = None;
                Err(None)
            }
            None => {
                self.local_errors.recovered("local server");
                Ok(())
            }
        }
    }

    /// Connects and learns what the server is; `Ok(Err)` is a server the agent must not manage.
    async fn connect_local(&mut self) -> Result<Result<(), String>, DbError> {
        let mut conn = db::connect(&self.cfg.local_server, &self.cfg.admin).await?;
        let version = db::server_version(&mut conn).await?;
        let configured = self.cfg.common.flavor;
        if version.flavor != configured {
            return Ok(Err(format!(
                "the local server is {version} but --flavor is {configured}: fix the pod template"
            )));
        }
        let dialect = match version.dialect() {
            Ok(dialect) => dialect,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if self.server.as_ref() != Some(&(version.clone(), dialect)) {
            tracing::info!(
                server = %self.cfg.local_server, version = %version,
                "connected to the local server: speaking {}", dialect.describe()
            );
        }
        self.server = Some((version, dialect));
        self.local = Some(conn);
        Ok(Ok(()))
    }

    fn dialect(&self) -> Dialect {
        self.server
            .as_ref()
            .map(|(_, dialect)| *dialect)
            .expect("connected before use")
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
        }
    }

    async fn bootstrap(&mut self) -> Result<Bootstrap, DbError> {
        // A blocked pod re-checks every poll; it stays reported as blocked meanwhile.
        if self.publish.borrow().phase != Phase::Blocked {
            self.publish
                .send_replace(Snapshot::phase(Phase::Bootstrapping, None));
        }
        let source = self.source();
        let dialect = self.dialect();
        let conn = self.local.as_mut().expect("connected before bootstrap");
        match self.cfg.common.identity.role {
            Role::Primary => {
                replication::ensure_user(
                    conn,
                    &source.user,
                    &source.password,
                    dialect::REPLICATION_PRIVILEGE,
                    "replication",
                )
                .await?;
                if let CloneChannel::ClonePlugin { user } = &self.cfg.common.clone {
                    let password = user.password.as_ref().expect("validated: required");
                    replication::ensure_user(
                        conn,
                        &user.user,
                        password,
                        dialect::CLONE_PRIVILEGE,
                        "clone",
                    )
                    .await?;
                }
            }
            Role::Replica => {
                let status = db::replica_status(conn, dialect).await?;
                let plan = replication::plan(
                    dialect.flavor(),
                    status.as_ref(),
                    self.marker.as_ref(),
                    &source.host,
                );
                if let Plan::Blocked(reason) = plan {
                    return Ok(Bootstrap::Blocked(reason));
                }
                replication::apply(conn, &plan, &source, dialect).await?;
            }
        }
        Ok(Bootstrap::Done)
    }

    /// Samples the primary's position (replicas), then the local server's state.
    async fn poll(&mut self) -> Snapshot {
        let replica_role = self.cfg.common.identity.role == Role::Replica;
        let primary_error = if replica_role {
            self.sample_primary().await
        } else {
            None
        };
        let taken_at = Instant::now();
        let (version, dialect) = self.server.clone().expect("connected before polling");
        let conn = self.local.as_mut().expect("connected before polling");
        let result = async {
            let facts = db::server_facts(conn, &version).await?;
            let status = if replica_role {
                Some(db::replica_status(conn, dialect).await?)
            } else {
                None
            };
            Ok::<_, DbError>((facts, status))
        }
        .await;
        match result {
            Ok((facts, status)) => {
                let applied = facts.gtid_applied.clone();
                Snapshot {
                    taken_at,
                    phase: Phase::Running,
                    last_error: None,
                    server: Some(facts),
                    replica: status.map(|status| ReplicaFacts {
                        status,
                        applied_as_of: self.history.applied_as_of(&applied),
                        applied,
                        primary: self.history.latest(),
                        primary_error,
                    }),
                }
            }
            Err(e) => Snapshot {
                taken_at,
                phase: Phase::Running,
                last_error: Some(e.to_string()),
                server: None,
                replica: None,
            },
        }
    }

    async fn sample_primary(&mut self) -> Option<String> {
        // Every pod of the StatefulSet runs the same server, so the local dialect fits the primary.
        let dialect = self.dialect();
        let result = async {
            if self.primary.is_none() {
                let endpoint = Endpoint::Tcp {
                    host: self.cfg.common.identity.primary_fqdn.clone(),
                    port: self.cfg.common.mysql_port,
                };
                self.primary = Some(db::connect(&endpoint, &self.cfg.repl).await?);
            }
            let conn = self.primary.as_mut().expect("connected above");
            db::primary_position(conn, dialect).await
        }
        .await;
        match result {
            Ok(position) => {
                self.primary_errors
                    .recovered("sampling the primary's GTID position");
                self.history.record(position, Instant::now());
                None
            }
            Err(e) => {
                self.primary = None;
                self.primary_errors
                    .warn("sampling the primary's GTID position", &e.to_string());
                Some(e.to_string())
            }
        }
    }
}

fn connect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}
