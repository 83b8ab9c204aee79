//! `make bench`: the mesh filter measured against native Envoy, a no-op Wasm floor, Lua and a
//! direct-response ceiling in one run (interleaved, as ratios), per request kind, from 10 to
//! 10,000 hosts, and at startup; the report is `bench/README.md`.

pub mod callgrind;
pub mod cost;
pub mod load;
pub mod memory;
pub mod profile;
pub mod report;
pub mod run;
pub mod setups;
pub mod targets;

pub use run::{run, Options, Results};
