//! Fits the injection classifier from the labelled sets in the tree and writes
//! `sidecar/src/engine/data/injection_model.bin` (`make model`). A unit test fails when the shipped file is
//! not what this writes.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use airlock_sidecar::engine::classifier;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (model, report) = match classifier::fit_shipped(dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fit_injection_model: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = dir.join("src/engine/data/injection_model.bin");
    if let Err(e) = std::fs::write(&out, model.to_bytes()) {
        eprintln!("fit_injection_model: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("{}: {model}", out.display());
    println!("{report}");
    ExitCode::SUCCESS
}
