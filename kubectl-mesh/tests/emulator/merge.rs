//! Patch semantics: RFC 7386 merge and Kubernetes' strategic merge by list key.

use serde_json::{Map, Value};

/// RFC 7386 merge; with `strategic`, lists of objects merge by their key (`name`, or
/// `mountPath` for volume mounts) and honour `$patch: delete`, like Kubernetes' strategic merge.
pub(super) fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if strategic && v.is_array() && t.get(k).is_some_and(Value::is_array) {
                    let key = if k == "volumeMounts" {
                        "mountPath"
                    } else {
                        "name"
                    };
                    let existing = t.get_mut(k).and_then(Value::as_array_mut);
                    merge_list(
                        existing.unwrap_or(&mut Vec::new()),
                        v.as_array().map(Vec::as_slice).unwrap_or_default(),
                        key,
                    );
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v, strategic);
                }
            }
        }
        (t, p) => *t = strip_directives(p),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "$patch")
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], key: &str) {
    if patch.iter().any(|p| !p.is_object() || p.get(key).is_none()) {
        // Lists without a merge key are replaced, as in a JSON merge patch.
        *target = patch.iter().map(strip_directives).collect();
        return;
    }
    for item in patch {
        let pos = target.iter().position(|t| t.get(key) == item.get(key));
        if item["$patch"] == "delete" {
            if let Some(i) = pos {
                target.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => merge(&mut target[i], item, true),
            None => target.push(strip_directives(item)),
        }
    }
}
