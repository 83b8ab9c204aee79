//! A small JSON reader for the config schema's serde types, recording the field path of the
//! first error (`hosts[0].routes[1].to.port`).
//!
//! It replaces serde_json + serde_path_to_error on the filter's configure path: the same derived
//! types and the same messages for shape errors, in a fraction of the module size (no float
//! formatting, one monomorphization of the schema), and without an intermediate JSON tree.
//! Only the filter's input goes through it; the plugin still writes JSON with serde_json.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// Deepest nesting accepted (the schema needs 6; this bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;

/// A shape or syntax error and where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What went wrong, worded as serde words it.
    pub message: String,
    /// The field path (`.` for the document itself); set where the error is first seen.
    pub path: Option<String>,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

impl de::Error for JsonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        JsonError {
            message: msg.to_string(),
            path: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!(
            "invalid type: {}, expected {exp}",
            describe(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!(
            "invalid value: {}, expected {exp}",
            describe(&unexp)
        ))
    }
}

/// serde's wording of an unexpected value, with JSON's `null` for serde's "unit value" (as
/// serde_json says it). Written out here because serde's own `Display` formats floats, which
/// no field of the schema takes, and float formatting is a sizeable part of a small module.
fn describe(u: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match u {
        U::Bool(b) => format!("boolean `{b}`"),
        U::Unsigned(n) => format!("integer `{n}`"),
        U::Signed(n) => format!("integer `{n}`"),
        U::Float(_) => "floating point".to_owned(),
        U::Char(c) => format!("character `{c}`"),
        U::Str(s) => format!("string {s:?}"),
        U::Bytes(_) => "byte array".to_owned(),
        U::Unit => "null".to_owned(),
        U::Option => "Option value".to_owned(),
        U::NewtypeStruct => "newtype struct".to_owned(),
        U::Seq => "sequence".to_owned(),
        U::Map => "map".to_owned(),
        U::Enum => "enum".to_owned(),
        U::UnitVariant => "unit variant".to_owned(),
        U::NewtypeVariant => "newtype variant".to_owned(),
        U::TupleVariant => "tuple variant".to_owned(),
        U::StructVariant => "struct variant".to_owned(),
        U::Other(o) => (*o).to_owned(),
    }
}

#[derive(Debug, Clone)]
enum Seg<'de> {
    /// Borrowed from the input unless the key had escapes: rendered only on error.
    Key(std::borrow::Cow<'de, str>),
    Index(usize),
}

/// Reads a `T` from the whole of `text`.
pub fn from_str<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, JsonError> {
    let mut de = Reader {
        text: text.as_bytes(),
        src: text,
        at: 0,
        path: Vec::new(),
        depth: 0,
    };
    let value = T::deserialize(&mut de).map_err(|e| de.locate(e))?;
    de.ws();
    if de.at < de.text.len() {
        return Err(de.locate(de.syntax("trailing characters")));
    }
    Ok(value)
}

/// The top-level object's members as (key, raw JSON text of the value), in order; `None` when
/// `text` is not a JSON object.
pub fn members(text: &str) -> Option<Vec<(String, &str)>> {
    let mut de = Reader {
        text: text.as_bytes(),
        src: text,
        at: 0,
        path: Vec::new(),
        depth: 0,
    };
    de.ws();
    de.eat(b'{').ok()?;
    let mut out = Vec::new();
    de.ws();
    if de.peek() == Some(b'}') {
        de.at += 1;
    } else {
        loop {
            de.ws();
            let key = de.string().ok()?.into_owned();
            de.ws();
            de.eat(b':').ok()?;
            de.ws();
            let start = de.at;
            de.skip().ok()?;
            out.push((key, text.get(start..de.at)?));
            de.ws();
            match de.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return None,
            }
        }
    }
    de.ws();
    (de.at == de.text.len()).then_some(out)
}

struct Reader<'de> {
    text: &'de [u8],
    src: &'de str,
    at: usize,
    path: Vec<Seg<'de>>,
    depth: usize,
}

impl<'de> Reader<'de> {
    /// Stamps the current path on an error that has none yet.
    fn locate(&self, mut e: JsonError) -> JsonError {
        if e.path.is_none() {
            let mut p = String::new();
            for s in &self.path {
                match s {
                    Seg::Key(k) if p.is_empty() => p.push_str(k),
                    Seg::Key(k) => {
                        p.push('.');
                        p.push_str(k);
                    }
                    Seg::Index(i) => p.push_str(&format!("[{i}]")),
                }
            }
            if p.is_empty() {
                p.push('.');
            }
            e.path = Some(p);
        }
        e
    }

