//! Proves the harness itself: pod networking, DNS and hostnames, real MariaDB and MySQL servers,
//! the node-namespace probe path, traffic shaping, complete cleanup, and the strictness of a
//! cluster: processes run as their securityContext says, inside read-only image chroots, on
//! volumes owned as provisioners and the kubelet make them.

mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::kubelet::{Prober, Status};
use harness::mapping::{HttpProbe, ProbeAction, ProbeSpec, Probes};
use harness::{
    Cluster, ClusterSpec, Credentials, DbVersion, Flavor, Naming, VolumeLayout, list_netns,
};
use mysql_async::prelude::Queryable;

fn two_pod_spec() -> ClusterSpec {
    ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent")), 2)
}

/// Names nothing defaults: the pods' hostnames, DNS and resolv.conf follow them.
fn renamed() -> Naming {
    Naming::default()
        .statefulset("billing-db")
        .service("billing-db-hl")
        .namespace("shop")
        .cluster_domain("k8s.example.net")
        .first_ordinal(10)
}

async fn check_dns_and_hostname(cluster: &mut Cluster) {
    cluster.create_pod(0).await.expect("create pod 0");
    cluster.create_pod(1).await.expect("create pod 1");
    let short = cluster
        .resolve(1, "billing-db-10.billing-db-hl")
        .await
        .expect("resolve");
    assert_eq!(
        short,
        [cluster.pod_ip(0)],
        "the primary's short name from pod 1"
    );
    let full = cluster
        .resolve(1, "billing-db-11.billing-db-hl.shop.svc.k8s.example.net")
        .await
        .expect("resolve");
    assert_eq!(full, [cluster.pod_ip(1)], "own FQDN from pod 1");
    let service = cluster
        .resolve(1, "billing-db-hl.shop.svc.k8s.example.net")
        .await
        .expect("resolve");
    assert!(service.contains(&cluster.pod_ip(0)) && service.contains(&cluster.pod_ip(1)));
    let hostname = cluster
        .exec_in_pod(1, &["hostname"])
        .await
        .expect("hostname");
    assert_eq!(hostname.trim(), "billing-db-11");
    let resolv = cluster
        .exec_in_pod(1, &["cat", "/etc/resolv.conf"])
        .await
        .expect("resolv.conf");
    assert!(
        resolv.contains("search shop.svc.k8s.example.net svc.k8s.example.net k8s.example.net\n")
            && resolv.contains("options ndots:5"),
        "{resolv}"
    );
}

async fn check_server(cluster: &mut Cluster) {
    cluster.start_server(0).await.expect("start server 0");
    let mut conn = cluster.sql(0).await.expect("root with the admin password");
    let hostname: Option<String> = conn.query_first("SELECT @@hostname").await.unwrap();
    assert_eq!(hostname, Some(cluster.naming().hostname(0)));
    conn.query_drop("CREATE DATABASE selftest").await.unwrap();
    conn.query_drop("CREATE TABLE selftest.t (id INT PRIMARY KEY, note TEXT)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO selftest.t VALUES (1, 'written by the harness self-test')")
        .await
        .unwrap();
    let count: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM selftest.t")
        .await
        .unwrap();
    assert_eq!(count, Some(1));
    conn.disconnect().await.unwrap();
}

/// A throwaway HTTP server on pod 0's agent port proves the kubelet's probe path.
async fn check_probe_path_and_throttle(cluster: &mut Cluster) {
    let docroot = cluster.pod_dir(0).join("logs");
    let mut listener = cluster.pod_command(0, "python3");
    listener
        .args([
            "-m",
            "http.server",
            "8080",
            "--bind",
            "0.0.0.0",
            "--directory",
        ])
        .arg(&docroot);
    cluster
        .spawn_in_pod(0, "http-server", listener)
        .expect("spawn listener");
    cluster
        .wait_readyz_path(0, "/", 200, Duration::from_secs(20))
        .await
        .expect("listener answers");
    let reply = cluster.http_get(0, "/", None).await.expect("GET /");
    assert_eq!(reply.status, 200, "{}", reply.text());
    cluster.throttle(0, Some("8mbit")).await.expect("throttle");
    cluster.throttle(0, None).await.expect("unthrottle");
    cluster.throttle(0, None).await.expect("unthrottle twice");
}

