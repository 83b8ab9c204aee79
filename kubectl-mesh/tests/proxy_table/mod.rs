//! The istio-proxy release table of kubectl-mesh/data/istio-proxy/ (releases, their
//! extension sets, type URLs), loaded for proxy_versions.rs.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(file: &str) -> PathBuf {
    manifest().join("data/istio-proxy").join(file)
}

/// Rows of a TSV data file as header-keyed maps; `#` lines are comments.
pub fn tsv(file: &str) -> Vec<BTreeMap<String, String>> {
    let path = data(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty());
    let header: Vec<&str> = lines.next().expect("header row").split('\t').collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            assert_eq!(
                cells.len(),
                header.len(),
                "{file}: wrong cell count in {l:?}"
            );
            header
                .iter()
                .map(|h| h.to_string())
                .zip(cells.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect()
}

pub struct Release {
    pub name: String,
    /// The ISTIO_VERSION such a proxy reports, which istiod matches `proxyVersion` against.
    pub version: String,
    pub set: String,
    pub envoy_line: String,
    pub envoy_commit_date: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Linked {
    Build,
    Core,
    Message,
}

pub struct Table {
    /// In version order, master last.
    pub releases: Vec<Release>,
    /// Extension set name (a release name) -> build-config extensions.
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// Type URL -> (extension, linked).
    pub types: BTreeMap<String, (String, Linked)>,
    /// Extension names of type-urls.tsv -> linked (for names rendered without a type URL).
    pub named: BTreeMap<String, Linked>,
}

impl Table {
    pub fn load() -> Table {
        let releases = tsv("releases.tsv")
            .into_iter()
            .map(|r| Release {
                name: r["release"].clone(),
                version: r["istio_version"].clone(),
                set: r["extension_set"].clone(),
                envoy_line: r["envoy_line"].clone(),
                envoy_commit_date: r["envoy_commit_date"].clone(),
            })
            .collect();
        let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in tsv("extensions.tsv") {
            for (col, cell) in &row {
                if col == "extension" {
                    continue;
                }
                let set = sets.entry(col.clone()).or_default();
                match cell.as_str() {
                    "+" => {
                        set.insert(row["extension"].clone());
                    }
                    "." => {}
                    other => panic!("extensions.tsv: cell {other:?} is neither + nor ."),
                }
            }
        }
        let (mut types, mut named) = (BTreeMap::new(), BTreeMap::new());
        for r in tsv("type-urls.tsv") {
            let linked = match r["linked"].as_str() {
                "build" => Linked::Build,
                "core" => Linked::Core,
                "message" => Linked::Message,
                other => panic!("type-urls.tsv: linked {other:?}"),
            };
            if r["type_url"] != "-" {
                types.insert(r["type_url"].clone(), (r["extension"].clone(), linked));
            }
            if r["extension"] != "-" {
                named.insert(r["extension"].clone(), linked);
            }
        }
        Table {
            releases,
            sets,
            types,
            named,
        }
    }

    pub fn has(&self, release: &Release, extension: &str) -> bool {
        self.sets[&release.set].contains(extension)
    }

    /// Every build-config extension name any release has.
    pub fn all_build(&self) -> BTreeSet<&String> {
        self.sets.values().flatten().collect()
    }

    /// "a … b, c" for the releases `pick` selects, runs of table neighbours collapsed.
    pub fn ranges(&self, pick: impl Fn(&Release) -> bool) -> String {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, r) in self.releases.iter().enumerate() {
            if !pick(r) {
                continue;
            }
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == i => *end = i,
                _ => runs.push((i, i)),
            }
        }
        let n = |i: usize| self.releases[i].name.as_str();
        let parts: Vec<String> = runs
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    n(a).to_string()
                } else {
                    format!("{} … {}", n(a), n(b))
                }
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}
