//! The differential "import" mode: every config in `tests/import/configs` runs natively and, as
//! `kubectl mesh import-envoy` imports it, through the filter (`kubectl mesh verify`'s
//! comparison); every request the import claims to carry must get the same answer, and every
//! other difference must fall under a `not carried` note (`tests/import/README.md`).

use mesh_tests::import_diff::{config_dirs, run_config, run_config_with};

/// The digimon config (alone and behind its Ingress) and at least five foreign configs.
const MIN_CONFIGS: usize = 7;

#[test]
fn imported_configs_answer_like_the_original_envoy() {
    let dirs = config_dirs();
    assert!(!dirs.is_empty(), "no configs in tests/import/configs");
    let (mut total, mut wrong, mut errors) = (0, Vec::new(), Vec::new());
    // One config at a time: each starts two or three Envoys, and the machine is shared.
    for d in &dirs {
        match run_config(d) {
            Ok(r) => {
                let cannot = r
                    .differences
                    .iter()
                    .filter(|d| d.cannot_express.is_some())
                    .count();
                eprintln!(
                    "config {:<28} {:>5} requests ({:>4} forwarded) {:>4} equal, {:>3} differ ({} not expressible), {} not verified; {} native change(s), {} import note(s)",
                    r.name,
                    r.requests,
                    r.forwarded,
                    r.requests - r.differences.len(),
                    r.differences.len(),
                    cannot,
                    r.unverified.len(),
                    r.changes.len(),
                    r.notes.len()
                );
                for c in &r.changes {
                    eprintln!("    native change: {c}");
                }
                for u in &r.unverified {
                    eprintln!("    not verified: {u}");
                }
                let mut by_note = std::collections::BTreeMap::<&str, usize>::new();
                for d in &r.differences {
                    if let Some(n) = &d.cannot_express {
                        *by_note.entry(n.as_str()).or_default() += 1;
                    }
                }
                for (note, n) in by_note {
                    eprintln!("    differ, not expressible ({n}): {note}");
                }
                total += r.requests;
                wrong.extend(
                    r.differences
                        .into_iter()
                        .filter(|d| d.cannot_express.is_none())
                        .map(|d| d.text),
                );
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    eprintln!(
        "import: {} configs, {total} requests, {} differences the import claims to carry",
        dirs.len(),
        wrong.len()
    );
    for d in &wrong {
        eprintln!("{d}");
    }
    assert!(
        errors.is_empty(),
        "configs that could not run:\n{}",
        errors.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "{} of {total} requests differ where the import claims to carry the behaviour (both sides printed above)",
        wrong.len()
    );
    if std::env::var_os("IMPORT_ONLY").is_none() {
        assert!(dirs.len() >= MIN_CONFIGS, "only {} configs", dirs.len());
    }
}

/// The comparison can fail: a wrong import (a CORS max-age off by one, a route's prefix
/// rewrite dropped) shows up as differences the MeshConfig could express.
#[test]
fn a_wrong_import_is_caught() {
    let configs = mesh_tests::workspace_root().join("tests/import/configs");
    let r = run_config_with(&configs.join("digimon"), &|c| {
        if let Some(c) = c.hosts[0].cors.as_mut() {
            c.max_age = c.max_age.map(|m| m + 1);
        }
    })
    .unwrap();
    assert!(
        !r.differences.is_empty(),
        "max-age changed, yet no difference"
    );
    for d in &r.differences {
        assert!(d.cannot_express.is_none(), "{}", d.text);
        let fields: Vec<&str> = d.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            ["response header access-control-max-age"],
            "{}",
            d.text
        );
    }
    let r = run_config_with(&configs.join("otel-demo-frontend-proxy"), &|c| {
        for r in &mut c.hosts[0].routes {
            if let Some(t) = r.to.as_mut() {
                t.prefix_rewrite = None;
            }
        }
    })
    .unwrap();
    assert!(
        r.differences.iter().any(|d| d.cannot_express.is_none()),
        "prefix rewrites dropped, yet no difference"
    );
}
