//! The reader against serde: the same documents read the same, bad ones fail with the same path
//! and message, and the field lists are serde's.

use super::schema::{
    CORS_CONFIG, DELIVERY, DIRECT_RESPONSE, HEADER_MATCH, HEADER_RULES, HOST_CONFIG, HOST_MATCHING,
    MESH_CONFIG, NOT_FOUND_HOSTS, ORIGIN_MATCH, REDIRECT, ROUTE_CONFIG, ROUTE_MATCH, TARGET,
};
use super::*;
use crate::config::*;
use serde::de::{self, Deserialize, Visitor};

/// What serde (serde_json + serde_path_to_error, as the plugin reads a JSON value) makes of
/// `text`: the document, or (path, message) without serde_json's position suffix.
fn serde(text: &str) -> Result<MeshConfig, (String, String)> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        (path, message)
    })
}

fn ours(text: &str) -> Result<MeshConfig, (String, String)> {
    mesh_config(text).map_err(|e| (e.path.unwrap_or_default(), e.message))
}

const HEAD: &str = r#""apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig""#;

fn doc(hosts: &str) -> String {
    format!("{{{HEAD}, \"hosts\": {hosts}}}")
}

#[test]
fn every_field_reads_as_serde_reads_it() {
    let full = serde_json::json!({
        "apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "namespace": "ns",
        "clusterDomain": "corp.local",
        "hostMatching": {"ignorePort": false, "ignoreTrailingDot": true},
        "notFound": {"status": 418, "body": "no\n\"tea\" \u{e9}\u{1f600}", "contentType": "text/x"},
        "notFoundHosts": "listed",
        "hosts": [{
            "name": "h", "domains": ["a.test", "*.b.test"],
            "cors": {"enabled": true, "allowOrigins": [{"exact": "x"}, {"prefix": "p"},
                {"suffix": "s"}, {"regex": "r.*"}, {"any": true}],
                "allowMethods": ["GET"], "allowHeaders": ["a"], "exposeHeaders": ["b"],
                "maxAge": 4294967295u32, "allowCredentials": false},
            "requestHeaders": {"set": {"x-a": "1", "x-b": "${host}"}, "add": {"x-c": "2"}, "remove": ["x-d"]},
            "responseHeaders": {"remove": ["server"]},
            "routes": [
                {"name": "r", "match": {"prefix": "/p", "methods": ["GET", "POST"],
                    "headers": [{"name": "x", "exact": "1"}, {"name": "y", "prefix": "2", "invert": true},
                        {"name": "z", "regex": "3"}, {"name": "w", "present": false}]},
                 "grpcWeb": true, "cors": {"maxAge": 0},
                 "to": {"service": "svc", "port": 65535, "prefixRewrite": "/q", "hostRewrite": "h",
                    "http2": false}},
                {"match": {"path": "/exact"}, "to": {"cluster": "c"}},
                {"match": {"regex": "/r/.*"}, "directResponse": {"status": 200}},
                {"redirect": {"scheme": "https", "host": "h", "port": 1, "path": "/x",
                    "status": 308, "stripQuery": true}},
                {"redirect": {"prefixRewrite": "/y"}, "name": null, "cors": null, "to": null}
            ]
        }]
    })
    .to_string();
    assert_eq!(ours(&full), serde(&full));
    assert!(ours(&full).is_ok());
    let minimal = format!("{{{HEAD}}}");
    assert_eq!(ours(&minimal), serde(&minimal));
    // Whitespace and escapes anywhere.
    let spaced = " { \"apiVersion\" : \"kubectl-mesh/v1alpha1\" ,\n\t\"kind\":\"Mesh\\u0043onfig\", \"hosts\" : [ ] } ";
    assert_eq!(ours(spaced), serde(spaced));
}

