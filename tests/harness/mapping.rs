//! The harness's only knowledge of its own: what the pod template's images, volumes and
//! downward-API fields stand for on this machine, and the few settings it adds for tests.
//! Everything else a pod runs (its containers in order, their command, args, env, ports, volume
//! mounts and probes) comes from the built manifest, so that a mistake in k8s/ fails the
//! tests as it would fail a cluster.
//!
//! | in the template | on this machine |
//! | --- | --- |
//! | image `…/mysql-sts-agent:*` | its entrypoint is the agent binary cargo built (`ClusterSpec::agent_bin`) |
//! | image `mariadb:*` (MariaDB) or `mysql:*` (MySQL) | "the database image", by `DbVersion`: MariaDB 10.11 is the host's tools; MariaDB 11.8 and MySQL 9.7 are chroots (`chroot.rs`), and every container of that image runs inside it (read-only, the pod's DNS files, /proc and /tmp bound in); for MySQL `<pod>/bin` first on PATH, whose `mysqld` is the chroot's with the pod's my.cnf. Its entrypoint is the harness's own server start (`server.rs`) |
//! | pod and container `securityContext` | `runAsUser`, `runAsGroup`, `fsGroup` + `supplementalGroups`, `allowPrivilegeEscalation: false` (no_new_privs), `capabilities` (root: the runtime's default set minus drop plus add; any other user: none), through `setpriv` (`security.rs`); `runAsNonRoot` without a non-zero `runAsUser` refuses the container; `readOnlyRootFilesystem`: a chroot image's root is read-only |
//! | volume `data` (volumeClaimTemplate) | `<pod>/data`, owned as the `VolumeLayout` says, fsGroup re-applied at each pod start per `fsGroupChangePolicy` (`volumes.rs`) |
//! | volume `conf` (emptyDir) | `<pod>/conf.d` (each emptyDir: 0777 root's, then fsGroup) |
//! | volume `agent-bin` (emptyDir) | `<pod>/agent-bin` |
//! | volume `tmp` (emptyDir) | `<pod>/tmp` |
//! | volume `run` (emptyDir) | `<pod>/run` |
//! | volume `secrets` (Secret) | `<root>/secrets`: a file per key of the manifest's Secret, with values generated per cluster (or the scenario's, `ClusterSpec::secrets`), written as the kubelet writes a Secret volume (`..data` link to a generation dir, each key a link through it), root's with `defaultMode` and group fsGroup |
//! | volume `tls` (Secret, `k8s/tls`) | `<pod>/tls`: `tls.crt`, `tls.key` and `ca.crt` as cert-manager's `Certificate` of `k8s/tls/cert-manager` would issue them for the cluster's names, from the harness's CA (`tls.rs`), written like `secrets`; a rotation swaps `..data` in every pod |
//! | fieldRef `metadata.namespace`, `metadata.name` | the StatefulSet's namespace in the build (`default` without one, as `kubectl apply` does), which the harness's DNS serves; the pod's name `<statefulset>-<ordinal>` |
//! | probes (httpGet, tcpSocket) | run by the harness's kubelet (`kubelet.rs`) from the node namespace to the pod's IP |
//! | exec probes | the command in the container's filesystem (`rootfs.rs`), namespaces and user, killed at timeoutSeconds |
//! | a database image's container with a command by name (`bash -c ...`) | that program of the image (the host's MariaDB 10.11 only), its paths as the container sees them through real mounts (`rootfs.rs`) |
//! | any other emptyDir, configMap volume | `<pod>/volumes/<name>`; a configMap's keys as files, written as a Secret volume |
//! | env `MARIADB_ALLOW_EMPTY_ROOT_PASSWORD` of the database container | root@localhost and root@'%' without a password, as the mariadb image's entrypoint makes them |
//!
//! Paths: an absolute path in a container's command, args or env values (literal, or from a
//! ConfigMap) of the agent or the harness's server is rewritten through that container's own
//! volume mounts, the longest mount path that
//! holds it winning. A path under none of them is an error, so no test ever touches the host's
//! /var/lib/mysql or /etc/mysql, and a path the container cannot see fails as it would in a pod.
//! The environment is the template's and nothing else, plus PATH (by image) and, for the agent,
//! `HARNESS_ENV` and `TEST_OVERRIDES`.
//!
//! The database container: the harness starts the server its own way (a flavor's my.cnf,
//! initializing a fresh volume, the root bootstrap), with the host dirs of the volumes the
//! container mounts where the images keep data (/var/lib/mysql), config fragments
//! (/etc/mysql/conf.d), the socket (/var/run/mysqld) and scratch files (/tmp; the last two the
//! container's own dirs where it mounts no volume), the containerPort it declares, and the root
//! password its MYSQL_ROOT_PASSWORD_FILE points at (or none, by MARIADB_ALLOW_EMPTY_ROOT_PASSWORD).
//! It runs as the container's user; as root it does what the images' entrypoints do: the server
//! runs as the image's `mysql` (`user=` in my.cnf), to whom whatever in the datadir is not its
//! own is given (`find $DATADIR ! -user mysql -exec chown`).
//!
//! Before an agent container runs, its `--check` must pass and what it resolves must agree with
//! the pod (its FQDN and role) and the database container (`PodPlan::agrees`): a setting the
//! template forgot would otherwise default to a path of this machine or another pod's name.
//!
//! Not simulated: seccompProfile, SELinux, readOnlyRootFilesystem for the agent image and the
//! host's MariaDB (only a chroot image's root is read-only), resources, grpc probes
//! (refused), and the kubelet's restarts: a startup or liveness probe past its failureThreshold
//! is reported (and fails `Cluster::run_scenario`), the container is left as it is, so that
//! scenarios that stop and kill processes stay deterministic.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::layout::{self, Naming, PodPaths};
use super::manifest::{
    Container, ContainerPort, EnvVarSource, Manifest, PodSecurityContext, Probe, SecretVolume,
};
use super::rootfs::{self, Binds};
use super::security::RunAs;
use super::server::{Flavor, RootPassword, ServerSetup};
use super::volumes::{Ownership, VolumeLayout};

