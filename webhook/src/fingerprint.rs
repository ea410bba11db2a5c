//! Recognising model servers: the built-in fingerprints, the user's `extraFingerprints`, and matching
//! them against a pod template.
//!
//! Evidence comes in two strengths. **Strong** evidence (an image, a launch command, a well-known label,
//! the explicit `airlock.dev/model-server: "true"` label or a user fingerprint) makes a workload a model
//! server and can lead to a denial. **Weak** evidence (a well-known port) is only reported: ports such
//! as 8000 and 8080 are used by countless ordinary apps, so a port alone never rejects a workload.
//!
//! Images are compared without their registry host (so mirrors such as `myregistry.local:5000/mirror/`
//! match), tag or digest; commands are compared token by token on the container's command and
//! arguments joined by spaces (so `sh -c "vllm serve ..."` matches too).

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::Fingerprint;

use crate::workload::{ContainerView, PodSpecView};

/// The pod label that declares a workload model-serving beyond the built-in fingerprints.
pub const LABEL_MODEL_SERVER: &str = "airlock.dev/model-server";

/// A model-server fingerprint that matched a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The container that matched (the first container for pod-level evidence such as labels).
    pub container: String,
    /// Name of the fingerprint, e.g. `vllm` or a user fingerprint's name.
    pub fingerprint: String,
    /// What matched, for messages, e.g. `image vllm/vllm-openai:v0.9.1`.
    pub evidence: String,
    /// Whether the evidence alone makes the workload a model server (see the module docs).
    pub strong: bool,
    /// Ports this model server listens on by default, for inbound interception.
    pub ports: Vec<i32>,
}

/// A built-in fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct BuiltIn {
    /// Name reported in [`Match::fingerprint`].
    pub name: &'static str,
    /// Image repositories, without registry host, tag or digest, compared on whole path components
    /// at the end of the image's repository: `vllm-openai` matches `docker.io/vllm/vllm-openai:v0.9.1`.
    pub images: &'static [&'static str],
    /// Launch commands as token sequences; the first token also matches by its file name
    /// (`/opt/tritonserver/bin/tritonserver`).
    pub commands: &'static [&'static str],
    /// Pod labels (`key=value`) that only this kind of server carries.
    pub labels: &'static [(&'static str, &'static str)],
    /// Pod label keys that only this kind of server carries, whatever their value.
    pub label_keys: &'static [&'static str],
    /// Default ports: weak evidence, and the default inbound interception ports.
    pub ports: &'static [i32],
}

