//! `crdgen`: writes `charts/airlock/templates/crds.yaml` and `docs/reference.md` (no arguments; `make crds`),
//! prints plain CRD YAML (`--plain`) or fails when either file is out of date (`--check`).

use std::{
    io::{self, Write as _},
    process::ExitCode,
};

use airlock_crds::{
    Error,
    r#gen::{Command, workspace_root},
};

#[allow(clippy::print_stderr, reason = "stderr is crdgen's only error channel")]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let output = Command::parse(&args).and_then(|command| command.run(&workspace_root()));
    match output.map(|text| io::stdout().write_all(text.as_bytes())) {
        // A closed pipe (`crdgen --plain | head`) is the reader's choice, not a failure.
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("crdgen: cannot write to stdout: {error}");
            ExitCode::FAILURE
        }
        Err(error @ Error::Usage(_)) => {
            eprintln!("crdgen: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("crdgen: {error}");
            ExitCode::FAILURE
        }
    }
}
