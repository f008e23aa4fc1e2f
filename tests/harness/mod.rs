//! Test harness: a simulated MariaDB or MySQL StatefulSet on one machine, without Kubernetes or
//! Docker.
//!
//! The pods run what the built manifest of the flavor under test (or a manifest file given as it
//! is, `ClusterSpec::manifest`: e.g. the Kubernetes tutorial's method, for a benchmark) declares
//! (`manifest.rs`): its pod template's init containers in order, its native sidecar, then the
//! database container and any other main container (a program of the database image, e.g. a
//! `bash -c` script, in the container's own filesystem: `rootfs.rs`), with the command, args,
//! env, ports, volume mounts and probes of the template; the kubelet's probes decide when a pod is Ready
//! (`kubelet.rs`). How images and volumes map to this machine is the harness's only knowledge of
//! its own (`mapping.rs`).
//!
//! Names are a cluster's choice (`ClusterSpec::names`, default `mysql` in `default` of
//! `cluster.local` from ordinal 0): the harness builds an overlay on top of the shipped one that
//! renames the set and its Services, sets the namespace and `spec.ordinals.start` and tells the
//! agent (`manifest.rs`); the cluster domain exists only in the pods' resolv.conf, /etc/hosts and
//! DNS records, as in a cluster. Harness pod n (0..pods) is ordinal `start + n`.
//!
//! A pod is a network namespace plus a persistent UTS namespace (hostname `<statefulset>-<ordinal>`,
//! e.g. `mysql-1`, resolvable as `<hostname>.<service>.<namespace>.svc.<domain>`); a "node"
//! namespace holds the bridge, dnsmasq (cluster DNS) and the prober; each pod runs a real server
//! (`DbVersion`: the host's MariaDB 10.11, or MariaDB 11.8 or MySQL 9.7 from a cached Debian
//! chroot, see `chroot.rs`) and the agent under test. As strict as Kubernetes where the agent
//! once failed on clusters: every container runs as its securityContext says (uid 999, no
//! capabilities, no_new_privs in the template; `security.rs`), containers of a chroot image run
//! inside it, and volumes are owned as provisioners and the kubelet make them (`VolumeLayout`,
//! `volumes.rs`). Everything is named `msa<pid>x<k>...`, so clusters of parallel tests and
//! processes never collide, and Drop (or the next run's sweep) removes it all.
//!
//! Logs: every process the harness starts writes to `<root>/pod<N>/logs/<kind>-<k>.log`
//! (`<root>/logs` for dnsmasq); an agent container's kind is its subcommand (`init-1.log`,
//! `sidecar-2.log`), and its `--check` before each run logs as `<subcommand>-check`. A failed test (a panic, e.g. `unwrap` or `assert!`) keeps the root
//! dir and prints its path; datadirs are removed even then unless MSA_KEEP_DATA is set, and
//! MSA_KEEP keeps everything even on success. A test that fails by returning `Err` drops its
//! cluster before the failure is known: run it through `Cluster::run_scenario`, or `unwrap` the
//! result of a helper while the cluster is still alive.
#![allow(dead_code)]

mod chroot;
mod cmd;
pub mod data;
mod dns;
pub mod kubelet;
pub mod layout;
pub mod manifest;
pub mod mapping;
mod mariadb;
mod mysql;
mod net;
mod poll;
mod procs;
pub mod prometheus;
pub mod proxy;
mod registry;
mod rootfs;
pub mod secrets;
pub mod security;
mod server;
mod tls;
pub use tls::TlsSecret;
pub mod volumes;
pub mod writer;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Permissions};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::process::Command;

use cmd::{file_tail, read_lossy, tail};
use kubelet::Prober;
use layout::{ClusterId, MAX_PODS, PodPaths};
use mapping::{
    CHECK_VALID, HttpProbe, Image, POD_PATH, PodPlan, ProbeAction, Program, Resolved, Role,
    Template, VolumeType,
};
use procs::{CommandLineWatch, Tracked, Victim, descendants, kill_and_wait, stop_group};
use registry::Registry;
use server::Step;

// Each test binary uses a different subset of these.
#[allow(unused_imports)]
pub use layout::Naming;
#[allow(unused_imports)]
pub use net::list_netns;
#[allow(unused_imports)]
pub use poll::{Check, poll_until};
#[allow(unused_imports)]
pub use procs::{Credentials, ProcId, ProcessInfo};
#[allow(unused_imports)]
pub use secrets::{Finding, SecretSearch, Secrets};
#[allow(unused_imports)]
pub use server::{ADMIN_USER, DbVersion, Flavor};
#[allow(unused_imports)]
pub use volumes::VolumeLayout;

/// How long `start_pod` waits for Ready: a cluster would wait the startupProbe's hour, a test
/// gives up sooner.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const READYZ_INTERVAL: Duration = Duration::from_millis(200);
/// Far beyond the agent's own clone deadline: only a hung init hits it.
const INIT_TIMEOUT: Duration = Duration::from_secs(300);
const AGENT_GRACE: Duration = Duration::from_secs(10);
const SERVER_GRACE: Duration = Duration::from_secs(30);
const DNS_GRACE: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 40;
const SECRET_LEN: usize = 24;
/// The Secret's key of the admin account's password (k8s/secret.example.yaml).
const ADMIN_PASSWORD_KEY: &str = "admin-password";

pub struct ClusterSpec {
    /// The agent binary: `PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent"))`.
    pub agent_bin: PathBuf,
    /// How many pods this cluster may hold.
    pub pods: usize,
    /// Which server (database image) the pods run.
    pub version: DbVersion,
    /// How the data volumes are provisioned.
    pub volumes: VolumeLayout,
    /// The StatefulSet's names, namespace, cluster domain and first ordinal.
    pub naming: Naming,
    /// Added to every agent container's env, as a ConfigMap entry of the template would be.
    pub agent_env: Vec<(String, String)>,
    /// The Secret's values; None: random alphanumeric ones.
    pub secrets: Option<Secrets>,
    /// Deploy the flavor's overlay with the `k8s/tls` component, its Secret issued by the
    /// harness's CA (`tls.rs`).
    pub tls: bool,
    /// The agents' admin account is `server::ADMIN_USER`, not root (`admin_account`).
    pub admin_account: bool,
    /// A manifest file run in place of the flavor's overlay (`manifest`).
    pub manifest: Option<PathBuf>,
}

impl ClusterSpec {
    /// A cluster of the host's MariaDB on `FsGroup` volumes; `.flavor(Flavor::MySql)` or
    /// `.version(...)` picks another server, `.volumes(...)` another layout.
    pub fn new(agent_bin: impl Into<PathBuf>, pods: usize) -> Self {
        ClusterSpec {
            agent_bin: agent_bin.into(),
            pods,
            version: DbVersion::MariaDb10_11,
            volumes: VolumeLayout::default(),
            naming: Naming::default(),
            agent_env: Vec::new(),
            secrets: None,
            tls: false,
            admin_account: false,
            manifest: None,
        }
    }

    /// The flavor's default version.
    pub fn flavor(self, flavor: Flavor) -> Self {
        self.version(DbVersion::default_of(flavor))
    }

    pub fn version(mut self, version: DbVersion) -> Self {
        self.version = version;
        self
    }

    pub fn volumes(mut self, layout: VolumeLayout) -> Self {
        self.volumes = layout;
        self
    }

    /// Deploys the overlay under `naming` (default: the shipped names, in `default` of a
    /// `cluster.local` cluster): the harness builds an overlay on top of the shipped one that
    /// renames the set and its Services, sets the namespace and `spec.ordinals.start`, and tells
    /// the agent the service and the first ordinal; the cluster domain goes only into the pods'
    /// resolv.conf, /etc/hosts and DNS records.
    pub fn names(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self
    }

