//! Cluster DNS: dnsmasq in the node namespace, serving the pods' and the headless service's records.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::cmd::{file_tail, output_text};
use super::layout::{BRIDGE_IP, Naming, pod_ip};
use super::poll::{Check, poll_until};
use super::procs::ProcId;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// dnsmasq as NOTES.md verified it, but records come from an addn-hosts file reloaded on SIGHUP.
/// No pid file (clusters would fight over /run/dnsmasq.pid) and no privilege drop.
pub fn dnsmasq_args(hosts_file: &Path, log_file: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--local=/#/",
        "--domain-needed",
        "--local-ttl=1",
        "--no-negcache",
        "--log-queries",
        "--pid-file=",
        "--user=root",
        "--group=root",
    ]
    .map(String::from)
    .into();
    args.extend([
        format!("--listen-address={BRIDGE_IP}"),
        format!("--addn-hosts={}", hosts_file.display()),
        format!("--log-facility={}", log_file.display()),
    ]);
    args
}

/// Waits until dnsmasq logged its start, which is after it installed its SIGHUP handler
/// (a SIGHUP before that would kill it).
pub async fn wait_started(dnsmasq: ProcId, log_file: &Path, console_log: &Path) -> Result<()> {
    poll_until("dnsmasq to start", START_TIMEOUT, POLL_INTERVAL, || async {
        if !dnsmasq.is_alive() {
            bail!("dnsmasq exited: {}", file_tail(console_log, 20));
        }
        let log = fs::read_to_string(log_file).unwrap_or_default();
        Ok(if log.contains("started, version") {
            Check::Done(())
        } else {
            Check::Pending(file_tail(console_log, 5))
        })
    })
    .await
}

/// Adds the records Kubernetes creates with a pod: its own name and its address under the service.
pub fn add_pod_records(hosts_file: &Path, names: &Naming, n: usize) -> Result<()> {
    let ip = pod_ip(n);
    let records = format!(
        "{ip} {}\n{ip} {}\n",
        names.pod_fqdn(n),
        names.service_fqdn()
    );
    OpenOptions::new()
        .append(true)
        .open(hosts_file)
        .and_then(|mut file| file.write_all(records.as_bytes()))
        .with_context(|| format!("appending to {}", hosts_file.display()))
}

/// Makes pod n's own name resolve to `address` instead of what its records said (the service
/// name keeps the pod's address).
pub fn point_pod_record(
    hosts_file: &Path,
    names: &Naming,
    n: usize,
    address: Ipv4Addr,
) -> Result<()> {
    let fqdn = names.pod_fqdn(n);
    let hosts = fs::read_to_string(hosts_file)
        .with_context(|| format!("reading {}", hosts_file.display()))?;
    let mut records: String = hosts
        .lines()
        .filter(|line| line.split_whitespace().nth(1) != Some(fqdn.as_str()))
        .map(|line| format!("{line}\n"))
        .collect();
    records.push_str(&format!("{address} {fqdn}\n"));
    fs::write(hosts_file, records).with_context(|| format!("writing {}", hosts_file.display()))
}

/// Waits until `name` resolves to `address` alone inside `ns`.
pub async fn wait_resolves(ns: &str, name: &str, address: Ipv4Addr) -> Result<()> {
    let what = format!("{name} to resolve to {address}");
    poll_until(&what, RESOLVE_TIMEOUT, POLL_INTERVAL, || async {
        let seen = resolve(ns, name).await.unwrap_or_default();
        Ok(if seen == [address] {
            Check::Done(())
        } else {
            Check::Pending(format!("{seen:?}"))
        })
    })
    .await
}

/// Resolves `name` from inside network namespace `ns` with the pod's resolv.conf and hosts, as the
/// agent's libc would; every IPv4 address once, in answer order.
pub async fn resolve(ns: &str, name: &str) -> Result<Vec<Ipv4Addr>> {
    let mut getent = tokio::process::Command::new("ip");
    getent.args(["netns", "exec", ns, "getent", "ahostsv4", name]);
    let mut addresses = Vec::new();
    for line in output_text(getent).await?.lines() {
        let Some(Ok(address)) = line.split_whitespace().next().map(str::parse) else {
            continue;
        };
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// Waits until pod n's records are served by DNS. "mysql-N.mysql" is looked up through the
/// search list (the pod's hosts file only holds the full name), so it proves DNS, not /etc/hosts.
pub async fn wait_pod_records(ns: &str, names: &Naming, n: usize) -> Result<()> {
    let ip = pod_ip(n);
    let short_name = names.short_name(n);
    let service_fqdn = names.service_fqdn();
    let what = format!("DNS records of pod {n} ({ip})");
    poll_until(&what, RESOLVE_TIMEOUT, POLL_INTERVAL, || async {
        let own = resolve(ns, &short_name).await.unwrap_or_default();
        let service = resolve(ns, &service_fqdn).await.unwrap_or_default();
        Ok(if own == [ip] && service.contains(&ip) {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "{short_name} -> {own:?}, {service_fqdn} -> {service:?}"
            ))
        })
    })
    .await
}
