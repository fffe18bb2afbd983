//! The API description served at `/openapi.json`: the paths, parameters
//! and answers written in `openapi.json`, and the schemas of the request
//! and answer types generated from the Rust types the server really
//! (de)serializes, so the two cannot drift apart (a field added to
//! `Ticket` is in the description the moment it is in the code).

use crate::delivery::ChannelSettings;
use crate::engine::Outcome;
use crate::model::Event;
use crate::model::{Agent, Ticket};
use schemars::generate::SchemaSettings;
use serde_json::Value;
use std::sync::OnceLock;

/// The hand-written part: paths, parameters, answers, descriptions.
pub const PATHS: &str = include_str!("../openapi.json");

/// The whole description, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| build().to_string())
}

/// `PATHS` with `components.schemas` completed by the generated schemas
/// (a generated schema replaces a hand-written one of the same name).
pub fn build() -> Value {
    let mut doc: Value = serde_json::from_str(PATHS).unwrap_or_default();
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    // Each root type registers itself and every type it uses.
    generator.subschema_for::<Ticket>();
    generator.subschema_for::<Event>();
    generator.subschema_for::<Outcome>();
    generator.subschema_for::<Agent>();
    generator.subschema_for::<ChannelSettings>();
    let fixture = generator.subschema_for::<crate::registry::fixtures::Fixture>();
    // The upload's fixtures are plugin fixtures.
    if let Some(body) = doc.pointer_mut(
        "/paths/~1v1~1plugins/post/requestBody/content/application~1json/schema/properties/fixtures",
    ) {
        body["items"] = fixture.to_value();
    }
    let schemas = &mut doc["components"]["schemas"];
    if !schemas.is_object() {
        *schemas = Value::Object(Default::default());
    }
    for (name, schema) in generator.take_definitions(true) {
        schemas[name] = schema;
    }
    // JSON Schema has no sized integers: the bounds of each format.
    bound_integers(schemas);
    // What serde cannot say: the time zones the server knows.
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    schemas["Agent"]["properties"]["time_zone"]["enum"] = zones.into();
    // Every error answer: its message and its stable code.
    if let Some(error) =
        doc.pointer_mut("/components/responses/Error/content/application~1json/schema")
    {
        let table: Vec<String> = crate::codes::ALL
            .iter()
            .map(|(code, what)| format!("`{code}`: {what}"))
            .collect();
        error["required"] = serde_json::json!(["error", "code"]);
        error["properties"]["code"] = serde_json::json!({
            "type": "string",
            "enum": crate::codes::ALL.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            "description": format!("Stable and machine-readable (the message is for people): {}", table.join("; ")),
        });
    }
    doc
}

/// Give every integer schema with a sized `format` (`uint32`, `int64`,
/// …) the `minimum` and `maximum` of its type.
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let range: Option<(i128, i128)> = match m.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((0, u8::MAX.into())),
                Some("uint16") => Some((0, u16::MAX.into())),
                Some("uint32") => Some((0, u32::MAX.into())),
                Some("uint64" | "uint") => Some((0, i64::MAX.into())),
                Some("int8") => Some((i8::MIN.into(), i8::MAX.into())),
                Some("int16") => Some((i16::MIN.into(), i16::MAX.into())),
                Some("int32") => Some((i32::MIN.into(), i32::MAX.into())),
                Some("int64" | "int") => Some((i64::MIN.into(), i64::MAX.into())),
                _ => None,
            };
            if let Some((lo, hi)) = range {
                let lo = m
                    .get("minimum")
                    .and_then(Value::as_i64)
                    .map_or(lo, |x| lo.max(x.into()));
                let hi = m
                    .get("maximum")
                    .and_then(Value::as_i64)
                    .map_or(hi, |x| hi.min(x.into()));
                if let (Ok(lo), Ok(hi)) = (i64::try_from(lo), i64::try_from(hi)) {
                    m.insert("minimum".into(), lo.into());
                    m.insert("maximum".into(), hi.into());
                }
            }
            m.values_mut().for_each(bound_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn the_generated_description_resolves_every_reference_and_describes_the_types() {
        let doc = build();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
        let schemas = &doc["components"]["schemas"];
        // From the types: unknown fields are refused, as serde does.
        assert_eq!(schemas["Ticket"]["additionalProperties"], false);
        assert_eq!(schemas["Agent"]["additionalProperties"], false);
        // Optional fields may be null; required ones are required.
        let email = &schemas["Agent"]["properties"]["email"]["type"];
        assert!(
            email.as_array().is_some_and(|t| t.contains(&"null".into())),
            "{email}"
        );
        assert!(
            schemas["Message"]["required"]
                .as_array()
                .unwrap()
                .contains(&"sent_at".into())
        );
        // The hand-written answers are kept.
        assert!(schemas["Handoff"].is_object() && schemas["Delivery"].is_object());
        serde_json::from_str::<Value>(document()).unwrap();
    }
}
