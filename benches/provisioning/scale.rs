//! Measurement 6: scale, MariaDB 10.11: how long a StatefulSet of 1 to 5 replicas takes to be
//! all Ready, against the sum of its replicas' single times, with writes going on at a fixed rate
//! on the primary; the cost must grow linearly.

use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::Context;
use crate::clone_throughput::{CloneLog, JSON_LOG, clone_log};
use crate::harness::{Cluster, ClusterSpec};
use crate::plot::{Plot, Series};
use crate::report::{Section, Table, list, median};
use crate::time_to_ready::{RATE, TABLES, fill_and_write, rows_per_table};

/// Replicas the set is scaled to, one after the other.
const MAX_REPLICAS: usize = 5;
const SMOKE_MAX_REPLICAS: usize = 2;
/// Data on pod 0, in MiB of sysbench tables. Large enough that the clone is a visible part of a
/// replica's time to Ready (about a second of ~6 s), small enough that a round (sysbench prepare,
/// then five replicas in turn) takes about a minute and three rounds stay under ~5 min on two
/// cores; the clone's own growth with size is measurement 1's.
const DATA_MIB: u64 = 70;
/// The log file of a pod's first run of the agent's init container.
const INIT_LOG: &str = "init-1.log";

/// One replica of one round.
struct Replica {
    /// From its creation to Ready.
    ready_secs: f64,
    /// From mysql-1's creation to this replica's Ready: the set of replicas up to this one all
    /// Ready.
    all_ready_secs: f64,
    clone: CloneLog,
}

/// Every round's replicas, mysql-1 first.
struct Rounds {
    mib: u64,
    rows: u64,
    replicas: usize,
    rounds: Vec<Vec<Replica>>,
}

impl Rounds {
    /// Per round, `value` of a set of `n` replicas.
    fn per_round(&self, n: usize, value: impl Fn(&[Replica]) -> f64) -> Vec<f64> {
        self.rounds.iter().map(|round| value(&round[..n])).collect()
    }

    /// Per round, `value` of replica `k` (1 is mysql-1).
    fn of_replica(&self, k: usize, value: impl Fn(&Replica) -> f64) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|round| value(&round[k - 1]))
            .collect()
    }

    /// The set sizes 1..=replicas with the median of `value` over the rounds.
    fn medians(&self, value: impl Fn(&[Replica]) -> f64) -> Vec<(f64, f64)> {
        (1..=self.replicas)
            .map(|n| (n as f64, median(&self.per_round(n, &value))))
            .collect()
    }
}

fn all_ready(set: &[Replica]) -> f64 {
    set.last().map_or(0.0, |last| last.all_ready_secs)
}

fn sum_ready(set: &[Replica]) -> f64 {
    set.iter().map(|r| r.ready_secs).sum()
}

fn sum_clone(set: &[Replica]) -> f64 {
    set.iter().map(|r| r.clone.secs()).sum()
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let (mib, replicas) = if ctx.smoke {
        (crate::SMOKE_READY_MIB, SMOKE_MAX_REPLICAS)
    } else {
        (DATA_MIB, MAX_REPLICAS)
    };
    let rows = rows_per_table(mib);
    let mut rounds = Vec::new();
    for round in 0..ctx.rounds {
        let measured = measure(ctx, rows, replicas)
            .await
            .with_context(|| format!("scale to {replicas} replicas, round {}", round + 1))?;
        rounds.push(measured);
    }
    Ok(section(&Rounds {
        mib,
        rows,
        replicas,
        rounds,
    }))
}

/// A new cluster: pod 0 with the data and the writes at `RATE`, then replicas 1..=`replicas`
/// started in turn (OrderedReady), each as soon as the previous one is Ready.
async fn measure(ctx: &Context, rows: u64, replicas: usize) -> Result<Vec<Replica>> {
    let spec = ClusterSpec::new(&ctx.agent, replicas + 1).agent_env(JSON_LOG.0, JSON_LOG.1);
    let mut measured = Vec::new();
    Cluster::run_scenario(spec, async |c| {
        c.start_pod(0).await?;
        fill_and_write(c, rows).await?;
        for n in 1..=replicas {
            c.start_pod(n).await?;
        }
        let first = created_at(c, 1)?;
        for n in 1..=replicas {
            let ready_after = c.ready_after(n).context("Ready")?;
            let ready_at = created_at(c, n)? + ready_after;
            let clone = clone_log(&c.log_text(n, INIT_LOG))
                .with_context(|| format!("pod {n}'s {INIT_LOG}"))?;
            let replica = Replica {
                ready_secs: ready_after.as_secs_f64(),
                all_ready_secs: (ready_at - first).as_secs_f64(),
                clone,
            };
            eprintln!(
                "[bench] scale: pod {n} Ready after {:.1} s (clone {:.2} s), all {n} Ready after \
                 {:.1} s",
                replica.ready_secs,
                replica.clone.secs(),
                replica.all_ready_secs
            );
            measured.push(replica);
        }
        Ok(())
    })
    .await?;
    Ok(measured)
}

