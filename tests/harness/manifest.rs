//! The manifests under test: `kubectl kustomize k8s/overlays/<overlay>` (or an overlay generated
//! on top of it that renames the set) plus the example Secret applied beside it, built once per
//! test process, and the few kinds and fields of it that the
//! harness reads. Fields the harness does not
//! use are not modelled; fields it cannot honour are kept so that `mapping.rs` can refuse them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::cmd::run_blocking;
use super::layout::Naming;

/// Where the kustomize tree is (default: the repository's `k8s/`), e.g. to try a change to the
/// manifests on a copy before making it.
const K8S_DIR_ENV: &str = "MSA_K8S_DIR";

pub fn k8s_dir() -> PathBuf {
    std::env::var_os(K8S_DIR_ENV).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s"),
        PathBuf::from,
    )
}

/// The built overlay, under `naming`'s names: the overlay as it is for the default names,
/// else an overlay generated on top of it, as a user would write one (`names_overlay`). Built on
/// first use, then shared by every cluster of this process. Blocking (it runs kubectl).
pub fn load(overlay: &str, naming: &Naming) -> Result<Arc<Manifest>> {
    static BUILT: Mutex<BTreeMap<String, Arc<Manifest>>> = Mutex::new(BTreeMap::new());
    // The cluster domain is in no manifest: it does not change the build.
    let key = |naming: &Naming| {
        let Naming {
            statefulset,
            service,
            namespace,
            first_ordinal,
            ..
        } = naming;
        format!("{overlay} {statefulset} {service} {namespace} {first_ordinal}")
    };
    // Held while building: parallel tests wait for the one build instead of repeating it.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(manifest) = built.get(&key(naming)) {
        return Ok(manifest.clone());
    }
    let dir = k8s_dir().join("overlays").join(overlay);
    let shipped_key = key(&Naming::default());
    let shipped = match built.get(&shipped_key) {
        Some(manifest) => manifest.clone(),
        None => {
            let manifest = Arc::new(build(overlay, &dir)?);
            built.insert(shipped_key.clone(), manifest.clone());
            manifest
        }
    };
    let manifest = if key(naming) == shipped_key {
        shipped
    } else {
        let generated = tempfile::tempdir()?;
        let text = names_overlay(&shipped, &dir, generated.path(), naming)?;
        std::fs::write(generated.path().join("kustomization.yaml"), text)?;
        let manifest = build(overlay, generated.path())
            .with_context(|| format!("the {overlay} overlay under {naming:?}"))?;
        Arc::new(manifest)
    };
    let have = manifest.naming(&naming.cluster_domain);
    ensure!(
        have == *naming,
        "the {overlay} overlay builds with names {have:?}, not {naming:?}"
    );
    built.insert(key(naming), manifest.clone());
    Ok(manifest)
}

/// A manifest file applied as it is (e.g. another project's StatefulSet, for a benchmark): no
/// overlay, no names of the harness's choosing, no Secret beside it. Blocking.
pub fn load_file(path: &Path) -> Result<Arc<Manifest>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = Manifest::parse(&path.display().to_string(), &text)?;
    manifest.headless_service()?;
    Ok(Arc::new(manifest))
}

/// `kubectl kustomize DIR` plus the example Secret; refuses a build whose serviceName is not
/// the name of a headless Service in it.
fn build(overlay: &str, dir: &Path) -> Result<Manifest> {
    let built_text = run_blocking("kubectl", &["kustomize", &dir.to_string_lossy()])
        .with_context(|| format!("building the {overlay} overlay"))?;
    // Users apply the Secret apart from the overlay, so that re-applying never resets it.
    let secret_file = k8s_dir().join("secret.example.yaml");
    let secret = std::fs::read_to_string(&secret_file)
        .with_context(|| format!("reading {}", secret_file.display()))?;
    let text = format!("{built_text}\n---\n{secret}");
    let manifest = Manifest::parse(overlay, &text)
        .with_context(|| format!("reading the built {overlay} overlay ({})", dir.display()))?;
    manifest.headless_service()?;
    Ok(manifest)
}

/// The cert-manager example that issues the TLS component's Secret (`k8s/tls/cert-manager`).
const CERT_MANAGER_DIR: &str = "tls/cert-manager";

/// The `Certificate` of `k8s/tls/cert-manager` whose secretName is `secret_name`: what
/// cert-manager would write into that Secret. Blocking (it runs kubectl).
pub fn certificate(secret_name: &str) -> Result<CertificateSpec> {
    let dir = k8s_dir().join(CERT_MANAGER_DIR);
    let text = run_blocking("kubectl", &["kustomize", &dir.to_string_lossy()])
        .with_context(|| format!("building {}", dir.display()))?;
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = Value::deserialize(document)?;
        if value.get("kind").and_then(Value::as_str) == Some("Certificate") {
            let certificate: Certificate = typed("Certificate", value)?;
            if certificate.spec.secret_name == secret_name {
                return Ok(certificate.spec);
            }
        }
    }
    bail!(
        "no Certificate of {} fills the Secret {secret_name}",
        dir.display()
    )
}

