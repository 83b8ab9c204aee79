//! CORS policies: Envoy's legacy `cors` fields (v2 and v3) and typed `CorsPolicy` per-filter
//! configs become MeshConfig `cors`, merged across levels the way Envoy's CORS filter does.

use super::notes::{At, Notes, Scope};
use super::strings::{string_matcher, StringMatch};
use mesh_core::config::{CorsConfig, OriginMatch};

/// Fields of a CORS policy this module reads.
const HANDLED: &[&str] = &[
    "@type",
    "allow_origin_string_match",
    "allow_origin",
    "allow_origin_regex",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "max_age",
    "allow_credentials",
    "enabled",
    "filter_enabled",
    "shadow_enabled",
];

/// A comma-separated Envoy list (`GET, PUT`) as items, empty ones dropped.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `RuntimeFractionalPercent` (or a plain `FractionalPercent`) as a fraction of 1.
pub fn fraction(at: &At<'_>) -> Option<f64> {
    let dv = at.get("default_value");
    let dv = if dv.is_null() { at.clone() } else { dv };
    if dv.is_null() {
        return None;
    }
    let numerator = dv.get("numerator").uint().unwrap_or(0) as f64;
    let denominator = match dv.get("denominator").str().unwrap_or("HUNDRED") {
        "TEN_THOUSAND" => 10_000.0,
        "MILLION" => 1_000_000.0,
        _ => 100.0,
    };
    Some((numerator / denominator).min(1.0))
}

fn origin(m: StringMatch) -> OriginMatch {
    let mut o = OriginMatch {
        exact: None,
        prefix: None,
        suffix: None,
        regex: None,
        any: false,
    };
    match m {
        StringMatch::Exact(s) => o.exact = Some(s),
        StringMatch::Prefix(s) => o.prefix = Some(s),
        StringMatch::Suffix(s) => o.suffix = Some(s),
        StringMatch::Regex(s) => o.regex = Some(s),
    }
    o
}

/// Converts one policy object. `scope` is where a partly carried policy shows (a route's or a
/// virtual host's CORS answers). `None` when nothing of it can be used.
pub fn convert(at: &At<'_>, scope: &Scope, notes: &mut Notes) -> Option<CorsConfig> {
    let mut c = CorsConfig::default();
    let mut bad_origin = false;
    for (_, m) in at.get("allow_origin_string_match").items() {
        match string_matcher(&m) {
            Ok(sm) => c.allow_origins.push(origin(sm)),
            Err(why) => {
                notes.add(&m, scope.clone(), format!("origin rule not carried: {why}"));
                bad_origin = true;
            }
        }
    }
    // v2: exact strings ("*" is any, as with every rule that matches "*") and ECMAScript regexes.
    for (_, o) in at.get("allow_origin").items() {
        if let Some(s) = o.str() {
            c.allow_origins
                .push(origin(StringMatch::Exact(s.to_owned())));
        }
    }
    for (_, o) in at.get("allow_origin_regex").items() {
        if let Some(s) = o.str() {
            notes.add(
                &o,
                Scope::Unobservable,
                "v2 ECMAScript origin regex read as RE2 (the same for ordinary patterns)",
            );
            c.allow_origins
                .push(origin(StringMatch::Regex(s.to_owned())));
        }
    }
    if bad_origin && c.allow_origins.is_empty() {
        return None;
    }
    let list = |key: &str| at.get(key).str().map(split_list).unwrap_or_default();
    c.allow_methods = list("allow_methods");
    c.allow_headers = list("allow_headers");
    c.expose_headers = list("expose_headers");
    if let Some(text) = at.get("max_age").str() {
        match text.trim().parse::<u32>() {
            Ok(n) => c.max_age = Some(n),
            Err(_) => notes.add(
                &at.get("max_age"),
                scope.clone(),
                format!("max_age `{text}` is not a number of seconds"),
            ),
        }
    }
    c.allow_credentials = at.get("allow_credentials").bool();
    // On is the default: only `false` is worth writing.
    if at.get("enabled").bool() == Some(false) {
        c.enabled = Some(false);
    }
    let fe = at.get("filter_enabled");
    if let Some(f) = fraction(&fe) {
        if f <= 0.0 {
            c.enabled = Some(false);
        } else if f < 1.0 {
            notes.add(
                &fe,
                scope.clone(),
                format!(
                    "enabled for {:.2}% of requests only; carried as always enabled",
                    f * 100.0
                ),
            );
        }
        if !fe.get("runtime_key").is_null() {
            notes.add(
                &fe.get("runtime_key"),
                Scope::Unobservable,
                "a runtime key could switch CORS at run time; carried as its default value",
            );
        }
    }
    if !at.get("shadow_enabled").is_null() {
        notes.add(
            &at.get("shadow_enabled"),
            Scope::Unobservable,
            "shadow mode only counts what CORS would do",
        );
    }
    for key in at.keys() {
        if !HANDLED.contains(&key) {
            let why = match key {
                "forward_not_matching_preflights" => "answering non-matching preflights locally is not a MeshConfig feature (they are forwarded)",
                "allow_private_network_access" => "private network access preflights are not a MeshConfig feature",
                _ => "not a MeshConfig CORS feature",
            };
            notes.add(&at.get(key), scope.clone(), why.to_owned());
        }
    }
    Some(c)
}

