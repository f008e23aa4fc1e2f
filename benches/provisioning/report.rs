//! What a measurement reports (`Section`: method, tables, plots) and `BENCHMARKS.md` with the
//! machine and versions it ran on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};

use crate::{Context, plot};

/// Where the plots go, relative to the output directory (and so to BENCHMARKS.md).
const PLOT_DIR: &str = "docs/bench";

pub struct Section {
    pub title: String,
    /// How it was measured, as Markdown paragraphs.
    pub method: String,
    pub tables: Vec<Table>,
    pub plots: Vec<plot::Plot>,
    /// What must hold of the numbers beyond the plots' (e.g. no SQL per probe): the smoke run
    /// fails on one not met; a full run's tables show the numbers.
    pub requirements: Vec<Requirement>,
}

pub struct Requirement {
    /// What must hold, with what was measured.
    pub what: String,
    pub met: bool,
}

impl Requirement {
    /// `value` is positive and finite.
    pub fn positive(name: &str, value: f64) -> Requirement {
        Requirement {
            what: format!("{name} is positive (measured {value})"),
            met: value > 0.0 && value.is_finite(),
        }
    }
}

impl Section {
    /// The smoke run's check: every plotted number is positive and finite, every requirement is
    /// met.
    pub fn check(&self) -> Result<()> {
        for requirement in &self.requirements {
            ensure!(
                requirement.met,
                "{}: not met: {}",
                self.title,
                requirement.what
            );
        }
        for plot in &self.plots {
            for series in &plot.series {
                ensure!(
                    !series.points.is_empty(),
                    "{}: {} has no points",
                    plot.title,
                    series.name
                );
                for &(x, y) in &series.points {
                    ensure!(
                        x > 0.0 && y > 0.0 && y.is_finite(),
                        "{}: {} has the point ({x}, {y})",
                        plot.title,
                        series.name
                    );
                }
            }
        }
        Ok(())
    }
}

pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut text = format!("{}\n\n", self.caption);
        text.push_str(&line(&self.header));
        text.push_str(&line(&vec!["---".to_owned(); self.header.len()]));
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// A table cell of every round's value, in the order they ran.
pub fn list(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table cell saying whether a target was met; a missed one stands out.
pub fn yes_no(met: bool) -> String {
    if met { "yes" } else { "**no**" }.into()
}

/// Writes `<out>/BENCHMARKS.md` and the sections' plots under `<out>/docs/bench/`; returns the
/// files written.
pub fn write(
    out: &Path,
    environment: &[(&str, String)],
    command: &str,
    sections: &[Section],
) -> Result<Vec<PathBuf>> {
    let plot_dir = out.join(PLOT_DIR);
    std::fs::create_dir_all(&plot_dir)
        .with_context(|| format!("creating {}", plot_dir.display()))?;
    let mut written = Vec::new();
    let mut text = String::from("# Benchmarks\n\n");
    writeln!(
        text,
        "Written by `{}` (`cargo bench --bench provisioning`), finished {}. Every number is from that one run; the contenders of a measurement alternate \
         within each of its rounds, so that their ratios hold on a busy machine.\n",
        format!("scripts/bench.sh {command}").trim_end(),
        shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    )?;
    text.push_str("## Machine and versions\n\n| | |\n| --- | --- |\n");
    for (name, value) in environment {
        writeln!(text, "| {name} | {value} |")?;
    }
    for (k, section) in sections.iter().enumerate() {
        write!(
            text,
            "\n## {}. {}\n\n{}\n",
            k + 1,
            section.title,
            section.method
        )?;
        for table in &section.tables {
            write!(text, "\n{}", table.markdown())?;
        }
        for plot in &section.plots {
            let file = plot_dir.join(&plot.file);
            plot::draw(plot, &file)?;
            written.push(file);
            write!(text, "\n![{}]({PLOT_DIR}/{})\n", plot.title, plot.file)?;
        }
    }
    let markdown = out.join("BENCHMARKS.md");
    std::fs::write(&markdown, text).with_context(|| format!("writing {}", markdown.display()))?;
    written.push(markdown);
    Ok(written)
}

/// The machine, the agent's build (its commit when the run starts) and the tools' versions.
pub fn environment(ctx: &Context, profile: &str) -> Vec<(&'static str, String)> {
    let repo = env!("CARGO_MANIFEST_DIR");
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map_or("?".into(), |rest| {
            rest.trim_start_matches([' ', '\t', ':']).to_owned()
        });
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let ram_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map_or("?".into(), |name| name.trim_matches('"').to_owned());
    // The line of a tool's version output that names it.
    let version = |program: &str, args: &[&str], naming: &str| {
        shell(program, args)
            .lines()
            .find(|line| line.contains(naming))
            .unwrap_or("?")
            .to_owned()
    };
    vec![
        ("CPU", format!("{cpu}, {cores} cores available")),
        (
            "RAM",
            format!("{:.1} GiB", ram_kib as f64 / 1024.0 / 1024.0),
        ),
        (
            "load average (1, 5, 15 min) at the start",
            read("/proc/loadavg")
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "OS, kernel",
            format!("{os}, Linux {}", read("/proc/sys/kernel/osrelease").trim()),
        ),
        (
            "agent",
            format!(
                "{} ({profile} build, {})",
                shell("git", &["-C", repo, "describe", "--always", "--dirty"]),
                ctx.agent.display()
            ),
        ),
        ("rustc", version("rustc", &["--version"], "rustc")),
        (
            "mariadb-backup",
            version("mariadb-backup", &["--version"], "MariaDB"),
        ),
        ("socat", version("socat", &["-V"], "socat version")),
    ]
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A short command's trimmed stdout and stderr, or "?": a version missing from the report is no
/// reason to throw a run away.
fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map_or("?".into(), |out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text).trim().to_owned()
        })
}