/// The kubelet's prober against a listener that comes up after a moment: readiness waits for the
/// startupProbe and then runs at once (not at its next period); a liveness probe that keeps
/// failing marks the container failed after failureThreshold periods.
async fn check_kubelet(cluster: &mut Cluster) {
    let probe = |action, period, failure_threshold| ProbeSpec {
        action,
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(period),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold,
    };
    let http = ProbeAction::Http(HttpProbe {
        path: "/".into(),
        port: 8081,
    });
    let probes = Probes {
        startup: Some(probe(ProbeAction::Tcp(8081), 1, 30)),
        readiness: Some(probe(http, 30, 1)),
        // Nothing listens on port 9.
        liveness: Some(probe(ProbeAction::Tcp(9), 1, 2)),
    };
    let started = Instant::now();
    let ip = cluster.pod_ip(1).into();
    let prober = Prober::start("web", &probes, &cluster.node_ns(), ip, started).expect("prober");
    let mut listener = cluster.pod_command(1, "python3");
    let docroot = cluster.pod_dir(1).join("logs");
    listener
        .args(["-m", "http.server", "8081", "--directory"])
        .arg(&docroot);
    cluster
        .spawn_in_pod(1, "http-server", listener)
        .expect("spawn listener");
    assert!(reaches(&prober, |s| s.ready).await, "{}", prober.history());
    let ready_after = started.elapsed();
    assert!(
        ready_after < Duration::from_secs(10),
        "Ready after {ready_after:?}, not at once after the startupProbe:\n{}",
        prober.history()
    );
    assert!(
        reaches(&prober, |s| s.failed.is_some()).await,
        "{}",
        prober.history()
    );
    let history = prober.history();
    assert!(
        history.contains("Startup: connected to :8081")
            && history.contains("Readiness: GET /: 200")
            && history.contains("Liveness: connect :9"),
        "{history}"
    );
    let failed = prober.stop().expect("the liveness failure");
    assert!(failed.contains("Liveness probe failed 2 times"), "{failed}");
}

/// Whether the prober's status satisfies `wanted` within 20 s.
async fn reaches(prober: &Prober, wanted: impl FnMut(&Status) -> bool) -> bool {
    let mut status = prober.status();
    let reached = tokio::time::timeout(Duration::from_secs(20), status.wait_for(wanted)).await;
    matches!(reached, Ok(Ok(_)))
}

fn assert_cleaned_up(namespaces: &[String], root: &Path, processes: &[harness::ProcessInfo]) {
    let listed = list_netns();
    for ns in namespaces {
        assert!(!listed.contains(ns), "netns {ns} survived the drop");
        assert!(
            !Path::new("/etc/netns").join(ns).exists(),
            "/etc/netns/{ns} survived the drop"
        );
    }
    if std::env::var_os("MSA_KEEP").is_none() {
        assert!(!root.exists(), "{} survived the drop", root.display());
    }
    assert!(!processes.is_empty());
    for process in processes {
        assert!(
            !process.is_alive(),
            "{} (pid {}) survived the drop",
            process.name,
            process.id.pid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_simulates_pods_and_cleans_up() {
    let spec = two_pod_spec().names(renamed());
    let mut cluster = Cluster::new(spec).await.expect("cluster");
    check_dns_and_hostname(&mut cluster).await;
    check_server(&mut cluster).await;
    check_probe_path_and_throttle(&mut cluster).await;
    check_kubelet(&mut cluster).await;

    let namespaces = cluster.namespaces();
    assert_eq!(namespaces.len(), 3, "node + 2 pods: {namespaces:?}");
    let root = cluster.root_dir().to_owned();
    let processes = cluster.started_processes();
    drop(cluster);
    assert_cleaned_up(&namespaces, &root, &processes);
}

/// Several clusters in one process (parallel tests) share a subnet but never a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_in_one_process_are_isolated() {
    let spec = || ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent")), 1);
    let (first, second) = tokio::join!(Cluster::new(spec()), Cluster::new(spec()));
    let (mut first, mut second) = (first.expect("first cluster"), second.expect("second"));
    let second_namespaces = second.namespaces();
    assert!(
        first
            .namespaces()
            .iter()
            .all(|ns| !second_namespaces.contains(ns))
    );
    let (created_first, created_second) = tokio::join!(first.create_pod(0), second.create_pod(0));
    created_first.expect("pod 0 of the first cluster");
    created_second.expect("pod 0 of the second cluster");
    for cluster in [&first, &second] {
        let service = cluster
            .resolve(0, "mysql.default.svc.cluster.local")
            .await
            .expect("resolve");
        assert_eq!(service, [cluster.pod_ip(0)]);
    }
}

/// A scenario that fails with `Err` (not a panic) still keeps its logs for debugging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scenario_keeps_its_logs() {
    let spec = ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent")), 1);
    let mut root = PathBuf::new();
    let outcome = Cluster::run_scenario(spec, async |cluster| {
        root = cluster.root_dir().to_owned();
        anyhow::bail!("deliberate failure")
    })
    .await;
    assert!(outcome.is_err());
    assert!(
        root.join("logs/dnsmasq.log").exists(),
        "logs of {} were removed",
        root.display()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Mounts anywhere under `dir` in the test's (the host's) mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|point| Path::new(point).starts_with(dir))
        })
        .map(str::to_owned)
        .collect()
}

