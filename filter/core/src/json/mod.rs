//! A small JSON reader for the config schema's serde types, recording the field path of the
//! first error (`hosts[0].routes[1].to.port`).
//!
//! It replaces serde_json + serde_path_to_error on the filter's configure path: the same derived
//! types and the same messages for shape errors, in a fraction of the module size (no float
//! formatting, one monomorphization of the schema), and without an intermediate JSON tree.
//! Only the filter's input goes through it; the plugin still writes JSON with serde_json.

mod de;
mod read;

use read::Reader;
use serde::de as serde_de;
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

impl serde_de::Error for JsonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        JsonError {
            message: msg.to_string(),
            path: None,
        }
    }

    fn invalid_type(unexp: serde_de::Unexpected<'_>, exp: &dyn serde_de::Expected) -> Self {
        serde_de::Error::custom(format_args!(
            "invalid type: {}, expected {exp}",
            describe(&unexp)
        ))
    }

    fn invalid_value(unexp: serde_de::Unexpected<'_>, exp: &dyn serde_de::Expected) -> Self {
        serde_de::Error::custom(format_args!(
            "invalid value: {}, expected {exp}",
            describe(&unexp)
        ))
    }
}

/// serde's wording of an unexpected value, with JSON's `null` for serde's "unit value" (as
/// serde_json says it). Written out here because serde's own `Display` formats floats, which
/// no field of the schema takes, and float formatting is a sizeable part of a small module.
fn describe(u: &serde_de::Unexpected<'_>) -> String {
    use serde_de::Unexpected as U;
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
pub(crate) enum Seg<'de> {
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

#[cfg(test)]
mod tests;
