//! k8s/monitoring, checked without a cluster: it builds with `kubectl kustomize`; its PodMonitor
//! selects the pods of each overlay's StatefulSet on the port their agent container names; the
//! PrometheusRule's groups, extracted from the build (the one source of the rules), pass
//! `promtool check rules`, and `promtool test rules` with k8s/monitoring/rules_test.yaml, where
//! every alert fires at least once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use serde_norway::Value;

fn k8s(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s").join(path)
}

/// Runs `program` to success; returns its stdout.
fn run(program: &str, args: &[&Path]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (scripts/deps.sh installs it)"))?;
    let text = String::from_utf8(output.stdout)?;
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}\n{text}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(text)
}

/// The documents `kubectl kustomize dir` builds.
fn build(dir: &str) -> Result<Vec<Value>> {
    let text = run("kubectl", &[Path::new("kustomize"), &k8s(dir)])?;
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Ok(Value::deserialize(document)?))
        .collect()
}

/// The one object of `kind` among `documents`.
fn only<'a>(documents: &'a [Value], kind: &str) -> Result<&'a Value> {
    let mut found = documents.iter().filter(|doc| doc["kind"] == kind);
    let object = found.next().with_context(|| format!("no {kind}"))?;
    ensure!(found.next().is_none(), "more than one {kind}");
    Ok(object)
}

#[test]
fn the_pod_monitor_selects_every_overlays_agents() -> Result<()> {
    let monitoring = build("monitoring")?;
    let pod_monitor = &only(&monitoring, "PodMonitor")?["spec"];
    let endpoint = &pod_monitor["podMetricsEndpoints"][0];
    ensure!(
        endpoint["path"] == "/metrics" && endpoint["port"] == "agent",
        "{endpoint:?}"
    );
    let selector = pod_monitor["selector"]["matchLabels"]
        .as_mapping()
        .context("no matchLabels")?;
    for overlay in ["overlays/mariadb", "overlays/mysql"] {
        let set = build(overlay)?;
        let template = &only(&set, "StatefulSet")?["spec"]["template"];
        for (label, value) in selector {
            let found = &template["metadata"]["labels"][label];
            ensure!(found == value, "{overlay}'s pods have {label:?}: {found:?}");
        }
        let containers = template["spec"]["containers"].as_sequence();
        let init_containers = template["spec"]["initContainers"].as_sequence();
        let agent_ports: Vec<&Value> = [containers, init_containers]
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|container| container["ports"].as_sequence())
            .flatten()
            .filter(|port| port["name"] == "agent")
            .collect();
        ensure!(
            agent_ports.len() == 1,
            "{overlay}: ports named agent: {agent_ports:?}"
        );
    }
    Ok(())
}

#[test]
fn the_alerts_pass_promtools_checks_and_each_fires_in_its_unit_tests() -> Result<()> {
    let monitoring = build("monitoring")?;
    let groups = &only(&monitoring, "PrometheusRule")?["spec"];
    // promtool reads the test's rule_files relative to the test file: both go in one dir.
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, serde_norway::to_string(groups)?)?;
    let tests = dir.path().join("rules_test.yaml");
    std::fs::copy(k8s("monitoring/rules_test.yaml"), &tests)?;
    run(
        "promtool",
        &[Path::new("check"), Path::new("rules"), &rules],
    )?;
    run("promtool", &[Path::new("test"), Path::new("rules"), &tests])?;

    let alerts: BTreeSet<&str> = groups["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|group| group["rules"].as_sequence())
        .flatten()
        .filter_map(|rule| rule["alert"].as_str())
        .collect();
    let unit_tests: Value = serde_norway::from_str(&std::fs::read_to_string(&tests)?)?;
    let fired: BTreeSet<&str> = unit_tests["tests"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|test| test["alert_rule_test"].as_sequence())
        .flatten()
        .filter(|case| {
            case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
        })
        .filter_map(|case| case["alertname"].as_str())
        .collect();
    ensure!(
        !alerts.is_empty() && alerts == fired,
        "alerts {alerts:?}, fired in rules_test.yaml {fired:?}"
    );
    Ok(())
}
