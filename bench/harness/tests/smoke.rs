//! The bench harness end to end on tiny numbers: every setup starts and does the digimon job,
//! every measurement runs and the report has every table. Nothing here is timed or compared.

use mesh_bench::setups::Setup;
use mesh_bench::{report, run, Options};

#[test]
fn the_whole_bench_runs_and_reports() {
    let opts = Options::smoke();
    let r = run(&opts).unwrap();
    for s in Setup::ALL {
        let runs = &r.wrk[s.name()];
        assert_eq!(runs.len(), opts.rounds, "{}", s.name());
        assert!(runs.iter().all(|w| w.rps > 0.0), "{}: {runs:?}", s.name());
        for k in &r.kinds {
            assert_eq!(
                r.sequential[&(s.name(), *k)].len(),
                opts.sequential * opts.blocks
            );
        }
    }
    assert_eq!(r.scale.len(), opts.hosts.len());
    for row in &r.scale {
        assert!(row.mesh.host_calls >= 1.0, "{row:?}");
        assert!(row.envoy.p50 > 0.0, "{row:?}");
        assert!(row.instructions.configure > 0, "{row:?}");
        assert!(row.instructions.per_request > 0.0, "{row:?}");
    }
    // Every setup of the memory table, with every worker count, has an RSS and a live heap.
    assert_eq!(r.memory.len(), 3 * opts.workers.len(), "{:?}", r.memory);
    for (s, m) in &r.memory {
        assert!(
            m.rss_mib > 10.0 && m.allocated_mib > 0.0,
            "{}: {m:?}",
            s.name()
        );
    }
    // The mesh filter reads the request in one call (its counts go out on a tick); the routed
    // digimon request sets two headers, and its response gets the CORS grant.
    let mesh = &r.digimon_wasm.0;
    let calls = |name: &str| {
        mesh.calls_by_name
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, c)| *c)
    };
    assert_eq!(calls("proxy_get_header_map_pairs"), 1.0, "{mesh:?}");
    assert_eq!(r.digimon_native.header_ops, 6.0, "{:?}", r.digimon_native);
    let text = report::markdown(&r, "today", "this machine", "reading {module_kb}").unwrap();
    for section in [
        "## Targets",
        "## Concurrent load",
        "## Sequential latency",
        "## The filter's own work",
        "## Memory per proxy",
        "## Scaling",
        "## Startup per module",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(!text.contains("{module_kb}"), "placeholders are filled");
}
