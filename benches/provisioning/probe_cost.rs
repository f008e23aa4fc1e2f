//! Measurement 4: what the kubelet's readinessProbe costs. `GET /readyz` on a replica's sidecar
//! under wrk from the node namespace (where the harness's kubelet probes from), MariaDB 10.11, and
//! the statements the replica's server saw per probe, from its own `Questions` counter.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use mysql_async::prelude::Queryable;

use crate::Context;
use crate::harness::{Cluster, ClusterSpec};
use crate::plot::{Plot, Series};
use crate::report::{Requirement, Section, Table, list, median, yes_no};

const REPLICA: usize = 1;
const CONNECTIONS: [u32; 3] = [1, 16, 64];
/// One wrk run's length, and the quiet interval's.
const WINDOW: Duration = Duration::from_secs(10);
const SMOKE_WINDOW: Duration = Duration::from_secs(1);
/// A probe that reached the server would add at least one statement; the sidecar's own polling
/// (every second) jitters by a few statements per run, far less than this per probe.
const MAX_STATEMENTS_PER_PROBE: f64 = 0.01;
/// The issue's target, at 16 connections.
const TARGET_P99_US: f64 = 1000.0;
const TARGET_CONNECTIONS: u32 = 16;
/// wrk's `done()` prints one line after this marker: requests, duration (µs), errors, p50, p99,
/// p99.9 (µs).
const MARKER: &str = "msa-bench";
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("msa-bench %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// One wrk run.
struct Run {
    connections: u32,
    requests: u64,
    requests_per_s: f64,
    /// Latency percentiles in µs.
    p50: f64,
    p99: f64,
    p999: f64,
    /// What the server counted during the run less its rate at rest over as long.
    statements: f64,
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let window = if ctx.smoke { SMOKE_WINDOW } else { WINDOW };
    let mut runs = Vec::new();
    let mut quiet_rate = 0.0;
    Cluster::run_scenario(ClusterSpec::new(&ctx.agent, 2), async |c| {
        c.start_pod(0).await?;
        c.start_pod(REPLICA).await?;
        let mut script = tempfile::Builder::new().suffix(".lua").tempfile()?;
        script.write_all(WRK_SCRIPT.as_bytes())?;
        let url = format!("http://{}:{}/readyz", c.pod_ip(REPLICA), c.agent_port()?);
        let mut conn = c.sql(REPLICA).await?;
        // At rest the server still sees the sidecar's polling and the harness's SQL.
        let ((), quiet, secs) = counting(&mut conn, async {
            tokio::time::sleep(window).await;
            Ok(())
        })
        .await?;
        quiet_rate = quiet as f64 / secs;
        eprintln!("[bench] at rest: {quiet_rate:.1} statements/s on the replica's server");
        for round in 0..ctx.rounds {
            for k in 0..CONNECTIONS.len() {
                let connections = CONNECTIONS[(round + k) % CONNECTIONS.len()];
                let wrk = wrk(c, script.path(), &url, connections, window);
                let (mut run, counted, secs) = counting(&mut conn, wrk).await?;
                run.statements = counted as f64 - quiet_rate * secs;
                eprintln!(
                    "[bench] round {round}: {connections} connection(s): {:.0} requests/s, \
                     p50 {} µs, p99 {} µs, p99.9 {} µs, {:.1} statements beyond the rest",
                    run.requests_per_s, run.p50, run.p99, run.p999, run.statements
                );
                runs.push(run);
            }
        }
        Ok(())
    })
    .await?;
    Ok(section(ctx, window, quiet_rate, &runs))
}

/// The statements the server counted (`Questions`) while `work` ran, and its seconds.
async fn counting<T>(
    conn: &mut mysql_async::Conn,
    work: impl Future<Output = Result<T>>,
) -> Result<(T, u64, f64)> {
    let before = questions(conn).await?;
    let started = Instant::now();
    let value = work.await?;
    let secs = started.elapsed().as_secs_f64();
    let after = questions(conn).await?;
    Ok((value, after - before, secs))
}

async fn questions(conn: &mut mysql_async::Conn) -> Result<u64> {
    let (_, value): (String, u64) = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Questions'")
        .await?
        .context("no Questions status variable")?;
    Ok(value)
}

/// `wrk` in the node namespace, one thread (on two cores a second one would take the sidecar's).
async fn wrk(
    c: &Cluster,
    script: &std::path::Path,
    url: &str,
    connections: u32,
    window: Duration,
) -> Result<Run> {
    let output = c
        .node_command("wrk")
        .args(["-t1", "--latency", "-c", &connections.to_string()])
        .arg(format!("-d{}s", window.as_secs()))
        .arg("-s")
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk exited with {}:\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let numbers: Vec<f64> = stdout
        .lines()
        .find_map(|line| line.strip_prefix(MARKER))
        .with_context(|| format!("wrk printed no {MARKER} line:\n{stdout}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let &[requests, duration_us, errors, p50, p99, p999] = numbers.as_slice() else {
        anyhow::bail!("wrk's {MARKER} line has {} numbers", numbers.len());
    };
    // A replica's /readyz answers 200: anything else is a failed probe, not a fast one.
    ensure!(errors == 0.0, "wrk saw {errors} errors:\n{stdout}");
    Ok(Run {
        connections,
        requests: requests as u64,
        requests_per_s: requests / (duration_us / 1e6),
        p50,
        p99,
        p999,
        statements: 0.0,
    })
}

fn section(ctx: &Context, window: Duration, quiet_rate: f64, runs: &[Run]) -> Section {
    let at = |connections: u32| runs.iter().filter(move |r| r.connections == connections);
    let med = |connections: u32, value: fn(&Run) -> f64| {
        median(&at(connections).map(value).collect::<Vec<_>>())
    };
    // Over all of a setting's runs: a ratio of sums, not a median of noisy ratios.
    let per_probe = |connections: u32| {
        at(connections).map(|r| r.statements).sum::<f64>()
            / at(connections).map(|r| r.requests as f64).sum::<f64>()
    };
    let summary = Table {
        caption: format!(
            "Medians of {} round(s) of {} s per setting; latencies in µs. Statements per probe: \
             what the replica's server counted during the runs less its rate at rest ({quiet_rate:.1} \
             statements/s), over the requests.",
            ctx.rounds,
            window.as_secs()
        ),
        header: [
            "connections",
            "requests/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "statements per probe",
        ]
        .map(String::from)
        .into(),
        rows: CONNECTIONS
            .iter()
            .map(|&n| {
                vec![
                    n.to_string(),
                    format!("{:.0}", med(n, |r| r.requests_per_s)),
                    format!("{:.0}", med(n, |r| r.p50)),
                    format!("{:.0}", med(n, |r| r.p99)),
                    format!("{:.0}", med(n, |r| r.p999)),
                    statements_cell(per_probe(n)),
                ]
            })
            .collect(),
    };
    let rounds = Table {
        caption: "Every round, in the order the rounds ran.".into(),
        header: [
            "connections",
            "requests/s",
            "p99 µs",
            "p99.9 µs",
            "requests",
        ]
        .map(String::from)
        .into(),
        rows: CONNECTIONS
            .iter()
            .map(|&n| {
                let values =
                    |value: fn(&Run) -> f64| list(&at(n).map(value).collect::<Vec<_>>(), 0);
                vec![
                    n.to_string(),
                    values(|r| r.requests_per_s),
                    values(|r| r.p99),
                    values(|r| r.p999),
                    values(|r| r.requests as f64),
                ]
            })
            .collect(),
    };
    let p99 = med(TARGET_CONNECTIONS, |r| r.p99);
    let worst = CONNECTIONS
        .iter()
        .map(|&n| per_probe(n))
        .fold(0.0, |a: f64, b| if b.abs() > a.abs() { b } else { a });
    let target = Table {
        caption: "The issue's target.".into(),
        header: ["target", "measured", "met"].map(String::from).into(),
        rows: vec![
            vec![
                format!("p99 under {TARGET_P99_US:.0} µs at {TARGET_CONNECTIONS} connections"),
                format!("{p99:.0} µs"),
                yes_no(p99 < TARGET_P99_US),
            ],
            vec![
                "zero statements per probe".into(),
                format!("{} (the largest of the settings)", statements_cell(worst)),
                yes_no(worst.abs() < MAX_STATEMENTS_PER_PROBE),
            ],
        ],
    };
    let line = |name: &str, value: fn(&Run) -> f64| Series {
        name: name.into(),
        points: CONNECTIONS
            .iter()
            .map(|&n| (f64::from(n), med(n, value)))
            .collect(),
    };
    let latency = Plot {
        file: "probe-latency.png".into(),
        title: "GET /readyz on a replica's sidecar, wrk from the node namespace".into(),
        x_label: "connections".into(),
        y_label: "latency µs (median of rounds)".into(),
        series: vec![
            line("p50", |r| r.p50),
            line("p99", |r| r.p99),
            line("p99.9", |r| r.p999),
        ],
    };
    let throughput = Plot {
        file: "probe-throughput.png".into(),
        title: "GET /readyz on a replica's sidecar: throughput".into(),
        x_label: "connections".into(),
        y_label: "requests/s (median of rounds)".into(),
        series: vec![line("requests/s", |r| r.requests_per_s)],
    };
    let requirements = CONNECTIONS
        .iter()
        .map(|&n| Requirement {
            what: format!(
                "no statement per probe at {n} connection(s): |{:.4}| < {MAX_STATEMENTS_PER_PROBE}",
                per_probe(n)
            ),
            met: per_probe(n).abs() < MAX_STATEMENTS_PER_PROBE,
        })
        .collect();
    Section {
        title: "Probe cost".into(),
        method: METHOD.into(),
        tables: vec![summary, target, rounds],
        plots: vec![latency, throughput],
        requirements,
    }
}

/// Statements per probe to 4 decimals; the polling's jitter may leave a tiny negative, shown as
/// the 0 it is at that precision.
fn statements_cell(per_probe: f64) -> String {
    let shown = if per_probe.abs() < 0.00005 {
        0.0
    } else {
        per_probe
    };
    format!("{shown:.4}")
}

const METHOD: &str = "\
Two pods of the test harness, MariaDB 10.11, the manifest's pod template; pod 1 is a replica \
cloned from pod 0 and Ready. `wrk --latency -t1 -c N` runs in the node namespace, where the \
harness's kubelet probes from, against pod 1's sidecar `GET /readyz` (the database container's \
readinessProbe), for N = 1, 16 and 64 connections, the order rotating from round to round; a \
Lua `done()` prints the requests, the duration, the errors (there must be none: every answer \
is a 200) and the latency percentiles 50, 99 and 99.9. One wrk thread: on two cores a second \
one would take the sidecar's. wrk is closed-loop (a connection sends its next request when the \
answer came), so the latencies are those of a saturated sidecar at 16 and 64 connections, far \
more than a kubelet's one probe every 2 s.

Statements per probe: `SHOW GLOBAL STATUS LIKE 'Questions'` on the replica's server before \
and after each wrk run; first over a quiet interval as long as a run, which gives the rate of \
what the server sees anyway (the sidecar's polling every second, the harness's own reads). \
Statements per probe = (the run's count - that rate x the run's seconds) / the run's requests. \
A probe that ran even one statement would show 1; the polling's jitter stays far below 0.01, \
the bound the smoke run enforces. wrk, both servers and both sidecars share the machine's \
cores, with other work: the latencies are noisy, the statement count is not.";
