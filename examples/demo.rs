//! The demo: a simulated 3-pod StatefulSet on this machine (network namespaces as pods,
//! dnsmasq as cluster DNS, real MariaDB or MySQL servers), the agent as init container and
//! sidecar in each pod. Run by `scripts/demo.sh [mariadb|mysql]`; needs root. Everything is torn
//! down at the end.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use harness::{Cluster, ClusterSpec, DbVersion};
use mysql_async::prelude::Queryable;

#[tokio::main]
async fn main() -> Result<()> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mariadb".to_owned());
    let version = DbVersion::named(&name).with_context(|| {
        format!("usage: demo [mariadb|mariadb-11.8|mysql] [AGENT]: unknown server {name:?}")
    })?;
    let agent = match std::env::args_os().nth(2) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("locating target/<profile>")?
            .join("mysql-sts-agent"),
    };
    Cluster::run_scenario(ClusterSpec::new(agent, 3).version(version), async |c| {
        demo(c).await
    })
    .await
}

fn section(title: &str) {
    println!("\n=== {title}");
}

async fn demo(c: &mut Cluster) -> Result<()> {
    section("mysql-0: init container, server, sidecar; Ready means writable primary");
    let started = Instant::now();
    c.start_pod(0).await?;
    println!(
        "mysql-0 Ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    section("writing rows on mysql-0");
    let mut primary = c.sql(0).await?;
    primary.query_drop("CREATE DATABASE app").await?;
    primary
        .query_drop(
            "CREATE TABLE app.greetings (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64))",
        )
        .await?;
    primary
        .query_drop(
            "INSERT INTO app.greetings (note) VALUES ('written on mysql-0 before any replica')",
        )
        .await?;

    for n in [1, 2] {
        section(&format!(
            "mysql-{n}: clones mysql-{}, replicates from mysql-0",
            n - 1
        ));
        let started = Instant::now();
        c.start_pod(n).await?;
        println!(
            "mysql-{n} Ready after {:.1}s (clone, server start, caught up)",
            started.elapsed().as_secs_f64()
        );
        primary
            .exec_drop(
                "INSERT INTO app.greetings (note) VALUES (?)",
                (format!("written after mysql-{n} joined"),),
            )
            .await?;
    }

    section("what each pod's agent decided (from its logs)");
    for n in 0..3 {
        for log in ["init-1.log", "sidecar-1.log"] {
            for line in c.log_text(n, log).lines().filter(|l| is_decision(l)) {
                println!(
                    "mysql-{n} {:<8} {}",
                    log.trim_end_matches("-1.log"),
                    strip_timestamp(line)
                );
            }
        }
    }

    section("probes and status, as the kubelet sees them");
    for n in 0..3 {
        let ready = c.http_get(n, "/readyz", None).await?;
        println!("mysql-{n} GET /readyz -> {}", ready.text().trim_end());
    }
    let status: serde_json::Value =
        serde_json::from_slice(&c.http_get(2, "/status", None).await?.body)?;
    println!(
        "mysql-2 GET /status ->\n{}",
        serde_json::to_string_pretty(&status)?
    );

    section("the rows on every pod");
    let last_note = "written after mysql-2 joined".to_owned();
    for n in 0..3 {
        let mut conn = c.sql(n).await?;
        // A replica applies the last write within milliseconds; wait for it rather than guess.
        harness::poll_until(
            "the last row",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(50),
            || async {
                let notes: Vec<String> = c
                    .sql(n)
                    .await?
                    .query("SELECT note FROM app.greetings ORDER BY id")
                    .await?;
                Ok(if notes.contains(&last_note) {
                    harness::Check::Done(())
                } else {
                    harness::Check::Pending(format!("{notes:?}"))
                })
            },
        )
        .await?;
        let notes: Vec<String> = conn
            .query("SELECT note FROM app.greetings ORDER BY id")
            .await?;
        let checksum: Option<(String, u64)> =
            conn.query_first("CHECKSUM TABLE app.greetings").await?;
        println!(
            "mysql-{n}: {notes:?} checksum {}",
            checksum.map_or(0, |(_, sum)| sum)
        );
    }
    section("tearing down: agents, replicas, primary, DNS, namespaces");
    Ok(())
}

fn is_decision(line: &str) -> bool {
    [
        "identity from the hostname",
        "datadir",
        "clone complete",
        "clone stream complete",
        "clone copied and recovered",
        "CLONE INSTANCE",
        "clone served",
        "replication",
        "ready:",
    ]
    .iter()
    .any(|key| line.contains(key))
}

fn strip_timestamp(line: &str) -> &str {
    line.split_once("Z ")
        .map_or(line, |(_, rest)| rest.trim_start())
}
