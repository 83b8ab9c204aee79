//! `kubectl-mesh`: the kubectl plugin entry point; all logic is in the library.

use clap::Parser;
use kubectl_mesh::cli::{init_logging, Cli, Outcome};
use kubectl_mesh::commands::run;
use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(run(cli, &mut stdout)) {
        Ok(Outcome::Success) => Ok(ExitCode::SUCCESS),
        Ok(Outcome::ChecksFailed) => Ok(ExitCode::FAILURE),
        Ok(Outcome::Exit(code)) => Ok(ExitCode::from(code)),
        Err(e) => {
            drop(stdout);
            eprintln!("error: {}", anyhow::Error::from(e));
            Ok(ExitCode::FAILURE)
        }
    }
}
