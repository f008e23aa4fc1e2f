//! The sidecar's HTTP endpoints. Probes answer from the latest snapshot; nothing here runs SQL.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::clone::datadir::{CloneMarker, DataDir};
use crate::clone::mariadb::ESTIMATED_BYTES_HEADER;
use crate::clone::mariadb::compression::{self, Compression};
use crate::clone::mariadb::donor::{CloneCounters, Donor, Refusal, ServingView};
use crate::clone::progress::ProgressRecord;
use crate::db::facts::ServerFacts;
use crate::db::gtid::{Binlogged, Gtids};
use crate::db::status::ReplicaStatus;
use crate::duration::{parse_duration, seconds};
use crate::guard::DataReport;
use crate::health::{self, Joiner, Phase, Rules, Snapshot, Timings, Verdict};
use crate::identity::Identity;
use crate::metrics::{self, Metrics};
use crate::secret::Secret;
use crate::tls::ServerTls;

#[derive(Clone)]
pub struct AppState {
    pub snapshots: watch::Receiver<Snapshot>,
    pub rules: Rules,
    /// /livez fails when the control loop has not published for this long.
    pub live_after: Duration,
    pub identity: Arc<Identity>,
    /// The clone the data came from, as the control loop last read it (a re-clone replaces it).
    pub marker: watch::Receiver<Option<Arc<CloneMarker>>>,
    /// Where a re-clone's progress file is, while the database container carries it out.
    pub datadir: DataDir,
    pub timings: Arc<Timings>,
    /// MariaDB pods serve clones; MySQL joiners clone from the server itself.
    pub clone_service: Option<CloneService>,
    pub metrics: Arc<Metrics>,
    /// Where the peer endpoints are served (named in the refusal on the plain port).
    pub peer_port: u16,
}

#[derive(Clone)]
pub struct CloneService {
    pub donor: Arc<Donor>,
    /// None: --clone-insecure-no-token.
    pub token: Option<Secret>,
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// Every endpoint, on one plain HTTP port.
    All,
    /// The probes, `/status` and `/metrics`: the plain port when peers talk over TLS elsewhere.
    /// The peer endpoints answer `403` naming the port to use.
    Local,
    /// `/clone`, `/donor` and `/data`: what other pods' agents ask, on the TLS port.
    Peers,
}

pub fn router(state: AppState, endpoints: Endpoints) -> Router {
    let local = || {
        Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/status", get(status))
            .route("/metrics", get(metrics))
    };
    let peers = || {
        Router::new()
            .route("/data", get(data))
            .route("/clone", get(clone))
            .route("/donor", get(donor))
    };
    let router = match endpoints {
        Endpoints::All => local().merge(peers()),
        Endpoints::Local => local()
            .route("/data", get(peers_elsewhere))
            .route("/clone", get(peers_elsewhere))
            .route("/donor", get(peers_elsewhere)),
        Endpoints::Peers => peers(),
    };
    router.with_state(state)
}

async fn peers_elsewhere(State(state): State<AppState>) -> Response {
    text(
        StatusCode::FORBIDDEN,
        &format!(
            "the peer endpoints are served over TLS on port {}",
            state.peer_port
        ),
    )
}

/// What one client can take of the HTTP server, so that probes are answered whatever other
/// clients do. No total request time: a `/clone` response streams for as long as the backup runs.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A connection must send a whole request head within this long of the server starting to
    /// read one (at accept, and after each response: it is also the keep-alive idle time), or it
    /// is closed unanswered. The clock does not restart on each byte, so dripping gains nothing.
    pub header_read_timeout: Duration,
    /// A connection's read buffer, which bounds a request head (request line and headers): a
    /// larger one gets `431` and the connection is closed. At least 8 KiB, hyper's minimum.
    pub max_head_bytes: usize,
    /// Connections open at once; beyond it a new one is accepted and closed unanswered.
    pub max_connections: usize,
    /// How long responses in flight at shutdown may take before their connections are cut.
    pub drain_within: Duration,
}

impl HttpLimits {
    // 256 connections bound memory and descriptors (a task and a buffer of `max_head_bytes`
    // each) far above what the port sees: a few probes, one scrape, one clone, a few `/donor`
    // and `/data` asks. No room is reserved for probes, which cannot be told from other clients
    // before their head is read; a connection that sends no request holds its place for at most
    // `header_read_timeout`, and only the StatefulSet's pods and Prometheus reach the port
    // (NetworkPolicy; the kubelet is exempt), so a flood ends within 5 s of its source stopping.
    pub const PRODUCTION: HttpLimits = HttpLimits {
        header_read_timeout: Duration::from_secs(5),
        max_head_bytes: 16 * 1024,
        max_connections: 256,
        drain_within: Duration::from_secs(3),
    };
}

