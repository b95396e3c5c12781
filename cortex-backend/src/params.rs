//! The simplified `params` notation (contract §4) and its conversion to JSON
//! Schema. The gateway uses the same function, so a backend and the gateway
//! never disagree on what `"number?"` means.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The type words the contract defines, without the optional `?`.
pub const TYPE_WORDS: [&str; 6] = [
    "string",
    "number",
    "boolean",
    "string[]",
    "number[]",
    "boolean[]",
];

/// A `params` entry that does not use a known type word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "parameter `{param}` has type `{word}`, which the contract does not define; \
     use one of string, number, boolean, string[], number[], boolean[] (add `?` for optional), \
     or declare an inputSchema instead"
)]
pub struct ParamsError {
    /// The parameter's name.
    pub param: String,
    /// The unknown type word.
    pub word: String,
}

/// `{"type":"object","properties":{}}`: the schema of a tool without arguments.
pub fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// The JSON Schema of one type word (without `?`), or `None` if unknown.
fn word_schema(word: &str) -> Option<Value> {
    let scalar = |t: &str| json!({"type": t});
    match word {
        "string" | "number" | "boolean" => Some(scalar(word)),
        "string[]" | "number[]" | "boolean[]" => {
            let item = word.trim_end_matches("[]");
            Some(json!({"type": "array", "items": scalar(item)}))
        }
        _ => None,
    }
}

/// Converts simplified `params` to a JSON Schema object.
///
/// ```
/// # use std::collections::BTreeMap;
/// let params = BTreeMap::from([
///     ("query".to_string(), "string".to_string()),
///     ("tags".to_string(), "string[]?".to_string()),
/// ]);
/// let schema = cortex_backend::params::params_to_schema(&params).unwrap();
/// assert_eq!(schema["properties"]["tags"]["items"]["type"], "string");
/// assert_eq!(schema["required"], serde_json::json!(["query"]));
/// ```
pub fn params_to_schema(params: &BTreeMap<String, String>) -> Result<Value, ParamsError> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, word) in params {
        let trimmed = word.trim();
        let (base, optional) = match trimmed.strip_suffix('?') {
            Some(base) => (base, true),
            None => (trimmed, false),
        };
        let schema = word_schema(base).ok_or_else(|| ParamsError {
            param: name.clone(),
            word: word.clone(),
        })?;
        properties.insert(name.clone(), schema);
        if !optional {
            required.push(Value::String(name.clone()));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    Ok(Value::Object(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn every_word_converts() {
        let schema = params_to_schema(&params(&[
            ("a", "string"),
            ("b", "number?"),
            ("c", "boolean"),
            ("d", "string[]"),
            ("e", "number[]?"),
            ("f", "boolean[]"),
        ]))
        .unwrap();
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "a": {"type": "string"},
                    "b": {"type": "number"},
                    "c": {"type": "boolean"},
                    "d": {"type": "array", "items": {"type": "string"}},
                    "e": {"type": "array", "items": {"type": "number"}},
                    "f": {"type": "array", "items": {"type": "boolean"}}
                },
                "required": ["a", "c", "d", "f"]
            })
        );
    }

    #[test]
    fn unknown_word_is_an_error_not_a_guess() {
        for word in ["integer", "String", "object", "string[][]", "", "?", "date"] {
            let err = params_to_schema(&params(&[("x", word)])).unwrap_err();
            assert_eq!(err.param, "x");
            assert!(err.to_string().contains("string[]"), "{err}");
        }
    }

    #[test]
    fn no_params_gives_no_required() {
        let schema = params_to_schema(&BTreeMap::new()).unwrap();
        assert_eq!(schema, empty_object_schema());
    }
}
