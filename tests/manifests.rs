//! The manifests in k8s/, checked without a cluster (no root, no servers): each overlay builds;
//! every container that runs the agent passes `--check` with the args and env the template gives
//! it, under the harness's mapping (`tests/harness/mapping.rs`); what the agent resolves agrees
//! with what the database container mounts and declares; the probes, the headless Service and
//! the StatefulSet's policy are what the agent relies on. Each check runs on the shipped overlays
//! and on overlays the harness generates on top of them under other names, with
//! `spec.ordinals.start` set.

mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use harness::layout::{self, Naming, PodPaths};
use harness::manifest::{self, Manifest, Probe};
use harness::mapping::{
    self, CHECK_VALID, HARNESS_ENV, PodPlan, ProbeAction, Program, Resolved, Role, TEST_OVERRIDES,
    Template, VolumeType, check_field, port_of,
};
use harness::{Flavor, TlsSecret};
use tempfile::TempDir;

const AGENT: &str = env!("CARGO_BIN_EXE_mysql-sts-agent");
const FLAVORS: [Flavor; 2] = [Flavor::MariaDb, Flavor::MySql];
/// The primary and a replica: a replica resolves a donor too.
const ORDINALS: [usize; 2] = [0, 1];
/// The agent's readiness endpoint.
const READYZ: &str = "/readyz";
/// The startupProbe must let crash recovery after a large clone run this long...
const STARTUP_ALLOWANCE: Duration = Duration::from_secs(3600);
/// ...without holding a server that listens after a second for much longer.
const STARTUP_PERIOD: Duration = Duration::from_secs(2);

/// The names a user deploying a second set would choose. The cluster domain stays the default:
/// the agent finds it in the pod's resolv.conf, which these checks, run on the host, have not.
fn renamed() -> Naming {
    Naming::default()
        .statefulset("billing-db")
        .service("billing-db-hl")
        .namespace("shop")
        .first_ordinal(10)
}

/// One overlay's template mapped into a temp dir, with its Secrets' files written there.
struct Overlay {
    template: Template,
    /// The certificate of a TLS overlay (`k8s/tls`).
    tls: Option<TlsSecret>,
    dir: TempDir,
}

impl Overlay {
    fn new(overlay: &str, flavor: Flavor, naming: &Naming) -> Result<Overlay> {
        let manifest = manifest::load(overlay, naming)?;
        let dir = tempfile::tempdir()?;
        let template = Template::new(
            manifest,
            flavor,
            AGENT.into(),
            dir.path().join("secrets"),
            24,
            &naming.cluster_domain,
        )?;
        template.write_secrets()?;
        let tls = TlsSecret::for_template(&template, &dir.path().join("tls-issuer"))?;
        Ok(Overlay { template, tls, dir })
    }

    fn manifest(&self) -> &Manifest {
        &self.template.manifest
    }

    /// Pod n's plan, with its directories made and the agent installed by the template's
    /// install container (after its `--check`), as the pod's first init container does.
    fn pod(&self, n: usize) -> Result<PodPlan> {
        let paths = PodPaths::new(self.dir.path(), n);
        layout::make_pod_dirs(&paths)?;
        for kind in [VolumeType::ClaimTemplate, VolumeType::EmptyDir] {
            layout::make_dirs(&mapping::pod_volume_dirs(&paths, kind))?;
        }
        if let Some(tls) = &self.tls {
            tls.project(&self.template, &paths)?;
        }
        let plan = self.template.plan(&paths, n)?;
        let install = plan.agent("install")?;
        check(install, &self.pod_name(n))?;
        let out = run_agent(install, &self.pod_name(n), false)?;
        ensure!(
            out.status.success(),
            "container {}: install failed: {out:?}",
            install.name
        );
        Ok(plan)
    }

    fn pod_name(&self, n: usize) -> String {
        self.template.naming().hostname(n)
    }
}

