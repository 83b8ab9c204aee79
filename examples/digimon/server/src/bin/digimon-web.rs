//! `digimon-web`: serves the digimon web page (the `web` service of the example).

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Static server for the built digimon page.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the line `listening on` says which).
    #[arg(long, default_value = "127.0.0.1:8060")]
    listen: SocketAddr,
    /// Directory with index.html and app.js (`make digimon-web` builds it).
    #[arg(long, default_value = "target/digimon-web")]
    dir: PathBuf,
}

/// Why the web server did not run.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Bind(#[from] digimon_app::ServeError),
    #[error(transparent)]
    Web(#[from] digimon_app::web::WebError),
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    digimon_app::web::check_root(&args.dir)?;
    let (listener, addr) = digimon_app::bind(args.listen).await?;
    println!(
        "digimon-web: listening on {addr}, serving {}",
        args.dir.display()
    );
    digimon_app::web::serve(listener, args.dir).await?;
    Ok(())
}
