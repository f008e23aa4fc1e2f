//! The kubelet's prober for one running container: its startupProbe, readinessProbe and
//! livenessProbe, each on its own thread and period from the container's start, as the kubelet
//! runs them. Probes connect from the node namespace (where the kubelet is) to the pod's IP: the
//! threads enter that namespace themselves, so an httpGet or tcpSocket probe starts no process;
//! every probe ends within its timeout.
//!
//! Kubelet rules kept: a probe runs at start + k * periodSeconds, skipped before
//! initialDelaySeconds; readiness and liveness wait for the startupProbe to succeed, and readiness
//! runs at once then (the kubelet's manual trigger while a container has no readiness result);
//! Ready after successThreshold successes in a row, not Ready after failureThreshold failures; a
//! startup or liveness probe past its failureThreshold marks the container failed (the kubelet
//! would kill it; the harness reports it and restarts nothing). httpGet succeeds on 200-399, exec
//! on exit 0 (an exec probe is the one that starts a process: the command in the container).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use tokio::sync::watch;

use super::mapping::{POD_PATH, ProbeAction, ProbeSpec, Probes};

/// Probe results kept for error messages.
const HISTORY: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Readiness,
    Liveness,
}

/// What the kubelet knows of the container.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The startupProbe has succeeded (at once without one).
    pub started: bool,
    pub ready: bool,
    /// Why the kubelet would kill the container: a startup or liveness probe past its
    /// failureThreshold.
    pub failed: Option<String>,
}

struct Shared {
    container: String,
    started_at: Instant,
    status: watch::Sender<Status>,
    history: Mutex<VecDeque<String>>,
}

impl Shared {
    fn record(&self, kind: Kind, outcome: &str) {
        let line = format!(
            "{:>7.1}s {kind:?}: {outcome}",
            self.started_at.elapsed().as_secs_f64()
        );
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(line);
    }
}

enum Signal {
    /// Probe now, outside the period (readiness once the startupProbe succeeds).
    Now,
    Stop,
}

/// The probes of one container; dropping it stops and joins their threads.
pub struct Prober {
    shared: Arc<Shared>,
    signals: Vec<Sender<Signal>>,
    threads: Vec<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `container` (started at `started_at`) at `ip` from network namespace
    /// `node_ns`.
    pub fn start(
        container: &str,
        probes: &Probes,
        node_ns: &str,
        ip: IpAddr,
        started_at: Instant,
    ) -> Result<Prober> {
        // Without a startupProbe a container counts as started, and without a readinessProbe
        // as ready once started.
        let started = probes.startup.is_none();
        let (status, _) = watch::channel(Status {
            started,
            ready: started && probes.readiness.is_none(),
            failed: None,
        });
        let shared = Arc::new(Shared {
            container: container.to_owned(),
            started_at,
            status,
            history: Mutex::new(VecDeque::new()),
        });
        let mut prober = Prober {
            shared,
            signals: Vec::new(),
            threads: Vec::new(),
        };
        let readiness = prober.spawn(Kind::Readiness, &probes.readiness, node_ns, ip, None)?;
        prober.spawn(Kind::Liveness, &probes.liveness, node_ns, ip, None)?;
        prober.spawn(Kind::Startup, &probes.startup, node_ns, ip, readiness)?;
        Ok(prober)
    }

