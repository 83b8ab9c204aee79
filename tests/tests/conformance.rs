//! The differential conformance suite: every case in `tests/conformance/cases` through native
//! Envoy and the mesh filter, compared request by request (see `tests/conformance/README.md`).

use mesh_tests::conformance::{case_files, run_case};

/// At least this many cases and comparisons must run (the bar), unless filtered.
const MIN_CASES: usize = 8;
const MIN_COMPARISONS: usize = 150;

#[test]
fn native_envoy_and_the_filter_agree_on_every_case() {
    let files = case_files();
    assert!(!files.is_empty(), "no case files found");
    let mut total = 0;
    let mut diffs = Vec::new();
    let mut errors = Vec::new();
    // One case at a time: each starts two Envoys, and the machine is shared.
    for f in &files {
        match run_case(f) {
            Ok(r) => {
                eprintln!(
                    "case {:<28} {:>4} requests ({:>3} forwarded) {:>3} differences{}",
                    r.name,
                    r.comparisons,
                    r.forwarded,
                    r.diffs.len(),
                    match r.version_findings {
                        0 => String::new(),
                        n => format!(", {n} version findings confirmed (FINDINGS.md)"),
                    }
                );
                total += r.comparisons;
                diffs.extend(r.diffs);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    eprintln!(
        "conformance: {} cases, {total} comparisons, {} differences",
        files.len(),
        diffs.len()
    );
    for d in &diffs {
        eprintln!("{d}");
    }
    assert!(
        errors.is_empty(),
        "cases that could not run:\n{}",
        errors.join("\n")
    );
    assert!(
        diffs.is_empty(),
        "{} of {total} requests differ between native Envoy and the filter (both sides printed above)",
        diffs.len()
    );
    if std::env::var_os("CONFORMANCE_ONLY").is_none()
        && std::env::var_os("CONFORMANCE_CASES").is_none()
    {
        assert!(files.len() >= MIN_CASES, "only {} cases", files.len());
        assert!(total >= MIN_COMPARISONS, "only {total} comparisons");
    }
}