fn created_at(c: &Cluster, n: usize) -> Result<Instant> {
    c.created_at(n)
        .with_context(|| format!("pod {n} was never created"))
}

/// A least-squares line through points.
struct Fit {
    slope: f64,
    intercept: f64,
    r_squared: f64,
    /// The largest distance of a point from the line, in the points' unit.
    max_deviation: f64,
}

impl Fit {
    fn at(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }
}

/// The least-squares line through `points` (at least two distinct x).
fn linear_fit(points: &[(f64, f64)]) -> Fit {
    let count = points.len() as f64;
    let mean = |axis: fn(&(f64, f64)) -> f64| points.iter().map(axis).sum::<f64>() / count;
    let (x_mean, y_mean) = (mean(|p| p.0), mean(|p| p.1));
    let sum = |term: &dyn Fn(f64, f64) -> f64| points.iter().map(|&(x, y)| term(x, y)).sum::<f64>();
    let sxx = sum(&|x, _| (x - x_mean).powi(2));
    let sxy = sum(&|x, y| (x - x_mean) * (y - y_mean));
    let syy = sum(&|_, y| (y - y_mean).powi(2));
    let slope = sxy / sxx;
    let intercept = y_mean - slope * x_mean;
    let residual = sum(&|x, y| (y - slope * x - intercept).powi(2));
    let max_deviation = points
        .iter()
        .map(|&(x, y)| (y - slope * x - intercept).abs())
        .fold(0.0, f64::max);
    Fit {
        slope,
        intercept,
        // All points equal: the line is exact.
        r_squared: if syy > 0.0 { 1.0 - residual / syy } else { 1.0 },
        max_deviation,
    }
}

