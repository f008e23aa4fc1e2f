//! Process bookkeeping: identities that survive PID reuse, liveness read from /proc,
//! and stopping processes the way a container runtime stops a container.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a SIGKILLed process may take to disappear before we report it.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// A process identity: PID plus start time, so a recycled PID is never mistaken for ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

/// The few fields of /proc/PID/stat the harness needs.
struct Stat {
    state: char,
    ppid: u32,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (comm) may hold spaces and parentheses: the fixed fields resume after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

impl ProcId {
    /// The identity of the process that currently holds `pid`, if any.
    pub fn of(pid: u32) -> Option<Self> {
        read_stat(pid).map(|stat| ProcId {
            pid,
            start_time: stat.start_time,
        })
    }

    /// True while the process runs. Zombies count as dead: `kill -0` would call them alive,
    /// and PID 1 on these machines reaps orphans late.
    pub fn is_alive(&self) -> bool {
        read_stat(self.pid).is_some_and(|stat| {
            stat.start_time == self.start_time && !matches!(stat.state, 'Z' | 'X')
        })
    }

    /// Sends `signal` unless the process is gone (never to whoever recycled its PID).
    pub fn signal(&self, signal: Signal) {
        if self.is_alive() {
            // It may exit between the check and the kill: ESRCH is fine then.
            let _ = kill(Pid::from_raw(self.pid as i32), signal);
        }
    }

    /// The command line, for reports.
    pub fn command_line(&self) -> String {
        let raw = fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|arg| !arg.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A process the harness started, for the ledger: it outlives the process itself.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub name: String,
    pub id: ProcId,
}

impl ProcessInfo {
    pub fn is_alive(&self) -> bool {
        self.id.is_alive()
    }
}

/// Every live process descended from `root` (children, grandchildren...), read from /proc.
pub fn descendants(root: u32) -> Vec<ProcId> {
    let mut children: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    for pid in all_pids() {
        if let Some(stat) = read_stat(pid) {
            children
                .entry(stat.ppid)
                .or_default()
                .push((pid, stat.start_time));
        }
    }
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, start_time) in children.get(&parent).into_iter().flatten() {
            found.push(ProcId { pid, start_time });
            parents.push(pid);
        }
    }
    found.retain(ProcId::is_alive);
    found
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// SIGKILLs `procs` and waits until they are gone (reporting any that refuse).
pub fn kill_and_wait(procs: &[ProcId]) {
    for proc in procs {
        proc.signal(Signal::SIGKILL);
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while procs.iter().any(ProcId::is_alive) && Instant::now() < deadline {
        thread::sleep(POLL_INTERVAL);
    }
    for proc in procs.iter().filter(|proc| proc.is_alive()) {
        eprintln!(
            "[msa-harness] pid {} ({}) survived SIGKILL for {KILL_TIMEOUT:?}",
            proc.pid,
            proc.command_line()
        );
    }
}

/// A process the harness spawned and must reap, with the log file that holds its stdout and stderr.
pub struct Tracked {
    pub name: String,
    pub id: ProcId,
    pub log: PathBuf,
    child: Child,
}

impl Tracked {
    /// Spawns `cmd` with stdin null and stdout+stderr appended to one fresh `log` file.
    pub fn spawn(name: String, cmd: &mut Command, log: &Path) -> Result<Self> {
        let file =
            File::create(log).with_context(|| format!("creating log file {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let pid = child.id().context("spawned child has no pid")?;
        // Not reaped before we wait on it, so /proc/PID exists even if it already exited.
        let id = ProcId::of(pid).with_context(|| format!("{name} (pid {pid}) vanished"))?;
        Ok(Tracked {
            name,
            id,
            log: log.to_owned(),
            child,
        })
    }

    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            name: self.name.clone(),
            id: self.id,
        }
    }

    pub async fn wait(&mut self) -> Result<ExitStatus> {
        Ok(self.child.wait().await?)
    }

    /// The exit status if it has exited (reaping it), None while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `stop_group` for this one process, on the blocking pool.
    pub async fn stop(mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let status = tokio::task::spawn_blocking(move || {
            let mut victims = [Victim::reaped(&mut self)];
            stop_group(&mut victims, grace);
            victims[0].status
        })
        .await?;
        Ok(status)
    }
}

/// One process to stop; `child` is set when we are its parent and must reap it.
pub struct Victim<'a> {
    id: ProcId,
    child: Option<&'a mut Child>,
    status: Option<ExitStatus>,
    exited: bool,
}

impl<'a> Victim<'a> {
    pub fn reaped(tracked: &'a mut Tracked) -> Self {
        Victim {
            id: tracked.id,
            child: Some(&mut tracked.child),
            status: None,
            exited: false,
        }
    }

    /// A process someone else reaps (e.g. an init whose handle the test holds).
    pub fn unreaped(id: ProcId) -> Self {
        Victim {
            id,
            child: None,
            status: None,
            exited: false,
        }
    }

