//! End-to-end: a simulated StatefulSet (network namespaces as pods, dnsmasq as cluster DNS,
//! real servers) runs the agent as init container and sidecar. Needs root.
//!
//! Every scenario runs against each database image: MariaDB 10.11 (Debian 12's packages),
//! MariaDB 11.8 (a Debian 13 chroot) and MySQL 9.7 (a Debian unstable chroot); the `scenarios!`
//! lists at the end make one test of each per image. The pods run as the template says (uid 999,
//! no capabilities) on volumes as provisioners make them: `FsGroup` unless a scenario names
//! another layout, and each layout is some scenario's, so every image meets every layout.
//!
//! Each scenario deploys under names of its own (`ClusterSpec::names`), whatever the image: a
//! set name with a hyphen, a namespace other than `default`, a cluster domain other than
//! `cluster.local` (which the agent must find in the pod's resolv.conf), a headless Service not
//! named after the set, a first ordinal other than 0. `three_pods_come_up_in_order_and_hold_every_row`
//! uses all of them at once; the interrupted-clone scenario keeps every default, the shipped
//! manifests as they are.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use harness::data::{
    POLL, assert_same_data, datadir_entries, ensure_datadir_empty, insert, primary_with_data,
    purge_binlogs, row_count, set_writable, wait_for_partial_clone, write_errant,
};
use harness::prometheus::{JOB, Prometheus};
use harness::{
    Check, Cluster, ClusterSpec, Credentials, DbVersion, Finding, Flavor, Naming, SecretSearch,
    Secrets, VolumeLayout, poll_until,
};
use mysql_async::prelude::Queryable;

const READY: Duration = Duration::from_secs(60);
/// Enough for a few MB in every clone.
const INITIAL_ROWS: u64 = 20_000;

/// Runs a scenario on a fresh cluster under `naming`; a failing one keeps its logs for reading.
async fn scenario(
    version: DbVersion,
    pods: usize,
    volumes: VolumeLayout,
    naming: Naming,
    body: impl AsyncFnOnce(&mut Cluster) -> Result<()>,
) -> Result<()> {
    Cluster::run_scenario(spec(version, pods, volumes, naming), body).await
}

fn spec(version: DbVersion, pods: usize, volumes: VolumeLayout, naming: Naming) -> ClusterSpec {
    ClusterSpec::new(env!("CARGO_BIN_EXE_mysql-sts-agent"), pods)
        .version(version)
        .volumes(volumes)
        .names(naming)
}

/// Every file and dir of pod n's datadir belongs to the user its server runs as: whoever wrote
/// them (a clone, the agent as root), the server can use them.
fn assert_datadir_is_the_servers(c: &Cluster, n: usize) -> Result<()> {
    let pid = c.server_pid(n).context("no server runs")?;
    let uid = Credentials::of(pid)?.uid;
    let mut strangers = Vec::new();
    let mut dirs = vec![c.datadir(n)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if std::os::unix::fs::MetadataExt::uid(&meta) != uid {
                strangers.push(entry.path());
            }
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    ensure!(
        strangers.is_empty(),
        "{}'s server runs as uid {uid}, but does not own {strangers:?}",
        pod(c, n)
    );
    Ok(())
}

/// Pod n's name, e.g. "billing-db-11" for harness pod 1 of a set whose ordinals start at 10.
fn pod(c: &Cluster, n: usize) -> String {
    c.naming().hostname(n)
}

/// Polls pod 1's probe at `path` until its answer satisfies `wanted`; returns that answer.
async fn readyz_until(
    c: &Cluster,
    path: &str,
    wanted: impl Fn(&harness::HttpReply) -> bool,
) -> Result<harness::HttpReply> {
    let what = format!("{}'s {path} to give the expected answer", pod(c, 1));
    poll_until(&what, READY, POLL, || async {
        let reply = c.http_get(1, path, None).await?;
        Ok(if wanted(&reply) {
            Check::Done(reply)
        } else {
            Check::Pending(reply.text())
        })
    })
    .await
}

fn status_json(reply: &harness::HttpReply) -> Result<serde_json::Value> {
    ensure!(reply.status == 200, "/status answered {}", reply.status);
    Ok(serde_json::from_slice(&reply.body)?)
}

/// Pod n's `/metrics` as Prometheus scrapes it, once `promtool check metrics` found it
/// well-formed and without a lint problem.
async fn scrape_metrics(c: &Cluster, n: usize) -> Result<String> {
    let url = format!("http://{}:{}/metrics", c.pod_ip(n), c.agent_port()?);
    let mut curl = c.node_command("curl");
    curl.args(["-sS", "--fail", "--noproxy", "*", "--max-time", "10"])
        .args(["-w", "%{content_type}"])
        .arg(&url);
    let fetched = curl.output().await.context("running curl")?;
    ensure!(
        fetched.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    // The body ends with a newline; curl writes the content type after it.
    let fetched = String::from_utf8(fetched.stdout)?;
    let (text, content_type) = fetched.rsplit_once('\n').context("an empty /metrics")?;
    ensure!(
        content_type == "text/plain; version=0.0.4; charset=utf-8",
        "{url} is {content_type:?}"
    );
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running promtool (scripts/deps.sh installs it)")?;
    let mut stdin = promtool.stdin.take().context("promtool's stdin")?;
    tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{text}\n").as_bytes()).await?;
    drop(stdin);
    let checked = promtool.wait_with_output().await?;
    let problems = [checked.stdout, checked.stderr].concat();
    ensure!(
        checked.status.success() && problems.is_empty(),
        "promtool check metrics on {}'s /metrics ({}): {}\n{text}",
        pod(c, n),
        checked.status,
        String::from_utf8_lossy(&problems)
    );
    Ok(format!("{text}\n"))
}

/// The value of the one series `series` (name and labels) in a scrape.
fn metric(text: &str, series: &str) -> Result<f64> {
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .with_context(|| format!("no {series} in:\n{text}"))?;
    Ok(value.parse()?)
}

/// The bytes of the last clone a scrape shows on `side` (received, served), once its duration,
/// rate and completion time are found plausible.
fn last_clone_bytes(text: &str, side: &str) -> Result<f64> {
    let series = |name: &str| {
        metric(
            text,
            &format!("mysql_sts_agent_last_clone_{name}{{side=\"{side}\"}}"),
        )
    };
    let bytes = series("bytes")?;
    let secs = series("duration_seconds")?;
    let rate = series("rate_bytes_per_second")?;
    ensure!(
        bytes > 0.0 && secs > 0.0 && (rate - bytes / secs).abs() < 1.0,
        "{side}: {bytes} bytes in {secs} s at {rate} bytes/s"
    );
    ensure!(series("completed_timestamp_seconds")? > 1.7e9);
    Ok(bytes)
}

/// A scrape's count of `family` (e.g. `clone_serve_refusals_total`) for `reason`.
fn by_reason(text: &str, family: &str, reason: &str) -> Result<f64> {
    metric(
        text,
        &format!("mysql_sts_agent_{family}{{reason=\"{reason}\"}}"),
    )
}

/// Inserts a row every few milliseconds on pod 0 until stopped; counts what it wrote.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Writer {
    async fn start(c: &Cluster) -> Result<Writer> {
        let mut conn = c.sql(0).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (stop_flag, count) = (stop.clone(), written.clone());
        let task = tokio::spawn(async move {
            while !stop_flag.load(Ordering::Relaxed) {
                conn.query_drop("INSERT INTO app.t (note, pad) VALUES ('during', 'z')")
                    .await?;
                count.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        });
        Ok(Writer {
            stop,
            written,
            task,
        })
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await??;
        Ok(self.written.load(Ordering::Relaxed))
    }
}

async fn three_pods_come_up_in_order_and_hold_every_row(version: DbVersion) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default()
        .statefulset("billing-db")
        .service("billing-db-hl")
        .namespace("shop")
        .cluster_domain("k8s.example.net")
        .first_ordinal(10);
    scenario(version, 3, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;

        let writer = Writer::start(c).await?;
        for n in [1, 2] {
            let before = writer.written();
            c.start_pod(n).await?;
            ensure!(
                writer.written() > before,
                "no row was written while pod {n} was cloned and started"
            );
        }
        let during = writer.finish().await?;
        insert(c, 0, "after").await?;

        for n in 0..3 {
            let reply = c.http_get(n, "/readyz", None).await?;
            ensure!(
                reply.status == 200,
                "{} /readyz: {} {}",
                pod(c, n),
                reply.status,
                reply.text()
            );
        }
        for n in [1, 2] {
            assert_same_data(c, n).await?;
            assert_datadir_is_the_servers(c, n)?;
        }
        ensure!(row_count(c, 2).await? == 20_000 + during + 1);

        // What Prometheus scrapes from a primary and a replica.
        let (flavor_label, server) = match flavor {
            Flavor::MariaDb => ("mariadb", "MariaDB "),
            Flavor::MySql => ("mysql", "MySQL "),
        };
        let primary = scrape_metrics(c, 0).await?;
        // The sidecar's last poll may predate the test's last write: wait for one that saw it.
        let behind = "mysql_sts_agent_replica_transactions_behind";
        let replica = poll_until(
            "pod 1's metrics to count 0 transactions behind",
            READY,
            POLL,
            || async {
                let text = scrape_metrics(c, 1).await?;
                Ok(match metric(&text, behind) {
                    Ok(0.0) => Check::Done(text),
                    seen => Check::Pending(format!("{seen:?}")),
                })
            },
        )
        .await?;
        for text in [&primary, &replica] {
            let build = text
                .lines()
                .find(|line| line.starts_with("mysql_sts_agent_build_info{"))
                .with_context(|| format!("no build info in:\n{text}"))?;
            ensure!(
                build.contains(&format!("flavor=\"{flavor_label}\""))
                    && build.contains(&format!("server_version=\"{server}"))
                    && build.ends_with("} 1"),
                "{build}"
            );
            ensure!(metric(text, "mysql_sts_agent_ready")? == 1.0, "{text}");
        }
        let writable = "mysql_sts_agent_readiness_reason{kind=\"writable_primary\"}";
        ensure!(metric(&primary, writable)? == 1.0);
        ensure!(!primary.contains("mysql_sts_agent_replica_"), "{primary}");
        for (series, value) in [
            ("mysql_sts_agent_readiness_reason{kind=\"in_sync\"}", 1.0),
            ("mysql_sts_agent_replica_io_thread{state=\"running\"}", 1.0),
            (
                "mysql_sts_agent_replica_io_thread{state=\"connecting\"}",
                0.0,
            ),
            ("mysql_sts_agent_replica_sql_thread_running", 1.0),
            ("mysql_sts_agent_replica_fenced", 0.0),
        ] {
            ensure!(metric(&replica, series)? == value, "{series}:\n{replica}");
        }
        ensure!(metric(&replica, "mysql_sts_agent_replica_lag_seconds")? < 5.0);
        // Pod 1 shows the clone it received; the first pod was never cloned.
        let received = last_clone_bytes(&replica, "received")?;
        ensure!(received > 1e6, "{received} bytes received");
        ensure!(
            by_reason(&replica, "clone_attempt_failures", "unauthorized")? == 0.0,
            "{replica}"
        );
        ensure!(!primary.contains("side=\"received\""), "{primary}");
        if flavor == Flavor::MariaDb {
            // Pod 0 served pod 1's clone.
            let completed = "mysql_sts_agent_clones_served_total{outcome=\"completed\"}";
            ensure!(metric(&primary, completed)? == 1.0, "{primary}");
            let bytes = metric(&primary, "mysql_sts_agent_clone_served_bytes_total")?;
            ensure!(bytes > 1e6, "{bytes} bytes served");
            ensure!(last_clone_bytes(&primary, "served")? == bytes, "{primary}");
        } else {
            ensure!(
                !primary.contains("clone"),
                "MySQL serves no clones:\n{primary}"
            );
        }

        // Each server names itself as the pod: its hostname, and the FQDN replicas report.
        for n in 0..3 {
            let mut conn = c.sql(n).await?;
            let names: Option<(String, String)> =
                conn.query_first("SELECT @@hostname, @@report_host").await?;
            let want = (pod(c, n), c.naming().pod_fqdn(n));
            ensure!(names.as_ref() == Some(&want), "{names:?}, not {want:?}");
        }

        // Each replica cloned ordinal-1, and says so in /status and in its init log.
        let pod1 = status_json(&c.http_get(1, "/status", None).await?)?;
        ensure!(
            pod1["role"] == "replica" && pod1["phase"] == "replicating",
            "{pod1}"
        );
        ensure!(pod1["donor"] == c.naming().pod_fqdn(0).as_str(), "{pod1}");
        ensure!(
            pod1["replication"]["status"]["sql_running"] == true,
            "{pod1}"
        );
        let pod2 = status_json(&c.http_get(2, "/status", None).await?)?;
        ensure!(pod2["donor"] == c.naming().pod_fqdn(1).as_str(), "{pod2}");
        // server_id = 100 + ordinal.
        let server_id = 100 + c.naming().ordinal(2);
        ensure!(pod2["server_id"] == server_id, "{pod2}");
        // Where the start position came from: the backup's files on MariaDB, the cloned
        // server itself on MySQL.
        let (from_primary, from_replica) = match version {
            DbVersion::MariaDb10_11 => ("xtrabackup_binlog_info", "xtrabackup_slave_info"),
            // MariaDB 11 renamed the backup's files.
            DbVersion::MariaDb11_8 => ("mariadb_backup_binlog_info", "mariadb_backup_slave_info"),
            DbVersion::MySql9_7 => ("gtid_executed", "gtid_executed"),
        };
        let init2 = c.log_text(2, "init-1.log");
        ensure!(
            init2.contains("clone complete")
                && init2.contains(&format!("position_from={from_replica}")),
            "{init2}"
        );
        let init1 = c.log_text(1, "init-1.log");
        ensure!(
            init1.contains(&format!("position_from={from_primary}")),
            "{init1}"
        );
        ensure!(
            c.log_text(1, "sidecar-1.log")
                .contains("configuring replication from the primary")
        );
        if flavor == Flavor::MySql {
            ensure!(
                init1.contains("clone copied and recovered: clone_status says Completed")
                    && init1.contains("into its own directory: clone_status says Completed")
                    && init1.contains("temporary server stopped"),
                "{init1}"
            );
            // Whatever the token: MySQL pods serve no clones.
            let reply = c.http_get(1, "/clone", Some("any-token")).await?;
            ensure!(reply.status == 404, "/clone on MySQL: {}", reply.status);
            return Ok(());
        }

        // The clone endpoint wants the token: without it, 401 and not one byte of the stream.
        for token in [Some("wrong-token"), None] {
            let reply = c.http_get(1, "/clone", token).await?;
            ensure!(reply.status == 401, "token {token:?}: {}", reply.status);
            ensure!(
                !reply.body.starts_with(b"MSACLN01"),
                "a refused request got stream data"
            );
        }
        ensure!(
            c.log_text(1, "sidecar-1.log")
                .contains("clone request refused: missing or wrong token")
        );
        let refused = by_reason(
            &scrape_metrics(c, 1).await?,
            "clone_serve_refusals_total",
            "unauthorized",
        )?;
        ensure!(refused == 2.0, "{refused} refusals for the token");
        Ok(())
    })
    .await
}

