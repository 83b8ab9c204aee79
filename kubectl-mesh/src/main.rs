//! `kubectl-mesh`: the kubectl plugin entry point.

use clap::{Parser, Subcommand};

/// Move routing, CORS and header logic into an Istio mesh.
#[derive(Parser)]
#[command(name = "kubectl-mesh", bin_name = "kubectl mesh", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the plugin version.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => println!("kubectl-mesh {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
