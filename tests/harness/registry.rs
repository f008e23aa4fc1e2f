//! A small file per cluster in /tmp/msa-registry listing what it made, and the sweep that
//! removes what clusters of dead processes (crashed or killed test runs) left behind.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::layout::ClusterId;
use super::net::{etc_netns_dir, list_netns, remove_dir_if_present, remove_netns, remove_uts};
use super::procs::{ProcId, kill_and_wait};

const REGISTRY_DIR: &str = "/tmp/msa-registry";

/// Appends one line per resource, written *before* the resource is made, so that a crash
/// in between leaves a harmless record rather than an untracked leftover.
pub struct Registry {
    path: PathBuf,
}

impl Registry {
    pub fn create(id: &ClusterId, root: &Path) -> Result<Self> {
        fs::create_dir_all(REGISTRY_DIR)?;
        let registry = Registry {
            path: Path::new(REGISTRY_DIR).join(id.prefix()),
        };
        let creator = ProcId::of(id.pid).context("reading our own /proc entry")?;
        fs::write(&registry.path, "")?;
        registry.record(
            "creator",
            format_args!("{} {}", creator.pid, creator.start_time),
        );
        registry.record("root", root.display());
        Ok(registry)
    }

    pub fn record(&self, kind: &str, value: impl Display) {
        let written = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut file| writeln!(file, "{kind} {value}"));
        if let Err(error) = written {
            eprintln!("[msa-harness] writing {}: {error}", self.path.display());
        }
    }

    pub fn record_process(&self, id: ProcId, name: &str) {
        self.record("proc", format_args!("{} {} {name}", id.pid, id.start_time));
    }

    pub fn remove(&self) {
        if let Err(error) = fs::remove_file(&self.path) {
            eprintln!("[msa-harness] removing {}: {error}", self.path.display());
        }
    }
}

/// What a registry file says about one cluster.
#[derive(Default)]
struct Entry {
    creator: Option<ProcId>,
    root: Option<PathBuf>,
    namespaces: Vec<String>,
    uts_files: Vec<PathBuf>,
    processes: Vec<ProcId>,
}

fn parse_proc_id(value: &str) -> Option<ProcId> {
    let mut fields = value.split_whitespace();
    Some(ProcId {
        pid: fields.next()?.parse().ok()?,
        start_time: fields.next()?.parse().ok()?,
    })
}

fn parse_entry(text: &str) -> Entry {
    let mut entry = Entry::default();
    for (kind, value) in text.lines().filter_map(|line| line.split_once(' ')) {
        match kind {
            "creator" => entry.creator = parse_proc_id(value),
            "root" => entry.root = Some(PathBuf::from(value)),
            "netns" => entry.namespaces.push(value.to_owned()),
            "uts" => entry.uts_files.push(PathBuf::from(value)),
            "proc" => entry.processes.extend(parse_proc_id(value)),
            _ => {}
        }
    }
    entry
}

/// Removes leftovers of clusters whose creating process is dead. Blocking; one sweep at a time
/// per process (concurrent sweeps would only report the same items twice).
pub fn sweep_stale() {
    static SWEEPING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SWEEPING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    sweep_registered();
    sweep_unregistered_namespaces();
}

fn sweep_registered() {
    let Ok(files) = fs::read_dir(REGISTRY_DIR) else {
        return;
    };
    for path in files.filter_map(|file| Some(file.ok()?.path())) {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let entry = parse_entry(&text);
        // A file without its creator line is still being written by a live process.
        if entry.creator.is_some_and(|creator| !creator.is_alive()) {
            sweep_entry(&entry);
            eprintln!("[msa-harness] swept registry {}", path.display());
            let _ = fs::remove_file(&path);
        }
    }
}

fn sweep_entry(entry: &Entry) {
    let running: Vec<ProcId> = entry
        .processes
        .iter()
        .copied()
        .filter(ProcId::is_alive)
        .collect();
    for proc in &running {
        eprintln!(
            "[msa-harness] swept stale process {} ({})",
            proc.pid,
            proc.command_line()
        );
    }
    kill_and_wait(&running);
    for ns in entry.namespaces.iter().rev() {
        sweep_netns(ns);
    }
    for file in &entry.uts_files {
        remove_uts(file);
    }
    if let Some(root) = entry.root.as_deref().filter(|root| root.exists()) {
        eprintln!("[msa-harness] swept stale root dir {}", root.display());
        remove_dir_if_present(root);
    }
}

fn sweep_netns(ns: &str) {
    let had_netns = Path::new("/run/netns").join(ns).exists();
    let had_etc_dir = etc_netns_dir(ns).exists();
    for leftover in remove_netns(ns) {
        eprintln!("[msa-harness] swept stale process {leftover} in netns {ns}");
    }
    if had_netns {
        eprintln!("[msa-harness] swept stale netns {ns}");
    }
    if had_etc_dir {
        eprintln!("[msa-harness] swept stale {}", etc_netns_dir(ns).display());
    }
}

/// Namespaces (and /etc/netns dirs) named by a dead process whose registry file is gone.
fn sweep_unregistered_namespaces() {
    let etc_dirs = fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .filter_map(|dir| dir.ok()?.file_name().into_string().ok());
    let names: BTreeSet<String> = list_netns().into_iter().chain(etc_dirs).collect();
    for ns in names {
        let creator_dead = ClusterId::creator_of(&ns)
            .is_some_and(|pid| ProcId::of(pid).is_none_or(|proc| !proc.is_alive()));
        if creator_dead {
            sweep_netns(&ns);
        }
    }
}