/// Runs `check` for every overlay (each flavor's, and with the `k8s/tls` component), as shipped
/// and renamed, and returns one line per failure, naming the overlay.
fn each_overlay(check: impl Fn(&Overlay) -> Result<()>) -> Vec<String> {
    FLAVORS
        .into_iter()
        .flat_map(|flavor| [(flavor.overlay(), flavor), (flavor.tls_overlay(), flavor)])
        .flat_map(|(overlay, flavor)| {
            [
                (overlay, flavor, Naming::default()),
                (overlay, flavor, renamed()),
            ]
        })
        .filter_map(|(overlay, flavor, naming)| {
            Overlay::new(overlay, flavor, &naming)
                .and_then(|built| check(&built))
                .err()
                .map(|error| {
                    let set = &naming.statefulset;
                    format!("overlay {overlay} as {set}: {error:#}")
                })
        })
        .collect()
}

fn assert_none(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Runs a container's agent as the pod would, the hostname given as an env var: the kubelet
/// sets it, and without root this test cannot. So is the cluster domain: this machine's
/// resolv.conf has no pod's search list to find it in.
fn run_agent(container: &Resolved, pod_name: &str, check: bool) -> Result<Output> {
    let binary = container.agent_binary().context("runs no agent")?;
    Command::new(binary)
        .env_clear()
        .envs(&container.env)
        .env("MYSQL_STS_HOSTNAME", pod_name)
        .env("MYSQL_STS_CLUSTER_DOMAIN", "cluster.local")
        .args(container.argv(check))
        .output()
        .with_context(|| format!("container {}: running {}", container.name, binary.display()))
}

/// The one line `--check` prints, after the harness's prefix.
fn check(container: &Resolved, pod_name: &str) -> Result<String> {
    let out = run_agent(container, pod_name, true)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(CHECK_VALID));
    match (out.status.code(), line) {
        (Some(0), Some(line)) => Ok(line.to_owned()),
        (code, _) => anyhow::bail!(
            "--check of container {} exited {code:?}: {}{}",
            container.name,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

#[test]
fn each_overlay_builds_into_a_pod_the_harness_can_run() {
    assert_none(each_overlay(|overlay| {
        let plan = overlay.pod(0)?;
        let roles: Vec<Role> = plan.containers.iter().map(|c| c.role).collect();
        ensure!(
            roles.last() == Some(&Role::Main)
                && roles.iter().filter(|r| **r == Role::Main).count() == 1,
            "the database is the only main container: {roles:?}"
        );
        // Whatever runs the installed agent comes after the init container that installs it.
        let install = plan.agent("install")?;
        let install_at = plan.containers.iter().position(|c| c.name == install.name);
        ensure!(
            install.role == Role::Init,
            "container {} is not an init container",
            install.name
        );
        for (at, container) in plan.containers.iter().enumerate() {
            if matches!(
                container.program,
                harness::mapping::Program::InstalledAgent(_)
            ) {
                ensure!(
                    install_at < Some(at),
                    "container {} runs the installed agent before {} installs it",
                    container.name,
                    install.name
                );
            }
        }
        let sidecar = plan.agent("sidecar")?;
        ensure!(
            sidecar.role == Role::Sidecar,
            "the agent's sidecar is no native sidecar (restartPolicy Always)"
        );
        // The password the database's entrypoint gives root is the one the agent logs in with.
        let root = plan.server.root_password()?;
        let admin = sidecar
            .env
            .get("MYSQL_STS_ADMIN_PASSWORD_FILE")
            .with_context(|| {
                format!(
                    "container {}: no MYSQL_STS_ADMIN_PASSWORD_FILE",
                    sidecar.name
                )
            })?;
        ensure!(
            layout::read_secret(Path::new(admin))? == root,
            "container {}: MYSQL_STS_ADMIN_PASSWORD_FILE is not the database's root password",
            sidecar.name
        );
        Ok(())
    }));
}

/// `--check` every agent container of the primary and a replica. What the agent resolves must be
/// what the database container uses (its datadir and conf dir, its port) and the port the agent's
/// container declares.
#[test]
fn every_agent_container_passes_its_check_and_agrees_with_the_database() {
    assert_none(each_overlay(|overlay| {
        for n in ORDINALS {
            let pod = overlay.pod_name(n);
            let plan = overlay.pod(n)?;
            for container in plan
                .containers
                .iter()
                .filter(|c| c.agent_binary().is_some())
            {
                let line = check(container, &pod).with_context(|| format!("pod {pod}"))?;
                plan.agrees(container, &line)
                    .with_context(|| format!("pod {pod}: {line}"))?;
            }
        }
        Ok(())
    }));
}

fn points_at_readyz(probe: &Probe, agent_port: u16, container: &manifest::Container) -> bool {
    probe.http_get.as_ref().is_some_and(|http| {
        http.path.starts_with(READYZ) && container.port(&http.port).ok() == Some(agent_port)
    })
}

/// The database is Ready when the agent says so; nothing restarts a container because the agent
/// says "not ready"; the startupProbe waits out a long crash recovery but not a quick start.
#[test]
fn readiness_is_the_agents_readyz_and_liveness_is_not() {
    assert_none(each_overlay(|overlay| {
        let plan = overlay.pod(0)?;
        let sidecar = plan.agent("sidecar")?;
        let listens = port_of(check_field(
            &check(sidecar, &overlay.pod_name(0))?,
            "listens on ",
        )?)?;
        ensure!(
            plan.agent_port()? == listens,
            "container {} declares port {} but the agent listens on {listens}",
            sidecar.name,
            plan.agent_port()?
        );
        let database = plan.database();
        let readiness = plan.readiness().with_context(|| {
            format!("container {} has no httpGet readinessProbe", database.name)
        })?;
        ensure!(
            readiness.path == READYZ && readiness.port == listens,
            "container {}: readinessProbe GET {}:{}, the agent answers {READYZ} on {listens}",
            database.name,
            readiness.path,
            readiness.port
        );
        let startup = database
            .probes
            .startup
            .as_ref()
            .with_context(|| format!("container {} has no startupProbe", database.name))?;
        ensure!(
            startup.allowance() >= STARTUP_ALLOWANCE && startup.period <= STARTUP_PERIOD,
            "container {}: the startupProbe allows {:?} every {:?}: crash recovery needs \
             {STARTUP_ALLOWANCE:?}, and a quick start should wait at most {STARTUP_PERIOD:?}",
            database.name,
            startup.allowance(),
            startup.period
        );
        let spec = overlay.manifest().pod_spec();
        for container in spec.init_containers.iter().chain(&spec.containers) {
            for (kind, probe) in [
                ("livenessProbe", &container.liveness_probe),
                ("startupProbe", &container.startup_probe),
            ] {
                ensure!(
                    !probe
                        .as_ref()
                        .is_some_and(|p| points_at_readyz(p, listens, container)),
                    "container {}: its {kind} points at the agent's {READYZ}",
                    container.name
                );
            }
        }
        Ok(())
    }));
}

/// Every `[env: NAME` that `mysql-sts-agent SUB --help` lists, for each subcommand the template runs.
fn known_env(subcommands: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let mut known = BTreeSet::new();
    for sub in subcommands {
        let out = Command::new(AGENT)
            .env_clear()
            .args([sub, "--help"])
            .output()?;
        ensure!(out.status.success(), "{sub} --help: {out:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        for (_, rest) in help
            .match_indices("[env: ")
            .map(|(at, _)| help.split_at(at + 6))
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            known.insert(name);
        }
    }
    Ok(known)
}

/// Clap ignores environment variables it does not know: a misspelt one in k8s/ would silently
/// fall back to a default.
#[test]
fn agent_containers_set_only_env_the_agent_knows() {
    assert_none(each_overlay(|overlay| {
        let plan = overlay.pod(0)?;
        let agents: Vec<&Resolved> = plan
            .containers
            .iter()
            .filter(|c| c.agent_binary().is_some())
            .collect();
        let subcommands = agents
            .iter()
            .filter_map(|c| c.subcommand())
            .map(str::to_owned)
            .collect();
        let known = known_env(&subcommands)?;
        ensure!(
            known.contains("MYSQL_STS_DATADIR"),
            "no env names in --help: {known:?}"
        );
        let added: BTreeSet<&str> = HARNESS_ENV
            .iter()
            .map(|(name, _)| *name)
            .chain(TEST_OVERRIDES.iter().map(|(_, name, _)| *name))
            .collect();
        let unknown: Vec<String> = agents
            .iter()
            .flat_map(|c| c.env.keys().map(move |name| (c, name)))
            .filter(|(_, name)| name.starts_with("MYSQL_STS_") && !added.contains(name.as_str()))
            .filter(|(_, name)| !known.contains(*name))
            .map(|(c, name)| format!("container {} sets {name}", c.name))
            .collect();
        ensure!(
            unknown.is_empty(),
            "the agent knows none of: {}",
            unknown.join("; ")
        );
        Ok(())
    }));
}

/// With `spec.ordinals.start`, the first ordinal is the primary and the next clones it: the
/// agent is told the first ordinal in its ConfigMap, beside the StatefulSet that sets it.
#[test]
fn the_first_ordinal_is_the_primary_and_the_next_clones_it() {
    assert_none(each_overlay(|overlay| {
        let naming = overlay.template.naming();
        let start = naming.first_ordinal;
        for n in ORDINALS {
            let pod = overlay.pod_name(n);
            let plan = overlay.pod(n)?;
            for container in plan
                .containers
                .iter()
                .filter(|c| c.agent_binary().is_some() && c.subcommand() != Some("install"))
            {
                let told = container
                    .env
                    .get("MYSQL_STS_FIRST_ORDINAL")
                    .map(String::as_str);
                ensure!(
                    told.unwrap_or("0") == start.to_string(),
                    "container {}: MYSQL_STS_FIRST_ORDINAL {told:?}, spec.ordinals.start {start}",
                    container.name
                );
                let line = check(container, &pod).with_context(|| format!("pod {pod}"))?;
                let (role, donor) = match n {
                    0 => ("primary", None),
                    _ => ("replica", Some(naming.pod_fqdn(n - 1))),
                };
                ensure!(
                    line.contains(&format!(", {role},")),
                    "pod {pod} is not the {role}: {line}"
                );
                // Only init clones, and says whom from.
                if container.subcommand() == Some("init") {
                    let clones = donor.map_or("no donor".to_owned(), |d| format!("clones {d}:"));
                    ensure!(
                        line.contains(&clones),
                        "pod {pod}: not \"{clones}\": {line}"
                    );
                }
            }
        }
        Ok(())
    }));
}

#[test]
fn the_headless_service_names_every_pod_before_it_is_ready() {
    assert_none(each_overlay(|overlay| {
        let statefulset = &overlay.manifest().statefulset;
        let name = &statefulset.spec.service_name;
        let service = overlay.manifest().headless_service()?;
        // A joining pod resolves its donor and the primary before it is Ready itself.
        ensure!(
            service.spec.publish_not_ready_addresses,
            "Service {name} does not publish not-ready addresses"
        );
        let policy = statefulset.spec.pod_management_policy.as_deref();
        ensure!(
            policy == Some("OrderedReady"),
            "podManagementPolicy {policy:?}: a pod must clone a Ready predecessor"
        );
        Ok(())
    }));
}

/// A small template the harness can run, for the refusals below.
const RUNNABLE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-abc123}
data: {MYSQL_STS_DATADIR: /var/lib/mysql}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {root-password: x}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db-headless
  template:
    spec:
      initContainers:
        - name: install
          image: registry.example/team/mysql-sts-agent:1.0
          args: [install, /opt/agent]
          volumeMounts: [{name: agent-bin, mountPath: /opt/agent}]
        - name: init
          image: mariadb:11
          command: [/opt/agent/mysql-sts-agent]
          args: [init]
          envFrom: [{configMapRef: {name: settings-abc123}}]
          env:
            - {name: MYSQL_STS_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
            - {name: MYSQL_STS_HOSTNAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
            - {name: MYSQL_STS_CONF_DIR, value: /etc/mysql/conf.d/agent}
          volumeMounts:
            - {name: data, mountPath: /var/lib/mysql}
            - {name: conf, mountPath: /etc/mysql/conf.d}
            - {name: agent-bin, mountPath: /opt/agent}
      containers:
        - name: database
          image: docker.io/library/mariadb:11
          env: [{name: MYSQL_ROOT_PASSWORD_FILE, value: /secrets/root-password}]
          ports: [{name: mysql, containerPort: 3306}]
          readinessProbe: {httpGet: {path: /ready, port: mysql}}
          volumeMounts:
            - {name: data, mountPath: /var/lib/mysql}
            - {name: conf, mountPath: /etc/mysql/conf.d}
            - {name: run, mountPath: /var/run/mysqld}
            - {name: tmp, mountPath: /tmp}
            - {name: secrets, mountPath: /secrets}
      volumes:
        - {name: agent-bin, emptyDir: {}}
        - {name: conf, emptyDir: {}}
        - {name: run, emptyDir: {}}
        - {name: tmp, emptyDir: {}}
        - {name: secrets, secret: {secretName: creds}}
  volumeClaimTemplates:
    - metadata: {name: data}
"#;

fn plan_of(yaml: &str, root: &Path) -> Result<PodPlan> {
    let manifest = std::sync::Arc::new(Manifest::parse("test", yaml)?);
    let secrets = root.join("secrets");
    let domain = Naming::default().cluster_domain;
    let template = Template::new(manifest, Flavor::MariaDb, AGENT.into(), secrets, 8, &domain)?;
    template.plan(&PodPaths::new(root, 1), 1)
}

#[test]
fn the_mapping_rewrites_mounted_paths_and_fills_the_downward_api() {
    let root = Path::new("/msa-test-root");
    let plan = plan_of(RUNNABLE, root).unwrap_or_else(|error| panic!("{error:#}"));
    let pod = root.join("pod1");
    let init = plan.agent("init").unwrap();
    assert_eq!(
        init.agent_binary(),
        Some(pod.join("agent-bin/mysql-sts-agent").as_path())
    );
    let env = |name: &str| init.env.get(name).map(String::as_str);
    let datadir = pod.join("data");
    assert_eq!(env("MYSQL_STS_DATADIR"), datadir.to_str());
    // The longest mount path wins, and what lies below it keeps its place.
    assert_eq!(env("MYSQL_STS_CONF_DIR"), pod.join("conf.d/agent").to_str());
    assert_eq!(env("MYSQL_STS_NAMESPACE"), Some("default"));
    assert_eq!(env("MYSQL_STS_HOSTNAME"), Some("db-1"));
    assert_eq!(env("MYSQL_STS_CLONE_STALL_TIMEOUT"), Some("10s"));
    assert_eq!(
        plan.agent("install").unwrap().args,
        ["install", pod.join("agent-bin").to_str().unwrap()]
    );
    assert_eq!(plan.server.datadir, datadir);
    assert_eq!(plan.server.port, 3306);
    assert_eq!(
        plan.readiness()
            .map(|probe| (probe.path.as_str(), probe.port)),
        Some(("/ready", 3306))
    );
}

/// What the harness cannot map fails the test, never silently runs something else.
#[test]
fn the_harness_refuses_what_it_cannot_map() {
    let refusals = [
        (
            "MYSQL_STS_DATADIR: /var/lib/mysql}",
            "MYSQL_STS_DATADIR: /var/lib/mysql-data}",
            "MYSQL_STS_DATADIR=/var/lib/mysql-data: /var/lib/mysql-data lies under none of the container's volume mounts",
        ),
        (
            "{fieldRef: {fieldPath: metadata.namespace}}",
            "{resourceFieldRef: {resource: limits.cpu}}",
            "env MYSQL_STS_NAMESPACE: valueFrom [\"resourceFieldRef\"] has no mapping",
        ),
        (
            "fieldPath: metadata.name}",
            "fieldPath: spec.nodeName}",
            "fieldRef spec.nodeName has no mapping",
        ),
        (
            "{name: conf, emptyDir: {}}",
            "{name: conf, hostPath: {path: /etc/mysql}}",
            "volume conf is of a type the harness cannot map ([\"hostPath\"])",
        ),
        (
            "{name: run, mountPath: /var/run/mysqld}",
            "{name: cache, mountPath: /var/run/mysqld}",
            "volume cache has no mapping",
        ),
        (
            "image: docker.io/library/mariadb:11",
            "image: mysql:8.4",
            "image mysql:8.4 has no mapping",
        ),
        (
            "command: [/opt/agent/mysql-sts-agent]",
            "command: [/opt/agent/other]",
            "is not the agent the install container installs",
        ),
        (
            "configMapRef: {name: settings-abc123}",
            "configMapRef: {name: settings}",
            "no ConfigMap named settings in the build",
        ),
        (
            "readinessProbe: {httpGet: {path: /ready, port: mysql}}",
            "readinessProbe: {httpGet: {path: /ready, port: agent}}",
            "container database declares no port named agent",
        ),
        (
            "env: [{name: MYSQL_ROOT_PASSWORD_FILE, value: /secrets/root-password}]",
            "env: [{name: MYSQL_ROOT_PASSWORD_FILE, value: /secrets/root-password}, {name: MYSQL_DATABASE, value: app}]",
            "the harness's server honours only the root password",
        ),
    ];
    let root = Path::new("/msa-test-root");
    let failures: Vec<String> = refusals
        .iter()
        .filter_map(|(from, to, want)| {
            assert_eq!(RUNNABLE.matches(from).count(), 1, "{from}");
            match plan_of(&RUNNABLE.replace(from, to), root) {
                Ok(_) => Some(format!("{to}: mapped")),
                Err(error) if format!("{error:#}").contains(want) => None,
                Err(error) => Some(format!("{to}: {error:#}")),
            }
        })
        .collect();
    assert_none(failures);
}

/// A StatefulSet whose serviceName names no headless Service in the build gives its pods no DNS
/// names: the harness refuses to build it.
#[test]
fn the_harness_refuses_a_service_name_without_its_headless_service() {
    let service = |name: &str, cluster_ip: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n\
             spec: {{clusterIP: {cluster_ip}}}\n"
        )
    };
    for (extra, want) in [
        (service("db", "None"), "no Service named db-headless"),
        (
            service("db-headless", "10.0.0.1"),
            "Service db-headless is not headless",
        ),
    ] {
        let manifest = Manifest::parse("test", &format!("{RUNNABLE}{extra}")).unwrap();
        let error = manifest.headless_service().map(|_| ()).unwrap_err();
        assert!(format!("{error:#}").contains(want), "{error:#}");
    }
    let fine = Manifest::parse(
        "test",
        &format!("{RUNNABLE}{}", service("db-headless", "None")),
    );
    fine.unwrap().headless_service().unwrap();
}

/// `kubectl kustomize DIR` of a directory of k8s/, parsed as YAML documents.
fn build_docs(dir: &str) -> Result<Vec<serde_norway::Value>> {
    let dir = manifest::k8s_dir().join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl kustomize {}: {out:?}",
        dir.display()
    );
    let text = String::from_utf8(out.stdout)?;
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Ok(serde::Deserialize::deserialize(doc)?))
        .collect()
}

