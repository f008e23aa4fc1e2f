//! Provisioning benchmarks on the test harness's simulated StatefulSet (issue 11): each
//! measurement is a module whose `run(&Context)` returns a `report::Section` (method, tables,
//! plots); `main` runs them and writes `BENCHMARKS.md` and the PNG plots.
//!
//! `scripts/bench.sh [--sizes 0.25,0.5,1,2] [--ready-sizes 140] [--rounds 3] [--only NAME,...]
//! [--out DIR]` runs it under `cargo bench` (root; the release build of the agent). `cargo test
//! --bench provisioning -- --smoke` (in `scripts/test.sh`) is the tiny run that checks it still
//! works.

#[path = "../../tests/harness/mod.rs"]
mod harness;

mod clone_throughput;
mod compression;
mod footprint;
mod mysql_clone;
mod plot;
mod probe_cost;
mod report;
mod scale;
mod time_to_ready;

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use clap::{Parser, ValueEnum};

/// The smoke run's only data size: big enough for every contender to move real bytes.
const SMOKE_MIB: u64 = 16;
/// The smoke run's time-to-Ready data: a few thousand rows.
const SMOKE_READY_MIB: u64 = 2;

#[derive(Parser)]
#[command(about = "Provisioning benchmarks of mysql-sts-agent (issue 11)")]
struct Args {
    /// Data sizes in GiB of InnoDB data, ascending.
    #[arg(long, value_delimiter = ',', default_values_t = [0.25, 0.5, 1.0, 2.0])]
    sizes: Vec<f64>,
    /// Time to Ready: sysbench data sizes in MiB (4 tables; 140 MiB is 150,000 rows each),
    /// ascending.
    #[arg(long, value_delimiter = ',', default_values_t = [140])]
    ready_sizes: Vec<u64>,
    /// Rounds per size; every round runs each contender once, in a rotating order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only these measurements (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Measurement>,
    /// Where BENCHMARKS.md and docs/bench/*.png go (default: the repository's root; with --only,
    /// target/bench-only, so that a partial run never replaces the full one's; with --smoke,
    /// target/bench-smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A tiny run that checks the results: one 16 MiB size (2 MiB for time to Ready), one round,
    /// windows of seconds (--sizes, --ready-sizes and --rounds are ignored).
    #[arg(long)]
    smoke: bool,
    /// Set by `cargo bench`; without it (`cargo test`) only `--smoke` runs.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The measurements in report order, as `--only` names them.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Measurement {
    CloneThroughput,
    TimeToReady,
    MysqlClone,
    Scale,
    ProbeCost,
    Footprint,
    Compression,
}

/// What every measurement gets.
pub struct Context {
    /// The agent binary under test: Cargo's build of it for this profile.
    pub agent: PathBuf,
    /// Data sizes in MiB, ascending.
    pub sizes_mib: Vec<u64>,
    /// Time to Ready's data sizes in MiB, ascending.
    pub ready_sizes_mib: Vec<u64>,
    /// Rounds of a measurement; every round runs each contender (or setting) once.
    pub rounds: usize,
    /// The tiny run: measurement windows of seconds, not minutes.
    pub smoke: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bench && !args.smoke {
        println!("benchmarks run under `cargo bench` (scripts/bench.sh); `-- --smoke` checks them");
        return Ok(());
    }
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent"));
    let profile = build_profile(&agent);
    // Only the smoke run may measure an unoptimized agent.
    ensure!(
        args.smoke || profile == "release",
        "{} is a {profile} build: run the benchmarks with `cargo bench` (scripts/bench.sh)",
        agent.display()
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ctx, out) = if args.smoke {
        let ctx = Context {
            agent,
            sizes_mib: vec![SMOKE_MIB],
            ready_sizes_mib: vec![SMOKE_READY_MIB],
            rounds: 1,
            smoke: true,
        };
        (
            ctx,
            args.out.unwrap_or_else(|| repo.join("target/bench-smoke")),
        )
    } else {
        ensure!(args.rounds > 0, "--rounds must be at least 1");
        let sizes_mib: Vec<u64> = args.sizes.iter().map(|gib| (gib * 1024.0) as u64).collect();
        ensure!(
            !sizes_mib.is_empty() && sizes_mib.iter().all(|&mib| mib > 0),
            "--sizes needs sizes of at least 1 MiB"
        );
        ensure!(sizes_mib.is_sorted(), "--sizes must be ascending");
        ensure!(
            !args.ready_sizes.is_empty()
                && args.ready_sizes.iter().all(|&mib| mib > 0)
                && args.ready_sizes.is_sorted(),
            "--ready-sizes needs ascending sizes of at least 1 MiB"
        );
        let ctx = Context {
            agent,
            sizes_mib,
            ready_sizes_mib: args.ready_sizes,
            rounds: args.rounds,
            smoke: false,
        };
        let default_out = if args.only.is_empty() {
            repo.to_owned()
        } else {
            repo.join("target/bench-only")
        };
        (ctx, args.out.unwrap_or(default_out))
    };

    let environment = report::environment(&ctx, &profile);
    let mut sections = Vec::new();
    for &measurement in Measurement::value_variants() {
        if !args.only.is_empty() && !args.only.contains(&measurement) {
            continue;
        }
        sections.push(match measurement {
            Measurement::CloneThroughput => clone_throughput::run(&ctx).await?,
            Measurement::TimeToReady => time_to_ready::run(&ctx).await?,
            Measurement::MysqlClone => mysql_clone::run(&ctx).await?,
            Measurement::Scale => scale::run(&ctx).await?,
            Measurement::ProbeCost => probe_cost::run(&ctx).await?,
            Measurement::Footprint => footprint::run(&ctx).await?,
            Measurement::Compression => compression::run(&ctx).await?,
        });
    }

    let command: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let written = report::write(&out, &environment, &command.join(" "), &sections)?;
    if args.smoke {
        for section in &sections {
            section.check()?;
        }
        for file in &written {
            ensure!(
                std::fs::metadata(file)?.len() > 0,
                "{} is empty",
                file.display()
            );
        }
    }
    for file in written {
        println!("wrote {}", file.display());
    }
    Ok(())
}

/// Cargo's profile directory the binary was built into: target/<profile>/<binary>.
fn build_profile(binary: &Path) -> String {
    binary.parent().and_then(Path::file_name).map_or_else(
        || "unknown".into(),
        |name| name.to_string_lossy().into_owned(),
    )
}