/// A clone slowed down by a throttled donor is seen moving: in its progress file and in
/// `mysql-sts-agent status` run in the init container (where no agent answers), with an ETA from
/// the size estimate; on MariaDB the donor's `/status` shows the clone it serves. Once the pod is
/// Ready, `status` in the agent container says what it does, and `/status` has the phase and the
/// clone's timings.
async fn status_shows_a_clone_in_progress_then_the_replica_it_became(
    version: DbVersion,
) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default().statefulset("orders-db").namespace("shop");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        // Slow enough to be seen moving for several progress lines, fast enough to end soon:
        // MySQL's clone (undo and system tablespaces too) is several times MariaDB's stream.
        let rate = match flavor {
            Flavor::MariaDb => "24mbit",
            Flavor::MySql => "64mbit",
        };
        c.throttle(0, Some(rate)).await?;
        let init = c.spawn_init(1).await?;

        let progress_file = c.datadir(1).join(".mysql-sts-agent-clone/progress.json");
        let moving = poll_until("the progress file to count bytes", READY, POLL, || async {
            let record = std::fs::read(&progress_file)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
            Ok(match record {
                Some(r) if r["phase"] == "cloning" && r["bytes"].as_u64() > Some(0) => {
                    Check::Done(r)
                }
                seen => Check::Pending(format!("{seen:?}")),
            })
        })
        .await?;
        ensure!(
            moving["donor"] == c.naming().pod_fqdn(0).as_str()
                && moving["hostname"] == pod(c, 1).as_str()
                && moving["donor_attempt"] == 1,
            "{moving}"
        );
        // As `kubectl exec <pod> -c init -- .../mysql-sts-agent status`.
        let during = poll_until("status to show an ETA", READY, POLL, || async {
            let text = c.exec_agent(1, "init", &["status"]).await?;
            Ok(if text.contains(", ETA ") {
                Check::Done(text)
            } else {
                Check::Pending(text)
            })
        })
        .await?;
        eprintln!(
            "[e2e] status in the init container during the clone:
{during}"
        );
        let head = format!("{}  cloning from {}: ", pod(c, 1), pod(c, 0));
        ensure!(
            during.starts_with(&head) && during.contains(" (estimate), "),
            "{during}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&c.exec_agent(1, "init", &["status", "--json"]).await?)?;
        let progress = &json["clone_progress"];
        ensure!(
            progress["bytes"].as_u64() > Some(0)
                && progress["estimated_total_bytes"].as_u64() > Some(0),
            "{json}"
        );
        if flavor == Flavor::MariaDb {
            let donor = status_json(&c.http_get(0, "/status", None).await?)?;
            let serving = &donor["serving_clone"];
            ensure!(
                donor["phase"] == "serving"
                    && serving["bytes"].as_u64() > Some(0)
                    && serving["estimated_total_bytes"].as_u64() > Some(0),
                "{donor}"
            );
        }

        let run = init.wait().await?;
        run.ensure_exit(0)?;
        let with_eta = run
            .output
            .lines()
            .find(|line| line.contains("clone in progress") && line.contains(" eta_secs="));
        ensure!(
            with_eta.is_some(),
            "no progress line with an ETA:
{}",
            run.output
        );
        ensure!(
            !progress_file.exists(),
            "the progress file outlived the clone"
        );
        if flavor == Flavor::MariaDb {
            let donor_log = c.log_text(0, "sidecar-1.log");
            ensure!(
                donor_log.contains("serving a clone: in progress")
                    && donor_log.contains("eta_secs="),
                "{donor_log}"
            );
        }

        c.throttle(0, None).await?;
        c.start_server(1).await?;
        c.start_sidecar(1).await?;
        c.wait_readyz(1, 200, READY).await?;
        let ready = c.exec_agent(1, "sidecar", &["status"]).await?;
        eprintln!(
            "[e2e] status in the agent container once Ready:
{ready}"
        );
        let head = format!(
            "{}  replica of {}  phase: replicating  ready: yes (in sync with {}",
            pod(c, 1),
            pod(c, 0),
            pod(c, 0)
        );
        ensure!(
            ready.starts_with(&head)
                && ready.contains("IO thread: running   SQL thread: running")
                && ready.contains(&format!("\ncloned from {} at ", pod(c, 0)))
                && ready.ends_with("\nlast error: none\n"),
            "{ready}"
        );

        let status = status_json(&c.http_get(1, "/status", None).await?)?;
        let (clone, timings) = (&status["last_clone"], &status["timings"]);
        let (completed, started, configured) = (
            clone["completed_unix"].as_u64().context("completed_unix")?,
            timings["agent_started_unix"]
                .as_u64()
                .context("agent_started_unix")?,
            timings["configured_unix"]
                .as_u64()
                .context("configured_unix")?,
        );
        ensure!(
            status["phase"] == "replicating"
                && clone["bytes"].as_u64() > Some(1_000_000)
                && clone["duration_ms"].as_u64() > Some(0)
                && completed <= started
                && started <= configured
                && status["clone_progress"].is_null(),
            "{status}"
        );
        eprintln!(
            "[e2e] estimated {} bytes, cloned {} in {} ms",
            progress["estimated_total_bytes"], clone["bytes"], clone["duration_ms"]
        );
        let primary = status_json(&c.http_get(0, "/status", None).await?)?;
        ensure!(
            primary["phase"] == "serving" && primary["serving_clone"].is_null(),
            "{primary}"
        );
        Ok(())
    })
    .await
}

async fn replica_is_unready_while_stopped_or_behind_and_ready_once_caught_up(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default()
        .namespace("shop")
        .cluster_domain("k8s.example.net");
    scenario(version, 2, VolumeLayout::HostPath, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;

        let mut replica = c.sql(1).await?;
        replica.query_drop("STOP REPLICA SQL_THREAD").await?;
        insert(c, 0, "while-stopped").await?;
        let reply = c.wait_readyz(1, 503, READY).await?;
        ensure!(
            reply.text() == "503 replica SQL thread is not running\n",
            "{}",
            reply.text()
        );
        let stopped = scrape_metrics(c, 1).await?;
        for (series, value) in [
            ("mysql_sts_agent_ready", 0.0),
            (
                "mysql_sts_agent_readiness_reason{kind=\"thread_stopped\"}",
                1.0,
            ),
            ("mysql_sts_agent_replica_sql_thread_running", 0.0),
            ("mysql_sts_agent_replica_io_thread{state=\"running\"}", 1.0),
        ] {
            ensure!(metric(&stopped, series)? == value, "{series}:\n{stopped}");
        }
        replica.query_drop("START REPLICA SQL_THREAD").await?;
        c.wait_readyz(1, 200, READY).await?;
        assert_same_data(c, 1).await?;

        // Threads running but the SQL thread blocked: only the GTID comparison can tell.
        replica.query_drop("FLUSH TABLES WITH READ LOCK").await?;
        for i in 0..3 {
            insert(c, 0, &format!("while-locked-{i}")).await?;
        }
        // An in-sync replica's lag reads up to one poll interval (1 s): the sampled primary
        // position is that old. So the strict threshold here is 2 s, not 1 s.
        readyz_until(c, "/readyz?lag=2s", |reply| {
            reply.status == 503
                && reply
                    .text()
                    .contains(&format!("3 transactions behind {}", pod(c, 0)))
        })
        .await?;
        let locked = scrape_metrics(c, 1).await?;
        let behind = metric(&locked, "mysql_sts_agent_replica_transactions_behind")?;
        ensure!(behind == 3.0, "{behind} transactions behind:\n{locked}");
        let relaxed = c.http_get(1, "/readyz?lag=10m", None).await?;
        ensure!(
            relaxed.status == 200,
            "a generous ?lag= accepts the lag: {}",
            relaxed.text()
        );
        replica.query_drop("UNLOCK TABLES").await?;
        c.wait_readyz_path(1, "/readyz?lag=2s", 200, READY).await?;
        assert_same_data(c, 1).await?;

        let bad = c.http_get(1, "/readyz?lag=soon", None).await?;
        ensure!(bad.status == 400, "bad ?lag=: {}", bad.status);
        let log = c.log_text(1, "sidecar-1.log");
        ensure!(
            log.contains("not ready: replica SQL thread is not running"),
            "{log}"
        );
        let in_sync = format!("ready: in sync with {}", pod(c, 0));
        ensure!(log.contains(&in_sync), "{log}");
        Ok(())
    })
    .await
}