/// The built-in fingerprints, most specific first.
pub const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        name: "vllm",
        images: &[
            "vllm/vllm-openai",
            "vllm-openai",
            "vllm/vllm-tpu",
            "rocm/vllm",
            "vllm-cpu",
            "vllm-openai-cpu",
        ],
        commands: &[
            "vllm serve",
            "vllm.entrypoints.openai.api_server",
            "vllm.entrypoints.api_server",
        ],
        labels: &[("app.kubernetes.io/name", "vllm")],
        label_keys: &[],
        ports: &[8000],
    },
    BuiltIn {
        name: "sglang",
        images: &["lmsysorg/sglang", "sglang"],
        commands: &["sglang.launch_server", "sglang serve"],
        labels: &[("app.kubernetes.io/name", "sglang")],
        label_keys: &[],
        ports: &[30000],
    },
    BuiltIn {
        name: "tgi",
        images: &["text-generation-inference", "tgi-gaudi"],
        commands: &["text-generation-launcher", "text-generation-server"],
        labels: &[
            ("app.kubernetes.io/name", "text-generation-inference"),
            ("app.kubernetes.io/name", "tgi"),
        ],
        label_keys: &[],
        ports: &[80, 8080],
    },
    BuiltIn {
        name: "text-embeddings-inference",
        images: &["text-embeddings-inference", "tei-gaudi"],
        commands: &["text-embeddings-router"],
        labels: &[("app.kubernetes.io/name", "text-embeddings-inference")],
        label_keys: &[],
        ports: &[80, 8080],
    },
    BuiltIn {
        name: "triton",
        images: &["tritonserver", "nvidia/tritonserver"],
        commands: &["tritonserver"],
        labels: &[
            ("app.kubernetes.io/name", "triton"),
            ("app.kubernetes.io/name", "tritonserver"),
        ],
        label_keys: &[],
        ports: &[8000, 8001, 8002],
    },
    BuiltIn {
        name: "nim",
        // NIM images live under `nvcr.io/nim/<publisher>/<model>`; see `image_is_nim`.
        images: &[],
        commands: &[],
        labels: &[
            ("app.kubernetes.io/name", "nim"),
            ("app.kubernetes.io/name", "nim-llm"),
        ],
        label_keys: &[],
        ports: &[8000],
    },
    BuiltIn {
        name: "ollama",
        images: &["ollama/ollama", "ollama"],
        commands: &["ollama serve"],
        labels: &[("app.kubernetes.io/name", "ollama")],
        label_keys: &[],
        ports: &[11434],
    },
    BuiltIn {
        name: "llama.cpp",
        images: &[
            "llama.cpp",
            "ggerganov/llama.cpp",
            "ggml-org/llama.cpp",
            "llama-cpp-python",
        ],
        commands: &["llama-server", "llama_cpp.server"],
        labels: &[
            ("app.kubernetes.io/name", "llama-cpp"),
            ("app.kubernetes.io/name", "llama.cpp"),
        ],
        label_keys: &[],
        ports: &[8080],
    },
    BuiltIn {
        name: "torchserve",
        images: &["pytorch/torchserve", "torchserve", "torchserve-kfs"],
        commands: &["torchserve --start", "torchserve"],
        labels: &[("app.kubernetes.io/name", "torchserve")],
        label_keys: &[],
        ports: &[8080, 8081, 8082],
    },
    BuiltIn {
        name: "tensorflow-serving",
        images: &[
            "tensorflow/serving",
            "tensorflow-serving",
            "bitnami/tensorflow-serving",
        ],
        commands: &["tensorflow_model_server"],
        labels: &[("app.kubernetes.io/name", "tensorflow-serving")],
        label_keys: &[],
        ports: &[8500, 8501],
    },
    BuiltIn {
        name: "localai",
        images: &["localai/localai", "localai", "local-ai", "go-skynet/local-ai"],
        commands: &["local-ai run", "local-ai"],
        labels: &[
            ("app.kubernetes.io/name", "localai"),
            ("app.kubernetes.io/name", "local-ai"),
        ],
        label_keys: &[],
        ports: &[8080],
    },
    BuiltIn {
        name: "ray-serve",
        // `rayproject/ray` alone runs any Ray workload, so only the Serve commands and labels are strong.
        images: &[],
        commands: &["serve run", "serve deploy", "serve start"],
        labels: &[("ray.io/serve", "true")],
        label_keys: &[],
        ports: &[8000],
    },
    BuiltIn {
        name: "kserve",
        images: &[
            "kserve/huggingfaceserver",
            "kserve/sklearnserver",
            "kserve/xgbserver",
            "kserve/lgbserver",
            "kserve/pmmlserver",
            "kserve/paddleserver",
            "kserve/torchserve-kfs",
        ],
        commands: &["huggingfaceserver", "sklearnserver", "xgbserver", "lgbserver"],
        labels: &[("component", "predictor")],
        label_keys: &["serving.kserve.io/inferenceservice"],
        ports: &[8080],
    },
    BuiltIn {
        name: "seldon",
        images: &["seldonio/mlserver", "mlserver"],
        commands: &["mlserver start"],
        labels: &[],
        label_keys: &["seldon-deployment-id", "seldon.io/model", "seldon-app"],
        ports: &[9000, 8080, 8081],
    },
];

/// Image substrings of the strongest fingerprints, for the `ValidatingAdmissionPolicy` twin that denies
/// unprotected model-server pods while the webhook is down. CEL has no image parser, so these are
/// substrings chosen to be unambiguous anywhere in an image reference (registry mirrors included).
pub const STRONG_IMAGE_PATTERNS: &[&str] = &[
    "vllm/vllm-openai",
    "/vllm-openai:",
    "lmsysorg/sglang",
    "huggingface/text-generation-inference",
    "huggingface/text-embeddings-inference",
    "/tritonserver:",
    "nvcr.io/nim/",
    "ollama/ollama",
    "llama.cpp:server",
    "pytorch/torchserve",
    "tensorflow/serving",
    "localai/localai",
    "seldonio/mlserver",
    "kserve/huggingfaceserver",
];

/// The image substrings of [`STRONG_IMAGE_PATTERNS`], for generators of the policy twin.
pub fn strong_image_patterns() -> &'static [&'static str] {
    STRONG_IMAGE_PATTERNS
}