async fn check_mysql_server(cluster: &Cluster, n: usize) {
    let mut conn = cluster.sql(n).await.expect("root with the admin password");
    let hostname: Option<String> = conn.query_first("SELECT @@hostname").await.unwrap();
    assert_eq!(hostname, Some(format!("mysql-{n}")));
    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    assert!(version.starts_with("9."), "pod {n} runs {version}");
    conn.disconnect().await.unwrap();
    // The tracked PID is mysqld's own (every wrapper execs): it wrote it in its pid file.
    let pid = cluster.server_pid(n).expect("server runs");
    let pid_file = cluster.pod_dir(n).join("run/mysqld.pid");
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), pid.to_string());
    // The template's runAsUser, inside the chroot.
    assert_eq!(Credentials::of(pid).unwrap().uid, 999);
}

/// From inside pod 1's chroot: pod 0's stable name resolves through the cluster DNS, and the
/// chroot's client reaches pod 0's mysqld over TCP by that name.
async fn check_mysql_pod_to_pod(cluster: &Cluster) {
    let fqdn = "mysql-0.mysql.default.svc.cluster.local";
    let hosts = cluster
        .exec_in_chroot(1, &["getent", "hosts", fqdn])
        .await
        .expect("getent in pod 1's chroot");
    let address = hosts.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        address,
        cluster.pod_ip(0).to_string(),
        "getent said {hosts:?}"
    );
    let password = format!("-p{}", cluster.admin_password().expect("root password"));
    let hostname = cluster
        .exec_in_chroot(
            1,
            &[
                "mysql",
                "--no-defaults",
                "-h",
                fqdn,
                "-P",
                "3306",
                "-uroot",
                &password,
                "-N",
                "-B",
                "-e",
                "SELECT @@hostname",
            ],
        )
        .await
        .expect("mysql client in pod 1 to pod 0");
    assert_eq!(hostname.trim(), "mysql-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_servers_run_from_the_chroot_in_their_pods() {
    let spec = two_pod_spec().flavor(Flavor::MySql);
    let mut cluster = Cluster::new(spec).await.expect("MySQL cluster");
    assert_eq!(cluster.flavor(), Flavor::MySql);
    let chroot = cluster
        .chroot()
        .expect("a MySQL cluster's chroot")
        .to_owned();
    for n in 0..2 {
        cluster.create_pod(n).await.expect("create pod");
        cluster.start_server(n).await.expect("start server");
    }
    for n in 0..2 {
        check_mysql_server(&cluster, n).await;
    }
    // The pods' mounts over the shared chroot live in their own mount namespaces.
    assert_eq!(mounts_under(&chroot), Vec::<String>::new());
    check_mysql_pod_to_pod(&cluster).await;

    // A killed server is gone at once; started again, it recovers its data without initializing.
    let pid = cluster.server_pid(1).expect("server 1 runs");
    cluster.kill_server(1).await.expect("kill server 1");
    assert!(harness::ProcId::of(pid).is_none_or(|proc| !proc.is_alive()));
    cluster.start_server(1).await.expect("restart server 1");
    check_mysql_server(&cluster, 1).await;
    let logs = cluster.pod_dir(1).join("logs");
    assert!(logs.join("mysqld-2.log").exists() && !logs.join("initialize-2.log").exists());

    let namespaces = cluster.namespaces();
    let root = cluster.root_dir().to_owned();
    let processes = cluster.started_processes();
    drop(cluster);
    assert_cleaned_up(&namespaces, &root, &processes);
    assert_eq!(mounts_under(&chroot), Vec::<String>::new());
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

/// CAP_SYS_ADMIN: never in a container runtime's default set.
const CAP_SYS_ADMIN: u64 = 1 << 21;
/// CAP_CHOWN: in the default set.
const CAP_CHOWN: u64 = 1;

/// The template's securityContext as the kubelet applies it, in the MariaDB 11.8 chroot on the
/// common volumes: the agent and the server run as 999 with no capabilities and no_new_privs,
/// inside the image (whose root is read-only), on volumes of group fsGroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_as_the_template_says_on_fs_group_volumes() {
    let spec = ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent")), 1)
        .version(DbVersion::MariaDb11_8);
    let mut cluster = Cluster::new(spec).await.expect("MariaDB 11.8 cluster");
    assert_eq!(cluster.version(), DbVersion::MariaDb11_8);
    cluster.start_pod(0).await.expect("pod 0 starts");
    let chroot = cluster.chroot().expect("a chroot image").to_owned();
    for (what, pid) in [
        ("agent", cluster.sidecar_pid(0).expect("sidecar runs")),
        ("server", cluster.server_pid(0).expect("server runs")),
    ] {
        let credentials = Credentials::of(pid).expect("credentials");
        assert_eq!(
            (
                credentials.uid,
                credentials.gid,
                credentials.groups.as_slice()
            ),
            (999, 999, &[999][..]),
            "{what}"
        );
        assert_eq!(credentials.cap_eff, 0, "{what}'s effective capabilities");
        assert!(credentials.no_new_privs, "{what} may gain privileges");
        let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
        assert_eq!(root, chroot, "{what} runs inside the image");
    }
    let mut conn = cluster.sql(0).await.expect("root session");
    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    assert!(version.starts_with("11.8."), "{version}");
    conn.disconnect().await.unwrap();

    // Volumes: the claim and the emptyDirs get group fsGroup; the Secret's files are root's,
    // readable by the group only, each key a link through `..data` as the kubelet writes them.
    let pod = cluster.pod_dir(0);
    assert_eq!(mode_and_owner(&cluster.datadir(0)), (0o2775, 0, 999));
    for empty_dir in ["run", "tmp", "conf.d", "agent-bin"] {
        assert_eq!(
            mode_and_owner(&pod.join(empty_dir)),
            (0o2777, 0, 999),
            "{empty_dir}"
        );
    }
    let secrets = cluster.root_dir().join("secrets");
    for secret in std::fs::read_dir(secrets.join("..data")).unwrap() {
        let secret = secret.unwrap();
        assert_eq!(mode_and_owner(&secret.path()), (0o440, 0, 999));
        let link = std::fs::read_link(secrets.join(secret.file_name())).unwrap();
        assert_eq!(link, Path::new("..data").join(secret.file_name()));
    }
    // The shared chroot is read-only, even for root in a pod.
    let write = cluster
        .exec_in_chroot(0, &["touch", "/usr/msa-selftest"])
        .await;
    assert!(
        write.is_err_and(|error| format!("{error:#}").contains("Read-only file system")),
        "the chroot is writable"
    );
    assert!(!chroot.join("usr/msa-selftest").exists());
}