/// `top` over `base`, field by field; `enabled` comes from `top` (the more specific policy
/// present decides, as in Envoy).
pub fn overlay(base: &CorsConfig, top: &CorsConfig) -> CorsConfig {
    let pick = |t: &Vec<String>, b: &Vec<String>| if t.is_empty() { b.clone() } else { t.clone() };
    CorsConfig {
        enabled: top.enabled,
        allow_origins: if top.allow_origins.is_empty() {
            base.allow_origins.clone()
        } else {
            top.allow_origins.clone()
        },
        allow_methods: pick(&top.allow_methods, &base.allow_methods),
        allow_headers: pick(&top.allow_headers, &base.allow_headers),
        expose_headers: pick(&top.expose_headers, &base.expose_headers),
        max_age: top.max_age.or(base.max_age),
        allow_credentials: top.allow_credentials.or(base.allow_credentials),
    }
}

/// Merges the policies that apply to one route, least specific first (route configuration,
/// virtual host, route), into the effective one (`None`: no policy present).
pub fn effective(levels: &[Option<&CorsConfig>]) -> Option<CorsConfig> {
    levels
        .iter()
        .flatten()
        .fold(None, |acc: Option<CorsConfig>, c| {
            Some(match acc {
                None => (*c).clone(),
                Some(base) => overlay(&base, c),
            })
        })
}

/// True when the effective policy is on but allows no origin: Envoy then adds nothing and
/// forwards preflights, which MeshConfig says with `enabled: false`.
pub fn allows_nothing(c: &CorsConfig) -> bool {
    c.enabled != Some(false) && c.allow_origins.is_empty()
}

/// True when no CORS applies: no policy, a disabled one, or one allowing no origin.
pub fn is_off(c: Option<&CorsConfig>) -> bool {
    c.is_none_or(|c| c.enabled == Some(false) || allows_nothing(c))
}

/// The policy that turns CORS off.
pub fn off() -> CorsConfig {
    CorsConfig {
        enabled: Some(false),
        ..Default::default()
    }
}

/// What MeshConfig makes of a host policy and a route policy (the route's fields win).
pub fn merged(host: Option<&CorsConfig>, route: Option<&CorsConfig>) -> Option<CorsConfig> {
    match (host, route) {
        (Some(h), Some(r)) => Some(overlay(h, r)),
        (h, r) => r.or(h).cloned(),
    }
}

/// Whether two effective policies behave alike (off is off, however it is written; an unset
/// `enabled` is on).
pub fn same(a: Option<&CorsConfig>, b: Option<&CorsConfig>) -> bool {
    let norm = |c: Option<&CorsConfig>| {
        (!is_off(c)).then(|| CorsConfig {
            enabled: None,
            ..c.cloned().unwrap_or_default()
        })
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digimon_v2_policy() {
        let v = json!({
            "allow_origin_string_match": [{"prefix": "*"}],
            "allow_methods": "GET, PUT, DELETE, POST, OPTIONS",
            "allow_headers": "keep-alive,user-agent",
            "max_age": "1728000",
            "expose_headers": "custom-header-1,grpc-status,grpc-message"
        });
        let mut notes = Notes::default();
        let c = convert(
            &At::root(&v, "cors"),
            &Scope::Cors {
                vhost: 0,
                route: None,
            },
            &mut notes,
        )
        .unwrap();
        assert_eq!(c.allow_origins[0].prefix.as_deref(), Some("*"));
        assert_eq!(c.allow_methods, ["GET", "PUT", "DELETE", "POST", "OPTIONS"]);
        assert_eq!(c.max_age, Some(1_728_000));
        assert!(notes.list.is_empty(), "{:?}", notes.list);
    }

    #[test]
    fn filter_enabled_zero_disables_and_runtime_is_noted() {
        let v = json!({"filter_enabled": {"default_value": {"numerator": 0, "denominator": "HUNDRED"}, "runtime_key": "k"}});
        let mut notes = Notes::default();
        let c = convert(
            &At::root(&v, "p"),
            &Scope::Cors {
                vhost: 0,
                route: Some(1),
            },
            &mut notes,
        )
        .unwrap();
        assert_eq!(c.enabled, Some(false));
        assert_eq!(notes.list.len(), 1);
        assert_eq!(notes.list[0].path, "p.filter_enabled.runtime_key");
    }

    #[test]
    fn effective_policy_merges_field_by_field() {
        let host = CorsConfig {
            allow_origins: vec![origin(StringMatch::Exact("http://a".into()))],
            max_age: Some(5),
            enabled: Some(false),
            ..Default::default()
        };
        let route = CorsConfig {
            max_age: Some(9),
            ..Default::default()
        };
        let e = effective(&[None, Some(&host), Some(&route)]).unwrap();
        assert_eq!(
            (e.max_age, e.enabled, e.allow_origins.len()),
            (Some(9), None, 1)
        );
        assert!(!allows_nothing(&e));
        assert!(allows_nothing(&route));
        assert_eq!(effective(&[None, None]), None);
    }
}
