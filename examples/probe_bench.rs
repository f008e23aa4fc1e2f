//! Probe latency benchmark: wrk against a replica's /readyz and /status from the node
//! namespace (where the kubelet probes from), on a simulated 2-pod StatefulSet.
//! Run by `scripts/bench.sh`; needs root and wrk. Numbers are recorded in README.md.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use harness::{Cluster, ClusterSpec};

#[tokio::main]
async fn main() -> Result<()> {
    let agent = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .context("usage: probe_bench <agent binary>")?,
    );
    Cluster::run_scenario(ClusterSpec::new(agent, 2), async |c| {
        c.start_pod(0).await?;
        c.start_pod(1).await?;
        let pid = c.sidecar_pid(1).context("sidecar pid")?;
        for path in ["/readyz", "/status"] {
            let url = format!("http://{}:8080{path}", c.pod_ip(1));
            let mut wrk = c.node_command("wrk");
            wrk.args(["-t1", "-c4", "-d5s", "--latency", &url]);
            let out = wrk.output().await?;
            ensure!(
                out.status.success(),
                "wrk failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            println!(
                "== GET {path} on a replica, 4 connections, 5 s\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
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
