//! Measurement 7: the agent's clone with and without zstd compression of its stream
//! (`--clone-compression`), MariaDB 10.11, pod 0 to pod 1, on sysbench's tables, on the unshaped
//! link and with pod 0's egress shaped to slower links.

use anyhow::{Context as _, Result};

use crate::Context;
use crate::clone_throughput::{AgentClone, DONOR, JOINER, agent_clone};
use crate::footprint::{clock_ticks_per_s, cpu_ticks, sidecar};
use crate::harness::{Cluster, ClusterSpec};
use crate::plot::{Plot, Series};
use crate::report::{Requirement, Section, Table, list, median};
use crate::time_to_ready::{TABLES, prepare_sysbench, rows_per_table};

/// The rates pod 0's egress is shaped to (Mbit/s), after the unshaped link.
const RATES_MBIT: [u64; 2] = [1000, 250];
const SMOKE_RATES_MBIT: [u64; 1] = [250];
/// The token bucket holds this fraction of a second of its rate: enough that its refill, not
/// the kernel's timer, sets the pace.
const BURST_PER_SECOND: u64 = 250;

#[derive(Clone, Copy, PartialEq)]
enum Setting {
    Plain,
    Zstd,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::Plain => "plain",
            Setting::Zstd => "zstd",
        }
    }

    /// `MYSQL_STS_CLONE_COMPRESSION` of the joiner's init container.
    fn env(self) -> &'static str {
        match self {
            Setting::Plain => "none",
            Setting::Zstd => "zstd",
        }
    }
}

/// Round r runs them rotated by r.
const SETTINGS: [Setting; 2] = [Setting::Plain, Setting::Zstd];

/// One setting's clones on one link.
#[derive(Default)]
struct Runs {
    clones: Vec<AgentClone>,
    /// The donor's sidecar's CPU seconds (utime + stime, its compressing thread included) per
    /// clone.
    donor_cpu_secs: Vec<f64>,
}

impl Runs {
    /// Backup (uncompressed) MB per second of the stream, per clone.
    fn mb_per_s(&self) -> Vec<f64> {
        (self.clones.iter())
            .map(|clone| clone.log.bytes as f64 / 1e6 / clone.log.stream_secs)
            .collect()
    }

    /// Backup bytes per byte on the wire, per compressed clone.
    fn ratios(&self) -> Vec<f64> {
        (self.clones.iter())
            .filter_map(|clone| Some(clone.log.bytes as f64 / clone.log.compressed_bytes? as f64))
            .collect()
    }
}

struct LinkResult {
    /// None: the unshaped link.
    rate_mbit: Option<u64>,
    /// By `SETTINGS`' order.
    runs: [Runs; 2],
}

impl LinkResult {
    fn name(&self) -> String {
        self.rate_mbit
            .map_or_else(|| "unshaped".into(), |rate| format!("{rate} Mbit/s"))
    }

    fn runs(&self, setting: Setting) -> &Runs {
        &self.runs[SETTINGS.iter().position(|&s| s == setting).unwrap_or(0)]
    }
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let mib = *ctx.ready_sizes_mib.last().context("a data size")?;
    let rows = rows_per_table(mib);
    let rates: &[u64] = if ctx.smoke {
        &SMOKE_RATES_MBIT
    } else {
        &RATES_MBIT
    };
    let links: Vec<Option<u64>> = [None]
        .into_iter()
        .chain(rates.iter().copied().map(Some))
        .collect();
    let mut results = Vec::new();
    Cluster::run_scenario(ClusterSpec::new(&ctx.agent, 2), async |c| {
        c.start_pod(DONOR).await?;
        prepare_sysbench(c, rows).await?;
        c.create_pod(JOINER).await?;
        // Untimed: the first backup after the prepare copies its redo log and reads the data
        // into the page cache, for whoever came first.
        agent_clone(c, &[]).await?;
        for &rate_mbit in &links {
            match rate_mbit {
                Some(rate) => {
                    let burst = (rate * 1_000_000 / 8 / BURST_PER_SECOND).to_string();
                    c.shape(DONOR, &format!("{rate}mbit"), &burst).await?
                }
                None => c.unshape(DONOR).await?,
            }
            let mut link = LinkResult {
                rate_mbit,
                runs: Default::default(),
            };
            for round in 0..ctx.rounds {
                for k in 0..SETTINGS.len() {
                    let index = (round + k) % SETTINGS.len();
                    let setting = SETTINGS[index];
                    let (clone, cpu) = timed_clone(c, setting).await.with_context(|| {
                        format!("{} on the {} link, round {}", setting.name(), link.name(), round + 1)
                    })?;
                    eprintln!(
                        "[bench] {} link, round {round}: {} {:.2} s, {} bytes, {:?} on the wire, donor CPU {cpu:.2} s",
                        link.name(),
                        setting.name(),
                        clone.log.stream_secs,
                        clone.log.bytes,
                        clone.log.compressed_bytes
                    );
                    link.runs[index].clones.push(clone);
                    link.runs[index].donor_cpu_secs.push(cpu);
                }
            }
            results.push(link);
        }
        c.unshape(DONOR).await
    })
    .await?;
    Ok(section(ctx, mib, rows, &results))
}

/// One clone asking for `setting`, and the donor's sidecar's CPU seconds while it ran.
async fn timed_clone(c: &mut Cluster, setting: Setting) -> Result<(AgentClone, f64)> {
    let donor = sidecar(c, DONOR)?;
    let before = cpu_ticks(donor)?;
    let clone = agent_clone(c, &[("MYSQL_STS_CLONE_COMPRESSION", setting.env())]).await?;
    let cpu = (cpu_ticks(donor)? - before) as f64 / clock_ticks_per_s()?;
    Ok((clone, cpu))
}

