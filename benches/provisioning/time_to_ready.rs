//! Measurement 2: time to Ready of new replicas, MariaDB 10.11, with writes going on at a fixed
//! rate on the primary: the agent's overlay against the Kubernetes tutorial's method
//! (`tutorial/`), both run by the same harness on the same data.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, Result, ensure};
use mysql_async::Row;
use mysql_async::prelude::Queryable;

use mysql_sts_agent::db::flavor::Flavor as GtidFlavor;
use mysql_sts_agent::db::gtid::Gtids;

use crate::Context;
use crate::harness::{Cluster, ClusterSpec, Flavor};
use crate::plot::{Plot, Series};
use crate::report::{Section, Table, median};

/// The tutorial's method as a manifest for MariaDB 10.11 (`tutorial/README.md`).
const TUTORIAL: &str = "benches/provisioning/tutorial/tutorial-method-mariadb.yaml";
/// Pod 0 and the replicas scaled up to, one after the other.
const PODS: usize = 3;
pub const TABLES: u32 = 4;
/// sysbench's rows per MiB of data: the 4 tables of 150,000 rows make about 140 MiB.
const ROWS_PER_MIB: u64 = 4 * 150_000 / 140;
/// Transactions per second on the primary while the replicas come up.
pub const RATE: u32 = 100;
/// The agent's readiness: every transaction the primary had this long ago applied (README,
/// "readiness"; its default max lag).
const AGENT_MAX_LAG_SECS: u64 = 5;
/// The primary's GTID domain (neither manifest sets another).
const DOMAIN: u64 = 0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    Agent,
    Tutorial,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Agent => "agent's overlay",
            Contender::Tutorial => "tutorial's method",
        }
    }

    fn spec(self, ctx: &Context) -> ClusterSpec {
        let spec = ClusterSpec::new(&ctx.agent, PODS);
        match self {
            Contender::Agent => spec,
            Contender::Tutorial => {
                spec.manifest(Path::new(env!("CARGO_MANIFEST_DIR")).join(TUTORIAL))
            }
        }
    }
}

/// Round r runs them rotated by r.
const CONTENDERS: [Contender; 2] = [Contender::Agent, Contender::Tutorial];

/// One replica's rounds at one data size.
struct PodRounds {
    contender: Contender,
    /// Harness pod index: 1 is mysql-1.
    pod: usize,
    ready_secs: Vec<f64>,
    /// Transactions the primary had committed that the replica had not applied when it turned
    /// Ready; None: it was not replicating yet.
    behind: Vec<Option<u64>>,
}

struct SizeResult {
    mib: u64,
    rows: u64,
    pods: Vec<PodRounds>,
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let mut results = Vec::new();
    for &mib in &ctx.ready_sizes_mib {
        let rows = rows_per_table(mib);
        let mut pods: Vec<PodRounds> = CONTENDERS
            .iter()
            .flat_map(|&contender| {
                (1..PODS).map(move |pod| PodRounds {
                    contender,
                    pod,
                    ready_secs: Vec::new(),
                    behind: Vec::new(),
                })
            })
            .collect();
        for round in 0..ctx.rounds {
            for k in 0..CONTENDERS.len() {
                let contender = CONTENDERS[(round + k) % CONTENDERS.len()];
                let in_sync = contender == Contender::Agent;
                let measured = measure(contender.spec(ctx), contender.name(), in_sync, rows)
                    .await
                    .with_context(|| {
                        format!("{} with {mib} MiB, round {}", contender.name(), round + 1)
                    })?;
                for (pod, (secs, behind)) in (1..PODS).zip(measured) {
                    let slot = pods
                        .iter_mut()
                        .find(|p| p.contender == contender && p.pod == pod)
                        .context("a slot per contender and pod")?;
                    slot.ready_secs.push(secs);
                    slot.behind.push(behind);
                }
            }
        }
        results.push(SizeResult { mib, rows, pods });
    }
    Ok(section(ctx, &results))
}

/// One contender's run on a new cluster of `spec` (`name` in messages): pod 0 with the data, the
/// writes at `RATE`, then each replica started in turn (OrderedReady); per replica its time from
/// creation to Ready and how far behind it was then. With `in_sync` (the agent's readiness), a
/// replica Ready while further behind than its rule allows fails the run.
pub async fn measure(
    spec: ClusterSpec,
    name: &str,
    in_sync: bool,
    rows: u64,
) -> Result<Vec<(f64, Option<u64>)>> {
    let mut measured = Vec::new();
    let pods = spec.pods;
    Cluster::run_scenario(spec, async |c| {
        c.start_pod(0).await?;
        fill_and_write(c, rows).await?;
        for n in 1..pods {
            c.start_pod(n).await?;
            let behind = behind(c, n).await?;
            let secs = c.ready_after(n).context("Ready")?.as_secs_f64();
            eprintln!(
                "[bench] {name}: pod {n} Ready after {secs:.1} s, {behind:?} transactions behind"
            );
            if in_sync {
                let allowed = u64::from(RATE) * AGENT_MAX_LAG_SECS;
                ensure!(
                    behind.is_some_and(|tx| tx <= allowed),
                    "the agent's pod {n} was Ready while {behind:?} transactions behind"
                );
            }
            measured.push((secs, behind));
        }
        Ok(())
    })
    .await?;
    Ok(measured)
}

