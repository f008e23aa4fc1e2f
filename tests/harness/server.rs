//! The "database container" of either flavor: what my.cnf and the official images' entrypoints
//! have in common (first start on an empty volume, waiting for the server, the root bootstrap).
//! Flavor specifics live in `mariadb.rs` and `mysql.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::chroot::ChrootImage;
use super::cmd::file_tail;
use super::layout::{PodPaths, read_secret};
use super::poll::{Check, poll_until};
use super::procs::ProcId;
use super::{mariadb, mysql};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The SQL dialect and overlay of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// The overlay of k8s/ that deploys this flavor.
    pub fn overlay(self) -> &'static str {
        match self {
            Flavor::MariaDb => "mariadb",
            Flavor::MySql => "mysql",
        }
    }

    /// The overlay of k8s/ that deploys this flavor with the `k8s/tls` component.
    pub fn tls_overlay(self) -> &'static str {
        match self {
            Flavor::MariaDb => "mariadb-tls",
            Flavor::MySql => "mysql-tls",
        }
    }
}

/// Which server a cluster runs: the database image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbVersion {
    /// The host's MariaDB packages (Debian 12).
    MariaDb10_11,
    /// MariaDB from the Debian 13 chroot `scripts/db-chroot.sh mariadb-trixie` builds.
    MariaDb11_8,
    /// Oracle MySQL from the Debian sid chroot `scripts/db-chroot.sh mysql-sid` builds.
    MySql9_7,
}

impl DbVersion {
    /// By the name the demo and the benchmarks take: "mariadb", "mariadb-11.8" or "mysql".
    pub fn named(name: &str) -> Option<DbVersion> {
        match name {
            "mariadb" => Some(DbVersion::MariaDb10_11),
            "mariadb-11.8" => Some(DbVersion::MariaDb11_8),
            "mysql" => Some(DbVersion::MySql9_7),
            _ => None,
        }
    }

    pub fn flavor(self) -> Flavor {
        match self {
            DbVersion::MariaDb10_11 | DbVersion::MariaDb11_8 => Flavor::MariaDb,
            DbVersion::MySql9_7 => Flavor::MySql,
        }
    }

    /// The version a flavor runs unless told otherwise.
    pub fn default_of(flavor: Flavor) -> DbVersion {
        match flavor {
            Flavor::MariaDb => DbVersion::MariaDb10_11,
            Flavor::MySql => DbVersion::MySql9_7,
        }
    }

    /// The chroot that is this image; None: the host is.
    pub fn chroot(self) -> Option<ChrootImage> {
        match self {
            DbVersion::MariaDb10_11 => None,
            DbVersion::MariaDb11_8 => Some(ChrootImage {
                name: "mariadb-trixie",
                env: "MSA_MARIADB_CHROOT",
                server: "usr/sbin/mariadbd",
            }),
            DbVersion::MySql9_7 => Some(ChrootImage {
                name: "mysql-sid",
                env: "MSA_MYSQL_CHROOT",
                server: mysql::MYSQLD.trim_start_matches('/'),
            }),
        }
    }

    /// `user` runs the server when the container runs as root (the images' entrypoints do
    /// that); a non-root container's server runs as that container's user.
    pub fn my_cnf(self, pod: &PodPaths, setup: &ServerSetup, user: Option<&str>) -> String {
        match self.flavor() {
            Flavor::MariaDb => mariadb::my_cnf(pod, setup, user),
            Flavor::MySql => mysql::my_cnf(pod, setup, user),
        }
    }

    /// What the image's entrypoint runs once on an empty volume, as `user` when root.
    pub fn initialize(self, pod: &PodPaths, user: Option<&str>) -> Step {
        match self.flavor() {
            Flavor::MariaDb => mariadb::install_db(pod, user),
            Flavor::MySql => mysql::initialize(pod),
        }
    }

    /// The server itself.
    pub fn server(self, pod: &PodPaths) -> Step {
        match self.flavor() {
            Flavor::MariaDb => mariadb::server(pod),
            Flavor::MySql => mysql::server(pod),
        }
    }
}

/// What the harness's server takes from the template's database container: the host dirs of the
/// volumes it mounts where the image keeps data, config fragments, socket and scratch files, its
/// declared port, and the root password its env points at.
#[derive(Clone, Debug)]
pub struct ServerSetup {
    pub datadir: PathBuf,
    pub conf_dir: PathBuf,
    /// Socket and pid file.
    pub run_dir: PathBuf,
    pub tmp_dir: PathBuf,
    pub port: u16,
    pub root_password: RootPassword,
}

/// How the database container gives the entrypoint its root password.
#[derive(Clone, Debug)]
pub enum RootPassword {
    /// MYSQL_ROOT_PASSWORD_FILE, mapped to the host.
    File(PathBuf),
    /// MYSQL_ROOT_PASSWORD.
    Value(String),
    /// MARIADB_ALLOW_EMPTY_ROOT_PASSWORD: root has no password.
    Empty,
}

impl ServerSetup {
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("mysqld.sock")
    }

    /// The root password, read as the entrypoint reads it (a file's trailing newline dropped).
    pub fn root_password(&self) -> Result<String> {
        let password = match &self.root_password {
            RootPassword::Value(value) => value.clone(),
            RootPassword::File(path) => read_secret(path)?,
            RootPassword::Empty => return Ok(String::new()),
        };
        ensure!(!password.is_empty(), "the root password is empty");
        Ok(password)
    }
}