/// The generator of the agent's ConfigMap in k8s/base, which an overlay merges settings into.
const AGENT_CONFIG_MAP: &str = "mysql-sts-agent";

/// A kustomization in `dir` on top of `base` (whose build is `shipped`) that deploys it under
/// `naming`: the StatefulSet, its headless Service and the Services named after the set renamed
/// (kustomize follows the rename into serviceName), the namespace set, `spec.ordinals.start`, and
/// the agent told the service and the first ordinal. The cluster domain is not the overlay's.
fn names_overlay(shipped: &Manifest, base: &Path, dir: &Path, naming: &Naming) -> Result<String> {
    // kustomize takes only relative paths to other kustomizations.
    let up = "../".repeat(dir.canonicalize()?.components().count() - 1);
    let base = base.canonicalize()?;
    let base = format!("{up}{}", base.strip_prefix("/")?.display());
    let old_set = &shipped.statefulset.metadata.name;
    let old_service = &shipped.statefulset.spec.service_name;
    let mut statefulset = vec![format!(
        "{{op: replace, path: /metadata/name, value: {}}}",
        naming.statefulset
    )];
    if naming.first_ordinal != 0 {
        statefulset.push(format!(
            "{{op: add, path: /spec/ordinals, value: {{start: {}}}}}",
            naming.first_ordinal
        ));
    }
    let mut renames = vec![("StatefulSet", old_set.clone(), statefulset)];
    for service in &shipped.services {
        let old = &service.metadata.name;
        let new = if old == old_service {
            naming.service.clone()
        } else if let Some(suffix) = old.strip_prefix(&format!("{old_set}-")) {
            format!("{}-{suffix}", naming.statefulset)
        } else {
            continue;
        };
        let patch = format!("{{op: replace, path: /metadata/name, value: {new}}}");
        renames.push(("Service", old.clone(), vec![patch]));
    }
    let patches: String = renames
        .iter()
        .map(|(kind, name, ops)| {
            let ops: String = ops.iter().map(|op| format!("\n      - {op}")).collect();
            format!("\n  - target: {{kind: {kind}, name: {name}}}\n    patch: |-{ops}")
        })
        .collect();
    let mut literals = vec![format!("MYSQL_STS_SERVICE={}", naming.service)];
    if naming.first_ordinal != 0 {
        literals.push(format!("MYSQL_STS_FIRST_ORDINAL={}", naming.first_ordinal));
    }
    let literals: String = literals.iter().map(|l| format!("\n      - {l}")).collect();
    Ok(format!(
        "# Generated by the test harness: {base} under other names.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {}
resources:
  - {base}
patches:{patches}
configMapGenerator:
  - name: {AGENT_CONFIG_MAP}
    behavior: merge
    literals:{literals}
",
        naming.namespace
    ))
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

    /// The Service named after the StatefulSet's serviceName, which must be headless: it gives the
    /// pods their DNS names.
    pub fn headless_service(&self) -> Result<&Service> {
        let name = &self.statefulset.spec.service_name;
        let service = self
            .service(name)
            .with_context(|| format!("no Service named {name}, the StatefulSet's serviceName"))?;
        ensure!(
            service.spec.cluster_ip.as_deref() == Some("None"),
            "Service {name} is not headless (clusterIP {:?})",
            service.spec.cluster_ip
        );
        Ok(service)
    }

    /// The names the pods get from this build in a cluster whose DNS domain is `cluster_domain`.
    pub fn naming(&self, cluster_domain: &str) -> Naming {
        let statefulset = &self.statefulset;
        Naming {
            statefulset: statefulset.metadata.name.clone(),
            service: statefulset.spec.service_name.clone(),
            // Without one, `kubectl apply` puts it in the default namespace.
            namespace: statefulset
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| Naming::default().namespace),
            cluster_domain: cluster_domain.to_owned(),
            first_ordinal: statefulset
                .spec
                .ordinals
                .as_ref()
                .map_or(0, |ordinals| ordinals.start),
        }
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
    pub namespace: Option<String>,
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
    pub ordinals: Option<Ordinals>,
    pub template: PodTemplate,
    #[serde(default)]
    pub volume_claim_templates: Vec<ClaimTemplate>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Ordinals {
    #[serde(default)]
    pub start: u32,
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
    pub initial_delay_seconds: Option<u32>,
    pub period_seconds: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub success_threshold: Option<u32>,
    pub failure_threshold: Option<u32>,
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<ExecAction>,
    pub grpc: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ExecAction {
    pub command: Vec<String>,
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
    pub config_map: Option<ConfigMapVolume>,
    /// Any other volume type (hostPath, projected...): the harness refuses it.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolume {
    pub name: String,
    /// Other fields (items, defaultMode...): refused, every key is mounted 0644.
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

#[derive(Debug, Deserialize)]
struct Certificate {
    spec: CertificateSpec,
}

/// What cert-manager issues: the fields the harness's CA honours (`tls.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub usages: Vec<String>,
    pub private_key: Option<PrivateKeySpec>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PrivateKeySpec {
    /// cert-manager's default: RSA.
    pub algorithm: Option<String>,
    pub size: Option<u32>,
}