/// The TLS examples: each overlay with `k8s/tls` mounts the Secret cert-manager's Certificate
/// fills, in every container that reads the TLS settings (init writes their paths into the
/// server's fragment, so the database container needs the same path), the settings point into
/// that mount and are ones the agent knows, the agent declares the peer port it is told, the
/// NetworkPolicy admits the set's pods to it, and the Certificate covers every pod's stable name
/// for both server and client use.
#[test]
fn the_tls_overlays_mount_the_certificate_cert_manager_issues_where_their_settings_point() {
    for flavor in FLAVORS {
        tls_overlay_mounts_the_certificate(flavor.tls_overlay());
    }
}

fn tls_overlay_mounts_the_certificate(overlay: &str) {
    const MOUNT: &str = "/etc/mysql-sts-agent/tls";
    let docs = build_docs(&format!("overlays/{overlay}")).unwrap();
    let of_kind = |kind: &'static str| {
        docs.iter()
            .find(move |doc| doc["kind"].as_str() == Some(kind))
            .unwrap()
    };
    let text = docs
        .iter()
        .map(|doc| serde_norway::to_string(doc).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let built = Manifest::parse(overlay, &text).unwrap();
    let config = &of_kind("ConfigMap")["data"];
    let setting = |name: &str| config[name].as_str().unwrap_or_default().to_owned();
    for name in ["CERT", "KEY", "CA"] {
        let path = setting(&format!("MYSQL_STS_TLS_{name}_FILE"));
        assert!(path.starts_with(&format!("{MOUNT}/")), "{name}: {path:?}");
    }
    for switch in ["REPLICATION_TLS", "CLONE_TLS", "CLONE_TLS_CLIENT_AUTH"] {
        assert_eq!(setting(&format!("MYSQL_STS_{switch}")), "true", "{switch}");
    }
    let known = known_env(&["init", "sidecar"].map(str::to_owned).into()).unwrap();
    let keys = config.as_mapping().unwrap().keys();
    for name in keys
        .filter_map(|k| k.as_str())
        .filter(|k| k.contains("TLS"))
    {
        assert!(
            known.contains(name),
            "{overlay}: the agent does not know {name}"
        );
    }

    let pod = built.pod_spec();
    let mounted_in: BTreeSet<&str> = pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .filter(|c| {
            c.volume_mounts
                .iter()
                .any(|m| m.name == "tls" && m.mount_path == MOUNT)
        })
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(mounted_in, BTreeSet::from(["init", "agent", "database"]));
    let agent = pod
        .init_containers
        .iter()
        .find(|c| c.name == "agent")
        .unwrap();
    let peer_port: u16 = setting("MYSQL_STS_PEER_PORT").parse().unwrap();
    assert!(
        agent.ports.iter().any(|p| p.container_port == peer_port),
        "the agent declares no port {peer_port}"
    );
    let policy = serde_norway::to_string(&of_kind("NetworkPolicy")["spec"]).unwrap();
    assert!(policy.contains(&format!("port: {peer_port}")), "{policy}");

    let secret_name = pod
        .volumes
        .iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret.as_ref())
        .map(|s| s.secret_name.clone())
        .unwrap();
    let issued = build_docs("tls/cert-manager").unwrap();
    let certificate = issued
        .iter()
        .find(|doc| {
            doc["kind"].as_str() == Some("Certificate")
                && doc["spec"]["secretName"].as_str() == Some(&secret_name)
        })
        .expect("a Certificate fills the mounted Secret");
    let listed = |field: &str| -> Vec<String> {
        certificate["spec"][field]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let service = &built.statefulset.spec.service_name;
    assert!(
        listed("dnsNames")
            .iter()
            .any(|name| name.starts_with(&format!("*.{service}."))),
        "no wildcard for the pods of service {service}: {:?}",
        listed("dnsNames")
    );
    for usage in ["server auth", "client auth"] {
        assert!(listed("usages").iter().any(|u| u == usage), "{usage}");
    }
}