    /// One thread for `spec`, if declared; returns what triggers it.
    fn spawn(
        &mut self,
        kind: Kind,
        spec: &Option<ProbeSpec>,
        node_ns: &str,
        ip: IpAddr,
        on_start: Option<Sender<Signal>>,
    ) -> Result<Option<Sender<Signal>>> {
        let Some(spec) = spec.clone() else {
            return Ok(None);
        };
        let netns = File::open(format!("/run/netns/{node_ns}"))
            .with_context(|| format!("opening network namespace {node_ns}"))?;
        let (signal, signals) = mpsc::channel();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("probe-{}-{kind:?}", shared.container))
            .spawn(move || {
                if let Err(error) = setns(&netns, CloneFlags::CLONE_NEWNET) {
                    shared.record(kind, &format!("cannot enter the node namespace: {error}"));
                    return;
                }
                drop(netns);
                Worker {
                    kind,
                    spec,
                    ip,
                    shared,
                    on_start,
                    successes: 0,
                    failures: 0,
                }
                .run(&signals);
            })?;
        self.threads.push(thread);
        self.signals.push(signal.clone());
        Ok(Some(signal))
    }

    pub fn status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    pub fn container(&self) -> &str {
        &self.shared.container
    }

    /// The latest probe results, one a line, time from the container's start.
    pub fn history(&self) -> String {
        let history = self
            .shared
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        history.iter().fold(String::new(), |mut text, line| {
            let _ = writeln!(text, "  {line}");
            text
        })
    }

    /// Stops probing (the container stopped); returns why the kubelet would have killed it.
    pub fn stop(mut self) -> Option<String> {
        self.halt();
        self.shared.status.borrow().failed.clone()
    }

    fn halt(&mut self) {
        for signal in self.signals.drain(..) {
            let _ = signal.send(Signal::Stop);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Worker {
    kind: Kind,
    spec: ProbeSpec,
    ip: IpAddr,
    shared: Arc<Shared>,
    /// The startup worker: what runs readiness at once when it succeeds.
    on_start: Option<Sender<Signal>>,
    successes: u32,
    failures: u32,
}

impl Worker {
    fn run(mut self, signals: &mpsc::Receiver<Signal>) {
        let start = self.shared.started_at;
        let mut tick = 0u32;
        loop {
            let due = start + self.spec.period * tick;
            let wait = due.saturating_duration_since(Instant::now());
            match signals.recv_timeout(wait) {
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Signal::Now) => self.probe_once(),
                Err(RecvTimeoutError::Timeout) => {
                    self.probe_once();
                    // A probe longer than its period skips ticks, as the kubelet's ticker does.
                    let elapsed = start.elapsed().as_nanos() / self.spec.period.as_nanos();
                    tick = u32::try_from(elapsed).unwrap_or(u32::MAX).saturating_add(1);
                }
            }
            if self.kind == Kind::Startup && self.shared.status.borrow().started {
                // The kubelet stops a startupProbe once it has succeeded.
                return;
            }
        }
    }

    fn probe_once(&mut self) {
        let status = self.shared.status.borrow().clone();
        let elapsed = self.shared.started_at.elapsed();
        let gated = match self.kind {
            Kind::Startup => status.started,
            Kind::Readiness | Kind::Liveness => !status.started,
        };
        if gated || elapsed < self.spec.initial_delay || status.failed.is_some() {
            return;
        }
        let outcome = probe(&self.spec.action, self.ip, self.spec.timeout);
        self.shared.record(
            self.kind,
            outcome.as_ref().map_or_else(String::as_str, String::as_str),
        );
        let spec = &self.spec;
        if outcome.is_ok() {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let container = &self.shared.container;
        match self.kind {
            Kind::Startup if self.successes >= 1 => {
                let readiness = self.on_start.as_ref();
                self.shared.status.send_modify(|s| {
                    s.started = true;
                    s.ready |= readiness.is_none();
                });
                if let Some(readiness) = readiness {
                    let _ = readiness.send(Signal::Now);
                }
            }
            Kind::Readiness if self.successes >= spec.success_threshold => {
                self.shared
                    .status
                    .send_if_modified(|s| !std::mem::replace(&mut s.ready, true));
            }
            Kind::Readiness if self.failures >= spec.failure_threshold => {
                self.shared
                    .status
                    .send_if_modified(|s| std::mem::replace(&mut s.ready, false));
            }
            Kind::Startup | Kind::Liveness if self.failures >= spec.failure_threshold => {
                let why = format!(
                    "container {container}: its {:?} probe failed {} times in a row ({:.0}s after \
                     its start); the kubelet would kill it",
                    self.kind,
                    self.failures,
                    elapsed.as_secs_f64()
                );
                eprintln!("[msa-harness] {why}");
                self.shared.status.send_modify(|s| s.failed = Some(why));
            }
            _ => {}
        }
    }
}

/// One probe from the calling thread's network namespace; Ok or Err carry what was seen.
fn probe(action: &ProbeAction, ip: IpAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let port = match action {
        ProbeAction::Http(http) => http.port,
        ProbeAction::Tcp(port) => *port,
        ProbeAction::Exec(argv) => return exec(argv, timeout),
    };
    let mut stream = TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout)
        .map_err(|error| format!("connect :{port}: {error}"))?;
    let ProbeAction::Http(http) = action else {
        return Ok(format!("connected to :{port}"));
    };
    let remaining =
        || Some(deadline.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        http.path
    );
    let mut reply = Vec::new();
    let mut chunk = [0u8; 512];
    let exchange = stream
        .set_write_timeout(remaining())
        .and_then(|()| stream.write_all(request.as_bytes()))
        .and_then(|()| {
            loop {
                stream.set_read_timeout(Some(remaining().ok_or(std::io::ErrorKind::TimedOut)?))?;
                let read = stream.read(&mut chunk)?;
                reply.extend_from_slice(&chunk[..read]);
                if read == 0 || reply.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(());
                }
            }
        });
    let text = String::from_utf8_lossy(&reply);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    let code: Option<u16> = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    match (exchange, code) {
        (_, Some(code)) if (200..400).contains(&code) => Ok(format!("GET {}: {code}", http.path)),
        (_, Some(code)) => Err(format!("GET {}: {code}", http.path)),
        (Err(error), None) => Err(format!("GET {}: {error}", http.path)),
        (Ok(()), None) => Err(format!("GET {}: no status line", http.path)),
    }
}

/// An exec probe: `argv` is the command line that runs the template's command in the container
/// (`Cluster::probe`); it succeeds on exit 0 and is killed (its process group) at `timeout`, as
/// the kubelet's exec probe fails then.
fn exec(argv: &[String], timeout: Duration) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("an empty exec")?;
    let child = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", POD_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|error| format!("exec {program}: {error}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let (done, finished) = mpsc::channel();
    // The thread reaps the child, also after a kill.
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(timeout) {
        Ok(output) => output.map_err(|error| error.to_string())?,
        Err(_) => {
            let _ = killpg(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(format!("exec: no answer within {timeout:?}"));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    match output.status.code() {
        Some(0) => Ok("exec: exit 0".to_owned()),
        code => Err(format!("exec: exit {code:?}: {last}")),
    }
}
