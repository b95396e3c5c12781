//! JSON Schema generation for tool arguments and results, with the settings
//! MCP clients accept.
//!
//! schemars' defaults emit `$schema`, `$defs`/`$ref`, boolean schemas and
//! non-standard integer formats (`uint32`, `int64`), each of which breaks at
//! least one widely used MCP client. The settings here inline every subschema,
//! drop `$schema` (an absent `$schema` means 2020-12 in MCP), keep only the
//! standard formats and turn boolean schemas into objects. The root must be
//! `"type": "object"`; anything else is refused at registration.

use schemars::{
    JsonSchema,
    generate::SchemaSettings,
    transform::{RecursiveTransform, ReplaceBoolSchemas, RestrictFormats},
};
use serde_json::{Map, Value};

/// Why a type cannot serve as a tool's argument or result schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The root is not `"type": "object"` (a `()`, a `Value`, a data enum, a
    /// primitive).
    #[error(
        "the argument type `{type_name}` does not produce an object schema (root is {found}); \
         MCP requires `\"type\": \"object\"`: use a struct with named fields"
    )]
    NotAnObject {
        /// The Rust type.
        type_name: String,
        /// What the root was instead.
        found: String,
    },
    /// A `$ref` remained after inlining: the type is recursive.
    #[error(
        "the type `{type_name}` is recursive (a `$ref` remains at {pointer}); \
         many MCP clients cannot resolve references: make the recursive part an opaque string"
    )]
    Recursive {
        /// The Rust type.
        type_name: String,
        /// Where the reference is.
        pointer: String,
    },
}

fn settings(for_output: bool) -> SchemaSettings {
    let mut formats = RestrictFormats::default();
    formats.infer_from_meta_schema = false;
    formats.allowed_formats.extend(
        [
            "date-time",
            "date",
            "time",
            "duration",
            "email",
            "uri",
            "uuid",
            "ipv4",
            "ipv6",
            "hostname",
        ]
        .map(Into::into),
    );
    let mut bools = ReplaceBoolSchemas::default();
    bools.skip_additional_properties = true;
    let base = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let base = if for_output {
        base.for_serialize()
    } else {
        base
    };
    base.with_transform(formats)
        .with_transform(bools)
        .with_transform(RecursiveTransform(strip_schemars_titles))
}

/// Per-property `title`s are the Rust type names of nested structs: noise for
/// an LLM. Descriptions (from doc comments) stay.
fn strip_schemars_titles(schema: &mut schemars::Schema) {
    if let Some(obj) = schema.as_object_mut()
        && obj.get("title").is_some_and(Value::is_string)
        && obj.contains_key("type")
    {
        obj.remove("title");
    }
}

fn find_ref(value: &Value, pointer: &str) -> Option<String> {
    match value {
        Value::Object(map) => {
            if map.contains_key("$ref") {
                return Some(if pointer.is_empty() {
                    "/".into()
                } else {
                    pointer.into()
                });
            }
            map.iter()
                .find_map(|(k, v)| find_ref(v, &format!("{pointer}/{k}")))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_ref(v, &format!("{pointer}/{i}"))),
        _ => None,
    }
}

fn root_kind(map: &Map<String, Value>) -> String {
    match map.get("type") {
        Some(t) => t.to_string(),
        None if map.contains_key("oneOf") || map.contains_key("anyOf") => {
            "a union (oneOf/anyOf)".into()
        }
        None => "untyped".into(),
    }
}

fn generate<T: JsonSchema + ?Sized>(for_output: bool) -> Result<Value, SchemaError> {
    let type_name = std::any::type_name::<T>().to_string();
    let schema = settings(for_output)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    let Value::Object(map) = &mut value else {
        return Err(SchemaError::NotAnObject {
            type_name,
            found: "a boolean schema".into(),
        });
    };
    if map.get("type").and_then(Value::as_str) != Some("object") {
        return Err(SchemaError::NotAnObject {
            found: root_kind(map),
            type_name,
        });
    }
    map.remove("title");
    map.remove("description");
    map.remove("$defs");
    map.entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(pointer) = find_ref(&value, "") {
        return Err(SchemaError::Recursive { type_name, pointer });
    }
    if !for_output {
        drop_null_from_optional(&mut value);
    }
    Ok(value)
}

/// An optional argument (`Option<T>`, not in `required`) is simply left out
/// by a caller; schemars also lets it be `null` (`"type": ["string",
/// "null"]`), which several clients handle poorly and which tells an LLM
/// nothing useful. Input schemas keep only the non-null form: serde still
/// accepts `null` for such a field, so nothing valid is refused.
fn drop_null_from_optional(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    let required: Vec<String> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            if !required.contains(name) {
                strip_null(prop);
            }
            drop_null_from_optional(prop);
        }
    }
    if let Some(items) = map.get_mut("items") {
        drop_null_from_optional(items);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = map.get_mut(key) {
            list.iter_mut().for_each(drop_null_from_optional);
        }
    }
}

fn strip_null(prop: &mut Value) {
    let Value::Object(map) = prop else { return };
    if let Some(Value::Array(types)) = map.get("type") {
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if rest.len() < types.len() {
            let new = if rest.len() == 1 {
                rest[0].clone()
            } else {
                Value::Array(rest)
            };
            map.insert("type".into(), new);
        }
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if let Some(Value::Array(options)) = map.get("anyOf").cloned() {
        let rest: Vec<Value> = options
            .into_iter()
            .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if rest.len() == 1
            && let Value::Object(inner) = &rest[0]
        {
            map.remove("anyOf");
            for (k, v) in inner {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        } else {
            map.insert("anyOf".into(), Value::Array(rest));
        }
    }
}

/// The input schema of an argument type, or why it cannot be one.
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Search { /// Free text.
///     query: String, limit: Option<u32> }
/// let schema = cortex_backend::schema::input_schema::<Search>().unwrap();
/// assert_eq!(schema["type"], "object");
/// assert!(schema.get("$schema").is_none());
/// assert!(schema["properties"]["limit"].get("format").is_none());
/// ```
pub fn input_schema<T: JsonSchema + ?Sized>() -> Result<Value, SchemaError> {
    generate::<T>(false)
}

/// The output schema of a result type: `Some` when the result is an object,
/// `None` otherwise (a list or a string result has no `outputSchema`, since
/// the contract requires an object root there). A recursive result type
/// also gets `None`: better no schema than one clients cannot read.
pub fn output_schema<T: JsonSchema + ?Sized>() -> Option<Value> {
    generate::<T>(true).ok()
}