/// Pods 0 and 1 up, then pod 1's sidecar and server stopped while pod 0 takes `rows` writes.
/// Returns the sidecar's exit code.
async fn primary_and_a_replica_that_goes_down(c: &mut Cluster, rows: usize) -> Result<Option<i32>> {
    primary_with_data(c, INITIAL_ROWS).await?;
    c.start_pod(1).await?;
    let exit = c.stop_sidecar(1).await?;
    c.stop_server(1).await?;
    for i in 0..rows {
        insert(c, 0, &format!("while-down-{i}")).await?;
    }
    Ok(exit)
}

async fn restarted_replica_resumes_without_recloning(version: DbVersion) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default()
        .statefulset("orders-db")
        .service("orders-db-headless")
        .first_ordinal(3);
    scenario(version, 2, VolumeLayout::PodUid, naming, async |c| {
        let exit = primary_and_a_replica_that_goes_down(c, 5).await?;
        ensure!(exit == Some(0), "sidecar exit on SIGTERM: {exit:?}");
        ensure!(c.log_text(1, "sidecar-1.log").contains("SIGTERM received"));

        let init = c.run_init(1).await?;
        init.ensure_exit(0)?;
        ensure!(
            init.output
                .contains("datadir holds a completed clone: leaving it as it is"),
            "{}",
            init.output
        );
        ensure!(!init.output.contains("cloning from"), "{}", init.output);
        c.start_server(1).await?;
        c.start_sidecar(1).await?;
        c.wait_readyz(1, 200, READY).await?;
        assert_same_data(c, 1).await?;

        let log = c.log_text(1, "sidecar-2.log");
        ensure!(
            log.contains("replication is configured and running: leaving it as it is")
                || log.contains("resuming it (not reconfiguring)"),
            "{log}"
        );
        ensure!(
            !log.contains("configuring replication from the primary"),
            "{log}"
        );
        if flavor == Flavor::MariaDb {
            let served = c
                .log_text(0, "sidecar-1.log")
                .matches("clone served")
                .count();
            ensure!(served == 1, "the donor served {served} clones, expected 1");
        }
        Ok(())
    })
    .await
}

async fn interrupted_clones_leave_nothing_usable_and_the_retry_succeeds(
    version: DbVersion,
) -> Result<()> {
    let flavor = version.flavor();
    // The one scenario on the shipped manifests as they are, in `default` of `cluster.local`.
    scenario(
        version,
        2,
        VolumeLayout::FsGroup,
        Naming::default(),
        async |c| {
            primary_with_data(c, INITIAL_ROWS).await?;
            // About 1 MB/s out of the donor: the clone takes long enough to be cut in the middle.
            c.throttle(0, Some("8mbit")).await?;

            // The joiner killed mid-clone leaves its staging directory, which the retry removes.
            let mut init = c.spawn_init(1).await?;
            wait_for_partial_clone(c, 1, "init-1.log").await?;
            if flavor == Flavor::MariaDb {
                // One clone at a time: a second joiner is told to come back later.
                let token = c.clone_token()?;
                let busy = c.http_get(0, "/clone", Some(&token)).await?;
                ensure!(
                    busy.text() == "429 a clone is already being served\n",
                    "second clone: {} {}",
                    busy.status,
                    busy.text()
                );
            }
            init.kill().await?;
            let killed = init.wait().await?;
            ensure!(
                killed.code.is_none(),
                "init should have died by a signal: {:?}",
                killed.code
            );
            ensure!(
                datadir_entries(&c.datadir(1))? == [".mysql-sts-agent-clone"],
                "{:?}",
                datadir_entries(&c.datadir(1))?
            );

            // The donor killed mid-clone (MariaDB: its agent streams; MySQL: its server does):
            // the joiner exits non-zero and leaves nothing behind.
            let init = c.spawn_init(1).await?;
            wait_for_partial_clone(c, 1, "init-2.log").await?;
            match flavor {
                Flavor::MariaDb => c.kill_sidecar(0).await?,
                Flavor::MySql => c.kill_server(0).await?,
            }
            let failed = init.wait().await?;
            ensure!(
                matches!(failed.code, Some(code) if code != 0),
                "init after donor death: {:?}",
                failed.code
            );
            ensure!(
                failed
                    .output
                    .contains("removing the staging directory of an interrupted clone"),
                "{}",
                failed.output
            );
            let error_lines: Vec<&str> = failed
                .output
                .lines()
                .filter(|l| l.contains("ERROR"))
                .collect();
            ensure!(
                error_lines.len() == 1 && error_lines[0].contains("clone failed"),
                "{error_lines:?}"
            );
            ensure_datadir_empty(c, 1)?;

            // The donor back: the retry clones and the pod joins.
            c.throttle(0, None).await?;
            if flavor == Flavor::MySql {
                c.start_server(0).await?;
            } else {
                c.start_sidecar(0).await?;
            }
            c.wait_readyz(0, 200, READY).await?;
            let retry = c.run_init(1).await?;
            retry.ensure_exit(0)?;
            c.start_server(1).await?;
            c.start_sidecar(1).await?;
            c.wait_readyz(1, 200, READY).await?;
            insert(c, 0, "after-retry").await?;
            assert_same_data(c, 1).await?;
            Ok(())
        },
    )
    .await
}

async fn refuses_a_datadir_it_cannot_prove_is_its_own(version: DbVersion) -> Result<()> {
    let naming = Naming::default().first_ordinal(5);
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        c.create_pod(1).await?;
        let stray = c.datadir(1).join("notes.txt");
        std::fs::write(&stray, "keep me")?;
        let run = c.run_init(1).await?;
        run.ensure_exit(65)?;
        ensure!(
            run.output.contains("refusing to touch the datadir")
                && run.output.contains("notes.txt"),
            "{}",
            run.output
        );
        if std::fs::read_to_string(&stray)? != "keep me" {
            bail!("the stray file was changed");
        }
        Ok(())
    })
    .await
}

async fn replica_with_unexplained_data_is_blocked_and_liveness_ignores_the_database(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default()
        .statefulset("app-db")
        .service("app-db")
        .namespace("data-team");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        c.start_pod(0).await?;
        // A server initialized its own datadir on ordinal 1: no clone, so no start position.
        c.create_pod(1).await?;
        c.start_server(1).await?;
        let init = c.run_init(1).await?;
        init.ensure_exit(0)?;
        ensure!(
            init.output.contains("datadir holds the server's own data"),
            "{}",
            init.output
        );
        c.start_sidecar(1).await?;
        let reply = c.wait_readyz(1, 503, READY).await?;
        readyz_until(c, "/readyz", |reply| {
            reply
                .text()
                .starts_with("503 blocked: replication is not configured")
        })
        .await
        .with_context(|| format!("first answer: {}", reply.text()))?;
        let mut replica = c.sql(1).await?;
        let status: Vec<mysql_async::Row> = replica.query("SHOW REPLICA STATUS").await?;
        ensure!(
            status.is_empty(),
            "the agent configured replication it could not place"
        );

        // Liveness is the agent's own loop: a database going away does not fail it.
        c.stop_server(1).await?;
        let ready = c.wait_readyz(1, 503, READY).await?;
        let live = c.http_get(1, "/livez", None).await?;
        ensure!(
            live.status == 200,
            "/livez with the server down: {}",
            live.text()
        );

        let log = c.log_text(1, "sidecar-1.log");
        ensure!(
            log.matches("replication not set up").count() == 1,
            "logged more than once:\n{log}"
        );
        ensure!(log.matches("not ready: blocked").count() == 1, "{log}");
        ensure!(!ready.text().contains("in sync"), "{}", ready.text());
        Ok(())
    })
    .await
}

async fn a_failing_backup_tool_is_reported_and_never_taken_for_a_clone(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default().service("db-hl").namespace("shop");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        c.start_pod(0).await?;
        // The donor's backup tool streams a little, complains and fails, while the agent lives on.
        let fake = c.root_dir().join("failing-backup");
        let payload = c.root_dir().join("payload");
        std::fs::create_dir(&payload)?;
        std::fs::write(payload.join("ibdata1"), vec![7u8; 100_000])?;
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\ncd {} && mbstream -c ibdata1\necho 'disk on fire' >&2\nexit 2\n",
                payload.display()
            ),
        )?;
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        c.stop_sidecar(0).await?;
        let mut donor = c.agent_command(0, "sidecar")?;
        donor.env("MYSQL_STS_MARIADB_BACKUP", &fake);
        c.spawn_in_pod(0, "failing-donor", donor)?;
        c.wait_readyz(0, 200, READY).await?;

        let run = c.run_init(1).await?;
        run.ensure_exit(1)?;
        ensure!(
            run.output.contains(
                "the donor's backup failed: failing-backup failed (exit status: 2): disk on fire"
            ),
            "{}",
            run.output
        );
        ensure_datadir_empty(c, 1)?;
        let donor_log = c.log_text(0, "failing-donor-1.log");
        ensure!(donor_log.contains("clone not served"), "{donor_log}");
        let text = scrape_metrics(c, 0).await?;
        ensure!(
            by_reason(&text, "clone_serve_failures_total", "backup_failed")? == 1.0
                && metric(
                    &text,
                    "mysql_sts_agent_clones_served_total{outcome=\"failed\"}"
                )? == 1.0,
            "{text}"
        );
        Ok(())
    })
    .await
}

/// A joiner that asks for a zstd-compressed stream (`MYSQL_STS_CLONE_COMPRESSION=zstd`) gets one:
/// both sides log the decision and how much smaller the stream went, and the replica holds the
/// primary's data. Every other scenario clones plain, the default.
async fn a_compressed_clone_holds_the_primarys_data(version: DbVersion) -> Result<()> {
    let naming = Naming::default();
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        let run = c
            .run_init_with(1, &[("MYSQL_STS_CLONE_COMPRESSION", "zstd")])
            .await?;
        run.ensure_exit(0)?;
        let logged = |message: &str| {
            (run.output.lines())
                .find(|line| line.contains(message))
                .with_context(|| format!("no {message:?} logged:\n{}", run.output))
        };
        let accepted = logged("donor accepted")?;
        ensure!(
            accepted.contains("compression asked for and granted by the donor"),
            "{accepted}"
        );
        let complete = logged("clone stream complete")?;
        let ratio: f64 = (complete.split_whitespace())
            .find_map(|field| field.strip_prefix("ratio="))
            .with_context(|| format!("no ratio: {complete}"))?
            .parse()?;
        // The datadir's zero-filled pages and repeated rows compress several times over.
        ensure!(
            complete.contains("compression=zstd") && ratio > 2.0,
            "{complete}"
        );
        let donor_log = c.log_text(0, "sidecar-1.log");
        ensure!(
            (donor_log.lines())
                .any(|line| line.contains("clone served") && line.contains("compression=zstd")),
            "{donor_log}"
        );
        eprintln!("[e2e] compressed clone: {complete}");

        c.start_server(1).await?;
        c.start_sidecar(1).await?;
        c.wait_readyz(1, 200, READY).await?;
        insert(c, 0, "after a compressed clone").await?;
        assert_same_data(c, 1).await
    })
    .await
}

