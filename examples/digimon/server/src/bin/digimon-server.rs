//! `digimon-server`: the digimon gRPC service (plain gRPC over HTTP/2; Envoy does gRPC-Web).

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// The digimon gRPC server (service digimon.Digimon).
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the line `listening on` says which).
    #[arg(long, default_value = "127.0.0.1:6000")]
    listen: SocketAddr,
    /// Milliseconds between two QueryStream updates.
    #[arg(long, default_value_t = 500)]
    step_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), digimon_app::ServeError> {
    let args = Args::parse();
    let (listener, addr) = digimon_app::bind(args.listen).await?;
    println!("digimon-server: listening on {addr} (gRPC, HTTP/2)");
    digimon_app::serve_grpc(listener, Duration::from_millis(args.step_ms)).await
}
