//! One typed configuration from flags and environment, validated before anything runs.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clone::agent::PeerClient;
use crate::clone::fallback::DonorFallback;
use crate::clone::mariadb::compression::Compression;
use crate::clone::ownership::ServerUser;
use crate::db::flavor::Flavor;
use crate::dns::{RESOLV_CONF, ResolvConf};
use crate::duration::parse_duration;
use crate::identity::{Identity, IdentityError, Naming};
use crate::secret::Secret;
use crate::semisync::AckTimeout;
use crate::tls::{CertSummary, ServerTls};

#[derive(Debug, Parser)]
#[command(name = "mysql-sts-agent", version, about, max_term_width = 100)]
pub struct Cli {
    /// Validate the configuration, print what it resolves to, and exit without acting
    /// (0 when valid, 64 when not).
    #[arg(long, global = true)]
    pub check: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Init container: render the server's config fragment and, on an empty datadir, clone ordinal-1.
    Init(InitArgs),
    /// Sidecar: set up and watch replication, serve probes and clones.
    Sidecar(Box<SidecarArgs>),
    /// The database container's command: carry out a re-clone the sidecar requested, if any,
    /// then run ENTRYPOINT (the image's own) in this process's place.
    Exec(ExecArgs),
    /// Copy this binary into DIR (a volume the database image's containers mount), atomically;
    /// nothing changes when the same binary is already there.
    Install(InstallArgs),
    /// Print this pod's state for a person: role, phase, readiness, lag, threads, the last clone
    /// and error; or a clone in progress. Asks the agent on 127.0.0.1:--agent-port, and when none
    /// answers (an init container cloning), reads the clone's progress file in --datadir.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the agent's /status JSON as it is (without an agent: {"clone_progress": <the
    /// progress file>}).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory to copy the binary into, as `DIR/mysql-sts-agent`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The database the pod runs (required): how it clones and which config it renders.
    #[arg(long, env = "MYSQL_STS_FLAVOR", value_enum, global = true)]
    pub flavor: Option<Flavor>,
    /// Log format.
    #[arg(
        long,
        env = "MYSQL_STS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Pod hostname, <statefulset>-<ordinal> [default: the kernel's hostname].
    #[arg(long, env = "MYSQL_STS_HOSTNAME", global = true)]
    pub hostname: Option<String>,
    /// Headless service that names the pods [default: the StatefulSet's name].
    #[arg(long, env = "MYSQL_STS_SERVICE", global = true)]
    pub service: Option<String>,
    /// Kubernetes namespace of the pod (required; use the downward API).
    #[arg(long, env = "MYSQL_STS_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// The cluster's DNS domain [default: from /etc/resolv.conf's search list, where the kubelet
    /// writes <namespace>.svc.<domain>].
    #[arg(long, env = "MYSQL_STS_CLUSTER_DOMAIN", global = true)]
    pub cluster_domain: Option<String>,
    /// The StatefulSet's first ordinal (spec.ordinals.start): that pod is the primary.
    #[arg(
        long,
        env = "MYSQL_STS_FIRST_ORDINAL",
        default_value_t = 0,
        global = true
    )]
    pub first_ordinal: u32,
    /// server_id = offset + ordinal.
    #[arg(
        long,
        env = "MYSQL_STS_SERVER_ID_OFFSET",
        default_value_t = 100,
        global = true
    )]
    pub server_id_offset: u32,
    /// The server's datadir (the data volume).
    #[arg(
        long,
        env = "MYSQL_STS_DATADIR",
        default_value = "/var/lib/mysql",
        global = true
    )]
    pub datadir: PathBuf,
    /// Port every pod's agent serves HTTP on (probes and clones).
    #[arg(
        long,
        env = "MYSQL_STS_AGENT_PORT",
        default_value_t = 8080,
        global = true
    )]
    pub agent_port: u16,
    /// MariaDB: bearer token that guards the clone endpoint: from --clone-token-file or the
    /// environment only, never the command line.
    #[arg(
        long,
        env = "MYSQL_STS_CLONE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub clone_token: Option<Secret>,
    #[arg(long, env = "MYSQL_STS_CLONE_TOKEN_FILE", global = true)]
    pub clone_token_file: Option<PathBuf>,
    /// MariaDB: serve and ask for clones without a token (logged as a warning); without it, a
    /// missing token is a configuration error.
    #[arg(long, env = "MYSQL_STS_CLONE_INSECURE_NO_TOKEN", global = true)]
    pub clone_insecure_no_token: bool,
    /// Port of every pod's server: the local one, the primary, a MySQL clone donor.
    #[arg(
        long,
        env = "MYSQL_STS_MYSQL_PORT",
        default_value_t = 3306,
        global = true
    )]
    pub mysql_port: u16,
    /// MySQL: the user the CLONE plugin connects to the donor as (BACKUP_ADMIN only).
    #[arg(
        long,
        env = "MYSQL_STS_CLONE_USER",
        default_value = "clone",
        global = true
    )]
    pub clone_user: String,
    /// MySQL: the clone user's password: from --clone-password-file or the environment only.
    #[arg(
        long,
        env = "MYSQL_STS_CLONE_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub clone_password: Option<Secret>,
    #[arg(long, env = "MYSQL_STS_CLONE_PASSWORD_FILE", global = true)]
    pub clone_password_file: Option<PathBuf>,
    #[arg(
        long,
        env = "MYSQL_STS_MARIADB_BACKUP",
        default_value = "mariadb-backup",
        global = true
    )]
    pub mariadb_backup: PathBuf,
    #[arg(
        long,
        env = "MYSQL_STS_MBSTREAM",
        default_value = "mbstream",
        global = true
    )]
    pub mbstream: PathBuf,
    /// Lossless writes: semi-synchronous replication (AFTER_SYNC, one replica acknowledges).
    /// Init's fragment loads MySQL's plugins; the sidecar turns it on (`true` or the bare flag).
    #[arg(long, env = "MYSQL_STS_SEMI_SYNC", global = true)]
    pub semi_sync: bool,
    /// The pod's TLS certificate (PEM), e.g. `tls.crt` of a cert-manager Secret; with its key
    /// and CA the server's own TLS is rendered into the config fragment.
    #[arg(long, env = "MYSQL_STS_TLS_CERT_FILE", global = true)]
    pub tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "MYSQL_STS_TLS_KEY_FILE", global = true)]
    pub tls_key_file: Option<PathBuf>,
    /// The CA that signed every pod's certificate (PEM): the only one peers are verified against.
    #[arg(long, env = "MYSQL_STS_TLS_CA_FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// Replication over TLS: replicas verify the primary's certificate and host name, the
    /// replication user is created REQUIRE SSL, and the agent's connections to the primary use
    /// TLS too (needs the three --tls-*-file settings).
    #[arg(long, env = "MYSQL_STS_REPLICATION_TLS", global = true)]
    pub replication_tls: bool,
    /// The peer channel over TLS: agents serve /clone, /donor and /data over HTTPS on
    /// --peer-port (the probes, /status and /metrics stay plain HTTP on --agent-port) and
    /// joiners verify the donor's certificate and name (needs the three --tls-*-file settings).
    #[arg(long, env = "MYSQL_STS_CLONE_TLS", global = true)]
    pub clone_tls: bool,
    /// With --clone-tls: require a client certificate signed by the CA (mutual TLS), on top of
    /// the clone token.
    #[arg(long, env = "MYSQL_STS_CLONE_TLS_CLIENT_AUTH", global = true)]
    pub clone_tls_client_auth: bool,
    /// With --clone-tls: the port of the peer channel.
    #[arg(
        long,
        env = "MYSQL_STS_PEER_PORT",
        default_value_t = 8443,
        global = true
    )]
    pub peer_port: u16,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory the server reads config fragments from.
    #[arg(long, env = "MYSQL_STS_CONF_DIR", default_value = "/etc/mysql/conf.d")]
    pub conf_dir: PathBuf,
    /// How long to wait for the donor to resolve and answer before giving up.
    #[arg(long, env = "MYSQL_STS_CLONE_DEADLINE", default_value = "10m", value_parser = parse_duration)]
    pub clone_deadline: Duration,
    /// How long ordinal-1 may take to be a healthy donor before the joiner clones another
    /// healthy replica, then the primary; `never`: wait for ordinal-1 until --clone-deadline.
    #[arg(long, env = "MYSQL_STS_DONOR_FALLBACK_AFTER", default_value = "30s", value_parser = DonorFallback::parse)]
    pub donor_fallback_after: DonorFallback,
    /// A clone that moves no data this long has lost its donor: give up (and retry fresh).
    #[arg(long, env = "MYSQL_STS_CLONE_STALL_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub clone_stall_timeout: Duration,
    /// MariaDB: ask the donor to compress the clone stream (`Accept-Encoding: zstd`); it pays on
    /// a link slower than the backup, not on a fast one. A donor may send it plain all the same.
    #[arg(
        long,
        env = "MYSQL_STS_CLONE_COMPRESSION",
        value_enum,
        default_value = "none"
    )]
    pub clone_compression: Compression,
    /// MySQL: the server binary init runs a temporary server with to clone into.
    #[arg(long, env = "MYSQL_STS_MYSQLD", default_value = "mysqld")]
    pub mysqld: PathBuf,
    /// When init runs as root: the user (NAME or UID[:GID]) the server runs as, who gets the
    /// clone's files [default: the datadir's owner unless root, else mysql of /etc/passwd].
    #[arg(long, env = "MYSQL_STS_SERVER_USER")]
    pub server_user: Option<ServerUser>,
    /// The first ordinal on an empty datadir asks every peer whether it holds data; a peer whose
    /// name resolves but whose agent does not answer this long stops the start.
    #[arg(long, env = "MYSQL_STS_PEER_DEADLINE", default_value = "2m", value_parser = parse_duration)]
    pub peer_deadline: Duration,
    /// Let the first ordinal start on an empty datadir without asking its peers (the first
    /// bring-up of a restored cluster whose other volumes are stale).
    #[arg(long, env = "MYSQL_STS_ALLOW_EMPTY_START")]
    pub allow_empty_start: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// The image's entrypoint and its arguments, e.g. `-- docker-entrypoint.sh mariadbd`.
    #[arg(last = true, required = true, value_name = "ENTRYPOINT")]
    pub entrypoint: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// Address to listen on; the port is --agent-port.
    #[arg(long, env = "MYSQL_STS_LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen_address: IpAddr,
    /// The local server's address, used when --mysql-socket is not set.
    #[arg(long, env = "MYSQL_STS_MYSQL_HOST", default_value = "127.0.0.1")]
    pub mysql_host: String,
    /// Unix socket of the local server (instead of TCP).
    #[arg(long, env = "MYSQL_STS_MYSQL_SOCKET")]
    pub mysql_socket: Option<PathBuf>,
    /// Administrative user for the local server.
    #[arg(long, env = "MYSQL_STS_ADMIN_USER", default_value = "root")]
    pub admin_user: String,
    /// Its password: from --admin-password-file or the environment only.
    #[arg(long, env = "MYSQL_STS_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
    #[arg(long, env = "MYSQL_STS_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Replication user, created on ordinal 0.
    #[arg(long, env = "MYSQL_STS_REPL_USER", default_value = "repl")]
    pub repl_user: String,
    /// Its password: from --repl-password-file or the environment only.
    #[arg(long, env = "MYSQL_STS_REPL_PASSWORD", hide_env_values = true)]
    pub repl_password: Option<Secret>,
    #[arg(long, env = "MYSQL_STS_REPL_PASSWORD_FILE")]
    pub repl_password_file: Option<PathBuf>,
    /// /readyz on a replica fails when it has not applied what the primary had this long ago.
    #[arg(long, env = "MYSQL_STS_MAX_LAG", default_value = "5s", value_parser = parse_duration)]
    pub max_lag: Duration,
    /// How often the server and the primary are sampled.
    #[arg(long, env = "MYSQL_STS_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How long a replica that was in sync stays ready while the primary is unreachable
    /// (serving what it had); 0: not ready within --max-lag, as without it.
    #[arg(long, env = "MYSQL_STS_PRIMARY_OUTAGE_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub primary_outage_grace: Duration,
    /// Scratch space for backups served to other pods.
    #[arg(long, env = "MYSQL_STS_TMP_DIR", default_value = "/tmp")]
    pub tmp_dir: PathBuf,
    /// With --semi-sync: how long a commit on the primary waits for a replica's acknowledgement
    /// before the primary falls back to asynchronous replication; `forever`: writes block.
    #[arg(long, env = "MYSQL_STS_SEMI_SYNC_TIMEOUT", default_value = "10s", value_parser = AckTimeout::parse)]
    pub semi_sync_timeout: AckTimeout,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {flag} (env {env})")]
    Missing {
        flag: &'static str,
        env: &'static str,
    },
    #[error("missing required setting {flag}-file (env {env}_FILE)")]
    MissingSecret {
        flag: &'static str,
        env: &'static str,
    },
    #[error("set either {flag} or {flag}-file, not both")]
    Conflict { flag: &'static str },
    #[error("cannot read {flag}-file {path}: {source}")]
    SecretFile {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} is empty")]
    EmptySecret { flag: &'static str },
    #[error(
        "{flag} is a secret and is not accepted on the command line, which every process can \
         read: set {env} or {flag}-file"
    )]
    SecretInArgv {
        flag: &'static str,
        env: &'static str,
    },
    #[error("cannot read the hostname from {path}: {source} (set --hostname)")]
    Hostname {
        path: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "cannot tell the cluster domain: {path}'s search list has no {namespace}.svc.<domain> \
         entry ({found}); set --cluster-domain (MYSQL_STS_CLUSTER_DOMAIN)"
    )]
    ClusterDomain {
        path: String,
        namespace: String,
        found: String,
    },
    #[error("cannot read {flag} {path}: {source}")]
    TlsFile {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// How a pod clones its predecessor, by flavor.
#[derive(Debug, Clone)]
pub enum CloneChannel {
    /// MariaDB: a mariadb-backup stream that the donor's agent serves over HTTP; `token`: none
    /// only with --clone-insecure-no-token.
    BackupStream {
        token: Option<Secret>,
        mariadb_backup: PathBuf,
        mbstream: PathBuf,
    },
    /// MySQL: the CLONE plugin, from the donor's server to a temporary local one.
    ClonePlugin { user: Credentials },
}

/// The pod's certificate, key and CA, as PEM files every container that uses them mounts at
/// the same paths (the server reads them from the fragment init renders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// All three or none; each readable now, and a path the option file can hold.
    fn from_settings(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, ConfigError> {
        let settings = [
            ("--tls-cert-file", cert),
            ("--tls-key-file", key),
            ("--tls-ca-file", ca),
        ];
        if settings.iter().all(|(_, path)| path.is_none()) {
            return Ok(None);
        }
        let mut paths = Vec::with_capacity(3);
        for (flag, path) in settings {
            let Some(path) = path else {
                return Err(ConfigError::Invalid(format!(
                    "--tls-cert-file, --tls-key-file and --tls-ca-file go together: {flag} is missing"
                )));
            };
            if path.to_string_lossy().contains(['\n', '\r']) {
                return Err(ConfigError::Invalid(format!(
                    "{flag} {path:?} contains a line break, which the server's option file cannot hold"
                )));
            }
            std::fs::File::open(&path).map_err(|source| ConfigError::TlsFile {
                flag,
                path: path.clone(),
                source,
            })?;
            paths.push(path);
        }
        let [cert, key, ca] = <[PathBuf; 3]>::try_from(paths).expect("three settings");
        Ok(Some(TlsFiles { cert, key, ca }))
    }
}

/// How pods' agents reach each other (`/clone`, `/donor`, `/data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChannel {
    /// Plain HTTP on --agent-port, beside the probes.
    Http { port: u16 },
    /// HTTPS on --peer-port with the pod's certificate; `client_auth`: mutual TLS.
    Https {
        port: u16,
        files: TlsFiles,
        client_auth: bool,
    },
}