    fn syntax(&self, what: &str) -> JsonError {
        de::Error::custom(format_args!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), JsonError> {
        match self.next() {
            Some(x) if x == b => Ok(()),
            _ => Err(self.syntax(&format!("expected `{}`", char::from(b)))),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        match self.text.get(self.at..self.at + word.len()) {
            Some(w) if w == word => {
                self.at += word.len();
                Ok(())
            }
            _ => Err(self.syntax("expected value")),
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.syntax("nesting too deep"));
        }
        Ok(())
    }

    /// A string (the opening quote is next), borrowed when it has no escapes.
    fn string(&mut self) -> Result<std::borrow::Cow<'de, str>, JsonError> {
        self.eat(b'"')?;
        let start = self.at;
        // Most strings have no escapes: find the end in one scan and borrow.
        let rest = self.text.get(start..).unwrap_or_default();
        let stop = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        self.at = start + stop.unwrap_or(rest.len());
        match stop.and_then(|i| rest.get(i)) {
            Some(b'"') => {
                let s = self.src.get(start..self.at).unwrap_or_default();
                self.at += 1;
                return Ok(std::borrow::Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.syntax("control character in string")),
            None => return Err(self.syntax("EOF while parsing a string")),
        }
        // Escapes: continue into an owned buffer.
        let mut out: Vec<u8> = self.text.get(start..self.at).unwrap_or_default().to_vec();
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = match self.next() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.syntax("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(b) if b < 0x20 => return Err(self.syntax("control character in string")),
                Some(b) => out.push(b),
                None => return Err(self.syntax("EOF while parsing a string")),
            }
        }
        String::from_utf8(out)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| self.syntax("invalid UTF-8 in string"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.text.get(self.at..self.at + 4).unwrap_or_default();
        let text = std::str::from_utf8(digits).unwrap_or_default();
        let v = match (text.len(), u32::from_str_radix(text, 16)) {
            (4, Ok(v)) => v,
            _ => return Err(self.syntax("invalid \\u escape")),
        };
        self.at += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                return Err(self.syntax("unpaired surrogate"));
            }
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.syntax("unpaired surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.syntax("invalid \\u escape"))
    }

    /// A number's text (validated as JSON's grammar).
    fn number(&mut self) -> Result<&'de str, JsonError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |r: &mut Self| {
            let s = r.at;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.at += 1;
            }
            r.at > s
        };
        if !digits(self) {
            return Err(self.syntax("invalid number"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.syntax("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.syntax("invalid number"));
            }
        }
        Ok(self.src.get(start..self.at).unwrap_or_default())
    }

    /// Skips one value.
    fn skip(&mut self) -> Result<(), JsonError> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => {
                self.enter()?;
                let close = if self.next() == Some(b'{') {
                    b'}'
                } else {
                    b']'
                };
                self.ws();
                if self.peek() == Some(close) {
                    self.at += 1;
                } else {
                    loop {
                        self.ws();
                        if close == b'}' {
                            self.string()?;
                            self.ws();
                            self.eat(b':')?;
                        }
                        self.skip()?;
                        self.ws();
                        match self.next() {
                            Some(b',') => continue,
                            Some(c) if c == close => break,
                            _ => return Err(self.syntax("expected `,` or a closing bracket")),
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }
}

/// The start of the next value, read without knowing the type it becomes (non-generic, so the
/// code per schema type stays a small dispatch).
enum Token<'de> {
    Str(std::borrow::Cow<'de, str>),
    /// `{` consumed.
    Object,
    /// `[` consumed.
    Array,
    Bool(bool),
    Null,
    U64(u64),
    I64(i64),
    /// A number with a fraction or out of range (no field of the schema takes one).
    Other(&'de str),
}

impl<'de> Token<'de> {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Token::Str(s) => de::Unexpected::Str(s),
            Token::Object => de::Unexpected::Map,
            Token::Array => de::Unexpected::Seq,
            Token::Bool(b) => de::Unexpected::Bool(*b),
            Token::Null => de::Unexpected::Unit,
            Token::U64(u) => de::Unexpected::Unsigned(*u),
            Token::I64(i) => de::Unexpected::Signed(*i),
            Token::Other(_) => de::Unexpected::Other("floating point"),
        }
    }
}

impl<'de> Reader<'de> {
    fn token(&mut self) -> Result<Token<'de>, JsonError> {
        self.ws();
        Ok(match self.peek() {
            Some(b'"') => Token::Str(self.string()?),
            Some(b'{') => {
                self.enter()?;
                self.at += 1;
                Token::Object
            }
            Some(b'[') => {
                self.enter()?;
                self.at += 1;
                Token::Array
            }
            Some(b't') => {
                self.literal(b"true")?;
                Token::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Token::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Token::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                match (n.parse::<u64>(), n.parse::<i64>()) {
                    (Ok(u), _) => Token::U64(u),
                    (_, Ok(i)) => Token::I64(i),
                    _ => Token::Other(n),
                }
            }
            Some(_) => return Err(self.syntax("expected value")),
            None => return Err(self.syntax("EOF while parsing a value")),
        })
    }

    fn close(&mut self, b: u8) -> Result<(), JsonError> {
        self.ws();
        self.eat(b)?;
        self.depth -= 1;
        Ok(())
    }

    /// The error for a value of the wrong type, worded as serde_json words it.
    fn mismatch(t: &Token<'_>, exp: &dyn de::Expected) -> JsonError {
        match t {
            Token::Other(n) => de::Error::invalid_type(
                de::Unexpected::Other(&format!("floating point `{n}`")),
                exp,
            ),
            t => de::Error::invalid_type(t.unexpected(), exp),
        }
    }

    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, JsonError> {
        let v = visitor.visit_map(Members {
            de: &mut *self,
            first: true,
        })?;
        self.close(b'}')?;
        Ok(v)
    }

    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, JsonError> {
        let v = visitor.visit_seq(Elements {
            de: &mut *self,
            index: 0,
        })?;
        self.close(b']')?;
        Ok(v)
    }
}

fn visit_str<'de, V: Visitor<'de>>(
    s: std::borrow::Cow<'de, str>,
    visitor: V,
) -> Result<V::Value, JsonError> {
    match s {
        std::borrow::Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
        std::borrow::Cow::Owned(s) => visitor.visit_string(s),
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Str(s) => visit_str(s, visitor),
            Token::Object => self.map(visitor),
            Token::Array => self.seq(visitor),
            Token::Bool(b) => visitor.visit_bool(b),
            Token::Null => visitor.visit_unit(),
            Token::U64(u) => visitor.visit_u64(u),
            Token::I64(i) => visitor.visit_i64(i),
            t @ Token::Other(_) => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    // Each typed entry point only calls the visitor method its type can take, so the derived
    // code for the others is never instantiated.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Object => self.map(visitor),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Array => self.seq(visitor),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Str(s) => visit_str(s, visitor),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Bool(b) => visitor.visit_bool(b),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::U64(u) => visitor.visit_u64(u),
            Token::I64(i) => visitor.visit_i64(i),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.ws();
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Str(s) => visitor.visit_enum(IntoDeserializer::<JsonError>::into_deserializer(
                s.into_owned(),
            )),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

struct Members<'a, 'de> {
    de: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de> {
    type Error = JsonError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, JsonError> {
        let de = &mut *self.de;
        de.ws();
        match de.peek() {
            Some(b'}') => return Ok(None),
            Some(b',') if !self.first => {
                de.at += 1;
                de.ws();
            }
            _ if self.first => {}
            _ => return Err(de.syntax("expected `,` or `}`")),
        }
        self.first = false;
        if de.peek() != Some(b'"') {
            return Err(de.syntax("key must be a string"));
        }
        let key = de.string()?;
        let k = match &key {
            std::borrow::Cow::Borrowed(s) => {
                seed.deserialize(de::value::BorrowedStrDeserializer::<JsonError>::new(s))
            }
            std::borrow::Cow::Owned(s) => {
                seed.deserialize(de::value::StrDeserializer::<JsonError>::new(s))
            }
        };
        de.path.push(Seg::Key(key));
        let k = k.map_err(|e| de.locate(e))?;
        de.ws();
        de.eat(b':').map_err(|e| de.locate(e))?;
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, JsonError> {
        let de = &mut *self.de;
        let v = seed.deserialize(&mut *de).map_err(|e| de.locate(e))?;
        de.path.pop();
        Ok(v)
    }
}

struct Elements<'a, 'de> {
    de: &'a mut Reader<'de>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = JsonError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsonError> {
        let de = &mut *self.de;
        de.ws();
        match de.peek() {
            Some(b']') => return Ok(None),
            Some(b',') if self.index > 0 => {
                de.at += 1;
            }
            _ if self.index == 0 => {}
            _ => return Err(de.syntax("expected `,` or `]`")),
        }
        de.path.push(Seg::Index(self.index));
        let v = seed.deserialize(&mut *de).map_err(|e| de.locate(e))?;
        de.path.pop();
        self.index += 1;
        Ok(Some(v))
    }
}

#[cfg(test)]
mod tests {
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
}
