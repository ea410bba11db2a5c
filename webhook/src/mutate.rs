//! Sidecar injection as a pure function of a pod and the `AIRuntimeInstance` that selects it.
//!
//! [`mutate`] returns a minimal RFC 6902 JSON Patch made only of `add` operations, following the pod
//! contract of the design:
//!
//! - the `airlock-sidecar` container: a native sidecar (the first init container, `restartPolicy:
//!   Always`) on API servers ≥ 1.29, so it starts before the app and never keeps a Job from completing;
//!   a regular container (appended last) before that;
//! - for a model server with `transparent` inbound interception, the `airlock-init` init container that
//!   installs the redirect of the model ports to 15006. **It needs `NET_ADMIN` and `NET_RAW` and runs as
//!   root, so such pods do not meet the Pod Security `baseline` or `restricted` levels**; namespaces
//!   enforcing those levels should use `interception.inbound: explicit`, which adds no init container;
//! - the policy volume (ConfigMap `airlock-policy-<instance>`, optional) mounted read-only;
//! - on every app container Airlock did not add, the LLM SDK base-URL variables pointing at the
//!   outbound proxy, each only when the container does not set it itself (see [`APP_ENV`]);
//! - the annotations `airlock.dev/injected: "true"` and `airlock.dev/status`, a JSON [`InjectionStatus`]
//!   recording exactly what was added, so that a re-run (re-invocation, re-submission) adds nothing.

use std::collections::BTreeMap;

use airlock_crds::AIRuntimeInstance;
use airlock_crds::v1alpha1::instance::DEFAULT_SIDECAR_IMAGE_REPOSITORY;
use airlock_crds::v1alpha1::{FailureMode, InboundMode, Interception, Mode, PullPolicy, SidecarSpec};
use std::cell::RefCell;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, Pod, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::fingerprint;

/// Name of the injected sidecar container.
pub const SIDECAR_NAME: &str = "airlock-sidecar";
/// Name of the init container that installs the inbound redirect.
pub const INIT_NAME: &str = "airlock-init";
/// Name of the policy volume.
pub const POLICY_VOLUME: &str = "airlock-policy";
/// Where the policy volume is mounted in the sidecar.
pub const POLICY_MOUNT_PATH: &str = "/etc/airlock/policy";
/// Annotation marking injected pods.
pub const ANNOTATION_INJECTED: &str = "airlock.dev/injected";
/// Annotation recording what Airlock added ([`InjectionStatus`] as JSON).
pub const ANNOTATION_STATUS: &str = "airlock.dev/status";
/// Pod label that opts a pod out of injection when `"false"`.
pub const LABEL_INJECT: &str = "airlock.dev/inject";
/// Outbound LLM API proxy port.
pub const PORT_OUTBOUND: i32 = 15001;
/// Inbound interception port.
pub const PORT_INBOUND: i32 = 15006;
/// Admin port (`/live`, `/ready`, `/metrics`).
pub const PORT_ADMIN: i32 = 15020;
/// The sidecar's user id.
pub const SIDECAR_UID: i64 = 65532;

/// Variables that point common LLM SDKs at the outbound proxy. They are added to app containers only
/// when the container does not set them itself (an explicit `env` entry always wins), never to the
/// container recognised as the model server (Ollama reads `OLLAMA_HOST` as its own listen address),
/// and never to containers with `envFrom`: an `env` entry would silently override a value the user set
/// through a ConfigMap or Secret, so those containers keep their own settings.
pub const APP_ENV: &[(&str, &str)] = &[
    ("OPENAI_BASE_URL", "http://127.0.0.1:15001/v1"),
    ("OPENAI_API_BASE", "http://127.0.0.1:15001/v1"),
    ("ANTHROPIC_BASE_URL", "http://127.0.0.1:15001"),
    ("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:15001"),
    ("OLLAMA_HOST", "http://127.0.0.1:15001"),
];