    /// TLS on every channel, as the `k8s/tls` component deploys it: the flavor's TLS overlay,
    /// whose `tls` volume holds the set's certificate from the harness's CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Sets `name` in every agent container (init and sidecar alike), e.g. a feature's switch.
    pub fn agent_env(mut self, name: &str, value: &str) -> Self {
        self.agent_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The agents log in as `server::ADMIN_USER` with the Secret's `admin-password`, set in their
    /// env as a user sets it in the ConfigMap; the first pod's database container creates that
    /// account on its first start as the image does from its env and from
    /// `k8s/admin-account/admin-account.sql` mounted in /docker-entrypoint-initdb.d, as the
    /// k8s/admin-account component has it (README, "Least privilege"). Replicas get it with
    /// their clone.
    pub fn admin_account(mut self) -> Self {
        self.admin_account = true;
        self.agent_env("MYSQL_STS_ADMIN_USER", server::ADMIN_USER)
    }

    /// Runs the pod template of manifest `file`, applied as it is (e.g. another project's
    /// StatefulSet, for a benchmark), in place of the flavor's overlay; its names are its own.
    pub fn manifest(mut self, file: impl Into<PathBuf>) -> Self {
        self.manifest = Some(file.into());
        self
    }

    /// The mounted Secret holds `secrets` instead of random values, as a user's own would.
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }
}

/// One finished run of an init container (e.g. `mysql-sts-agent init`).
#[derive(Debug)]
pub struct InitRun {
    /// Exit code; None if a signal killed it.
    pub code: Option<i32>,
    /// stdout and stderr, interleaved as written.
    pub output: String,
}

impl InitRun {
    /// Fails with the output unless it exited with `code`.
    pub fn ensure_exit(&self, code: i32) -> Result<()> {
        ensure!(
            self.code == Some(code),
            "init exited with {:?}, not {code}:\n{}",
            self.code,
            self.output
        );
        Ok(())
    }
}

/// An init container stopped with SIGTERM (`InitHandle::terminate`).
#[derive(Debug)]
pub struct Terminated {
    pub run: InitRun,
    /// From the signal to its exit.
    pub took: Duration,
    /// PIDs of processes it had spawned that still ran after it exited.
    pub left_behind: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An `init` running in the background.
pub struct InitHandle {
    process: Tracked,
}

impl InitHandle {
    pub fn pid(&self) -> u32 {
        self.process.id.pid
    }

    /// SIGKILLs init and everything it spawned, as the kubelet kills a container, and returns
    /// once all of it is gone. `wait` then reports the kill.
    pub async fn kill(&mut self) -> Result<()> {
        // A reaped init's PID may already belong to someone else.
        let spawned = if self.process.id.is_alive() {
            descendants(self.pid())
        } else {
            Vec::new()
        };
        self.process.id.signal(Signal::SIGKILL);
        self.process.wait().await?;
        tokio::task::spawn_blocking(move || kill_and_wait(&spawned)).await?;
        Ok(())
    }

    /// SIGTERMs init alone, as the kubelet stops a container, and reaps it: its run, how long it
    /// took to exit, and the processes it had spawned that outlived it (killed now; init must
    /// stop its own).
    pub async fn terminate(self) -> Result<Terminated> {
        let spawned = descendants(self.pid());
        let asked = Instant::now();
        self.process.id.signal(Signal::SIGTERM);
        let run = self.wait().await?;
        let took = asked.elapsed();
        let survivors: Vec<ProcId> = spawned.into_iter().filter(|id| id.is_alive()).collect();
        let left_behind = survivors.iter().map(|id| id.pid).collect();
        tokio::task::spawn_blocking(move || kill_and_wait(&survivors)).await?;
        Ok(Terminated {
            run,
            took,
            left_behind,
        })
    }

    pub async fn wait(mut self) -> Result<InitRun> {
        let status = match tokio::time::timeout(INIT_TIMEOUT, self.process.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.kill().await?;
                bail!(
                    "{} still ran after {INIT_TIMEOUT:?} and was killed; log tail:\n{}",
                    self.process.name,
                    file_tail(&self.process.log, LOG_TAIL_LINES)
                );
            }
        };
        Ok(InitRun {
            code: status.code(),
            output: read_lossy(&self.process.log),
        })
    }
}

struct Pod {
    ns: String,
    paths: PodPaths,
    /// The template's containers as they run in this pod.
    plan: PodPlan,
    /// When the pod "came to exist" for Kubernetes, i.e. got its DNS records.
    created: Option<Instant>,
    /// From `created` until `start_pod` saw it Ready.
    ready_after: Option<Duration>,
    server: Option<Tracked>,
    sidecar: Option<Tracked>,
    /// The kubelet's probes of the running database and sidecar containers.
    server_probes: Option<Prober>,
    sidecar_probes: Option<Prober>,
    /// Inits started with `spawn_init`: their handles reap them, Drop only stops them.
    inits: Vec<ProcId>,
    /// Other processes a test started in the pod.
    helpers: Vec<Tracked>,
    /// Runs so far per process kind, numbering the log files.
    runs: HashMap<String, u32>,
}

impl Pod {
    /// The log file of the next run of `kind`: `<pod>/logs/<kind>-<k>.log`, k from 1.
    fn next_log(&mut self, kind: &str) -> (u32, PathBuf) {
        let k = self.runs.entry(kind.to_owned()).or_default();
        *k += 1;
        (*k, self.paths.logs().join(format!("{kind}-{k}.log")))
    }
}

pub struct Cluster {
    spec: ClusterSpec,
    id: ClusterId,
    root: PathBuf,
    /// Taken by Drop, which decides whether to keep the files.
    root_dir: Option<TempDir>,
    registry: Registry,
    /// The manifest under test, with this cluster's paths and secrets.
    template: Template,
    naming: Naming,
    /// The database image when it is a chroot: shared, and read-only in every pod.
    chroot: Option<PathBuf>,
    pods: Vec<Pod>,
    dnsmasq: Option<Tracked>,
    /// Processes a test started in the node namespace (`spawn_on_node`).
    node_helpers: Vec<Tracked>,
    namespaces: Vec<String>,
    uts_files: Vec<PathBuf>,
    /// Every process ever started, for reports and the self-test.
    ledger: Vec<ProcessInfo>,
    /// Containers the kubelet would have killed (a startup or liveness probe past its
    /// failureThreshold), from probers already stopped.
    probe_failures: Vec<String>,
    keep_files: bool,
    /// With `ClusterSpec::tls`: the mounted certificate Secret and its CA.
    tls: Option<TlsSecret>,
}

// Tests may move a cluster into spawned tasks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cluster>();
};

impl Cluster {
    /// Creates the node namespace with the bridge and dnsmasq, every pod's namespaces, files and
    /// directories, and the secrets; no database yet. First sweeps leftovers of dead runs.
    pub async fn new(spec: ClusterSpec) -> Result<Cluster> {
        ensure!(
            (1..=MAX_PODS).contains(&spec.pods),
            "a cluster holds 1 to {MAX_PODS} pods, not {}",
            spec.pods
        );
        let chroot = spec
            .version
            .chroot()
            .map(|image| image.locate())
            .transpose()?;
        let flavor = spec.version.flavor();
        let overlay = if spec.tls {
            flavor.tls_overlay()
        } else {
            flavor.overlay()
        };
        let naming = spec.naming.clone();
        let file = spec.manifest.clone();
        let manifest = tokio::task::spawn_blocking(move || match file {
            Some(file) => manifest::load_file(&file),
            None => manifest::load(overlay, &naming),
        })
        .await??;
        tokio::task::spawn_blocking(registry::sweep_stale).await?;
        let id = ClusterId::next();
        let root_dir = tempfile::Builder::new()
            .prefix(&format!("msa-{}x{}-", id.pid, id.k))
            .tempdir_in("/tmp")?;
        let root = root_dir.path().to_owned();
        // Every pod's users must traverse it.
        fs::set_permissions(&root, Permissions::from_mode(0o755))?;
        let template = Template::new(
            manifest,
            flavor,
            spec.agent_bin.clone(),
            root.join("secrets"),
            SECRET_LEN,
            &spec.naming.cluster_domain,
        )?
        .with_layout(spec.volumes);
        let template = match &spec.secrets {
            Some(secrets) => template.with_secret_values(&secrets.by_key())?,
            None => template,
        };
        let mut agent_env = spec.agent_env.clone();
        if spec.admin_account {
            // The Secret's file, as the env's other paths are mapped to the host.
            let file = root.join("secrets").join(ADMIN_PASSWORD_KEY);
            agent_env.push((
                "MYSQL_STS_ADMIN_PASSWORD_FILE".to_owned(),
                file.to_string_lossy().into_owned(),
            ));
        }
        let tls = TlsSecret::for_template(&template, &root.join("tls-issuer"))?;
        // Anything the harness cannot map fails here, before a namespace exists.
        let pods = (0..spec.pods)
            .map(|n| {
                let paths = PodPaths::new(&root, n);
                let mut plan = template
                    .plan(&paths, n)
                    .with_context(|| format!("the {overlay} overlay's pod template"))?;
                for container in &mut plan.containers {
                    if container.agent_binary().is_some() {
                        container.env.extend(agent_env.iter().cloned());
                    }
                }
                Ok(Pod {
                    ns: id.pod_ns(n),
                    plan,
                    paths,
                    created: None,
                    ready_after: None,
                    server: None,
                    sidecar: None,
                    server_probes: None,
                    sidecar_probes: None,
                    inits: Vec::new(),
                    helpers: Vec::new(),
                    runs: HashMap::new(),
                })
            })
            .collect::<Result<_>>()?;
        let registry = Registry::create(&id, &root)?;
        let mut cluster = Cluster {
            spec,
            id,
            root,
            root_dir: Some(root_dir),
            registry,
            naming: template.naming().clone(),
            template,
            chroot,
            pods,
            dnsmasq: None,
            node_helpers: Vec::new(),
            namespaces: Vec::new(),
            uts_files: Vec::new(),
            ledger: Vec::new(),
            probe_failures: Vec::new(),
            keep_files: false,
            tls,
        };
        eprintln!(
            "[msa-harness] cluster {}: files in {}",
            cluster.id.prefix(),
            cluster.root.display()
        );
        // On error, Drop removes whatever was made so far (and keeps the logs).
        if let Err(error) = cluster.setup().await {
            cluster.keep_files = true;
            return Err(error.context(format!("setting up cluster {}", cluster.id.prefix())));
        }
        Ok(cluster)
    }

