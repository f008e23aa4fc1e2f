//! An application that writes through faults: `AckedWriter` inserts rows into the primary, one
//! autocommit INSERT at a time, and records the id of every row whose commit was acknowledged
//! (the server answered OK). A failed or timed-out commit is not acknowledged (it may or may not
//! have happened), and the writer reconnects as an application would. `verify` then checks what
//! no fault may break: every Ready pod holds every acknowledged row.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::data::{CATCH_UP, POLL, checksum};
use super::{Check, Cluster, poll_until};

/// The application's account: no privilege beyond its table, so `read_only` stops it, as it
/// would stop an application (root passes MariaDB's `read_only`).
const APP_USER: &str = "app_writer";
const APP_PASSWORD: &str = "app-writer-password";
/// Between two commits: a few hundred rows a minute of a scenario, a few thousand in all.
const PACE: Duration = Duration::from_millis(10);
/// A commit not answered by then counts as failed (e.g. the primary hangs or is gone).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// The tables every Ready pod must hold alike.
const TABLES: [&str; 2] = ["app.t", "app.acked"];

/// Creates the writer's table and account on pod n (the primary): do it before the replicas
/// clone it.
pub async fn create_app_table(c: &Cluster, n: usize) -> Result<()> {
    let mut conn = c.sql(n).await?;
    conn.query_drop(
        "CREATE TABLE app.acked (id BIGINT PRIMARY KEY, pad CHAR(100) NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    conn.query_drop(format!(
        "CREATE USER '{APP_USER}'@'localhost' IDENTIFIED BY '{APP_PASSWORD}'"
    ))
    .await?;
    conn.query_drop(format!(
        "GRANT SELECT, INSERT ON app.* TO '{APP_USER}'@'localhost'"
    ))
    .await?;
    Ok(())
}

/// What a finished writer saw.
pub struct Written {
    /// The ids of every acknowledged commit.
    pub acked: BTreeSet<u64>,
    /// Commits (or connections) that failed or timed out.
    pub failed: u64,
}

pub struct AckedWriter {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl AckedWriter {
    /// Starts writing into pod n's server (the primary) over its socket, as the application.
    pub fn start(c: &Cluster, n: usize) -> AckedWriter {
        let opts: Opts = OptsBuilder::default()
            .socket(Some(c.socket(n).to_string_lossy()))
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .into();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write(opts, stop.clone(), acked.clone(), failed.clone()));
        AckedWriter {
            stop,
            acked,
            failed,
            task,
        }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("writer lock").len()
    }

    /// Waits until `more` commits beyond the `since` acknowledged so far were acknowledged: the
    /// writer got through (e.g. while a fault is in place, or after it).
    pub async fn wait_acked(&self, since: usize, more: usize) -> Result<()> {
        let what = format!("{more} more acknowledged commits than {since}");
        poll_until(&what, CATCH_UP, POLL, || async {
            let count = self.acked_count();
            Ok(if count >= since + more {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "{count} acknowledged, {} failed",
                    self.failed.load(Ordering::Relaxed)
                ))
            })
        })
        .await
    }

    pub async fn finish(self) -> Result<Written> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?;
        let acked = self
            .acked
            .lock()
            .expect("writer lock")
            .iter()
            .copied()
            .collect();
        Ok(Written {
            acked,
            failed: self.failed.load(Ordering::Relaxed),
        })
    }
}

/// Writer-chosen ids, one per attempt and never reused: an id is in the table at most once,
/// whichever server took it.
async fn write(
    opts: Opts,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    failed: Arc<AtomicU64>,
) {
    let mut conn: Option<Conn> = None;
    let mut next_id = 1;
    while !stop.load(Ordering::Relaxed) {
        let session = match conn.as_mut() {
            Some(session) => session,
            None => match tokio::time::timeout(COMMIT_TIMEOUT, Conn::new(opts.clone())).await {
                Ok(Ok(session)) => conn.insert(session),
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            },
        };
        let id = next_id;
        next_id += 1;
        let insert = session.exec_drop(
            "INSERT INTO app.acked (id, pad) VALUES (?, REPEAT('a', 100))",
            (id,),
        );
        match tokio::time::timeout(COMMIT_TIMEOUT, insert).await {
            Ok(Ok(())) => {
                acked.lock().expect("writer lock").push(id);
                tokio::time::sleep(PACE).await;
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
                conn = None;
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// The ids of `app.acked` on pod n.
pub async fn ids(c: &Cluster, n: usize) -> Result<BTreeSet<u64>> {
    let mut conn = c.sql(n).await?;
    let ids: Vec<u64> = conn.query("SELECT id FROM app.acked").await?;
    Ok(ids.into_iter().collect())
}

/// `want` minus what pod n holds, described: how many, and the first few.
fn describe_missing(missing: &BTreeSet<u64>) -> String {
    let first: Vec<u64> = missing.iter().take(10).copied().collect();
    format!("{} missing, first {first:?}", missing.len())
}

/// Each of `ready` answers its readinessProbe 200 and each of `not_ready` 503 (within
/// `CATCH_UP`); then every Ready pod holds every id of `acked` (reporting the missing ones), and
/// `CHECKSUM TABLE` agrees across them once they have applied all there is.
pub async fn verify(
    c: &Cluster,
    acked: &BTreeSet<u64>,
    ready: &[usize],
    not_ready: &[usize],
) -> Result<()> {
    ensure!(!acked.is_empty(), "the writer never got a commit through");
    for &n in not_ready {
        c.wait_readyz(n, 503, CATCH_UP).await?;
    }
    for &n in ready {
        c.wait_readyz(n, 200, CATCH_UP).await?;
    }
    for &n in ready {
        let name = c.naming().hostname(n);
        let what = format!("{name} to hold every acknowledged id");
        let held = poll_until(&what, CATCH_UP, POLL, || async {
            let missing: BTreeSet<u64> = acked.difference(&ids(c, n).await?).copied().collect();
            Ok(if missing.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(describe_missing(&missing))
            })
        })
        .await;
        if let Err(error) = held {
            bail!("{name} is Ready but lost acknowledged rows: {error:#}");
        }
    }
    let Some((&first, others)) = ready.split_first() else {
        return Ok(());
    };
    for table in TABLES {
        let what = format!("CHECKSUM TABLE {table} to agree across pods {ready:?}");
        poll_until(&what, CATCH_UP, POLL, || async {
            let want = checksum(c, first, table).await?;
            let mut differ = Vec::new();
            for &n in others {
                let have = checksum(c, n, table).await?;
                if have != want {
                    differ.push(format!("{}: {have}", c.naming().hostname(n)));
                }
            }
            Ok(if differ.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "{}: {want}, {}",
                    c.naming().hostname(first),
                    differ.join(", ")
                ))
            })
        })
        .await?;
    }
    Ok(())
}
