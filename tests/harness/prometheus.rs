//! A real Prometheus (Debian's `prometheus` package) in the node namespace, scraping every pod's
//! agent with the README's scrape job, except that the targets are a static list of the pods'
//! addresses: the harness has no Kubernetes API for `kubernetes_sd_configs` to ask. Each target
//! carries the `pod` and `namespace` labels the README's relabeling would give it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use serde_json::json;

use super::cmd::{file_tail, output_text};
use super::layout::{make_dirs, write_file};
use super::{Check, Cluster, poll_until};

/// The README's job name, which the alerts in k8s/monitoring select on.
pub const JOB: &str = "mysql-sts-agent";
/// On the node namespace's loopback: the namespace is this cluster's own, so the port is free.
const LISTEN: &str = "127.0.0.1:9090";
const SCRAPE_INTERVAL: &str = "1s";
const STARTUP: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// One series of a query's result.
#[derive(Debug, Deserialize)]
pub struct Sample {
    #[serde(rename = "metric")]
    pub labels: BTreeMap<String, String>,
    /// `[time, "value"]`, as the API gives it.
    value: (f64, String),
}

impl Sample {
    pub fn value(&self) -> Result<f64> {
        Ok(self.value.1.parse()?)
    }
}

#[derive(Deserialize)]
struct Reply {
    status: String,
    data: Option<ReplyData>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ReplyData {
    result: Vec<Sample>,
}

/// The running Prometheus, asked through its HTTP API from the node namespace.
pub struct Prometheus {
    log: std::path::PathBuf,
}

impl Cluster {
    /// Starts Prometheus scraping every pod's agent every second, its config and storage in
    /// `<root>/prometheus`, and waits until it is ready to answer queries.
    pub async fn start_prometheus(&mut self) -> Result<Prometheus> {
        let dir = self.root.join("prometheus");
        make_dirs(std::slice::from_ref(&dir))?;
        let port = self.agent_port()?;
        let targets: Vec<_> = (0..self.pods.len())
            .map(|n| {
                json!({
                    "targets": [format!("{}:{port}", self.pod_ip(n))],
                    "labels": {"pod": self.naming.hostname(n), "namespace": self.naming.namespace},
                })
            })
            .collect();
        // JSON is YAML, which Prometheus reads.
        let config = json!({
            "global": {"scrape_interval": SCRAPE_INTERVAL},
            "scrape_configs": [{"job_name": JOB, "static_configs": targets}],
        });
        let config_file = dir.join("prometheus.yml");
        write_file(&config_file, &config.to_string(), 0o644)?;
        let mut command = self.node_command("prometheus");
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"));
        self.spawn_on_node("prometheus", command)?;
        let prometheus = Prometheus {
            log: self.root.join("logs/prometheus.log"),
        };
        poll_until("Prometheus to be ready", STARTUP, POLL, || async {
            let mut curl = self.node_command("curl");
            curl.args([
                "-sS",
                "--noproxy",
                "*",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}"])
            .arg(format!("http://{LISTEN}/-/ready"));
            Ok(match output_text(curl).await {
                Ok(code) if code == "200" => Check::Done(()),
                seen => Check::Pending(format!("{seen:?}\n{}", file_tail(&prometheus.log, 20))),
            })
        })
        .await?;
        Ok(prometheus)
    }
}

impl Prometheus {
    /// What the instant query `promql` evaluates to now (`/api/v1/query`).
    pub async fn query(&self, c: &Cluster, promql: &str) -> Result<Vec<Sample>> {
        let mut curl = c.node_command("curl");
        curl.args(["-sS", "--noproxy", "*", "--max-time", "10", "-G"])
            .arg("--data-urlencode")
            .arg(format!("query={promql}"))
            .arg(format!("http://{LISTEN}/api/v1/query"));
        let text = output_text(curl)
            .await
            .with_context(|| format!("Prometheus' log:\n{}", file_tail(&self.log, 20)))?;
        let reply: Reply = serde_json::from_str(&text).with_context(|| text.clone())?;
        ensure!(
            reply.status == "success",
            "query {promql}: {}",
            reply.error.unwrap_or(text)
        );
        Ok(reply.data.context("a success without data")?.result)
    }

    /// Asks `promql` until its result satisfies `wanted`; returns that result.
    pub async fn query_until(
        &self,
        c: &Cluster,
        promql: &str,
        timeout: Duration,
        wanted: impl Fn(&[Sample]) -> Result<bool>,
    ) -> Result<Vec<Sample>> {
        poll_until(&format!("Prometheus: {promql}"), timeout, POLL, || async {
            let samples = self.query(c, promql).await?;
            Ok(if wanted(&samples)? {
                Check::Done(samples)
            } else {
                Check::Pending(format!("{samples:?}"))
            })
        })
        .await
    }
}