/// How often the accept loop logs a condition that recurs per connection, at most.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// An accept that failed fails again at once while its cause lasts (e.g. no file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Counts a recurring event and says when to log it: the first time, then at most once per
/// `REPORT_EVERY`, with how many happened since the last report.
#[derive(Debug, Default)]
struct Throttled {
    last_report: Option<Instant>,
    unreported: u64,
}

impl Throttled {
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        if self
            .last_report
            .is_some_and(|at| now.saturating_duration_since(at) < REPORT_EVERY)
        {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

/// Serves HTTP/1.1 (over TLS with `tls`: each connection gets its current config) until
/// `shutdown`, then stops accepting, lets responses in flight finish within
/// `limits.drain_within` and cuts the connections still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let app = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes);
    let mut connections = JoinSet::new();
    let mut refused = Throttled::default();
    let mut accept_errors = Throttled::default();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(count) = accept_errors.count(Instant::now()) {
                    tracing::warn!(
                        "accepting an HTTP connection failed ({count} times since the last \
                         report), pausing {ACCEPT_ERROR_PAUSE:?} after each: {e}"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        while connections.try_join_next().is_some() {}
        // Closed at once rather than left in the listen backlog: the client learns now, and the
        // backlog keeps draining.
        if connections.len() >= limits.max_connections {
            drop(stream);
            if let Some(count) = refused.count(Instant::now()) {
                tracing::warn!(
                    "HTTP connection cap reached ({} open): closed {count} new connections \
                     unanswered since the last report (one that sends no request is closed \
                     after {:?})",
                    limits.max_connections,
                    limits.header_read_timeout
                );
            }
            continue;
        }
        let Some(tls) = &tls else {
            connections.spawn(serve_connection(
                &http,
                stream,
                peer,
                app.clone(),
                shutdown.clone(),
            ));
            continue;
        };
        // The handshake is bounded like a request head, in the connection's own task.
        let accepting = TlsAcceptor::from(tls.config()).accept(stream);
        let (http, app, shutdown) = (http.clone(), app.clone(), shutdown.clone());
        let within = limits.header_read_timeout;
        connections.spawn(async move {
            match tokio::time::timeout(within, accepting).await {
                Ok(Ok(stream)) => serve_connection(&http, stream, peer, app, shutdown).await,
                // Per connection, so at debug: a plain HTTP request, a client without a
                // certificate or with an untrusted one, a scanner.
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake refused: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake not done within {within:?}"),
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain_within, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} HTTP connections still busy {:?} after shutdown began: cutting them",
            connections.len(),
            limits.drain_within
        );
        connections.shutdown().await;
    }
}

/// One connection, in its own task so that a slow client holds up no other. At shutdown it
/// finishes the response in flight and closes.
fn serve_connection<S>(
    http: &http1::Builder,
    stream: S,
    peer: SocketAddr,
    app: TowerToHyperService<Router>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // `/clone` logs its joiner's address.
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.call(request)
    });
    let connection = http.serve_connection(TokioIo::new(stream), service);
    async move {
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        // Per connection, so at debug: timeouts, oversized heads and resets are routine.
        if let Err(e) = ended {
            tracing::debug!(%peer, "HTTP connection closed: {e}");
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, format!("{} {body}\n", status.as_u16())).into_response()
}

async fn livez(State(state): State<AppState>) -> Response {
    let age = state.snapshots.borrow().taken_at.elapsed();
    if age <= state.live_after {
        text(StatusCode::OK, "agent loop is alive")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("agent loop stalled: last iteration {} ago", seconds(age)),
        )
    }
}

fn verdict(state: &AppState, max_lag: Option<Duration>) -> Verdict {
    let rules = Rules {
        max_lag: max_lag.unwrap_or(state.rules.max_lag),
        ..state.rules.clone()
    };
    health::readiness(&state.snapshots.borrow(), &rules, Instant::now())
}

async fn readyz(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let max_lag = match query.get("lag").map(|v| parse_duration(v)) {
        None => None,
        Some(Ok(lag)) => Some(lag),
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, &format!("lag: {e}")),
    };
    let verdict = verdict(&state, max_lag);
    let code = if verdict.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, &verdict.reason)
}

