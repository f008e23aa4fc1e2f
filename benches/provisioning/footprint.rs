//! Measurement 5: the sidecar's footprint, MariaDB 10.11: its RSS and CPU at rest on the primary
//! and on a replica, its peak RSS while serving a clone, and the stripped binary's size.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};

use crate::Context;
use crate::clone_throughput::{create_table, fill};
use crate::harness::{Cluster, ClusterSpec};
use crate::report::{Requirement, Section, Table, median, yes_no};

const DONOR: usize = 0;
const REPLICA: usize = 1;
/// The idle window, and how often RSS is sampled in it.
const IDLE: Duration = Duration::from_secs(60);
const SMOKE_IDLE: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The target.
const TARGET_IDLE_RSS_MIB: f64 = 10.0;
const KIB_PER_MIB: f64 = 1024.0;

/// One sidecar at rest.
struct Idle {
    /// VmRSS samples, KiB.
    rss_kib: Vec<u64>,
    /// utime + stime over the window, as % of one core.
    cpu_percent: f64,
    /// At the window's end: what the RSS is made of.
    last: Status,
}

struct Measured {
    innodb_bytes: u64,
    /// The donor's sidecar before and after serving the clone, KiB.
    donor_rss_before: u64,
    donor_hwm_before: u64,
    donor_hwm_after: u64,
    window: Duration,
    /// Pod 0's (the primary's), then pod 1's (the replica's).
    idle: Vec<Idle>,
    binary_bytes: u64,
    stripped_bytes: u64,
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let window = if ctx.smoke { SMOKE_IDLE } else { IDLE };
    let (binary_bytes, stripped_bytes) = binary_sizes(&ctx.agent)?;
    let mut measured = None;
    Cluster::run_scenario(ClusterSpec::new(&ctx.agent, 2), async |c| {
        c.start_pod(DONOR).await?;
        create_table(c).await?;
        let innodb_bytes = fill(c, ctx.sizes_mib[0] << 20).await?;
        let donor = sidecar(c, DONOR)?;
        let before = Status::of(donor)?;
        // Pod 1's init clones from pod 0's sidecar.
        c.start_pod(REPLICA).await?;
        let after = Status::of(donor)?;
        let idle = idle(&[donor, sidecar(c, REPLICA)?], window).await?;
        measured = Some(Measured {
            innodb_bytes,
            donor_rss_before: before.rss_kib,
            donor_hwm_before: before.hwm_kib,
            donor_hwm_after: after.hwm_kib,
            window,
            idle,
            binary_bytes,
            stripped_bytes,
        });
        Ok(())
    })
    .await?;
    Ok(section(&measured.context("the scenario measured")?))
}

/// Pod n's sidecar's PID: the harness execs the agent itself (no wrapper process).
pub fn sidecar(c: &Cluster, n: usize) -> Result<u32> {
    let pid = c.sidecar_pid(n).context("the sidecar runs")?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
    ensure!(
        comm.trim() == "mysql-sts-agent",
        "pod {n}'s sidecar PID {pid} is {comm:?}, not the agent"
    );
    Ok(pid)
}

struct Status {
    rss_kib: u64,
    /// The peak RSS since the process started.
    hwm_kib: u64,
    /// The RSS's anonymous part (heap, stacks) and its file part (the binary's and libraries'
    /// pages).
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
}

impl Status {
    fn of(pid: u32) -> Result<Status> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Status {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
            anon_kib: field("RssAnon:")?,
            file_kib: field("RssFile:")?,
            threads: field("Threads:")?,
        })
    }
}

/// The processes over `window`: RSS every SAMPLE_EVERY, CPU from its start to its end.
async fn idle(pids: &[u32], window: Duration) -> Result<Vec<Idle>> {
    let ticks_before = pids
        .iter()
        .map(|&pid| cpu_ticks(pid))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut samples = vec![Vec::new(); pids.len()];
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    // The window is a measurement interval, not a wait for anything.
    while started.elapsed() < window {
        every.tick().await;
        for (pid, samples) in pids.iter().zip(&mut samples) {
            samples.push(Status::of(*pid)?.rss_kib);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let hz = clock_ticks_per_s()?;
    pids.iter()
        .zip(ticks_before)
        .zip(samples)
        .map(|((&pid, before), rss_kib)| {
            let ticks = cpu_ticks(pid)? - before;
            Ok(Idle {
                rss_kib,
                cpu_percent: ticks as f64 / hz / secs * 100.0,
                last: Status::of(pid)?,
            })
        })
        .collect()
}

/// utime + stime of all the process's threads, in clock ticks (/proc/<pid>/stat fields 14, 15).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, field 2, is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no ')' in /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Result<u64> { Ok(fields.get(n - 3).context("short stat")?.parse()?) };
    Ok(field(14)? + field(15)?)
}

pub fn clock_ticks_per_s() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    ensure!(out.status.success(), "getconf CLK_TCK failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The binary's size, and that of a stripped copy (`strip --strip-all`), in bytes.
fn binary_sizes(agent: &Path) -> Result<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    let stripped = dir.path().join("mysql-sts-agent");
    let out = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(agent)
        .output()
        .context("running strip (binutils)")?;
    ensure!(
        out.status.success(),
        "strip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        std::fs::metadata(agent)?.len(),
        std::fs::metadata(&stripped)?.len(),
    ))
}

