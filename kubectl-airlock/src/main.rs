//! `kubectl airlock`: parses the command line, runs it, and turns errors into exit codes.

use std::process::ExitCode;

use clap::Parser;
use kubectl_airlock::cli::Cli;
use kubectl_airlock::{Error, Io, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let stdin = std::io::stdin();
    let mut io = Io {
        out: &mut stdout.lock(),
        err: &mut stderr.lock(),
        stdin: &mut stdin.lock(),
    };
    match run(cli, &mut io).await {
        Ok(code) => ExitCode::from(code),
        // `kubectl airlock logs | head` closes the pipe early; that is not a failure.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints `error: <what>: <why>: …` on stderr, like kubectl.
#[allow(clippy::print_stderr, reason = "the one place errors reach the user")]
fn report(error: &Error) {
    eprintln!("error: {}", kubectl_airlock::error::chain(error));
}
