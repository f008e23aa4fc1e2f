//! Proves the harness itself (no agent needed): pod networking, DNS and hostnames, a real
//! MariaDB server, the node-namespace probe path, traffic shaping, and complete cleanup.

mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{Cluster, ClusterSpec, list_netns};
use mysql_async::prelude::Queryable;

fn two_pod_spec() -> ClusterSpec {
    ClusterSpec::new(PathBuf::from(env!("CARGO_BIN_EXE_mysql-sts-agent")), 2)
}

async fn check_dns_and_hostname(cluster: &mut Cluster) {
    cluster.create_pod(0).await.expect("create pod 0");
    cluster.create_pod(1).await.expect("create pod 1");
    let short = cluster.resolve(1, "mysql-0.mysql").await.expect("resolve");
    assert_eq!(short, [cluster.pod_ip(0)], "mysql-0.mysql from pod 1");
    let full = cluster
        .resolve(1, "mysql-1.mysql.default.svc.cluster.local")
        .await
        .expect("resolve");
    assert_eq!(full, [cluster.pod_ip(1)], "own FQDN from pod 1");
    let service = cluster
        .resolve(1, "mysql.default.svc.cluster.local")
        .await
        .expect("resolve");
    assert!(service.contains(&cluster.pod_ip(0)) && service.contains(&cluster.pod_ip(1)));
    let hostname = cluster
        .exec_in_pod(1, &["hostname"])
        .await
        .expect("hostname");
    assert_eq!(hostname.trim(), "mysql-1");
}

async fn check_server(cluster: &mut Cluster) {
    cluster.start_server(0).await.expect("start server 0");
    let mut conn = cluster.sql(0).await.expect("root with the admin password");
    let hostname: Option<String> = conn.query_first("SELECT @@hostname").await.unwrap();
    assert_eq!(hostname.as_deref(), Some("mysql-0"));
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
    let mut cluster = Cluster::new(two_pod_spec()).await.expect("cluster");
    check_dns_and_hostname(&mut cluster).await;
    check_server(&mut cluster).await;
    check_probe_path_and_throttle(&mut cluster).await;

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
