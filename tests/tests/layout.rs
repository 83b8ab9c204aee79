//! Each crate's modules form layers: no top-level module reaches, through `crate::` paths in
//! its code (comments and unit tests aside), a module that reaches it back. A cycle means two
//! modules share a job and one of them should be split (the plugin's render.rs and istio.rs
//! once did; the core's config and json, cors and engine did). One test for every crate.

// A failed unwrap in a test is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `crate::NAME` references of a source file's code: comments dropped, and everything from the
/// first `#[cfg(test)]` on (unit tests may reach anywhere).
fn references(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Top-level module -> the top-level modules its code names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        // Unit-test files (`tests.rs`, `local_tests.rs`) may reach anywhere.
        if rel
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("tests.rs"))
        {
            continue;
        }
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let refs = references(&std::fs::read_to_string(&f).unwrap());
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != top));
    }
    graph
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap().clone();
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                let mut c = path.clone();
                c.push(next.clone());
                return Some(c);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

/// The cycles among `crate`'s top-level modules, one line each.
fn cycles(krate: &str) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let g = graph(&src);
    let found = g
        .keys()
        .filter_map(|m| cycle_from(&g, m))
        .map(|c| c.join(" -> "))
        .collect();
    (g, found)
}

#[test]
fn no_module_cycles_in_any_crate() {
    // Edges the scan must see, so an empty graph cannot pass.
    let expect = [
        ("kubectl-mesh", "render", "istio"),
        ("filter/core", "compile", "engine"),
        ("filter/core", "json", "config"),
        ("filter/wasm", "vm", "metrics"),
    ];
    for (krate, from, to) in expect {
        let (g, _) = cycles(krate);
        assert!(
            g.get(from).is_some_and(|refs| refs.contains(to)),
            "{krate}: {from} -> {to} not seen: {g:?}"
        );
    }
    let mut all = Vec::new();
    for krate in ["kubectl-mesh", "filter/core", "filter/wasm"] {
        all.extend(cycles(krate).1.into_iter().map(|c| format!("{krate}: {c}")));
    }
    assert!(all.is_empty(), "module cycles:\n{}", all.join("\n"));
}

#[test]
fn a_cycle_is_found() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(cycle_from(&g, "a").unwrap(), ["a", "b", "c", "a"], "{g:?}");
    assert!(cycle_from(&g, "d").is_none());
    let text = "use crate::x::Y; // crate::z\nfn f() { crate::w(); }\n#[cfg(test)]\nuse crate::t;";
    assert_eq!(references(text).into_iter().collect::<Vec<_>>(), ["w", "x"]);
}
