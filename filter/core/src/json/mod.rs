//! The filter's JSON reader: the config schema ([`crate::config`]) read straight from the text,
//! with the field path of the first error (`hosts[0].routes[1].to.port`).
//!
//! It is written out by hand rather than derived: no serde code in the module (the derived
//! deserializers were the biggest part of it after the SDK and std), no visitor per field, and
//! the path is built only when an error unwinds, so the configure path of a large config is
//! mostly the allocation of its strings. Errors are worded as serde words them for the same
//! document (the plugin reads YAML through serde; tests compare the two on the same documents),
//! and the field lists are checked against serde's in the tests, so a field added to the schema
//! and not here fails them. The plugin still writes JSON with serde_json.
//!
//! `read.rs` lexes, `schema.rs` reads the schema's types, and `load.rs` holds the loaders that
//! call them, `MeshConfig::from_json` and `FilterConfig::from_json` (inherent methods kept
//! here, so that config.rs, the schema, depends on no other module).

mod load;
mod read;
mod schema;

use crate::config::{Delivery, MeshConfig};
use read::Reader;
use std::fmt;

/// Deepest nesting accepted (the schema needs 6; this bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;

/// A shape or syntax error and where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What went wrong, worded as serde words it.
    pub message: String,
    /// The field path (`.` for the document itself).
    pub path: Option<String>,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

/// One step of a field path.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// An error on its way out: segments are added innermost first, as each level returns. Boxed,
/// so a `Result` of the reader is barely bigger than its value.
#[derive(Debug)]
pub(crate) struct Fail(Box<(String, Vec<Seg>)>);

impl Fail {
    fn new(message: String) -> Self {
        Fail(Box::new((message, Vec::new())))
    }

    fn at(mut self, seg: Seg) -> Self {
        self.0 .1.push(seg);
        self
    }

    fn finish(self) -> JsonError {
        let (message, path) = *self.0;
        let mut p = String::new();
        for s in path.iter().rev() {
            match s {
                Seg::Key(k) if p.is_empty() => p.push_str(k),
                Seg::Key(k) => {
                    p.push('.');
                    p.push_str(k);
                }
                Seg::Index(i) => {
                    p.push('[');
                    p.push_str(&i.to_string());
                    p.push(']');
                }
            }
        }
        if p.is_empty() {
            p.push('.');
        }
        JsonError {
            message,
            path: Some(p),
        }
    }
}

/// Reads one value of the whole of `text` with `read`; trailing text is an error.
fn whole<'a, T>(
    text: &'a str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, Fail>,
) -> Result<T, JsonError> {
    let mut r = Reader::new(text);
    let value = read(&mut r).map_err(Fail::finish)?;
    if !r.at_end() {
        return Err(r.syntax("trailing characters").finish());
    }
    Ok(value)
}

/// A [`MeshConfig`] from the whole of `text`.
pub fn mesh_config(text: &str) -> Result<MeshConfig, JsonError> {
    whole(text, schema::mesh_config)
}

/// A [`Delivery`] (`"upstream"` or `"local"`) from the whole of `text`.
pub fn delivery(text: &str) -> Result<Delivery, JsonError> {
    whole(text, schema::delivery)
}

/// A JSON string from the whole of `text` (the envelope's `revision`).
pub fn string(text: &str) -> Result<String, JsonError> {
    whole(text, schema::string)
}

/// The filter's envelope (`{"delivery": ..., "mesh": {...}, "revision": ...}`) read in one pass.
pub(crate) struct Envelope<'a> {
    /// The last `mesh` member, read.
    pub(crate) mesh: Option<Result<MeshConfig, JsonError>>,
    /// The last `delivery` member's text.
    pub(crate) delivery: Option<&'a str>,
    /// The last `revision` member's text.
    pub(crate) revision: Option<&'a str>,
    /// The first other member's key.
    pub(crate) unknown: Option<String>,
}

/// What `render` hands the filter, read in one pass: a JSON object whose first key is `delivery`
/// or `mesh`, `mesh` read where it stands (a later one replaces an earlier one, as in a JSON
/// object). `None` for any other text, or one that is not valid JSON: the caller then splits
/// the members first ([`members`]), which gives the same answer for every document but reads
/// the text twice.
pub(crate) fn envelope(text: &str) -> Option<Envelope<'_>> {
    let mut env = Envelope {
        mesh: None,
        delivery: None,
        revision: None,
        unknown: None,
    };
    let mut first = true;
    whole(text, |r| match r.token()? {
        read::Token::Object => r.members(&mut |r, key| {
            if first && key != "mesh" && key != "delivery" {
                return Err(r.syntax("not the envelope"));
            }
            first = false;
            match key {
                "mesh" => {
                    let start = r.position();
                    env.mesh = Some(match schema::mesh_config(r) {
                        Ok(m) => Ok(m),
                        Err(e) => {
                            r.rewind(start);
                            r.skip()?;
                            Err(e.finish())
                        }
                    });
                }
                "delivery" => env.delivery = Some(r.skip()?),
                "revision" => env.revision = Some(r.skip()?),
                other => {
                    r.skip()?;
                    env.unknown.get_or_insert_with(|| other.to_owned());
                }
            }
            Ok(())
        }),
        _ => Err(r.syntax("not an object")),
    })
    .ok()?;
    Some(env)
}

/// The top-level object's members as (key, raw JSON text of the value), in order; `None` when
/// `text` is not a JSON object.
pub fn members(text: &str) -> Option<Vec<(String, &str)>> {
    let mut out = Vec::new();
    whole(text, |r| match r.token()? {
        read::Token::Object => r.members(&mut |r, key| {
            let value = r.skip()?;
            out.push((key.to_owned(), value.trim_start()));
            Ok(())
        }),
        _ => Err(r.syntax("not an object")),
    })
    .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;