impl PeerChannel {
    /// The pod's TLS files when peers talk over TLS (MySQL: the clone too).
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        match self {
            PeerChannel::Http { .. } => None,
            PeerChannel::Https { files, .. } => Some(files),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            PeerChannel::Http { port } | PeerChannel::Https { port, .. } => *port,
        }
    }
}

impl PeerChannel {
    fn scheme(&self) -> &'static str {
        match self {
            PeerChannel::Http { .. } => "HTTP",
            PeerChannel::Https {
                client_auth: false, ..
            } => "HTTPS",
            PeerChannel::Https {
                client_auth: true, ..
            } => "HTTPS with client certificates",
        }
    }
}

impl std::fmt::Display for PeerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on port {}", self.scheme(), self.port())
    }
}

/// Where the cluster domain came from, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainSource {
    Setting,
    SearchList { path: String },
}

impl std::fmt::Display for DomainSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainSource::Setting => f.write_str("the --cluster-domain setting"),
            DomainSource::SearchList { path } => write!(f, "the search list of {path}"),
        }
    }
}

/// Settings both subcommands share, validated.
#[derive(Debug, Clone)]
pub struct Common {
    pub identity: Identity,
    pub domain_source: DomainSource,
    pub flavor: Flavor,
    pub datadir: PathBuf,
    pub agent_port: u16,
    pub mysql_port: u16,
    pub clone: CloneChannel,
    pub semi_sync: bool,
    pub tls: Option<TlsFiles>,
    pub replication_tls: bool,
    pub peer: PeerChannel,
}

