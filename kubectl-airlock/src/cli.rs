//! The command line: `kubectl airlock <status|check|explain|logs>` with `kubectl`'s global flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::OutputFormat;

/// Airlock, from `kubectl`: what is protected, what admission would decide, why a pod is protected the
/// way it is, and what the sidecars blocked.
#[derive(Debug, Clone, Parser)]
#[command(name = "kubectl-airlock", bin_name = "kubectl airlock", version, about)]
pub struct Cli {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Show Airlock's coverage of the cluster: instances, profiles, address groups, unprotected model
    /// servers and the admission configuration.
    Status(StatusArgs),
    /// Decide offline, like Airlock's admission webhooks would, about the workloads in manifests.
    ///
    /// Exit code: 0 when nothing would be denied, 1 when something would be, 2 for unusable input.
    Check(CheckArgs),
    /// Explain how Airlock treats a pod: the instance that selects it (or why none does), injection,
    /// model-server detection, exemptions, address groups and the rules that name them.
    Explain(ExplainArgs),
    /// Show the threat logs of Airlock's sidecars (or of a file), filtered.
    Logs(LogsArgs),
}

/// `status` takes no flags of its own (its objects are cluster-scoped).
#[derive(Debug, Clone, Default, Args)]
pub struct StatusArgs {}

/// `check`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Manifest file, directory (its *.yaml, *.yml and *.json files, sorted) or `-` for stdin.
    /// Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,

    /// More AISecurityProfile, AIRuntimeInstance and Namespace objects that make up the cluster, in the
    /// same formats as -f (e.g. `kubectl get airi,aisp,ns -o yaml > cluster.yaml`). Repeatable.
    #[arg(long = "cluster-state", value_name = "PATH")]
    pub cluster_state: Vec<PathBuf>,

    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// The Kubernetes version to decide for, as `MAJOR.MINOR` (native sidecars from 1.29).
    #[arg(long, value_name = "VERSION", default_value = "1.33")]
    pub kube_version: String,

    /// Also list the objects that are not workloads (decision `ignored`).
    #[arg(long)]
    pub show_ignored: bool,
}

/// `explain`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The pod's name (`pod/NAME` works too).
    pub pod: String,

    /// The pod's namespace (default: the context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `logs`' flags.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Namespace whose sidecars to read (default: the context's namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,

    /// Read the sidecars of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Only entries with a detection of this category (`injection`, `dlp`, `url`, `code`, `topic`), or
    /// whose verdict category is this (`malicious`, `benign`). Repeatable: any of them.
    #[arg(long, value_name = "CATEGORY")]
    pub category: Vec<String>,

    /// Only entries with this action. Repeatable: any of them.
    #[arg(long, value_enum, value_name = "ACTION")]
    pub action: Vec<ActionFilter>,

    /// Only prompts or only responses.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionFilter>,

    /// Keep streaming new entries.
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only entries newer than this, e.g. `30s`, `10m`, `2h`, `1h30m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<std::time::Duration>,

    /// Read threat logs from this file (`-` for stdin) instead of the cluster, e.g. a standalone
    /// sidecar's standard output.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["namespace", "all_namespaces"])]
    pub file: Option<PathBuf>,
}

/// `--action` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionFilter {
    /// Refused.
    Block,
    /// Masked and let through.
    Mask,
    /// Let through and logged.
    Alert,
    /// Let through.
    Allow,
}

impl ActionFilter {
    /// The threat log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionFilter::Block => "block",
            ActionFilter::Mask => "mask",
            ActionFilter::Alert => "alert",
            ActionFilter::Allow => "allow",
        }
    }
}

/// `--direction` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionFilter {
    /// What the application sent to the model.
    Prompt,
    /// What the model answered.
    Response,
}

impl DirectionFilter {
    /// The threat log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectionFilter::Prompt => "prompt",
            DirectionFilter::Response => "response",
        }
    }
}

/// Parses a Go-style duration made of `<number><unit>` parts with units `s`, `m`, `h` and `d`, e.g.
/// `90s`, `10m`, `1h30m`; a bare number is seconds.
pub fn parse_since(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration like 30s, 10m, 2h or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn since_takes_go_style_durations() {
        assert_eq!(parse_since("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_since("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_since("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_since("45"), Ok(Duration::from_secs(45)));
        assert!(parse_since("").is_err());
        assert!(parse_since("10x").is_err());
        assert!(parse_since("m").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