/// PATH of every process in a pod (the environment is cleared: no proxies, no RUST_LOG leak in).
pub const POD_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Added to every agent container: backtraces, and the agent's debug log.
pub const HARNESS_ENV: &[(&str, &str)] = &[
    ("RUST_BACKTRACE", "1"),
    ("MYSQL_STS_LOG", "info,mysql_sts_agent=debug"),
];

/// Test-only settings on top of the template's env, by agent subcommand: they shorten waits that
/// the scenarios would otherwise sit through.
pub const TEST_OVERRIDES: &[(&str, &str, &str)] = &[
    ("init", "MYSQL_STS_CLONE_DEADLINE", "60s"),
    // A test kills donors, and MySQL's plugin waits minutes for one.
    ("init", "MYSQL_STS_CLONE_STALL_TIMEOUT", "10s"),
    ("exec", "MYSQL_STS_CLONE_DEADLINE", "60s"),
    ("exec", "MYSQL_STS_CLONE_STALL_TIMEOUT", "10s"),
];

/// The line `mysql-sts-agent --check ...` prints when the configuration is valid.
pub const CHECK_VALID: &str = "mysql-sts-agent: configuration is valid: ";

/// What a `--check` line must agree with, by subcommand: the labels of the values it prints.
const AGREES: &[(&str, &[&str])] = &[
    ("init", &["datadir ", "conf dir "]),
    ("exec", &["datadir "]),
    ("sidecar", &["datadir ", "listens on ", "server "]),
];

/// `mysql-sts-agent install DIR` puts the agent at `DIR/<this>`.
const INSTALLED_NAME: &str = "mysql-sts-agent";
/// The agent image's repository (its last path segment) and entrypoint.
const AGENT_IMAGE: &str = "mysql-sts-agent";

/// Where the official database images keep what the harness's server needs: it uses the host
/// dirs of the volumes the database container mounts there.
const IMAGE_DATADIR: &str = "/var/lib/mysql";
/// The official images' entrypoint, on their PATH.
const IMAGE_ENTRYPOINT: &str = "docker-entrypoint.sh";
const IMAGE_CONF_DIR: &str = "/etc/mysql/conf.d";
const IMAGE_RUN_DIR: &str = "/var/run/mysqld";
const IMAGE_TMP_DIR: &str = "/tmp";
/// The only env of the database container that the harness's server honours (both images'
/// entrypoints read them).
const ROOT_PASSWORD_FILE_ENV: &str = "MYSQL_ROOT_PASSWORD_FILE";
const ROOT_PASSWORD_ENV: &str = "MYSQL_ROOT_PASSWORD";
/// The mariadb image's switch for a root without a password (any non-empty value).
const EMPTY_ROOT_PASSWORD_ENV: &str = "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD";

/// What an image stands for here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    Agent,
    Database,
}

impl Image {
    pub fn of(reference: &str, flavor: Flavor) -> Result<Image> {
        let repository = reference.split('@').next().unwrap_or(reference);
        let name = repository.rsplit('/').next().unwrap_or(repository);
        let name = name.split(':').next().unwrap_or(name);
        let database = match flavor {
            Flavor::MariaDb => "mariadb",
            Flavor::MySql => "mysql",
        };
        if name == AGENT_IMAGE {
            Ok(Image::Agent)
        } else if name == database {
            Ok(Image::Database)
        } else {
            bail!(
                "image {reference} has no mapping: the harness maps `{AGENT_IMAGE}` and, for \
                 {flavor:?}, `{database}` images"
            )
        }
    }

    fn path(self, flavor: Flavor, pod: &PodPaths) -> String {
        match (self, flavor) {
            (Image::Database, Flavor::MySql) => format!("{}:{POD_PATH}", pod.bin().display()),
            _ => POD_PATH.to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeType {
    ClaimTemplate,
    EmptyDir,
    Secret,
    ConfigMap,
}

#[derive(Clone, Copy)]
enum HostDir {
    Pod(fn(&PodPaths) -> PathBuf),
    /// The cluster's one secrets dir: every pod mounts the same Secret.
    Secrets,
}

/// The Secret volume of the agent's passwords and token, and the one of the TLS certificate
/// (`k8s/tls`).
pub const SECRETS_VOLUME: &str = "secrets";
pub const TLS_VOLUME: &str = "tls";

/// The names of the agent's ports: the one the PodMonitor scrapes, and the peer channel's over
/// TLS (`k8s/tls`).
const AGENT_PORT: &str = "agent";
const PEER_PORT: &str = "peer";

/// Volume name, the type the template must give it, and the host dir that stands for it.
const VOLUMES: [(&str, VolumeType, HostDir); 7] = [
    (
        "data",
        VolumeType::ClaimTemplate,
        HostDir::Pod(PodPaths::data),
    ),
    ("conf", VolumeType::EmptyDir, HostDir::Pod(PodPaths::conf_d)),
    (
        "agent-bin",
        VolumeType::EmptyDir,
        HostDir::Pod(PodPaths::agent_bin),
    ),
    ("tmp", VolumeType::EmptyDir, HostDir::Pod(PodPaths::tmp)),
    ("run", VolumeType::EmptyDir, HostDir::Pod(PodPaths::run)),
    (SECRETS_VOLUME, VolumeType::Secret, HostDir::Secrets),
    (TLS_VOLUME, VolumeType::Secret, HostDir::Pod(PodPaths::tls)),
];

/// The host dirs of a pod's own volumes of type `kind` (the Secret is the cluster's).
pub fn pod_volume_dirs(pod: &PodPaths, kind: VolumeType) -> Vec<PathBuf> {
    VOLUMES
        .iter()
        .filter_map(|(_, volume_type, host)| match host {
            HostDir::Pod(dir) if *volume_type == kind => Some(dir(pod)),
            _ => None,
        })
        .collect()
}

/// The host dir of an emptyDir or configMap volume that `VOLUMES` does not name.
fn other_volume_dir(pod: &PodPaths, name: &str) -> PathBuf {
    pod.dir.join("volumes").join(name)
}

/// How the kubelet runs a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An init container: runs to completion, in order.
    Init,
    /// An init container with restartPolicy Always: started in order and left running.
    Sidecar,
    /// One of `containers`.
    Main,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The agent image's entrypoint: the binary cargo built.
    AgentImage(PathBuf),
    /// The copy of the agent that the install container put into a volume.
    InstalledAgent(PathBuf),
    /// The database image's entrypoint: the harness starts the server its own way.
    Server,
    /// The installed agent's `exec`, which then runs the image's entrypoint in its place: the
    /// harness runs the agent's part as the template says (with `true` for the entrypoint),
    /// then starts the server its own way.
    WrappedServer(PathBuf),
    /// A program of the database image named by the command (e.g. `bash -c SCRIPT`), run as it
    /// is in the container's filesystem (`rootfs.rs`): its paths need no mapping.
    Image(String),
}

/// An httpGet probe's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub path: String,
    pub port: u16,
}

/// What a probe does: against the pod's IP, or a command in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    Http(HttpProbe),
    Tcp(u16),
    /// The template's command; the cluster turns it into the command line that runs it in the
    /// container (`Cluster::probe`).
    Exec(Vec<String>),
}