/// The admin-account example: the overlay with `k8s/admin-account` has the database image's
/// entrypoint create the user the agent logs in as (`harness::ADMIN_USER`, which the e2e
/// scenario runs under), with the password file the agent reads, a key of the example Secret in
/// the mounted Secret; and it mounts the ConfigMap holding exactly `admin-account.sql` (the file
/// the harness runs) where the entrypoint runs init files.
#[test]
fn the_admin_account_overlay_creates_the_user_the_agent_logs_in_as() {
    let docs = build_docs("overlays/mysql-admin-account").unwrap();
    let named = |kind: &str, name: &str| {
        docs.iter()
            .find(|doc| {
                doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let pod = &docs
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("StatefulSet"))
        .unwrap()["spec"]["template"]["spec"];
    let database = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("database"))
        .unwrap();
    let env = |name: &str| -> String {
        let vars = database["env"].as_sequence().unwrap();
        let var = vars.iter().find(|v| v["name"].as_str() == Some(name));
        var.and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("the database container has no {name}"))
            .to_owned()
    };
    let config_name = database["envFrom"][0]["configMapRef"]["name"]
        .as_str()
        .unwrap();
    let config = named("ConfigMap", config_name);
    let setting = |name: &str| config["data"][name].as_str().unwrap_or_default().to_owned();
    assert_eq!(setting("MYSQL_STS_ADMIN_USER"), harness::ADMIN_USER);
    assert_eq!(env("MYSQL_USER"), harness::ADMIN_USER);
    let password_file = setting("MYSQL_STS_ADMIN_PASSWORD_FILE");
    assert_eq!(env("MYSQL_PASSWORD_FILE"), password_file);
    let known = known_env(&["sidecar"].map(str::to_owned).into()).unwrap();
    for name in ["MYSQL_STS_ADMIN_USER", "MYSQL_STS_ADMIN_PASSWORD_FILE"] {
        assert!(known.contains(name), "the agent does not know {name}");
    }

    let mounted = |path: &str| -> serde_norway::Value {
        let mounts = database["volumeMounts"].as_sequence().unwrap();
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap()
            .clone()
    };
    let (dir, key) = password_file.rsplit_once('/').unwrap();
    assert!(mounted(dir)["secret"]["secretName"].is_string(), "{dir}");
    let example = std::fs::read_to_string(manifest::k8s_dir().join("secret.example.yaml")).unwrap();
    let example: serde_norway::Value = serde_norway::from_str(&example).unwrap();
    assert!(
        example["stringData"][key].is_string(),
        "the example Secret has no {key}"
    );

    let initdb = mounted("/docker-entrypoint-initdb.d");
    let grants = named("ConfigMap", initdb["configMap"]["name"].as_str().unwrap());
    let sql = std::fs::read_to_string(manifest::k8s_dir().join("admin-account/admin-account.sql"))
        .unwrap();
    let data = grants["data"].as_mapping().unwrap();
    assert_eq!(data.len(), 1, "only the grants run at the first start");
    assert_eq!(
        grants["data"]["admin-account.sql"].as_str(),
        Some(sql.as_str())
    );
    let account = format!("''{}''@''%''", harness::ADMIN_USER);
    assert_eq!(
        sql.matches(&account).count(),
        2,
        "both flavors grant to {account}"
    );
}