/// sysbench's rows per table for `mib` MiB of data.
pub fn rows_per_table(mib: u64) -> u64 {
    (mib * ROWS_PER_MIB / u64::from(TABLES)).max(1)
}

/// Fills the started pod 0 (`prepare_sysbench`), then starts `sysbench oltp_write_only` on it at
/// `RATE` transactions/s, which the harness stops with the cluster.
pub async fn fill_and_write(c: &mut Cluster, rows: u64) -> Result<()> {
    prepare_sysbench(c, rows).await?;
    let rate = format!("--rate={RATE}");
    let writes = sysbench(
        c,
        "oltp_write_only",
        rows,
        &[&rate, "--threads=2", "--time=0", "run"],
    )?;
    c.spawn_in_pod(0, "sysbench", writes)?;
    Ok(())
}

/// Pod 0's `sbtest` database with `TABLES` sysbench tables of `rows` rows each.
pub async fn prepare_sysbench(c: &Cluster, rows: u64) -> Result<()> {
    c.sql(0).await?.query_drop("CREATE DATABASE sbtest").await?;
    let prepare = sysbench(c, "oltp_read_write", rows, &["prepare"])?
        .stdout(Stdio::null())
        .status()
        .await?;
    ensure!(prepare.success(), "sysbench prepare: {prepare}");
    Ok(())
}

/// sysbench's `test` against pod 0's server (as root, over its socket), in pod 0.
fn sysbench(c: &Cluster, test: &str, rows: u64, args: &[&str]) -> Result<tokio::process::Command> {
    let mut command = c.pod_command(0, "sysbench");
    command.args([
        test.to_owned(),
        "--db-driver=mysql".to_owned(),
        format!("--mysql-socket={}", c.socket(0).display()),
        "--mysql-user=root".to_owned(),
        format!("--mysql-password={}", c.root_password(0)?),
        "--mysql-db=sbtest".to_owned(),
        format!("--tables={TABLES}"),
        format!("--table-size={rows}"),
    ]);
    command.args(args);
    Ok(command)
}

/// Transactions the primary has committed that replica n has not applied, the replica read
/// first; None when the replica does not replicate yet. MariaDB: the primary's GTID against the
/// one at the replica's executed position in the primary's binlog (`BINLOG_GTID_POS`); MySQL:
/// the primary's `gtid_executed` set against the replica's.
async fn behind(c: &Cluster, n: usize) -> Result<Option<u64>> {
    let mut replica = c.sql(n).await?;
    let show_status = match c.flavor() {
        Flavor::MariaDb => "SHOW SLAVE STATUS",
        Flavor::MySql => "SHOW REPLICA STATUS",
    };
    let status: Option<Row> = replica.query_first(show_status).await?;
    let Some(status) = status else {
        return Ok(None);
    };
    if c.flavor() == Flavor::MySql {
        let executed = "SELECT @@GLOBAL.gtid_executed";
        let applied: String = replica.query_first(executed).await?.context("no row")?;
        let head: String = c
            .sql(0)
            .await?
            .query_first(executed)
            .await?
            .context("no row")?;
        let [applied, head] = [applied, head].map(|set| Gtids::parse(GtidFlavor::MySql, &set));
        return Ok(Some(applied?.missing_from(&head?)));
    }
    let file: String = status
        .get("Relay_Master_Log_File")
        .context("Relay_Master_Log_File")?;
    let position: u64 = status
        .get("Exec_Master_Log_Pos")
        .context("Exec_Master_Log_Pos")?;
    let mut primary = c.sql(0).await?;
    let (head, applied): (String, Option<String>) = primary
        .query_first(format!(
            "SELECT @@gtid_binlog_pos, BINLOG_GTID_POS('{file}', {position})"
        ))
        .await?
        .context("no row")?;
    // NULL: the position is in no binlog the primary has.
    Ok(applied.map(|applied| seq_no(&head).saturating_sub(seq_no(&applied))))
}

/// The sequence number of `DOMAIN` in a GTID position ("0-100-1234,1-..."), 0 when absent.
fn seq_no(position: &str) -> u64 {
    position
        .split(',')
        .find_map(|gtid| {
            let mut parts = gtid.trim().split('-');
            let domain: u64 = parts.next()?.parse().ok()?;
            let seq: u64 = parts.nth(1)?.parse().ok()?;
            (domain == DOMAIN).then_some(seq)
        })
        .unwrap_or(0)
}