/// Runs a replica down while the primary purges the binary logs it still needs. When it comes
/// back, its sidecar finds the gap before resuming replication, asks for a re-clone and shuts
/// the server down; the restarted database container (the agent's `exec`) clones pod 0 again,
/// sets the old data aside until the new clone is in place, and the replica catches up. Then
/// the same while it runs: replication stopped by hand, binlogs purged, replication started
/// again: its IO thread's error leads to the same re-clone.
async fn a_replica_behind_purged_binlogs_is_recloned(version: DbVersion) -> Result<()> {
    let naming = Naming::default()
        .cluster_domain("corp.internal")
        .first_ordinal(1);
    // SHUTDOWN for the re-clone, as the dedicated admin account.
    let spec = spec(version, 2, VolumeLayout::RootTemplate, naming).admin_account();
    Cluster::run_scenario(spec, async |c| {
        primary_and_a_replica_that_goes_down(c, 3).await?;
        purge_binlogs(c).await?;
        let marker_path = c.datadir(1).join("mysql-sts-agent-clone.json");
        let first_clone: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker_path)?)?;

        c.start_server(1).await?;
        c.start_sidecar(1).await?;
        let shut_down = c.wait_server_exit(1, READY).await?;
        ensure!(shut_down.success(), "the server's exit: {shut_down}");
        let requested = "re-clone requested: the primary purged binary logs this replica still \
                         needs";
        let log = c.log_text(1, "sidecar-2.log");
        ensure!(
            log.matches(requested).count() == 1,
            "the request should be logged once:\n{log}"
        );
        let reply = readyz_until(c, "/readyz", |reply| reply.text().contains("re-cloning")).await?;
        ensure!(reply.status == 503, "{} {}", reply.status, reply.text());
        let status = status_json(&c.http_get(1, "/status", None).await?)?;
        ensure!(status["phase"] == "recloning", "{status}");
        let said = c.exec_agent(1, "sidecar", &["status"]).await?;
        ensure!(
            said.contains("  phase: recloning  ready: no (re-cloning: "),
            "{said}"
        );

        // The kubelet restarts the database container: its agent clones before the server
        // starts. Slowed down, so that the sidecar beside it is seen reporting the clone.
        let rate = match c.flavor() {
            Flavor::MariaDb => "16mbit",
            Flavor::MySql => "64mbit",
        };
        c.throttle(0, Some(rate)).await?;
        let exec = c.spawn_exec(1).await?.context("the template's exec")?;
        let what = "the sidecar's /status to show the re-clone moving";
        let seen = poll_until(what, READY, POLL, || async {
            let status = status_json(&c.http_get(1, "/status", None).await?)?;
            Ok(match status["clone_progress"]["bytes"].as_u64() {
                Some(bytes) if bytes > 0 => Check::Done(status),
                _ => Check::Pending(status["clone_progress"].to_string()),
            })
        })
        .await?;
        let progress = &seen["clone_progress"];
        ensure!(
            seen["phase"] == "recloning"
                && progress["phase"] == "cloning"
                && progress["donor"] == c.naming().pod_fqdn(0).as_str(),
            "{seen}"
        );
        let said = c.exec_agent(1, "sidecar", &["status"]).await?;
        ensure!(
            said.contains(&format!("\nre-clone: cloning from {}: ", pod(c, 0))),
            "{said}"
        );
        exec.wait().await?.ensure_exit(0)?;
        c.throttle(0, None).await?;
        c.start_server(1).await?;
        let exec_log = c.log_text(1, "exec-3.log");
        for want in [
            "re-clone requested by the sidecar",
            "the old data set aside was removed",
        ] {
            ensure!(exec_log.contains(want), "no {want:?} in\n{exec_log}");
        }
        c.wait_readyz(1, 200, READY).await?;
        assert_same_data(c, 1).await?;
        let new_clone: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker_path)?)?;
        ensure!(
            new_clone["completed_unix"].as_u64() >= first_clone["completed_unix"].as_u64()
                && new_clone["gtid_position"] != first_clone["gtid_position"],
            "the marker is not the new clone's: {new_clone} (first: {first_clone})"
        );
        let entries = datadir_entries(&c.datadir(1))?;
        ensure!(
            !entries
                .iter()
                .any(|e| e.starts_with(".mysql-sts-agent") || e.contains("reclone")),
            "the re-clone left {entries:?}"
        );
        // Cloned by a root agent, started by a root entrypoint: the server's user owns it all.
        assert_datadir_is_the_servers(c, 1)?;

        let mut replica = c.sql(1).await?;
        replica.query_drop("STOP REPLICA").await?;
        insert(c, 0, "while-stopped").await?;
        purge_binlogs(c).await?;
        replica.query_drop("START REPLICA").await?;
        c.wait_server_exit(1, READY).await?;
        let log = c.log_text(1, "sidecar-2.log");
        let after_io_error = "re-clone requested: the primary purged binary logs this replica \
                              still needs (IO thread error";
        ensure!(
            log.matches(after_io_error).count() == 1,
            "the IO thread's error should request one re-clone:\n{log}"
        );
        c.start_server(1).await?;
        c.wait_readyz(1, 200, READY).await?;
        assert_same_data(c, 1).await?;
        Ok(())
    })
    .await
}

/// A donor whose name does not resolve (here: no such pod yet) is retried until the deadline,
/// and the log says what was asked and what the pod's resolv.conf says.
async fn an_unresolvable_donor_is_reported_with_the_pods_resolver(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default()
        .statefulset("ledger-db")
        .namespace("shop")
        .cluster_domain("k8s.example.net");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        // Pod 0 is never created: its name has no record.
        let run = c
            .run_init_with(1, &[("MYSQL_STS_CLONE_DEADLINE", "6s")])
            .await?;
        run.ensure_exit(1)?;
        let asked = "ledger-db-0.mysql.shop.svc.k8s.example.net.";
        for want in [
            format!("{asked} does not resolve"),
            format!("asked={asked}"),
            "the donor's name still does not resolve; /etc/resolv.conf says nameservers \
             [169.254.250.1], search [shop.svc.k8s.example.net svc.k8s.example.net \
             k8s.example.net]"
                .to_owned(),
            "did not serve a clone within 6.0s".to_owned(),
        ] {
            ensure!(run.output.contains(&want), "no {want:?} in\n{}", run.output);
        }
        ensure_datadir_empty(c, 1)?;
        Ok(())
    })
    .await
}

/// Pod 0's volume is lost while its replicas hold the data: the recreated pod 0 restores it from
/// the most advanced peer instead of starting an empty primary, is promoted (by a second
/// sidecar, the first having died halfway), and replication goes on from it.
async fn losing_the_first_pods_volume_restores_it_from_the_most_advanced_peer(
    version: DbVersion,
) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default()
        .statefulset("vault-db")
        .namespace("shop")
        .first_ordinal(2);
    // The promotion's statements, as the dedicated admin account.
    let spec = spec(version, 3, VolumeLayout::FsGroup, naming).admin_account();
    Cluster::run_scenario(spec, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;
        c.start_pod(2).await?;
        insert(c, 0, "before-the-loss").await?;
        for n in [1, 2] {
            assert_same_data(c, n).await?;
        }
        let rows = row_count(c, 0).await?;
        let first_init = c.log_text(0, "init-1.log");
        ensure!(
            first_init.contains("no peer's name resolves: a new cluster"),
            "{first_init}"
        );

        c.lose_volume(0).await?;
        ensure_datadir_empty(c, 0)?;
        // The pod recreated, its containers one by one: the restored server starts read-only,
        // and its sidecar dies after the promotion's first statement (run here by hand). The
        // next sidecar finishes the promotion.
        let restore = c.run_init(0).await?;
        restore.ensure_exit(0)?;
        c.start_server(0).await?;
        let mut restored = c.sql(0).await?;
        let read_only: Option<i64> = restored.query_first("SELECT @@read_only").await?;
        ensure!(
            read_only == Some(1),
            "the restored server is writable before its promotion"
        );
        let reset = match flavor {
            Flavor::MariaDb => "RESET SLAVE ALL",
            Flavor::MySql => "RESET REPLICA ALL",
        };
        restored.query_drop("STOP REPLICA").await?;
        restored.query_drop(reset).await?;
        c.start_sidecar(0).await?;
        c.wait_readyz(0, 200, READY).await?;

        // Both replicas hold the same data: the tie goes to the lowest ordinal.
        let init = c.log_text(0, "init-2.log");
        let donor = c.naming().pod_fqdn(1);
        for want in [
            "restoring from the most advanced peer".to_owned(),
            "restoring the first ordinal's lost volume from that peer with".to_owned(),
            format!("donor={donor}"),
            "clone complete: replication will start at this GTID position".to_owned(),
        ] {
            ensure!(init.contains(&want), "no {want:?} in\n{init}");
        }
        ensure!(!init.contains("nothing to clone"), "{init}");
        let marker: serde_json::Value = serde_json::from_slice(&std::fs::read(
            c.datadir(0).join("mysql-sts-agent-clone.json"),
        )?)?;
        ensure!(
            marker["donor"] == donor.as_str() && marker["promotion"]["state"] == "done",
            "{marker}"
        );
        let sidecar = c.log_text(0, "sidecar-2.log");
        ensure!(
            sidecar.contains("restored primary promoted") && sidecar.contains(reset),
            "{sidecar}"
        );
        ensure!(row_count(c, 0).await? == rows, "pod 0 lost rows");
        let mut primary = c.sql(0).await?;
        let channels: Vec<mysql_async::Row> = primary.query("SHOW REPLICA STATUS").await?;
        ensure!(channels.is_empty(), "the donor's channel survived");

        for n in [1, 2] {
            c.wait_readyz(n, 200, READY).await?;
        }
        insert(c, 0, "after-the-restore").await?;
        for n in [1, 2] {
            assert_same_data(c, n).await?;
        }
        Ok(())
    })
    .await
}

/// Pod 0's volume is lost while its replica has received transactions (in its relay log, which
/// semi-sync acknowledges) that its applier has not applied yet: the survey counts them, the
/// replica serves the restore only once it has applied them, and the restored primary holds
/// every row.
async fn a_restore_waits_for_what_the_donor_received_but_had_not_applied(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default().namespace("ledger");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;
        // The replica's applier waits for this lock; its IO thread goes on receiving.
        let mut lock = c.sql(1).await?;
        lock.query_drop("LOCK TABLES app.t READ").await?;
        for i in 0..5 {
            insert(c, 0, &format!("received-{i}")).await?;
        }
        let rows = row_count(c, 0).await?;
        poll_until(
            "the replica to receive what it cannot apply",
            READY,
            POLL,
            || async {
                let status = status_json(&c.http_get(1, "/status", None).await?)?;
                let replication = &status["replication"];
                let (applied, received) = (
                    &replication["gtid_applied"],
                    &replication["status"]["received"],
                );
                Ok(
                    if received != applied && received.as_str().is_some_and(|r| !r.is_empty()) {
                        Check::Done(())
                    } else {
                        Check::Pending(format!("applied {applied}, received {received}"))
                    },
                )
            },
        )
        .await?;

        c.lose_volume(0).await?;
        let init = c.spawn_init(0).await?;
        let waiting = "applying what its IO thread received before it serves a restore";
        poll_until(
            "the restore to wait for the relay log",
            READY,
            POLL,
            || async {
                Ok(if c.log_text(0, "init-2.log").contains(waiting) {
                    Check::Done(())
                } else {
                    Check::Pending("not asked yet".to_owned())
                })
            },
        )
        .await?;
        lock.query_drop("UNLOCK TABLES").await?;
        let restore = init.wait().await?;
        restore.ensure_exit(0)?;
        c.start_server(0).await?;
        c.start_sidecar(0).await?;
        c.wait_readyz(0, 200, READY).await?;
        ensure!(
            row_count(c, 0).await? == rows,
            "the restored primary lacks rows the replica had received"
        );
        c.wait_readyz(1, 200, READY).await?;
        insert(c, 0, "after-the-restore").await?;
        assert_same_data(c, 1).await?;
        Ok(())
    })
    .await
}

