//! Upstream naming: the one place that maps a Kubernetes service and port to an Envoy cluster.
//!
//! Istio names outbound clusters `outbound|PORT|SUBSET|FQDN`; the filter names the cluster in
//! [`UPSTREAM_HEADER`] and a `cluster_header` route sends the request there.

/// Request header the filter sets to the chosen cluster; a `cluster_header` route reads it
/// and removes it before forwarding. The filter removes a client-sent value, so a client can
/// never pick the upstream.
pub const UPSTREAM_HEADER: &str = "x-mesh-upstream";

/// Request header the filter sets (`1`) on requests of `grpcWeb` routes: the `grpc_web` filter
/// kubectl-mesh places after it translates only requests that carry it, so traffic the config
/// does not own is never translated. Removed before forwarding, like [`UPSTREAM_HEADER`].
pub const GRPC_WEB_HEADER: &str = "x-mesh-grpc-web";

/// Headers only the filter may set: removed from every request that arrives with them.
pub const RESERVED_HEADERS: [&str; 2] = [UPSTREAM_HEADER, GRPC_WEB_HEADER];

/// Fully-qualified service name: `server` -> `server.NS.svc.DOMAIN`, `server.other` ->
/// `server.other.svc.DOMAIN`, `x.ns.svc` -> `x.ns.svc.DOMAIN`; anything longer is kept as given.
pub fn service_fqdn(service: &str, namespace: &str, cluster_domain: &str) -> String {
    let s = service.trim_end_matches('.').to_ascii_lowercase();
    match s.split('.').count() {
        1 => format!("{s}.{namespace}.svc.{cluster_domain}"),
        2 => format!("{s}.svc.{cluster_domain}"),
        3 if s.ends_with(".svc") => format!("{s}.{cluster_domain}"),
        _ => s,
    }
}

/// Istio's outbound cluster name for a service port: `outbound|6000||server.digimon.svc.cluster.local`.
pub fn istio_cluster(fqdn: &str, port: u16) -> String {
    format!("outbound|{port}||{fqdn}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            service_fqdn("server", "digimon", "cluster.local"),
            "server.digimon.svc.cluster.local"
        );
        assert_eq!(
            service_fqdn("web.other", "digimon", "cluster.local"),
            "web.other.svc.cluster.local"
        );
        assert_eq!(
            service_fqdn("web.other.svc", "d", "corp"),
            "web.other.svc.corp"
        );
        assert_eq!(
            service_fqdn("Api.Example.COM", "d", "cluster.local"),
            "api.example.com"
        );
        assert_eq!(
            istio_cluster("server.digimon.svc.cluster.local", 6000),
            "outbound|6000||server.digimon.svc.cluster.local"
        );
    }
}