/// One RFC 6902 `add` operation (injection only ever adds). The value is JSON text, so that what is the
/// same for every pod an instance injects (the sidecar container) is serialised once and shared.
#[derive(Debug, Clone)]
pub struct Add {
    /// The JSON pointer, escaped (`airlock.dev~1status`).
    pub path: String,
    /// The value.
    pub value: AddValue,
}

/// The value of an [`Add`]: one JSON value, or an array of them (written out without parsing them again).
#[derive(Debug, Clone)]
pub enum AddValue {
    /// A JSON value.
    One(Arc<RawValue>),
    /// `[a, b, ...]`.
    Array(Vec<Arc<RawValue>>),
}

impl Serialize for AddValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AddValue::One(value) => value.serialize(serializer),
            AddValue::Array(values) => serializer.collect_seq(values.iter().map(|v| &**v)),
        }
    }
}

impl PartialEq for Add {
    fn eq(&self, other: &Self) -> bool {
        let text = |v: &AddValue| serde_json::to_string(v).ok();
        self.path == other.path && text(&self.value) == text(&other.value)
    }
}

/// An RFC 6902 JSON Patch made of [`Add`] operations; serialises to the JSON array the API server reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch(pub Vec<Add>);

impl Serialize for Add {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("op", "add")?;
        map.serialize_entry("path", &self.path)?;
        map.serialize_entry("value", &self.value)?;
        map.end()
    }
}

impl Serialize for Patch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Patch {
    /// The patch as a `json_patch` value, to apply it to a document (tests, offline tools).
    pub fn to_json_patch(&self) -> serde_json::Result<json_patch::Patch> {
        serde_json::from_slice(&serde_json::to_vec(self)?)
    }

    /// About how long the patch is as JSON, to size its buffer once (written into an empty one, it grew
    /// by doubling through a few kilobytes).
    pub(crate) fn json_len_hint(&self) -> usize {
        self.0
            .iter()
            .map(|op| {
                let value = match &op.value {
                    AddValue::One(v) => v.get().len(),
                    AddValue::Array(values) => values.iter().map(|v| v.get().len() + 1).sum::<usize>() + 2,
                };
                op.path.len() + value + 32
            })
            .sum::<usize>()
            + 2
    }

    /// The paths, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|op| op.path.as_str())
    }
}

/// What [`mutate`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum MutateOutcome {
    /// Inject with this patch.
    Patch(Patch),
    /// Leave the pod alone.
    Skip {
        /// Why.
        reason: SkipReason,
    },
}

/// Why a pod is not injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The pod already has `airlock-sidecar` or the status annotation.
    AlreadyInjected,
    /// The pod shares the node's network namespace; a sidecar there would intercept the node's traffic.
    HostNetwork,
    /// The pod is labelled `airlock.dev/inject: "false"`.
    OptedOut,
}

impl SkipReason {
    /// Short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::AlreadyInjected => "already-injected",
            SkipReason::HostNetwork => "host-network",
            SkipReason::OptedOut => "opted-out",
        }
    }

    /// A sentence for events and admission warnings.
    pub fn message(self) -> &'static str {
        match self {
            SkipReason::AlreadyInjected => "the pod already carries the Airlock sidecar",
            SkipReason::HostNetwork => {
                "Airlock did not inject its sidecar: the pod uses hostNetwork, where a sidecar would \
                 intercept the node's traffic; the pod runs without Airlock protection"
            }
            SkipReason::OptedOut => "the pod is labelled airlock.dev/inject: \"false\"",
        }
    }
}

/// The content of the `airlock.dev/status` annotation: exactly what Airlock added to the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus {
    /// Version of the webhook that injected.
    pub version: String,
    /// The `AIRuntimeInstance` that selected the pod.
    pub instance: String,
    /// Names of added containers (the sidecar, before native sidecars).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Names of added init containers.
    #[serde(default)]
    pub init_containers: Vec<String>,
    /// Names of added volumes.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Names of the variables added to each app container, by container name.
    #[serde(default)]
    pub env: BTreeMap<String, Vec<String>>,
}