    /// Runs `scenario` on a new cluster of `spec`. An `Err` from it keeps the cluster's files,
    /// as a panic does, so that tests written with `?` and `ensure!` keep their logs too. A
    /// container the kubelet would have killed fails the scenario too.
    pub async fn run_scenario(
        spec: ClusterSpec,
        scenario: impl AsyncFnOnce(&mut Cluster) -> Result<()>,
    ) -> Result<()> {
        let mut cluster = Cluster::new(spec).await?;
        let outcome = scenario(&mut cluster).await.and_then(|()| {
            let failures = cluster.probe_failures();
            ensure!(failures.is_empty(), "{}", failures.join("\n"));
            Ok(())
        });
        if outcome.is_err() {
            cluster.keep_files();
        }
        outcome
    }

    async fn setup(&mut self) -> Result<()> {
        self.write_files()?;
        self.build_network().await?;
        self.start_dns().await
    }

    fn write_files(&self) -> Result<()> {
        layout::make_dirs(&[
            self.root.join("dns"),
            self.root.join("logs"),
            self.root.join("http"),
        ])?;
        self.template.write_secrets()?;
        self.project_tls()?;
        layout::write_file(&self.hosts_file(), "", 0o644)?;
        let version = self.spec.version;
        for pod in &self.pods {
            layout::make_pod_dirs(&pod.paths)?;
            // A root container's server runs as the image's mysql user, as the images do.
            let user = pod.plan.database().run_as.is_root().then_some("mysql");
            let my_cnf = version.my_cnf(&pod.paths, &pod.plan.server, user);
            layout::write_file(&pod.paths.my_cnf(), &my_cnf, 0o644)?;
            if version.flavor() == Flavor::MySql {
                let script = mysql::pod_mysqld_script(&pod.paths);
                layout::write_file(&pod.paths.mysqld(), &script, 0o755)?;
            }
        }
        if let Some(chroot) = &self.chroot {
            layout::make_dirs(&[self.root.join("bin")])?;
            let script = chroot::chroot_exec_script(chroot);
            layout::write_file(&self.chroot_exec(), &script, 0o755)?;
        }
        Ok(())
    }

    /// `<root>/bin/chroot-exec` (chroot images only): see `chroot::chroot_exec_script`.
    fn chroot_exec(&self) -> PathBuf {
        self.root.join("bin/chroot-exec")
    }

    async fn build_network(&mut self) -> Result<()> {
        let node_ns = self.id.node_ns();
        self.add_netns(&node_ns).await?;
        net::add_bridge(&node_ns).await?;
        for n in 0..self.pods.len() {
            let pod_ns = self.pods[n].ns.clone();
            self.add_netns(&pod_ns).await?;
            net::wire_pod(&node_ns, &pod_ns, n).await?;
            net::write_etc_netns(&pod_ns, &self.naming, n)?;
            let uts = self.pods[n].paths.uts_file();
            self.registry.record("uts", uts.display());
            self.uts_files.push(uts.clone());
            net::make_uts(&uts, &self.naming.hostname(n)).await?;
        }
        Ok(())
    }

    async fn add_netns(&mut self, ns: &str) -> Result<()> {
        self.registry.record("netns", ns);
        self.namespaces.push(ns.to_owned());
        net::add_netns(ns).await
    }

    /// Starts cluster DNS (dnsmasq in the node namespace) with the records made so far.
    pub async fn start_dns(&mut self) -> Result<()> {
        ensure_stopped(self.dnsmasq.as_mut(), 0, "dnsmasq")?;
        let dns_log = self.root.join("logs/dnsmasq.log");
        let console_log = self.root.join("logs/dnsmasq-console.log");
        let mut dnsmasq = self.node_command("dnsmasq");
        dnsmasq.args(dns::dnsmasq_args(&self.hosts_file(), &dns_log));
        let dnsmasq = self.spawn_tracked("dnsmasq".into(), &mut dnsmasq, &console_log)?;
        let id = dnsmasq.id;
        self.dnsmasq = Some(dnsmasq);
        dns::wait_started(id, &dns_log, &console_log).await
    }

    /// Stops cluster DNS: every lookup in the pods fails (refused) until `start_dns`.
    pub async fn stop_dns(&mut self) -> Result<()> {
        let dnsmasq = self.dnsmasq.take().context("dnsmasq is not running")?;
        dnsmasq.stop(DNS_GRACE).await?;
        Ok(())
    }

    /// Points pod n's DNS name at `address` (e.g. a `proxy::FaultProxy`), or back at the pod's
    /// own address with None, and waits until the other pods resolve it so.
    pub async fn point_name(&mut self, n: usize, address: Option<Ipv4Addr>) -> Result<()> {
        let address = address.unwrap_or(self.pod_ip(n));
        dns::point_pod_record(&self.hosts_file(), &self.naming, n, address)?;
        self.dnsmasq
            .as_ref()
            .context("dnsmasq is not running")?
            .id
            .signal(Signal::SIGHUP);
        let from = self.pod(if n == 0 { 1 } else { 0 }).ns.clone();
        dns::wait_resolves(&from, &self.naming.pod_fqdn(n), address).await
    }

    /// The address of the node namespace on the pods' bridge (where cluster DNS listens).
    pub fn node_ip(&self) -> Ipv4Addr {
        layout::BRIDGE_IP
    }

    /// Cuts pod n off the network (its eth0 down: nothing in or out, the kubelet's probes
    /// included) or connects it again.
    pub async fn set_connected(&self, n: usize, connected: bool) -> Result<()> {
        net::set_link(&self.pod(n).ns, connected).await
    }

    fn hosts_file(&self) -> PathBuf {
        self.root.join("dns/hosts")
    }

    /// "Creates" pod n as Kubernetes would before starting its containers: adds its DNS records
    /// and waits until they resolve inside the pod. Idempotent.
    pub async fn create_pod(&mut self, n: usize) -> Result<()> {
        if self.pod(n).created.is_some() {
            return Ok(());
        }
        self.provision_volumes(n)?;
        let dnsmasq = self
            .dnsmasq
            .as_ref()
            .context("dnsmasq was never started")?
            .id;
        ensure!(
            dnsmasq.is_alive(),
            "dnsmasq died: {}",
            file_tail(&self.root.join("logs/dnsmasq-console.log"), 20)
        );
        dns::add_pod_records(&self.hosts_file(), &self.naming, n)?;
        dnsmasq.signal(Signal::SIGHUP); // re-reads the addn-hosts file
        dns::wait_pod_records(&self.pod(n).ns, &self.naming, n).await?;
        self.pods[n].created = Some(Instant::now());
        Ok(())
    }

