//! The JSON loaders of the config types, [`MeshConfig::from_json`] and
//! [`FilterConfig::from_json`]: inherent methods of [`crate::config`]'s types, kept here with
//! the reader they call so that the schema depends on no other module.

use crate::config::{Delivery, FilterConfig, LoadError, MeshConfig};
use crate::json;

impl MeshConfig {
    /// Parses the JSON form (what the filter receives from Envoy).
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        read_json(text)
    }
}

impl FilterConfig {
    /// Parses what Envoy hands the filter: a [`FilterConfig`] object (it has a `mesh` key) or
    /// a bare [`MeshConfig`]. Error paths are relative to the MeshConfig document either way.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        // What `render` writes (`delivery` first) is read in one pass.
        if let Some(json::Envelope {
            mesh: Some(mesh),
            delivery,
            revision,
            unknown,
        }) = json::envelope(text)
        {
            return FilterConfig::checked(mesh.map_err(shape)?, delivery, revision, unknown);
        }
        // A bare document that reads has no `mesh` member (that would be an unknown field).
        if let Ok(mesh) = json::mesh_config(text) {
            return Ok(FilterConfig {
                delivery: Delivery::Upstream,
                mesh,
                revision: None,
            });
        }
        FilterConfig::from_members(text)
    }

    /// [`FilterConfig::from_json`] for any text: the envelope's parts are kept as raw JSON
    /// and each is read straight into its type.
    fn from_members(text: &str) -> Result<Self, LoadError> {
        let Some(mut members) = json::members(text).filter(|m| m.iter().any(|(k, _)| k == "mesh"))
        else {
            return Ok(FilterConfig {
                delivery: Delivery::Upstream,
                mesh: read_json(text)?,
                revision: None,
            });
        };
        // A repeated key: the last one counts, as in a JSON object.
        let mut take = |key: &str| {
            let mut found = None;
            members.retain(|(k, v)| match k == key {
                true => {
                    found = Some(*v);
                    false
                }
                false => true,
            });
            found
        };
        let mesh = read_json(take("mesh").unwrap_or_default())?;
        let delivery = take("delivery");
        let revision = take("revision");
        FilterConfig::checked(
            mesh,
            delivery,
            revision,
            members.first().map(|(k, _)| k.clone()),
        )
    }

    /// The envelope from its read `mesh`, the texts of its `delivery` and `revision` and its
    /// first unknown key: errors in that order.
    fn checked(
        mesh: MeshConfig,
        delivery: Option<&str>,
        revision: Option<&str>,
        unknown: Option<String>,
    ) -> Result<Self, LoadError> {
        let delivery = match delivery {
            None => Delivery::default(),
            Some(d) => json::delivery(d).map_err(|e| LoadError::Shape {
                path: "delivery".to_owned(),
                message: e.message,
            })?,
        };
        let revision = match revision {
            None => None,
            Some(r) => Some(json::string(r).map_err(|e| LoadError::Shape {
                path: "revision".to_owned(),
                message: e.message,
            })?),
        };
        if let Some(key) = unknown {
            return Err(LoadError::Shape {
                message: format!(
                    "unknown field `{key}`, expected `delivery`, `mesh` or `revision`"
                ),
                path: key,
            });
        }
        Ok(FilterConfig {
            delivery,
            mesh,
            revision,
        })
    }
}

/// The document from JSON text through [`json`], the error naming the field.
fn read_json(text: &str) -> Result<MeshConfig, LoadError> {
    json::mesh_config(text).map_err(shape)
}

fn shape(e: json::JsonError) -> LoadError {
    LoadError::Shape {
        path: e.path.unwrap_or_else(|| ".".to_owned()),
        message: e.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass read of the envelope answers as the member split does, error for error.
    #[test]
    fn the_envelope_reads_in_one_pass_as_in_two() {
        let mesh = r#"{"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig"}"#;
        let bad = r#"{"apiVersion": "kubectl-mesh/v1alpha1", "kind": 1}"#;
        let docs = [
            format!(r#"{{"delivery": "local", "mesh": {mesh}}}"#),
            format!(r#"{{"mesh": {mesh}}}"#),
            format!(r#"{{"mesh": {mesh}, "delivery": "upstream"}}"#),
            format!(r#"{{"mesh": {mesh}, "delivery": "x"}}"#),
            format!(r#"{{"mesh": {mesh}, "delivery": 1, "extra": 2}}"#),
            format!(r#"{{"mesh": {mesh}, "extra": 2, "more": 3}}"#),
            format!(r#"{{"mesh": {bad}}}"#),
            format!(r#"{{"mesh": {bad}, "mesh": {mesh}}}"#),
            format!(r#"{{"mesh": {mesh}, "mesh": {bad}}}"#),
            format!(r#"{{"mesh": {bad}, "delivery": "x", "extra": 1}}"#),
            format!(r#"{{"delivery": "local", "delivery": "upstream", "mesh": {mesh}}}"#),
            r#"{"delivery": "local"}"#.to_owned(),
            r#"{"delivery": "local", "apiVersion": "x"}"#.to_owned(),
            r#"{"mesh": 1}"#.to_owned(),
            r#"{"mesh": [}"#.to_owned(),
            r#"{"mesh": {"kind": tru}}"#.to_owned(),
            format!(r#"{{"mesh": {mesh}}} x"#),
            format!(r#"{{"mesh": {mesh}"#),
            format!(r#"{{"apiVersion": "x", "mesh": {mesh}}}"#),
            mesh.to_owned(),
        ];
        let show = |r: Result<FilterConfig, LoadError>| r.map_err(|e| e.to_string());
        for doc in &docs {
            assert_eq!(
                show(FilterConfig::from_json(doc)),
                show(FilterConfig::from_members(doc)),
                "{doc}"
            );
        }
        assert!(json::envelope(&docs[0]).is_some());
        assert!(FilterConfig::from_json(&docs[0]).is_ok());
    }
}