impl Common {
    /// The CA replicas and the agent verify the primary with, when replication uses TLS.
    pub fn replication_ca(&self) -> Option<&Path> {
        self.tls
            .as_ref()
            .filter(|_| self.replication_tls)
            .map(|tls| tls.ca.as_path())
    }
}

#[derive(Debug, Clone)]
pub struct InitConfig {
    pub common: Common,
    pub conf_dir: PathBuf,
    pub clone_deadline: Duration,
    pub donor_fallback_after: DonorFallback,
    pub clone_stall_timeout: Duration,
    pub clone_compression: Compression,
    pub mysqld: PathBuf,
    pub server_user: Option<ServerUser>,
    pub peer_deadline: Duration,
    pub allow_empty_start: bool,
    /// How init reaches other pods' agents (over HTTPS: its TLS files, read at start).
    pub peer_client: PeerClient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Socket(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Option<Secret>,
}

/// The peer channel's server side, loaded at start.
#[derive(Debug, Clone)]
pub struct PeerServerTls {
    pub tls: Arc<ServerTls>,
    /// What the certificate first loaded says, for the log.
    pub certificate: Option<CertSummary>,
}

#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub common: Common,
    /// With --clone-tls.
    pub peer_tls: Option<PeerServerTls>,
    pub listen: SocketAddr,
    pub local_server: Endpoint,
    pub admin: Credentials,
    pub repl: Credentials,
    pub max_lag: Duration,
    pub poll_interval: Duration,
    pub primary_outage_grace: Duration,
    pub tmp_dir: PathBuf,
    pub semi_sync_timeout: AckTimeout,
}

/// What `status` asks and reads.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub agent_port: u16,
    pub datadir: PathBuf,
    pub json: bool,
}