/// One probe of a container with the kubelet's defaults filled in.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeSpec {
    /// The longest the probe lets a container take before it gives up on it: the startup
    /// probe's allowance.
    pub fn allowance(&self) -> Duration {
        self.initial_delay + self.period * self.failure_threshold
    }
}

/// A container's probes.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    pub startup: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
}

/// One container of the template, as it runs in one pod here.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub role: Role,
    pub image: Image,
    pub program: Program,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<ContainerPort>,
    pub probes: Probes,
    /// Its securityContext merged over the pod's.
    pub run_as: RunAs,
    /// Its filesystem, for programs of the database image run by name: its volume mounts and its
    /// own image dirs (`rootfs.rs`), which lie under `own_dir`.
    pub binds: Binds,
    pub own_dir: PathBuf,
}

impl Resolved {
    /// Whether this is the database container (its server, wrapped by the agent or not).
    pub fn is_server(&self) -> bool {
        matches!(self.program, Program::Server | Program::WrappedServer(_))
    }

    /// The agent binary this container runs, if it runs the agent.
    pub fn agent_binary(&self) -> Option<&Path> {
        match &self.program {
            Program::AgentImage(path)
            | Program::InstalledAgent(path)
            | Program::WrappedServer(path) => Some(path),
            Program::Server | Program::Image(_) => None,
        }
    }

    /// The agent subcommand ("install", "init", "sidecar") of a container that runs the agent.
    pub fn subcommand(&self) -> Option<&str> {
        self.agent_binary()?;
        self.args.first().map(String::as_str)
    }

    /// Names its log files: the agent's subcommand, else the container's name.
    pub fn kind(&self) -> &str {
        self.subcommand().unwrap_or(&self.name)
    }

    /// Its args, after `--check` when `check`: the agent then validates the configuration it
    /// would run with and exits. A wrapped server's entrypoint becomes `true`: the harness
    /// starts the server itself once the agent's part succeeded.
    pub fn argv(&self, check: bool) -> Vec<String> {
        let args = match self.program {
            Program::WrappedServer(_) => self
                .args
                .iter()
                .take_while(|arg| *arg != "--")
                .cloned()
                .chain(["--".to_owned(), "true".to_owned()])
                .collect(),
            _ => self.args.clone(),
        };
        check
            .then(|| "--check".to_owned())
            .into_iter()
            .chain(args)
            .collect()
    }
}

/// Pod n as the harness runs it.
#[derive(Clone, Debug)]
pub struct PodPlan {
    /// Init containers, then containers, in template order.
    pub containers: Vec<Resolved>,
    pub server: ServerSetup,
    /// The pod's name and FQDN, and whether it is the first ordinal (the primary).
    pub hostname: String,
    pub fqdn: String,
    pub primary: bool,
}

impl PodPlan {
    /// The container that runs the agent's `subcommand`.
    pub fn agent(&self, subcommand: &str) -> Result<&Resolved> {
        self.containers
            .iter()
            .find(|container| container.subcommand() == Some(subcommand))
            .with_context(|| format!("no container of the template runs the agent's {subcommand}"))
    }

    /// The target of the database container's readiness probe, if it is an httpGet.
    pub fn readiness(&self) -> Option<&HttpProbe> {
        match &self.database().probes.readiness.as_ref()?.action {
            ProbeAction::Http(http) => Some(http),
            ProbeAction::Tcp(_) | ProbeAction::Exec(_) => None,
        }
    }

    pub fn database(&self) -> &Resolved {
        self.containers
            .iter()
            .find(|container| container.is_server())
            .expect("a plan has its database container")
    }

    /// The port the agent's sidecar container names `agent`: where /status and the probes'
    /// endpoints are served (and the peer channel without TLS).
    pub fn agent_port(&self) -> Result<u16> {
        self.sidecar_port(AGENT_PORT)
    }

    /// The port the agent's sidecar container names `peer`: the peer channel over TLS.
    pub fn peer_port(&self) -> Result<u16> {
        self.sidecar_port(PEER_PORT)
    }

    fn sidecar_port(&self, name: &str) -> Result<u16> {
        let sidecar = self.agent("sidecar")?;
        sidecar
            .ports
            .iter()
            .find(|port| port.name.as_deref() == Some(name))
            .map(|port| port.container_port)
            .with_context(|| {
                format!(
                    "container {} declares no port named {name}: {:?}",
                    sidecar.name, sidecar.ports
                )
            })
    }

