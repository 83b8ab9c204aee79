//! The differential "import" mode: every config in `tests/import/configs` runs natively and, as
//! `kubectl mesh import-envoy` imports it, through the filter; the answers must agree for all
//! the import claims to carry over (`tests/import/README.md`).

use mesh_tests::import_diff::{config_dirs, run_config, run_config_with};

/// The digimon config (alone and behind its Ingress) and at least five foreign configs.
const MIN_CONFIGS: usize = 7;

#[test]
fn imported_configs_answer_like_the_original_envoy() {
    let dirs = config_dirs();
    assert!(!dirs.is_empty(), "no configs in tests/import/configs");
    let (mut total, mut diffs, mut errors) = (0, Vec::new(), Vec::new());
    // One config at a time: each starts two or three Envoys, and the machine is shared.
    for d in &dirs {
        match run_config(d) {
            Ok(r) => {
                let skipped: usize = r.skipped.values().sum();
                eprintln!(
                    "config {:<28} {:>5} compared ({:>4} forwarded) {:>4} not compared {:>3} differences; {} native change(s), {} import note(s)",
                    r.name, r.comparisons, r.forwarded, skipped, r.diffs.len(), r.changes.len(), r.notes.len()
                );
                for c in &r.changes {
                    eprintln!("    native change: {c}");
                }
                for (why, n) in &r.skipped {
                    eprintln!("    not compared ({n}): noted at {why}");
                }
                total += r.comparisons;
                diffs.extend(r.diffs);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    eprintln!(
        "import: {} configs, {total} comparisons, {} differences",
        dirs.len(),
        diffs.len()
    );
    for d in &diffs {
        eprintln!("{d}");
    }
    assert!(
        errors.is_empty(),
        "configs that could not run:\n{}",
        errors.join("\n")
    );
    assert!(
        diffs.is_empty(),
        "{} of {total} requests differ (both sides printed above)",
        diffs.len()
    );
    if std::env::var_os("IMPORT_ONLY").is_none() {
        assert!(dirs.len() >= MIN_CONFIGS, "only {} configs", dirs.len());
    }
}

/// The comparison can fail: a wrong import (a CORS max-age off by one, a route's prefix
/// rewrite dropped) shows up as differences.
#[test]
fn a_wrong_import_is_caught() {
    let configs = mesh_tests::workspace_root().join("tests/import/configs");
    let r = run_config_with(&configs.join("digimon"), &|i| {
        if let Some(c) = i.config.hosts[0].cors.as_mut() {
            c.max_age = c.max_age.map(|m| m + 1);
        }
    })
    .unwrap();
    assert!(!r.diffs.is_empty(), "max-age changed, yet no difference");
    assert!(
        r.diffs.iter().all(|d| d.contains("access-control-max-age")),
        "{}",
        r.diffs[0]
    );
    let r = run_config_with(&configs.join("otel-demo-frontend-proxy"), &|i| {
        for r in &mut i.config.hosts[0].routes {
            if let Some(t) = r.to.as_mut() {
                t.prefix_rewrite = None;
            }
        }
    })
    .unwrap();
    assert!(
        !r.diffs.is_empty(),
        "prefix rewrites dropped, yet no difference"
    );
}
