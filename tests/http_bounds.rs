//! The sidecar's HTTP server under clients that misbehave: it keeps answering `/readyz`.
//! No database: the state is built from values, the server listens on a free local port.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mysql_sts_agent::clone::datadir::DataDir;
use mysql_sts_agent::db::flavor::Flavor;
use mysql_sts_agent::health::{Phase, Rules, Snapshot, Timings};
use mysql_sts_agent::http::{self, AppState, HttpLimits};
use mysql_sts_agent::identity::{Identity, Naming, Role};
use mysql_sts_agent::metrics::{Metrics, Retries, Sources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: how long any awaited condition may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);
/// What `/readyz` answers in the state the tests serve.
const READYZ: &str = "503 waiting for the local server\n";

struct Server {
    address: SocketAddr,
    shutdown: CancellationToken,
    serving: JoinHandle<()>,
    snapshots: watch::Sender<Snapshot>,
}

/// A replica's sidecar waiting for its local server, served with `limits`; returns once it has
/// answered.
async fn start(limits: HttpLimits) -> Server {
    let naming = Naming {
        service: None,
        namespace: "test".into(),
        cluster_domain: "cluster.local".into(),
        first_ordinal: 0,
    };
    let identity = Identity::derive("mysql-1", &naming, 100).unwrap();
    let rules = Rules {
        role: Role::Replica,
        primary_name: "mysql-0".into(),
        max_lag: Duration::from_secs(5),
        stale_after: Duration::from_secs(3600),
        outage_grace: Duration::from_secs(30),
    };
    let (snapshots, snapshot) = watch::channel(Snapshot::phase(Phase::WaitingForServer, None));
    let marker = watch::channel(None).1;
    let metrics = Metrics::new(Sources {
        snapshots: snapshot.clone(),
        rules: rules.clone(),
        flavor: Flavor::MariaDb,
        retries: Retries::default(),
        clones: None,
        marker: marker.clone(),
    });
    let state = AppState {
        snapshots: snapshot,
        rules,
        live_after: Duration::from_secs(60),
        identity: Arc::new(identity),
        marker,
        // No re-clone runs here: nothing is ever at this path.
        datadir: DataDir::new("/nonexistent/mysql-sts-agent-http-bounds"),
        timings: Arc::new(Timings::starting_now()),
        clone_service: None,
        metrics: Arc::new(metrics),
        peer_port: 8443,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let app = http::router(state, http::Endpoints::All);
    let serving = tokio::spawn(http::serve(listener, app, None, limits, shutdown.clone()));
    assert_readyz_answers(address).await;
    Server {
        address,
        shutdown,
        serving,
        snapshots,
    }
}

impl Server {
    /// Cancels the token; `serve` must end.
    async fn stop(self) {
        self.shutdown.cancel();
        within("serve to end", self.serving).await.unwrap();
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// Everything the server sends until it closes the connection (a reset ends it too).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0; 8192];
    loop {
        match within("the server to close", stream.read(&mut buf)).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// `request` on a new connection, and what came back until the server closed it.
async fn exchange(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    // A server that closes before reading it all shows in what it sent.
    let _ = stream.write_all(request.as_bytes()).await;
    read_until_closed(&mut stream).await
}

fn request(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(response: &str) -> Option<Answer> {
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
        Some(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

async fn get(address: SocketAddr, method: &str, path: &str) -> Answer {
    let response = exchange(address, &request(method, path)).await;
    Answer::parse(&response).unwrap_or_else(|| panic!("{method} {path}: {response:?}"))
}

/// `/readyz` answers what the state implies.
async fn assert_readyz_answers(address: SocketAddr) {
    let answer = get(address, "GET", "/readyz").await;
    assert_eq!((answer.status, answer.body.as_str()), (503, READYZ));
}

/// Tries `attempt` until it gives a value, within `DEADLINE`.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, attempt: impl Fn() -> F) -> T {
    within(what, async {
        loop {
            if let Some(value) = attempt().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn unknown_paths_get_404_wrong_methods_405_with_allow_and_head_is_answered() {
    let server = start(HttpLimits::PRODUCTION).await;
    assert_eq!(get(server.address, "GET", "/nowhere").await.status, 404);
    for path in [
        "/livez", "/readyz", "/status", "/metrics", "/data", "/clone",
    ] {
        let answer = get(server.address, "POST", path).await;
        assert_eq!(answer.status, 405, "POST {path}");
        assert_eq!(answer.header("allow"), Some("GET,HEAD"), "POST {path}");
    }
    // A MySQL pod's: the handler runs, so the joiner's address (ConnectInfo) reached it.
    assert_eq!(get(server.address, "GET", "/clone").await.status, 404);
    let head = get(server.address, "HEAD", "/readyz").await;
    assert_eq!((head.status, head.body.as_str()), (503, ""));
    assert_eq!(
        head.header("content-length"),
        Some(READYZ.len().to_string().as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn slowloris_clients_do_not_stop_probes_and_are_closed_after_the_header_timeout() {
    const CLIENTS: usize = 64;
    let server = start(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::PRODUCTION
    })
    .await;
    let (started, mut all_started) = mpsc::channel(CLIENTS);
    let drippers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let started = started.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(server.address).await.unwrap();
                stream
                    .write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                    .await
                    .unwrap();
                started.send(()).await.unwrap();
                // A byte of the header's value every 100 ms until the server closes.
                let mut buf = [0; 1024];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return,
                            Ok(n) => panic!("a slow client was answered: {:?}",
                                String::from_utf8_lossy(&buf[..n])),
                        },
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if stream.write_all(b"a").await.is_err() {
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for _ in 0..CLIENTS {
        within("the slow clients to connect", all_started.recv()).await;
    }

    assert_readyz_answers(server.address).await;
    for dripper in drippers {
        within("the server to close a slow client", dripper)
            .await
            .unwrap();
    }
    assert_readyz_answers(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_probes_still_answer() {
    let server = start(HttpLimits::PRODUCTION).await;
    let head_with = |header: usize| {
        format!(
            "GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(header)
        )
    };

    let fits = exchange(server.address, &head_with(8 * 1024)).await;
    assert!(fits.ends_with(READYZ), "{fits:?}");

    let oversized = head_with(64 * 1024);
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let (mut reading, mut writing) = stream.split();
    // The server answers before it has read it all, and may close while this still writes.
    let (_, answer) = tokio::join!(writing.write_all(oversized.as_bytes()), async {
        let mut received = Vec::new();
        let _ = within("431", reading.read_to_end(&mut received)).await;
        String::from_utf8_lossy(&received).into_owned()
    });
    let answer = Answer::parse(&answer).unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(answer.status, 431);

    assert_readyz_answers(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_until_idle_ones_time_out() {
    const CAP: usize = 8;
    let server = start(HttpLimits {
        max_connections: CAP,
        header_read_timeout: Duration::from_secs(3),
        ..HttpLimits::PRODUCTION
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(server.address).await.unwrap());
    }
    // Accepted after the idle ones (the listen backlog is first in, first out): closed unanswered.
    for _ in 0..4 {
        let beyond = exchange(server.address, &request("GET", "/readyz")).await;
        assert_eq!(beyond, "", "a connection beyond the cap was answered");
    }

    for stream in &mut idle {
        assert_eq!(read_until_closed(stream).await, "");
    }
    let readyz = eventually("/readyz once the idle connections are gone", || async {
        let response = exchange(server.address, &request("GET", "/readyz")).await;
        (!response.is_empty()).then_some(response)
    })
    .await;
    assert!(readyz.ends_with(READYZ), "{readyz:?}");
    server.stop().await;
}

#[tokio::test]
async fn request_bodies_are_never_read() {
    let server = start(HttpLimits::PRODUCTION).await;
    // A gigabyte announced, a kilobyte sent: answered without waiting for the rest, then closed.
    let announced = format!(
        "GET /readyz HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{}",
        1u64 << 30,
        "a".repeat(1024)
    );
    let response = exchange(server.address, &announced).await;
    assert!(response.ends_with(READYZ), "{response:?}");

    let post = "POST /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                Content-Length: 4\r\n\r\nbody";
    let response = exchange(server.address, post).await;
    assert_eq!(Answer::parse(&response).unwrap().status, 405);

    assert_readyz_answers(server.address).await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_reads_nothing_holds_up_no_other() {
    let server = start(HttpLimits::PRODUCTION).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.address).await.unwrap();
    let requests = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".repeat(100);
    // Pipelined requests whose answers are never read, until the server stops reading them:
    // it waits to write answers this client does not take.
    within(
        "the server to wait on the client that reads nothing",
        async {
            while tokio::time::timeout(
                Duration::from_millis(500),
                stream.write_all(requests.as_bytes()),
            )
            .await
            .is_ok()
            {}
        },
    )
    .await;

    assert_readyz_answers(server.address).await;
    server.stop().await;
}

/// A `/data` request, once its handler waits for a snapshot taken after it arrived (it holds a
/// receiver of them meanwhile).
async fn ask_for_data(server: &Server) -> TcpStream {
    let waiting = server.snapshots.receiver_count();
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(request("GET", "/data").as_bytes())
        .await
        .unwrap();
    eventually("/data to wait for a snapshot", || async {
        (server.snapshots.receiver_count() > waiting).then_some(())
    })
    .await;
    stream
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_a_response_in_flight_finish() {
    let server = start(HttpLimits {
        drain_within: DEADLINE,
        ..HttpLimits::PRODUCTION
    })
    .await;
    let mut data = ask_for_data(&server).await;

    server.shutdown.cancel();
    let refused = eventually("new connections to be refused", || async {
        TcpStream::connect(server.address).await.err()
    })
    .await;
    assert!(
        matches!(
            refused.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
        ),
        "{refused}"
    );
    server
        .snapshots
        .send_replace(Snapshot::phase(Phase::WaitingForServer, None));
    let answer = read_until_closed(&mut data).await;
    assert_eq!(
        Answer::parse(&answer).map(|a| a.status),
        Some(503),
        "{answer:?}"
    );
    within("serve to end", server.serving).await.unwrap();
}

#[tokio::test]
async fn shutdown_cuts_a_response_that_outlasts_the_drain_bound() {
    let server = start(HttpLimits {
        drain_within: Duration::from_millis(300),
        ..HttpLimits::PRODUCTION
    })
    .await;
    let mut data = ask_for_data(&server).await;

    server.shutdown.cancel();
    within("serve to end", server.serving).await.unwrap();
    // `/data` would have answered 503 after 5 s without a fresh snapshot.
    assert_eq!(read_until_closed(&mut data).await, "");
}
