//! Header mutations: Envoy's `*_headers_to_add` / `*_headers_to_remove` on the route, virtual
//! host and route configuration become one MeshConfig rule set per route, composed in the order
//! Envoy applies the levels, and Envoy's formatters become MeshConfig variables.

use super::notes::{At, Notes, Scope};
use mesh_core::config::HeaderRules;
use std::collections::{BTreeMap, BTreeSet};

/// Request or response side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `request_headers_to_add` / `request_headers_to_remove`.
    Request,
    /// `response_headers_to_add` / `response_headers_to_remove`.
    Response,
}

impl Side {
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Side::Request => ("request_headers_to_add", "request_headers_to_remove"),
            Side::Response => ("response_headers_to_add", "response_headers_to_remove"),
        }
    }
}

/// The value a header name ends up with after a sequence of operations, relative to what
/// the request or response had.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    /// The existing values, then these appended.
    Append(Vec<String>),
    /// Existing values gone (`removed`: by an explicit remove), then these.
    Replace { removed: bool, values: Vec<String> },
    /// Depends on whether the header was there (`ADD_IF_ABSENT`, `OVERWRITE_IF_EXISTS`).
    Conditional,
}

/// Translates Envoy's formatters into MeshConfig variables. `cluster` is the route's cluster,
/// which `%UPSTREAM_CLUSTER%` names (the mesh's own cluster names differ, so it is kept
/// literal); on routes that answer locally Envoy renders it empty.
pub fn translate(value: &str, cluster: Option<&str>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find(['%', '$']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('$') {
            out.push_str("$$");
            rest = &rest[i + 1..];
            continue;
        }
        let after = &rest[i + 1..];
        let Some(end) = after.find('%') else {
            return Err(format!("unterminated `%` in `{value}`"));
        };
        let cmd = &after[..end];
        let upper = cmd.to_ascii_uppercase();
        match upper.as_str() {
            "" => out.push('%'),
            "REQ(:AUTHORITY)" => out.push_str("${host}"),
            "REQ(:PATH)" => out.push_str("${path}"),
            "REQ(:METHOD)" => out.push_str("${method}"),
            "ROUTE_NAME" => out.push_str("${route}"),
            "UPSTREAM_CLUSTER" => out.push_str(&cluster.unwrap_or_default().replace('$', "$$")),
            _ => {
                return Err(format!(
                    "Envoy formatter `%{cmd}%` has no MeshConfig variable (there are ${{host}}, ${{path}}, ${{method}}, ${{route}}, ${{cluster}})"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One level's operations in Envoy's order (removes, then adds in list order) applied to
/// `effects`. Names that cannot be carried are added to `bad` with their note.
fn apply_level(
    level: &At<'_>,
    side: Side,
    cluster: Option<&str>,
    effects: &mut BTreeMap<String, Effect>,
    bad: &mut BTreeSet<String>,
    notes_at: &mut Vec<(String, String)>,
) {
    let (add_key, remove_key) = side.keys();
    for (_, r) in level.get(remove_key).items() {
        if let Some(name) = r.str() {
            effects.insert(
                name.to_ascii_lowercase(),
                Effect::Replace {
                    removed: true,
                    values: Vec::new(),
                },
            );
        }
    }
    for (_, entry) in level.get(add_key).items() {
        let h = entry.get("header");
        let (Some(key), value) = (h.get("key").str(), h.get("value").str().unwrap_or_default())
        else {
            continue;
        };
        let name = key.to_ascii_lowercase();
        let action = match entry.get("append_action").str() {
            Some(a) => a.to_owned(),
            None => match entry.get("append").bool() {
                Some(false) => "OVERWRITE_IF_EXISTS_OR_ADD".to_owned(),
                _ => "APPEND_IF_EXISTS_OR_ADD".to_owned(),
            },
        };
        let keep_empty = entry.get("keep_empty_value").bool().unwrap_or(false);
        let value = match translate(value, cluster) {
            Ok(v) => v,
            Err(why) => {
                notes_at.push((h.get("value").path().to_owned(), why));
                bad.insert(name);
                continue;
            }
        };
        if value.is_empty() {
            if keep_empty {
                notes_at.push((
                    entry.path().to_owned(),
                    "keep_empty_value: MeshConfig never writes an empty value".into(),
                ));
                bad.insert(name);
            }
            // Envoy skips a value that formats to empty; a literal empty one is a no-op.
            continue;
        }
        let cur = effects.remove(&name).unwrap_or(Effect::Append(Vec::new()));
        let next = match (action.as_str(), cur) {
            ("APPEND_IF_EXISTS_OR_ADD", Effect::Append(mut v)) => {
                v.push(value);
                Effect::Append(v)
            }
            (
                "APPEND_IF_EXISTS_OR_ADD",
                Effect::Replace {
                    removed,
                    mut values,
                },
            ) => {
                values.push(value);
                Effect::Replace { removed, values }
            }
            ("OVERWRITE_IF_EXISTS_OR_ADD", Effect::Replace { removed, .. }) => Effect::Replace {
                removed,
                values: vec![value],
            },
            ("OVERWRITE_IF_EXISTS_OR_ADD", _) => Effect::Replace {
                removed: false,
                values: vec![value],
            },
            // Known outcome only when the header is known to be absent.
            ("ADD_IF_ABSENT", Effect::Replace { removed, values }) if values.is_empty() => {
                Effect::Replace {
                    removed,
                    values: vec![value],
                }
            }
            ("ADD_IF_ABSENT", e @ Effect::Replace { .. }) => e,
            ("OVERWRITE_IF_EXISTS", Effect::Replace { removed, values }) => Effect::Replace {
                removed,
                values: if values.is_empty() {
                    values
                } else {
                    vec![value]
                },
            },
            _ => Effect::Conditional,
        };
        effects.insert(name, next);
    }
}

/// Composes the levels that apply to one route, in the order Envoy applies them (`levels`:
/// route, virtual host, route configuration by default; reversed with
/// `most_specific_header_mutations_wins`), into one MeshConfig rule set. What cannot be said
/// with one remove/set/add per name is noted (scope `scope`) and left out.
pub fn compose(
    levels: &[At<'_>],
    side: Side,
    cluster: Option<&str>,
    scope: &Scope,
    notes: &mut Notes,
) -> HeaderRules {
    let mut effects = BTreeMap::new();
    let mut bad = BTreeSet::new();
    let mut found = Vec::new();
    for level in levels {
        apply_level(level, side, cluster, &mut effects, &mut bad, &mut found);
    }
    let mut rules = HeaderRules::default();
    for (name, effect) in effects {
        if bad.contains(&name) {
            continue;
        }
        let why = match effect {
            Effect::Append(v) if v.is_empty() => None,
            Effect::Append(v) if v.len() == 1 => {
                rules.add.insert(name.clone(), v[0].clone());
                None
            }
            Effect::Replace { removed, values } if values.len() <= 2 => {
                if removed {
                    rules.remove.push(name.clone());
                }
                if let Some(s) = values.first() {
                    rules.set.insert(name.clone(), s.clone());
                }
                if let Some(a) = values.get(1) {
                    rules.add.insert(name.clone(), a.clone());
                }
                None
            }
            Effect::Append(_) | Effect::Replace { .. } => Some("adds more values to one header than MeshConfig's one `set` and one `add` per name"),
            Effect::Conditional => Some("ADD_IF_ABSENT / OVERWRITE_IF_EXISTS depend on the header being there, which MeshConfig rules cannot test"),
        };
        if let Some(why) = why {
            found.push((
                levels
                    .first()
                    .map(|l| l.path().to_owned())
                    .unwrap_or_default(),
                format!("header `{name}`: {why}"),
            ));
        }
    }
    for (path, why) in found {
        notes.list.push(super::notes::Note {
            path,
            reason: why,
            scope: scope.clone(),
            info: false,
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formatters() {
        assert_eq!(
            translate("h=%REQ(:authority)% 100%% $5", None).unwrap(),
            "h=${host} 100% $$5"
        );
        assert_eq!(translate("%UPSTREAM_CLUSTER%", Some("svc")).unwrap(), "svc");
        assert!(translate("%START_TIME%", None).is_err());
        assert_eq!(translate("a%UPSTREAM_CLUSTER%b", None).unwrap(), "ab");
    }

    fn rules(levels: &[serde_json::Value]) -> (HeaderRules, usize) {
        let ats: Vec<At<'_>> = levels.iter().map(|l| At::root(l, "l")).collect();
        let mut notes = Notes::default();
        let r = compose(
            &ats,
            Side::Request,
            Some("c"),
            &Scope::Unobservable,
            &mut notes,
        );
        (r, notes.list.len())
    }

    #[test]
    fn envoy_default_order_route_then_vhost() {
        // Route sets x-env=canary, then the virtual host overwrites it with prod (vhost wins).
        let route = json!({"request_headers_to_add": [{"header": {"key": "x-env", "value": "canary"}, "append": false}]});
        let vhost = json!({
            "request_headers_to_remove": ["x-drop"],
            "request_headers_to_add": [
                {"header": {"key": "X-Env", "value": "prod"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                {"header": {"key": "x-via", "value": "a"}},
            ]
        });
        let (r, n) = rules(&[route, vhost]);
        assert_eq!(n, 0);
        assert_eq!(r.set.get("x-env").map(String::as_str), Some("prod"));
        assert_eq!(r.add.get("x-via").map(String::as_str), Some("a"));
        assert_eq!(r.remove, ["x-drop"]);
    }

    #[test]
    fn what_one_rule_per_name_cannot_say_is_noted() {
        let two_adds = json!({"request_headers_to_add": [
            {"header": {"key": "x", "value": "1"}}, {"header": {"key": "x", "value": "2"}},
            {"header": {"key": "t", "value": "%START_TIME%"}},
            {"header": {"key": "y", "value": "v"}, "append_action": "ADD_IF_ABSENT"},
            {"header": {"key": "e", "value": ""}},
        ]});
        let (r, n) = rules(&[two_adds]);
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(n, 3);
        let remove_then_add = json!({"request_headers_to_remove": ["x"], "request_headers_to_add": [
            {"header": {"key": "x", "value": "1"}}, {"header": {"key": "x", "value": "2"}},
        ]});
        let (r, n) = rules(&[remove_then_add]);
        assert_eq!(
            (r.remove.len(), r.set["x"].as_str(), r.add["x"].as_str(), n),
            (1, "1", "2", 0)
        );
    }
}
