//! Names, addresses and the on-disk layout of a cluster.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 250, 1);
pub const SUBNET_BITS: u8 = 24;
/// Pod IPs are 169.254.250.(10+N) and must stay below the broadcast address.
pub const MAX_PODS: usize = 200;

pub fn pod_ip(n: usize) -> Ipv4Addr {
    assert!(n < MAX_PODS, "pod ordinal {n} out of range");
    let [a, b, c, _] = BRIDGE_IP.octets();
    Ipv4Addr::new(a, b, c, 10 + n as u8)
}

/// The names Kubernetes gives a StatefulSet's pods, and where they are: the StatefulSet's name,
/// its serviceName, its namespace, the cluster's DNS domain and `spec.ordinals.start`. Harness pod
/// index n (0..pods) is ordinal `first_ordinal + n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    pub statefulset: String,
    /// The headless Service that names the pods (the StatefulSet's serviceName).
    pub service: String,
    pub namespace: String,
    /// Not in any manifest: the kubelet writes it into the pods' resolv.conf.
    pub cluster_domain: String,
    pub first_ordinal: u32,
}

/// What the shipped manifests and a default cluster give: `mysql-0.mysql.default.svc.cluster.local`.
impl Default for Naming {
    fn default() -> Self {
        Naming {
            statefulset: "mysql".into(),
            service: "mysql".into(),
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
            first_ordinal: 0,
        }
    }
}

impl Naming {
    pub fn statefulset(mut self, name: &str) -> Self {
        self.statefulset = name.into();
        self
    }

    pub fn service(mut self, name: &str) -> Self {
        self.service = name.into();
        self
    }

    pub fn namespace(mut self, name: &str) -> Self {
        self.namespace = name.into();
        self
    }

    pub fn cluster_domain(mut self, domain: &str) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    pub fn first_ordinal(mut self, start: u32) -> Self {
        self.first_ordinal = start;
        self
    }

    /// The ordinal of harness pod n.
    pub fn ordinal(&self, n: usize) -> u32 {
        self.first_ordinal + u32::try_from(n).expect("a pod index fits in u32")
    }

    /// Pod n's name and hostname, e.g. "mysql-1".
    pub fn hostname(&self, n: usize) -> String {
        format!("{}-{}", self.statefulset, self.ordinal(n))
    }

    /// "mysql-1.mysql": what the search list completes.
    pub fn short_name(&self, n: usize) -> String {
        format!("{}.{}", self.hostname(n), self.service)
    }

    pub fn pod_fqdn(&self, n: usize) -> String {
        format!("{}.{}", self.hostname(n), self.service_fqdn())
    }

    /// The headless service's name, which resolves to every pod.
    pub fn service_fqdn(&self) -> String {
        format!("{}.{}", self.service, self.namespace_domain())
    }

    /// The pods' resolv.conf search list, as the kubelet writes it.
    pub fn search_domains(&self) -> String {
        let domain = &self.cluster_domain;
        format!("{} svc.{domain} {domain}", self.namespace_domain())
    }

    fn namespace_domain(&self) -> String {
        format!("{}.svc.{}", self.namespace, self.cluster_domain)
    }
}

/// Identifies one cluster across processes: `msa<pid>x<k>` prefixes all of its names,
/// so the stale sweep can tell from a name whether its creator is still alive.
#[derive(Clone, Debug)]
pub struct ClusterId {
    pub pid: u32,
    pub k: u32,
}

impl ClusterId {
    pub fn next() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        ClusterId {
            pid: std::process::id(),
            k: COUNTER.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn prefix(&self) -> String {
        format!("msa{}x{}", self.pid, self.k)
    }

    pub fn node_ns(&self) -> String {
        format!("{}n", self.prefix())
    }

    pub fn pod_ns(&self, n: usize) -> String {
        format!("{}p{n}", self.prefix())
    }

    /// The creator PID embedded in a name made by `prefix()`, e.g. "msa123x4p1" -> 123.
    pub fn creator_of(name: &str) -> Option<u32> {
        let (pid, _) = name.strip_prefix("msa")?.split_once('x')?;
        pid.parse().ok()
    }
}

/// The files of one pod under `<root>/pod<N>`.
#[derive(Clone, Debug)]
pub struct PodPaths {
    pub dir: PathBuf,
}

impl PodPaths {
    pub fn new(root: &Path, n: usize) -> Self {
        PodPaths {
            dir: root.join(format!("pod{n}")),
        }
    }

    /// The volume: the datadir.
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn conf_d(&self) -> PathBuf {
        self.dir.join("conf.d")
    }
    /// Where the install container copies the agent.
    pub fn agent_bin(&self) -> PathBuf {
        self.dir.join("agent-bin")
    }
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// The server's own log dir (error.log).
    pub fn server_log(&self) -> PathBuf {
        self.dir.join("log")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    /// The `tls` Secret volume (`k8s/tls`): the pod's projection of the certificate.
    pub fn tls(&self) -> PathBuf {
        self.dir.join("tls")
    }
    /// The harness's log files of this pod's processes.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn my_cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }
    /// Wrapper scripts the pod runs (MySQL: `mysqld`).
    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }
    /// The MySQL pod's mysqld, which runs the chroot's with this pod's my.cnf.
    pub fn mysqld(&self) -> PathBuf {
        self.bin().join("mysqld")
    }
    pub fn error_log(&self) -> PathBuf {
        self.server_log().join("error.log")
    }
    /// Bind mount that keeps the pod's UTS namespace (its hostname) alive.
    pub fn uts_file(&self) -> PathBuf {
        self.dir.join("uts")
    }
}

/// uid and gid of user `name` in `<root>/etc/passwd` (root "/": the host's).
pub fn passwd_user(root: &Path, name: &str) -> Result<(u32, u32)> {
    let file = root.join("etc/passwd");
    let passwd =
        fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .with_context(|| format!("no user {name} in {}", file.display()))
}

/// `find DIR ! -user UID -exec chown UID[:GID] {} +`: what the official images' entrypoints do
/// to the datadir as root. Symlinks themselves are changed, not followed.
pub fn chown_not_owned(dir: &Path, uid: u32, gid: Option<u32>) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, lchown};
    let metadata = fs::symlink_metadata(dir)?;
    if metadata.uid() != uid {
        lchown(dir, Some(uid), gid).with_context(|| format!("chown {}", dir.display()))?;
    }
    if metadata.is_dir() {
        for entry in fs::read_dir(dir)? {
            chown_not_owned(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

pub fn make_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// The harness's own dirs of a pod (root's): the volumes are `volumes.rs`'s. The server's log
/// dir is open to whatever user the server runs as, like /tmp.
pub fn make_pod_dirs(pod: &PodPaths) -> Result<()> {
    make_dirs(&[pod.dir.clone(), pod.logs(), pod.bin()])?;
    make_dir(&pod.server_log(), 0o1777, None)
}

pub fn make_dirs(dirs: &[PathBuf]) -> Result<()> {
    dirs.iter().try_for_each(|dir| make_dir(dir, 0o755, None))
}

/// Writes `contents` to a new file with `mode` (no trailing newline added).
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// A secret file's content as the agent and the images read it: a trailing newline dropped.
pub fn read_secret(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading the secret file {}", path.display()))?
        .trim_end_matches(['\n', '\r'])
        .to_owned())
}

/// A random alphanumeric secret.
pub fn random_secret(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect())
}
