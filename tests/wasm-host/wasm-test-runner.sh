#!/usr/bin/env bash
# Cargo runner for wasm32-wasip1 (see .cargo/config.toml): runs the given test binary in
# wasmtime through the workspace's `wasm-test-runner` (built on demand, in the same target dir,
# with the `test` profile so it shares wasmtime with `cargo test -p mesh-wasm-host`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "${CARGO:-cargo}" run --quiet --profile test --manifest-path "$root/Cargo.toml" -p mesh-wasm-host --bin wasm-test-runner -- "$@"
