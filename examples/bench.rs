//! Benchmarks on a simulated 2-pod StatefulSet, run by `scripts/bench.sh [mariadb|mysql]`
//! (root, wrk):
//! - clone throughput: mysql-1 clones BENCH_MB MiB (default 256) of table data from mysql-0;
//! - probe latency: wrk against the replica's /readyz and /status from the node namespace,
//!   where the kubelet probes from; and the sidecar's memory afterwards.
//!
//! Numbers are recorded in README.md.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use harness::{Cluster, ClusterSpec, DbVersion};
use mysql_async::prelude::Queryable;

/// Rows of about 256 bytes: 4096 of them per MiB.
const ROWS_PER_MIB: u64 = 4096;

#[tokio::main]
async fn main() -> Result<()> {
    const USAGE: &str = "usage: bench mariadb|mariadb-11.8|mysql <agent binary>";
    let version = std::env::args()
        .nth(1)
        .and_then(|name| DbVersion::named(&name))
        .context(USAGE)?;
    let agent = PathBuf::from(std::env::args_os().nth(2).context(USAGE)?);
    let mib: u64 = std::env::var("BENCH_MB").map_or(Ok(256), |v| v.parse())?;
    Cluster::run_scenario(ClusterSpec::new(agent, 2).version(version), async |c| {
        c.start_pod(0).await?;
        load(c, mib).await?;

        let started = Instant::now();
        c.start_pod(1).await?;
        println!(
            "== mysql-1 Ready after {:.1}s, clone included",
            started.elapsed().as_secs_f64()
        );
        for line in c.log_text(1, "init-1.log").lines() {
            let timings = [
                "clone stream complete",
                "backup prepared",
                "temporary server initialized",
                "clone copied and recovered",
                "clone complete",
            ];
            if timings.iter().any(|t| line.contains(t)) {
                println!(
                    "{}",
                    line.split_once("Z ")
                        .map_or(line, |(_, rest)| rest.trim_start())
                );
            }
        }

        for path in ["/readyz", "/status"] {
            let url = format!("http://{}:{}{path}", c.pod_ip(1), c.agent_port()?);
            let out = c
                .node_command("wrk")
                .args(["-t1", "-c4", "-d5s", "--latency", &url])
                .output()
                .await?;
            ensure!(
                out.status.success(),
                "wrk: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            println!(
                "== GET {path} on a replica, 4 connections, 5 s\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let pid = c.sidecar_pid(1).context("sidecar pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("VmRSS: ?");
        println!("== sidecar memory after the load: {rss}");
        Ok(())
    })
    .await
}

async fn load(c: &Cluster, mib: u64) -> Result<()> {
    let started = Instant::now();
    let mut conn = c.sql(0).await?;
    conn.query_drop("CREATE DATABASE bench").await?;
    conn.query_drop("CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, pad CHAR(240) NOT NULL) ENGINE=InnoDB")
        .await?;
    let chunk = 65_536;
    for _ in 0..(mib * ROWS_PER_MIB).div_ceil(chunk) {
        conn.query_drop(format!(
            "INSERT INTO bench.t (pad) SELECT LEFT(SHA2(RAND(), 512), 240) \
             FROM information_schema.COLLATIONS a, information_schema.COLLATIONS b LIMIT {chunk}"
        ))
        .await?;
    }
    println!(
        "== loaded {mib} MiB of rows on mysql-0 in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
