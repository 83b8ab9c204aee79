//! The host functions: proxy-wasm calls in the `env` module, WASI preview 1 from wasmtime-wasi,
//! and a trapping stub for every other import, so an unimplemented call fails loudly.

use crate::abi::{self, BufferType, LogLevel, MapType, Status};
use crate::{HostState, LocalResponse, LogEntry, Metric};
use wasmtime::{
    bail, format_err, Caller, Extern, ExternType, Linker, Memory, Module, Result, Store,
};

type C<'a> = Caller<'a, HostState>;

/// Adds WASI preview 1 and every proxy-wasm call this host implements.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut HostState| &mut s.wasi)?;
    let l = linker;
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: u32, ptr: u32, len: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_log") {
                return Ok(status);
            }
            let Some(level) = LogLevel::from_raw(level) else {
                return fail(
                    &mut c,
                    format!("proxy_log: level {level} is not in the ABI"),
                );
            };
            let msg = read(&mut c, ptr, len, "proxy_log message")?;
            c.data_mut().logs.push(LogEntry {
                level,
                message: String::from_utf8_lossy(&msg).into_owned(),
            });
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_log_level") {
                return Ok(status);
            }
            let level = c.data().log_level as u32;
            write(&mut c, ret, &level.to_le_bytes(), "proxy_get_log_level")?;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_current_time_nanoseconds") {
                return Ok(status);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            write(&mut c, ret, &now.to_le_bytes(), "proxy_get_current_time")?;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, period: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_set_tick_period_milliseconds") {
                return Ok(status);
            }
            c.data_mut().tick_period_ms = period;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>,
         kind: u32,
         start: u32,
         max: u32,
         ret_ptr: u32,
         ret_size: u32|
         -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_buffer_bytes") {
                return Ok(status);
            }
            let Some(buf) = c.data().buffers.get(&kind) else {
                return Ok(Status::NotFound as u32);
            };
            let start = start as usize;
            if start > buf.len() {
                return Ok(Status::BadArgument as u32);
            }
            let end = buf.len().min(start.saturating_add(max as usize));
            let data = buf.get(start..end).unwrap_or_default().to_vec();
            if data.is_empty() {
                // Envoy writes nothing for an empty range; the SDK then sees a null pointer.
                return Ok(Status::Ok as u32);
            }
            give(&mut c, &data, ret_ptr, ret_size, "proxy_get_buffer_bytes")?;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, kind: u32, start: u32, size: u32, ptr: u32, len: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_set_buffer_bytes") {
                return Ok(status);
            }
            if kind != BufferType::HttpRequestBody as u32
                && kind != BufferType::HttpResponseBody as u32
            {
                return fail(
                    &mut c,
                    format!("proxy_set_buffer_bytes: buffer {kind} is not writable"),
                );
            }
            let data = read(&mut c, ptr, len, "proxy_set_buffer_bytes data")?;
            let buf = c.data_mut().buffers.entry(kind).or_default();
            let start = (start as usize).min(buf.len());
            let end = start.saturating_add(size as usize).min(buf.len());
            buf.splice(start..end, data);
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, map: u32, ret_ptr: u32, ret_size: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_header_map_pairs") {
                return Ok(status);
            }
            let Some(h) = map_mut(&mut c, map, "proxy_get_header_map_pairs")? else {
                return Ok(Status::BadArgument as u32);
            };
            let bytes = h.serialize();
            give(
                &mut c,
                &bytes,
                ret_ptr,
                ret_size,
                "proxy_get_header_map_pairs",
            )?;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, map: u32, ptr: u32, len: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_set_header_map_pairs") {
                return Ok(status);
            }
            let bytes = read(&mut c, ptr, len, "proxy_set_header_map_pairs data")?;
            let Some(pairs) = abi::deserialize_map(&bytes) else {
                return fail(
                    &mut c,
                    "proxy_set_header_map_pairs: malformed map".to_owned(),
                );
            };
            let lowered = pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            let Some(h) = map_mut(&mut c, map, "proxy_set_header_map_pairs")? else {
                return Ok(Status::BadArgument as u32);
            };
            h.0 = lowered;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, map: u32, kp: u32, kl: u32, ret_ptr: u32, ret_size: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_header_map_value") {
                return Ok(status);
            }
            let key = read(&mut c, kp, kl, "header name")?;
            let Some(h) = map_mut(&mut c, map, "proxy_get_header_map_value")? else {
                return Ok(Status::BadArgument as u32);
            };
            let value =
                h.0.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                    .map(|(_, v)| v.clone());
            match value {
                None => Ok(Status::NotFound as u32),
                Some(v) if v.is_empty() => {
                    write(&mut c, ret_ptr, &0u32.to_le_bytes(), "header value pointer")?;
                    write(&mut c, ret_size, &0u32.to_le_bytes(), "header value size")?;
                    Ok(Status::Ok as u32)
                }
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_size, "proxy_get_header_map_value")?;
                    Ok(Status::Ok as u32)
                }
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, map: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_replace_header_map_value") {
                return Ok(status);
            }
            let key = read(&mut c, kp, kl, "header name")?.to_ascii_lowercase();
            let value = read(&mut c, vp, vl, "header value")?;
            let Some(h) = map_mut(&mut c, map, "proxy_replace_header_map_value")? else {
                return Ok(Status::BadArgument as u32);
            };
            // Envoy's setCopy: every old value goes, the new one is appended.
            h.0.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            h.0.push((key, value));
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, map: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_add_header_map_value") {
                return Ok(status);
            }
            let key = read(&mut c, kp, kl, "header name")?.to_ascii_lowercase();
            let value = read(&mut c, vp, vl, "header value")?;
            let Some(h) = map_mut(&mut c, map, "proxy_add_header_map_value")? else {
                return Ok(Status::BadArgument as u32);
            };
            h.0.push((key, value));
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, map: u32, kp: u32, kl: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_remove_header_map_value") {
                return Ok(status);
            }
            let key = read(&mut c, kp, kl, "header name")?;
            let Some(h) = map_mut(&mut c, map, "proxy_remove_header_map_value")? else {
                return Ok(Status::BadArgument as u32);
            };
            h.0.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: u32, pl: u32, _ret_ptr: u32, _ret_size: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_property") {
                return Ok(status);
            }
            // Validate the path pointer, then answer as Envoy does for an unknown property.
            read(&mut c, pp, pl, "property path")?;
            Ok(Status::NotFound as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: u32,
         dp: u32,
         dl: u32,
         bp: u32,
         bl: u32,
         hp: u32,
         hl: u32,
         grpc_status: i32|
         -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_send_local_response") {
                return Ok(status);
            }
            let details = read(&mut c, dp, dl, "local response details")?;
            let body = read(&mut c, bp, bl, "local response body")?;
            let raw = read(&mut c, hp, hl, "local response headers")?;
            let Some(pairs) = abi::deserialize_map(&raw) else {
                return fail(
                    &mut c,
                    "proxy_send_local_response: malformed header map".to_owned(),
                );
            };
            if !(100..=599).contains(&status) {
                return fail(
                    &mut c,
                    format!("proxy_send_local_response: status {status}"),
                );
            }
            if c.data().local_response.is_some() {
                return fail(
                    &mut c,
                    "proxy_send_local_response called twice on one stream".to_owned(),
                );
            }
            c.data_mut().local_response = Some(LocalResponse {
                status,
                details,
                headers: crate::Headers(pairs),
                body,
                grpc_status,
            });
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_set_effective_context") {
                return Ok(status);
            }
            if !c.data().contexts.contains(&id) {
                return Ok(Status::BadArgument as u32);
            }
            c.data_mut().effective_context = id;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap("env", "proxy_done", |mut c: C<'_>| -> Result<u32> {
        if let Some(status) = enter(&mut c, "proxy_done") {
            return Ok(status);
        }
        c.data_mut().done_calls += 1;
        Ok(Status::Ok as u32)
    })?;
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: u32, np: u32, nl: u32, ret: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_define_metric") {
                return Ok(status);
            }
            if kind > 2 {
                return Ok(Status::BadArgument as u32);
            }
            let name = String::from_utf8_lossy(&read(&mut c, np, nl, "metric name")?).into_owned();
            let metrics = &mut c.data_mut().metrics;
            let index = match metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    metrics.push(Metric {
                        name,
                        kind,
                        value: 0,
                    });
                    metrics.len() - 1
                }
            };
            // Ids start at 1: the filter treats 0 as "not defined".
            let id = u32::try_from(index + 1)?;
            write(&mut c, ret, &id.to_le_bytes(), "metric id")?;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: u32, offset: i64| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_increment_metric") {
                return Ok(status);
            }
            let Some(m) = metric(&mut c, id) else {
                return Ok(Status::NotFound as u32);
            };
            if m.kind == 2 {
                return Ok(Status::BadArgument as u32);
            }
            m.value = m.value.saturating_add_signed(offset);
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: u32, value: u64| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_record_metric") {
                return Ok(status);
            }
            let Some(m) = metric(&mut c, id) else {
                return Ok(Status::NotFound as u32);
            };
            m.value = value;
            Ok(Status::Ok as u32)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, ret: u32| -> Result<u32> {
            if let Some(status) = enter(&mut c, "proxy_get_metric") {
                return Ok(status);
            }
            let Some(value) = metric(&mut c, id).map(|m| m.value) else {
                return Ok(Status::NotFound as u32);
            };
            write(&mut c, ret, &value.to_le_bytes(), "metric value")?;
            Ok(Status::Ok as u32)
        },
    )?;
    Ok(())
}