/// A peer whose name resolves but whose agent does not answer might hold the data: pod 0 does
/// not start empty, unless told to.
async fn a_first_pod_that_cannot_ask_a_peer_does_not_start_empty(version: DbVersion) -> Result<()> {
    let naming = Naming::default().namespace("shop");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        // Pod 1 exists (its name resolves), but none of its containers runs.
        c.create_pod(1).await?;
        let run = c
            .run_init_with(0, &[("MYSQL_STS_PEER_DEADLINE", "3s")])
            .await?;
        run.ensure_exit(1)?;
        let peer = c.naming().pod_fqdn(1);
        let error_lines: Vec<&str> = run.output.lines().filter(|l| l.contains("ERROR")).collect();
        ensure!(
            error_lines.len() == 1
                && error_lines[0].contains(&format!(
                    "peer {peer} exists (its name resolves) but could not be asked whether it \
                     holds data within 3.0s"
                )),
            "{error_lines:?}"
        );
        ensure_datadir_empty(c, 0)?;

        let run = c
            .run_init_with(0, &[("MYSQL_STS_ALLOW_EMPTY_START", "true")])
            .await?;
        run.ensure_exit(0)?;
        ensure!(
            run.output
                .contains("--allow-empty-start is set: starting empty without asking the peers"),
            "{}",
            run.output
        );
        c.start_server(0).await?;
        let mut conn = c.sql(0).await?;
        let app: Option<u64> = conn
            .query_first(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'",
            )
            .await?;
        ensure!(app == Some(0), "an empty start holds no application data");
        Ok(())
    })
    .await
}

/// Someone writes a row on a replica: its GTID is errant (the primary never has it), the
/// replica is fenced for good, and nothing clones from it.
async fn an_errant_transaction_fences_the_replica(version: DbVersion) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default().namespace("shop");
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;
        let errant = write_errant(c, 1).await?;

        let fenced = readyz_until(c, "/readyz", |reply| reply.text().contains("fenced")).await?;
        ensure!(
            fenced.status == 503 && fenced.text().contains(&format!("errant GTIDs {errant}")),
            "{}",
            fenced.text()
        );
        // The primary goes on writing; once it has been sampled since, the fence still holds.
        insert(c, 0, "after-errant").await?;
        let mut primary = c.sql(0).await?;
        let primary_gtid: String = primary
            .query_first(match flavor {
                Flavor::MariaDb => "SELECT @@gtid_binlog_pos",
                Flavor::MySql => "SELECT @@GLOBAL.gtid_executed",
            })
            .await?
            .context("no primary GTID")?;
        let primary_gtid = primary_gtid.replace('\n', "");
        let status = readyz_until(c, "/status", |reply| {
            status_json(reply)
                .is_ok_and(|s| s["replication"]["primary_gtid"] == primary_gtid.as_str())
        })
        .await?;
        let status = status_json(&status)?;
        ensure!(
            status["ready"] == false
                && status["replication"]["errant_gtids"]
                    .as_str()
                    .is_some_and(|e| e.contains(&errant)),
            "{status}"
        );
        let reply = c.http_get(1, "/readyz", None).await?;
        ensure!(
            reply.status == 503 && reply.text().contains("fenced"),
            "{}",
            reply.text()
        );
        // Not a donor: neither for the agent's stream nor for a MySQL joiner that asks.
        let donor = c.http_get(1, "/donor", None).await?;
        ensure!(
            donor.status == 503 && donor.text().contains("fenced"),
            "{}",
            donor.text()
        );
        if flavor == Flavor::MariaDb {
            let token = c.clone_token()?;
            let clone = c.http_get(1, "/clone", Some(&token)).await?;
            ensure!(
                clone.status == 503 && clone.text().contains("fenced"),
                "{}",
                clone.text()
            );
            let served = c
                .log_text(0, "sidecar-1.log")
                .matches("clone served")
                .count();
            ensure!(
                served == 1,
                "the primary served {served} clones, expected 1"
            );
        }
        let log = c.log_text(1, "sidecar-1.log");
        ensure!(
            log.matches("errant transactions found").count() == 1,
            "the fence should be logged once:\n{log}"
        );
        ensure!(log.contains(&errant), "{log}");
        ensure!(!log.contains("clone served"), "{log}");
        Ok(())
    })
    .await
}

async fn a_writable_replica_is_not_ready(version: DbVersion) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default().first_ordinal(2);
    scenario(version, 2, VolumeLayout::PodUid, naming, async |c| {
        c.start_pod(0).await?;
        c.start_pod(1).await?;
        let mut replica = c.sql(1).await?;
        replica.query_drop("SET GLOBAL read_only=OFF").await?;
        let reply = c.wait_readyz(1, 503, READY).await?;
        ensure!(
            reply.text() == "503 replica is writable: read_only is OFF\n",
            "{}",
            reply.text()
        );
        set_writable(c, 1, false).await?;
        c.wait_readyz(1, 200, READY).await?;
        if flavor == Flavor::MySql {
            // read_only alone lets root and other privileged users write.
            replica.query_drop("SET GLOBAL super_read_only=OFF").await?;
            let reply = c.wait_readyz(1, 503, READY).await?;
            ensure!(
                reply.text() == "503 replica is writable: super_read_only is OFF\n",
                "{}",
                reply.text()
            );
            replica.query_drop("SET GLOBAL super_read_only=ON").await?;
            c.wait_readyz(1, 200, READY).await?;
        }
        let log = c.log_text(1, "sidecar-1.log");
        ensure!(log.contains("not ready: replica is writable"), "{log}");
        Ok(())
    })
    .await
}

/// A replica donor whose SQL thread is stopped is not in sync: it refuses to serve a clone
/// (MariaDB: `/clone`; MySQL: `/donor`, which the joiner asks before `CLONE INSTANCE`), and the
/// joiner waits for it until its deadline, saying why.
async fn a_donor_that_is_not_healthy_refuses_to_serve(version: DbVersion) -> Result<()> {
    let flavor = version.flavor();
    let naming = Naming::default().service("db-hl");
    scenario(version, 3, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;
        let mut replica = c.sql(1).await?;
        replica.query_drop("STOP REPLICA SQL_THREAD").await?;
        c.wait_readyz(1, 503, READY).await?;
        let why = "not healthy enough to donate: replica SQL thread is not running";
        let donor = c.http_get(1, "/donor", None).await?;
        ensure!(
            donor.status == 503 && donor.text() == format!("503 {why}\n"),
            "{} {}",
            donor.status,
            donor.text()
        );
        if flavor == Flavor::MariaDb {
            let token = c.clone_token()?;
            let clone = c.http_get(1, "/clone", Some(&token)).await?;
            ensure!(
                clone.status == 503 && clone.text() == format!("503 {why}\n"),
                "{} {}",
                clone.status,
                clone.text()
            );
        }

        let run = c
            .run_init_with(2, &[("MYSQL_STS_CLONE_DEADLINE", "8s")])
            .await?;
        run.ensure_exit(1)?;
        ensure!(
            run.output.contains(&format!("503 {why}")) && !run.output.contains("503 503"),
            "{}",
            run.output
        );
        ensure_datadir_empty(c, 2)?;
        if flavor == Flavor::MariaDb {
            // The test's request, then the joiner's.
            let text = scrape_metrics(c, 1).await?;
            let refused = by_reason(&text, "clone_serve_refusals_total", "not_a_donor")?;
            ensure!(refused >= 2.0, "{refused} refusals:\n{text}");
            ensure!(by_reason(&text, "clone_serve_refusals_total", "busy")? == 0.0);
        }

        replica.query_drop("START REPLICA SQL_THREAD").await?;
        c.wait_readyz(1, 200, READY).await?;
        let donor = c.http_get(1, "/donor", None).await?;
        ensure!(donor.status == 200, "{}", donor.text());
        if flavor == Flavor::MariaDb {
            ensure!(
                !c.log_text(1, "sidecar-1.log").contains("serving a clone"),
                "the unhealthy donor served a clone"
            );
        }
        Ok(())
    })
    .await
}

/// Ordinal-1 is not a healthy donor (its SQL thread is stopped). With fallback forbidden the
/// joiner waits for it until its deadline and leaves nothing behind; with it allowed, it falls
/// back within the fallback time to the only other pod, the primary, says why, takes the
/// primary's own binlog position, and joins with every row.
async fn a_joiner_falls_back_from_an_unhealthy_ordinal_minus_one(version: DbVersion) -> Result<()> {
    let naming = Naming::default()
        .statefulset("orders-db")
        .namespace("shop")
        .first_ordinal(3);
    scenario(version, 3, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;
        c.sql(1).await?.query_drop("STOP REPLICA SQL_THREAD").await?;
        c.wait_readyz(1, 503, READY).await?;
        let (primary, ordinal_minus_one) = (c.naming().pod_fqdn(0), c.naming().pod_fqdn(1));
        let why = "503 not healthy enough to donate: replica SQL thread is not running";

        let waited = c.run_init_with(
                2,
                &[
                    ("MYSQL_STS_DONOR_FALLBACK_AFTER", "never"),
                    ("MYSQL_STS_CLONE_DEADLINE", "6s"),
                ],
            ).await?;
        waited.ensure_exit(1)?;
        for want in [
            "donor fallback is forbidden (--donor-fallback-after never): if it is not a healthy \
             donor, the joiner keeps waiting for it until the clone deadline (6.0s)"
                .to_owned(),
            format!("init failed: clone failed: donor {ordinal_minus_one} did not serve a clone within 6.0s"),
            why.to_owned(),
        ] {
            ensure!(waited.output.contains(&want), "no {want:?} in\n{}", waited.output);
        }
        ensure!(!waited.output.contains("falling back"), "{}", waited.output);
        ensure_datadir_empty(c, 2)?;

        let fell_back = c.run_init_with(2, &[("MYSQL_STS_DONOR_FALLBACK_AFTER", "3s")]).await?;
        fell_back.ensure_exit(0)?;
        let decision = format!("ordinal-1 {ordinal_minus_one} is not healthy or not answering after ");
        let line = fell_back
            .output
            .lines()
            .find(|line| line.contains(&decision))
            .with_context(|| format!("no {decision:?} in\n{}", fell_back.output))?;
        ensure!(
            line.contains(why) && line.contains(&format!("; falling back to {primary} (the primary)")),
            "{line}"
        );
        let marker: serde_json::Value = serde_json::from_slice(&std::fs::read(
            c.datadir(2).join("mysql-sts-agent-clone.json"),
        )?)?;
        ensure!(marker["donor"] == primary.as_str(), "{marker}");
        // The primary's backup holds its own position, not a replica's.
        let from_primary = match version {
            DbVersion::MariaDb10_11 => "xtrabackup_binlog_info",
            DbVersion::MariaDb11_8 => "mariadb_backup_binlog_info",
            DbVersion::MySql9_7 => "gtid_executed",
        };
        ensure!(marker["position_source"] == from_primary, "{marker}");

        c.start_server(2).await?;
        c.start_sidecar(2).await?;
        c.wait_readyz(2, 200, READY).await?;
        insert(c, 0, "after-fallback").await?;
        assert_same_data(c, 2).await?;
        let status = status_json(&c.http_get(2, "/status", None).await?)?;
        ensure!(status["donor"] == primary.as_str(), "{status}");
        // The init run that cloned counted ordinal-1's answers that it was no donor.
        let text = scrape_metrics(c, 2).await?;
        last_clone_bytes(&text, "received")?;
        let not_a_donor = by_reason(&text, "clone_attempt_failures", "not_a_donor")?;
        ensure!(
            not_a_donor >= 1.0 && marker["failed_attempts"]["not_a_donor"] == not_a_donor,
            "{not_a_donor} in /metrics, the marker says {marker}"
        );
        Ok(())
    })
    .await
}

