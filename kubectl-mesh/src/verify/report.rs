//! What `verify` prints: each difference (request, field, native answer, filter answer, and
//! whether the MeshConfig can express it), what was not verified, and one summary line; or the
//! same as JSON (`-o json`) for CI.

use super::compare::Report;
use super::proxy::{Answer, ProxyReport};
use super::Options;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;

/// How many differences name each field, most first.
pub fn by_field(r: &Report) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &r.differences {
        for f in &d.fields {
            *counts.entry(f.field.as_str()).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The summary line.
pub fn summary(r: &Report) -> String {
    let cannot = r
        .differences
        .iter()
        .filter(|d| d.cannot_express.is_some())
        .count();
    format!(
        "verify: {} requests, {} equal, {} differ ({} the mesh config can express, {cannot} it cannot); {} behaviour(s) not verified: {}",
        r.requests,
        r.requests - r.differences.len(),
        r.differences.len(),
        r.differences.len() - cannot,
        r.unverified.len(),
        if r.equal() { "EQUAL" } else { "NOT EQUAL" }
    )
}

/// The report as JSON.
pub fn to_json(r: &Report) -> Value {
    json!({
        "name": r.name,
        "equal": r.equal(),
        "requests": r.requests,
        "equalRequests": r.requests - r.differences.len(),
        "differences": r.differences.iter().map(|d| json!({
            "request": d.request,
            "fields": d.fields.iter().map(|f| json!({"field": f.field, "native": f.native, "filter": f.mesh})).collect::<Vec<_>>(),
            "expressible": d.cannot_express.is_none(),
            "notCarried": d.cannot_express,
        })).collect::<Vec<_>>(),
        "byField": by_field(r).into_iter().map(|(f, n)| json!({"field": f, "requests": n})).collect::<Vec<_>>(),
        "notVerified": r.unverified,
        "nativeChanges": r.changes,
        "importNotes": r.notes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// Prints `r` as text or JSON.
pub fn print(r: &Report, opts: &Options, out: &mut impl Write) {
    if opts.json {
        let _ = writeln!(out, "{:#}", to_json(r));
        return;
    }
    let _ = writeln!(
        out,
        "verify: {} natively (changed only as listed below) against {} through the filter",
        r.name,
        opts.config
            .as_ref()
            .map_or_else(|| "its import".to_owned(), |c| c.display().to_string())
    );
    if opts.verbose {
        for c in &r.changes {
            let _ = writeln!(out, "  native run: {c}");
        }
    } else if !r.changes.is_empty() {
        let _ = writeln!(
            out,
            "  native run: {} change(s) from the original to run it locally (-v lists them)",
            r.changes.len()
        );
    }
    for (i, d) in r.differences.iter().enumerate() {
        let _ = writeln!(out, "difference {}: {}", i + 1, d.request);
        for f in &d.fields {
            let _ = writeln!(
                out,
                "    {}: native {}, filter {}",
                f.field, f.native, f.mesh
            );
        }
        let _ = match &d.cannot_express {
            None => writeln!(
                out,
                "    the mesh config can express this: change it to answer as native Envoy did"
            ),
            Some(n) => writeln!(out, "    the mesh config cannot express this: {n}"),
        };
        if opts.verbose {
            let _ = write!(out, "{}", d.text);
        }
    }
    for u in &r.unverified {
        let _ = writeln!(
            out,
            "not verified (the mesh config cannot carry it; the native run left it out): {u}"
        );
    }
    let fields = by_field(r);
    if !fields.is_empty() {
        let list: Vec<String> = fields.iter().map(|(f, n)| format!("{f} ({n})")).collect();
        let _ = writeln!(out, "differing fields: {}", list.join(", "));
    }
    let _ = writeln!(out, "{}", summary(r));
}

fn answer_json(a: &Answer) -> Value {
    json!({"request": a.what, "before": a.before.to_string(), "after": a.after.to_string()})
}

/// Prints a `--proxy-dump` comparison as text or JSON.
pub fn print_proxy(r: &ProxyReport, opts: &Options, out: &mut impl Write) {
    let changed_hosts: Vec<&Answer> = r
        .config_hosts
        .iter()
        .filter(|a| a.before != a.after)
        .collect();
    if opts.json {
        let v = json!({
            "source": r.source,
            "kind": format!("{:?}", r.kind),
            "context": r.context.istio(),
            "listeners": r.listeners,
            "clean": r.clean(),
            "otherRequests": r.others,
            "otherChanged": r.changed.iter().map(answer_json).collect::<Vec<_>>(),
            "unlandedPatches": r.unlanded,
            "missingClusters": r.missing_clusters,
            "configHosts": r.config_hosts.iter().map(answer_json).collect::<Vec<_>>(),
        });
        let _ = writeln!(out, "{v:#}");
        return;
    }
    let _ = writeln!(
        out,
        "verify: {} ({:?}, {} HTTP listener(s)) as it is, and with what `enable --envoy-context {}` would add",
        r.source,
        r.kind,
        r.listeners,
        match r.context {
            crate::render::Context::Gateway => "gateway",
            crate::render::Context::SidecarOutbound => "sidecar-outbound",
            crate::render::Context::SidecarInbound => "sidecar-inbound",
        }
    );
    for p in &r.unlanded {
        let _ = writeln!(out, "patch that would do nothing: {p}");
    }
    for c in &r.missing_clusters {
        let _ = writeln!(
            out,
            "warning: this proxy has no cluster for {c}, which the config routes to (requests there get 503)"
        );
    }
    let _ = writeln!(
        out,
        "traffic the config does not own: {} requests on the proxy's own routes, {} changed",
        r.others,
        r.changed.len()
    );
    for a in &r.changed {
        let _ = writeln!(
            out,
            "  changed: {}: before {}, after {}",
            a.what, a.before, a.after
        );
    }
    let _ = writeln!(
        out,
        "the config's hosts: {} requests over the listeners, {} answered differently now",
        r.config_hosts.len(),
        changed_hosts.len()
    );
    let shown: Vec<&&Answer> = match opts.verbose {
        true => changed_hosts.iter().collect(),
        false => changed_hosts.iter().take(40).collect(),
    };
    for a in &shown {
        let _ = writeln!(out, "  {}: before {}, now {}", a.what, a.before, a.after);
    }
    if shown.len() < changed_hosts.len() {
        let _ = writeln!(
            out,
            "  ... {} more (-v lists all)",
            changed_hosts.len() - shown.len()
        );
    }
    let _ = writeln!(
        out,
        "verify: {}",
        if r.clean() {
            "no change for traffic the config does not own"
        } else {
            "CHANGES traffic the config does not own (or a patch does nothing)"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::compare::Difference;
    use crate::verify::observe::FieldDiff;

    fn diff(fields: &[&str], cannot: Option<&str>) -> Difference {
        Difference {
            request: "GET / host=a".into(),
            fields: fields
                .iter()
                .map(|f| FieldDiff {
                    field: (*f).into(),
                    native: "1".into(),
                    mesh: "2".into(),
                })
                .collect(),
            cannot_express: cannot.map(str::to_owned),
            text: String::new(),
        }
    }

    #[test]
    fn the_summary_counts_and_groups_by_field() {
        let mut r = Report {
            requests: 10,
            ..Default::default()
        };
        assert!(summary(&r).ends_with("10 equal, 0 differ (0 the mesh config can express, 0 it cannot); 0 behaviour(s) not verified: EQUAL"));
        r.differences = vec![
            diff(&["status", "body"], None),
            diff(&["status"], Some("x: y")),
        ];
        assert_eq!(
            by_field(&r),
            [("status".to_owned(), 2), ("body".to_owned(), 1)]
        );
        assert!(
            summary(&r).contains("8 equal, 2 differ (1 the mesh config can express, 1 it cannot)")
        );
        r.differences.clear();
        r.unverified = vec!["http_filters[0]: csrf".into()];
        assert!(!r.equal() && summary(&r).ends_with("1 behaviour(s) not verified: NOT EQUAL"));
        let j = to_json(&r);
        assert_eq!(
            (j["equal"].as_bool(), j["notVerified"][0].as_str()),
            (Some(false), Some("http_filters[0]: csrf"))
        );
    }
}