/// The sidecar image of an installation that names none (the chart's `sidecar.image` does): Airlock's own
/// image at this build's version.
pub fn default_sidecar_image() -> String {
    format!("{DEFAULT_SIDECAR_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// Checks an image reference given on the command line (`--sidecar-image`): non-empty, no whitespace.
pub fn parse_image(text: &str) -> std::result::Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the sidecar image is empty".to_owned());
    }
    if text.chars().any(char::is_whitespace) || text.len() > 512 {
        return Err(format!("{text:?} is not an image reference"));
    }
    Ok(text.to_owned())
}

/// The sidecar image an instance asks for: its `spec.sidecar.image`, else the installation's `default`.
pub fn sidecar_image(instance: &AIRuntimeInstance, default: &str) -> String {
    instance
        .spec
        .sidecar
        .as_ref()
        .and_then(|s| s.image.clone())
        .unwrap_or_else(|| default.to_owned())
}

/// The JSON pointer (RFC 6901) of `tokens`: each escaped (`~` → `~0`, `/` → `~1`) after a `/`.
fn pointer(tokens: &[&str]) -> String {
    let mut path = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum::<usize>() + 2);
    for token in tokens {
        path.push('/');
        // Copied a piece at a time between the bytes to escape (both ASCII, so every cut is on a char
        // boundary).
        let mut rest: &str = token;
        while let Some(at) = rest.bytes().position(|b| b == b'~' || b == b'/') {
            path.push_str(&rest[..at]);
            path.push_str(if rest.as_bytes()[at] == b'~' { "~0" } else { "~1" });
            rest = &rest[at + 1..];
        }
        path.push_str(rest);
    }
    path
}

fn add(tokens: &[&str], value: Arc<RawValue>) -> Add {
    Add {
        path: pointer(tokens),
        value: AddValue::One(value),
    }
}

fn add_array(tokens: &[&str], values: Vec<Arc<RawValue>>) -> Add {
    Add {
        path: pointer(tokens),
        value: AddValue::Array(values),
    }
}

/// `value` as JSON text.
fn to_raw<T: Serialize + ?Sized>(value: &T) -> Arc<RawValue> {
    // Serialising k8s-openapi types and strings cannot fail; `null` keeps the patch well-formed regardless.
    // `to_raw_value` keeps the text it wrote (`RawValue::from_string` would parse it again to check it).
    serde_json::value::to_raw_value(value)
        .map(Arc::from)
        .unwrap_or_else(|_| Arc::from(RawValue::NULL.to_owned()))
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(PORT_ADMIN),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), q("50m")),
            ("memory".to_owned(), q("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q("256Mi"))])),
        ..ResourceRequirements::default()
    }
}

fn pull_policy(instance: &AIRuntimeInstance) -> Option<String> {
    instance
        .spec
        .sidecar
        .as_ref()
        .and_then(|s| s.image_pull_policy)
        .map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_owned()
        })
}

fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(SIDECAR_UID),
        run_as_group: Some(SIDECAR_UID),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".to_owned()]),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn join_ports(ports: &[i32]) -> String {
    ports.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn sidecar_container(
    instance: &AIRuntimeInstance,
    image: &str,
    interception: &Interception,
    inbound_ports: &[i32],
    native: bool,
) -> Container {
    let sidecar = instance.spec.sidecar.clone().unwrap_or_default();
    let mode = match instance.spec.mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    };
    let failure_mode = match sidecar.failure_mode {
        FailureMode::FailOpen => "failOpen",
        FailureMode::FailClosed => "failClosed",
    };
    let inbound = match (interception.inbound, inbound_ports.is_empty()) {
        (_, true) | (InboundMode::Disabled, _) => "disabled",
        (InboundMode::Transparent, false) => "transparent",
        (InboundMode::Explicit, false) => "explicit",
    };
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mut env = vec![
        env_value(
            "AIRLOCK_INSTANCE",
            instance.metadata.name.as_deref().unwrap_or_default(),
        ),
        env_value("AIRLOCK_MODE", mode),
        env_value("AIRLOCK_FAILURE_MODE", failure_mode),
        env_value("AIRLOCK_POLICY_DIR", POLICY_MOUNT_PATH),
        env_value(
            "AIRLOCK_OUTBOUND",
            if interception.outbound { "true" } else { "false" },
        ),
        env_value("AIRLOCK_INBOUND_MODE", inbound),
    ];
    if !inbound_ports.is_empty() && interception.inbound != InboundMode::Disabled {
        env.push(env_value("AIRLOCK_INBOUND_PORTS", &join_ports(inbound_ports)));
    }
    env.extend([
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_field("POD_IP", "status.podIP"),
        env_field("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ]);
    Container {
        name: SIDECAR_NAME.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: pull_policy(instance),
        args: Some(vec!["run".to_owned()]),
        env: Some(env),
        ports: Some(vec![
            port("airlock-out", PORT_OUTBOUND),
            port("airlock-in", PORT_INBOUND),
            port("airlock-admin", PORT_ADMIN),
        ]),
        resources: Some(sidecar.resources.unwrap_or_else(default_resources)),
        // A startup probe holds back the next init container (and so the app) until the proxy is ready.
        startup_probe: Some(http_probe("/ready", 1, 60)),
        readiness_probe: Some(http_probe("/ready", 5, 3)),
        liveness_probe: Some(http_probe("/live", 10, 3)),
        security_context: Some(restricted_security_context()),
        volume_mounts: Some(vec![VolumeMount {
            name: POLICY_VOLUME.to_owned(),
            mount_path: POLICY_MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        restart_policy: native.then(|| "Always".to_owned()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The init container that redirects `ports` to the sidecar's inbound port. Runs as root with
/// `NET_ADMIN` and `NET_RAW`: not Pod Security `baseline`/`restricted` (use `explicit` inbound there).
fn init_container(instance: &AIRuntimeInstance, image: &str, ports: &[i32]) -> Container {
    let q = |s: &str| Quantity(s.to_owned());
    Container {
        name: INIT_NAME.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: pull_policy(instance),
        args: Some(vec!["init".to_owned()]),
        env: Some(vec![
            env_value("AIRLOCK_INBOUND_PORTS", &join_ports(ports)),
            env_value("AIRLOCK_INBOUND_TARGET_PORT", &PORT_INBOUND.to_string()),
            env_value("AIRLOCK_SIDECAR_UID", &SIDECAR_UID.to_string()),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), q("10m")),
                ("memory".to_owned(), q("16Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), q("64Mi"))])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(false),
            run_as_user: Some(0),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The injected containers as JSON: the sidecar, and `airlock-init` when inbound is transparent.
#[derive(Debug, Clone)]
struct ContainersJson {
    sidecar: Arc<RawValue>,
    init: Option<Arc<RawValue>>,
    /// The policy volume the sidecar mounts (it depends on the instance's name only).
    volume: Arc<RawValue>,
}

/// Everything the injected containers are built from, and what they came out as.
struct Built {
    instance: Option<String>,
    mode: Mode,
    sidecar: Option<SidecarSpec>,
    image: String,
    interception: Interception,
    inbound_ports: Vec<i32>,
    native: bool,
    json: ContainersJson,
}

/// How many builds each thread keeps: one per instance (and variant of ports) in practice.
const BUILT_CAPACITY: usize = 32;

thread_local! {
    /// The injected containers are the same for every pod an instance selects (given the same ports), and
    /// building and serialising them was a third of an injection; they are kept per thread, keyed by
    /// every input, so a changed instance can never get an old container.
    static BUILT: RefCell<Vec<Built>> = const { RefCell::new(Vec::new()) };
}

/// Whether inbound traffic is redirected by `airlock-init`.
fn is_transparent(interception: &Interception, inbound_ports: &[i32]) -> bool {
    interception.inbound == InboundMode::Transparent && !inbound_ports.is_empty()
}

fn build_containers(
    instance: &AIRuntimeInstance,
    image: &str,
    interception: &Interception,
    inbound_ports: &[i32],
    native: bool,
) -> ContainersJson {
    let transparent = is_transparent(interception, inbound_ports);
    ContainersJson {
        sidecar: to_raw(&sidecar_container(
            instance,
            image,
            interception,
            inbound_ports,
            native,
        )),
        init: transparent.then(|| to_raw(&init_container(instance, image, inbound_ports))),
        volume: to_raw(&policy_volume(instance)),
    }
}

/// The volume of the instance's policy bundle (the ConfigMap the operator writes; optional, so a pod
/// starts before the bundle exists).
fn policy_volume(instance: &AIRuntimeInstance) -> Volume {
    let instance_name = instance.metadata.name.as_deref().unwrap_or_default();
    Volume {
        name: POLICY_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: format!("airlock-policy-{instance_name}"),
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn containers_json(
    instance: &AIRuntimeInstance,
    image: &str,
    interception: &Interception,
    inbound_ports: &[i32],
    native: bool,
) -> ContainersJson {
    BUILT.with(|built| {
        let mut built = built.borrow_mut();
        let hit = built.iter().find(|b| {
            b.native == native
                && b.mode == instance.spec.mode
                && b.inbound_ports == inbound_ports
                && b.image == image
                && b.instance == instance.metadata.name
                && b.interception == *interception
                && b.sidecar == instance.spec.sidecar
        });
        if let Some(hit) = hit {
            return hit.json.clone();
        }
        let json = build_containers(instance, image, interception, inbound_ports, native);
        if built.len() >= BUILT_CAPACITY {
            built.remove(0);
        }
        built.push(Built {
            instance: instance.metadata.name.clone(),
            mode: instance.spec.mode,
            sidecar: instance.spec.sidecar.clone(),
            image: image.to_owned(),
            interception: interception.clone(),
            inbound_ports: inbound_ports.to_vec(),
            native,
            json: json.clone(),
        });
        json
    })
}

/// Whether the pod already went through injection (the sidecar anywhere, or the status annotation).
pub fn already_injected(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_STATUS));
    annotated || pod.spec.as_ref().is_some_and(crate::workload::has_sidecar)
}

/// Whether native sidecars (init containers with `restartPolicy: Always`) are available: 1.29 or later.
pub fn native_sidecars(server_version: (u32, u32)) -> bool {
    server_version >= (1, 29)
}

/// The patch that injects Airlock into `pod`, or why not.
///
/// The caller has already chosen `instance` (see [`crate::selection::choose`]); `namespace` is the
/// request's namespace; `server_version` is the API server's (major, minor); `default_image` is the
/// installation's sidecar image (see [`sidecar_image`]).
pub fn mutate(
    pod: &Pod,
    namespace: &str,
    instance: &AIRuntimeInstance,
    server_version: (u32, u32),
    default_image: &str,
) -> MutateOutcome {
    let _ = namespace; // the pod's identity comes from the downward API; kept for future per-namespace policy
    if already_injected(pod) {
        return MutateOutcome::Skip {
            reason: SkipReason::AlreadyInjected,
        };
    }
    let no_labels = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&no_labels);
    if labels.get(LABEL_INJECT).map(String::as_str) == Some("false") {
        return MutateOutcome::Skip {
            reason: SkipReason::OptedOut,
        };
    }
    let Some(spec) = pod.spec.as_ref() else {
        return MutateOutcome::Skip {
            reason: SkipReason::AlreadyInjected,
        };
    };
    if spec.host_network == Some(true) {
        return MutateOutcome::Skip {
            reason: SkipReason::HostNetwork,
        };
    }

    let interception = instance
        .spec
        .sidecar
        .as_ref()
        .and_then(|s| s.interception.clone())
        .unwrap_or_default();
    let extra = instance
        .spec
        .model_servers
        .as_ref()
        .map(|m| m.extra_fingerprints.as_slice())
        .unwrap_or_default();
    let server = fingerprint::detect(labels, spec, extra).filter(|m| m.strong);
    let inbound_ports: Vec<i32> = match &server {
        None => Vec::new(),
        Some(_) if !interception.inbound_ports.is_empty() => interception.inbound_ports.clone(),
        Some(m) => {
            // Prefer the ports the model container declares; fall back to the fingerprint's defaults.
            let declared: Vec<i32> = spec
                .containers
                .iter()
                .filter(|c| c.name == m.container)
                .flat_map(|c| c.ports.iter().flatten().map(|p| p.container_port))
                .collect();
            if declared.is_empty() {
                m.ports.clone()
            } else {
                declared
            }
        }
    };
    let native = native_sidecars(server_version);
    let transparent = is_transparent(&interception, &inbound_ports);

    let mut status = InjectionStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        instance: instance.metadata.name.clone().unwrap_or_default(),
        ..InjectionStatus::default()
    };
    let mut ops = Vec::new();

    let image = sidecar_image(instance, default_image);
    let ContainersJson {
        sidecar,
        init,
        volume,
    } = containers_json(instance, &image, &interception, &inbound_ports, native);

    // Volume.
    match &spec.volumes {
        Some(_) => ops.push(add(&["spec", "volumes", "-"], volume)),
        None => ops.push(add_array(&["spec", "volumes"], vec![volume])),
    }
    status.volumes.push(POLICY_VOLUME.to_owned());

    // Containers.
    let has_init = spec.init_containers.is_some();
    if native {
        // Both go in front: `airlock-init` first (the redirect is in place before anything listens), then
        // the sidecar, so it starts and becomes ready before every other init container and the app.
        let mut front = Vec::new();
        front.extend(init);
        front.push(sidecar);
        if has_init {
            for value in front.into_iter().rev() {
                ops.push(add(&["spec", "initContainers", "0"], value));
            }
        } else {
            ops.push(add_array(&["spec", "initContainers"], front));
        }
        if transparent {
            status.init_containers.push(INIT_NAME.to_owned());
        }
        status.init_containers.push(SIDECAR_NAME.to_owned());
    } else {
        if let Some(init) = init {
            if has_init {
                ops.push(add(&["spec", "initContainers", "-"], init));
            } else {
                ops.push(add_array(&["spec", "initContainers"], vec![init]));
            }
            status.init_containers.push(INIT_NAME.to_owned());
        }
        // Appended last, so the indices of the app containers (used below) do not move.
        ops.push(add(&["spec", "containers", "-"], sidecar));
        status.containers.push(SIDECAR_NAME.to_owned());
    }

    // App env.
    if interception.outbound {
        for (index, container) in spec.containers.iter().enumerate() {
            if fingerprint::is_airlock_container(&container.name)
                || container.env_from.as_ref().is_some_and(|e| !e.is_empty())
                || server.as_ref().is_some_and(|m| m.container == container.name)
            {
                continue;
            }
            let existing: Vec<&str> = container.env.iter().flatten().map(|e| e.name.as_str()).collect();
            let missing: Vec<EnvVar> = APP_ENV
                .iter()
                .filter(|(name, _)| !existing.contains(name))
                .map(|(name, value)| env_value(name, value))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let index = index.to_string();
            status.env.insert(
                container.name.clone(),
                missing.iter().map(|e| e.name.clone()).collect(),
            );
            if container.env.is_some() {
                for var in &missing {
                    ops.push(add(&["spec", "containers", &index, "env", "-"], to_raw(var)));
                }
            } else {
                ops.push(add(&["spec", "containers", &index, "env"], to_raw(&missing)));
            }
        }
    }

    // Annotations last: they record everything above.
    let status_json = serde_json::to_string(&status).unwrap_or_default();
    if pod.metadata.annotations.is_some() {
        ops.push(add(
            &["metadata", "annotations", ANNOTATION_INJECTED],
            to_raw("true"),
        ));
        ops.push(add(
            &["metadata", "annotations", ANNOTATION_STATUS],
            to_raw(&status_json),
        ));
    } else {
        let annotations = BTreeMap::from([(ANNOTATION_INJECTED, "true"), (ANNOTATION_STATUS, &status_json)]);
        ops.push(add(&["metadata", "annotations"], to_raw(&annotations)));
    }
    MutateOutcome::Patch(Patch(ops))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    /// An instance named `name` (default `a`) whose spec adds `spec`'s fields to a minimal one.
    fn instance(given: serde_json::Value) -> AIRuntimeInstance {
        let mut spec = json!({"selector": {}, "profileRef": {"name": "p"}});
        for (key, value) in given
            .get("spec")
            .and_then(|s| s.as_object())
            .into_iter()
            .flatten()
        {
            spec[key] = value.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "airlock.dev/v1alpha1", "kind": "AIRuntimeInstance",
            "metadata": {"name": given.get("name").and_then(|n| n.as_str()).unwrap_or("a")},
            "spec": spec
        }))
        .unwrap()
    }

    fn containers(instance: &AIRuntimeInstance, image: &str, ports: &[i32], native: bool) -> [String; 2] {
        let interception = instance
            .spec
            .sidecar
            .as_ref()
            .and_then(|s| s.interception.clone())
            .unwrap_or_default();
        let cached = containers_json(instance, image, &interception, ports, native);
        let fresh = build_containers(instance, image, &interception, ports, native);
        let text = |c: &ContainersJson| {
            format!(
                "{} {}",
                c.sidecar.get(),
                c.init.as_ref().map(|i| i.get()).unwrap_or("-")
            )
        };
        [text(&cached), text(&fresh)]
    }

    #[test]
    fn kept_containers_change_with_every_input_they_are_built_from() {
        let variants = [
            instance(json!({})),
            instance(json!({"name": "b"})),
            instance(json!({"spec": {"mode": "audit"}})),
            instance(json!({"spec": {"sidecar": {"failureMode": "failClosed"}}})),
            instance(json!({"spec": {"sidecar": {"imagePullPolicy": "Always"}}})),
            instance(json!({"spec": {"sidecar": {"resources": {"limits": {"memory": "1Gi"}}}}})),
            instance(json!({"spec": {"sidecar": {"interception": {"inbound": "explicit"}}}})),
            instance(json!({"spec": {"sidecar": {"interception": {"outbound": false}}}})),
            instance(json!({"spec": {"selector": {"podSelector": {"matchLabels": {"x": "y"}}}}})),
        ];
        let mut seen = std::collections::BTreeSet::new();
        // Twice over, interleaved: the second round is served from what the first kept.
        for round in 0..2 {
            for (i, instance) in variants.iter().enumerate() {
                for (image, ports, native) in [
                    ("img:1", &[][..], true),
                    ("img:2", &[][..], true),
                    ("img:1", &[8000][..], true),
                    ("img:1", &[8000, 8080][..], true),
                    ("img:1", &[8000][..], false),
                ] {
                    let [cached, fresh] = containers(instance, image, ports, native);
                    assert_eq!(
                        cached, fresh,
                        "round {round}, variant {i}, {image} {ports:?} {native}"
                    );
                    seen.insert(fresh);
                }
            }
        }
        // Every input made a difference somewhere (the first and last variants build the same).
        assert_eq!(seen.len(), (variants.len() - 1) * 5 - 2, "distinct builds");
    }

    #[test]
    fn pointers_escape_tilde_and_slash() {
        assert_eq!(
            pointer(&["metadata", "annotations", "airlock.dev/status"]),
            "/metadata/annotations/airlock.dev~1status"
        );
        assert_eq!(pointer(&["a~b", "-"]), "/a~0b/-");
        assert_eq!(pointer(&["~/é~", "/"]), "/~0~1é~0/~1");
        assert_eq!(pointer(&[] as &[&str]), "");
    }
}