/// Pod 1's /readyz, fetched every 100 ms from the node namespace into a file, one answer a
/// line, until killed: it sees what a kubelet would while the test stops and starts servers.
fn watch_readyz(c: &Cluster, n: usize) -> Result<(tokio::process::Child, PathBuf)> {
    let out = c.root_dir().join(format!("readyz-{n}.txt"));
    let url = format!("http://{}:{}/readyz", c.pod_ip(n), c.agent_port()?);
    let mut command = c.node_command("sh");
    command
        .arg("-c")
        .arg(format!(
            "while :; do curl -sS --noproxy '*' --max-time 2 {url} || echo 'no answer'; \
             sleep 0.1; done >> {}",
            out.display()
        ))
        .kill_on_drop(true);
    Ok((command.spawn()?, out))
}

/// The primary's server stops and comes back within the grace: the replica stays ready
/// throughout; once it stays away longer, the replica is not ready.
async fn replicas_stay_ready_through_a_short_primary_outage(version: DbVersion) -> Result<()> {
    // Twice the longest restart seen on a loaded machine (15 s: shutdown, start, IO reconnect).
    const GRACE: &str = "30s";
    let naming = Naming::default().namespace("shop").first_ordinal(4);
    scenario(version, 2, VolumeLayout::FsGroup, naming, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        c.start_pod(1).await?;
        c.stop_sidecar(1).await?;
        let mut sidecar = c.agent_command(1, "sidecar")?;
        sidecar.env("MYSQL_STS_PRIMARY_OUTAGE_GRACE", GRACE);
        c.spawn_in_pod(1, "outage-sidecar", sidecar)?;
        c.wait_readyz(1, 200, READY).await?;

        let (mut watcher, answers) = watch_readyz(c, 1)?;
        c.stop_server(0).await?;
        readyz_until(c, "/readyz", |reply| {
            reply.text().contains("serving what it had")
        })
        .await?;
        c.start_server(0).await?;
        insert(c, 0, "after-restart").await?;
        assert_same_data(c, 1).await?;
        readyz_until(c, "/readyz", |reply| reply.text().contains("in sync")).await?;
        watcher.kill().await?;
        let seen = std::fs::read_to_string(&answers)?;
        let failed: Vec<&str> = seen.lines().filter(|l| !l.starts_with("200 ")).collect();
        ensure!(
            failed.is_empty() && seen.contains("serving what it had"),
            "not ready during a short outage: {failed:?}\n{seen}"
        );

        // Away for longer than the grace.
        c.stop_server(0).await?;
        let reply = readyz_until(c, "/readyz", |reply| reply.status == 503).await?;
        ensure!(
            reply
                .text()
                .contains(&format!("longer than the {}.0s grace", &GRACE[..2])),
            "{}",
            reply.text()
        );
        let log = c.log_text(1, "outage-sidecar-1.log");
        ensure!(log.contains("ready: primary"), "{log}");
        ensure!(log.contains("serving what it had"), "{log}");
        c.start_server(0).await?;
        Ok(())
    })
    .await
}

/// Pod n's semi-sync counters and switches, as its server says them (the agent's /status only
/// samples them): the yes/no transaction counters and the primary side's status.
async fn semi_sync_status(c: &Cluster, n: usize) -> Result<(u64, u64, bool)> {
    let mut conn = c.sql(n).await?;
    let rows: Vec<(String, String)> = conn
        .query("SHOW GLOBAL STATUS LIKE 'rpl_semi_sync%'")
        .await?;
    let get = |suffix: &str| {
        rows.iter()
            .find(|(name, _)| name.to_ascii_lowercase().ends_with(suffix))
            .map(|(_, value)| value.clone())
            .with_context(|| format!("no Rpl_semi_sync_*{suffix} in {rows:?}"))
    };
    let master_or_source = |rest: &str| match c.flavor() {
        Flavor::MariaDb => format!("_master_{rest}"),
        Flavor::MySql => format!("_source_{rest}"),
    };
    Ok((
        get(&master_or_source("yes_tx"))?.parse()?,
        get(&master_or_source("no_tx"))?.parse()?,
        get(&master_or_source("status"))? == "ON",
    ))
}

/// Pod n's `/status` `semi_sync`, once `wanted` holds for it.
async fn semi_sync_until(
    c: &Cluster,
    n: usize,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    poll_until(what, READY, POLL, || async {
        let status = status_json(&c.http_get(n, "/status", None).await?)?;
        let semi_sync = status["semi_sync"].clone();
        Ok(if wanted(&semi_sync) {
            Check::Done(semi_sync)
        } else {
            Check::Pending(semi_sync.to_string())
        })
    })
    .await
}

/// Lossless writes: with `--semi-sync` a lone primary keeps it off, turns it on once its replica
/// connects, and then every commit's OK means a replica acknowledged it. With the only replica's
/// IO thread stopped, a commit waits out the timeout and the primary falls back to asynchronous,
/// saying so once; it switches back once the replica is back.
async fn semi_sync_acknowledges_every_commit_on_a_replica(version: DbVersion) -> Result<()> {
    const TIMEOUT: Duration = Duration::from_secs(3);
    const COMMITS: u64 = 5;
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_mysql-sts-agent"), 2)
        .version(version)
        .agent_env("MYSQL_STS_SEMI_SYNC", "true")
        .agent_env("MYSQL_STS_SEMI_SYNC_TIMEOUT", "3s");
    Cluster::run_scenario(spec, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        let alone =
            semi_sync_until(c, 0, "a lone primary's semi-sync facts", |s| s.is_object()).await?;
        ensure!(
            alone["enabled"] == false,
            "a lone primary turned it on: {alone}"
        );

        c.start_pod(1).await?;
        c.wait_readyz(1, 200, READY).await?;
        semi_sync_until(c, 0, "the primary's semi-sync to be active", |s| {
            s["enabled"] == true && s["active"] == true && s["clients"] == 1
        })
        .await?;
        semi_sync_until(c, 1, "the replica to acknowledge", |s| {
            s["replica_enabled"] == true && s["replica_active"] == true
        })
        .await?;

        let (yes, no, _) = semi_sync_status(c, 0).await?;
        for i in 0..COMMITS {
            insert(c, 0, &format!("acknowledged-{i}")).await?;
        }
        let (yes_after, no_after, active) = semi_sync_status(c, 0).await?;
        ensure!(
            yes_after == yes + COMMITS && no_after == no && active,
            "{COMMITS} commits: acknowledged {yes} -> {yes_after}, not {no} -> {no_after}"
        );
        assert_same_data(c, 1).await?;

        // The only replica stops acknowledging: the next commit waits out the timeout.
        let stop_io = match c.flavor() {
            Flavor::MariaDb => "STOP SLAVE IO_THREAD",
            Flavor::MySql => "STOP REPLICA IO_THREAD",
        };
        c.sql(1).await?.query_drop(stop_io).await?;
        let started = std::time::Instant::now();
        insert(c, 0, "unacknowledged").await?;
        let waited = started.elapsed();
        ensure!(
            waited >= TIMEOUT - Duration::from_millis(100),
            "a commit nobody acknowledged returned after {waited:?}, before the {TIMEOUT:?} timeout"
        );
        let (_, no_fallback, active) = semi_sync_status(c, 0).await?;
        ensure!(
            !active && no_fallback == no + 1,
            "after the timeout: active {active}, not {no_fallback}"
        );
        semi_sync_until(c, 0, "the primary's /status to say inactive", |s| {
            s["enabled"] == true && s["active"] == false
        })
        .await?;
        let started = std::time::Instant::now();
        insert(c, 0, "asynchronous").await?;
        ensure!(
            started.elapsed() < TIMEOUT,
            "fallen back, a commit still waited"
        );

        let start_io = match c.flavor() {
            Flavor::MariaDb => "START SLAVE IO_THREAD",
            Flavor::MySql => "START REPLICA IO_THREAD",
        };
        c.sql(1).await?.query_drop(start_io).await?;
        assert_same_data(c, 1).await?;
        insert(c, 0, "acknowledged-again").await?;
        semi_sync_until(c, 0, "semi-sync to be active again", |s| {
            s["active"] == true
        })
        .await?;

        let log = c.log_text(0, "sidecar-1.log");
        let fell_back = "semi-sync fell back to asynchronous replication: no replica acknowledged";
        let recovered = "semi-sync fell back to asynchronous replication: recovered";
        ensure!(
            log.matches(fell_back).count() == 1 && log.matches(recovered).count() == 1,
            "the fallback and the recovery each once:\n{log}"
        );
        ensure!(
            log.matches("semi-sync on for the primary").count() == 1,
            "{log}"
        );
        let replica_log = c.log_text(1, "sidecar-1.log");
        ensure!(
            replica_log.matches("semi-sync on for this replica").count() == 1,
            "{replica_log}"
        );
        Ok(())
    })
    .await
}

/// The agents' admin account is a dedicated one holding exactly the grants of
/// k8s/admin-account/admin-account.sql, created on the first pod as the image's entrypoint
/// creates it from its env and the mounted file (`ClusterSpec::admin_account`): the set comes
/// up, clones (MariaDB: pod 2 from replica pod 1, whose mariadb-backup logs in as that account),
/// replicates with semi-sync on, and every pod is ready, with the sidecars logged in as that
/// account.
async fn a_dedicated_admin_account_with_the_documented_grants_runs_the_set(
    version: DbVersion,
) -> Result<()> {
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_mysql-sts-agent"), 3)
        .version(version)
        .admin_account()
        .agent_env("MYSQL_STS_SEMI_SYNC", "true");
    Cluster::run_scenario(spec, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        for n in [1, 2] {
            c.start_pod(n).await?;
        }
        insert(c, 0, "after").await?;
        for n in 0..3 {
            c.wait_readyz(n, 200, READY).await?;
        }
        for n in [1, 2] {
            assert_same_data(c, n).await?;
        }
        semi_sync_until(c, 0, "the primary's semi-sync to be active", |s| {
            s["enabled"] == true && s["active"] == true
        })
        .await?;
        let admin = harness::ADMIN_USER;
        for n in 0..3 {
            let mut conn = c.sql(n).await?;
            let sessions: Vec<String> = conn
                .query("SELECT USER FROM information_schema.PROCESSLIST")
                .await?;
            ensure!(
                sessions.iter().any(|user| user == admin),
                "{}: no session of {admin}: {sessions:?}",
                pod(c, n)
            );
            let grants: Vec<String> = conn.query(format!("SHOW GRANTS FOR '{admin}'@'%'")).await?;
            ensure!(
                grants
                    .iter()
                    .all(|g| !g.contains("ALL PRIVILEGES") && !g.contains("SUPER")),
                "{}: {grants:?}",
                pod(c, n)
            );
        }
        if c.flavor() == Flavor::MariaDb {
            let served = "mysql_sts_agent_clones_served_total{outcome=\"completed\"}";
            let replica = scrape_metrics(c, 1).await?;
            ensure!(
                metric(&replica, served)? == 1.0,
                "pod 1 served pod 2's clone:\n{replica}"
            );
        }
        Ok(())
    })
    .await
}