    /// What `container`'s `--check` printed (after `CHECK_VALID`) must agree with the pod and the
    /// database container: the pod's FQDN and role, the same datadir and conf dir, its port,
    /// and the port the agent's container declares. It catches a setting the template forgot,
    /// which the agent would default to a path of this machine (/var/lib/mysql,
    /// /etc/mysql/conf.d) or to another pod's name.
    pub fn agrees(&self, container: &Resolved, line: &str) -> Result<()> {
        if container.subcommand().is_some_and(|sub| sub != "install") {
            let identity = format!("{} ({},", self.hostname, self.fqdn);
            let role = if self.primary { "primary" } else { "replica" };
            ensure!(
                line.contains(&identity) && line.contains(&format!(", {role},")),
                "container {}: the agent does not resolve the pod's {} as the {role}",
                container.name,
                self.fqdn
            );
        }
        let labels = AGREES
            .iter()
            .find(|(sub, _)| Some(*sub) == container.subcommand())
            .map_or(&[][..], |(_, labels)| labels);
        for label in labels {
            let value = check_field(line, label)?;
            let (want, have) = match *label {
                "datadir " => (self.server.datadir.display().to_string(), value.to_owned()),
                "conf dir " => (self.server.conf_dir.display().to_string(), value.to_owned()),
                "server " => (self.server.port.to_string(), port_of(value)?.to_string()),
                _ => (self.agent_port()?.to_string(), port_of(value)?.to_string()),
            };
            ensure!(
                want == have,
                "container {}: the agent resolves {label}{value}, the pod has {want}",
                container.name
            );
        }
        Ok(())
    }
}

/// A database container that runs the agent must run its `exec` and, after `--`, the image's
/// entrypoint with the flavor's server: what the harness then starts its own way.
fn check_wrapped_entrypoint(words: &[&String], flavor: Flavor) -> Result<()> {
    let server = match flavor {
        Flavor::MariaDb => "mariadbd",
        Flavor::MySql => "mysqld",
    };
    match words {
        [exec, dashes, entrypoint, command]
            if *exec == "exec"
                && *dashes == "--"
                && *entrypoint == IMAGE_ENTRYPOINT
                && *command == server =>
        {
            Ok(())
        }
        _ => bail!(
            "the database container runs the agent with {words:?}: the harness simulates \
             `exec -- {IMAGE_ENTRYPOINT} {server}` only"
        ),
    }
}

/// The value after `label` in a `--check` line, e.g. "datadir " -> the datadir.
pub fn check_field<'a>(line: &'a str, label: &str) -> Result<&'a str> {
    let (_, rest) = line
        .split_once(label)
        .with_context(|| format!("no {label:?} in {line:?}"))?;
    Ok(rest.split([',', ' ', ')']).next().unwrap_or(rest))
}

/// The port of "host:port".
pub fn port_of(address: &str) -> Result<u16> {
    let (_, port) = address
        .rsplit_once(':')
        .with_context(|| format!("no port in {address}"))?;
    Ok(port.parse()?)
}

/// The manifest of one flavor, with this cluster's paths, names and secret values.
pub struct Template {
    pub manifest: Arc<Manifest>,
    naming: Naming,
    flavor: Flavor,
    agent_bin: PathBuf,
    secrets_dir: PathBuf,
    /// The Secret the `secrets` volume mounts, with this cluster's values.
    secret: Option<(String, BTreeMap<String, String>)>,
    layout: VolumeLayout,
}

impl Template {
    /// `secrets_dir` is where `write_secrets` puts the Secret's files; `cluster_domain` is the
    /// DNS domain of the cluster the pods run in.
    pub fn new(
        manifest: Arc<Manifest>,
        flavor: Flavor,
        agent_bin: PathBuf,
        secrets_dir: PathBuf,
        secret_len: usize,
        cluster_domain: &str,
    ) -> Result<Template> {
        let secret = match secret_volume(&manifest, SECRETS_VOLUME) {
            None => None,
            Some(volume) => {
                let name = volume.secret_name.clone();
                let secret = manifest.secret(&name).with_context(|| {
                    format!(
                        "overlay {}: no Secret {name} in the build",
                        manifest.overlay
                    )
                })?;
                let values = secret
                    .keys()
                    .into_iter()
                    .map(|key| Ok((key, layout::random_secret(secret_len)?)))
                    .collect::<Result<_>>()?;
                Some((name, values))
            }
        };
        Ok(Template {
            naming: manifest.naming(cluster_domain),
            manifest,
            flavor,
            agent_bin,
            secrets_dir,
            secret,
            layout: VolumeLayout::default(),
        })
    }

    /// The data volume as `layout` provisions it; `RootTemplate` also removes every
    /// securityContext from the template.
    pub fn with_layout(mut self, layout: VolumeLayout) -> Template {
        self.layout = layout;
        self
    }

    /// `values` (by key) in place of the random values of the mounted Secret, as a user's own
    /// Secret would hold them; a key the Secret does not have is an error.
    pub fn with_secret_values(mut self, values: &BTreeMap<String, String>) -> Result<Template> {
        let (name, secret) = self
            .secret
            .as_mut()
            .context("the template mounts no Secret to give values to")?;
        for (key, value) in values {
            let slot = secret
                .get_mut(key)
                .with_context(|| format!("Secret {name} has no key {key}"))?;
            slot.clone_from(value);
        }
        Ok(self)
    }

    /// The pod's securityContext, unless the layout removed it.
    fn pod_security(&self) -> Option<&PodSecurityContext> {
        let security = self.manifest.pod_spec().security_context.as_ref();
        security.filter(|_| self.layout != VolumeLayout::RootTemplate)
    }