/// Defines every import `module` needs that the linker lacks as a function that records a
/// failure and traps, naming the call.
pub(crate) fn stub_unimplemented(
    linker: &mut Linker<HostState>,
    store: &mut Store<HostState>,
    module: &Module,
) -> Result<()> {
    let missing: Vec<_> = module
        .imports()
        .filter(|i| linker.get(&mut *store, i.module(), i.name()).is_err())
        .map(|i| (i.module().to_owned(), i.name().to_owned(), i.ty()))
        .collect();
    for (m, name, ty) in missing {
        let ExternType::Func(ft) = ty else {
            bail!("the module imports `{m}.{name}`, which is not a function; the harness cannot provide it");
        };
        let what = format!("{m}.{name}");
        linker.func_new(&m, &name, ft, move |mut c, params, _results| {
            let msg = format!("unimplemented host call `{what}` (arguments {params:?}): the test harness does not provide it");
            c.data_mut().failures.push(msg.clone());
            Err(format_err!(msg))
        })?;
    }
    Ok(())
}

/// Counts a host call; `Some(status)` when a test injected a failure for this call.
fn enter(c: &mut C<'_>, name: &'static str) -> Option<u32> {
    let st = c.data_mut();
    st.host_calls += 1;
    match st.call_counts.iter_mut().find(|(n, _)| *n == name) {
        Some((_, count)) => *count += 1,
        None => st.call_counts.push((name, 1)),
    }
    match &st.inject {
        Some((call, status)) if call == name => Some(*status),
        _ => None,
    }
}

