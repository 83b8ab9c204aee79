//! Storing objects as the API server does: optimistic concurrency, resourceVersion, uid and
//! generation on create and update; label selectors on lists.

use super::limits::too_large;
use super::state::{finish_create, Collection, State};
use super::{reply, status, Reply};
use serde_json::{json, Value};

/// 409 when the body names a resourceVersion other than the live one (optimistic concurrency).
pub(super) fn stale(
    body: &Value,
    live: &Value,
    plural: &str,
    group: &str,
    name: &str,
) -> Option<Reply> {
    let want = body["metadata"]["resourceVersion"].as_str()?;
    (live["metadata"]["resourceVersion"].as_str() != Some(want)).then(|| {
        status(409, "Conflict", format!(
            "Operation cannot be fulfilled on {plural}.{group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ))
    })
}

/// Stores an update: new resourceVersion, and a new generation when the spec changed.
/// Stores a new object: resourceVersion, uid, generation, then 201.
pub(super) fn create(
    st: &mut State,
    key: Collection,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Reply {
    let rv = st.next_rv();
    finish_create(&mut obj, &rv);
    if let Some(refused) = too_large(&obj) {
        return refused;
    }
    st.objects
        .entry(key)
        .or_default()
        .insert(format!("{ns}/{name}"), obj.clone());
    reply(201, &obj)
}

pub(super) fn store(
    st: &mut State,
    key: Collection,
    ns: &str,
    name: &str,
    live: Value,
    mut next: Value,
) -> Reply {
    if let Some(refused) = too_large(&next) {
        return refused;
    }
    next["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    next["metadata"]["generation"] = live["metadata"]["generation"].clone();
    if next == live {
        return reply(200, &live);
    }
    if next["spec"] != live["spec"] {
        next["metadata"]["generation"] =
            json!(live["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }
    next["metadata"]["resourceVersion"] = json!(st.next_rv());
    st.objects
        .entry(key)
        .or_default()
        .insert(format!("{ns}/{name}"), next.clone());
    reply(200, &next)
}

/// `a=b,c` selectors (equality and existence), as the API server filters lists.
pub(super) fn selects(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')] == json!(v),
            None => labels[term].is_string(),
        })
}
