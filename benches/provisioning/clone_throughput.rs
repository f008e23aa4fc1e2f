//! Measurement 1: clone throughput on the same data, MariaDB 10.11, from pod 0 (the primary)
//! to pod 1 across their network namespaces: the agent's clone against the raw pipeline it
//! wraps and against the link's limit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use mysql_async::prelude::Queryable;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::Context;
use crate::harness::data::purge_binlogs;
use crate::harness::{Check, Cluster, ClusterSpec, InitRun, poll_until};
use crate::plot::{Plot, Series};
use crate::report::{Section, Table, list, median};

pub const DONOR: usize = 0;
pub const JOINER: usize = 1;
/// The raw pipeline's and the link's port on the joiner.
const PORT: u16 = 4444;
/// socat's -b: the buffer the pipeline uses.
const SOCAT_BUFFER: u32 = 1 << 20;
/// About what a row of `bench.t` takes on disk, to size the inserts.
const ROW_BYTES: u64 = 300;
const MAX_CHUNK_ROWS: u64 = 65_536;
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
const LISTEN_POLL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy)]
enum Contender {
    Agent,
    Raw,
    Limit,
}

/// Round r runs them rotated by r: round 0 starts with the agent, whose stream's size the link's
/// limit sends.
const CONTENDERS: [Contender; 3] = [Contender::Agent, Contender::Raw, Contender::Limit];

/// One data size's rounds, in seconds.
#[derive(Default)]
struct SizeResult {
    /// The .ibd file's size on the donor's disk.
    innodb_bytes: u64,
    /// What the agent's donor streamed, by its joiner's log.
    streamed_bytes: Vec<u64>,
    /// The init container's own log lines: stream and extraction, then prepare.
    agent: Vec<f64>,
    /// The init container's process from start to exit.
    agent_wall: Vec<f64>,
    raw: Vec<f64>,
    limit: Vec<f64>,
}

impl SizeResult {
    /// The byte count every contender's MB/s is computed from: the median agent stream.
    fn bytes(&self) -> f64 {
        median(
            &self
                .streamed_bytes
                .iter()
                .map(|&b| b as f64)
                .collect::<Vec<_>>(),
        )
    }

    fn mb_per_s(&self, secs: &[f64]) -> f64 {
        self.bytes() / 1e6 / median(secs)
    }
}

pub async fn run(ctx: &Context) -> Result<Section> {
    let mut results = Vec::new();
    Cluster::run_scenario(ClusterSpec::new(&ctx.agent, 2), async |c| {
        c.start_pod(DONOR).await?;
        c.create_pod(JOINER).await?;
        create_table(c).await?;
        write_backup_options(c)?;
        for &mib in &ctx.sizes_mib {
            let innodb_bytes = fill(c, mib << 20).await?;
            results.push(measure(c, ctx.rounds, innodb_bytes).await?);
        }
        Ok(())
    })
    .await?;
    Ok(section(ctx, &results))
}