/// The repository path of an image, without registry host, tag and digest:
/// `myregistry.local:5000/mirror/vllm/vllm-openai:v0.9@sha256:…` → `mirror/vllm/vllm-openai`.
pub fn image_repository(image: &str) -> &str {
    let image = image.trim();
    let image = image.split('@').next().unwrap_or(image);
    // A tag is a `:` after the last `/`; a `:` before it belongs to the registry's port.
    let image = match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &image[..colon],
        (Some(colon), None) => &image[..colon],
        _ => image,
    };
    match image.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
        _ => image,
    }
}

/// The tag of an image, if it has one.
fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => Some(&image[colon + 1..]),
        (Some(colon), None) => Some(&image[colon + 1..]),
        _ => None,
    }
}

/// Whether `repository` ends with the path components of `pattern`.
fn repository_ends_with(repository: &str, pattern: &str) -> bool {
    let repository = repository.to_ascii_lowercase();
    repository == pattern
        || repository
            .strip_suffix(pattern)
            .is_some_and(|head| head.ends_with('/'))
}

fn image_is_nim(repository: &str) -> bool {
    // `nim/<publisher>/<model>`, possibly below a mirror prefix.
    let parts: Vec<&str> = repository.split('/').collect();
    parts.iter().rev().skip(1).any(|part| *part == "nim") && parts.len() >= 3
}

fn builtin_image(image: &str) -> Option<&'static BuiltIn> {
    let repository = image_repository(image);
    if image_is_nim(repository) {
        return BUILT_IN.iter().find(|b| b.name == "nim");
    }
    BUILT_IN.iter().find(|b| {
        b.images
            .iter()
            .any(|pattern| repository_ends_with(repository, pattern))
    })
}

/// The container's command and arguments as whitespace-separated tokens, quotes removed.
fn command_tokens<C: ContainerView + ?Sized>(container: &C) -> Vec<String> {
    let parts = container.command().iter().chain(container.args());
    parts
        .flat_map(|part| part.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|'))
        .map(|token| token.trim_matches(|c| c == '"' || c == '\'' || c == '(' || c == ')'))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .collect()
}

fn file_name(token: &str) -> &str {
    token.rsplit('/').next().unwrap_or(token)
}

/// Whether `pattern` (space-separated tokens) occurs as consecutive tokens of `tokens`.
fn tokens_contain(tokens: &[String], pattern: &str) -> bool {
    let wanted: Vec<&str> = pattern.split(' ').collect();
    if wanted.is_empty() || tokens.len() < wanted.len() {
        return false;
    }
    tokens.windows(wanted.len()).any(|window| {
        window.iter().zip(&wanted).enumerate().all(|(i, (have, want))| {
            if i == 0 {
                have == want || file_name(have) == *want
            } else {
                have == want
            }
        })
    })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 96;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// A compiled `*`-glob from a user fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

/// Why a user fingerprint pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?} {problem}")]
pub struct GlobError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Glob {
    /// Compiles a pattern where `*` matches any run of characters.
    ///
    /// Refused: the empty pattern, a pattern of only `*` (it would make every container a model server)
    /// and control characters.
    pub fn compile(pattern: &str) -> Result<Self, GlobError> {
        let error = |problem| GlobError {
            pattern: pattern.to_owned(),
            problem,
        };
        if pattern.trim().is_empty() {
            return Err(error("is empty"));
        }
        if pattern.chars().all(|c| c == '*' || c.is_whitespace()) {
            return Err(error(
                "matches everything; name at least part of an image or command",
            ));
        }
        if pattern.chars().any(char::is_control) {
            return Err(error("contains a control character"));
        }
        Ok(Self {
            parts: pattern.split('*').map(str::to_owned).collect(),
            anchored_start: !pattern.starts_with('*'),
            anchored_end: !pattern.ends_with('*'),
        })
    }

    /// Whether the glob matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        let literal: Vec<&str> = self
            .parts
            .iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty())
            .collect();
        let mut rest = text;
        for (i, part) in literal.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == literal.len();
            if first && self.anchored_start {
                match rest.strip_prefix(part) {
                    Some(tail) => rest = tail,
                    None => return false,
                }
                if last && self.anchored_end {
                    return rest.is_empty();
                }
                continue;
            }
            if last && self.anchored_end {
                return rest.ends_with(part);
            }
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        !self.anchored_end || rest.is_empty() || literal.is_empty()
    }
}

