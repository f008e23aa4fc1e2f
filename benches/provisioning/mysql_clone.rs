//! Measurement 3: MySQL 9.7. The agent's clone against a bare `CLONE INSTANCE` done by hand on
//! the same donor data, pod 0 to pod 1; then the time to Ready of a MySQL replica against a
//! MariaDB 10.11 replica, both the agent's overlay, on the same data and write rate.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::Context;
use crate::clone_throughput::{create_table, fill, joiner_init, logged, number};
use crate::harness::{Cluster, ClusterSpec, DbVersion};
use crate::report::{Requirement, Section, Table, list, median};
use crate::time_to_ready::{self, RATE, TABLES};

const DONOR: usize = 0;
const JOINER: usize = 1;
/// The clone's data sizes are measurement 1's up to this: the MySQL clone's cost beyond the copy
/// is fixed (servers to initialize and start), which a small size shows best, and larger ones
/// only add copying, which measurement 1 covers.
const MAX_CLONE_MIB: u64 = 256;
/// The target: a MySQL replica Ready within this multiple of a MariaDB one's time.
const MAX_READY_RATIO: f64 = 2.0;
/// The official images' mysql user (the chroot's).
const MYSQL_IDS: (u32, u32) = (999, 999);
const BARE_USER: &str = "bench_clone";
const BARE_PASSWORD: &str = "bench-clone-pw";
/// ER_CLONE_... "Restart server failed (mysqld is not managed by supervisor process)".
const RESTART_WITHOUT_SUPERVISOR: u16 = 3707;
const SERVER_TIMEOUT: Duration = Duration::from_secs(120);
const SERVER_POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Agent,
    Bare,
}

/// Round r runs them rotated by r.
const CONTENDERS: [Contender; 2] = [Contender::Agent, Contender::Bare];

/// One data size's clone rounds, in seconds.
#[derive(Default)]
struct CloneResult {
    innodb_bytes: u64,
    /// The init container's process from start to exit.
    agent_wall: Vec<f64>,
    /// init's own log: the CLONE statement's copy.
    agent_copy: Vec<f64>,
    /// The bare clone: CLONE INSTANCE until the restarted recipient answers.
    bare: Vec<f64>,
    /// The bare clone with its recipient's initialization and first start before it.
    bare_total: Vec<f64>,
}

/// Time to Ready of each flavor's mysql-1, by round.
#[derive(Default)]
struct ReadyResult {
    mib: u64,
    rows: u64,
    mysql: Vec<f64>,
    mariadb: Vec<f64>,
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let mut readies = Vec::new();
    for &mib in &ctx.ready_sizes_mib {
        let mut result = ReadyResult {
            mib,
            rows: time_to_ready::rows_per_table(mib),
            ..ReadyResult::default()
        };
        for round in 0..ctx.rounds {
            let versions = [DbVersion::MySql9_7, DbVersion::MariaDb10_11];
            for k in 0..versions.len() {
                let version = versions[(round + k) % versions.len()];
                let name = format!("agent's overlay, {}", version_name(version));
                let spec = ClusterSpec::new(&ctx.agent, 2).version(version);
                let measured = time_to_ready::measure(spec, &name, true, result.rows)
                    .await
                    .with_context(|| format!("{name} with {mib} MiB, round {}", round + 1))?;
                let (secs, _) = *measured.first().context("mysql-1 was measured")?;
                match version {
                    DbVersion::MySql9_7 => result.mysql.push(secs),
                    _ => result.mariadb.push(secs),
                }
            }
        }
        readies.push(result);
    }
    let mut clones = Vec::new();
    let mut sizes: Vec<u64> = (ctx.sizes_mib.iter().copied())
        .filter(|&mib| mib <= MAX_CLONE_MIB)
        .collect();
    if sizes.is_empty() {
        sizes.push(MAX_CLONE_MIB);
    }
    let spec = ClusterSpec::new(&ctx.agent, 2).version(DbVersion::MySql9_7);
    Cluster::run_scenario(spec, async |c| {
        c.start_pod(DONOR).await?;
        c.create_pod(JOINER).await?;
        create_table(c).await?;
        let mut donor = c.sql(DONOR).await?;
        donor
            .query_drop(format!(
                "CREATE USER {BARE_USER}@'%' IDENTIFIED BY '{BARE_PASSWORD}'"
            ))
            .await?;
        donor
            .query_drop(format!("GRANT BACKUP_ADMIN ON *.* TO {BARE_USER}@'%'"))
            .await?;
        for &mib in &sizes {
            let mut result = CloneResult {
                innodb_bytes: fill(c, mib << 20).await?,
                ..CloneResult::default()
            };
            for round in 0..ctx.rounds {
                for k in 0..CONTENDERS.len() {
                    match CONTENDERS[(round + k) % CONTENDERS.len()] {
                        Contender::Agent => {
                            let (wall, copy) = agent_clone(c).await?;
                            result.agent_wall.push(wall);
                            result.agent_copy.push(copy);
                        }
                        Contender::Bare => {
                            let (bare, total) = bare_clone(c).await?;
                            result.bare.push(bare);
                            result.bare_total.push(total);
                        }
                    }
                }
            }
            clones.push(result);
        }
        Ok(())
    })
    .await?;