fn section(m: &Measured) -> Section {
    let mib = |kib: u64| kib as f64 / KIB_PER_MIB;
    let rss_median =
        |idle: &Idle| median(&idle.rss_kib.iter().map(|&k| mib(k)).collect::<Vec<_>>());
    let rss_max = |idle: &Idle| idle.rss_kib.iter().copied().max().map_or(0.0, mib);
    let idle_table = Table {
        caption: format!(
            "At rest over {} s, RSS sampled every {} ms (MiB = 2^20 bytes); CPU = utime + stime \
             over the window, as % of one core.",
            m.window.as_secs(),
            SAMPLE_EVERY.as_millis()
        ),
        header: [
            "sidecar",
            "RSS median MiB",
            "RSS max MiB",
            "of which anonymous / file MiB (at the end)",
            "threads",
            "CPU % of one core",
        ]
        .map(String::from)
        .into(),
        rows: ["pod 0 (primary)", "pod 1 (replica)"]
            .iter()
            .zip(&m.idle)
            .map(|(name, idle)| {
                vec![
                    (*name).into(),
                    format!("{:.1}", rss_median(idle)),
                    format!("{:.1}", rss_max(idle)),
                    format!(
                        "{:.1} / {:.1}",
                        mib(idle.last.anon_kib),
                        mib(idle.last.file_kib)
                    ),
                    idle.last.threads.to_string(),
                    format!("{:.2}", idle.cpu_percent),
                ]
            })
            .collect(),
    };
    let clone_table = Table {
        caption: format!(
            "Pod 0's sidecar serving pod 1's clone of {} MiB of InnoDB data (`/clone`: \
             `mariadb-backup --stream` in a child process, whose memory is not the sidecar's).",
            m.innodb_bytes >> 20
        ),
        header: [
            "RSS before MiB",
            "peak RSS before MiB (VmHWM)",
            "peak RSS after the clone MiB (VmHWM)",
        ]
        .map(String::from)
        .into(),
        rows: vec![vec![
            format!("{:.1}", mib(m.donor_rss_before)),
            format!("{:.1}", mib(m.donor_hwm_before)),
            format!("{:.1}", mib(m.donor_hwm_after)),
        ]],
    };
    let idle_rss = m.idle.iter().map(rss_median).fold(0.0, f64::max);
    let binary_table = Table {
        caption: "The binary and the issue's target.".into(),
        header: ["what", "measured", "target", "met"]
            .map(String::from)
            .into(),
        rows: vec![
            vec![
                "binary as built".into(),
                format!("{:.1} MiB", m.binary_bytes as f64 / f64::from(1 << 20)),
                String::new(),
                String::new(),
            ],
            vec![
                "binary stripped (`strip --strip-all`)".into(),
                format!("{:.1} MiB", m.stripped_bytes as f64 / f64::from(1 << 20)),
                String::new(),
                String::new(),
            ],
            vec![
                "idle RSS (the larger median)".into(),
                format!("{idle_rss:.1} MiB"),
                format!("under {TARGET_IDLE_RSS_MIB:.0} MiB"),
                yes_no(idle_rss < TARGET_IDLE_RSS_MIB),
            ],
        ],
    };
    let mut requirements: Vec<Requirement> = m
        .idle
        .iter()
        .map(|idle| Requirement::positive("a sidecar's idle RSS", rss_median(idle)))
        .collect();
    requirements.extend([
        Requirement::positive("the donor's peak RSS", mib(m.donor_hwm_after)),
        Requirement::positive("the stripped binary's size", m.stripped_bytes as f64),
    ]);
    Section {
        title: "Footprint".into(),
        method: METHOD.into(),
        tables: vec![idle_table, clone_table, binary_table],
        plots: Vec::new(),
        requirements,
    }
}

const METHOD: &str = "\
Two pods of the test harness, MariaDB 10.11, the manifest's pod template, the agent's build \
named above. Pod 0 starts and `bench.t` grows to the smallest `--sizes` as in measurement 1; \
its sidecar's `VmRSS` and `VmHWM` (peak RSS) are read from `/proc/<pid>/status`, pod 1 starts \
(its init clones from pod 0's sidecar) and `VmHWM` is read again: the peak while serving the \
clone. Then both sidecars sit at rest (polling their servers every second, the harness's \
kubelet probing them) over the window: `VmRSS` sampled every 500 ms, CPU from `utime + stime` \
in `/proc/<pid>/stat` at its start and end. The binary's size is the file's, and that of a copy \
stripped with `strip --strip-all`. The machine runs other work too: CPU shares are noisy.";
