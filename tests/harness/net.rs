//! Network and UTS namespaces: the node namespace with the bridge, pods wired to it, and their teardown.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cmd::{ip, run, run_blocking};
use super::layout::{BRIDGE_IP, Naming, SUBNET_BITS, pod_ip};
use super::procs::{ProcId, kill_and_wait};

const BRIDGE: &str = "br0";

/// Creates a network namespace and brings its loopback up.
pub async fn add_netns(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns]).await?;
    ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
    Ok(())
}

/// The bridge lives in the node namespace, never in the root namespace.
pub async fn add_bridge(node_ns: &str) -> Result<()> {
    let address = format!("{BRIDGE_IP}/{SUBNET_BITS}");
    ip(&["-n", node_ns, "link", "add", BRIDGE, "type", "bridge"]).await?;
    ip(&["-n", node_ns, "addr", "add", &address, "dev", BRIDGE]).await?;
    ip(&["-n", node_ns, "link", "set", BRIDGE, "up"]).await?;
    Ok(())
}

/// A veth pair: `veth<N>` on the node's bridge, `eth0` with the pod IP in the pod. No default route.
pub async fn wire_pod(node_ns: &str, pod_ns: &str, n: usize) -> Result<()> {
    let veth = format!("veth{n}");
    let address = format!("{}/{SUBNET_BITS}", pod_ip(n));
    ip(&[
        "-n", node_ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
        pod_ns,
    ])
    .await?;
    ip(&["-n", node_ns, "link", "set", &veth, "master", BRIDGE, "up"]).await?;
    ip(&["-n", pod_ns, "addr", "add", &address, "dev", "eth0"]).await?;
    ip(&["-n", pod_ns, "link", "set", "eth0", "up"]).await?;
    Ok(())
}

/// Sets the pod's eth0 up or down; up again, the kernel restores its route to the bridge.
pub async fn set_link(pod_ns: &str, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    ip(&["-n", pod_ns, "link", "set", "eth0", state]).await?;
    Ok(())
}

/// `tc qdisc ARGS` inside namespace `ns`.
pub async fn qdisc(ns: &str, args: &[&str]) -> Result<String> {
    run("tc", &[&["-n", ns, "qdisc"], args].concat()).await
}

pub fn etc_netns_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// The files `ip netns exec` bind-mounts over /etc/resolv.conf and /etc/hosts, as a pod sees them.
pub fn write_etc_netns(ns: &str, names: &Naming, n: usize) -> Result<()> {
    let dir = etc_netns_dir(ns);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let resolv = format!(
        "search {}\nnameserver {BRIDGE_IP}\noptions ndots:5\n",
        names.search_domains()
    );
    let hosts = format!(
        "127.0.0.1\tlocalhost\n{}\t{}\t{}\n",
        pod_ip(n),
        names.pod_fqdn(n),
        names.hostname(n)
    );
    fs::write(dir.join("resolv.conf"), resolv)?;
    fs::write(dir.join("hosts"), hosts)?;
    Ok(())
}

/// A persistent UTS namespace bind-mounted on `file`, with `hostname` set in it.
pub async fn make_uts(file: &Path, hostname: &str) -> Result<()> {
    fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let uts = format!("--uts={}", file.display());
    run("unshare", &[&uts, "hostname", hostname]).await?;
    Ok(())
}

pub fn list_netns() -> Vec<String> {
    run_blocking("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Deletes namespace `ns` and its /etc/netns dir. Whatever still runs inside is SIGKILLed first
/// and returned as "pid (command line)" for the caller to report. Blocking.
pub fn remove_netns(ns: &str) -> Vec<String> {
    let leftovers: Vec<ProcId> = run_blocking("ip", &["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| ProcId::of(pid.parse().ok()?))
        .collect();
    let reports = leftovers
        .iter()
        .map(|proc| format!("{} ({})", proc.pid, proc.command_line()))
        .collect();
    kill_and_wait(&leftovers);
    if Path::new("/run/netns").join(ns).exists()
        && let Err(error) = run_blocking("ip", &["netns", "del", ns])
    {
        eprintln!("[msa-harness] {error:#}");
    }
    remove_dir_if_present(&etc_netns_dir(ns));
    reports
}

/// Unmounts a UTS bind mount (if mounted) and removes the file. Blocking.
pub fn remove_uts(file: &Path) {
    if is_mount_point(file) {
        let path = file.to_string_lossy();
        if let Err(error) = run_blocking("umount", &[&path]) {
            eprintln!("[msa-harness] {error:#}");
            return;
        }
    }
    if let Err(error) = fs::remove_file(file)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("[msa-harness] removing {}: {error}", file.display());
    }
}

fn is_mount_point(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(&*wanted))
}

pub fn remove_dir_if_present(dir: &Path) {
    if let Err(error) = fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("[msa-harness] removing {}: {error}", dir.display());
    }
}