/// Checks every pattern of the user fingerprints, returning one message per bad pattern.
pub fn check_fingerprints(fingerprints: &[Fingerprint]) -> Vec<String> {
    let mut problems = Vec::new();
    for fp in fingerprints {
        let patterns = fp.image_patterns.iter().chain(&fp.command_patterns);
        for pattern in patterns {
            if let Err(e) = Glob::compile(pattern) {
                problems.push(format!("extraFingerprints {:?}: {e}", fp.name));
            }
        }
        if fp.image_patterns.is_empty()
            && fp.command_patterns.is_empty()
            && fp.ports.is_empty()
            && fp.labels.is_empty()
        {
            problems.push(format!(
                "extraFingerprints {:?}: needs at least one of imagePatterns, commandPatterns, ports or labels",
                fp.name
            ));
        }
    }
    problems
}

/// Whether every criterion the user fingerprint sets matches; returns the evidence if so.
fn user_fingerprint_matches(
    fp: &Fingerprint,
    container: &impl ContainerView,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    let mut evidence = Vec::new();
    if !fp.image_patterns.is_empty() {
        let image = container.image()?;
        let hit = fp
            .image_patterns
            .iter()
            .filter_map(|p| Glob::compile(p).ok())
            .any(|g| g.matches(image));
        if !hit {
            return None;
        }
        evidence.push(format!("image {image}"));
    }
    if !fp.command_patterns.is_empty() {
        let joined = container
            .command()
            .iter()
            .chain(container.args())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let hit = fp
            .command_patterns
            .iter()
            .filter_map(|p| Glob::compile(p).ok())
            .any(|g| g.matches(&joined));
        if !hit {
            return None;
        }
        evidence.push(format!("command {:?}", shorten(&joined)));
    }
    if !fp.ports.is_empty() {
        let port = container.ports().find(|p| fp.ports.contains(p))?;
        evidence.push(format!("port {port}"));
    }
    if !fp.labels.is_empty() {
        if !fp.labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return None;
        }
        let shown: Vec<String> = fp.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        evidence.push(format!("labels {}", shown.join(",")));
    }
    if evidence.is_empty() {
        None
    } else {
        Some(evidence.join(", "))
    }
}

fn builtin_match(container: &impl ContainerView) -> Option<Match> {
    let name = container.name().to_owned();
    if let Some(image) = container.image()
        && let Some(fp) = builtin_image(image)
    {
        return Some(Match {
            container: name,
            fingerprint: fp.name.to_owned(),
            evidence: format!("image {image}"),
            strong: true,
            ports: fp.ports.to_vec(),
        });
    }
    let tokens = command_tokens(container);
    for fp in BUILT_IN {
        if let Some(pattern) = fp.commands.iter().find(|c| tokens_contain(&tokens, c)) {
            return Some(Match {
                container: name,
                fingerprint: fp.name.to_owned(),
                evidence: format!("command {pattern:?}"),
                strong: true,
                ports: fp.ports.to_vec(),
            });
        }
    }
    // llama.cpp's official image runs the server by tag alone: `ghcr.io/ggml-org/llama.cpp:server`.
    if let Some(image) = container.image()
        && image_repository(image).ends_with("llama.cpp")
        && image_tag(image).is_some_and(|t| t.starts_with("server"))
    {
        return Some(Match {
            container: name,
            fingerprint: "llama.cpp".to_owned(),
            evidence: format!("image {image}"),
            strong: true,
            ports: vec![8080],
        });
    }
    None
}

fn weak_port_match(container: &impl ContainerView) -> Option<Match> {
    // Only ports that few ordinary apps use; 8000/8080 would match half the cluster.
    const DISTINCTIVE: &[(i32, &str)] = &[
        (11434, "ollama"),
        (30000, "sglang"),
        (8500, "tensorflow-serving"),
        (8501, "tensorflow-serving"),
        (8001, "triton"),
        (8002, "triton"),
    ];
    container.ports().find_map(|port| {
        DISTINCTIVE.iter().find(|(p, _)| *p == port).map(|(p, fp)| Match {
            container: container.name().to_owned(),
            fingerprint: (*fp).to_owned(),
            evidence: format!("port {p}"),
            strong: false,
            ports: vec![*p],
        })
    })
}

