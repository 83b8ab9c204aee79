//! `kubectl-mesh`: the kubectl plugin entry point; all logic is in the library.

use clap::Parser;
use kubectl_mesh::cli::{init_logging, Cli, Outcome, EXIT_CHECKS_FAILED, EXIT_ERROR};
use kubectl_mesh::commands::{complete, run};
use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    // Run as `kubectl_complete-mesh` (a link kubectl finds on PATH): kubectl's completion of
    // `kubectl mesh ...`.
    let mut args = std::env::args();
    let name = args.next().unwrap_or_default();
    if std::path::Path::new(&name)
        .file_name()
        .is_some_and(|n| n == complete::COMPLETER)
    {
        complete::print(&args.collect::<Vec<_>>(), &mut std::io::stdout().lock());
        return Ok(ExitCode::SUCCESS);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(run(cli, &mut stdout)) {
        Ok(Outcome::Success) => Ok(ExitCode::SUCCESS),
        Ok(Outcome::ChecksFailed) => Ok(ExitCode::from(EXIT_CHECKS_FAILED)),
        Ok(Outcome::CouldNotRun) => Ok(ExitCode::from(EXIT_ERROR)),
        Ok(Outcome::Exit(code)) => Ok(ExitCode::from(code)),
        Err(e) => {
            drop(stdout);
            eprintln!("error: {}", anyhow::Error::from(e));
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}