/// The benchmarks' foreign manifest, the Kubernetes tutorial's method, maps as it is: bash
/// containers of the database image with their paths unmapped (they see real mounts), exec
/// probes, the ConfigMap volume, the data volume's subPath and root without a password.
#[test]
fn the_tutorials_manifest_maps_as_it_is() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/provisioning/tutorial/tutorial-method-mariadb.yaml");
    let root = Path::new("/msa-test-root");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let plan = plan_of(&yaml, root).unwrap_or_else(|error| panic!("{error:#}"));
    let pod = root.join("pod1");
    let names: Vec<(&str, Role, bool)> = plan
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.role, c.is_server()))
        .collect();
    assert_eq!(
        names,
        [
            ("init-mysql", Role::Init, false),
            ("clone-mysql", Role::Init, false),
            ("mysql", Role::Main, true),
            ("clone-server", Role::Main, false),
        ]
    );
    let clone = &plan.containers[1];
    assert_eq!(clone.program, Program::Image("bash".into()));
    assert!(clone.args[1].contains("mbstream -x -C /var/lib/mysql"));
    assert!(
        clone
            .binds
            .contains(&("/var/lib/mysql".into(), pod.join("data/mysql")))
    );
    assert!(
        plan.containers[0]
            .binds
            .contains(&("/mnt/config-map".into(), pod.join("volumes/config-map")))
    );
    let database = plan.database();
    let readiness = database.probes.readiness.as_ref().unwrap();
    assert_eq!(
        readiness.action,
        ProbeAction::Exec(
            ["mariadb", "-h", "127.0.0.1", "-e", "SELECT 1"]
                .map(String::from)
                .into()
        )
    );
    assert_eq!(plan.server.datadir, pod.join("data/mysql"));
    assert_eq!(
        plan.server.run_dir,
        pod.join("containers/mysql/var/run/mysqld")
    );
    assert!(plan.server.root_password().unwrap().is_empty());
}
