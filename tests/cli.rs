//! Bad input and the decisions `init` makes without any peer: no root, no servers needed.

use std::process::{Command, Output};

fn agent(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mysql-sts-agent"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .expect("the agent runs")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

const VALID: &[(&str, &str)] = &[
    ("MYSQL_STS_FLAVOR", "mariadb"),
    ("MYSQL_STS_HOSTNAME", "mysql-0"),
    ("MYSQL_STS_NAMESPACE", "default"),
    ("MYSQL_STS_CLONE_TOKEN", "t0ken"),
    // Outside a pod: no kubelet-written search list to find it in.
    ("MYSQL_STS_CLUSTER_DOMAIN", "cluster.local"),
];

/// The valid environment, less `without`, plus `overrides`.
fn with(overrides: &[(&str, &str)], without: &[&str]) -> Vec<(String, String)> {
    VALID
        .iter()
        .filter(|(k, _)| !without.contains(k))
        .chain(overrides)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn hostname_without_ordinal_exits_64_with_one_line() {
    let out = agent(
        &["init"],
        &with(&[("MYSQL_STS_HOSTNAME", "mysql")], &["MYSQL_STS_HOSTNAME"]),
    );
    assert_eq!(out.status.code(), Some(64));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("hostname \"mysql\" does not end in -<ordinal>"),
        "{lines:?}"
    );
}

/// Env to set, env to leave out, and what the one error line must say.
type BadSetting<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

/// Each bad setting exits 64 with one line naming it.
#[test]
fn names_the_cluster_domain_and_the_first_ordinal_are_checked() {
    let cases: &[BadSetting] = &[
        (
            // This machine's resolv.conf has no search entry for a namespace no cluster has.
            &[("MYSQL_STS_NAMESPACE", "no-such-ns-here")],
            &["MYSQL_STS_CLUSTER_DOMAIN", "MYSQL_STS_NAMESPACE"],
            "cannot tell the cluster domain: /etc/resolv.conf's search list has no no-such-ns-here.svc.<domain> entry",
        ),
        (
            &[("MYSQL_STS_NAMESPACE", "Prod")],
            &["MYSQL_STS_NAMESPACE"],
            "the namespace (--namespace) \"Prod\" is not a valid DNS-1123 label",
        ),
        (
            &[("MYSQL_STS_SERVICE", "db\nlog_bin=x")],
            &[],
            "the service (--service) \"db\\nlog_bin=x\" is not a valid DNS-1123 label",
        ),
        (
            &[("MYSQL_STS_CLUSTER_DOMAIN", "cluster_local")],
            &["MYSQL_STS_CLUSTER_DOMAIN"],
            "the cluster domain \"cluster_local\" is not a valid DNS-1123 subdomain",
        ),
        (
            &[("MYSQL_STS_FIRST_ORDINAL", "1")],
            &[],
            "hostname \"mysql-0\" has ordinal 0, below the first ordinal 1",
        ),
    ];
    for (overrides, without, want) in cases {
        let out = agent(&["init"], &with(overrides, without));
        assert_eq!(out.status.code(), Some(64), "{overrides:?}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(want), "{lines:?} should say {want}");
    }
}

#[test]
fn missing_settings_are_named() {
    let out = agent(&["init"], &with(&[], &["MYSQL_STS_NAMESPACE"]));
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr_lines(&out),
        ["mysql-sts-agent: error: missing required setting --namespace (env MYSQL_STS_NAMESPACE)"]
    );
    let out = agent(&["init"], &with(&[], &["MYSQL_STS_CLONE_TOKEN"]));
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr_lines(&out)[0].contains("--clone-token-file (env MYSQL_STS_CLONE_TOKEN_FILE)"));
    let out = agent(&["sidecar"], &with(&[], &[]));
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr_lines(&out)[0].contains("--repl-password-file"));
    let out = agent(&["init"], &with(&[], &["MYSQL_STS_FLAVOR"]));
    assert_eq!(
        stderr_lines(&out),
        ["mysql-sts-agent: error: missing required setting --flavor (env MYSQL_STS_FLAVOR)"]
    );
    let out = agent(
        &["init"],
        &with(&[("MYSQL_STS_FLAVOR", "mysql")], &["MYSQL_STS_FLAVOR"]),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr_lines(&out)[0].contains("--clone-password-file (env MYSQL_STS_CLONE_PASSWORD_FILE)")
    );
    let out = agent(
        &["init"],
        &with(&[("MYSQL_STS_FLAVOR", "postgres")], &["MYSQL_STS_FLAVOR"]),
    );
    assert_eq!(out.status.code(), Some(64));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("postgres"), "{lines:?}");
}

