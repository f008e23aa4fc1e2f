//! The manifests under test: `kubectl kustomize k8s/overlays/<overlay>` plus the example Secret
//! applied beside it, built once per test process, and the few kinds and fields of it that the
//! harness reads. Fields the harness does not
//! use are not modelled; fields it cannot honour are kept so that `mapping.rs` can refuse them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::cmd::run_blocking;

/// Where the kustomize tree is (default: the repository's `k8s/`), e.g. to try a change to the
/// manifests on a copy before making it.
const K8S_DIR_ENV: &str = "MSA_K8S_DIR";

pub fn k8s_dir() -> PathBuf {
    std::env::var_os(K8S_DIR_ENV).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s"),
        PathBuf::from,
    )
}

/// The built overlay: built on first use, then shared by every cluster of this process.
/// Blocking (it runs kubectl).
pub fn load(overlay: &str) -> Result<Arc<Manifest>> {
    static BUILT: Mutex<BTreeMap<String, Arc<Manifest>>> = Mutex::new(BTreeMap::new());
    // Held while building: parallel tests wait for the one build instead of repeating it.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(manifest) = built.get(overlay) {
        return Ok(manifest.clone());
    }
    let dir = k8s_dir().join("overlays").join(overlay);
    let built_text = run_blocking("kubectl", &["kustomize", &dir.to_string_lossy()])
        .with_context(|| format!("building the {overlay} overlay"))?;
    // Users apply the Secret apart from the overlay, so that re-applying never resets it.
    let secret_file = k8s_dir().join("secret.example.yaml");
    let secret = std::fs::read_to_string(&secret_file)
        .with_context(|| format!("reading {}", secret_file.display()))?;
    let text = format!("{built_text}\n---\n{secret}");
    let manifest = Arc::new(
        Manifest::parse(overlay, &text)
            .with_context(|| format!("reading the built {overlay} overlay ({})", dir.display()))?,
    );
    built.insert(overlay.to_owned(), manifest.clone());
    Ok(manifest)
}

/// What one overlay builds to.
#[derive(Debug)]
pub struct Manifest {
    /// "mariadb" or "mysql": names it in errors.
    pub overlay: String,
    pub statefulset: StatefulSet,
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
}

impl Manifest {
    pub fn parse(overlay: &str, text: &str) -> Result<Self> {
        let mut statefulsets = Vec::new();
        let mut manifest = Manifest {
            overlay: overlay.to_owned(),
            statefulset: StatefulSet::default(),
            config_maps: Vec::new(),
            secrets: Vec::new(),
            services: Vec::new(),
        };
        for document in serde_norway::Deserializer::from_str(text) {
            let value = Value::deserialize(document)?;
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let kind = kind.as_str();
            match kind {
                "StatefulSet" => statefulsets.push(typed(kind, value)?),
                "ConfigMap" => manifest.config_maps.push(typed(kind, value)?),
                "Secret" => manifest.secrets.push(typed(kind, value)?),
                "Service" => manifest.services.push(typed(kind, value)?),
                // E.g. the PodDisruptionBudget: nothing the simulated pods run.
                _ => {}
            }
        }
        ensure!(
            statefulsets.len() == 1,
            "it holds {} StatefulSets; the harness simulates exactly one",
            statefulsets.len()
        );
        manifest.statefulset = statefulsets.remove(0);
        Ok(manifest)
    }

    pub fn pod_spec(&self) -> &PodSpec {
        &self.statefulset.spec.template.spec
    }

    /// The ConfigMap named exactly `name` (kustomize's generated names carry a hash).
    pub fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .iter()
            .find(|map| map.metadata.name == name)
    }

    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .find(|secret| secret.metadata.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|service| service.metadata.name == name)
    }
}

fn typed<T: DeserializeOwned>(kind: &str, value: Value) -> Result<T> {
    let name = value
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    serde_norway::from_value(value).with_context(|| format!("reading {kind} {name}"))
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct StatefulSet {
    pub metadata: Metadata,
    pub spec: StatefulSetSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpec {
    pub service_name: String,
    pub pod_management_policy: Option<String>,
    pub template: PodTemplate,
    #[serde(default)]
    pub volume_claim_templates: Vec<ClaimTemplate>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodTemplate {
    pub spec: PodSpec,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClaimTemplate {
    pub metadata: Metadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub security_context: Option<PodSecurityContext>,
}

/// The pod-level securityContext: who the containers run as, and the group the kubelet gives
/// the volumes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    pub fs_group: Option<u32>,
    pub fs_group_change_policy: Option<String>,
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// Not simulated (the processes run under the host's seccomp, i.e. none).
    pub seccomp_profile: Option<Value>,
    /// Anything else (sysctls, seLinuxOptions...): the harness refuses it.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A container's securityContext: its fields win over the pod's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub privileged: Option<bool>,
    pub capabilities: Option<Capabilities>,
    /// Simulated for a chroot image (its root is read-only in every pod), not on the host.
    pub read_only_root_filesystem: Option<bool>,
    pub seccomp_profile: Option<Value>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Vec<EnvFromSource>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    pub readiness_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    /// "Always" on an init container makes it a native sidecar.
    pub restart_policy: Option<String>,
    pub working_dir: Option<String>,
    pub security_context: Option<SecurityContext>,
}

impl Container {
    /// The port a probe names: a number as it is, a name among this container's ports (as the
    /// kubelet resolves it).
    pub fn port(&self, port: &PortRef) -> Result<u16> {
        match port {
            PortRef::Number(number) => Ok(*number),
            PortRef::Name(name) => self
                .ports
                .iter()
                .find(|port| port.name.as_deref() == Some(name))
                .map(|port| port.container_port)
                .with_context(|| format!("container {} declares no port named {name}", self.name)),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub field_ref: Option<FieldRef>,
    pub secret_key_ref: Option<KeyRef>,
    pub config_map_key_ref: Option<KeyRef>,
    /// Any other kind (e.g. resourceFieldRef): the harness refuses it.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    pub prefix: Option<String>,
    pub config_map_ref: Option<NameRef>,
    pub secret_ref: Option<NameRef>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NameRef {
    pub name: String,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Value>,
    pub grpc: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HttpGet {
    #[serde(default = "root_path")]
    pub path: String,
    pub port: PortRef,
    pub host: Option<String>,
    pub scheme: Option<String>,
}

fn root_path() -> String {
    "/".to_owned()
}

#[derive(Clone, Debug, Deserialize)]
pub struct TcpSocket {
    pub port: PortRef,
}

/// A port by number or by the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub empty_dir: Option<Value>,
    pub secret: Option<SecretVolume>,
    /// Any other volume type (hostPath, configMap...): the harness refuses it.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume {
    pub secret_name: String,
    /// Selected keys under chosen paths: not simulated, every key is mounted as its own file.
    #[serde(default)]
    pub items: Vec<Value>,
    /// The files' mode (Kubernetes' default: 0644).
    pub default_mode: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct ConfigMap {
    pub metadata: Metadata,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub metadata: Metadata,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

impl Secret {
    /// Every key, whether given base64-encoded (`data`) or as text (`stringData`).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .data
            .keys()
            .chain(self.string_data.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

#[derive(Debug, Deserialize)]
pub struct Service {
    pub metadata: Metadata,
    pub spec: ServiceSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default)]
    pub publish_not_ready_addresses: bool,
}