    Ok(section(ctx, &clones, &readies))
}

/// The joiner's init container on an empty volume; returns its process's run time and its own
/// log's seconds of the CLONE statement. The volume is emptied again afterwards.
async fn agent_clone(c: &mut Cluster) -> Result<(f64, f64)> {
    let (run, wall) = joiner_init(c, &[]).await?;
    let secs = |message: &str| number(&logged(&run.output, message)?, "secs");
    let initialized = secs("scratch server initialized")?;
    let up = secs("scratch server up")?;
    let copy = secs("CLONE INSTANCE copied")?;
    let recovered = number(
        &logged(&run.output, "clone copied and recovered")?,
        "recovery_secs",
    )?;
    let stopped = secs("temporary server stopped")?;
    eprintln!(
        "[bench] agent: init ran {wall:.2} s: scratch initialized {initialized:.2} s, up \
         {up:.2} s, copy {copy:.2} s, recovered {recovered:.2} s, stopped {stopped:.2} s"
    );
    c.lose_volume(JOINER).await?;
    Ok((wall, copy))
}

/// A bare clone by hand in the joiner, as the MySQL manual has it: a recipient initialized and
/// started with the pod's my.cnf and the plugin, `CLONE INSTANCE FROM` the donor, the recipient
/// started again once the plugin stopped it (no supervisor restarts it). Returns the seconds
/// from the statement until the restarted recipient answers, and with its initialization and
/// first start.
async fn bare_clone(c: &Cluster) -> Result<(f64, f64)> {
    let recipient = BareRecipient::new(c)?;
    let started = Instant::now();
    let mut init = recipient.mysqld(c, &["--initialize-insecure"]);
    let status = init.status().await?;
    ensure!(status.success(), "mysqld --initialize-insecure: {status}");
    let mut server = recipient.mysqld(c, &[]).spawn()?;
    let mut conn = recipient.answer(&mut server, "").await?;
    let prepared = started.elapsed().as_secs_f64();

    let cloning = Instant::now();
    conn.query_drop(format!(
        "SET GLOBAL clone_valid_donor_list = '{}:3306'",
        c.pod_ip(DONOR)
    ))
    .await?;
    let clone = format!(
        "CLONE INSTANCE FROM {BARE_USER}@'{}':3306 IDENTIFIED BY '{BARE_PASSWORD}'",
        c.pod_ip(DONOR)
    );
    match conn.query_drop(clone).await {
        Err(mysql_async::Error::Server(e)) if e.code == RESTART_WITHOUT_SUPERVISOR => {}
        other => {
            bail!("CLONE INSTANCE ended with {other:?}, not error {RESTART_WITHOUT_SUPERVISOR}")
        }
    }
    drop(conn);
    let exit = tokio::time::timeout(SERVER_TIMEOUT, server.wait()).await??;
    ensure!(
        exit.success(),
        "the recipient exited with {exit} after the clone"
    );
    let mut server = recipient.mysqld(c, &[]).spawn()?;
    // The clone brought the donor's accounts.
    let mut conn = (recipient.answer(&mut server, &c.root_password(DONOR)?)).await?;
    let bare = cloning.elapsed().as_secs_f64();

    let state: Option<String> = conn
        .query_first("SELECT STATE FROM performance_schema.clone_status")
        .await?;
    ensure!(
        state.as_deref() == Some("Completed"),
        "the bare clone's status: {state:?}"
    );
    drop(conn);
    server.kill().await?;
    std::fs::remove_dir_all(&recipient.dir)?;
    eprintln!(
        "[bench] bare: initialized and started {prepared:.2} s, clone until it answers again \
         {bare:.2} s"
    );
    Ok((bare, prepared + bare))
}