    /// What the kubelet applies to the pods' volumes.
    pub fn ownership(&self) -> Ownership {
        let security = self.pod_security().cloned().unwrap_or_default();
        Ownership {
            layout: self.layout,
            fs_group: security.fs_group,
            always: security.fs_group_change_policy.as_deref() != Some("OnRootMismatch"),
            pod_user: (
                security.run_as_user.unwrap_or(0),
                security.run_as_group.unwrap_or(0),
            ),
        }
    }

    /// Pod volumes that `VOLUMES` does not name, as the kubelet makes them: an emptyDir, or a
    /// configMap's keys as files, written as a Secret volume is (0644, the kubelet's default).
    pub fn provision_other_volumes(&self, pod: &PodPaths) -> Result<()> {
        let ownership = self.ownership();
        let others = self.manifest.pod_spec().volumes.iter();
        for volume in others.filter(|volume| VOLUMES.iter().all(|(name, ..)| *name != volume.name))
        {
            let dir = other_volume_dir(pod, &volume.name);
            match &volume.config_map {
                None => ownership.make_empty_dir(&dir)?,
                Some(source) => {
                    ensure!(
                        source.other.is_empty(),
                        "configMap volume {}: {:?} not simulated (every key is mounted)",
                        volume.name,
                        source.other.keys().collect::<Vec<_>>()
                    );
                    let map = self.manifest.config_map(&source.name).with_context(|| {
                        format!(
                            "volume {}: no ConfigMap {} in the build",
                            volume.name, source.name
                        )
                    })?;
                    ownership.project_secret(&dir, &map.data, 0o644)?;
                }
            }
        }
        Ok(())
    }

    /// The `secrets` volume's files, one per key of the mounted Secret, as the kubelet
    /// projects it (`Ownership::project_secret`).
    pub fn write_secrets(&self) -> Result<()> {
        let values = self.secret.as_ref().map(|(_, values)| values);
        self.project_secret(
            SECRETS_VOLUME,
            &self.secrets_dir,
            values.unwrap_or(&BTreeMap::new()),
        )
    }

    /// `data` projected into `dir` as the kubelet projects the Secret of volume `volume`: with
    /// its defaultMode (Kubernetes' default 0644) and the pod's fsGroup.
    pub fn project_secret(
        &self,
        volume: &str,
        dir: &Path,
        data: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mode = secret_volume(&self.manifest, volume)
            .and_then(|secret| secret.default_mode)
            .unwrap_or(0o644);
        self.ownership().project_secret(dir, data, mode)
    }

    /// The Secret that volume `volume` mounts, if the template declares it as a Secret volume.
    pub fn secret_name(&self, volume: &str) -> Option<&str> {
        secret_volume(&self.manifest, volume).map(|secret| secret.secret_name.as_str())
    }

    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// Every container of pod n resolved, or the first thing the harness cannot map.
    pub fn plan(&self, pod: &PodPaths, n: usize) -> Result<PodPlan> {
        let resolver = Resolver {
            template: self,
            pod,
            n,
            pod_name: self.naming.hostname(n),
        };
        resolver.plan()
    }
}

fn secret_volume<'a>(manifest: &'a Manifest, name: &str) -> Option<&'a SecretVolume> {
    let volumes = &manifest.pod_spec().volumes;
    volumes
        .iter()
        .find(|volume| volume.name == name)?
        .secret
        .as_ref()
}

struct Resolver<'a> {
    template: &'a Template,
    pod: &'a PodPaths,
    /// The harness's pod index.
    n: usize,
    pod_name: String,
}

/// A container's mounts: (container path, host path).
type Mounts = Binds;

