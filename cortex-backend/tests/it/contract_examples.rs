//! Every example of contract.md round-trips through the Rust types unchanged
//! and validates against the checked-in `schemas/`; the schema files match
//! the types (regenerate with `CORTEX_UPDATE_SCHEMAS=1 cargo test -p cortex-backend`).

use std::path::PathBuf;

use cortex_backend::contract::{self, *};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemas_dir() -> PathBuf {
    root().join("schemas")
}

/// Removes `//` comments that are outside strings.
fn strip_jsonc(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            let c = bytes[i];
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else if c == b'"' {
                in_string = true;
            } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
                cut = i;
                break;
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn tool_descriptor_example() -> Value {
    let md = std::fs::read_to_string(root().join("docs/contract.md"))
        .expect("docs/contract.md in the repository");
    let start = md
        .find("```jsonc")
        .expect("a jsonc block in contract.md §4")
        + "```jsonc".len();
    let end = start + md[start..].find("```").expect("end of the block");
    serde_json::from_str(&strip_jsonc(&md[start..end]))
        .expect("the §4 example is JSON once comments are gone")
}

fn roundtrip<T: Serialize + DeserializeOwned>(example: &Value) {
    let typed: T = serde_json::from_value(example.clone()).unwrap_or_else(|e| {
        panic!(
            "{example} does not parse as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(&back, example, "round trip changed the example");
}

fn roundtrip_by_file(file: &str, example: &Value) {
    match file {
        "request-envelope.schema.json" => roundtrip::<RequestEnvelope>(example),
        "error-body.schema.json" => roundtrip::<ErrorBody>(example),
        "tool-descriptor.schema.json" => roundtrip::<ToolDescriptor>(example),
        "tool-list.schema.json" => roundtrip::<ToolList>(example),
        "prompt-descriptor.schema.json" => roundtrip::<PromptDescriptor>(example),
        "get-prompt-params.schema.json" => roundtrip::<GetPromptParams>(example),
        "get-prompt-result.schema.json" => roundtrip::<GetPromptResult>(example),
        "resource-template.schema.json" => roundtrip::<ResourceTemplate>(example),
        "resource-template-list.schema.json" => roundtrip::<ResourceTemplateList>(example),
        "read-resource-params.schema.json" => roundtrip::<ReadResourceParams>(example),
        "read-resource-result.schema.json" => roundtrip::<ReadResourceResult>(example),
        "snapshot.schema.json" => roundtrip::<Snapshot>(example),
        "report-missing-capability-params.schema.json" => {
            roundtrip::<MissingCapabilityReport>(example)
        }
        "ticket-receipt.schema.json" => roundtrip::<TicketReceipt>(example),
        "list-tickets-params.schema.json" => roundtrip::<ListTicketsParams>(example),
        "get-help-params.schema.json" => roundtrip::<GetHelpParams>(example),
        other => panic!("no type mapped for {other}"),
    }
}

fn examples() -> Vec<(String, Value)> {
    let text = include_str!("../fixtures/contract-examples.json");
    let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let mut out = vec![(
        "tool-descriptor.schema.json".to_string(),
        tool_descriptor_example(),
    )];
    for (file, list) in map {
        if file.starts_with('_') {
            continue;
        }
        for ex in list.as_array().unwrap() {
            out.push((file.clone(), ex.clone()));
        }
    }
    out
}

fn validator(file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(schemas_dir().join(file))
        .unwrap_or_else(|e| panic!("schemas/{file}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("schemas/{file} is not a valid schema: {e}"));
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn every_contract_example_round_trips_unchanged() {
    let all = examples();
    assert!(all.len() >= 25, "examples went missing");
    for (file, example) in &all {
        roundtrip_by_file(file, example);
    }
}

#[test]
fn every_contract_example_validates_against_schemas() {
    for (file, example) in examples() {
        let v = validator(&file);
        let errors: Vec<String> = v.iter_errors(&example).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {example} -> {errors:?}");
    }
}

#[test]
fn schemas_reject_what_the_contract_forbids() {
    let bad = [
        (
            "tool-descriptor.schema.json",
            serde_json::json!({"name": "x", "description": "d"}),
        ),
        (
            "snapshot.schema.json",
            serde_json::json!({"backend": "b", "title": "t", "headline": []}),
        ),
        (
            "request-envelope.schema.json",
            serde_json::json!({"params": {}}),
        ),
        (
            "error-body.schema.json",
            serde_json::json!({"message": "x"}),
        ),
        (
            "report-missing-capability-params.schema.json",
            serde_json::json!({"whatIWanted": "x", "userIntent": "y", "severity": "urgent"}),
        ),
    ];
    for (file, value) in bad {
        assert!(!validator(file).is_valid(&value), "{file} accepted {value}");
    }
}

#[test]
fn checked_in_schemas_match_the_types() {
    let generated = contract::json_schemas();
    let dir = schemas_dir();
    if std::env::var_os("CORTEX_UPDATE_SCHEMAS").is_some() {
        for (file, schema) in &generated {
            let text = serde_json::to_string_pretty(schema).unwrap() + "\n";
            std::fs::write(dir.join(file), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (file, schema) in &generated {
        let on_disk: Option<Value> = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if on_disk.as_ref() != Some(schema) {
            stale.push(*file);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is stale for {stale:?}: run `CORTEX_UPDATE_SCHEMAS=1 cargo test -p cortex-backend --test it` and commit"
    );
    let expected: std::collections::BTreeSet<&str> = generated.iter().map(|(f, _)| *f).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".schema.json") {
            assert!(
                expected.contains(name.as_str()),
                "schemas/{name} is not generated from any type"
            );
        }
    }
}

#[test]
fn params_convert_for_the_descriptor_example() {
    let d: ToolDescriptor = serde_json::from_value(tool_descriptor_example()).unwrap();
    // Both present: inputSchema wins.
    assert_eq!(
        d.effective_input_schema().unwrap(),
        d.input_schema.clone().unwrap()
    );
    let only_params = ToolDescriptor {
        input_schema: None,
        ..d
    };
    let schema = only_params.effective_input_schema().unwrap();
    assert_eq!(schema["properties"]["limit"]["type"], "number");
    assert_eq!(schema["required"], serde_json::json!(["query"]));
}
