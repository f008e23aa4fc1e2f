//! The "database container": my.cnf, mariadb-install-db, and the root bootstrap the official
//! image's entrypoint does on a fresh volume.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::cmd::file_tail;
use super::layout::PodPaths;
use super::poll::{Check, poll_until};
use super::procs::ProcId;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub fn my_cnf(pod: &PodPaths) -> String {
    let dir = pod.dir.display();
    format!(
        "[client]
socket={dir}/run/mysqld.sock
[mysqld]
user=mysql
datadir={dir}/data
socket={dir}/run/mysqld.sock
pid_file={dir}/run/mysqld.pid
tmpdir={dir}/tmp
log_error={dir}/log/error.log
bind_address=0.0.0.0
port=3306
skip_name_resolve=ON
innodb_buffer_pool_size=64M
innodb_log_file_size=48M
!includedir {dir}/conf.d
"
    )
}

fn defaults_file(pod: &PodPaths) -> String {
    // Always first: otherwise Debian's /etc/mysql settings leak in.
    format!("--defaults-file={}", pod.my_cnf().display())
}

pub fn install_db_args(pod: &PodPaths) -> Vec<String> {
    vec![
        defaults_file(pod),
        "--user=mysql".into(),
        "--skip-test-db".into(),
        "--auth-root-authentication-method=normal".into(),
    ]
}

pub fn mariadbd_args(pod: &PodPaths) -> Vec<String> {
    vec![defaults_file(pod)]
}

/// A root session over the server's unix socket (not namespaced: works from the test process).
pub fn root_opts(socket: &Path, password: &str) -> Opts {
    OptsBuilder::default()
        .socket(Some(socket.to_string_lossy()))
        .user(Some("root"))
        .pass(Some(password).filter(|password| !password.is_empty()))
        .into()
}

/// Waits until the server answers `SELECT 1`; fails early if the server process exits.
pub async fn wait_answers(server: ProcId, opts: &Opts, error_log: &Path) -> Result<()> {
    poll_until(
        "the server to answer SELECT 1",
        ANSWER_TIMEOUT,
        POLL_INTERVAL,
        || async {
            if !server.is_alive() {
                bail!("mariadbd exited");
            }
            Ok(match select_one(opts).await {
                Ok(()) => Check::Done(()),
                Err(error) => Check::Pending(format!("{error:#}")),
            })
        },
    )
    .await
    .with_context(|| format!("error log:\n{}", file_tail(error_log, 30)))
}

async fn select_one(opts: &Opts) -> Result<()> {
    let mut conn = Conn::new(opts.clone()).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    conn.disconnect().await?;
    anyhow::ensure!(one == Some(1), "SELECT 1 returned {one:?}");
    Ok(())
}

/// What the official image does on a fresh datadir: give root@localhost the admin password and
/// add root@'%', without writing to the binlog.
pub async fn bootstrap_root(passwordless_root: &Opts, admin_password: &str) -> Result<()> {
    let password = sql_string(admin_password);
    let mut conn = Conn::new(passwordless_root.clone()).await?;
    for statement in [
        "SET sql_log_bin=0".to_owned(),
        format!("ALTER USER root@localhost IDENTIFIED BY {password}"),
        format!("CREATE USER root@'%' IDENTIFIED BY {password}"),
        "GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION".to_owned(),
    ] {
        conn.query_drop(&statement)
            .await
            .with_context(|| format!("bootstrap: {}", statement.replace(&password, "'***'")))?;
    }
    conn.disconnect().await?;
    Ok(())
}

/// A quoted SQL string literal.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}
