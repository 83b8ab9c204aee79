//! The JSON reader against the shapes and errors of the config schema.

use super::*;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Doc {
    name: String,
    port: Option<u16>,
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    set: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Item {
    on: bool,
}

fn err(text: &str) -> (String, String) {
    let e = from_str::<Doc>(text).unwrap_err();
    (e.path.unwrap_or_default(), e.message)
}

#[test]
fn reads_the_schema_shapes() {
    let d: Doc = from_str(
        r#" {"name": "a\"\u00e9\ud83d\ude00", "port": 80, "items": [{"on": true}, {"on": false}], "set": {"x": "1"}} "#,
    )
    .unwrap();
    assert_eq!(d.name, "a\"é😀");
    assert_eq!(d.port, Some(80));
    assert_eq!(d.items, vec![Item { on: true }, Item { on: false }]);
    assert_eq!(d.set["x"], "1");
    let d: Doc = from_str(r#"{"name": "b", "port": null}"#).unwrap();
    assert_eq!(d.port, None);
}

#[test]
fn errors_name_the_field_as_serde_path_to_error_did() {
    assert_eq!(
        err(r#"{"name": "a", "items": [{"on": true}, {"on": 1}]}"#),
        (
            "items[1].on".into(),
            "invalid type: integer `1`, expected a boolean".into()
        )
    );
    assert_eq!(
        err(r#"{"name": "a", "items": [{"on": true, "typo": 1}]}"#).0,
        "items[0].typo"
    );
    assert_eq!(
        err(r#"{"items": []}"#),
        (".".into(), "missing field `name`".into())
    );
    assert_eq!(
        err(r#"{"name": "a", "port": 70000}"#),
        (
            "port".into(),
            "invalid value: integer `70000`, expected u16".into()
        )
    );
    assert_eq!(
        err(r#"{"name": "a", "port": 1.5}"#),
        (
            "port".into(),
            "invalid type: floating point `1.5`, expected u16".into()
        )
    );
    assert_eq!(
        err(r#"{"name": null}"#).1,
        "invalid type: null, expected a string"
    );
    assert_eq!(
        err(r#"{"name": ["x"]}"#).1,
        "invalid type: sequence, expected a string"
    );
    assert_eq!(
        err(r#"{"name": "a", "items": [{"on": "yes\n"}]}"#).1,
        "invalid type: string \"yes\\n\", expected a boolean"
    );
    assert_eq!(
        err(r#"{"name": "a", "items": [{"on": tru}]}"#).0,
        "items[0].on"
    );
}

#[test]
fn bad_json_is_refused_not_panicked_on() {
    for bad in [
        "",
        "{",
        "{\"name\"",
        "{\"name\": \"a\"} x",
        "[",
        "\"\\u12\"",
        "{\"name\": \"a\u{1}\"}",
        "{\"name\": \"\\ud800\"}",
        "-",
        "1.",
        "1e",
        "{,}",
        "{\"name\": \"a\",}",
    ] {
        assert!(from_str::<Doc>(bad).is_err(), "{bad:?}");
    }
    let deep = "[".repeat(10_000);
    assert!(from_str::<serde::de::IgnoredAny>(&deep).is_err());
}

#[test]
fn members_split_the_top_level_object() {
    let m = members(r#" {"a": {"x": [1, "]"]}, "b" : "s" } "#).unwrap();
    assert_eq!(
        m,
        vec![("a".into(), r#"{"x": [1, "]"]}"#), ("b".into(), r#""s""#)]
    );
    assert_eq!(members("{}"), Some(vec![]));
    assert_eq!(members("[1]"), None);
    assert_eq!(members("{\"a\": 1} x"), None);
}