/// The template without securityContext: containers run as root with the runtime's default
/// capabilities, the server as the image's mysql user, to whom the entrypoint gives the datadir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_template_runs_the_server_as_the_images_mysql_user() {
    let spec = two_pod_spec().volumes(VolumeLayout::RootTemplate);
    let mut cluster = Cluster::new(spec).await.expect("cluster");
    cluster.create_pod(0).await.expect("create pod 0");
    assert_eq!(mode_and_owner(&cluster.datadir(0)), (0o755, 0, 0));
    cluster.start_server(0).await.expect("server starts");
    cluster.start_sidecar(0).await.expect("sidecar starts");
    let mysql = harness::layout::passwd_user(Path::new("/"), "mysql").expect("host mysql user");
    let server = Credentials::of(cluster.server_pid(0).unwrap()).unwrap();
    assert_eq!((server.uid, server.gid), mysql);
    let (_, uid, gid) = mode_and_owner(&cluster.datadir(0));
    assert_eq!(
        (uid, gid),
        mysql,
        "the entrypoint gives the datadir to mysql"
    );
    // Until the agent answers, its PID may still be a launcher's (ip, nsenter, setpriv).
    cluster
        .wait_readyz_path(0, "/livez", 200, Duration::from_secs(20))
        .await
        .expect("the agent answers");
    let agent = Credentials::of(cluster.sidecar_pid(0).unwrap()).unwrap();
    assert_eq!((agent.uid, agent.no_new_privs), (0, false));
    assert_eq!(agent.cap_eff & CAP_SYS_ADMIN, 0, "{:x}", agent.cap_eff);
    assert_ne!(agent.cap_eff & CAP_CHOWN, 0, "{:x}", agent.cap_eff);
}