    fn poll_exited(&mut self) -> bool {
        if !self.exited {
            self.exited = match self.child.as_mut().map(|child| child.try_wait()) {
                Some(Ok(Some(status))) => {
                    self.status = Some(status);
                    true
                }
                Some(Ok(None)) => false,
                // Cannot wait (already reaped?): fall back to /proc.
                Some(Err(_)) | None => !self.id.is_alive(),
            };
        }
        self.exited
    }
}

fn wait_all_exited(victims: &mut [Victim], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // No short-circuit: every victim gets reaped as soon as it exits.
        let mut exited = true;
        for victim in victims.iter_mut() {
            exited &= victim.poll_exited();
        }
        if exited || Instant::now() >= deadline {
            return exited;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Stops processes as a container runtime stops containers: SIGTERM, up to `grace` to exit,
/// SIGKILL, then SIGKILL whatever they had spawned (it would otherwise be orphaned inside the pod).
/// A zero `grace` skips SIGTERM. Blocking; reaps the children it owns.
pub fn stop_group(victims: &mut [Victim], grace: Duration) {
    // Only for live victims: a dead one's PID may already belong to someone else.
    let mut spawned: Vec<ProcId> = victims
        .iter()
        .filter(|victim| victim.id.is_alive())
        .flat_map(|victim| descendants(victim.id.pid))
        .collect();
    if !grace.is_zero() {
        for victim in victims.iter() {
            victim.id.signal(Signal::SIGTERM);
        }
        wait_all_exited(victims, grace);
    }
    for victim in victims.iter_mut() {
        if !victim.poll_exited() {
            spawned.extend(descendants(victim.id.pid));
            victim.id.signal(Signal::SIGKILL);
        }
    }
    if !wait_all_exited(victims, KILL_TIMEOUT) {
        for victim in victims.iter().filter(|victim| !victim.exited) {
            eprintln!(
                "[msa-harness] pid {} survived SIGKILL for {KILL_TIMEOUT:?}",
                victim.id.pid
            );
        }
    }
    kill_and_wait(&spawned);
}

/// Who a process runs as, from /proc/PID/status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Effective uid and gid.
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The effective capabilities, as a bit set.
    pub cap_eff: u64,
    pub no_new_privs: bool,
}

impl Credentials {
    pub fn of(pid: u32) -> Result<Credentials> {
        let text = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading the status of pid {pid}"))?;
        let field = |name: &str| -> Result<Vec<&str>> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.split_whitespace().collect())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        let effective = |name: &str| -> Result<u32> {
            let ids = field(name)?;
            Ok(ids
                .get(1)
                .with_context(|| format!("{name}: {ids:?}"))?
                .parse()?)
        };
        let single = |name: &str| -> Result<String> {
            Ok(field(name)?.first().copied().unwrap_or_default().to_owned())
        };
        Ok(Credentials {
            uid: effective("Uid")?,
            gid: effective("Gid")?,
            groups: field("Groups")?
                .iter()
                .map(|group| Ok(group.parse()?))
                .collect::<Result<_>>()?,
            cap_eff: u64::from_str_radix(&single("CapEff")?, 16)?,
            no_new_privs: single("NoNewPrivs")? == "1",
        })
    }
}

/// How often `CommandLineWatch` looks: a tool a clone runs for a fraction of a second is seen.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// The command lines (raw `/proc/PID/cmdline`, which every user can read) of every process that
/// ran in some network namespaces while it watched, by the index of the namespace.
pub struct CommandLineWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeSet<(usize, Vec<u8>)>>,
}

impl CommandLineWatch {
    /// Watches the processes of `netns` (files under /run/netns) until `finish`.
    pub fn start(netns: &[PathBuf]) -> Result<CommandLineWatch> {
        let inodes: HashMap<u64, usize> = netns
            .iter()
            .enumerate()
            .map(|(index, path)| Ok((fs::metadata(path)?.ino(), index)))
            .collect::<Result<_>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut seen = BTreeSet::new();
            loop {
                // One more look once asked to stop: what runs then counts too.
                let last = stopped.load(Ordering::Relaxed);
                for pid in all_pids() {
                    let netns = fs::metadata(format!("/proc/{pid}/ns/net")).map(|meta| meta.ino());
                    if let Some(&index) = netns.ok().and_then(|ino| inodes.get(&ino))
                        && let Ok(line) = fs::read(format!("/proc/{pid}/cmdline"))
                    {
                        seen.insert((index, line));
                    }
                }
                if last {
                    return seen;
                }
                thread::sleep(WATCH_INTERVAL);
            }
        });
        Ok(CommandLineWatch { stop, task })
    }

    pub async fn finish(self) -> Result<BTreeSet<(usize, Vec<u8>)>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}