fn section(ctx: &Context, results: &[SizeResult]) -> Section {
    let secs = |p: &PodRounds| median(&p.ready_secs);
    let behind = |p: &PodRounds| {
        let known: Vec<f64> = p.behind.iter().flatten().map(|&b| b as f64).collect();
        let missing = p.behind.len() - known.len();
        let mut text = if known.is_empty() {
            String::new()
        } else {
            let tx = median(&known);
            format!("{tx:.0} tx ({:.1} s)", tx / f64::from(RATE))
        };
        if missing > 0 {
            text.push_str(&format!(
                "{}not replicating yet in {missing} of {}",
                if text.is_empty() { "" } else { "; " },
                p.behind.len()
            ));
        }
        text
    };
    let tutorial = |r: &SizeResult, pod: usize| {
        r.pods
            .iter()
            .find(|p| p.contender == Contender::Tutorial && p.pod == pod)
            .map_or(f64::NAN, secs)
    };
    let summary = Table {
        caption: format!(
            "Median seconds from pod creation to Ready over {} round(s), with {RATE} \
             transactions/s on the primary.",
            ctx.rounds
        ),
        header: [
            "data",
            "contender",
            "pod",
            "seconds to Ready",
            "agent/tutorial",
            "behind at Ready",
        ]
        .map(String::from)
        .into(),
        rows: pod_rows(results, |r, p| {
            let ratio = match p.contender {
                Contender::Agent => format!("{:.2}", secs(p) / tutorial(r, p.pod)),
                Contender::Tutorial => String::new(),
            };
            vec![
                format!("{} MiB ({TABLES} × {} rows)", r.mib, r.rows),
                p.contender.name().to_owned(),
                format!("mysql-{}", p.pod),
                format!("{:.1}", secs(p)),
                ratio,
                behind(p),
            ]
        }),
    };
    let rounds = Table {
        caption: "Every round, in seconds to Ready, in the order the rounds ran.".into(),
        header: ["data", "contender", "pod", "rounds"]
            .map(String::from)
            .into(),
        rows: pod_rows(results, |r, p| {
            let list: Vec<String> = p.ready_secs.iter().map(|s| format!("{s:.1}")).collect();
            vec![
                format!("{} MiB", r.mib),
                p.contender.name().to_owned(),
                format!("mysql-{}", p.pod),
                list.join(", "),
            ]
        }),
    };
    let series = CONTENDERS
        .iter()
        .flat_map(|&contender| {
            (1..PODS).map(move |pod| Series {
                name: format!("{}: mysql-{pod}", contender.name()),
                points: results
                    .iter()
                    .filter_map(|r| {
                        let p = r
                            .pods
                            .iter()
                            .find(|p| p.contender == contender && p.pod == pod)?;
                        Some((r.mib as f64, secs(p)))
                    })
                    .collect(),
            })
        })
        .collect();
    let plot = Plot {
        file: "time-to-ready.png".into(),
        title: format!("Time to Ready of a new replica, MariaDB 10.11, {RATE} tx/s on the primary"),
        x_label: "data (MiB, sysbench tables)".into(),
        y_label: "seconds from pod creation to Ready (median)".into(),
        series,
    };
    Section {
        title: "Time to Ready".into(),
        method: METHOD.into(),
        tables: vec![summary, rounds],
        plots: vec![plot],
        requirements: Vec::new(),
    }
}

/// A table row per size and replica.
fn pod_rows(
    results: &[SizeResult],
    row: impl Fn(&SizeResult, &PodRounds) -> Vec<String>,
) -> Vec<Vec<String>> {
    results
        .iter()
        .flat_map(|r| r.pods.iter().map(|p| row(r, p)))
        .collect()
}

const METHOD: &str = "\
Three pods of the test harness, each contender on a new cluster per round, the contenders \
alternating from round to round. Both run as their manifests say, by the same harness: the \
agent's overlay (`k8s/overlays/mariadb`) and the Kubernetes tutorial's method as a manifest \
(`benches/provisioning/tutorial/`: bash init containers, `ncat` streaming `mariadb-backup` from \
the previous pod's port 3307, a sidecar running `CHANGE MASTER TO` as root, readiness `SELECT 1` \
by an exec probe every 2 s after 5 s). Pod 0 starts, `sysbench oltp_read_write prepare` fills \
it (4 tables), then `sysbench oltp_write_only --rate=100 --threads=2` writes to it until the \
end. Then mysql-1 and mysql-2 start one after the other, as a StatefulSet scaled from 1 to 3 \
does (OrderedReady); each is timed from its creation (its DNS records) to Ready as the \
harness's kubelet sees it (its database container's readinessProbe, after the startupProbe). \
*Behind at Ready* is the number of transactions the primary had committed that the replica \
had not applied at that moment (the primary's `@@gtid_binlog_pos` against \
`BINLOG_GTID_POS` of the replica's executed position, read just after Ready, while writes go \
on), and in seconds of the write rate; the agent's replica must be in sync by its readiness \
rule, every transaction the primary had 5 s before applied (the run fails otherwise). The machine runs other work too: \
single rounds are noisy.";
