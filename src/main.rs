//! certgate binary: parse the CLI, set up the crypto provider, dispatch, map the outcome to an
//! exit code (0 ok, 1 material/endpoint failed, 2 usage or configuration error; `fleet`: 3 the
//! query API is unreachable, erroring or partial).
//!
//! `certgate demo` lives here, not in the library, and only with the `demo` feature (on by
//! default; the image builds without it).

use std::process::ExitCode;

use clap::Parser;

use certgate::cli::{Cli, Command};
use certgate::commands;

#[cfg(feature = "demo")]
mod demo;

fn main() -> ExitCode {
    // Before anything reads a key: a core dump would hold it.
    commands::forbid_core_dumps();
    let cli = Cli::parse();
    // rustls needs one process-wide provider; ring is our only one. Failure means another was
    // installed first, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match cli.command {
        Command::Check(args) => commands::check(&args),
        Command::Inspect(args) => commands::inspect(&args),
        Command::Run(args) => commands::run(&args),
        Command::Probe(args) => commands::probe(&args),
        Command::Fleet(args) => certgate::fleet::run(&args),
        Command::Gate(cmd) => commands::gate(&cmd),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args),
    };
    ExitCode::from(outcome as u8)
}
