//! The contract's JSON Schemas (`schemas/` at the repository root, embedded
//! at compile time) and the checks on schemas a backend declares.

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

/// The contract schemas the harness validates against.
pub(crate) struct ContractSchemas {
    pub(crate) tool_descriptor: Validator,
    pub(crate) prompt_list: Validator,
    pub(crate) resource_template_list: Validator,
    pub(crate) snapshot: Validator,
    pub(crate) error_body: Validator,
}

fn compile(name: &str, text: &str) -> Validator {
    let schema: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("schemas/{name} is not JSON: {e}"));
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("schemas/{name} is not a valid JSON Schema: {e}"))
}

/// The embedded schemas, compiled once.
pub(crate) fn contract() -> &'static ContractSchemas {
    static SCHEMAS: OnceLock<ContractSchemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| ContractSchemas {
        tool_descriptor: compile(
            "tool-descriptor.schema.json",
            include_str!("../../schemas/tool-descriptor.schema.json"),
        ),
        prompt_list: compile(
            "prompt-list.schema.json",
            include_str!("../../schemas/prompt-list.schema.json"),
        ),
        resource_template_list: compile(
            "resource-template-list.schema.json",
            include_str!("../../schemas/resource-template-list.schema.json"),
        ),
        snapshot: compile(
            "snapshot.schema.json",
            include_str!("../../schemas/snapshot.schema.json"),
        ),
        error_body: compile(
            "error-body.schema.json",
            include_str!("../../schemas/error-body.schema.json"),
        ),
    })
}

/// The first few validation errors of `instance`, one line each, or `None`
/// when it is valid.
pub(crate) fn problems(validator: &Validator, instance: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .take(3)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("at {path}: {e}")
            }
        })
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// What is wrong with an error body, if anything.
pub(crate) fn error_body_problem(body: &Value) -> Option<String> {
    problems(&contract().error_body, body)
}

/// Every `$ref` value in a schema, with its JSON pointer.
pub(crate) fn refs(schema: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, path: &mut String, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(k);
                    if k == "$ref"
                        && let Some(target) = child.as_str()
                    {
                        out.push((path.clone(), target.to_string()));
                    }
                    walk(child, path, out);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(child, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, &mut String::new(), &mut out);
    out
}

/// Why `schema` cannot serve as an input or output schema: it must be a
/// JSON object with root `"type": "object"`, compile as JSON Schema, and
/// refer to no other document.
pub(crate) fn object_schema_problem(schema: &Value) -> Option<String> {
    let Some(map) = schema.as_object() else {
        return Some(format!("is {}, not a JSON Schema object", kind(schema)));
    };
    if map.get("type") != Some(&Value::String("object".into())) {
        return Some(match map.get("type") {
            Some(t) => format!("has root \"type\": {t}, not \"object\""),
            None => "has no root \"type\": \"object\"".into(),
        });
    }
    if let Some((at, target)) = refs(schema).into_iter().find(|(_, t)| !t.starts_with('#')) {
        return Some(format!(
            "refers to another document ({at} = \"{target}\"); the gateway forwards schemas verbatim, so inline it"
        ));
    }
    jsonschema::validator_for(schema)
        .err()
        .map(|e| format!("is not a valid JSON Schema: {e}"))
}

/// A compiled schema, when it compiles.
pub(crate) fn compile_declared(schema: &Value) -> Option<Validator> {
    if object_schema_problem(schema).is_some() {
        return None;
    }
    jsonschema::validator_for(schema).ok()
}

/// `a string`, `an array`, ... for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn embedded_schemas_compile() {
        let s = contract();
        assert!(s.error_body.is_valid(&json!({"error": "x"})));
        assert!(!s.error_body.is_valid(&json!({"message": "x"})));
        assert!(
            s.tool_descriptor
                .is_valid(&json!({"name": "a", "scope": "mcp:a:read", "description": "d"}))
        );
    }

    #[test]
    fn object_schemas() {
        assert!(object_schema_problem(&json!({"type": "object"})).is_none());
        assert!(object_schema_problem(&json!({"type": "array"})).is_some());
        assert!(object_schema_problem(&json!("object")).is_some());
        assert!(
            object_schema_problem(
                &json!({"type": "object", "properties": {"a": {"type": "nonsense"}}})
            )
            .is_some()
        );
        let remote =
            json!({"type": "object", "properties": {"a": {"$ref": "https://x.example/s.json"}}});
        assert!(
            object_schema_problem(&remote)
                .unwrap()
                .contains("/properties/a/$ref")
        );
        let local = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "string"}}});
        assert!(object_schema_problem(&local).is_none());
        assert_eq!(refs(&local).len(), 1);
    }
}