    /// The pod's volumes as the provisioner makes them and the kubelet mounts them first.
    fn provision_volumes(&self, n: usize) -> Result<()> {
        let ownership = self.template.ownership();
        let paths = &self.pod(n).paths;
        for claim in mapping::pod_volume_dirs(paths, VolumeType::ClaimTemplate) {
            ownership.provision_claim(&claim)?;
        }
        for dir in mapping::pod_volume_dirs(paths, VolumeType::EmptyDir) {
            ownership.make_empty_dir(&dir)?;
        }
        self.template.provision_other_volumes(paths)?;
        self.mount_volumes(n)
    }

    /// What the kubelet does to the data volume at each pod start (init containers run only
    /// then): fsGroup per fsGroupChangePolicy.
    fn mount_volumes(&self, n: usize) -> Result<()> {
        let ownership = self.template.ownership();
        for claim in mapping::pod_volume_dirs(&self.pod(n).paths, VolumeType::ClaimTemplate) {
            ownership.mount_claim(&claim)?;
        }
        Ok(())
    }

    /// OrderedReady start of pod n, as the kubelet runs the template: create the pod; run its init
    /// containers in order, each to exit 0, starting a native sidecar when it is reached and
    /// going on once its startupProbe passed; start the database container; return once the
    /// kubelet's probes (`kubelet.rs`) mark the pod Ready: its database container's
    /// readinessProbe passed successThreshold times (without one, once started).
    pub async fn start_pod(&mut self, n: usize) -> Result<()> {
        self.create_pod(n).await?;
        for container in self.pod(n).plan.containers.clone() {
            match container.role {
                Role::Init => {
                    let run = self.spawn_container(n, &container).await?.wait().await?;
                    ensure!(
                        run.code == Some(0),
                        "init container {} of pod {n} exited with {:?}; log tail:\n{}",
                        container.name,
                        run.code,
                        tail(&run.output, LOG_TAIL_LINES)
                    );
                }
                Role::Sidecar => {
                    self.start_native_sidecar(n, &container).await?;
                    self.wait_probes(n, false).await?;
                }
                Role::Main if container.is_server() => self.start_server(n).await?,
                // A program of the database image beside the server; only the server has probes.
                Role::Main => {
                    let process = self.launch(n, &container).await?;
                    self.pods[n].helpers.push(process);
                }
            }
        }
        self.wait_probes(n, true).await?;
        let created = self.pod(n).created.context("a started pod was created")?;
        let ready_after = created.elapsed();
        self.pods[n].ready_after = Some(ready_after);
        eprintln!(
            "[msa-harness] pod {n} Ready {:.1}s after it was created",
            ready_after.as_secs_f64()
        );
        Ok(())
    }

    /// When pod n was created (got its DNS records), e.g. to time several pods as one set.
    pub fn created_at(&self, n: usize) -> Option<Instant> {
        self.pod(n).created
    }

    /// How long pod n took from its creation to Ready, as the kubelet's probes saw it, in its
    /// last `start_pod`.
    pub fn ready_after(&self, n: usize) -> Option<Duration> {
        self.pod(n).ready_after
    }

    /// Waits until pod n's database container is Ready (`database`) or its sidecar started, as
    /// the kubelet's probes see it; fails with the probe history and the sidecar's log tail
    /// once the kubelet would kill the container or after READY_TIMEOUT.
    async fn wait_probes(&self, n: usize, database: bool) -> Result<()> {
        let pod = self.pod(n);
        let prober = if database {
            &pod.server_probes
        } else {
            &pod.sidecar_probes
        };
        let prober = prober.as_ref().context("the container is not running")?;
        let mut status = prober.status();
        let wanted =
            |s: &kubelet::Status| s.failed.is_some() || if database { s.ready } else { s.started };
        let outcome = tokio::time::timeout(READY_TIMEOUT, status.wait_for(wanted)).await;
        let failure = match outcome {
            Ok(Ok(status)) => match &status.failed {
                None => return Ok(()),
                Some(failed) => failed.clone(),
            },
            Ok(Err(_)) => "its prober stopped".to_owned(),
            Err(_) => format!(
                "not {} after {READY_TIMEOUT:?}",
                if database { "Ready" } else { "started" }
            ),
        };
        let sidecar_log = pod.sidecar.as_ref().map(|sidecar| &sidecar.log);
        bail!(
            "pod {n}, container {}: {failure}\nprobes:\n{}sidecar log tail:\n{}",
            prober.container(),
            prober.history(),
            sidecar_log.map_or_else(String::new, |log| file_tail(log, LOG_TAIL_LINES))
        )
    }

    /// Starts the kubelet's probes of `container` in pod n, started at `started_at`. An exec
    /// probe's command runs as a program of the container's image, with its env.
    fn probe(&self, n: usize, container: &Resolved, started_at: Instant) -> Result<Prober> {
        let ip = self.pod_ip(n).into();
        let mut probes = container.probes.clone();
        for spec in [
            &mut probes.startup,
            &mut probes.readiness,
            &mut probes.liveness,
        ]
        .into_iter()
        .flatten()
        {
            let ProbeAction::Exec(words) = &spec.action else {
                continue;
            };
            let (name, args) = words.split_first().context("an empty exec probe")?;
            let exec = Resolved {
                program: Program::Image(name.clone()),
                ..container.clone()
            };
            rootfs::make_host_dirs(&exec.binds, &exec.own_dir)?;
            let command = self.container_exec(n, &exec, "env")?;
            let command = command.as_std();
            let argv = std::iter::once(command.get_program())
                .chain(command.get_args())
                .map(|word| word.to_string_lossy().into_owned())
                .chain(["-i".to_owned()])
                .chain(exec.env.iter().map(|(key, value)| format!("{key}={value}")))
                .chain(std::iter::once(name.clone()))
                .chain(args.iter().cloned())
                .collect();
            spec.action = ProbeAction::Exec(argv);
        }
        Prober::start(&container.name, &probes, &self.id.node_ns(), ip, started_at)
    }

    /// Stops the prober in `slot` (its container stops), keeping what it would have killed.
    fn stop_probes(&mut self, n: usize, database: bool) {
        let pod = &mut self.pods[n];
        let slot = if database {
            &mut pod.server_probes
        } else {
            &mut pod.sidecar_probes
        };
        if let Some(failed) = slot.take().and_then(Prober::stop) {
            self.probe_failures.push(format!("pod {n}: {failed}"));
        }
    }

    /// Containers the kubelet would have killed so far: a startup or liveness probe past its
    /// failureThreshold.
    pub fn probe_failures(&self) -> Vec<String> {
        let running = self.pods.iter().enumerate().flat_map(|(n, pod)| {
            [&pod.server_probes, &pod.sidecar_probes]
                .into_iter()
                .flatten()
                .filter_map(move |prober| {
                    let failed = prober.status().borrow().failed.clone();
                    failed.map(|failed| format!("pod {n}: {failed}"))
                })
        });
        self.probe_failures.iter().cloned().chain(running).collect()
    }

    /// Runs the template's `init` container for pod n to completion (creating the pod first, and
    /// running the install container first if the agent is not installed yet).
    pub async fn run_init(&mut self, n: usize) -> Result<InitRun> {
        self.spawn_init(n).await?.wait().await
    }

    /// Starts the template's `init` container for pod n in the background (see `run_init`).
    pub async fn spawn_init(&mut self, n: usize) -> Result<InitHandle> {
        self.spawn_init_with(n, &[]).await
    }

    /// `run_init` with `env` added to the template's (e.g. a shorter clone deadline).
    pub async fn run_init_with(&mut self, n: usize, env: &[(&str, &str)]) -> Result<InitRun> {
        self.spawn_init_with(n, env).await?.wait().await
    }

    /// `spawn_init` with `env` added to the template's (e.g. a shorter clone deadline).
    pub async fn spawn_init_with(&mut self, n: usize, env: &[(&str, &str)]) -> Result<InitHandle> {
        let mut init = self.pod(n).plan.agent("init")?.clone();
        for (name, value) in env {
            init.env.insert((*name).to_owned(), (*value).to_owned());
        }
        self.spawn_container(n, &init).await
    }

