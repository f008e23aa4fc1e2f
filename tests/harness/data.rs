//! The application's data in a scenario: a table on the primary, rows written into it, and the
//! comparisons that prove a replica holds the same; what a clone leaves in a datadir.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mysql_async::prelude::Queryable;

use super::{Check, Cluster, Flavor, poll_until};

pub const POLL: Duration = Duration::from_millis(50);
/// How long a replica may take to apply what the primary holds.
pub const CATCH_UP: Duration = Duration::from_secs(60);

/// Pod 0 up, with `app.t` holding `rows` rows (about 250 bytes each) so that clones carry real
/// data.
pub async fn primary_with_data(c: &mut Cluster, rows: u64) -> Result<()> {
    c.start_pod(0).await?;
    let mut conn = c.sql(0).await?;
    conn.query_drop("CREATE DATABASE app").await?;
    conn.query_drop(
        "CREATE TABLE app.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(32) NOT NULL, \
         pad CHAR(200) NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    // Any table with enough rows serves as a row source on both flavors (three of them: more
    // than a million rows).
    conn.exec_drop(
        "INSERT INTO app.t (note, pad) SELECT 'initial', REPEAT('x', 200) \
         FROM information_schema.COLLATIONS a, information_schema.COLLATIONS b, \
         information_schema.COLLATIONS c LIMIT ?",
        (rows,),
    )
    .await?;
    Ok(())
}

pub async fn insert(c: &Cluster, n: usize, note: &str) -> Result<()> {
    let mut conn = c.sql(n).await?;
    conn.exec_drop("INSERT INTO app.t (note, pad) VALUES (?, 'y')", (note,))
        .await?;
    Ok(())
}

pub async fn row_count(c: &Cluster, n: usize) -> Result<u64> {
    let mut conn = c.sql(n).await?;
    Ok(conn
        .query_first("SELECT COUNT(*) FROM app.t")
        .await?
        .unwrap_or(0))
}

/// `CHECKSUM TABLE` of `table` (e.g. "app.t") on pod n.
pub async fn checksum(c: &Cluster, n: usize, table: &str) -> Result<u64> {
    let mut conn = c.sql(n).await?;
    let row: Option<(String, Option<u64>)> =
        conn.query_first(format!("CHECKSUM TABLE {table}")).await?;
    row.and_then(|(_, sum)| sum)
        .with_context(|| format!("CHECKSUM TABLE {table} gave no checksum"))
}

/// Waits until replica `n` holds as many rows of `app.t` as the primary, then compares checksums.
pub async fn assert_same_data(c: &Cluster, n: usize) -> Result<()> {
    let want = row_count(c, 0).await?;
    let names = c.naming();
    let what = format!("{} to hold the primary's {want} rows", names.hostname(n));
    poll_until(&what, CATCH_UP, POLL, || async {
        let have = row_count(c, n).await?;
        Ok(if have == want {
            Check::Done(())
        } else {
            Check::Pending(format!("{have} rows"))
        })
    })
    .await?;
    let (primary, replica) = (
        checksum(c, 0, "app.t").await?,
        checksum(c, n, "app.t").await?,
    );
    ensure!(
        primary == replica,
        "CHECKSUM TABLE differs: {} {primary}, {} {replica}",
        names.hostname(0),
        names.hostname(n)
    );
    Ok(())
}

/// Makes pod n's server writable for everyone (MySQL: `super_read_only` too) or read-only again.
pub async fn set_writable(c: &Cluster, n: usize, writable: bool) -> Result<()> {
    let mut conn = c.sql(n).await?;
    let statements: &[&str] = match (c.flavor(), writable) {
        (Flavor::MySql, true) => &["SET GLOBAL super_read_only=OFF", "SET GLOBAL read_only=OFF"],
        (Flavor::MySql, false) => &["SET GLOBAL read_only=ON", "SET GLOBAL super_read_only=ON"],
        (Flavor::MariaDb, true) => &["SET GLOBAL read_only=OFF"],
        (Flavor::MariaDb, false) => &["SET GLOBAL read_only=ON"],
    };
    for statement in statements {
        conn.query_drop(*statement).await?;
    }
    Ok(())
}

/// Entries a server or a retry could mistake for data: anything but `lost+found`.
/// Writes a row on replica n (made writable for it, then read-only again), as a person would by
/// mistake: an errant transaction. Returns its GTID.
pub async fn write_errant(c: &Cluster, n: usize) -> Result<String> {
    set_writable(c, n, true).await?;
    let mut replica = c.sql(n).await?;
    replica
        .query_drop("INSERT INTO app.t (note, pad) VALUES ('errant', 'e')")
        .await?;
    let gtid = match c.flavor() {
        Flavor::MariaDb => replica.query_first("SELECT @@last_gtid").await?,
        Flavor::MySql => {
            replica
                .query_first("SELECT CONCAT(@@server_uuid, ':1')")
                .await?
        }
    };
    set_writable(c, n, false).await?;
    gtid.context("no GTID for the errant write")
}

/// Pod n's datadir holds nothing (but `lost+found`): nothing of a failed clone is left.
pub fn ensure_datadir_empty(c: &Cluster, n: usize) -> Result<()> {
    let entries = datadir_entries(&c.datadir(n))?;
    ensure!(entries.is_empty(), "pod {n}'s datadir holds {entries:?}");
    Ok(())
}

pub fn datadir_entries(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.retain(|n| n != "lost+found");
    names.sort();
    Ok(names)
}

/// Waits until the init run writing `init_log` is receiving the clone and part of it is on disk.
pub async fn wait_for_partial_clone(c: &Cluster, n: usize, init_log: &str) -> Result<()> {
    let staged = c.datadir(n).join(".mysql-sts-agent-clone/data");
    let receiving = match c.flavor() {
        Flavor::MariaDb => "donor accepted: receiving the clone stream".to_owned(),
        Flavor::MySql => format!(
            "clone stage started donor={} stage=FILE COPY",
            c.naming().pod_fqdn(n - 1)
        ),
    };
    poll_until(
        "part of the clone to arrive",
        Duration::from_secs(60),
        POLL,
        || async {
            if !c.log_text(n, init_log).contains(&receiving) {
                return Ok(Check::Pending("the donor is not sending yet".to_owned()));
            }
            let size: u64 = match std::fs::read_dir(&staged) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum(),
                Err(_) => 0,
            };
            Ok(if size > 0 {
                Check::Done(())
            } else {
                Check::Pending("nothing staged yet".to_owned())
            })
        },
    )
    .await
}

/// Pod 0 (the primary) purges every binlog but the active one: a replica behind it can no longer
/// resume by replication.
pub async fn purge_binlogs(c: &Cluster) -> Result<()> {
    let mut primary = c.sql(0).await?;
    primary.query_drop("FLUSH BINARY LOGS").await?;
    // MariaDB keeps a binlog until its crash-recovery checkpoint has passed, and a binlog a
    // replica is reading is kept too: purge until only the active one is left.
    let what = format!("{} to purge its old binlogs", c.naming().hostname(0));
    poll_until(&what, CATCH_UP, POLL, || async {
        let mut primary = c.sql(0).await?;
        primary
            .query_drop("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
            .await?;
        let logs: Vec<mysql_async::Row> = primary.query("SHOW BINARY LOGS").await?;
        Ok(if logs.len() == 1 {
            Check::Done(())
        } else {
            Check::Pending(format!("{} binlogs", logs.len()))
        })
    })
    .await
}