pub enum Validated {
    Init(InitConfig),
    /// Init's settings (a re-clone is a clone), then the entrypoint to run.
    Exec(InitConfig, Vec<OsString>),
    Sidecar(SidecarConfig),
    Install {
        dir: PathBuf,
    },
    Status(StatusConfig),
}

impl Validated {
    /// The pod the subcommand runs for, if it needs to know.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Validated::Init(cfg) | Validated::Exec(cfg, _) => Some(&cfg.common.identity),
            Validated::Sidecar(cfg) => Some(&cfg.common.identity),
            Validated::Install { .. } | Validated::Status(_) => None,
        }
    }

    /// One line saying what the configuration resolves to, secrets left out.
    pub fn describe(&self) -> String {
        let pod = |common: &Common| {
            let id = &common.identity;
            format!(
                "{} ({}, ordinal {} of first ordinal {}, {}, server_id {}, {}, domain from {}), datadir {}",
                id.hostname,
                id.fqdn,
                id.ordinal,
                id.first_ordinal,
                id.role,
                id.server_id,
                common.flavor,
                common.domain_source,
                common.datadir.display()
            ) + &match &common.tls {
                None => String::new(),
                Some(tls) => format!(
                    ", TLS certificate {} (CA {}), replication over TLS {}",
                    tls.cert.display(),
                    tls.ca.display(),
                    if common.replication_tls { "on" } else { "off" }
                ),
            }
        };
        let donor = |common: &Common| match (&common.identity.donor_fqdn, &common.clone) {
            (None, _) => "no donor (the first ordinal)".to_owned(),
            (Some(donor), CloneChannel::BackupStream { .. }) => {
                format!(
                    "clones {donor}:{} (agent, {})",
                    common.peer.port(),
                    common.peer.scheme()
                )
            }
            (Some(donor), CloneChannel::ClonePlugin { user }) => format!(
                "clones {donor}:{} (CLONE plugin, user {})",
                common.mysql_port, user.user
            ),
        };
        match self {
            Validated::Init(cfg) => format!(
                "init for {}, conf dir {}, {}{}",
                pod(&cfg.common),
                cfg.conf_dir.display(),
                donor(&cfg.common),
                match (&cfg.common.identity.donor_fqdn, cfg.donor_fallback_after) {
                    (None, _) => String::new(),
                    (Some(_), DonorFallback::Never) => ", never falls back to another donor".into(),
                    (Some(_), after) => format!(
                        ", falls back to another healthy replica, then the primary, after {after}"
                    ),
                }
            ),
            Validated::Exec(cfg, entrypoint) => format!(
                "exec for {}, a pending re-clone {}, then runs {}",
                pod(&cfg.common),
                donor(&cfg.common),
                entrypoint
                    .iter()
                    .map(|word| word.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Validated::Sidecar(cfg) => format!(
                "sidecar for {}, listens on {}, peers over {}, server {}, primary {}:{}",
                pod(&cfg.common),
                cfg.listen,
                cfg.common.peer,
                cfg.local_server,
                cfg.common.identity.primary_fqdn,
                cfg.common.mysql_port
            ),
            Validated::Install { dir } => format!("install into {}", dir.display()),
            Validated::Status(cfg) => format!(
                "status from the agent on 127.0.0.1:{}, else from a clone's progress in {}",
                cfg.agent_port,
                cfg.datadir.display()
            ),
        }
    }
}

const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// The settings that hold secrets, by clap id, flag and variable: their values come from the
/// environment or a file, never from argv (`/proc/<pid>/cmdline` is world-readable).
const SECRETS: &[(&str, &str, &str)] = &[
    ("clone_token", "--clone-token", "MYSQL_STS_CLONE_TOKEN"),
    (
        "clone_password",
        "--clone-password",
        "MYSQL_STS_CLONE_PASSWORD",
    ),
    (
        "admin_password",
        "--admin-password",
        "MYSQL_STS_ADMIN_PASSWORD",
    ),
    (
        "repl_password",
        "--repl-password",
        "MYSQL_STS_REPL_PASSWORD",
    ),
];

/// Refuses a secret given on the command line, at any subcommand's level.
pub fn refuse_secrets_in_argv(matches: &clap::ArgMatches) -> Result<(), ConfigError> {
    let mut level = Some(matches);
    while let Some(matches) = level {
        for &(id, flag, env) in SECRETS {
            let given = matches!(matches.try_contains_id(id), Ok(true))
                && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            if given {
                return Err(ConfigError::SecretInArgv { flag, env });
            }
        }
        level = matches.subcommand().map(|(_, sub)| sub);
    }
    Ok(())
}

impl Cli {
    pub fn validate(self) -> Result<Validated, ConfigError> {
        self.validate_with(Path::new(RESOLV_CONF))
    }

    /// `resolv_conf` is where the cluster domain is looked for when no setting gives it.
    pub fn validate_with(self, resolv_conf: &Path) -> Result<Validated, ConfigError> {
        let common = |args: CommonArgs| args.validate(resolv_conf);
        Ok(match self.command {
            // Installing runs before anything is configured: it needs only its directory.
            Command::Install(args) => Validated::Install { dir: args.dir },
            // A person asks in any container of the pod: only where to look is needed.
            Command::Status(args) => Validated::Status(StatusConfig {
                agent_port: self.common.agent_port,
                datadir: self.common.datadir,
                json: args.json,
            }),
            Command::Init(args) => Validated::Init(args.validate(common(self.common)?)?),
            Command::Exec(args) => {
                Validated::Exec(args.init.validate(common(self.common)?)?, args.entrypoint)
            }
            Command::Sidecar(args) => Validated::Sidecar(args.validate(common(self.common)?)?),
        })
    }
}

impl InitArgs {
    fn validate(self, common: Common) -> Result<InitConfig, ConfigError> {
        let peer_client = PeerClient::new(&common.peer)
            .map_err(|e| ConfigError::Invalid(format!("the peer channel's TLS files: {e}")))?;
        Ok(InitConfig {
            peer_client,
            common,
            conf_dir: self.conf_dir,
            clone_deadline: self.clone_deadline,
            donor_fallback_after: match self.donor_fallback_after {
                DonorFallback::After(after) if after.is_zero() => {
                    return Err(ConfigError::Invalid(
                        "--donor-fallback-after must be greater than zero (or never)".into(),
                    ));
                }
                fallback => fallback,
            },
            clone_stall_timeout: self.clone_stall_timeout,
            clone_compression: self.clone_compression,
            mysqld: self.mysqld,
            server_user: self.server_user,
            peer_deadline: self.peer_deadline,
            allow_empty_start: self.allow_empty_start,
        })
    }
}

impl CommonArgs {
    fn validate(self, resolv_conf: &Path) -> Result<Common, ConfigError> {
        let flavor = self.flavor.ok_or(ConfigError::Missing {
            flag: "--flavor",
            env: "MYSQL_STS_FLAVOR",
        })?;
        let namespace = self.namespace.ok_or(ConfigError::Missing {
            flag: "--namespace",
            env: "MYSQL_STS_NAMESPACE",
        })?;
        let clone = match flavor {
            Flavor::MariaDb => CloneChannel::BackupStream {
                token: match (
                    secret(
                        self.clone_token,
                        self.clone_token_file.as_deref(),
                        "--clone-token",
                    )?,
                    self.clone_insecure_no_token,
                ) {
                    (Some(_), true) => {
                        return Err(ConfigError::Invalid(
                            "--clone-insecure-no-token with a clone token set: remove one".into(),
                        ));
                    }
                    (Some(token), false) => Some(header_safe(token)?),
                    (None, true) => None,
                    (None, false) => {
                        return Err(ConfigError::MissingSecret {
                            flag: "--clone-token",
                            env: "MYSQL_STS_CLONE_TOKEN",
                        });
                    }
                },
                mariadb_backup: self.mariadb_backup,
                mbstream: self.mbstream,
            },
            Flavor::MySql => CloneChannel::ClonePlugin {
                user: Credentials {
                    user: self.clone_user,
                    password: Some(required_secret(
                        self.clone_password,
                        self.clone_password_file.as_deref(),
                        "--clone-password",
                        "MYSQL_STS_CLONE_PASSWORD",
                    )?),
                },
            },
        };
        let tls = TlsFiles::from_settings(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)?;
        if self.replication_tls && tls.is_none() {
            return Err(ConfigError::Invalid(
                "--replication-tls needs --tls-cert-file, --tls-key-file and --tls-ca-file".into(),
            ));
        }
        let peer = match (self.clone_tls, self.clone_tls_client_auth, &tls) {
            (false, false, _) => PeerChannel::Http {
                port: self.agent_port,
            },
            (false, true, _) => {
                return Err(ConfigError::Invalid(
                    "--clone-tls-client-auth needs --clone-tls".into(),
                ));
            }
            (true, _, None) => {
                return Err(ConfigError::Invalid(
                    "--clone-tls needs --tls-cert-file, --tls-key-file and --tls-ca-file".into(),
                ));
            }
            (true, client_auth, Some(files)) => {
                if self.peer_port == self.agent_port {
                    return Err(ConfigError::Invalid(format!(
                        "--peer-port {} is --agent-port's: the peer channel needs a port of its own",
                        self.peer_port
                    )));
                }
                PeerChannel::Https {
                    port: self.peer_port,
                    files: files.clone(),
                    client_auth,
                }
            }
        };
        let hostname = match self.hostname {
            Some(hostname) => hostname,
            None => std::fs::read_to_string(KERNEL_HOSTNAME)
                .map(|h| h.trim().to_owned())
                .map_err(|source| ConfigError::Hostname {
                    path: KERNEL_HOSTNAME,
                    source,
                })?,
        };
        let (cluster_domain, domain_source) = match self.cluster_domain {
            Some(domain) => (domain, DomainSource::Setting),
            None => (
                domain_from_search_list(resolv_conf, &namespace)?,
                DomainSource::SearchList {
                    path: resolv_conf.display().to_string(),
                },
            ),
        };
        let naming = Naming {
            service: self.service,
            namespace,
            cluster_domain: cluster_domain.trim_end_matches('.').to_owned(),
            first_ordinal: self.first_ordinal,
        };
        Ok(Common {
            identity: Identity::derive(&hostname, &naming, self.server_id_offset)?,
            domain_source,
            flavor,
            datadir: self.datadir,
            agent_port: self.agent_port,
            mysql_port: self.mysql_port,
            clone,
            semi_sync: self.semi_sync,
            tls,
            replication_tls: self.replication_tls,
            peer,
        })
    }
}

impl SidecarArgs {
    fn validate(self, common: Common) -> Result<SidecarConfig, ConfigError> {
        let repl_password = required_secret(
            self.repl_password,
            self.repl_password_file.as_deref(),
            "--repl-password",
            "MYSQL_STS_REPL_PASSWORD",
        )?;
        let admin_password = secret(
            self.admin_password,
            self.admin_password_file.as_deref(),
            "--admin-password",
        )?;
        if self.poll_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "--poll-interval must be greater than zero".into(),
            ));
        }
        let peer_tls = match &common.peer {
            PeerChannel::Http { .. } => None,
            PeerChannel::Https {
                files, client_auth, ..
            } => {
                let (tls, certificate) =
                    ServerTls::load(files.clone(), *client_auth).map_err(|e| {
                        ConfigError::Invalid(format!("the peer channel's TLS files: {e}"))
                    })?;
                Some(PeerServerTls {
                    tls: Arc::new(tls),
                    certificate,
                })
            }
        };
        Ok(SidecarConfig {
            peer_tls,
            listen: SocketAddr::new(self.listen_address, common.agent_port),
            local_server: match self.mysql_socket {
                Some(path) => Endpoint::Socket(path),
                None => Endpoint::Tcp {
                    host: self.mysql_host,
                    port: common.mysql_port,
                },
            },
            admin: Credentials {
                user: self.admin_user,
                password: admin_password,
            },
            repl: Credentials {
                user: self.repl_user,
                password: Some(repl_password),
            },
            max_lag: self.max_lag,
            poll_interval: self.poll_interval,
            primary_outage_grace: self.primary_outage_grace,
            tmp_dir: self.tmp_dir,
            semi_sync_timeout: self.semi_sync_timeout,
            common,
        })
    }
}

