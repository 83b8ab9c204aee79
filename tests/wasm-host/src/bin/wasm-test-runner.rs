//! Cargo runner for `wasm32-wasip1`: runs a WASI command (a libtest binary) in wasmtime.
//!
//! Usage: `wasm-test-runner <module.wasm> [args...]`. The module gets the arguments, the
//! environment, stdio and the current directory (preopened as `.`); the process exits with the
//! module's exit code, or 134 (like an abort) when it traps — a panicking test aborts on wasm32,
//! so libtest runs with `RUST_TEST_NOCAPTURE=1` to print the panic message before the abort.

use std::process::ExitCode;
use wasmtime::error::Context as _;
use wasmtime::{bail, Config, Engine, Linker, Module, Result, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasm-test-runner: {e:?}");
            ExitCode::from(134)
        }
    }
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        bail!("usage: wasm-test-runner <module.wasm> [args...]");
    };
    let engine = Engine::new(&Config::new())?;
    let module = Module::from_file(&engine, path).with_context(|| format!("loading {path}"))?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s)?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().inherit_env().args(&args);
    // A panic aborts on wasm32, and libtest's captured output dies with it: without this the
    // failing assertion's message is never printed.
    if std::env::var_os("RUST_TEST_NOCAPTURE").is_none() {
        wasi.env("RUST_TEST_NOCAPTURE", "1");
    }
    if let Ok(cwd) = std::env::current_dir() {
        wasi.preopened_dir(&cwd, ".", FsPerms::ReadWrite)
            .with_context(|| format!("preopening {}", cwd.display()))?;
    }
    let mut store = Store::new(&engine, wasi.build_p1());
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .context("the module has no `_start`: is it a WASI command?")?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(ExitCode::from(u8::try_from(exit.0).unwrap_or(1))),
            None => {
                eprintln!("wasm-test-runner: {path} trapped: {e:?}");
                Ok(ExitCode::from(134))
            }
        },
    }
}