impl Resolver<'_> {
    fn plan(&self) -> Result<PodPlan> {
        let spec = self.template.manifest.pod_spec();
        let installed = self.installed_agent()?;
        let roles = spec
            .init_containers
            .iter()
            .map(|container| match container.restart_policy.as_deref() {
                Some("Always") => Ok((container, Role::Sidecar)),
                None => Ok((container, Role::Init)),
                Some(other) => bail!(
                    "init container {}: restartPolicy {other} is not simulated",
                    container.name
                ),
            })
            .chain(spec.containers.iter().map(|c| Ok((c, Role::Main))));
        let mut containers = Vec::new();
        let mut server = None;
        for entry in roles {
            let (container, role) = entry?;
            let resolved = self
                .container(container, role, installed.as_deref())
                .with_context(|| format!("container {}", container.name))?;
            match (role, &resolved.program) {
                (Role::Main, Program::Server | Program::WrappedServer(_)) if server.is_none() => {
                    server = Some(
                        self.server(container, &resolved)
                            .with_context(|| format!("database container {}", container.name))?,
                    );
                }
                (
                    Role::Init | Role::Sidecar,
                    Program::AgentImage(_) | Program::InstalledAgent(_),
                )
                | (Role::Init | Role::Main, Program::Image(_)) => {}
                _ => bail!(
                    "container {} ({role:?}, {:?}): the harness runs the agent in init containers \
                     and native sidecars, the database image's programs in init and main \
                     containers, and one database server as the main container",
                    container.name,
                    resolved.program
                ),
            }
            containers.push(resolved);
        }
        let server = server.context("no main container runs the database image's entrypoint")?;
        let sidecars = containers
            .iter()
            .filter(|c| c.role == Role::Sidecar)
            .count();
        ensure!(
            sidecars <= 1,
            "{sidecars} native sidecars: the harness runs one, the agent's"
        );
        let naming = &self.template.naming;
        Ok(PodPlan {
            containers,
            server,
            hostname: self.pod_name.clone(),
            fqdn: naming.pod_fqdn(self.n),
            primary: self.n == 0,
        })
    }

    /// Where the install container puts the agent: `install DIR` copies it to DIR/mysql-sts-agent.
    fn installed_agent(&self) -> Result<Option<PathBuf>> {
        let spec = self.template.manifest.pod_spec();
        for container in &spec.init_containers {
            let image = Image::of(&container.image, self.template.flavor)?;
            if image != Image::Agent || !container.command.is_empty() {
                continue;
            }
            if let [install, dir, ..] = container.args.as_slice()
                && install == "install"
            {
                let mounts = self.mounts(container)?;
                let dir = map_path(&mounts, dir)
                    .with_context(|| format!("container {}: its install dir", container.name))?;
                return Ok(Some(dir.join(INSTALLED_NAME)));
            }
        }
        Ok(None)
    }

    fn container(
        &self,
        container: &Container,
        role: Role,
        installed: Option<&Path>,
    ) -> Result<Resolved> {
        let flavor = self.template.flavor;
        let image = Image::of(&container.image, flavor)?;
        ensure!(
            container.working_dir.is_none(),
            "workingDir is not simulated"
        );
        let mounts = self.mounts(container)?;
        let (program, leading_args) = match (image, container.command.split_first()) {
            (Image::Agent, None) => (
                Program::AgentImage(self.template.agent_bin.clone()),
                &[][..],
            ),
            (Image::Agent, Some((command, rest))) if command == AGENT_IMAGE => {
                (Program::AgentImage(self.template.agent_bin.clone()), rest)
            }
            (Image::Database, None) => (Program::Server, &[][..]),
            (Image::Database, Some((command, rest))) if !command.starts_with('/') => {
                (Program::Image(command.clone()), rest)
            }
            (_, Some((command, rest))) => {
                ensure!(
                    command.starts_with('/'),
                    "command {command} has no mapping: the harness runs the agent image's \
                     entrypoint, the installed agent, and the database image's entrypoint"
                );
                let host = map_path(&mounts, command)?;
                ensure!(
                    Some(host.as_path()) == installed,
                    "command {command} ({}) is not the agent the install container installs ({})",
                    host.display(),
                    installed.map_or("none".into(), |path| path.display().to_string())
                );
                if role == Role::Main && image == Image::Database {
                    let words: Vec<&String> = rest.iter().chain(&container.args).collect();
                    check_wrapped_entrypoint(&words, flavor)?;
                    (Program::WrappedServer(host), rest)
                } else {
                    (Program::InstalledAgent(host), rest)
                }
            }
        };
        let words = leading_args.iter().chain(&container.args);
        let args = match program {
            Program::Image(_) => words.cloned().collect(),
            _ => words
                .map(|arg| map_word(&mounts, arg))
                .collect::<Result<Vec<_>>>()?,
        };
        if program == Program::Server {
            ensure!(
                args.is_empty(),
                "args {args:?}: the harness starts the server its own way"
            );
        }
        let mut env = self.env(container, &mounts, &program)?;
        ensure!(
            !env.contains_key("PATH"),
            "the template sets PATH: the harness sets it by image"
        );
        env.insert("PATH".into(), image.path(flavor, self.pod));
        if program != Program::Server {
            for (name, value) in HARNESS_ENV {
                env.insert((*name).into(), (*value).into());
            }
            let subcommand = args.first().map(String::as_str);
            for (_, name, value) in TEST_OVERRIDES
                .iter()
                .filter(|(sub, ..)| Some(*sub) == subcommand)
            {
                env.insert((*name).into(), (*value).into());
            }
        }
        let run_as = if self.template.layout == VolumeLayout::RootTemplate {
            RunAs::runtime_default()
        } else {
            let pod = self.template.pod_security();
            RunAs::resolve(pod, container.security_context.as_ref()).context("securityContext")?
        };
        let probe = |kind: &str, probe: &Option<Probe>| {
            probe
                .as_ref()
                .map(|probe| probe_spec(container, probe, kind != "readinessProbe"))
                .transpose()
                .with_context(|| kind.to_owned())
        };
        let probes = Probes {
            startup: probe("startupProbe", &container.startup_probe)?,
            readiness: probe("readinessProbe", &container.readiness_probe)?,
            liveness: probe("livenessProbe", &container.liveness_probe)?,
        };
        let own_dir = self.own_dir(&container.name);
        let own = rootfs::own_dirs(&mounts, &own_dir);
        Ok(Resolved {
            name: container.name.clone(),
            role,
            image,
            program,
            args,
            env,
            ports: container.ports.clone(),
            probes,
            run_as,
            binds: mounts.into_iter().chain(own).collect(),
            own_dir,
        })
    }

    /// The template's env: envFrom first, then env (later entries win, as in Kubernetes).
    /// The host dir of a container's own image dirs (`rootfs::own_dirs`).
    fn own_dir(&self, container: &str) -> PathBuf {
        self.pod.dir.join("containers").join(container)
    }

    /// The template's env; its paths are mapped, unless the program sees the container's own
    /// filesystem.
    fn env(
        &self,
        container: &Container,
        mounts: &Mounts,
        program: &Program,
    ) -> Result<BTreeMap<String, String>> {
        let map_word = |mounts: &Mounts, word: &str| match program {
            Program::Image(_) => Ok(word.to_owned()),
            _ => map_word(mounts, word),
        };
        let manifest = &self.template.manifest;
        let mut env = BTreeMap::new();
        for source in &container.env_from {
            let prefix = source.prefix.as_deref().unwrap_or("");
            let entries: Vec<(String, String)> = match (&source.config_map_ref, &source.secret_ref)
            {
                (Some(reference), None) => match manifest.config_map(&reference.name) {
                    Some(map) => map
                        .data
                        .iter()
                        .map(|(key, value)| {
                            let mapped = map_word(mounts, value)
                                .with_context(|| format!("{key}={value}"))?;
                            Ok((key.clone(), mapped))
                        })
                        .collect::<Result<_>>()
                        .with_context(|| format!("envFrom ConfigMap {}", reference.name))?,
                    None if reference.optional => Vec::new(),
                    None => bail!(
                        "envFrom: no ConfigMap named {} in the build",
                        reference.name
                    ),
                },
                (None, Some(reference)) => self
                    .secret_values(&reference.name)?
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
                _ => bail!("an envFrom entry the harness does not understand: {source:?}"),
            };
            for (key, value) in entries {
                env.insert(format!("{prefix}{key}"), value);
            }
        }
        for var in &container.env {
            let value = match (&var.value, &var.value_from) {
                (Some(value), None) => map_word(mounts, value),
                (None, Some(source)) => self.value_from(source),
                (None, None) => Ok(String::new()),
                (Some(_), Some(_)) => bail!("env {}: both value and valueFrom", var.name),
            }
            .with_context(|| format!("env {}", var.name))?;
            env.insert(var.name.clone(), value);
        }
        Ok(env)
    }

    fn value_from(&self, source: &EnvVarSource) -> Result<String> {
        let manifest = &self.template.manifest;
        ensure!(
            source.other.is_empty(),
            "valueFrom {:?} has no mapping: the harness maps fieldRef, secretKeyRef and \
             configMapKeyRef",
            source.other.keys().collect::<Vec<_>>()
        );
        if let Some(field) = &source.field_ref {
            return match field.field_path.as_str() {
                "metadata.namespace" => Ok(self.template.naming.namespace.clone()),
                "metadata.name" => Ok(self.pod_name.clone()),
                other => bail!("fieldRef {other} has no mapping"),
            };
        }
        if let Some(key) = &source.secret_key_ref {
            return self
                .secret_values(&key.name)?
                .get(&key.key)
                .cloned()
                .with_context(|| format!("Secret {} has no key {}", key.name, key.key));
        }
        if let Some(key) = &source.config_map_key_ref {
            return manifest
                .config_map(&key.name)
                .and_then(|map| map.data.get(&key.key))
                .cloned()
                .with_context(|| format!("no ConfigMap {} with key {}", key.name, key.key));
        }
        bail!("an empty valueFrom")
    }

    /// This cluster's values of Secret `name`: only the mounted one has values here.
    fn secret_values(&self, name: &str) -> Result<&BTreeMap<String, String>> {
        match &self.template.secret {
            Some((mounted, values)) if mounted == name => Ok(values),
            _ => bail!(
                "Secret {name} is not the one the secrets volume mounts: it has no values here"
            ),
        }
    }

    fn mounts(&self, container: &Container) -> Result<Mounts> {
        container
            .volume_mounts
            .iter()
            .map(|mount| {
                ensure!(
                    mount.mount_path.starts_with('/'),
                    "mountPath {} is not absolute",
                    mount.mount_path
                );
                let mut host = self.volume_dir(&mount.name)?;
                if let Some(sub_path) = &mount.sub_path {
                    host.push(sub_path);
                }
                Ok((PathBuf::from(&mount.mount_path), host))
            })
            .collect::<Result<_>>()
            .with_context(|| format!("the volume mounts of container {}", container.name))
    }

    /// The host dir of volume `name`, once the template is seen to declare it as the mapping expects.
    fn volume_dir(&self, name: &str) -> Result<PathBuf> {
        let Some((_, want, host)) = VOLUMES.iter().find(|(volume, ..)| *volume == name) else {
            let declared = self.volume_type(name).ok();
            ensure!(
                matches!(declared, Some(VolumeType::EmptyDir | VolumeType::ConfigMap)),
                "volume {name} has no mapping (the harness maps {:?}, and any emptyDir or \
                 configMap)",
                VOLUMES.map(|(volume, ..)| volume)
            );
            return Ok(other_volume_dir(self.pod, name));
        };
        let declared = self.volume_type(name)?;
        ensure!(
            declared == *want,
            "volume {name} is a {declared:?}, the harness maps it as a {want:?}"
        );
        Ok(match host {
            HostDir::Pod(dir) => dir(self.pod),
            HostDir::Secrets => self.template.secrets_dir.clone(),
        })
    }

    fn volume_type(&self, name: &str) -> Result<VolumeType> {
        let statefulset = &self.template.manifest.statefulset.spec;
        if statefulset
            .volume_claim_templates
            .iter()
            .any(|claim| claim.metadata.name == name)
        {
            return Ok(VolumeType::ClaimTemplate);
        }
        let volume = statefulset
            .template
            .spec
            .volumes
            .iter()
            .find(|volume| volume.name == name)
            .with_context(|| format!("volume {name} is mounted but not declared"))?;
        match (&volume.empty_dir, &volume.secret) {
            _ if !volume.other.is_empty() => bail!(
                "volume {name} is of a type the harness cannot map ({:?}): it maps emptyDir, \
                 secret, configMap and volumeClaimTemplates",
                volume.other.keys().collect::<Vec<_>>()
            ),
            (None, None) if volume.config_map.is_some() => Ok(VolumeType::ConfigMap),
            (Some(_), None) if volume.config_map.is_none() => Ok(VolumeType::EmptyDir),
            (None, Some(secret)) if volume.config_map.is_none() => {
                ensure!(
                    secret.items.is_empty(),
                    "volume {name}: Secret items are not simulated (every key is mounted)"
                );
                Ok(VolumeType::Secret)
            }
            _ => bail!("volume {name} declares more than one type"),
        }
    }

    fn server(&self, container: &Container, resolved: &Resolved) -> Result<ServerSetup> {
        let mounts = self.mounts(container)?;
        let dir = |image_dir: &str| {
            map_path(&mounts, image_dir)
                .with_context(|| format!("the image keeps files in {image_dir}"))
        };
        let empty_allowed = self.template.flavor == Flavor::MariaDb
            && resolved
                .env
                .get(EMPTY_ROOT_PASSWORD_ENV)
                .is_some_and(|value| !value.is_empty());
        let root_password = match (
            resolved.env.get(ROOT_PASSWORD_FILE_ENV),
            resolved.env.get(ROOT_PASSWORD_ENV),
        ) {
            (Some(file), None) if !empty_allowed => RootPassword::File(file.into()),
            (None, Some(value)) if !empty_allowed => RootPassword::Value(value.clone()),
            (None, None) if empty_allowed => RootPassword::Empty,
            _ => bail!(
                "set one of {ROOT_PASSWORD_FILE_ENV}, {ROOT_PASSWORD_ENV} and (MariaDB) \
                 {EMPTY_ROOT_PASSWORD_ENV}"
            ),
        };
        let honoured = [
            ROOT_PASSWORD_FILE_ENV,
            ROOT_PASSWORD_ENV,
            EMPTY_ROOT_PASSWORD_ENV,
            "PATH",
        ];
        let unknown: Vec<&String> = resolved
            .env
            .keys()
            .filter(|name| !honoured.contains(&name.as_str()))
            // The agent's, when it wraps the entrypoint (which ignores them).
            .filter(|name| {
                resolved.program == Program::Server
                    || !(name.starts_with("MYSQL_STS_")
                        || HARNESS_ENV.iter().any(|(harness, _)| harness == name))
            })
            .collect();
        ensure!(
            unknown.is_empty(),
            "env {unknown:?}: the harness's server honours only the root password"
        );
        let port = match resolved.ports.as_slice() {
            [port] => port.container_port,
            ports => bail!("declares ports {ports:?}: the harness needs exactly one, the server's"),
        };
        // Where no volume is mounted, the image's own dirs are the container's (`rootfs.rs`).
        let own = |image_dir: &str| {
            resolved
                .binds
                .iter()
                .find(|(mount, _)| mount == Path::new(image_dir))
                .map(|(_, host)| host.clone())
                .map_or_else(|| dir(image_dir), Ok)
        };
        Ok(ServerSetup {
            datadir: dir(IMAGE_DATADIR)?,
            conf_dir: dir(IMAGE_CONF_DIR)?,
            run_dir: own(IMAGE_RUN_DIR)?,
            tmp_dir: own(IMAGE_TMP_DIR)?,
            port,
            root_password,
        })
    }
}