/// Records a failure and traps.
fn fail(c: &mut C<'_>, msg: String) -> Result<u32> {
    c.data_mut().failures.push(msg.clone());
    Err(format_err!(msg))
}

/// The guest's memory, looked up once per VM (an export lookup per host call would make the
/// harness, not the filter, the cost the benchmark measures).
fn memory(c: &mut C<'_>) -> Result<Memory> {
    if let Some(m) = c.data().memory {
        return Ok(m);
    }
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => {
            c.data_mut().memory = Some(m);
            Ok(m)
        }
        _ => Err(format_err!("the module exports no memory")),
    }
}

fn read(c: &mut C<'_>, ptr: u32, len: u32, what: &str) -> Result<Vec<u8>> {
    let m = memory(c)?;
    let mut buf = vec![0u8; len as usize];
    if let Err(e) = m.read(&*c, ptr as usize, &mut buf) {
        let msg = format!("{what}: guest pointer {ptr:#x}+{len} is out of bounds ({e})");
        c.data_mut().failures.push(msg.clone());
        bail!(msg);
    }
    Ok(buf)
}

fn write(c: &mut C<'_>, ptr: u32, data: &[u8], what: &str) -> Result<()> {
    let m = memory(c)?;
    if let Err(e) = m.write(&mut *c, ptr as usize, data) {
        let msg = format!("{what}: guest pointer {ptr:#x} is out of bounds ({e})");
        c.data_mut().failures.push(msg.clone());
        bail!(msg);
    }
    Ok(())
}

/// Hands `data` to the guest: allocates with its `proxy_on_memory_allocate` (or `malloc`),
/// copies, and stores the pointer and size at `ret_ptr`/`ret_size`.
fn give(c: &mut C<'_>, data: &[u8], ret_ptr: u32, ret_size: u32, what: &str) -> Result<()> {
    let alloc = match c.data().allocator.clone() {
        Some(f) => f,
        None => match c
            .get_export("proxy_on_memory_allocate")
            .or_else(|| c.get_export("malloc"))
        {
            Some(Extern::Func(f)) => {
                let f = f.typed::<u32, u32>(&*c)?;
                c.data_mut().allocator = Some(f.clone());
                f
            }
            _ => {
                let msg = format!(
                    "{what}: the module exports neither proxy_on_memory_allocate nor malloc"
                );
                c.data_mut().failures.push(msg.clone());
                bail!(msg);
            }
        },
    };
    let len = u32::try_from(data.len())?;
    c.data_mut().guest_allocations += 1;
    let ptr = alloc.call(&mut *c, len)?;
    if ptr == 0 {
        let msg = format!("{what}: the guest allocator returned null for {len} bytes");
        c.data_mut().failures.push(msg.clone());
        bail!(msg);
    }
    write(c, ptr, data, what)?;
    write(c, ret_ptr, &ptr.to_le_bytes(), what)?;
    write(c, ret_size, &len.to_le_bytes(), what)
}

/// The header map `map` of the current stream; `None` when the stream has none yet (response
/// headers during the request phase), where Envoy answers `BadArgument`.
fn map_mut<'c>(c: &'c mut C<'_>, map: u32, what: &str) -> Result<Option<&'c mut crate::Headers>> {
    let Some(t) = MapType::from_raw(map) else {
        let msg = format!("{what}: map type {map} is not supported by the harness");
        c.data_mut().failures.push(msg.clone());
        bail!(msg);
    };
    Ok(c.data_mut().maps.get_mut(&(t as u32)))
}

fn metric<'c>(c: &'c mut C<'_>, id: u32) -> Option<&'c mut Metric> {
    let index = usize::try_from(id).ok()?.checked_sub(1)?;
    c.data_mut().metrics.get_mut(index)
}