    /// Starts an init container in the background; `InitHandle::wait` reaps it.
    async fn spawn_container(&mut self, n: usize, container: &Resolved) -> Result<InitHandle> {
        self.prepare(n, container).await?;
        self.mount_volumes(n)?;
        let process = self.launch(n, container).await?;
        self.pods[n].inits.push(process.id);
        Ok(InitHandle { process })
    }

    /// Creates the pod if needed and, for a container that runs the installed agent, runs the
    /// template's install container first while the agent is not installed.
    async fn prepare(&mut self, n: usize, container: &Resolved) -> Result<()> {
        self.create_pod(n).await?;
        let (Program::InstalledAgent(installed) | Program::WrappedServer(installed)) =
            &container.program
        else {
            return Ok(());
        };
        if installed.exists() {
            return Ok(());
        }
        let install = self.pod(n).plan.agent("install")?.clone();
        let process = self.launch(n, &install).await?;
        let run = InitHandle { process }.wait().await?;
        ensure!(
            run.code == Some(0) && installed.exists(),
            "install container {} of pod {n} exited with {:?} and left no {}:\n{}",
            install.name,
            run.code,
            installed.display(),
            tail(&run.output, LOG_TAIL_LINES)
        );
        Ok(())
    }

    /// Spawns an agent container once its configuration passes `--check`: CI checks every
    /// container of the manifests the same way, and a pod must not run on a config that fails it.
    async fn launch(&mut self, n: usize, container: &Resolved) -> Result<Tracked> {
        if let Program::Image(_) = container.program {
            rootfs::make_host_dirs(&container.binds, &container.own_dir)?;
            let mut command = self.container_command(n, container, false)?;
            return self.spawn_in(n, container.kind(), &mut command);
        }
        let mut check = self.container_command(n, container, true)?;
        let process = self.spawn_in(n, &format!("{}-check", container.kind()), &mut check)?;
        let run = InitHandle { process }.wait().await?;
        let valid = run
            .output
            .lines()
            .find_map(|line| line.strip_prefix(CHECK_VALID));
        match (run.code, valid) {
            (Some(0), Some(line)) => (self.pod(n).plan.agrees(container, line))
                .with_context(|| format!("pod {n} refuses to run it: {line}"))?,
            (code, _) => bail!(
                "container {} of pod {n} fails its --check (exit {code:?}):\n{}",
                container.name,
                tail(&run.output, LOG_TAIL_LINES)
            ),
        }
        let mut command = self.container_command(n, container, false)?;
        self.spawn_in(n, container.kind(), &mut command)
    }

    /// The database container, as the official image's entrypoint runs it: as root, make the
    /// datadir and give whatever in it is not the image's mysql user's to that user (`find
    /// $DATADIR ! -user mysql -exec chown`), which my.cnf's `user=` runs the server as; on an
    /// empty volume, initialize it
    /// (mariadb-install-db, or mysqld --initialize-insecure) and after the first start do the
    /// root bootstrap with the root password the template gives it; otherwise (e.g. a clone)
    /// just start the server. Returns once it answers SELECT 1 over its socket.
    ///
    /// A database container whose command is the agent's `exec` runs that first, as the
    /// template says, and must exit 0 (it carries out a re-clone the sidecar requested).
    pub async fn start_server(&mut self, n: usize) -> Result<()> {
        ensure_stopped(self.pods[n].server.as_mut(), n, "server")?;
        self.stop_probes(n, true);
        let started = Instant::now();
        let database = self.pod(n).plan.database().clone();
        if let Some(exec) = self.spawn_exec(n).await? {
            let run = exec.wait().await?;
            ensure!(
                run.code == Some(0),
                "the agent's exec in the database container of pod {n} exited with {:?}; log \
                 tail:\n{}",
                run.code,
                tail(&run.output, LOG_TAIL_LINES)
            );
        }
        rootfs::make_host_dirs(&database.binds, &database.own_dir)?;
        let paths = self.pod(n).paths.clone();
        let setup = self.pod(n).plan.server.clone();
        let version = self.spec.version;
        let root_password = setup.root_password()?;
        let as_root = self.pod(n).plan.database().run_as.is_root();
        if as_root {
            let image_root = self.chroot.as_deref().unwrap_or(Path::new("/"));
            let (uid, gid) = layout::passwd_user(image_root, "mysql")?;
            // MariaDB's entrypoint gives the user's group too, MySQL's only the user.
            let gid = (version.flavor() == Flavor::MariaDb).then_some(gid);
            fs::create_dir_all(&setup.datadir)?;
            layout::chown_not_owned(&setup.datadir, uid, gid)?;
        }
        let fresh = server::is_fresh(&setup.datadir);
        if fresh {
            self.initialize_datadir(n, as_root.then_some("mysql"))
                .await?;
        }
        let server = self.spawn_step(n, &version.server(&paths))?;
        let id = server.id;
        self.pods[n].server = Some(server);
        self.pods[n].server_probes = Some(self.probe(n, &database, started)?);
        let password = if fresh { "" } else { root_password.as_str() };
        let opts = server::socket_opts(&setup.socket(), "root", password);
        server::wait_answers(id, &opts, &paths.error_log())
            .await
            .with_context(|| format!("starting the server of pod {n}"))?;
        eprintln!(
            "[msa-harness] pod {n}: server answered {:.1}s after its start",
            started.elapsed().as_secs_f64()
        );
        if fresh {
            server::bootstrap_root(&opts, &root_password, version.flavor()).await?;
            if self.spec.admin_account {
                let password =
                    layout::read_secret(&self.root.join("secrets").join(ADMIN_PASSWORD_KEY))?;
                let root = server::socket_opts(&setup.socket(), "root", &root_password);
                server::create_admin_account(&root, &password).await?;
            }
        }
        Ok(())
    }

    /// Starts in the background the agent's `exec` that `start_server` runs first when the
    /// template's database command is it (a pending re-clone is carried out there); `None` when
    /// it is not. `start_server` afterwards runs it again, with nothing left to do.
    pub async fn spawn_exec(&mut self, n: usize) -> Result<Option<InitHandle>> {
        let database = self.pod(n).plan.database().clone();
        let Program::WrappedServer(_) = database.program else {
            return Ok(None);
        };
        self.prepare(n, &database).await?;
        let process = self.launch(n, &database).await?;
        Ok(Some(InitHandle { process }))
    }