/// A probe with the kubelet's defaults; `single_success`: startup and liveness probes, whose
/// successThreshold must be 1.
fn probe_spec(container: &Container, probe: &Probe, single_success: bool) -> Result<ProbeSpec> {
    let action = match (&probe.http_get, &probe.tcp_socket) {
        (None, None) if probe.grpc.is_none() && probe.exec.is_some() => {
            let command = probe.exec.as_ref().map(|exec| exec.command.clone());
            ProbeAction::Exec(
                command
                    .filter(|words| !words.is_empty())
                    .context("an empty exec")?,
            )
        }
        (Some(http), None) if probe.exec.is_none() && probe.grpc.is_none() => {
            ensure!(
                http.host.is_none() && http.scheme.as_deref().is_none_or(|s| s == "HTTP"),
                "httpGet to another host or over HTTPS is not simulated"
            );
            ProbeAction::Http(HttpProbe {
                path: http.path.clone(),
                port: container.port(&http.port)?,
            })
        }
        (None, Some(tcp)) if probe.exec.is_none() && probe.grpc.is_none() => {
            ProbeAction::Tcp(container.port(&tcp.port)?)
        }
        _ => bail!("the harness runs one of httpGet, tcpSocket and exec per probe"),
    };
    let seconds =
        |value: Option<u32>, default: u32| Duration::from_secs(value.unwrap_or(default).into());
    let success_threshold = probe.success_threshold.unwrap_or(1);
    ensure!(
        success_threshold >= 1 && (success_threshold == 1 || !single_success),
        "successThreshold {success_threshold}: the API server takes 1 here"
    );
    let failure_threshold = probe.failure_threshold.unwrap_or(3);
    ensure!(failure_threshold >= 1, "failureThreshold 0");
    let spec = ProbeSpec {
        action,
        initial_delay: seconds(probe.initial_delay_seconds, 0),
        period: seconds(probe.period_seconds, 10),
        timeout: seconds(probe.timeout_seconds, 1),
        success_threshold,
        failure_threshold,
    };
    ensure!(
        !spec.period.is_zero() && !spec.timeout.is_zero(),
        "periodSeconds and timeoutSeconds are at least 1"
    );
    Ok(spec)
}