#[derive(Serialize)]
struct StatusView<'a> {
    hostname: &'a str,
    ordinal: u32,
    role: crate::identity::Role,
    server_id: u32,
    phase: Phase,
    ready: bool,
    readiness: String,
    /// The pod this one was cloned from, and the position replication started at.
    donor: Option<&'a str>,
    clone_gtid_position: Option<&'a str>,
    /// The clone marker, with its size and how long the clone took.
    last_clone: Option<&'a CloneMarker>,
    timings: TimingsView,
    source: Option<String>,
    server: Option<ServerFacts>,
    replication: Option<ReplicationView>,
    /// With --semi-sync: the server's semi-sync switches and counters.
    semi_sync: Option<crate::semisync::SemiSyncFacts>,
    last_error: Option<String>,
    clones_served: Option<&'a CloneCounters>,
    /// MariaDB: the clone this pod streams to a joiner now.
    serving_clone: Option<ServingView>,
    /// A re-clone in progress in the database container: its progress file.
    clone_progress: Option<ProgressRecord>,
}

#[derive(Serialize)]
struct TimingsView {
    agent_started_unix: u64,
    /// When replication (a replica) or the users (the primary) were last set up.
    configured_unix: Option<u64>,
}

#[derive(Serialize)]
struct ReplicationView {
    status: Option<ReplicaStatus>,
    gtid_applied: Gtids,
    primary_gtid: Option<Gtids>,
    primary_error: Option<String>,
    /// Seconds since the primary last stood at a position this replica has wholly applied.
    lag_seconds: Option<f64>,
    /// Transactions the primary had at its last sample that this replica has not applied.
    transactions_behind: Option<u64>,
    /// Transactions the primary does not have: the replica is fenced while there are any.
    errant_gtids: Option<Binlogged>,
    /// Seconds since the primary could not be sampled or the IO thread lost it.
    primary_unreachable_seconds: Option<f64>,
}

/// Seconds since `t`, to a tenth.
fn seconds_since(t: Instant, now: Instant) -> f64 {
    (now.saturating_duration_since(t).as_secs_f64() * 10.0).round() / 10.0
}

async fn status(State(state): State<AppState>) -> Response {
    let verdict = verdict(&state, None);
    let snap = state.snapshots.borrow().clone();
    let id = &state.identity;
    let now = Instant::now();
    let marker = state.marker.borrow().clone();
    let replication = snap.replica.map(|r| ReplicationView {
        transactions_behind: r.transactions_behind(),
        status: r.status,
        gtid_applied: r.applied,
        primary_gtid: r.primary.map(|p| p.position),
        primary_error: r.primary_error,
        lag_seconds: r.applied_as_of.map(|t| seconds_since(t, now)),
        errant_gtids: r.errant,
        primary_unreachable_seconds: r.link_lost_since.map(|t| seconds_since(t, now)),
    });
    let view = StatusView {
        hostname: &id.hostname,
        ordinal: id.ordinal,
        role: id.role,
        server_id: id.server_id,
        phase: snap.phase,
        ready: verdict.ready,
        readiness: verdict.reason,
        donor: marker.as_deref().map(|m| m.donor.as_str()),
        clone_gtid_position: marker.as_deref().map(|m| m.gtid_position.as_str()),
        last_clone: marker.as_deref(),
        timings: TimingsView {
            agent_started_unix: state.timings.agent_started_unix,
            configured_unix: state.timings.configured_unix(),
        },
        source: (id.role == crate::identity::Role::Replica).then(|| id.primary_fqdn.clone()),
        server: snap.server,
        replication,
        semi_sync: snap.semi_sync,
        last_error: snap.last_error,
        clones_served: state
            .clone_service
            .as_ref()
            .map(|c| c.donor.counters().as_ref()),
        serving_clone: (state.clone_service.as_ref())
            .and_then(|c| c.donor.serving())
            .map(|serving| serving.view()),
        clone_progress: state.datadir.read_progress().unwrap_or_else(|e| {
            tracing::debug!("/status leaves the re-clone's progress out: {e}");
            None
        }),
    };
    Json(view).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the metrics: {e}"),
        ),
    }
}

/// How long `/data` waits for a snapshot taken after the request arrived.
const FRESH_DATA_WITHIN: Duration = Duration::from_secs(5);