#[test]
fn unknown_flags_and_bad_values_exit_64_with_one_line() {
    for args in [
        &["init", "--no-such-flag"][..],
        &["sidecar", "--max-lag", "soon"],
        &["init", "--donor-fallback-after", "later"],
        &["frobnicate"],
    ] {
        let out = agent(args, &with(&[], &[]));
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert_eq!(
            stderr_lines(&out).len(),
            1,
            "{args:?}: {:?}",
            stderr_lines(&out)
        );
    }
}

/// Runs `init` for mysql-0 on an empty datadir in a temp dir that also takes the fragment.
fn init_on_empty_primary(extra: (&str, &str)) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    std::fs::create_dir(&datadir).unwrap();
    let env = with(
        &[
            ("MYSQL_STS_DATADIR", datadir.to_str().unwrap()),
            ("MYSQL_STS_CONF_DIR", dir.path().to_str().unwrap()),
            extra,
        ],
        &[],
    );
    let out = agent(&["init"], &env);
    (dir, out)
}

#[test]
fn secrets_never_reach_the_logs() {
    let (_dir, out) = init_on_empty_primary(("MYSQL_STS_LOG", "debug"));
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("t0ken"));
}

#[test]
fn primary_with_empty_datadir_writes_its_fragment_and_leaves_init_to_the_server() {
    let (dir, out) = init_on_empty_primary(("MYSQL_STS_LOG_FORMAT", "json"));
    let datadir = dir.path().join("data");
    assert_eq!(out.status.code(), Some(0));
    let fragment = std::fs::read_to_string(dir.path().join("mysql-sts-agent.cnf")).unwrap();
    assert!(fragment.contains("server_id = 100\n") && fragment.contains("read_only = OFF\n"));
    assert_eq!(
        std::fs::read_dir(&datadir).unwrap().count(),
        0,
        "init wrote nothing into the datadir"
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    assert!(lines.len() > 2, "{logs}");
    for line in &lines {
        // The stable names every line has: the pod, and what happened.
        assert_eq!(line["ordinal"], 0, "{line}");
        assert_eq!(line["role"], "primary", "{line}");
        for name in ["timestamp", "level", "message"] {
            assert!(line[name].is_string(), "no {name} in {line}");
        }
    }
    let decision = lines.iter().find(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing to clone"))
    });
    assert!(decision.is_some(), "{logs}");
    let identity = lines.iter().find(|l| l["hostname"] == "mysql-0");
    assert!(
        identity.is_some_and(|l| l["server_id"] == 100 && l["fqdn"].is_string()),
        "{logs}"
    );
}

/// A port on 127.0.0.1 where nothing listens (the kernel gave it, and it was let go).
fn unused_local_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// `status` with no agent answering: a clone's progress file, else one line and exit 1. It
/// needs no flavor, namespace or secret, as in any container of the pod.
#[test]
fn status_without_an_agent_reads_a_clones_progress_or_says_it_cannot_tell() {
    let datadir = tempfile::tempdir().unwrap();
    let port = unused_local_port();
    let env: Vec<(String, String)> = [
        ("MYSQL_STS_DATADIR", datadir.path().to_str().unwrap()),
        ("MYSQL_STS_AGENT_PORT", port.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = agent(&["status"], &env);
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "mysql-sts-agent: cannot tell this pod's state: no agent answers on 127.0.0.1:{port} ("
        )) && lines[0].contains("no clone is in progress in "),
        "{lines:?}"
    );

    let staging = datadir.path().join(".mysql-sts-agent-clone");
    std::fs::create_dir(&staging).unwrap();
    let mib = 1024 * 1024;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let progress = serde_json::json!({
        "hostname": "mysql-1", "phase": "cloning", "donor": "mysql-0.mysql.db.svc.cluster.local",
        "donor_attempt": 1, "bytes": 412 * mib, "estimated_total_bytes": 806 * mib,
        "mib_per_s": 160.0, "eta_secs": 3, "started_unix": now, "updated_unix": now
    });
    std::fs::write(staging.join("progress.json"), progress.to_string()).unwrap();
    let out = agent(&["status"], &env);
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "mysql-1  cloning from mysql-0: 412 MiB of ~806 MiB (estimate), 160.0 MiB/s, ETA 3s\n"
        ),
        "{stdout}"
    );
    let out = agent(&["status", "--json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clone_progress"]["bytes"], 412 * mib);

    std::fs::write(staging.join("progress.json"), "{\"phase\":").unwrap();
    let out = agent(&["status"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_lines(&out)[0].contains("the clone's progress file is unreadable: "),
        "{:?}",
        stderr_lines(&out)
    );
}