/// Each layout's data volume root, as the provisioner hands it out and the kubelet mounts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_volume_layout_provisions_its_data_volume() {
    for (layout, want) in [
        (VolumeLayout::FsGroup, (0o2775, 0, 999)),
        (VolumeLayout::PodUid, (0o755, 999, 999)),
        (VolumeLayout::HostPath, (0o777, 0, 0)),
        (VolumeLayout::RootTemplate, (0o755, 0, 0)),
    ] {
        let spec = ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent")), 1)
            .volumes(layout);
        let mut cluster = Cluster::new(spec).await.expect("cluster");
        cluster.create_pod(0).await.expect("create pod 0");
        assert_eq!(mode_and_owner(&cluster.datadir(0)), want, "{layout:?}");
    }
}

/// fsGroupChangePolicy: OnRootMismatch walks the volume only when its root is off; Always walks
/// it at every mount.
#[test]
fn fs_group_is_applied_per_change_policy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut ownership = harness::volumes::Ownership {
        layout: VolumeLayout::FsGroup,
        fs_group: Some(999),
        always: false,
        pod_user: (999, 999),
    };
    ownership.provision_claim(&data).unwrap();
    std::fs::create_dir(data.join("sub")).unwrap();
    let file = data.join("sub/file");
    std::fs::write(&file, "x").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    ownership.mount_claim(&data).unwrap();
    assert_eq!(mode_and_owner(&data), (0o2775, 0, 999));
    assert_eq!(mode_and_owner(&data.join("sub")), (0o2775, 0, 999));
    assert_eq!(mode_and_owner(&file), (0o660, 0, 999));

    std::os::unix::fs::lchown(&file, None, Some(0)).unwrap();
    ownership.mount_claim(&data).unwrap();
    assert_eq!(
        mode_and_owner(&file).2,
        0,
        "OnRootMismatch walked a matching root"
    );
    ownership.always = true;
    ownership.mount_claim(&data).unwrap();
    assert_eq!(mode_and_owner(&file).2, 999, "Always did not walk");
}

/// What the kubelet refuses, and how fields combine.
#[test]
fn security_contexts_resolve_as_the_kubelet_does() {
    use harness::manifest::{Capabilities, PodSecurityContext, SecurityContext};
    use harness::security::RunAs;
    let non_root = PodSecurityContext {
        run_as_non_root: Some(true),
        ..Default::default()
    };
    let refused = RunAs::resolve(Some(&non_root), None).unwrap_err();
    assert!(format!("{refused}").contains("runAsNonRoot"), "{refused}");
    let pod = PodSecurityContext {
        run_as_user: Some(999),
        fs_group: Some(999),
        supplemental_groups: vec![5],
        ..non_root
    };
    let container = SecurityContext {
        run_as_group: Some(7),
        allow_privilege_escalation: Some(false),
        ..Default::default()
    };
    let run_as = RunAs::resolve(Some(&pod), Some(&container)).unwrap();
    assert_eq!(
        (
            run_as.uid,
            run_as.gid,
            run_as.groups.as_slice(),
            run_as.no_new_privs
        ),
        (999, 7, &[999, 5][..], true)
    );
    assert!(run_as.capabilities.is_empty());
    let dropped = SecurityContext {
        capabilities: Some(Capabilities {
            add: vec!["NET_ADMIN".into()],
            drop: vec!["ALL".into()],
        }),
        ..Default::default()
    };
    let root = RunAs::resolve(None, Some(&dropped)).unwrap();
    assert_eq!(
        (root.uid, root.capabilities.as_slice()),
        (0, &["net_admin".to_owned()][..])
    );
}