#[test]
fn errors_name_the_field_and_read_as_serde_words_them() {
    let route = |r: &str| doc(&format!("[{{\"domains\": [\"a\"], \"routes\": [{r}]}}]"));
    let cases = [
        // Types of every kind of value.
        route(r#"{"grpcWeb": 1}"#),
        route(r#"{"grpcWeb": "yes\n"}"#),
        route(r#"{"grpcWeb": null}"#),
        route(r#"{"name": ["x"]}"#),
        route(r#"{"name": {}}"#),
        route(r#"{"name": true}"#),
        route(r#"{"name": -3}"#),
        route(r#"{"match": {"methods": "GET"}}"#),
        route(r#"{"match": {"methods": [1]}}"#),
        route(r#"{"match": {"headers": [{"exact": "1"}]}}"#),
        route(r#"{"to": {"port": 70000}}"#),
        route(r#"{"to": {"port": -1}}"#),
        route(r#"{"to": {"port": 1.5}}"#),
        route(r#"{"to": {"port": "80"}}"#),
        route(r#"{"to": {"http2": "yes"}}"#),
        format!("{{{HEAD}, \"notFoundHosts\": \"some\"}}"),
        route(r#"{"to": 5}"#),
        route(r#"{"requestHeaders": {"set": {"x": 1}}}"#),
        route(r#"{"requestHeaders": {"set": []}}"#),
        route(r#"{"requestHeaders": {"remove": [null]}}"#),
        route(r#"{"directResponse": {}}"#),
        route(r#"{"directResponse": {"status": 200, "body": null}}"#),
        route(r#"{"redirect": {"stripQuery": 0}}"#),
        route(r#"{"cors": {"maxAge": 4294967296}}"#),
        route(r#"{"cors": {"allowOrigins": [{"any": "yes"}]}}"#),
        route(r#"{"cors": {"allowOrigins": {}}}"#),
        // Unknown, missing and repeated fields at every level.
        route(r#"{"typo": 1}"#),
        route(r#"{"to": {"svc": "x"}}"#),
        route(r#"{"match": {"prefx": "/"}}"#),
        route(r#"{"cors": {"origins": []}}"#),
        route(r#"{"cors": {"allowOrigins": [{"glob": "*"}]}}"#),
        route(r#"{"redirect": {"code": 301}}"#),
        route(r#"{"directResponse": {"status": 200, "type": "x"}}"#),
        route(r#"{"requestHeaders": {"replace": {}}}"#),
        doc(r#"[{"routes": []}]"#),
        doc(r#"[{"domains": []}]"#),
        doc(r#"[{"domains": [], "routes": [], "extra": 1}]"#),
        doc(r#"[1]"#),
        doc(r#"{}"#),
        doc(r#"null"#),
        format!("{{{HEAD}, \"hostMatching\": {{\"ignorePort\": null}}}}"),
        format!("{{{HEAD}, \"hostMatching\": {{\"port\": true}}}}"),
        format!("{{{HEAD}, \"notFound\": {{\"body\": \"x\"}}}}"),
        format!("{{{HEAD}, \"namespace\": 7}}"),
        r#"{"kind": "MeshConfig"}"#.to_owned(),
        r#"{"apiVersion": "v"}"#.to_owned(),
        r#"{"apiVersion": 1}"#.to_owned(),
        r#"{"mesh": {}}"#.to_owned(),
        // Not an object at all.
        "null".to_owned(),
        "42".to_owned(),
        "-1".to_owned(),
        "0.5".to_owned(),
        "\"text\"".to_owned(),
        "true".to_owned(),
    ];
    for text in &cases {
        let got = ours(text);
        assert!(got.is_err(), "accepted: {text}");
        assert_eq!(got, serde(text), "{text}");
    }
    // A repeated field: the path names it, one step further than serde's.
    for (text, key) in [
        (route(r#"{"name": "a", "name": "b"}"#), "name"),
        (route(r#"{"name": null, "name": "b"}"#), "name"),
        (route(r#"{"to": {"port": 1, "port": 2}}"#), "port"),
        (
            format!("{{{HEAD}, \"kind\": \"x\", \"kind\": \"y\"}}"),
            "kind",
        ),
    ] {
        let (path, message) = serde(&text).unwrap_err();
        let path = match path.as_str() {
            "." => key.to_owned(),
            p => format!("{p}.{key}"),
        };
        assert_eq!(ours(&text), Err((path, message)), "{text}");
    }
    // A number that is not an integer is quoted as written (no float formatting in the module).
    assert_eq!(
        ours(&route(r#"{"to": {"port": 1e3}}"#)).unwrap_err().1,
        "invalid type: floating point `1e3`, expected u16"
    );
    // Stricter than serde, as the reader has always been: a struct is an object, never a
    // sequence of its fields in order.
    let text = route(r#"{"match": []}"#);
    assert!(serde(&text).is_ok());
    assert_eq!(
        ours(&text),
        Err((
            "hosts[0].routes[0].match".to_owned(),
            "invalid type: sequence, expected struct RouteMatch".to_owned()
        ))
    );
    assert_eq!(
        ours("[]"),
        Err((
            ".".to_owned(),
            "invalid type: sequence, expected struct MeshConfig".to_owned()
        ))
    );
}

#[test]
fn delivery_reads_as_serde_reads_it() {
    for text in [r#""upstream""#, r#""local""#, r#""Local""#, r#""""#] {
        let serde: Result<Delivery, String> = serde_json::from_str(text).map_err(|e| {
            let m = e.to_string();
            m[..m.rfind(" at line ").unwrap_or(m.len())].to_owned()
        });
        assert_eq!(delivery(text).map_err(|e| e.message), serde, "{text}");
    }
    // Where serde_json only says "expected value", the reader says what it found.
    assert_eq!(
        delivery("1").unwrap_err().message,
        "invalid type: integer `1`, expected enum Delivery"
    );
}

#[test]
fn bad_json_is_refused_not_panicked_on() {
    for bad in [
        "",
        "{",
        "{\"apiVersion\"",
        "{\"apiVersion\": \"a\"} x",
        "[",
        "\"\\u12\"",
        "{\"apiVersion\": \"a\u{1}\"}",
        "{\"apiVersion\": \"\\ud800\"}",
        "{\"apiVersion\": \"\\ud800\\u0041\"}",
        "{\"apiVersion\": \"\\x\"}",
        "-",
        "1.",
        "1e",
        "{,}",
        "{\"apiVersion\": \"a\",}",
        "{\"hosts\": [1,]}",
        "{\"hosts\": [1 2]}",
        "{\"hosts\": tru}",
        "{1: 2}",
        "{\"kind\" 1}",
    ] {
        let e = mesh_config(bad).unwrap_err();
        assert!(e.path.is_some(), "{bad:?}");
    }
    // Unknown members are refused before their value is read, so depth is only reachable
    // through the envelope's scan, which is bounded.
    let deep = format!("{{\"mesh\": {}}}", "[".repeat(10_000));
    assert_eq!(members(&deep), None);
    assert!(mesh_config(&"[".repeat(10_000)).is_err());
}

#[test]
fn syntax_errors_say_where() {
    let e = mesh_config(r#"{"apiVersion": "a", "hosts": [{"domains": [x]}]}"#).unwrap_err();
    assert_eq!(e.message, "expected value at byte 43");
    assert_eq!(e.path.as_deref(), Some("hosts[0].domains[0]"));
    let e = mesh_config(r#"{"apiVersion": "a", "kind": "b"} x"#).unwrap_err();
    assert_eq!(e.message, "trailing characters at byte 33");
    assert_eq!(e.path.as_deref(), Some("."));
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

/// Records the field (or variant) list a derived `Deserialize` hands its deserializer.
struct Fields(Vec<&'static str>);

#[derive(Debug)]
struct Captured;
impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("captured")
    }
}
impl std::error::Error for Captured {}
impl de::Error for Captured {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Captured
    }
}

impl<'de> de::Deserializer<'de> for &mut Fields {
    type Error = Captured;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Captured> {
        self.0 = fields.to_vec();
        Err(Captured)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Captured> {
        self.0 = variants.to_vec();
        Err(Captured)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

fn serde_fields<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut f = Fields(Vec::new());
    let _ = T::deserialize(&mut f);
    f.0
}

/// A field added to the schema must be added to the reader too: this fails until it is.
#[test]
fn the_field_lists_are_serdes() {
    assert_eq!(MESH_CONFIG, serde_fields::<MeshConfig>());
    assert_eq!(HOST_MATCHING, serde_fields::<HostMatching>());
    assert_eq!(HOST_CONFIG, serde_fields::<HostConfig>());
    assert_eq!(ROUTE_CONFIG, serde_fields::<RouteConfig>());
    assert_eq!(ROUTE_MATCH, serde_fields::<RouteMatch>());
    assert_eq!(HEADER_MATCH, serde_fields::<HeaderMatch>());
    assert_eq!(TARGET, serde_fields::<Target>());
    assert_eq!(DIRECT_RESPONSE, serde_fields::<DirectResponse>());
    assert_eq!(REDIRECT, serde_fields::<Redirect>());
    assert_eq!(CORS_CONFIG, serde_fields::<CorsConfig>());
    assert_eq!(ORIGIN_MATCH, serde_fields::<OriginMatch>());
    assert_eq!(HEADER_RULES, serde_fields::<HeaderRules>());
    assert_eq!(DELIVERY, serde_fields::<Delivery>());
    assert_eq!(NOT_FOUND_HOSTS, serde_fields::<NotFoundHosts>());
}