#[test]
fn install_copies_the_binary_once_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    let first = agent(&["install", target], &[]);
    assert_eq!(first.status.code(), Some(0), "{:?}", stderr_lines(&first));
    let copy = dir.path().join("mysql-sts-agent");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_mysql-sts-agent")).unwrap()
    );
    // The copy runs, and a second install leaves it alone.
    let version = Command::new(&copy).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("mysql-sts-agent "));
    let second = agent(&["install", target], &[]);
    assert_eq!(second.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already installed"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
    let missing = agent(&["install", "/nonexistent/dir"], &[]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn check_validates_without_acting() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    let env = with(
        &[
            ("MYSQL_STS_DATADIR", datadir.to_str().unwrap()),
            ("MYSQL_STS_HOSTNAME", "mysql-2"),
        ],
        &["MYSQL_STS_HOSTNAME"],
    );
    let out = agent(&["--check", "init"], &env);
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("mysql-sts-agent: configuration is valid: init for mysql-2")
            && stdout.contains("clones mysql-1.mysql.default.svc.cluster.local:8080")
            && stdout
                .contains("falls back to another healthy replica, then the primary, after 30.0s"),
        "{stdout}"
    );
    assert!(!stdout.contains("t0ken"), "{stdout}");
    assert!(!datadir.exists(), "--check must not touch the datadir");
    let bad = agent(&["--check", "sidecar"], &env);
    assert_eq!(bad.status.code(), Some(64));
    assert!(stderr_lines(&bad)[0].contains("--repl-password-file"));
}

/// Without a pending re-clone, `exec` runs the entrypoint in its own place: the exit code is
/// the entrypoint's. Without an entrypoint it is bad input.
#[test]
fn exec_runs_the_entrypoint_in_its_place_and_needs_one() {
    let datadir = tempfile::tempdir().unwrap();
    let dir = datadir.path().to_str().unwrap();
    let env = with(
        &[
            ("MYSQL_STS_DATADIR", dir),
            ("MYSQL_STS_HOSTNAME", "mysql-1"),
        ],
        &[],
    );
    let out = agent(&["exec", "--", "sh", "-c", "echo entrypoint; exit 7"], &env);
    assert_eq!(out.status.code(), Some(7), "{:?}", stderr_lines(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "entrypoint");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no re-clone pending"),
        "{:?}",
        stderr_lines(&out)
    );

    let out = agent(&["exec"], &env);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(stderr_lines(&out).len(), 1, "{:?}", stderr_lines(&out));

    let out = agent(&["exec", "--", "/no/such/entrypoint"], &env);
    assert_eq!(out.status.code(), Some(126));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot run"),
        "{:?}",
        stderr_lines(&out)
    );
}

/// A secret on the command line (readable by every process in /proc) exits 64 with one line;
/// the same value from the environment is accepted.
#[test]
fn secrets_are_refused_on_the_command_line() {
    let out = agent(
        &["--check", "--clone-token", "t0ken", "init"],
        &with(&[], &["MYSQL_STS_CLONE_TOKEN"]),
    );
    assert_eq!(out.status.code(), Some(64));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("--clone-token is a secret and is not accepted on the command line"),
        "{lines:?}"
    );
    assert!(!lines[0].contains("t0ken"), "{lines:?}");
    let out = agent(&["--check", "init"], &with(&[], &[]));
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
}

/// MariaDB without a clone token: only with the explicit insecure setting, which the agent
/// warns about once; with a token as well, the two contradict each other.
#[test]
fn clones_without_a_token_need_the_insecure_setting_and_are_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    std::fs::create_dir(&datadir).unwrap();
    let paths = [
        ("MYSQL_STS_DATADIR", datadir.to_str().unwrap()),
        ("MYSQL_STS_CONF_DIR", dir.path().to_str().unwrap()),
    ];
    let insecure = ("MYSQL_STS_CLONE_INSECURE_NO_TOKEN", "true");
    let out = agent(
        &["init"],
        &with(
            &[&paths[..], &[insecure]].concat(),
            &["MYSQL_STS_CLONE_TOKEN"],
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let warnings: Vec<String> = stderr_lines(&out)
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("--clone-insecure-no-token"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", stderr_lines(&out));
    assert!(
        warnings[0].contains(
            "without a token; anything that reaches the peer port can copy the whole database"
        ),
        "{warnings:?}"
    );

    let out = agent(&["init"], &with(&[&paths[..], &[insecure]].concat(), &[]));
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr_lines(&out),
        ["mysql-sts-agent: error: --clone-insecure-no-token with a clone token set: remove one"]
    );
}