/// The kubelet's `<namespace>.svc.<domain>` entry of the pod's resolv.conf.
fn domain_from_search_list(path: &Path, namespace: &str) -> Result<String, ConfigError> {
    let missing = |found: String| ConfigError::ClusterDomain {
        path: path.display().to_string(),
        namespace: namespace.to_owned(),
        found,
    };
    let conf = ResolvConf::read(path).map_err(|e| missing(format!("unreadable: {e}")))?;
    conf.cluster_domain(namespace)
        .ok_or_else(|| missing(format!("search [{}]", conf.search.join(" "))))
}

/// A secret given inline or, better, as a file (a mounted Kubernetes Secret). A file's trailing
/// newline is dropped: `kubectl create secret --from-file` keeps the one editors add.
fn secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    flag: &'static str,
) -> Result<Option<Secret>, ConfigError> {
    let secret = match (inline, file) {
        (Some(_), Some(_)) => return Err(ConfigError::Conflict { flag }),
        (Some(secret), None) => secret,
        (None, Some(path)) => Secret::new(
            std::fs::read_to_string(path)
                .map_err(|source| ConfigError::SecretFile {
                    flag,
                    path: path.to_owned(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        (None, None) => return Ok(None),
    };
    if secret.expose().is_empty() {
        return Err(ConfigError::EmptySecret { flag });
    }
    Ok(Some(secret))
}

/// `secret` of a setting that must be given: missing, the error names its file setting.
fn required_secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    flag: &'static str,
    env: &'static str,
) -> Result<Secret, ConfigError> {
    secret(inline, file, flag)?.ok_or(ConfigError::MissingSecret { flag, env })
}

/// The clone token travels in an `Authorization` header, whose value the donor reads only when it
/// is visible ASCII and spaces (other bytes are obsolete text, control characters are refused
/// when the request is built), and loses spaces at either end in transit: refused at start
/// rather than as a 401 on every clone.
fn header_safe(token: Secret) -> Result<Secret, ConfigError> {
    let value = token.expose();
    let visible = value.bytes().all(|byte| (b' '..=b'~').contains(&byte));
    if !visible || value.starts_with(' ') || value.ends_with(' ') {
        return Err(ConfigError::Invalid(
            "--clone-token goes in an HTTP header: it may hold visible ASCII characters and \
             spaces, but no other character and no space at either end"
                .into(),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod's resolv.conf, as the kubelet writes it in namespace `db` of `cluster.local`.
    const POD_RESOLV_CONF: &str =
        "search db.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n";

    fn parse_with(args: &[&str], resolv_conf: &str) -> Result<Validated, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, resolv_conf).unwrap();
        let argv = ["mysql-sts-agent"].iter().chain(args);
        Cli::try_parse_from(argv)
            .expect("clap accepts")
            .validate_with(&path)
    }

    fn parse(args: &[&str]) -> Result<Validated, ConfigError> {
        parse_with(args, POD_RESOLV_CONF)
    }

    const BASE: &[&str] = &[
        "--flavor",
        "mariadb",
        "--hostname",
        "mysql-1",
        "--namespace",
        "db",
        "--clone-token",
        "t",
    ];

    #[test]
    fn init_config_from_flags() {
        let args: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["init", "--clone-deadline", "30s"])
            .collect();
        let Ok(Validated::Init(cfg)) = parse(&args) else {
            panic!("init config")
        };
        assert_eq!(cfg.peer_deadline, Duration::from_secs(120));
        assert!(!cfg.allow_empty_start);
        assert_eq!(cfg.clone_compression, Compression::None);
        assert_eq!(cfg.common.identity.server_id, 101);
        assert_eq!(
            cfg.common.identity.fqdn,
            "mysql-1.mysql.db.svc.cluster.local"
        );
        assert_eq!(cfg.clone_deadline, Duration::from_secs(30));
        let CloneChannel::BackupStream { token, .. } = &cfg.common.clone else {
            panic!("MariaDB clones with a backup stream")
        };
        assert_eq!(token.as_ref().map(Secret::expose), Some("t"));
    }

    #[test]
    fn the_cluster_domain_comes_from_resolv_conf_unless_set() {
        let init: Vec<&str> = BASE.iter().copied().chain(["init"]).collect();
        let other_domain = "search db.svc.k8s.example.net svc.k8s.example.net\n";
        let Ok(Validated::Init(cfg)) = parse_with(&init, other_domain) else {
            panic!("init config")
        };
        assert_eq!(
            cfg.common.identity.primary_fqdn,
            "mysql-0.mysql.db.svc.k8s.example.net"
        );
        assert!(matches!(
            cfg.common.domain_source,
            DomainSource::SearchList { .. }
        ));
        let set: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["--cluster-domain", "corp.example.", "init"])
            .collect();
        let Ok(Validated::Init(cfg)) = parse_with(&set, other_domain) else {
            panic!("init config")
        };
        assert_eq!(
            cfg.common.identity.fqdn,
            "mysql-1.mysql.db.svc.corp.example"
        );
        assert_eq!(cfg.common.domain_source, DomainSource::Setting);
        let err = parse_with(&init, "search example.com\n").err().unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot tell the cluster domain: /"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("search list has no db.svc.<domain> entry (search [example.com]); set --cluster-domain"),
            "{err}"
        );
    }

    #[test]
    fn clone_compression_is_zstd_or_none() {
        let args: Vec<&str> = (BASE.iter().copied())
            .chain(["init", "--clone-compression", "zstd"])
            .collect();
        let Ok(Validated::Init(cfg)) = parse(&args) else {
            panic!("init config")
        };
        assert_eq!(cfg.clone_compression, Compression::Zstd);
        let gzip = ["mysql-sts-agent", "init", "--clone-compression", "gzip"];
        assert!(Cli::try_parse_from(gzip).is_err());
    }

    #[test]
    fn first_ordinal_and_names_are_validated() {
        let args = |extra: &[&'static str]| -> Vec<&'static str> {
            BASE.iter().copied().chain(extra.iter().copied()).collect()
        };
        let Ok(Validated::Init(cfg)) = parse(&args(&["--first-ordinal", "1", "init"])) else {
            panic!("init config")
        };
        assert_eq!(cfg.common.identity.role, crate::identity::Role::Primary);
        let err = parse(&args(&["--first-ordinal", "2", "init"]))
            .err()
            .unwrap();
        assert!(matches!(
            err,
            ConfigError::Identity(IdentityError::BelowFirstOrdinal { .. })
        ));
        let err = parse(&args(&["--service", "db\nlog_bin=x", "init"]))
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with(
                "the service (--service) \"db\\nlog_bin=x\" is not a valid DNS-1123 label"
            ),
            "{err}"
        );
    }

    #[test]
    fn mysql_needs_a_clone_password_and_no_token() {
        let init = [
            "--flavor",
            "mysql",
            "--hostname",
            "mysql-2",
            "--namespace",
            "db",
        ];
        let err = parse(&[&init[..], &["init"]].concat()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "missing required setting --clone-password-file (env MYSQL_STS_CLONE_PASSWORD_FILE)"
        );
        let args = [
            &init[..],
            &["--clone-password", "pw", "init", "--mysqld", "/x/mysqld"],
        ]
        .concat();
        let Ok(Validated::Init(cfg)) = parse(&args) else {
            panic!("init config")
        };
        assert_eq!(cfg.common.flavor, Flavor::MySql);
        assert_eq!(cfg.mysqld, PathBuf::from("/x/mysqld"));
        let CloneChannel::ClonePlugin { user } = &cfg.common.clone else {
            panic!("MySQL clones with the CLONE plugin")
        };
        assert_eq!(user.user, "clone");
        assert_eq!(user.password.as_ref().map(Secret::expose), Some("pw"));
    }

    #[test]
    fn sidecar_reads_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repl");
        std::fs::write(&file, "s3cret\n").unwrap();
        let file = file.to_str().unwrap();
        let args: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["sidecar", "--repl-password-file", file])
            .collect();
        let Ok(Validated::Sidecar(cfg)) = parse(&args) else {
            panic!("sidecar config")
        };
        assert_eq!(
            cfg.repl.password.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(cfg.admin.password, None);
        assert_eq!(cfg.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            cfg.local_server,
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 3306
            }
        );
    }

    #[test]
    fn semi_sync_is_off_by_default_and_its_timeout_may_be_forever() {
        let sidecar = |extra: &[&'static str]| -> SidecarConfig {
            let args: Vec<&str> = BASE
                .iter()
                .copied()
                .chain(["sidecar", "--repl-password", "r"])
                .chain(extra.iter().copied())
                .collect();
            let Ok(Validated::Sidecar(cfg)) = parse(&args) else {
                panic!("sidecar config")
            };
            cfg
        };
        let default = sidecar(&[]);
        assert!(!default.common.semi_sync);
        assert_eq!(
            default.semi_sync_timeout,
            AckTimeout::After(Duration::from_secs(10))
        );
        let on = sidecar(&["--semi-sync", "--semi-sync-timeout", "forever"]);
        assert!(on.common.semi_sync);
        assert_eq!(on.semi_sync_timeout, AckTimeout::Forever);
        let argv = ["mysql-sts-agent", "sidecar", "--semi-sync-timeout", "soon"];
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn tls_files_go_together_exist_and_replication_tls_needs_them() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let file = |name: &str, fixture: &str| {
            let path = dir.path().join(name);
            std::fs::copy(fixtures.join(fixture), &path).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let (cert, key, ca) = (
            file("tls.crt", "tls1.crt"),
            file("tls.key", "tls1.key"),
            file("ca.crt", "ca.crt"),
        );
        let with = |extra: &[&str]| {
            let args: Vec<&str> = BASE
                .iter()
                .copied()
                .chain(extra.iter().copied())
                .chain(["init"])
                .collect();
            parse(&args)
        };
        let all = [
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-file",
            &ca,
        ];
        let Ok(Validated::Init(cfg)) = with(&[&all[..], &["--replication-tls"]].concat()) else {
            panic!("init config")
        };
        let tls = cfg.common.tls.clone().expect("TLS files");
        assert_eq!(tls.key, PathBuf::from(&key));
        assert_eq!(cfg.common.replication_ca(), Some(Path::new(&ca)));
        let Ok(Validated::Init(cfg)) = with(&all) else {
            panic!("init config")
        };
        assert_eq!(cfg.common.replication_ca(), None, "the server's TLS only");
        let Ok(Validated::Init(cfg)) = with(&[]) else {
            panic!("init config")
        };
        assert_eq!(cfg.common.tls, None);

        assert_eq!(cfg.common.peer, PeerChannel::Http { port: 8080 });
        let Ok(Validated::Init(cfg)) = with(&[&all[..], &["--clone-tls"]].concat()) else {
            panic!("init config")
        };
        assert_eq!(
            cfg.common.peer,
            PeerChannel::Https {
                port: 8443,
                files: tls.clone(),
                client_auth: false
            }
        );
        let mtls = [&all[..], &["--clone-tls", "--clone-tls-client-auth"]].concat();
        let Ok(Validated::Init(cfg)) = with(&mtls) else {
            panic!("init config")
        };
        assert_eq!(
            cfg.common.peer.to_string(),
            "HTTPS with client certificates on port 8443"
        );
        for (extra, error) in [
            (
                &["--clone-tls-client-auth"][..],
                "--clone-tls-client-auth needs --clone-tls",
            ),
            (
                &["--clone-tls"][..],
                "--clone-tls needs --tls-cert-file, --tls-key-file and --tls-ca-file",
            ),
        ] {
            assert_eq!(with(extra).err().unwrap().to_string(), error);
        }
        let same_port = [&all[..], &["--clone-tls", "--peer-port", "8080"]].concat();
        assert_eq!(
            with(&same_port).err().unwrap().to_string(),
            "--peer-port 8080 is --agent-port's: the peer channel needs a port of its own"
        );

        std::fs::write(&ca, "not PEM").unwrap();
        let err = with(&[&all[..], &["--clone-tls"]].concat()).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("the peer channel's TLS files: "),
            "{err}"
        );
        std::fs::copy(fixtures.join("ca.crt"), &ca).unwrap();

        let err = with(&all[..4]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "--tls-cert-file, --tls-key-file and --tls-ca-file go together: --tls-ca-file is missing"
        );
        let err = with(&["--replication-tls"]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "--replication-tls needs --tls-cert-file, --tls-key-file and --tls-ca-file"
        );
        let err = with(&[&all[..2], &["--tls-key-file", "/nonexistent/k"], &all[4..]].concat())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot read --tls-key-file /nonexistent/k: "),
            "{err}"
        );
    }

    #[test]
    fn donor_fallback_is_30s_by_default_may_be_never_and_is_not_zero() {
        let init = |extra: &[&'static str]| -> Result<Validated, ConfigError> {
            let args: Vec<&str> = BASE
                .iter()
                .copied()
                .chain(["init"])
                .chain(extra.iter().copied())
                .collect();
            parse(&args)
        };
        let fallback = |extra: &[&'static str]| match init(extra) {
            Ok(Validated::Init(cfg)) => cfg.donor_fallback_after,
            _ => panic!("init config"),
        };
        assert_eq!(fallback(&[]), DonorFallback::After(Duration::from_secs(30)));
        assert_eq!(
            fallback(&["--donor-fallback-after", "1.5s"]),
            DonorFallback::After(Duration::from_millis(1500))
        );
        assert_eq!(
            fallback(&["--donor-fallback-after", "never"]),
            DonorFallback::Never
        );
        let Ok(described) = init(&[]).map(|v| v.describe()) else {
            panic!("init config")
        };
        assert!(
            described.ends_with(
                ", falls back to another healthy replica, then the primary, after 30.0s"
            ),
            "{described}"
        );
        let err = init(&["--donor-fallback-after", "0s"]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "--donor-fallback-after must be greater than zero (or never)"
        );
        for bad in ["soon", "forever", "-3s"] {
            let argv = ["mysql-sts-agent", "init", "--donor-fallback-after", bad];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_needs_only_where_to_look() {
        let Ok(Validated::Status(cfg)) = parse(&["--agent-port", "9090", "status", "--json"])
        else {
            panic!("status config without flavor, namespace or secrets")
        };
        assert_eq!(cfg.agent_port, 9090);
        assert_eq!(cfg.datadir, PathBuf::from("/var/lib/mysql"));
        assert!(cfg.json);
        let Ok(status) = parse(&["status"]) else {
            panic!("status config")
        };
        assert!(status.identity().is_none());
        let Ok(init) = parse(&[BASE, &["init"]].concat()) else {
            panic!("init config")
        };
        assert_eq!(init.identity().map(|id| id.ordinal), Some(1));
    }

    #[test]
    fn missing_settings_are_named() {
        let err = parse(&["--hostname", "mysql-1", "--clone-token", "t", "init"])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "missing required setting --flavor (env MYSQL_STS_FLAVOR)"
        );
        let err = parse(&[
            "--flavor",
            "mariadb",
            "--hostname",
            "mysql-1",
            "--clone-token",
            "t",
            "init",
        ])
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "missing required setting --namespace (env MYSQL_STS_NAMESPACE)"
        );
        let err = parse(&[
            "--flavor",
            "mariadb",
            "--hostname",
            "mysql-1",
            "--namespace",
            "db",
            "init",
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("--clone-token-file"), "{err}");
        let args: Vec<&str> = BASE.iter().copied().chain(["sidecar"]).collect();
        assert!(
            parse(&args)
                .err()
                .unwrap()
                .to_string()
                .contains("--repl-password-file")
        );
    }

    #[test]
    fn bad_secrets_and_hostnames_are_refused() {
        let args: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["--clone-token-file", "/x", "init"])
            .collect();
        assert!(matches!(parse(&args), Err(ConfigError::Conflict { .. })));
        let err = parse(&[
            "--flavor",
            "mariadb",
            "--hostname",
            "mysql",
            "--namespace",
            "db",
            "--clone-token",
            "t",
            "init",
        ])
        .err()
        .unwrap();
        assert!(matches!(
            err,
            ConfigError::Identity(IdentityError::NoOrdinal(_))
        ));
        let err = parse(&[
            "--flavor",
            "mariadb",
            "--hostname",
            "mysql-0",
            "--namespace",
            "db",
            "--clone-token-file",
            "/nonexistent/x",
            "init",
        ])
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot read --clone-token-file /nonexistent/x"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_carries_no_secret() {
        const SECRETS: [&str; 4] = ["token-value", "clone-value", "admin-value", "repl-value"];
        let leaked = |debug: &str| -> Vec<&str> {
            SECRETS
                .into_iter()
                .filter(|secret| debug.contains(secret))
                .collect()
        };
        let sidecar = [
            "sidecar",
            "--admin-password",
            SECRETS[2],
            "--repl-password",
            SECRETS[3],
        ];
        for flavor in ["mariadb", "mysql"] {
            for sub in [&["init"][..], &sidecar, &["exec", "--", "true"]] {
                let common = [
                    "mysql-sts-agent",
                    "--flavor",
                    flavor,
                    "--hostname",
                    "mysql-1",
                    "--namespace",
                    "db",
                    "--cluster-domain",
                    "cluster.local",
                    "--clone-token",
                    SECRETS[0],
                    "--clone-password",
                    SECRETS[1],
                ];
                let cli = Cli::try_parse_from(common.iter().chain(sub)).expect("clap accepts");
                let debug = format!("{cli:?}");
                assert_eq!(leaked(&debug), [] as [&str; 0], "{debug}");
                let debug = match cli.validate_with(Path::new("/nonexistent")) {
                    Ok(Validated::Init(cfg) | Validated::Exec(cfg, _)) => format!("{cfg:?}"),
                    Ok(Validated::Sidecar(cfg)) => format!("{cfg:?}"),
                    Ok(Validated::Install { .. } | Validated::Status(_)) => {
                        unreachable!("only init, exec and sidecar here")
                    }
                    Err(e) => panic!("{flavor} {sub:?}: {e}"),
                };
                assert_eq!(leaked(&debug), [] as [&str; 0], "{debug}");
                assert!(debug.contains("Secret(***)"), "{debug}");
            }
        }
    }

    #[test]
    fn a_clone_token_that_cannot_be_a_header_value_is_refused() {
        let with_token = |token: &str| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("token");
            std::fs::write(&file, format!("{token}\n")).unwrap();
            // BASE but its inline token.
            let args: Vec<&str> = (BASE[..6].iter().copied())
                .chain(["--clone-token-file", file.to_str().unwrap(), "init"])
                .collect();
            parse(&args).map(|_| ())
        };
        assert!(with_token("to\"ken'\\ ;#=$w`%+/~ token").is_ok());
        for bad in [
            "tök-en-value",
            "tab\tinside",
            "bell\u{7}",
            " leading",
            "trailing ",
        ] {
            let err = with_token(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("--clone-token goes in an HTTP header"),
                "{err}"
            );
            assert!(!err.contains(bad.trim()), "{err}");
        }
    }

    #[test]
    fn a_secret_on_the_command_line_is_refused_at_any_level() {
        use clap::CommandFactory;
        let matches = |args: &[&str]| {
            Cli::command()
                .try_get_matches_from(["mysql-sts-agent"].iter().chain(args))
                .expect("clap accepts")
        };
        let refused = |args: &[&str]| {
            refuse_secrets_in_argv(&matches(args))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&["--clone-token", "t", "init"]),
            "--clone-token is a secret and is not accepted on the command line, which every \
             process can read: set MYSQL_STS_CLONE_TOKEN or --clone-token-file"
        );
        assert!(refused(&["init", "--clone-password", "p"]).starts_with("--clone-password "));
        assert!(refused(&["sidecar", "--repl-password", "r"]).contains("MYSQL_STS_REPL_PASSWORD"));
        assert!(refused(&["sidecar", "--admin-password", "a"]).contains("--admin-password-file"));
        assert!(refuse_secrets_in_argv(&matches(&["--clone-token-file", "/t", "init"])).is_ok());
    }
}