    async fn initialize_datadir(&mut self, n: usize, user: Option<&str>) -> Result<()> {
        let step = self.spec.version.initialize(&self.pod(n).paths, user);
        let started = Instant::now();
        let mut process = self.spawn_step(n, &step)?;
        let status = process.wait().await?;
        ensure!(
            status.success(),
            "{} for pod {n} failed ({status}):\n{}",
            step.kind,
            file_tail(&process.log, LOG_TAIL_LINES)
        );
        eprintln!(
            "[msa-harness] pod {n}: {} took {:.1}s",
            step.kind,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Spawns one program of the database container in pod n, as that container runs, with its
    /// PATH.
    fn spawn_step(&mut self, n: usize, step: &Step) -> Result<Tracked> {
        let database = self.pod(n).plan.database();
        let mut command = self.container_exec(n, database, &step.program)?;
        command
            .args(&step.args)
            .envs(database.env.get_key_value("PATH"));
        self.spawn_in(n, step.kind, &mut command)
    }

    /// SIGTERM, up to 30 s to shut down, then SIGKILL. No-op if no server runs.
    pub async fn stop_server(&mut self, n: usize) -> Result<()> {
        self.stop_probes(n, true);
        if let Some(server) = self.pods[n].server.take() {
            server.stop(SERVER_GRACE).await?;
        }
        Ok(())
    }

    /// Waits until pod n's server exits by itself (e.g. the agent shut it down for a re-clone);
    /// its container is then restarted by `start_server`, as the kubelet restarts it.
    pub async fn wait_server_exit(&mut self, n: usize, timeout: Duration) -> Result<ExitStatus> {
        let server = self.pods[n]
            .server
            .as_mut()
            .with_context(|| format!("pod {n} has no server"))?;
        let status = tokio::time::timeout(timeout, server.wait())
            .await
            .with_context(|| format!("pod {n}'s server still runs after {timeout:?}"))??;
        self.stop_probes(n, true);
        self.pods[n].server = None;
        Ok(status)
    }

    /// Restarts with `start_server` (so the template's `exec` runs first, e.g. a re-clone) the
    /// database container of every pod whose server was started and has exited by itself, as the
    /// kubelet restarts an exited container; servers the test stopped or killed are not. The
    /// kubelet's restart backoff (10 s, doubling) is not simulated. Returns the pods restarted.
    pub async fn restart_exited_servers(&mut self) -> Result<Vec<usize>> {
        let mut restarted = Vec::new();
        for n in 0..self.pods.len() {
            let exited = self.pods[n]
                .server
                .as_mut()
                .is_some_and(|server| server.try_exit().is_some());
            if exited {
                self.stop_probes(n, true);
                self.pods[n].server = None;
                self.start_server(n).await?;
                restarted.push(n);
            }
        }
        Ok(restarted)
    }

    /// SIGKILLs the server (a crashed or killed pod, e.g. a donor mid-clone) and returns once
    /// it is gone.
    pub async fn kill_server(&mut self, n: usize) -> Result<()> {
        self.stop_probes(n, true);
        let server = take_process(&mut self.pods[n].server, n, "server")?;
        server.stop(Duration::ZERO).await?;
        Ok(())
    }

    /// The running server's PID (mysqld's or mariadbd's own).
    pub fn server_pid(&self, n: usize) -> Option<u32> {
        live_pid(self.pod(n).server.as_ref())
    }

    /// Starts the template's agent `sidecar` container without waiting for readiness (creating the
    /// pod and installing the agent first if needed).
    pub async fn start_sidecar(&mut self, n: usize) -> Result<()> {
        let sidecar = self.pod(n).plan.agent("sidecar")?.clone();
        self.start_native_sidecar(n, &sidecar).await
    }

    async fn start_native_sidecar(&mut self, n: usize, container: &Resolved) -> Result<()> {
        ensure_stopped(self.pods[n].sidecar.as_mut(), n, "sidecar")?;
        self.stop_probes(n, false);
        self.prepare(n, container).await?;
        let started = Instant::now();
        let sidecar = self.launch(n, container).await?;
        self.pods[n].sidecar = Some(sidecar);
        self.pods[n].sidecar_probes = Some(self.probe(n, container, started)?);
        Ok(())
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL; returns the exit code (None: killed by a signal).
    pub async fn stop_sidecar(&mut self, n: usize) -> Result<Option<i32>> {
        self.stop_probes(n, false);
        let sidecar = take_process(&mut self.pods[n].sidecar, n, "sidecar")?;
        let status = sidecar.stop(AGENT_GRACE).await?;
        Ok(status.and_then(|status| status.code()))
    }

    /// SIGKILLs the sidecar and every process it had spawned (e.g. a mariadb-backup it ran).
    pub async fn kill_sidecar(&mut self, n: usize) -> Result<()> {
        self.stop_probes(n, false);
        let sidecar = take_process(&mut self.pods[n].sidecar, n, "sidecar")?;
        sidecar.stop(Duration::ZERO).await?;
        Ok(())
    }

    /// Pod n's node died with its local volume: its containers stop, and the StatefulSet recreates
    /// the pod (same name and address) on a new, empty claim and new emptyDirs. The next
    /// `start_pod` runs its init containers on them.
    pub async fn lose_volume(&mut self, n: usize) -> Result<()> {
        if self.sidecar_pid(n).is_some() {
            self.stop_sidecar(n).await?;
        }
        self.stop_server(n).await?;
        let ownership = self.template.ownership();
        let paths = &self.pod(n).paths;
        for kind in [VolumeType::ClaimTemplate, VolumeType::EmptyDir] {
            for dir in mapping::pod_volume_dirs(paths, kind) {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        for claim in mapping::pod_volume_dirs(paths, VolumeType::ClaimTemplate) {
            ownership.provision_claim(&claim)?;
        }
        for dir in mapping::pod_volume_dirs(paths, VolumeType::EmptyDir) {
            ownership.make_empty_dir(&dir)?;
        }
        self.template.provision_other_volumes(paths)?;
        self.mount_volumes(n)
    }

    /// Pod n's node dies: its agent and server are SIGKILLed and its TCP connections reset.
    /// Sockets outlive a killed process here, still sending what it had written (through a
    /// `throttle` for seconds); on a dead node, or in a recreated pod's new network namespace,
    /// they do not.
    pub async fn kill_pod(&mut self, n: usize) -> Result<()> {
        if self.sidecar_pid(n).is_some() {
            self.kill_sidecar(n).await?;
        }
        if self.server_pid(n).is_some() {
            self.kill_server(n).await?;
        }
        self.exec_in_pod(n, &["ss", "--kill", "--tcp"]).await?;
        Ok(())
    }

    /// The running sidecar's PID.
    pub fn sidecar_pid(&self, n: usize) -> Option<u32> {
        live_pid(self.pod(n).sidecar.as_ref())
    }

    /// GET `http://<pod ip>:<agent port><path>` from the node namespace, where the kubelet probes
    /// from; the agent's port is the one its sidecar container declares. Errors when no HTTP
    /// answer came (refused, timeout...).
    pub async fn http_get(&self, n: usize, path: &str, bearer: Option<&str>) -> Result<HttpReply> {
        self.http_get_port(n, self.agent_port()?, path, bearer)
            .await
    }

    /// The certificate Secret of a cluster made with `ClusterSpec::tls`.
    pub fn tls(&self) -> Result<&TlsSecret> {
        self.tls
            .as_ref()
            .context("the cluster has no TLS (ClusterSpec::tls)")
    }

    /// Issues a new certificate into the Secret (`TlsSecret::rotate`) and updates every pod's
    /// `tls` volume as the kubelet does; returns its serial.
    pub fn rotate_tls(&mut self) -> Result<String> {
        let serial = self
            .tls
            .as_mut()
            .context("the cluster has no TLS (ClusterSpec::tls)")?
            .rotate()?;
        self.project_tls()?;
        Ok(serial)
    }

    /// The certificate Secret's current data into every pod's `tls` volume.
    fn project_tls(&self) -> Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        self.pods
            .iter()
            .try_for_each(|pod| tls.project(&self.template, &pod.paths))
    }

    /// The port the template's agent sidecar container names `peer` (`k8s/tls`).
    pub fn peer_port(&self) -> Result<u16> {
        self.pod(0).plan.peer_port()
    }

    /// The port the template's agent sidecar container declares.
    pub fn agent_port(&self) -> Result<u16> {
        self.pod(0).plan.agent_port()
    }

    /// The port the template's database container declares (the server's).
    pub fn server_port(&self) -> u16 {
        self.pod(0).plan.server.port
    }

    async fn http_get_port(
        &self,
        n: usize,
        port: u16,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<HttpReply> {
        let url = format!("http://{}:{port}{path}", self.pod_ip(n));
        let body = tempfile::NamedTempFile::new_in(self.root.join("http"))?;
        let mut curl = self.node_command("curl");
        curl.args(["-sS", "--noproxy", "*", "--max-time", "10", "-o"])
            .arg(body.path())
            .args(["-w", "%{http_code}"]);
        if let Some(token) = bearer {
            curl.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        curl.arg(&url);
        let status = cmd::output_text(curl)
            .await
            .with_context(|| format!("GET {url} from the node namespace"))?;
        Ok(HttpReply {
            status: status
                .trim()
                .parse()
                .with_context(|| format!("curl printed status {status:?}"))?,
            body: tokio::fs::read(body.path()).await?,
        })
    }

    /// Polls the readinessProbe the template's database container declares (its httpGet path
    /// and port) every 200 ms until it answers `want`.
    pub async fn wait_readyz(&self, n: usize, want: u16, timeout: Duration) -> Result<HttpReply> {
        let path = self.readiness(n)?.path.clone();
        self.wait_readyz_path(n, &path, want, timeout).await
    }

    /// Polls GET `path` (e.g. "/readyz?lag=1s") on the readinessProbe's port every 200 ms until
    /// it answers `want`.
    pub async fn wait_readyz_path(
        &self,
        n: usize,
        path: &str,
        want: u16,
        timeout: Duration,
    ) -> Result<HttpReply> {
        let port = self.readiness(n)?.port;
        let what = format!("GET {path} on pod {n} port {port} to answer {want}");
        poll_until(&what, timeout, READYZ_INTERVAL, || async {
            Ok(match self.http_get_port(n, port, path, None).await {
                Ok(reply) if reply.status == want => Check::Done(reply),
                Ok(reply) => Check::Pending(format!("{}: {}", reply.status, reply.text())),
                Err(error) => Check::Pending(format!("{error:#}")),
            })
        })
        .await
    }

    fn readiness(&self, n: usize) -> Result<&HttpProbe> {
        self.pod(n)
            .plan
            .readiness()
            .context("the template's database container declares no readinessProbe")
    }

    /// Pod n's server socket.
    pub fn socket(&self, n: usize) -> PathBuf {
        self.pod(n).plan.server.socket()
    }

    /// A root session on pod n's server over its unix socket, with the root password.
    pub async fn sql(&self, n: usize) -> Result<mysql_async::Conn> {
        let password = self.root_password(n)?;
        self.sql_as(n, "root", &password).await
    }

    /// Pod n's root password, as its database container gives it (empty: none).
    pub fn root_password(&self, n: usize) -> Result<String> {
        self.pod(n).plan.server.root_password()
    }

    /// A session of `user` with `password` on pod n's server over its unix socket.
    pub async fn sql_as(&self, n: usize, user: &str, password: &str) -> Result<mysql_async::Conn> {
        let opts = server::socket_opts(&self.pod(n).plan.server.socket(), user, password);
        mysql_async::Conn::new(opts)
            .await
            .with_context(|| format!("connecting to pod {n}'s server as {user}"))
    }

    /// Shapes pod n's egress: Some("8mbit") sets a token bucket on its eth0, None removes it.
    pub async fn throttle(&self, n: usize, rate: Option<&str>) -> Result<()> {
        let ns = self.pod(n).ns.as_str();
        match rate {
            Some(rate) => {
                let tbf = [
                    "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "32kbit",
                    "latency", "400ms",
                ];
                net::qdisc(ns, &tbf).await?;
            }
            None => {
                let current = net::qdisc(ns, &["show", "dev", "eth0", "root"]).await?;
                // Deleting the default qdisc is an error: only remove ours.
                if current.contains("tbf") {
                    net::qdisc(ns, &["del", "dev", "eth0", "root"]).await?;
                }
            }
        }
        Ok(())
    }

    /// Pod n's data volume, as the database container mounts it (the datadir).
    pub fn datadir(&self, n: usize) -> PathBuf {
        self.pod(n).plan.server.datadir.clone()
    }

    pub fn pod_dir(&self, n: usize) -> PathBuf {
        self.pod(n).paths.dir.clone()
    }

    /// Pod n's `tmp` volume (the containers' /tmp).
    pub fn tmp_dir(&self, n: usize) -> PathBuf {
        self.pod(n).paths.tmp()
    }

    /// Records the command line of every process in any pod from now until `finish`, which
    /// returns them by harness pod index.
    pub fn watch_command_lines(&self) -> Result<CommandLineWatch> {
        let netns: Vec<PathBuf> = self
            .pods
            .iter()
            .map(|pod| Path::new("/run/netns").join(&pod.ns))
            .collect();
        CommandLineWatch::start(&netns)
    }

    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// A harness log file of pod n, e.g. "init-1.log", "sidecar-2.log", "mariadbd-1.log"; "" if missing.
    pub fn log_text(&self, n: usize, name: &str) -> String {
        read_lossy(&self.pod(n).paths.logs().join(name))
    }

    /// Pod n's server error log; "" if missing.
    pub fn server_error_log(&self, n: usize) -> String {
        read_lossy(&self.pod(n).paths.error_log())
    }

    /// MariaDB: the bearer token the agents' `/clone` wants.
    pub fn clone_token(&self) -> Result<String> {
        self.agent_secret("MYSQL_STS_CLONE_TOKEN")
    }

    /// The root password the database container's entrypoint sets.
    pub fn admin_password(&self) -> Result<String> {
        self.pod(0).plan.server.root_password()
    }

    pub fn repl_password(&self) -> Result<String> {
        self.agent_secret("MYSQL_STS_REPL_PASSWORD")
    }

    /// MySQL: the password of the CLONE plugin's account.
    pub fn clone_password(&self) -> Result<String> {
        self.agent_secret("MYSQL_STS_CLONE_PASSWORD")
    }

    /// A secret as the agent's sidecar container gets it: from the file `<name>_FILE` points at,
    /// or `<name>` itself.
    fn agent_secret(&self, name: &str) -> Result<String> {
        let env = &self.pod(0).plan.agent("sidecar")?.env;
        match (env.get(&format!("{name}_FILE")), env.get(name)) {
            (Some(file), _) => layout::read_secret(Path::new(file)),
            (None, Some(value)) => Ok(value.clone()),
            (None, None) => {
                bail!("the agent's sidecar container sets neither {name}_FILE nor {name}")
            }
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.spec.version.flavor()
    }

    pub fn version(&self) -> DbVersion {
        self.spec.version
    }

    /// The names the pods have: harness pod n is `naming().hostname(n)`, ordinal
    /// `naming().ordinal(n)`.
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The database image's chroot, if it is one (never written to).
    pub fn chroot(&self) -> Option<&Path> {
        self.chroot.as_deref()
    }

    /// The command of the template's container that runs the agent's `sub` ("install", "init",
    /// "sidecar") in pod n, with the template's env under the harness's mapping; tests may add or
    /// remove env and args before spawning it themselves.
    pub fn agent_command(&self, n: usize, sub: &str) -> Result<Command> {
        self.container_command(n, self.pod(n).plan.agent(sub)?, false)
    }

    /// `kubectl exec <pod n> -c <the container running the agent's sub> -- <its agent> <args>`:
    /// the agent as that container runs it (image, user, env), e.g. `status`, to completion.
    /// Its stdout; an error with its stderr when it exits non-zero.
    pub async fn exec_agent(&self, n: usize, sub: &str, args: &[&str]) -> Result<String> {
        let container = self.pod(n).plan.agent(sub)?;
        let binary = container
            .agent_binary()
            .with_context(|| format!("container {} does not run the agent", container.name))?;
        let mut command = self.container_exec(n, container, binary)?;
        command.args(args).envs(&container.env);
        cmd::output_text(command).await
    }

    /// The command of an agent container, or of a program of the database image, in pod n; with
    /// `check`, an agent's `--check` run.
    fn container_command(&self, n: usize, container: &Resolved, check: bool) -> Result<Command> {
        let program = match &container.program {
            Program::Image(name) => OsStr::new(name),
            _ => container
                .agent_binary()
                .with_context(|| format!("container {} does not run the agent", container.name))?
                .as_os_str(),
        };
        let mut command = self.container_exec(n, container, program)?;
        command.args(container.argv(check)).envs(&container.env);
        Ok(command)
    }

    /// `program` as `container` of pod n runs it: inside the image's chroot when the database
    /// image is one, in the container's filesystem (`rootfs.rs`) for a program of the image run
    /// by name, as the container's user, groups and capabilities. Root until `setpriv`
    /// (chroot-exec and the mounts need root); the PID is `program`'s own.
    fn container_exec(
        &self,
        n: usize,
        container: &Resolved,
        program: impl AsRef<OsStr>,
    ) -> Result<Command> {
        let mut command = match (&container.program, container.image) {
            (Program::Image(_), _) => {
                ensure!(
                    self.chroot.is_none(),
                    "container {}: the harness runs the database image's programs by name only \
                     for the host's MariaDB",
                    container.name
                );
                let mut command = self.pod_command(n, "unshare");
                command
                    .args(["--mount", "--propagation", "private", "--", "sh", "-euc"])
                    .arg(rootfs::mount_script(&container.binds, &self.root)?)
                    .args(["rootfs", "setpriv"]);
                command
            }
            (_, Image::Database) if self.chroot.is_some() => {
                let mut command = self.pod_command(n, self.chroot_exec());
                command.arg("setpriv");
                command
            }
            _ => self.pod_command(n, "setpriv"),
        };
        command
            .args(container.run_as.setpriv_args())
            .arg("--")
            .arg(program);
        Ok(command)
    }

    /// `program` inside pod n (its netns and hostname), with a cleared environment but PATH.
    /// `ip netns exec` and `nsenter` both exec, so the child's PID is `program`'s own.
    pub fn pod_command(&self, n: usize, program: impl AsRef<OsStr>) -> Command {
        let pod = self.pod(n);
        let mut command = Command::new("ip");
        command
            .env_clear()
            .env("PATH", POD_PATH)
            .args(["netns", "exec", &pod.ns, "nsenter"])
            .arg(format!("--uts={}", pod.paths.uts_file().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// `program` in the node namespace, with a cleared environment but PATH.
    pub fn node_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .env_clear()
            .env("PATH", POD_PATH)
            .args(["netns", "exec", &self.id.node_ns()])
            .arg(program);
        command
    }

    /// `program` as root inside the database image's chroot in pod n: `pod_command` running
    /// chroot-exec, so with the pod's network, hostname and DNS. Panics when the image is the host.
    pub fn chroot_command(&self, n: usize, program: impl AsRef<OsStr>) -> Command {
        assert!(
            self.chroot.is_some(),
            "chroot_command: a {:?} cluster has no chroot",
            self.spec.version
        );
        let mut command = self.pod_command(n, self.chroot_exec());
        command.arg(program);
        command
    }

    /// Runs `args` in pod n to completion and returns its stdout (an error on failure).
    pub async fn exec_in_pod(&self, n: usize, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("exec_in_pod needs a program")?;
        let mut command = self.pod_command(n, program);
        command.args(rest);
        cmd::output_text(command).await
    }

    /// Runs `args` as root inside the image's chroot in pod n to completion and returns its
    /// stdout.
    pub async fn exec_in_chroot(&self, n: usize, args: &[&str]) -> Result<String> {
        ensure!(
            self.chroot.is_some(),
            "a {:?} cluster has no chroot",
            self.spec.version
        );
        let chroot_exec = self.chroot_exec();
        let chroot_exec = chroot_exec.to_string_lossy();
        self.exec_in_pod(n, &[&[chroot_exec.as_ref()], args].concat())
            .await
    }

    /// Spawns another process in pod n (build it with `pod_command`) under the harness's tracking:
    /// logs go to `<pod>/logs/<name>-<k>.log` and Drop stops it with the agents. Returns its PID.
    pub fn spawn_in_pod(&mut self, n: usize, name: &str, mut command: Command) -> Result<u32> {
        let helper = self.spawn_in(n, name, &mut command)?;
        let pid = helper.id.pid;
        self.pods[n].helpers.push(helper);
        Ok(pid)
    }

    /// Spawns a process in the node namespace (build it with `node_command`) under the harness's
    /// tracking: it logs to `<root>/logs/<name>.log` and Drop stops it with the agents. Returns
    /// its PID.
    pub fn spawn_on_node(&mut self, name: &str, mut command: Command) -> Result<u32> {
        let log = self.root.join("logs").join(format!("{name}.log"));
        let helper = self.spawn_tracked(format!("node/{name}"), &mut command, &log)?;
        let pid = helper.id.pid;
        self.node_helpers.push(helper);
        Ok(pid)
    }

    /// IPv4 addresses `name` resolves to inside pod `from` (getent, so /etc/hosts, then DNS).
    pub async fn resolve(&self, from: usize, name: &str) -> Result<Vec<Ipv4Addr>> {
        dns::resolve(&self.pod(from).ns, name).await
    }

    pub fn pod_ip(&self, n: usize) -> Ipv4Addr {
        layout::pod_ip(n)
    }

    /// The network namespaces this cluster created.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }

    pub fn pod_ns(&self, n: usize) -> String {
        self.pod(n).ns.clone()
    }

    pub fn node_ns(&self) -> String {
        self.id.node_ns()
    }

    /// Every process the harness has started so far, running or not.
    pub fn started_processes(&self) -> Vec<ProcessInfo> {
        self.ledger.clone()
    }

    /// Keep the root dir after Drop even if the test does not panic.
    pub fn keep_files(&mut self) {
        self.keep_files = true;
    }

    fn pod(&self, n: usize) -> &Pod {
        self.pods
            .get(n)
            .unwrap_or_else(|| panic!("no pod {n}: the cluster holds {} pods", self.pods.len()))
    }

    fn spawn_tracked(
        &mut self,
        name: String,
        command: &mut Command,
        log: &Path,
    ) -> Result<Tracked> {
        let tracked = Tracked::spawn(name, command, log)?;
        self.registry.record_process(tracked.id, &tracked.name);
        self.ledger.push(tracked.info());
        Ok(tracked)
    }

    /// Spawns a process of pod n logging to the next `<kind>-<k>.log`.
    fn spawn_in(&mut self, n: usize, kind: &str, command: &mut Command) -> Result<Tracked> {
        let (k, log) = self
            .pods
            .get_mut(n)
            .with_context(|| format!("no pod {n}"))?
            .next_log(kind);
        self.spawn_tracked(format!("pod{n}/{kind}-{k}"), command, &log)
    }

    /// Stops everything in the kubelet's order: agents, replicas (highest ordinal first), the
    /// primary, then DNS. Blocking.
    fn stop_processes(&mut self) {
        for pod in &mut self.pods {
            drop(pod.server_probes.take());
            drop(pod.sidecar_probes.take());
        }
        let mut agents: Vec<Victim> = Vec::new();
        for pod in &mut self.pods {
            agents.extend(pod.sidecar.as_mut().map(Victim::reaped));
            agents.extend(pod.inits.iter().copied().map(Victim::unreaped));
            agents.extend(pod.helpers.iter_mut().map(Victim::reaped));
        }
        agents.extend(self.node_helpers.iter_mut().map(Victim::reaped));
        stop_group(&mut agents, AGENT_GRACE);
        drop(agents);
        for pod in self.pods.iter_mut().rev() {
            if let Some(server) = pod.server.as_mut() {
                stop_group(&mut [Victim::reaped(server)], SERVER_GRACE);
            }
        }
        if let Some(dnsmasq) = self.dnsmasq.as_mut() {
            stop_group(&mut [Victim::reaped(dnsmasq)], DNS_GRACE);
        }
        // E.g. an install-db whose test future was dropped mid-await.
        let stragglers: Vec<ProcId> = self
            .ledger
            .iter()
            .filter(|process| process.is_alive())
            .map(|process| {
                eprintln!("[msa-harness] killing unfinished {}", process.name);
                process.id
            })
            .collect();
        kill_and_wait(&stragglers);
    }

    fn remove_namespaces(&self) {
        for ns in self.namespaces.iter().rev() {
            for leftover in net::remove_netns(ns) {
                eprintln!("[msa-harness] BUG: {leftover} was still running in netns {ns}");
            }
        }
        for file in &self.uts_files {
            net::remove_uts(file);
        }
    }

    /// Removes the root dir, or keeps it (and says where) for a failed test.
    fn dispose_files(&mut self) {
        let Some(root_dir) = self.root_dir.take() else {
            return;
        };
        let failed = std::thread::panicking() || self.keep_files;
        if !failed && std::env::var_os("MSA_KEEP").is_none() {
            if let Err(error) = root_dir.close() {
                eprintln!("[msa-harness] removing {}: {error}", self.root.display());
            }
            return;
        }
        if failed && std::env::var_os("MSA_KEEP_DATA").is_none() {
            // Volumes are large; the logs are what one reads.
            for pod in &self.pods {
                net::remove_dir_if_present(&pod.paths.data());
            }
        }
        eprintln!(
            "[msa-harness] cluster {}: files kept in {}",
            self.id.prefix(),
            root_dir.keep().display()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_processes();
        self.remove_namespaces();
        self.dispose_files();
        self.registry.remove();
    }
}

/// The process in `slot`, taken out to be stopped.
fn take_process(slot: &mut Option<Tracked>, n: usize, what: &str) -> Result<Tracked> {
    slot.take()
        .with_context(|| format!("pod {n} has no {what}"))
}

fn live_pid(process: Option<&Tracked>) -> Option<u32> {
    process
        .filter(|process| process.id.is_alive())
        .map(|process| process.id.pid)
}

/// A container is started once: refuse while its previous process still runs.
fn ensure_stopped(previous: Option<&mut Tracked>, n: usize, what: &str) -> Result<()> {
    if let Some(process) = previous {
        ensure!(
            process.try_exit().is_some(),
            "pod {n}'s {what} is already running (pid {})",
            process.id.pid
        );
    }
    Ok(())
}