/// A word of a command line or an env value: an absolute path, or `--flag=/path`, is mapped;
/// anything else is left as it is.
fn map_word(mounts: &Mounts, word: &str) -> Result<String> {
    ensure!(
        !word.contains("$("),
        "{word}: $(VAR) references are not expanded by the harness"
    );
    let (head, path) = match word.split_once("=/") {
        Some((flag, rest)) if flag.starts_with('-') => (format!("{flag}="), format!("/{rest}")),
        _ if word.starts_with('/') => (String::new(), word.to_owned()),
        _ => return Ok(word.to_owned()),
    };
    let host = map_path(mounts, &path)?;
    Ok(format!("{head}{}", host.display()))
}

/// The host path of a container path, through the longest mount path that holds it.
fn map_path(mounts: &Mounts, path: &str) -> Result<PathBuf> {
    let path = Path::new(path);
    ensure!(
        path.is_absolute() && !path.components().any(|c| c == Component::ParentDir),
        "{} is not a plain absolute path",
        path.display()
    );
    let (mount, host) = mounts
        .iter()
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.components().count())
        .with_context(|| {
            format!(
                "{} lies under none of the container's volume mounts {:?}: the harness maps \
                 only mounted paths",
                path.display(),
                mounts.iter().map(|(mount, _)| mount).collect::<Vec<_>>()
            )
        })?;
    let rest = path.strip_prefix(mount)?;
    Ok(if rest.as_os_str().is_empty() {
        host.clone()
    } else {
        host.join(rest)
    })
}
