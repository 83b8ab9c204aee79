//! The digimon example app behind the mesh: the gRPC server and the static server of its web page.

pub mod service;
pub mod web;

/// Code generated from `schema.proto` (package `digimon`) by tonic-prost-build.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("digimon");
}

use std::net::SocketAddr;
use std::time::Duration;

/// Why the gRPC server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address is taken or invalid.
    #[error("cannot listen on {addr}: {source}; pick another --listen address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener broke while serving.
    #[error("gRPC server on {addr} failed: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Binds `addr` (port 0 picks one) and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServeError> {
    let bind_err = |source| ServeError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Serves the Digimon service (plain gRPC over HTTP/2) on `listener` until the process ends;
/// `step` is the pause between stream updates.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    step: Duration,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    tonic::transport::Server::builder()
        .add_service(pb::digimon_server::DigimonServer::new(
            service::DigimonService::new(step),
        ))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|source| ServeError::Serve { addr, source })
}
