//! `kubectl-mesh`: the kubectl plugin entry point; all logic is in the library.

use clap::Parser;
use kubectl_mesh::cli::{init_logging, Cli, Outcome, EXIT_CHECKS_FAILED, EXIT_ERROR};
use kubectl_mesh::commands::{complete, run};
use kubectl_mesh::error_chain::error_chain;
use kubectl_mesh::output::Checked;
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
    // Every write to stdout is checked: a full disk or a closed pipe ends in an error.
    let mut stdout = Checked::new(std::io::stdout().lock());
    let result = runtime.block_on(run(cli, &mut stdout));
    let written = stdout.finish();
    let code = match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::ChecksFailed) => ExitCode::from(EXIT_CHECKS_FAILED),
        Ok(Outcome::CouldNotRun) => ExitCode::from(EXIT_ERROR),
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    };
    if let Err(e) = written {
        eprintln!("error: cannot write the output to stdout: {e}\n  fix: redirect it to a file with room, or read all of it");
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(code)
}