fn section(r: &Rounds) -> Section {
    let sets = [
        (
            "all Ready (one set of N)",
            r.medians(all_ready),
            all_ready as fn(&[Replica]) -> f64,
        ),
        (
            "sum of the replicas' times to Ready",
            r.medians(sum_ready),
            sum_ready,
        ),
        (
            "sum of the replicas' clones",
            r.medians(sum_clone),
            sum_clone,
        ),
    ];
    let all_ready_fit = linear_fit(&sets[0].1);
    let per_n = Table {
        caption: format!(
            "Medians over {} round(s), in seconds, {} MiB on pod 0 ({TABLES} × {} rows), \
             {RATE} transactions/s on it; *fit* is the least-squares line through the all-Ready \
             medians.",
            r.rounds.len(),
            r.mib,
            r.rows
        ),
        header: [
            "replicas N",
            "all Ready",
            "sum of times to Ready",
            "sum of clones",
            "all Ready / N",
            "fit",
            "all Ready − fit",
        ]
        .map(String::from)
        .into(),
        rows: (0..r.replicas)
            .map(|k| {
                let (n, all) = sets[0].1[k];
                vec![
                    format!("{n}"),
                    format!("{all:.1}"),
                    format!("{:.1}", sets[1].1[k].1),
                    format!("{:.2}", sets[2].1[k].1),
                    format!("{:.1}", all / n),
                    format!("{:.1}", all_ready_fit.at(n)),
                    format!("{:+.1}", all - all_ready_fit.at(n)),
                ]
            })
            .collect(),
    };
    let fits = Table {
        caption: "Least-squares lines through the medians against N: the cost per replica \
                  (slope), R² and the largest distance of a median from its line."
            .into(),
        header: [
            "seconds of",
            "slope s/replica",
            "intercept s",
            "R²",
            "max deviation s",
        ]
        .map(String::from)
        .into(),
        rows: sets
            .iter()
            .map(|(name, medians, _)| {
                let fit = linear_fit(medians);
                vec![
                    (*name).to_owned(),
                    format!("{:.2}", fit.slope),
                    format!("{:.2}", fit.intercept),
                    format!("{:.4}", fit.r_squared),
                    format!("{:.2}", fit.max_deviation),
                ]
            })
            .collect(),
    };
    let replica_median = |k: usize, value: fn(&Replica) -> f64| median(&r.of_replica(k, value));
    let ready = |replica: &Replica| replica.ready_secs;
    let clone = |replica: &Replica| replica.clone.secs();
    let streamed = |replica: &Replica| replica.clone.bytes as f64 / 1e6;
    let per_replica = Table {
        caption: "Each replica alone, medians over the rounds: mysql-1 clones from the primary, \
                  every later one from the replica before it (ordinal − 1)."
            .into(),
        header: [
            "replica",
            "donor",
            "time to Ready s",
            "/ mysql-1's",
            "clone s",
            "/ mysql-1's",
            "streamed MB",
        ]
        .map(String::from)
        .into(),
        rows: (1..=r.replicas)
            .map(|k| {
                vec![
                    format!("mysql-{k}"),
                    format!("mysql-{}", k - 1),
                    format!("{:.1}", replica_median(k, ready)),
                    format!("{:.2}", replica_median(k, ready) / replica_median(1, ready)),
                    format!("{:.2}", replica_median(k, clone)),
                    format!("{:.2}", replica_median(k, clone) / replica_median(1, clone)),
                    format!("{:.0}", replica_median(k, streamed)),
                ]
            })
            .collect(),
    };
    let rounds = Table {
        caption: "Every round, in seconds, in the order the rounds ran.".into(),
        header: std::iter::once("replicas N")
            .chain(sets.iter().map(|&(name, _, _)| name))
            .map(String::from)
            .collect(),
        rows: (1..=r.replicas)
            .map(|n| {
                let mut row = vec![format!("{n}")];
                row.extend(
                    sets.iter()
                        .map(|&(_, _, value)| list(&r.per_round(n, value), 1)),
                );
                row
            })
            .collect(),
    };
    let plot = Plot {
        file: "scale.png".into(),
        title: format!("Scale: N replicas of MariaDB 10.11, {RATE} tx/s on the primary"),
        x_label: "replicas N".into(),
        y_label: "seconds (median)".into(),
        series: sets
            .iter()
            .map(|(name, medians, _)| Series {
                name: (*name).to_owned(),
                points: medians.clone(),
            })
            .collect(),
    };
    Section {
        title: "Scale".into(),
        method: METHOD.into(),
        tables: vec![per_n, fits, per_replica, rounds],
        plots: vec![plot],
        requirements: Vec::new(),
    }
}

const METHOD: &str = "\
A StatefulSet scaled from its primary to N replicas, N = 1 to 5, MariaDB 10.11, the agent's \
overlay, on a new cluster of the test harness per round. Pod 0 starts and is filled as in *Time \
to Ready* (`sysbench oltp_read_write prepare`, 4 tables), then `sysbench oltp_write_only \
--rate=100 --threads=2` writes to it until the end. Then mysql-1 to mysql-5 start one after the \
other, each created as soon as the one before is Ready, as the StatefulSet controller does with \
the default `podManagementPolicy: OrderedReady`; every replica clones from ordinal − 1, so \
mysql-2 and later clone from a replica.

One cluster scaled to 5 measures every N: under OrderedReady, pod k+1 does not exist before \
pod k is Ready, so pods 1..N of a set of 5 run exactly as a set of N replicas would (the later \
pods do not exist yet while they come up), and the set of N is all Ready when its last pod, \
mysql-N, is. *All Ready* for N is the time from mysql-1's creation (its DNS records) to \
mysql-N's Ready as the harness's kubelet sees it (its readinessProbe); separate clusters per \
N would repeat the same first pods. *Sum of times to Ready* adds each replica's own time from \
its creation to Ready: all Ready minus that sum is what passes between a pod's Ready and the \
next one's creation. *Sum of clones* adds each replica's clone as its init container's own \
log says (`clone stream complete` and `backup prepared`, as in *Clone throughput*). A linear \
cost is a straight line through the all-Ready medians: its slope is the cost of one more \
replica, R² near 1 and a small maximum deviation say how straight. The writes go on all along, \
so later replicas clone a little more data and catch up on the writes made meanwhile. The \
machine runs other work too: single rounds are noisy.";