fn label_match(labels: &BTreeMap<String, String>, first_container: &str) -> Option<Match> {
    let found = |fingerprint: &str, evidence: String, ports: &[i32]| Match {
        container: first_container.to_owned(),
        fingerprint: fingerprint.to_owned(),
        evidence,
        strong: true,
        ports: ports.to_vec(),
    };
    if labels.get(LABEL_MODEL_SERVER).map(String::as_str) == Some("true") {
        return Some(found(
            LABEL_MODEL_SERVER,
            format!("label {LABEL_MODEL_SERVER}=true"),
            &[],
        ));
    }
    for fp in BUILT_IN {
        if let Some((k, v)) = fp
            .labels
            .iter()
            .find(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        {
            // `component=predictor` is KServe's only together with its InferenceService label.
            if *k == "component" && !labels.contains_key("serving.kserve.io/inferenceservice") {
                continue;
            }
            return Some(found(fp.name, format!("label {k}={v}"), fp.ports));
        }
        if let Some(k) = fp.label_keys.iter().find(|k| labels.contains_key(**k)) {
            let v = labels.get(*k).map(String::as_str).unwrap_or_default();
            return Some(found(fp.name, format!("label {k}={v}"), fp.ports));
        }
    }
    None
}

/// The model-server fingerprint that matches a pod (template), if any: the first strong match, else the
/// first weak one.
///
/// Order: the user's `extra` fingerprints, then the built-in images and commands on each container
/// (init containers included, ephemeral ones not), then pod labels, then well-known ports (weak).
pub fn detect<S: PodSpecView + ?Sized>(
    labels: &BTreeMap<String, String>,
    spec: &S,
    extra: &[Fingerprint],
) -> Option<Match> {
    let containers: Vec<&S::Container> = spec.containers().iter().chain(spec.init_containers()).collect();
    for container in &containers {
        if is_airlock_container(container.name()) {
            continue;
        }
        for fp in extra {
            if let Some(evidence) = user_fingerprint_matches(fp, *container, labels) {
                return Some(Match {
                    container: container.name().to_owned(),
                    fingerprint: fp.name.clone(),
                    evidence,
                    strong: true,
                    ports: fp.ports.clone(),
                });
            }
        }
    }
    for container in &containers {
        if is_airlock_container(container.name()) {
            continue;
        }
        if let Some(found) = builtin_match(*container) {
            return Some(found);
        }
    }
    let first = spec.containers().first().map(|c| c.name()).unwrap_or_default();
    if let Some(found) = label_match(labels, first) {
        return Some(found);
    }
    containers
        .iter()
        .filter(|c| !is_airlock_container(c.name()))
        .find_map(|c| weak_port_match(*c))
}

/// Whether a container is one Airlock adds.
pub fn is_airlock_container(name: &str) -> bool {
    name == crate::mutate::SIDECAR_NAME || name == crate::mutate::INIT_NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_drops_registry_tag_and_digest() {
        assert_eq!(image_repository("vllm/vllm-openai:v0.9.1"), "vllm/vllm-openai");
        assert_eq!(image_repository("docker.io/vllm/vllm-openai"), "vllm/vllm-openai");
        assert_eq!(
            image_repository("myregistry.local:5000/mirror/vllm/vllm-openai:latest@sha256:abcd"),
            "mirror/vllm/vllm-openai"
        );
        assert_eq!(image_repository("localhost/ollama:0.3"), "ollama");
        assert_eq!(image_repository("nginx"), "nginx");
    }

    #[test]
    fn globs_match_like_the_crd_says() {
        let g = Glob::compile("*/vllm-openai:*").expect("compiles");
        assert!(g.matches("docker.io/vllm/vllm-openai:v1"));
        assert!(!g.matches("vllm-openai:v1"));
        let g = Glob::compile("registry.example.com/llm/*").expect("compiles");
        assert!(g.matches("registry.example.com/llm/x:1"));
        assert!(!g.matches("other.example.com/llm/x:1"));
        let g = Glob::compile("exact").expect("compiles");
        assert!(g.matches("exact") && !g.matches("exactly"));
        let g = Glob::compile("a*b*c").expect("compiles");
        assert!(g.matches("abc") && g.matches("aXbYc") && !g.matches("aXbYcd"));
        assert!(Glob::compile("**").is_err() && Glob::compile("").is_err());
    }

    #[test]
    fn port_words_do_not_make_a_command() {
        let tokens: Vec<String> = ["npm", "run", "serve"].map(String::from).to_vec();
        assert!(!tokens_contain(&tokens, "serve run"));
        let tokens: Vec<String> = ["/opt/tritonserver/bin/tritonserver", "--model-repository=/m"]
            .map(String::from)
            .to_vec();
        assert!(tokens_contain(&tokens, "tritonserver"));
    }
}