/// One program the database container runs, and the kind that names its log files.
pub struct Step {
    pub kind: &'static str,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// The settings both flavors share; `user` (if any) runs the server and `flavor_lines` (each
/// ending in a newline) come before conf.d, which is included last so that the agent's fragment
/// wins.
pub fn my_cnf(
    pod: &PodPaths,
    setup: &ServerSetup,
    user: Option<&str>,
    flavor_lines: &str,
) -> String {
    let socket = setup.socket();
    let socket = socket.display();
    let user = user.map_or_else(String::new, |user| format!("user={user}\n"));
    format!(
        "[client]
socket={socket}
[mysqld]
{user}datadir={}
socket={socket}
pid_file={}
tmpdir={}
log_error={}
bind_address=0.0.0.0
port={}
skip_name_resolve=ON
innodb_buffer_pool_size=64M
{flavor_lines}!includedir {}
",
        setup.datadir.display(),
        setup.run_dir.join("mysqld.pid").display(),
        setup.tmp_dir.display(),
        pod.error_log().display(),
        setup.port,
        setup.conf_dir.display(),
    )
}

/// Always the first option: otherwise the distribution's /etc/mysql settings leak in.
pub fn defaults_file(pod: &PodPaths) -> OsString {
    let mut option = OsString::from("--defaults-file=");
    option.push(pod.my_cnf());
    option
}

/// True until the server has initialized the volume: no system schema yet. The official images
/// test the same directory.
pub fn is_fresh(datadir: &Path) -> bool {
    !datadir.join("mysql").exists()
}

/// A session of `user` over the server's unix socket (not namespaced: works from the test
/// process).
pub fn socket_opts(socket: &Path, user: &str, password: &str) -> Opts {
    OptsBuilder::default()
        .socket(Some(socket.to_string_lossy()))
        .user(Some(user))
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
                bail!("the server exited");
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

/// What the official images do on a fresh datadir: drop the passwordless root accounts other than
/// root@localhost that mariadb-install-db makes (a TCP login from 127.0.0.1 would match them
/// rather than root@'%'), give root@localhost the admin password and add root@'%', without
/// writing to the binlog. The same SQL works on MariaDB and MySQL, for any password MariaDB's
/// entrypoint takes; MySQL's takes fewer (`refused_by_entrypoint`).
pub async fn bootstrap_root(
    passwordless_root: &Opts,
    admin_password: &str,
    flavor: Flavor,
) -> Result<()> {
    if let Some(reason) = refused_by_entrypoint(flavor, admin_password) {
        bail!("the root password {reason}");
    }
    let password = sql_string(admin_password);
    let mut conn = Conn::new(passwordless_root.clone()).await?;
    let hostname: String = conn
        .query_first("SELECT @@hostname")
        .await?
        .context("no @@hostname")?;
    for statement in [
        "SET sql_log_bin=0".to_owned(),
        format!(
            "DROP USER IF EXISTS root@'127.0.0.1', root@'::1', root@{}",
            sql_string(&hostname)
        ),
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

/// The agent's admin account of `ClusterSpec::admin_account`, as k8s/admin-account names it.
pub const ADMIN_USER: &str = "agent";

/// What the official images' entrypoints do on a fresh datadir, after the root bootstrap, with
/// the env and the files k8s/admin-account gives the database container: create MYSQL_USER with
/// MYSQL_PASSWORD_FILE's password, then run `admin-account.sql` from
/// /docker-entrypoint-initdb.d. As root, without writing to the binlog, as `bootstrap_root`.
pub async fn create_admin_account(root: &Opts, password: &str) -> Result<()> {
    let file = super::manifest::k8s_dir().join("admin-account/admin-account.sql");
    let grants =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut conn = Conn::new(root.clone()).await?;
    conn.query_drop("SET sql_log_bin=0").await?;
    conn.query_drop(format!(
        "CREATE USER {}@'%' IDENTIFIED BY {}",
        sql_string(ADMIN_USER),
        sql_string(password)
    ))
    .await
    .context("creating the admin account")?;
    conn.query_drop(&grants)
        .await
        .with_context(|| format!("running {}", file.display()))?;
    conn.disconnect().await?;
    Ok(())
}

/// Why the official image's entrypoint cannot take `password` as its root password, if it cannot.
/// MariaDB's (mariadb-docker) escapes it into its SQL (`docker_sql_escape_string_literal`, as
/// `sql_string` does) and hands it to the client in MYSQL_PWD: any password works. MySQL's
/// (docker-library/mysql 8.4) pastes it unescaped into `IDENTIFIED BY '...'`, where a quote is
/// a syntax error and a backslash starts an escape that changes the password, and into the
/// `password="..."` option file its temporary server is shut down with, where a backslash is
/// an escape and a double quote can end the value.
fn refused_by_entrypoint(flavor: Flavor, password: &str) -> Option<String> {
    let breaks = password
        .chars()
        .find(|c| flavor == Flavor::MySql && matches!(c, '\'' | '\\' | '"'))?;
    Some(format!(
        "holds {breaks:?}, which the mysql image's entrypoint puts unescaped into SQL and an \
         option file: its first start would fail or set another password"
    ))
}

/// A quoted SQL string literal.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}