/// The donor's (pod 0's) empty `bench.t`, which `fill` grows.
pub async fn create_table(c: &Cluster) -> Result<()> {
    let mut conn = c.sql(DONOR).await?;
    conn.query_drop("CREATE DATABASE bench").await?;
    conn.query_drop(
        "CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         pad CHAR(255) CHARACTER SET ascii NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    Ok(())
}

/// Grows the donor's `bench.t` until its .ibd holds `target` bytes, then writes its pages out
/// and purges the binlogs, so that neither flushing nor the disk's fill level weighs on the
/// clones; returns the .ibd's size.
pub async fn fill(c: &Cluster, target: u64) -> Result<u64> {
    let started = Instant::now();
    let ibd = c.datadir(DONOR).join("bench/t.ibd");
    let mut conn = c.sql(DONOR).await?;
    loop {
        let size = std::fs::metadata(&ibd)
            .with_context(|| format!("{}", ibd.display()))?
            .len();
        if size >= target {
            conn.query_drop("FLUSH TABLES bench.t FOR EXPORT").await?;
            conn.query_drop("UNLOCK TABLES").await?;
            purge_binlogs(c).await?;
            eprintln!(
                "[bench] {} MiB of InnoDB data on the donor, filled in {:.1} s",
                size >> 20,
                started.elapsed().as_secs_f64()
            );
            return Ok(size);
        }
        let rows = ((target - size) / ROW_BYTES).clamp(1024, MAX_CHUNK_ROWS);
        // Random text: pages as real data fills them, for a later compression measurement too.
        conn.exec_drop(
            "INSERT INTO bench.t (pad) SELECT LEFT(CONCAT(SHA2(RAND(), 512), SHA2(RAND(), 512)), 255) \
             FROM information_schema.COLLATIONS a, information_schema.COLLATIONS b LIMIT ?",
            (rows,),
        )
        .await?;
    }
}

async fn measure(c: &mut Cluster, rounds: usize, innodb_bytes: u64) -> Result<SizeResult> {
    let mut result = SizeResult {
        innodb_bytes,
        ..SizeResult::default()
    };
    // Untimed: the first backup after the fill copies and applies its redo log, and reads the
    // data into the page cache, for whoever came first.
    let warm_up = agent_clone(c, &[]).await?;
    eprintln!("[bench] warm-up: agent {:.2} s", warm_up.log.secs());
    for round in 0..rounds {
        for k in 0..CONTENDERS.len() {
            match CONTENDERS[(round + k) % CONTENDERS.len()] {
                Contender::Agent => {
                    let clone = agent_clone(c, &[]).await?;
                    let (secs, wall, bytes) = (clone.log.secs(), clone.wall_secs, clone.log.bytes);
                    eprintln!(
                        "[bench] round {round}: agent {secs:.2} s (init ran {wall:.2} s), {bytes} bytes"
                    );
                    result.agent.push(secs);
                    result.agent_wall.push(wall);
                    result.streamed_bytes.push(bytes);
                }
                Contender::Raw => {
                    let secs = raw_pipeline(c).await?;
                    eprintln!("[bench] round {round}: raw pipeline {secs:.2} s");
                    result.raw.push(secs);
                }
                Contender::Limit => {
                    let bytes = *result
                        .streamed_bytes
                        .last()
                        .context("the agent ran first")?;
                    let secs = link_limit(c, bytes).await?;
                    eprintln!("[bench] round {round}: link {secs:.2} s");
                    result.limit.push(secs);
                }
            }
        }
    }
    Ok(result)
}

/// The env that makes an agent container log JSON lines, which `clone_log` reads.
pub const JSON_LOG: (&str, &str) = ("MYSQL_STS_LOG_FORMAT", "json");

/// One clone by the joiner's init container: its own log lines, and its run time.
pub struct AgentClone {
    pub log: CloneLog,
    /// The init process from start to exit.
    pub wall_secs: f64,
}

/// The joiner's init container on an empty volume, as a new replica runs it, with `env` added
/// to its own; the volume is emptied again afterwards.
pub async fn agent_clone(c: &mut Cluster, env: &[(&str, &str)]) -> Result<AgentClone> {
    let (run, wall_secs) = joiner_init(c, env).await?;
    let log = clone_log(&run.output)?;
    eprintln!(
        "[bench] agent: stream {:.2} s, prepare {:.2} s",
        log.stream_secs, log.prepare_secs
    );
    c.lose_volume(JOINER).await?;
    Ok(AgentClone { log, wall_secs })
}

/// The joiner's init container run to success with a JSON log (`JSON_LOG`, for `logged`) and
/// `env` added to its own; returns it with its process's run time.
pub async fn joiner_init(c: &mut Cluster, env: &[(&str, &str)]) -> Result<(InitRun, f64)> {
    let env = [&[JSON_LOG], env].concat();
    let init = c.spawn_init_with(JOINER, &env).await?;
    let started = Instant::now();
    let run = init.wait().await?;
    let wall = started.elapsed().as_secs_f64();
    run.ensure_exit(0)?;
    Ok((run, wall))
}

/// A clone as init's own log (`JSON_LOG`) tells it.
pub struct CloneLog {
    /// `clone stream complete`: from the donor's answer to the end of the extraction.
    pub stream_secs: f64,
    /// `backup prepared`.
    pub prepare_secs: f64,
    /// What the donor streamed: the backup's bytes.
    pub bytes: u64,
    /// The bytes on the wire, when the stream came compressed.
    pub compressed_bytes: Option<u64>,
}

impl CloneLog {
    /// The clone's time: stream and extraction, then prepare.
    pub fn secs(&self) -> f64 {
        self.stream_secs + self.prepare_secs
    }
}

/// Reads the clone's lines from an init container's JSON log.
pub fn clone_log(output: &str) -> Result<CloneLog> {
    let stream = logged(output, "clone stream complete")?;
    let prepare = logged(output, "backup prepared")?;
    Ok(CloneLog {
        stream_secs: number(&stream, "secs")?,
        prepare_secs: number(&prepare, "secs")?,
        bytes: number(&stream, "bytes")? as u64,
        compressed_bytes: stream["compressed_bytes"].as_u64(),
    })
}

/// The first event of a JSON log (`JSON_LOG`) whose message starts with `message`.
pub fn logged(output: &str, message: &str) -> Result<Value> {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .with_context(|| format!("init logged no \"{message}\":\n{output}"))
}

/// A logged event's number field `name`.
pub fn number(event: &Value, name: &str) -> Result<f64> {
    event[name]
        .as_f64()
        .with_context(|| format!("no number {name} in {event}"))
}

/// The donor's backup options: what the agent writes for its own backup (root over the socket).
fn write_backup_options(c: &Cluster) -> Result<()> {
    let options = format!(
        "[mariadb-backup]\nuser=root\npassword=\"{}\"\nsocket={}\ndatadir={}\n",
        c.admin_password()?,
        c.socket(DONOR).display(),
        c.datadir(DONOR).display()
    );
    std::fs::write(backup_options(c), options)?;
    Ok(())
}

fn backup_options(c: &Cluster) -> PathBuf {
    c.pod_dir(DONOR).join("bench-backup.cnf")
}

/// `mariadb-backup --stream | socat` on the donor to `socat | mbstream -x` on the joiner, then
/// `mariadb-backup --prepare` there, as the agent runs them; from the sender's start (the
/// receiver already listens) to the end of prepare.
async fn raw_pipeline(c: &Cluster) -> Result<f64> {
    let extracted = c.pod_dir(JOINER).join("bench-raw");
    let scratch = c.pod_dir(DONOR).join("bench-backup");
    for dir in [&extracted, &scratch] {
        std::fs::create_dir(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let receive = format!(
        "socat -u -b {SOCAT_BUFFER} TCP-LISTEN:{PORT},reuseaddr - | mbstream -x -C {}",
        extracted.display()
    );
    let send = format!(
        "mariadb-backup --defaults-file={} --backup --stream=xbstream --target-dir={} \
         | socat -u -b {SOCAT_BUFFER} - TCP:{}:{PORT}",
        backup_options(c).display(),
        scratch.display(),
        c.pod_ip(JOINER)
    );
    let prepare = format!(
        "mariadb-backup --defaults-file={0}/backup-my.cnf --prepare --target-dir={0}",
        extracted.display()
    );
    let started = transfer(c, &send, &receive).await?;
    let transferred = started.elapsed().as_secs_f64();
    Script::spawn(c, JOINER, &prepare)?.finish().await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[bench] raw pipeline: transfer {transferred:.2} s, prepare {:.2} s",
        secs - transferred
    );
    for dir in [&extracted, &scratch] {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(secs)
}

/// `bytes` zeros through socat into a file on the joiner, synced; from the sender's start.
async fn link_limit(c: &Cluster, bytes: u64) -> Result<f64> {
    let file = c.pod_dir(JOINER).join("bench-zeros");
    let receive = format!(
        "socat -u -b {SOCAT_BUFFER} TCP-LISTEN:{PORT},reuseaddr CREATE:{0} && sync {0}",
        file.display()
    );
    let send = format!(
        "head -c {bytes} /dev/zero | socat -u -b {SOCAT_BUFFER} - TCP:{}:{PORT}",
        c.pod_ip(JOINER)
    );
    let started = transfer(c, &send, &receive).await?;
    let secs = started.elapsed().as_secs_f64();
    let received = std::fs::metadata(&file)?.len();
    ensure!(
        received == bytes,
        "the link delivered {received} of {bytes} bytes"
    );
    std::fs::remove_file(&file)?;
    Ok(secs)
}

/// Runs `receive` on the joiner and, once it listens, `send` on the donor, both to success;
/// returns when the sender started.
async fn transfer(c: &Cluster, send: &str, receive: &str) -> Result<Instant> {
    let receiver = Script::spawn(c, JOINER, receive)?;
    let filter = format!("sport = :{PORT}");
    poll_until(
        "the receiver to listen",
        LISTEN_TIMEOUT,
        LISTEN_POLL,
        || async {
            let listening = c.exec_in_pod(JOINER, &["ss", "-Hltn", &filter]).await?;
            Ok(if listening.trim().is_empty() {
                Check::Pending("no listener".into())
            } else {
                Check::Done(())
            })
        },
    )
    .await?;
    let started = Instant::now();
    let sender = Script::spawn(c, DONOR, send)?;
    tokio::try_join!(sender.finish(), receiver.finish())?;
    Ok(started)
}

/// A bash pipeline in a pod, in a process group of its own: dropped before it finished (an
/// error elsewhere), all of it is killed.
struct Script {
    child: Option<tokio::process::Child>,
    /// None once reaped: its PID may belong to someone else then.
    group: Option<Pid>,
    text: String,
}

impl Script {
    fn spawn(c: &Cluster, n: usize, text: &str) -> Result<Script> {
        let mut command = c.pod_command(n, "bash");
        command
            .args(["-o", "pipefail", "-c", text])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .with_context(|| format!("starting `{text}`"))?;
        let pid = child.id().context("a child just spawned has a pid")?;
        Ok(Script {
            child: Some(child),
            group: Some(Pid::from_raw(i32::try_from(pid)?)),
            text: text.to_owned(),
        })
    }

    async fn finish(mut self) -> Result<()> {
        let child = self.child.take().context("finished once")?;
        let output = child.wait_with_output().await?;
        self.group = None;
        ensure!(
            output.status.success(),
            "`{}` exited with {}:\n{}",
            self.text,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

fn section(ctx: &Context, results: &[SizeResult]) -> Section {
    let size = |r: &SizeResult| format!("{} MiB", r.innodb_bytes >> 20);
    let secs = |values: &[f64]| format!("{:.2}", median(values));
    let summary = Table {
        caption: format!(
            "Medians of {} round(s); MB/s = the agent's streamed bytes / seconds (MB = 10^6 bytes).",
            ctx.rounds
        ),
        header: [
            "InnoDB data",
            "streamed",
            "agent s (init's log)",
            "agent s (init's run)",
            "raw pipeline s",
            "link s",
            "agent MB/s",
            "raw MB/s",
            "link MB/s",
            "agent/raw",
            "agent/link",
        ]
        .map(String::from)
        .into(),
        rows: results
            .iter()
            .map(|r| {
                let (agent, raw, limit) = (
                    r.mb_per_s(&r.agent),
                    r.mb_per_s(&r.raw),
                    r.mb_per_s(&r.limit),
                );
                vec![
                    size(r),
                    format!("{:.0} MB", r.bytes() / 1e6),
                    secs(&r.agent),
                    secs(&r.agent_wall),
                    secs(&r.raw),
                    secs(&r.limit),
                    format!("{agent:.0}"),
                    format!("{raw:.0}"),
                    format!("{limit:.0}"),
                    format!("{:.2}", agent / raw),
                    format!("{:.2}", agent / limit),
                ]
            })
            .collect(),
    };
    let list = |values: &[f64]| list(values, 2);
    let rounds = Table {
        caption: "Every round, in seconds, in the order the rounds ran.".into(),
        header: [
            "InnoDB data",
            "agent (init's log)",
            "agent (init's run)",
            "raw pipeline",
            "link",
        ]
        .map(String::from)
        .into(),
        rows: results
            .iter()
            .map(|r| {
                vec![
                    size(r),
                    list(&r.agent),
                    list(&r.agent_wall),
                    list(&r.raw),
                    list(&r.limit),
                ]
            })
            .collect(),
    };
    let line = |name: &str, secs: fn(&SizeResult) -> &[f64]| Series {
        name: name.into(),
        points: results
            .iter()
            .map(|r| {
                (
                    r.innodb_bytes as f64 / f64::from(1 << 30),
                    r.mb_per_s(secs(r)),
                )
            })
            .collect(),
    };
    let plot = Plot {
        file: "clone-throughput.png".into(),
        title: "Clone throughput, MariaDB 10.11, pod to pod".into(),
        x_label: "InnoDB data (GiB)".into(),
        y_label: "MB/s (median)".into(),
        series: vec![
            line("agent: /clone to prepared datadir", |r| &r.agent),
            line("raw: mariadb-backup | socat | mbstream, prepare", |r| {
                &r.raw
            }),
            line("link: /dev/zero through socat, synced", |r| &r.limit),
        ],
    };
    Section {
        title: "Clone throughput".into(),
        method: METHOD.into(),
        tables: vec![summary, rounds],
        plots: vec![plot],
        requirements: Vec::new(),
    }
}

const METHOD: &str = "\
Two pods of the test harness (network namespaces on one bridge, MariaDB 10.11 from the host, the \
manifest's pod template) on one machine. Pod 0 is the primary; `bench.t` grows to each size by \
`INSERT ... SELECT` of random 255-byte rows, its pages are flushed (`FLUSH TABLES ... FOR \
EXPORT`) and the binlogs purged. \"InnoDB data\" is the table's `.ibd` size on disk. One \
untimed clone by the agent follows (the first backup after the fill copies and applies the \
fill's redo log and reads the data into the page cache). Then every round runs each contender \
once, the order rotating from round to round:

- **agent**: pod 1's init container (`mysql-sts-agent init`, the build named above) on an empty volume \
  clones from pod 0's sidecar (`/clone`: `mariadb-backup --stream`, framed over HTTP) into a \
  prepared datadir, ready to start. *init's log* is the sum of its own lines' `secs`: `clone \
  stream complete` (from the donor's answer, when its backup starts, to the end of the \
  extraction by `mbstream`) and `backup prepared`. *init's \
  run* is the init process from start to exit: its start-up, finding the donor, the clone, \
  moving the datadir into place.
- **raw**: the pipeline the agent wraps, across the same namespaces: `mariadb-backup --backup \
  --stream=xbstream | socat -b 1048576 - TCP:pod-1:4444` in pod 0, `socat TCP-LISTEN:4444 - | \
  mbstream -x -C dir` in pod 1, then `mariadb-backup --prepare` there; from the sender's start \
  (the receiver already listens) to the end of prepare.
- **link**: the link's limit, as many bytes as the agent streamed from `/dev/zero` through the \
  same socat pair into a file in pod 1, then `sync`.

MB/s divides the bytes the agent streamed (init's `clone stream complete`) by the median \
seconds, for all three, so the ratios are ratios of times. The machine runs other work too: \
single rounds are noisy, the medians and ratios less so.";
