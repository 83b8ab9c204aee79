//! `mesh-filter`: a thin proxy-wasm adapter around `mesh_core::Engine`. The ABI entry points are
//! in [`exports`]; [`vm`] keeps the per-VM state behind them: the compiled engine per plugin
//! configuration (compiled once in `on_configure`), the open streams, the counters.

mod abi;
mod exports;
pub mod host;
pub mod metrics;
pub mod vm;