/// The by-hand recipient's files, in the joiner's pod directory.
struct BareRecipient {
    dir: PathBuf,
    my_cnf: PathBuf,
}

impl BareRecipient {
    fn new(c: &Cluster) -> Result<BareRecipient> {
        let dir = c.pod_dir(JOINER).join("bench-bare");
        std::fs::create_dir(&dir).with_context(|| format!("{}", dir.display()))?;
        let (uid, gid) = MYSQL_IDS;
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into()))?;
        Ok(BareRecipient {
            dir,
            my_cnf: c.pod_dir(JOINER).join("my.cnf"),
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// The chroot's mysqld in the joiner with the pod's my.cnf, on this recipient's files.
    fn mysqld(&self, c: &Cluster, extra: &[&str]) -> tokio::process::Command {
        let path = |name: &str| self.dir.join(name).display().to_string();
        let mut command = c.chroot_command(JOINER, "/usr/sbin/mysqld");
        command
            .arg(format!("--defaults-file={}", self.my_cnf.display()))
            .args([
                format!("--datadir={}", path("data")),
                format!("--socket={}", self.socket().display()),
                format!("--pid-file={}", path("mysqld.pid")),
                format!("--log-error={}", path("mysqld.err")),
                "--user=mysql".to_owned(),
                "--skip-networking".to_owned(),
                "--plugin-load-add=mysql_clone.so".to_owned(),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Waits until the server answers root (with `password`) over its socket.
    async fn answer(&self, server: &mut tokio::process::Child, password: &str) -> Result<Conn> {
        let opts = OptsBuilder::default()
            .socket(Some(self.socket().display().to_string()))
            .user(Some("root"))
            .pass(Some(password).filter(|p| !p.is_empty()));
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Some(status) = server.try_wait()? {
                bail!(
                    "the bare recipient exited with {status}: see {}",
                    self.dir.display()
                );
            }
            match Conn::new(opts.clone()).await {
                Ok(conn) => return Ok(conn),
                Err(e) if Instant::now() >= deadline => {
                    bail!("the bare recipient did not answer within {SERVER_TIMEOUT:?}: {e}")
                }
                Err(_) => tokio::time::sleep(SERVER_POLL).await,
            }
        }
    }
}

fn section(ctx: &Context, clones: &[CloneResult], readies: &[ReadyResult]) -> Section {
    let secs = |values: &[f64]| format!("{:.2}", median(values));
    let size = |r: &CloneResult| format!("{} MiB", r.innodb_bytes >> 20);
    let clone_summary = Table {
        caption: format!(
            "The clone, MySQL 9.7, medians of {} round(s), in seconds.",
            ctx.rounds
        ),
        header: [
            "InnoDB data",
            "agent (init's run)",
            "agent's CLONE statement (init's log)",
            "bare CLONE until it answers",
            "bare with its initialize and start",
            "agent/bare with initialize and start",
        ]
        .map(String::from)
        .into(),
        rows: clones
            .iter()
            .map(|r| {
                let medians =
                    [&r.agent_wall, &r.agent_copy, &r.bare, &r.bare_total].map(|v| secs(v));
                let ratio = median(&r.agent_wall) / median(&r.bare_total);
                [vec![size(r)], medians.into(), vec![format!("{ratio:.2}")]].concat()
            })
            .collect(),
    };
    let ratio = |r: &ReadyResult| median(&r.mysql) / median(&r.mariadb);
    let ready_summary = Table {
        caption: format!(
            "Time to Ready of mysql-1, the agent's overlay, medians of {} round(s), with {RATE} \
             transactions/s on the primary.",
            ctx.rounds
        ),
        header: ["data", "MySQL 9.7 s", "MariaDB 10.11 s", "MySQL/MariaDB"]
            .map(String::from)
            .into(),
        rows: readies
            .iter()
            .map(|r| {
                vec![
                    format!("{} MiB ({TABLES} × {} rows)", r.mib, r.rows),
                    secs(&r.mysql),
                    secs(&r.mariadb),
                    format!("{:.2}", ratio(r)),
                ]
            })
            .collect(),
    };
    let list = |values: &[f64]| list(values, 2);
    let rounds = Table {
        caption: "Every round, in seconds, in the order the rounds ran.".into(),
        header: ["what", "rounds"].map(String::from).into(),
        rows: clones
            .iter()
            .flat_map(|r| {
                [
                    ("agent (init's run)", &r.agent_wall),
                    ("bare with its initialize and start", &r.bare_total),
                ]
                .map(|(what, values)| vec![format!("{}: {what}", size(r)), list(values)])
            })
            .chain(readies.iter().flat_map(|r| {
                [("MySQL", &r.mysql), ("MariaDB", &r.mariadb)].map(|(what, values)| {
                    vec![format!("{} MiB: {what} Ready", r.mib), list(values)]
                })
            }))
            .collect(),
    };
    let requirements = clones
        .iter()
        .flat_map(|r| [median(&r.agent_wall), median(&r.bare_total)])
        .chain(readies.iter().map(ratio))
        .map(|value| Requirement::positive("a MySQL clone's or Ready's seconds", value))
        .collect();
    Section {
        title: "MySQL: clone and time to Ready".into(),
        method: format!("{METHOD} The target: MySQL/MariaDB at most {MAX_READY_RATIO}."),
        tables: vec![clone_summary, ready_summary, rounds],
        plots: Vec::new(),
        requirements,
    }
}

fn version_name(version: DbVersion) -> &'static str {
    match version {
        DbVersion::MySql9_7 => "MySQL 9.7",
        DbVersion::MariaDb10_11 => "MariaDB 10.11",
        DbVersion::MariaDb11_8 => "MariaDB 11.8",
    }
}

const METHOD: &str = "\
The clone: two MySQL 9.7 pods of the test harness, the agent's overlay; pod 0 holds `bench.t` \
grown as in the clone throughput measurement (sizes up to 256 MiB: beyond the copy, which \
measurement 1 covers, a MySQL clone's cost is fixed). Each round runs, in rotating order, the \
agent's init container on pod 1's empty volume (its run time, and its own log's seconds of the \
CLONE statement) and a bare clone by hand in pod 1 as the MySQL manual has it: `mysqld \
--initialize-insecure` and a start with the pod's my.cnf and the clone plugin, `SET GLOBAL \
clone_valid_donor_list`, `CLONE INSTANCE FROM` pod 0, which stops the recipient (error 3707, \
no supervisor), and a second start, until it answers: timed from the statement, and with the \
initialization and first start the agent's run includes too. Time to Ready: as in the time to \
Ready measurement (sysbench tables, 100 transactions/s on the primary), mysql-1 of a MySQL 9.7 \
cluster and of a MariaDB 10.11 cluster, both the agent's overlay, alternating from round to \
round; each replica must be in sync at Ready.";
