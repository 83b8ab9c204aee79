//! kubectl-mesh: renders a mesh config into Istio objects and applies, checks and removes them; migrates old manifests.

pub mod check;
pub mod cli;
pub mod cluster;
pub mod enable;
pub mod migrate;
pub mod module;
pub mod plan;
pub mod render;