/// Asks Prometheus `promql` until its value per pod (the `pod` label) satisfies `wanted`.
async fn per_pod_until(
    c: &Cluster,
    prometheus: &Prometheus,
    promql: &str,
    wanted: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> Result<()> {
    let per_pod = |samples: &[harness::prometheus::Sample]| -> Result<BTreeMap<String, f64>> {
        samples
            .iter()
            .map(|sample| {
                let pod = sample.labels.get("pod").context("a series without pod")?;
                Ok((pod.clone(), sample.value()?))
            })
            .collect()
    };
    prometheus
        .query_until(c, promql, READY, |samples| Ok(wanted(&per_pod(samples)?)))
        .await?;
    Ok(())
}

/// A real Prometheus scrapes every pod every second, with the README's job but static targets
/// (the harness has no Kubernetes API for `kubernetes_sd_configs`), and its HTTP API shows what
/// the agents say: every target up, the replicas ready with a small lag, and a replica's stopped
/// SQL thread making it not ready until the thread runs again.
async fn prometheus_scrapes_every_pod_and_sees_a_stopped_sql_thread(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default().namespace("shop");
    scenario(version, 3, VolumeLayout::FsGroup, naming, async |c| {
        // Prometheus needs no clone of size.
        primary_with_data(c, 1_000).await?;
        for n in [1, 2] {
            c.start_pod(n).await?;
        }
        let prometheus = c.start_prometheus().await?;
        let (primary, stopped, other) = (pod(c, 0), pod(c, 1), pod(c, 2));
        let every_pod = |value: f64| {
            let pods = [&primary, &stopped, &other];
            move |seen: &BTreeMap<String, f64>| {
                seen.len() == pods.len() && pods.iter().all(|pod| seen.get(*pod) == Some(&value))
            }
        };
        per_pod_until(
            c,
            &prometheus,
            &format!("up{{job=\"{JOB}\"}}"),
            every_pod(1.0),
        )
        .await?;
        per_pod_until(c, &prometheus, "mysql_sts_agent_ready", every_pod(1.0)).await?;
        per_pod_until(
            c,
            &prometheus,
            "mysql_sts_agent_replica_lag_seconds",
            |lag| {
                lag.len() == 2
                    && [&stopped, &other]
                        .iter()
                        .all(|pod| lag.get(*pod) < Some(&5.0))
            },
        )
        .await?;

        let mut replica = c.sql(1).await?;
        replica.query_drop("STOP REPLICA SQL_THREAD").await?;
        let only_stopped_is = |value: f64| {
            let (stopped, other) = (stopped.clone(), other.clone());
            move |seen: &BTreeMap<String, f64>| {
                seen.get(&stopped) == Some(&value) && seen.get(&other) == Some(&1.0)
            }
        };
        for series in [
            "mysql_sts_agent_replica_sql_thread_running",
            "mysql_sts_agent_ready",
        ] {
            per_pod_until(c, &prometheus, series, only_stopped_is(0.0)).await?;
        }
        replica.query_drop("START REPLICA SQL_THREAD").await?;
        for series in [
            "mysql_sts_agent_replica_sql_thread_running",
            "mysql_sts_agent_ready",
        ] {
            per_pod_until(c, &prometheus, series, only_stopped_is(1.0)).await?;
        }
        Ok(())
    })
    .await
}

/// Secrets as awkward as a user's may be: quotes, a backslash, spaces, `;#=$` and a backtick
/// (SQL, option files and shells treat them specially) and non-ASCII characters, each one
/// distinct and long enough that no accidental match is possible. The clone token travels in an
/// HTTP header, whose value may hold visible ASCII and spaces only (bytes above 0x7E are obsolete
/// text that `HeaderValue::to_str` refuses), so it has no non-ASCII. MySQL's root password has
/// no quote or backslash: the mysql image's entrypoint pastes it into SQL and an option file
/// unescaped (see the harness's `refused_by_entrypoint`); MariaDB's escapes it.
fn awkward_secrets(flavor: Flavor) -> Secrets {
    Secrets {
        root_password: match flavor {
            Flavor::MariaDb => "Ro\"ot'\\s ä ∂;#=$y`§ root".into(),
            Flavor::MySql => "Ro-ot ä ∂;#=$y`§ root".into(),
        },
        repl_password: "re\"pl'\\ ü ß;#=$x`✓ repl".into(),
        clone_password: "cl\"one'\\ ñ ☃;#=$z` clone".into(),
        clone_token: "to\"ken'\\ ;#=$w`%+/~ token".into(),
    }
}

/// Whether `finding` is the replication password where a replica's server keeps it to connect
/// to its source with (it cannot do without): MariaDB's master.info; MySQL's
/// mysql.slave_master_info table, in mysql.ibd and the redo, undo and doublewrite pages InnoDB
/// writes it through. A clone copies its donor's.
fn keeps_replication_credentials(finding: &Finding, datadirs: &[PathBuf]) -> bool {
    let path = Path::new(&finding.place);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let in_redo_log = path.parent().and_then(Path::file_name) == Some("#innodb_redo".as_ref());
    finding.key == "repl-password"
        && datadirs.iter().any(|datadir| path.starts_with(datadir))
        && (["master.info", "mysql.ibd", "ibdata1"].contains(&name.as_ref())
            || name.ends_with(".dblwr")
            || name.starts_with("undo_")
            || in_redo_log)
}

/// No secret leaks, in any encoding, while secrets with quotes, backslashes, spaces and non-ASCII
/// characters meet real servers: pod 2 clones pod 1 (MariaDB: a donor's backup option file with
/// the root password and the clone token's header; MySQL: the clone user), replication runs as
/// the replication user, and each account takes exactly its secret (a quoting bug that mangled
/// it the same way everywhere would pass the rest). Then every command line seen in any pod
/// while they came up, every log and file the cluster left (but the mounted Secret) and every
/// endpoint of every pod are searched for each secret.
async fn secrets_with_quotes_backslashes_and_non_ascii_work_and_never_leak(
    version: DbVersion,
) -> Result<()> {
    let flavor = version.flavor();
    let secrets = awkward_secrets(flavor);
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_mysql-sts-agent"), 3)
        .version(version)
        .names(Naming::default().namespace("vault"))
        .secrets(secrets.clone())
        // Every crate's debug lines too, not only the agent's.
        .agent_env("MYSQL_STS_LOG", "debug");
    Cluster::run_scenario(spec, async |c| {
        let watch = c.watch_command_lines()?;
        primary_with_data(c, 2_000).await?;
        for n in [1, 2] {
            c.start_pod(n).await?;
        }
        insert(c, 0, "after").await?;
        for n in [1, 2] {
            assert_same_data(c, n).await?;
        }
        let pod2 = status_json(&c.http_get(2, "/status", None).await?)?;
        ensure!(pod2["donor"] == c.naming().pod_fqdn(1).as_str(), "{pod2}");

        // Root takes its secret: every `c.sql` logs in with it.
        let mut accounts = vec![("repl", &secrets.repl_password)];
        if flavor == Flavor::MySql {
            accounts.push(("clone", &secrets.clone_password));
        }
        for (user, password) in accounts {
            let mut conn = c.sql_as(1, user, password).await?;
            let me: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
            ensure!(me.as_deref() == Some(&format!("{user}@%")[..]), "{me:?}");
        }

        let command_lines: Vec<(usize, String)> = (watch.finish().await?.into_iter())
            .map(|(n, line)| (n, String::from_utf8_lossy(&line).replace('\0', " ")))
            .collect();
        // The watch saw the clone's short-lived tools too: the donor's backup, the temporary server.
        let (tool_pod, tool_arg) = match flavor {
            Flavor::MariaDb => (1, "--backup"),
            Flavor::MySql => (2, "--initialize-insecure"),
        };
        ensure!(
            (command_lines.iter()).any(|(n, line)| *n == tool_pod && line.contains(tool_arg)),
            "no process with {tool_arg} seen in {}: {command_lines:#?}",
            pod(c, tool_pod)
        );
        let search = SecretSearch::new(&secrets)?;
        // The search sees a secret where it is: in the mounted Secret, each one.
        let secrets_dir = c.root_dir().join("secrets");
        let mounted = search.scan_tree(&secrets_dir, &|_| false)?;
        let keys: BTreeSet<&str> = mounted.iter().map(|found| found.key.as_str()).collect();
        ensure!(keys.len() == 4, "in the Secret's files: {mounted:?}");
        let mut found = Vec::new();
        for (n, line) in &command_lines {
            found.extend(search.scan(&format!("{} process", pod(c, *n)), line.as_bytes()));
        }
        for n in 0..3 {
            for path in [
                "/status", "/metrics", "/readyz", "/livez", "/data", "/donor", "/clone",
            ] {
                let reply = c.http_get(n, path, None).await?;
                found.extend(search.scan(&format!("{} GET {path}", pod(c, n)), &reply.body));
            }
        }
        found.extend(search.scan_tree(c.root_dir(), &|path| {
            // The mounted Secret itself; the pods' UTS namespace files (bind mounts, not data).
            path == secrets_dir || path.file_name() == Some("uts".as_ref())
        })?);
        let datadirs: Vec<PathBuf> = (0..3).map(|n| c.datadir(n)).collect();
        found.retain(|finding| !keeps_replication_credentials(finding, &datadirs));
        ensure!(
            found.is_empty(),
            "secrets found:\n{}",
            (found.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join("\n")
        );

        // A MariaDB donor's backup option file (and its scratch directory) is gone after the clone.
        for n in [0, 1] {
            let left: Vec<String> = datadir_entries(&c.tmp_dir(n))?
                .into_iter()
                .filter(|name| name.starts_with("mysql-sts-agent-backup-"))
                .collect();
            ensure!(left.is_empty(), "{}'s /tmp still holds {left:?}", pod(c, n));
        }
        Ok(())
    })
    .await
}

/// `curl` from the node to pod n's peer channel: over HTTPS with the CA and the pod's name,
/// presenting the set's certificate or none; or over plain HTTP. Returns curl's success and its
/// output (the body, or curl's error).
async fn curl_peer(
    c: &Cluster,
    n: usize,
    path: &str,
    how: PeerClient,
    bearer: Option<&str>,
) -> Result<(bool, String)> {
    let (ip, fqdn, port) = (c.pod_ip(n), c.naming().pod_fqdn(n), c.peer_port()?);
    let tls = c.tls()?;
    let file = |key: &str| tls.file(key).to_string_lossy().into_owned();
    let mut curl = c.node_command("curl");
    curl.args(["-sS", "--noproxy", "*", "--max-time", "10"]);
    match how {
        PeerClient::PlainHttp => {
            curl.arg(format!("http://{ip}:{port}{path}"));
        }
        PeerClient::WithoutCertificate | PeerClient::WithCertificate => {
            curl.args(["--cacert", &file("ca.crt")])
                .args(["--resolve", &format!("{fqdn}:{port}:{ip}")])
                .arg(format!("https://{fqdn}:{port}{path}"));
            if how == PeerClient::WithCertificate {
                curl.args(["--cert", &file("tls.crt"), "--key", &file("tls.key")]);
            }
        }
    }
    if let Some(token) = bearer {
        curl.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = curl.output().await.context("running curl")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PeerClient {
    PlainHttp,
    WithoutCertificate,
    WithCertificate,
}

/// Where a certificate is served: the agent's peer channel, or the server (TLS after the
/// MySQL protocol's greeting).
#[derive(Clone, Copy, Debug)]
enum Served {
    PeerChannel,
    Server,
}

/// The serial of the certificate pod n serves there, as `openssl s_client` sees it.
async fn served_serial(c: &Cluster, n: usize, at: Served) -> Result<String> {
    let (ip, fqdn) = (c.pod_ip(n), c.naming().pod_fqdn(n));
    let tls = c.tls()?;
    let file = |key: &str| tls.file(key).to_string_lossy().into_owned();
    let (port, starttls) = match at {
        Served::PeerChannel => (c.peer_port()?, ""),
        Served::Server => (c.server_port(), "-starttls mysql"),
    };
    let script = format!(
        "openssl s_client -connect {ip}:{port} {starttls} -servername {fqdn} -CAfile {ca} \
         -cert {cert} -key {key} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        ca = file("ca.crt"),
        cert = file("tls.crt"),
        key = file("tls.key"),
    );
    let out = c.node_command("sh").args(["-c", &script]).output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.trim().trim_start_matches("serial=").to_owned())
}

/// Every channel over TLS, with the set's one certificate (`*.<service>.<namespace>.svc.<domain>`),
/// deployed by the flavor's overlay with the `k8s/tls` component (its settings, mounts and peer
/// port; the Secret as cert-manager would issue `k8s/tls/cert-manager`'s Certificate, projected
/// into each pod's `tls` volume as the kubelet does, root's with group fsGroup and mode 0440):
/// - replication: each replica's IO thread connects with TLS and verifies the primary's
///   certificate and host name; the replication user requires TLS, so the IO thread and the
///   agent's own sampling of the primary (without which a replica is never ready) both use it;
///   every replica holds every row;
/// - MySQL's clone: `CLONE INSTANCE ... REQUIRE SSL` as a clone user that requires TLS;
/// - the peer channel (`/clone` on MariaDB, `/donor` and `/data` on both): the pods cloned
///   through it, the plain port refuses it naming the TLS port, plain HTTP and a client without
///   a certificate are refused on the TLS port, a client with the set's certificate is served
///   (on MariaDB a wrong token still gets `401`), and a rotated certificate (a new serial, swapped
///   in as the kubelet updates a Secret) is served without a restart, logged once, by the peer
///   channel and by the servers (the sidecar tells them), and replication goes on;
/// - a replica whose replication was configured without TLS (by hand, as before the setting was
///   on) is configured again over TLS by its restarted sidecar, keeping its position.
async fn every_channel_runs_over_tls_and_a_rotated_certificate_is_served(
    version: DbVersion,
) -> Result<()> {
    let naming = Naming::default()
        .statefulset("orders-db")
        .service("orders-db-hl")
        .namespace("shop")
        .cluster_domain("k8s.example.net");
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_mysql-sts-agent"), 3)
        .version(version)
        .names(naming)
        .tls()
        // The TLS reload and REQUIRE SSL, as the dedicated admin account.
        .admin_account();
    Cluster::run_scenario(spec, async |c| {
        primary_with_data(c, INITIAL_ROWS).await?;
        for n in [1, 2] {
            c.start_pod(n).await?;
            c.wait_readyz(n, 200, READY).await?;
        }
        insert(c, 0, "over tls").await?;
        for n in [1, 2] {
            assert_same_data(c, n).await?;
        }

        let (status, words) = match c.flavor() {
            Flavor::MariaDb => ("SHOW SLAVE STATUS", "Master"),
            Flavor::MySql => ("SHOW REPLICA STATUS", "Source"),
        };
        for n in [1, 2] {
            let row: mysql_async::Row = c
                .sql(n)
                .await?
                .query_first(status)
                .await?
                .context("no replica status")?;
            for column in [
                format!("{words}_SSL_Allowed"),
                format!("{words}_SSL_Verify_Server_Cert"),
            ] {
                let value: Option<String> = row.get(column.as_str());
                ensure!(
                    value.as_deref() == Some("Yes"),
                    "{}: {column} is {value:?}",
                    pod(c, n)
                );
            }
            // The CA the `k8s/tls` component's settings point at, in this pod's `tls` volume
            // (each pod's volume has its own host path here): a MySQL clone comes with its
            // donor's replication settings, which the agent configures again for its own.
            let ca: Option<String> = row.get(format!("{words}_SSL_CA_File").as_str());
            let mounted = c.pod_dir(n).join("tls/ca.crt");
            ensure!(
                ca.as_deref() == Some(&*mounted.to_string_lossy()),
                "{}: {words}_SSL_CA_File is {ca:?}, not {}",
                pod(c, n),
                mounted.display()
            );
        }
        // MySQL's clone user too: the pods were cloned with `CLONE INSTANCE ... REQUIRE SSL`.
        let users: &[&str] = match c.flavor() {
            Flavor::MariaDb => &["repl"],
            Flavor::MySql => &["repl", "clone"],
        };
        for user in users {
            let ssl_type: Option<String> = c
                .sql(0)
                .await?
                .exec_first("SELECT ssl_type FROM mysql.user WHERE user = ?", (user,))
                .await?;
            ensure!(
                ssl_type.as_deref() == Some("ANY"),
                "user {user} requires {ssl_type:?}, not SSL"
            );
        }

        let plain = c.http_get(1, "/donor", None).await?;
        ensure!(
            plain.status == 403
                && plain
                    .text()
                    .contains(&format!("over TLS on port {}", c.peer_port()?)),
            "/donor on the plain port: {}",
            plain.text()
        );
        let (ok, text) = curl_peer(c, 1, "/donor", PeerClient::PlainHttp, None).await?;
        ensure!(!ok, "plain HTTP on the TLS port was answered: {text}");
        let (ok, text) = curl_peer(c, 1, "/donor", PeerClient::WithoutCertificate, None).await?;
        ensure!(!ok, "a client without a certificate was answered: {text}");
        let (ok, text) = curl_peer(c, 1, "/donor", PeerClient::WithCertificate, None).await?;
        ensure!(
            ok && text.starts_with("200 healthy donor"),
            "a client with the set's certificate: {text}"
        );
        let (ok, text) = curl_peer(c, 1, "/data", PeerClient::WithCertificate, None).await?;
        ensure!(ok && text.contains("\"holds_data\":true"), "/data: {text}");
        if c.flavor() == Flavor::MariaDb {
            let bearer = Some("not-the-token");
            let (_, text) = curl_peer(c, 1, "/clone", PeerClient::WithCertificate, bearer).await?;
            ensure!(text.starts_with("401"), "a wrong token over mTLS: {text}");
            let metrics = scrape_metrics(c, 1).await?;
            let refused = by_reason(&metrics, "clone_serve_refusals_total", "unauthorized")?;
            ensure!(
                refused == 1.0,
                "{refused} refusals for the token:\n{metrics}"
            );
        }

        let before = served_serial(c, 1, Served::PeerChannel).await?;
        ensure!(
            served_serial(c, 0, Served::Server).await? == before,
            "the primary's server does not serve the set's certificate"
        );
        let rotated = c.rotate_tls()?;
        ensure!(
            rotated != before,
            "the rotation issued serial {rotated} again"
        );
        for (n, at) in [
            (1, Served::PeerChannel),
            (0, Served::Server),
            (1, Served::Server),
        ] {
            let what = format!("pod {n}'s {at:?} to serve the rotated certificate");
            poll_until(&what, READY, POLL, || async {
                let serial = served_serial(c, n, at).await?;
                Ok(if serial == rotated {
                    Check::Done(())
                } else {
                    Check::Pending(format!("serves serial {serial:?}, not {rotated}"))
                })
            })
            .await?;
        }
        insert(c, 0, "after the rotation").await?;
        for n in [1, 2] {
            // Telling the server is no transaction of its own: the replicas are not fenced.
            assert_same_data(c, n).await?;
            c.wait_readyz(n, 200, READY).await?;
        }

        // A replica configured without TLS (as before the setting was turned on): the
        // restarted sidecar configures it again over TLS, keeping its position.
        let (stop, plain, start) = match c.flavor() {
            Flavor::MariaDb => ("STOP SLAVE", "CHANGE MASTER TO MASTER_SSL=0", "START SLAVE"),
            Flavor::MySql => (
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_SSL=0, SOURCE_SSL_VERIFY_SERVER_CERT=0",
                "START REPLICA",
            ),
        };
        c.stop_sidecar(2).await?;
        let mut conn = c.sql(2).await?;
        for statement in [stop, plain, start] {
            conn.query_drop(statement).await?;
        }
        c.start_sidecar(2).await?;
        c.wait_readyz(2, 200, READY).await?;
        let row: mysql_async::Row = conn.query_first(status).await?.context("no status")?;
        for column in ["SSL_Allowed", "SSL_Verify_Server_Cert"] {
            let value: Option<String> = row.get(format!("{words}_{column}").as_str());
            ensure!(
                value.as_deref() == Some("Yes"),
                "the restarted sidecar left {words}_{column} at {value:?}"
            );
        }
        ensure!(
            c.log_text(2, "sidecar-2.log")
                .contains("configured without verified TLS and --replication-tls is set"),
            "the decision is not logged"
        );
        insert(c, 0, "secured again").await?;
        assert_same_data(c, 2).await?;
        let log = c.log_text(1, "sidecar-1.log");
        let reloads = log
            .matches("the certificate files changed, new connections get")
            .count();
        ensure!(reloads == 1, "{reloads} reloads logged, not 1:\n{log}");
        let (ok, text) = curl_peer(c, 1, "/donor", PeerClient::WithCertificate, None).await?;
        ensure!(ok, "the rotated certificate: {text}");
        Ok(())
    })
    .await
}

/// One test per scenario and image: `mariadb::<scenario>` (10.11), `mariadb_11_8::<scenario>`
/// and `mysql::<scenario>`.
macro_rules! scenarios {
    ($module:ident, $version:expr, [$($name:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> Result<()> {
                    super::$name($version).await
                }
            )*
        }
    };
}

/// The scenarios of every image, then those of the MariaDB images only.
macro_rules! every_image {
    ([$($name:ident),* $(,)?], mariadb: [$($mariadb:ident),* $(,)?]) => {
        scenarios!(mariadb, DbVersion::MariaDb10_11, [$($name,)* $($mariadb,)*]);
        scenarios!(mariadb_11_8, DbVersion::MariaDb11_8, [$($name,)* $($mariadb,)*]);
        scenarios!(mysql, DbVersion::MySql9_7, [$($name,)*]);
    };
}

every_image!(
    [
        three_pods_come_up_in_order_and_hold_every_row,
        status_shows_a_clone_in_progress_then_the_replica_it_became,
        replica_is_unready_while_stopped_or_behind_and_ready_once_caught_up,
        restarted_replica_resumes_without_recloning,
        interrupted_clones_leave_nothing_usable_and_the_retry_succeeds,
        refuses_a_datadir_it_cannot_prove_is_its_own,
        replica_with_unexplained_data_is_blocked_and_liveness_ignores_the_database,
        a_replica_behind_purged_binlogs_is_recloned,
        an_unresolvable_donor_is_reported_with_the_pods_resolver,
        an_errant_transaction_fences_the_replica,
        a_writable_replica_is_not_ready,
        replicas_stay_ready_through_a_short_primary_outage,
        a_donor_that_is_not_healthy_refuses_to_serve,
        a_joiner_falls_back_from_an_unhealthy_ordinal_minus_one,
        losing_the_first_pods_volume_restores_it_from_the_most_advanced_peer,
        a_restore_waits_for_what_the_donor_received_but_had_not_applied,
        a_first_pod_that_cannot_ask_a_peer_does_not_start_empty,
        semi_sync_acknowledges_every_commit_on_a_replica,
        prometheus_scrapes_every_pod_and_sees_a_stopped_sql_thread,
        secrets_with_quotes_backslashes_and_non_ascii_work_and_never_leak,
        every_channel_runs_over_tls_and_a_rotated_certificate_is_served,
        a_dedicated_admin_account_with_the_documented_grants_runs_the_set,
    ],
    // mariadb-backup runs in the donor's agent, which compresses its stream when asked.
    mariadb: [
        a_failing_backup_tool_is_reported_and_never_taken_for_a_clone,
        a_compressed_clone_holds_the_primarys_data,
    ]
);
