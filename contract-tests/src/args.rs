//! Arguments made up from a tool's input schema: plausible valid ones (to
//! call read-only tools and to reach the scope check) and ones with one
//! argument of the wrong type.

use serde_json::{Map, Value, json};

/// How deep nested objects and arrays are filled in.
const MAX_DEPTH: usize = 6;

/// The first type named by `type` (a string or an array), skipping `null`.
fn declared_type(schema: &Map<String, Value>) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t.as_str()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or(Some("null")),
        _ => None,
    }
}

fn string_for(schema: &Map<String, Value>) -> Value {
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    let text = match format {
        "date" => "2026-01-15".to_string(),
        "date-time" => "2026-01-15T09:30:00Z".to_string(),
        "time" => "09:30:00Z".to_string(),
        "email" => "conformance@example.com".to_string(),
        "uri" | "url" => "https://example.com/conformance".to_string(),
        "uuid" => "123e4567-e89b-42d3-a456-426614174000".to_string(),
        "ipv4" => "192.0.2.1".to_string(),
        "ipv6" => "2001:db8::1".to_string(),
        "hostname" => "example.com".to_string(),
        _ => "conformance".to_string(),
    };
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let mut text = text;
    while (text.chars().count() as u64) < min {
        text.push('x');
    }
    if (text.chars().count() as u64) > max {
        text = "x".repeat(usize::try_from(max.max(min)).unwrap_or(1));
    }
    Value::String(text)
}

fn number_for(schema: &Map<String, Value>, integer: bool) -> Value {
    let lower = schema.get("minimum").and_then(Value::as_f64).or_else(|| {
        schema
            .get("exclusiveMinimum")
            .and_then(Value::as_f64)
            .map(|m| m + 1.0)
    });
    let upper = schema.get("maximum").and_then(Value::as_f64).or_else(|| {
        schema
            .get("exclusiveMaximum")
            .and_then(Value::as_f64)
            .map(|m| m - 1.0)
    });
    let mut n = 1.0_f64;
    if let Some(lo) = lower {
        n = n.max(lo.ceil());
    }
    if let Some(hi) = upper {
        n = n.min(hi.floor());
    }
    if integer || n.fract() == 0.0 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// A value valid against `schema`, as far as a simple generator can tell.
pub(crate) fn valid(schema: &Value) -> Value {
    generate(schema, 0)
}

fn generate(schema: &Value, depth: usize) -> Value {
    let Some(map) = schema.as_object() else {
        return json!({});
    };
    if let Some(c) = map.get("const") {
        return c.clone();
    }
    if let Some(first) = map
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(d) = map.get("default") {
        return d.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = map.get(key).and_then(Value::as_array).and_then(|v| {
            v.iter()
                .find(|s| s.get("type") != Some(&json!("null")))
                .or(v.first())
        }) {
            return generate(first, depth + 1);
        }
    }
    let ty = declared_type(map).unwrap_or(if map.contains_key("properties") {
        "object"
    } else {
        "string"
    });
    match ty {
        "object" => {
            let mut out = Map::new();
            if depth > MAX_DEPTH {
                return Value::Object(out);
            }
            let required: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = map.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if required.contains(&name.as_str()) {
                        out.insert(name.clone(), generate(prop, depth + 1));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = map.get("items").cloned().unwrap_or(json!({}));
            let items: Vec<Value> = (0..min.min(3))
                .map(|_| generate(&item, depth + 1))
                .collect();
            Value::Array(items)
        }
        "integer" => number_for(map, true),
        "number" => number_for(map, false),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => string_for(map),
    }
}

/// A value of another type than the ones `schema` declares, when the
/// schema declares types at all.
fn wrong_value(schema: &Value) -> Option<Value> {
    let map = schema.as_object()?;
    let declared: Vec<&str> = match map.get("type")? {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let candidates = [
        ("string", json!("not-a-number")),
        ("integer", json!(12345)),
        ("object", json!({"unexpected": "object"})),
        ("boolean", json!(true)),
        ("array", json!(["unexpected", "array"])),
    ];
    let accepts =
        |t: &str| declared.contains(&t) || (t == "integer" && declared.contains(&"number"));
    candidates
        .into_iter()
        .find(|(t, _)| !accepts(t))
        .map(|(_, v)| v)
}

/// Valid arguments with one typed property replaced by a value of the wrong
/// type: `(property, arguments)`. Prefers required properties. `None` when
/// no property declares a type.
pub(crate) fn with_wrong_type(schema: &Value) -> Option<(String, Value)> {
    let map = schema.as_object()?;
    let props = map.get("properties")?.as_object()?;
    let required: Vec<&str> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort_by_key(|n| !required.contains(&n.as_str()));
    for name in names {
        if let Some(bad) = wrong_value(&props[name.as_str()]) {
            let mut args = valid(schema);
            if let Some(obj) = args.as_object_mut() {
                obj.insert(name.clone(), bad);
                return Some((name.clone(), args));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_valid(schema: Value) {
        let v = valid(&schema);
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&v), "{v} against {schema}");
    }

    #[test]
    fn generated_arguments_validate() {
        check_valid(json!({"type": "object", "properties": {
            "q": {"type": "string", "minLength": 20},
            "n": {"type": "integer", "minimum": 5, "maximum": 9},
            "x": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "when": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "mode": {"enum": ["fast", "slow"]},
            "nested": {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
            "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]}
        }, "required": ["q", "n", "x", "when", "tags", "mode", "nested", "either"]}));
    }

    #[test]
    fn wrong_types_are_wrong() {
        let schema = json!({"type": "object", "properties": {
            "opt": {"type": "string"},
            "n": {"type": "number"}
        }, "required": ["n"]});
        let (name, args) = with_wrong_type(&schema).unwrap();
        assert_eq!(name, "n");
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(!validator.is_valid(&args), "{args}");
        assert!(with_wrong_type(&json!({"type": "object", "properties": {"a": {}}})).is_none());
    }
}