/// Whether this pod holds data, for a first ordinal that lost its volume (`guard`). Answered
/// from a snapshot taken after the request arrived, never an older one: a transaction applied
/// just before must count, or a less advanced peer could be chosen.
async fn data(State(state): State<AppState>) -> Response {
    let asked = Instant::now();
    let mut snapshots = state.snapshots.clone();
    let fresh = tokio::time::timeout(
        FRESH_DATA_WITHIN,
        snapshots.wait_for(|snap| snap.taken_at >= asked),
    )
    .await;
    let (facts, received) = match fresh {
        Ok(Ok(snap)) => (snap.server.clone(), snap.received().cloned()),
        _ => (None, None),
    };
    let Some(facts) = facts else {
        let reason = verdict(&state, None).reason;
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the local server's GTID state is not known: {reason}"),
        );
    };
    Json(DataReport {
        hostname: state.identity.hostname.clone(),
        ordinal: state.identity.ordinal,
        holds_data: !facts.gtid_applied.is_empty()
            || received.as_ref().is_some_and(|r| !r.is_empty()),
        gtids: facts.gtid_applied.to_string(),
        received: received.map(|r| r.to_string()).unwrap_or_default(),
    })
    .into_response()
}

fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
}

async fn clone(
    State(state): State<AppState>,
    ConnectInfo(joiner): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(service) = &state.clone_service else {
        return text(
            StatusCode::NOT_FOUND,
            "this pod runs MySQL: the next pod clones from its server with the CLONE plugin",
        );
    };
    let refused = |refusal| service.donor.counters().refusals.add(refusal);
    if let Some(token) = &service.token
        && !authorized(&headers, token)
    {
        tracing::warn!(joiner = %joiner, "clone request refused: missing or wrong token");
        refused(Refusal::Unauthorized);
        let mut response = text(StatusCode::UNAUTHORIZED, "missing or wrong clone token");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let health = donor_verdict(&state, &query);
    if !health.ready {
        tracing::debug!(joiner = %joiner, "clone request refused: not healthy enough to donate: {}", health.reason);
        refused(Refusal::NotADonor);
        return not_a_donor(&health);
    }
    let accept_encoding = headers.get(header::ACCEPT_ENCODING);
    let compression = compression::granted(accept_encoding.and_then(|v| v.to_str().ok()));
    match service.donor.start(joiner, compression).await {
        Err(busy) => {
            refused(Refusal::Busy);
            retry_later(StatusCode::TOO_MANY_REQUESTS, 10, &busy.to_string())
        }
        Ok(started) => {
            let stream = futures_util::stream::unfold(started.frames, |mut frames| async move {
                frames
                    .recv()
                    .await
                    .map(|bytes| (Ok::<_, Infallible>(bytes), frames))
            });
            let body = Body::from_stream(stream);
            let mut response =
                ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
            if compression == Compression::Zstd {
                response.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static(compression::ZSTD),
                );
            }
            if let Some(bytes) = started.estimated_total {
                response
                    .headers_mut()
                    .insert(ESTIMATED_BYTES_HEADER, header::HeaderValue::from(bytes));
            }
            response
        }
    }
}

/// `?for=restore`: the first ordinal restoring its lost volume asks.
fn donor_verdict(state: &AppState, query: &HashMap<String, String>) -> Verdict {
    let joiner = match query.get("for").map(String::as_str) {
        Some("restore") => Joiner::RestoringPrimary,
        _ => Joiner::Replica,
    };
    health::donor_readiness(
        &state.snapshots.borrow(),
        &state.rules,
        Instant::now(),
        joiner,
    )
}

fn not_a_donor(health: &Verdict) -> Response {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        5,
        &format!("not healthy enough to donate: {}", health.reason),
    )
}

/// Whether this pod may be cloned from now, for a joiner to ask before it starts (MySQL's CLONE
/// plugin connects to the server, which cannot tell).
async fn donor(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let health = donor_verdict(&state, &query);
    if health.ready {
        text(StatusCode::OK, &format!("healthy donor: {}", health.reason))
    } else {
        not_a_donor(&health)
    }
}

fn retry_later(status: StatusCode, after_secs: u32, reason: &str) -> Response {
    let mut response = text(status, reason);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(after_secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check_needs_the_exact_bearer_token() {
        let token = Secret::new("s3cret".into());
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            authorized(&headers, &token)
        };
        assert!(with("Bearer s3cret"));
        assert!(!with("Bearer s3cre"));
        assert!(!with("Bearer s3cret2"));
        assert!(!with("bearer s3cret"));
        assert!(!with("s3cret"));
        assert!(!authorized(&HeaderMap::new(), &token));
    }

    #[test]
    fn a_recurring_event_is_reported_at_once_then_at_most_once_per_interval() {
        let start = Instant::now();
        let mut events = Throttled::default();
        assert_eq!(events.count(start), Some(1));
        assert_eq!(events.count(start + Duration::from_secs(1)), None);
        assert_eq!(events.count(start + REPORT_EVERY / 2), None);
        assert_eq!(events.count(start + REPORT_EVERY), Some(3));
        assert_eq!(events.count(start + REPORT_EVERY * 3), Some(1));
    }
}
