//! `kubectl airlock`: cluster coverage ([`status`]), offline admission checks ([`check`]), why a pod is
//! protected the way it is ([`explain`]) and the sidecars' threat logs ([`logs`]).
//!
//! Each command is a pure part (build a report from objects, render it) and a thin part that reads the
//! cluster; [`run`] wires them to the command line. [`manifest`] reads YAML and JSON inputs with their
//! file and line, [`output`] prints tables and structured documents, [`cluster`] connects like
//! `kubectl`.

pub mod check;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod explain;
pub mod logs;
pub mod manifest;
pub mod output;
pub mod status;

use std::io::{BufRead, Write};

pub use error::{Error, Result};

use cli::{CheckArgs, Cli, Command, ExplainArgs, LogsArgs};
use output::OutputFormat;

/// Where a command reads and writes.
pub struct Io<'a> {
    /// Results.
    pub out: &'a mut dyn Write,
    /// Warnings.
    pub err: &'a mut dyn Write,
    /// Input for `-f -` and `--file -`.
    pub stdin: &'a mut dyn BufRead,
}

fn write(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes()).map_err(Error::Output)?;
    out.flush().map_err(Error::Output)
}

/// Runs the command line; returns the exit code (see [`error`] for failures).
pub async fn run(cli: Cli, io: &mut Io<'_>) -> Result<u8> {
    let format = cli.output;
    match &cli.command {
        Command::Check(args) => check_command(args, format, io),
        Command::Logs(args) if args.file.is_some() => logs_from_file(args, format, io),
        Command::Status(_) => {
            let (client, _) = cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            let report = status::build(&status::fetch(&client).await?);
            let text = match output::structured(format, &report) {
                Some(text) => text?,
                None => status::render_table(&report),
            };
            write(io.out, &text)?;
            Ok(0)
        }
        Command::Explain(args) => {
            let (client, default_ns) =
                cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            explain_command(&client, args, &default_ns, format, io).await
        }
        Command::Logs(args) => {
            let (client, default_ns) =
                cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            logs_from_cluster(&client, args, &default_ns, format, io).await
        }
    }
}

fn check_command(args: &CheckArgs, format: OutputFormat, io: &mut Io<'_>) -> Result<u8> {
    let version = check::parse_version(&args.kube_version)?;
    let mut stdin_used = false;
    let stdin = &mut *io.stdin;
    let mut read_stdin = || {
        // Stdin can be read once; a second `-` gets nothing more.
        let mut text = String::new();
        if !stdin_used {
            stdin_used = true;
            std::io::Read::read_to_string(stdin, &mut text)?;
        }
        Ok(text)
    };
    let inputs = manifest::load(&args.files, &mut read_stdin)?;
    let state = manifest::load(&args.cluster_state, &mut read_stdin)?;
    let report = check::check(&inputs, &state, &args.namespace, version, args.show_ignored)?;
    let text = match output::structured(format, &report) {
        Some(text) => text?,
        None => check::render_table(&report),
    };
    write(io.out, &text)?;
    Ok(if report.has_denials() {
        error::EXIT_FAILURE
    } else {
        0
    })
}

async fn explain_command(
    client: &kube::Client,
    args: &ExplainArgs,
    default_ns: &str,
    format: OutputFormat,
    io: &mut Io<'_>,
) -> Result<u8> {
    let namespace = args.namespace.as_deref().unwrap_or(default_ns);
    let inputs = explain::fetch(client, namespace, &args.pod).await?;
    let explanation = explain::explain(&inputs);
    let text = match output::structured(format, &explanation) {
        Some(text) => text?,
        None => explain::render_text(&explanation),
    };
    write(io.out, &text)?;
    Ok(0)
}

fn filter(args: &LogsArgs) -> logs::Filter {
    logs::Filter {
        categories: args.category.clone(),
        actions: args.action.clone(),
        direction: args.direction,
        since: None,
    }
    .since_age(args.since, k8s_openapi::jiff::Timestamp::now())
}

fn logs_from_file(args: &LogsArgs, format: OutputFormat, io: &mut Io<'_>) -> Result<u8> {
    let filter = filter(args);
    let path = args.file.clone().unwrap_or_default();
    let read_error = |source| Error::Read {
        path: path.clone(),
        source,
    };
    if path.as_os_str() == "-" && args.follow {
        // Entries are shown as they arrive, e.g. from a standalone sidecar piped into the plugin.
        if format == OutputFormat::Table {
            write(io.out, &logs::follow_header())?;
        }
        let mut line = String::new();
        loop {
            line.clear();
            if io.stdin.read_line(&mut line).map_err(read_error)? == 0 {
                return Ok(0);
            }
            let Some(record) = logs::record_from_file(&line).filter(|r| filter.matches(&r.entry)) else {
                continue;
            };
            let text = match format {
                OutputFormat::Table => logs::follow_row(&record),
                _ => logs::render_structured(&record, format)?,
            };
            write(io.out, &text)?;
        }
    }
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(io.stdin, &mut text).map_err(read_error)?;
        text
    } else {
        std::fs::read_to_string(&path).map_err(read_error)?
    };
    let records = logs::from_text(&text, &filter);
    write(io.out, &logs::render(&records, format)?)?;
    Ok(0)
}

async fn logs_from_cluster(
    client: &kube::Client,
    args: &LogsArgs,
    default_ns: &str,
    format: OutputFormat,
    io: &mut Io<'_>,
) -> Result<u8> {
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(args.namespace.as_deref().unwrap_or(default_ns))
    };
    let pods = logs::sidecar_pods(client, namespace).await?;
    if pods.is_empty() {
        let place = namespace.map_or_else(|| "any namespace".to_owned(), |ns| format!("namespace {ns}"));
        // Not an error: there is nothing to read yet.
        let _ = writeln!(io.err, "No pods with an airlock-sidecar in {place}.");
        return Ok(0);
    }
    let filter = filter(args);
    if args.follow {
        logs::follow_cluster(client, &pods, args.since, &filter, format, io.out, io.err).await?;
    } else {
        let records = logs::read_cluster(client, &pods, args.since, &filter, io.err).await;
        write(io.out, &logs::render(&records, format)?)?;
    }
    Ok(0)
}
