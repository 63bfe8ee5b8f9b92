//! certgate binary: parse the CLI, set up logging and the crypto provider, dispatch, map the
//! outcome to an exit code (0 ok, 1 material/endpoint failed, 2 usage or configuration error).

use std::process::ExitCode;

use clap::Parser;

use certgate::cli::{Cli, Command};
use certgate::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // rustls needs one process-wide provider; ring is our only one. Failure means another was
    // installed first, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match cli.command {
        Command::Check(args) => commands::check(&args),
        Command::Inspect(args) => commands::inspect(&args),
        Command::Run(args) => commands::run(&args),
        Command::Probe(args) => commands::probe(&args),
        Command::Demo(args) => commands::demo(&args),
    };
    ExitCode::from(outcome as u8)
}
