//! kubectl-mesh: renders a mesh config into Istio objects and applies, checks and removes them; runs the filter in a local Envoy; imports a standalone Envoy's config; migrates old manifests.

pub mod check;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod delivery;
pub mod disable;
pub mod discover;
pub mod enable;
pub mod envoy;
pub mod gateway;
pub mod gateway_api;
pub mod import;
pub mod istio;
pub mod locate;
pub mod migrate;
pub mod module;
pub mod names;
pub mod oci;
pub mod options;
pub mod ossm;
pub mod plan;
pub mod proxy_version;
pub mod render;
pub mod run;
pub mod supervise;
pub mod verify;