fn section(ctx: &Context, mib: u64, rows: u64, results: &[LinkResult]) -> Section {
    let plain_mb_s = |link: &LinkResult| median(&link.runs(Setting::Plain).mb_per_s());
    let summary = Table {
        caption: format!(
            "Medians of {} round(s), sysbench data of {mib} MiB ({TABLES} × {rows} rows); MB/s = \
             the backup's (uncompressed) bytes / the stream's seconds (MB = 10^6 bytes); donor \
             CPU = its sidecar's utime + stime per clone.",
            ctx.rounds
        ),
        header: [
            "link",
            "setting",
            "stream s",
            "MB/s",
            "zstd/plain",
            "backup / wire bytes",
            "donor CPU s",
        ]
        .map(String::from)
        .into(),
        rows: results
            .iter()
            .flat_map(|link| {
                SETTINGS.iter().map(move |&setting| {
                    let runs = link.runs(setting);
                    let secs: Vec<f64> = runs.clones.iter().map(|c| c.log.stream_secs).collect();
                    let mb_s = median(&runs.mb_per_s());
                    let (versus, ratio) = match setting {
                        Setting::Plain => (String::new(), String::new()),
                        Setting::Zstd => (
                            format!("{:.2}", mb_s / plain_mb_s(link)),
                            format!("{:.1}", median(&runs.ratios())),
                        ),
                    };
                    vec![
                        link.name(),
                        setting.name().to_owned(),
                        format!("{:.2}", median(&secs)),
                        format!("{mb_s:.0}"),
                        versus,
                        ratio,
                        format!("{:.2}", median(&runs.donor_cpu_secs)),
                    ]
                })
            })
            .collect(),
    };
    let rounds = Table {
        caption: "Every round, in MB/s, in the order the rounds ran.".into(),
        header: ["link", "setting", "rounds"].map(String::from).into(),
        rows: results
            .iter()
            .flat_map(|link| {
                SETTINGS.iter().map(move |&setting| {
                    vec![
                        link.name(),
                        setting.name().to_owned(),
                        list(&link.runs(setting).mb_per_s(), 0),
                    ]
                })
            })
            .collect(),
    };
    let fastest = results
        .iter()
        .filter_map(|l| l.rate_mbit)
        .max()
        .unwrap_or(1000);
    // The unshaped link has no rate: it is drawn at twice the fastest shaped one.
    let x = |link: &LinkResult| link.rate_mbit.unwrap_or(2 * fastest) as f64;
    let series = SETTINGS
        .iter()
        .map(|&setting| Series {
            name: format!("agent's clone, {}", setting.name()),
            points: (results.iter())
                .map(|link| (x(link), median(&link.runs(setting).mb_per_s())))
                .collect(),
        })
        .collect();
    let plot = Plot {
        file: "compression.png".into(),
        title: "Clone stream with and without zstd, MariaDB 10.11, sysbench data".into(),
        x_label: format!(
            "link rate, Mbit/s (the unshaped link drawn at {})",
            2 * fastest
        ),
        y_label: "backup MB/s of the stream (median)".into(),
        series,
    };
    // Every clone got what it asked for: the donor granted zstd, and only when asked.
    let negotiated = results.iter().all(|link| {
        let granted = |setting: Setting| {
            link.runs(setting)
                .clones
                .iter()
                .map(|c| c.log.compressed_bytes.is_some())
        };
        granted(Setting::Zstd).all(|g| g) && granted(Setting::Plain).all(|g| !g)
    });
    let ratios: Vec<f64> = results
        .iter()
        .flat_map(|link| link.runs(Setting::Zstd).ratios())
        .collect();
    Section {
        title: "Clone stream compression".into(),
        method: METHOD.into(),
        tables: vec![summary, rounds],
        plots: vec![plot],
        requirements: vec![
            Requirement {
                what: "the donor compressed every clone that asked for zstd, and no other".into(),
                met: negotiated,
            },
            Requirement::positive("the compression ratio", median(&ratios)),
        ],
    }
}

const METHOD: &str = "\
Two pods of the test harness (MariaDB 10.11, the manifest's pod template). Pod 0 is the \
primary, filled by `sysbench oltp_read_write prepare` (4 tables, the largest `--ready-sizes`): \
rows as applications write them, which compress, unlike the random rows of the clone \
throughput measurement. One untimed clone follows (the first backup after the prepare copies \
its redo log and reads the data into the page cache). Then, for each link, every round runs \
pod 1's init container (`mysql-sts-agent init` on an empty volume, cloning from pod 0's \
sidecar) once with each setting, the order rotating from round to round: *plain* \
(`MYSQL_STS_CLONE_COMPRESSION=none`, the default) and *zstd* (`=zstd`: the joiner asks with \
`Accept-Encoding: zstd`, the donor compresses the framed stream at zstd level 1 on a thread \
of its own). The links: pod 0's veth as the harness makes it (*unshaped*), then its egress \
shaped by a token bucket (`tc qdisc replace dev eth0 root tbf rate R burst R/250 latency \
400ms` in pod 0's namespace, removed at the end), at 1 Gbit/s and 250 Mbit/s. MB/s divides the \
backup's bytes (uncompressed, init's `clone stream complete` line) by that line's `secs` \
(from the donor's answer to the end of the extraction); `mariadb-backup --prepare`, the same \
for both, is left out. *backup / wire bytes* is the ratio init logs (`compressed_bytes`). \
*donor CPU* is the donor sidecar's utime + stime over the clone, its compressing thread \
included (the backup tool is a process of its own). The machine runs other work too: single \
rounds are noisy.";
