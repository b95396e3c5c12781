//! Fuzz target: the SDK's simplified `params` notation (contract §4) and
//! its conversion to JSON Schema. Input: `name:type` lines.
#![no_main]

use std::collections::BTreeMap;

use cortex_backend::params::{TYPE_WORDS, params_to_schema};
use serde_json::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params: BTreeMap<String, String> = text
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .map(|(name, word)| (name.to_owned(), word.to_owned()))
        .collect();
    let known = |word: &str| {
        let word = word.trim();
        TYPE_WORDS.contains(&word.strip_suffix('?').unwrap_or(word))
    };
    match params_to_schema(&params) {
        Ok(schema) => {
            assert!(params.values().all(|w| known(w)), "accepted {params:?}");
            let properties = schema["properties"].as_object().expect("properties");
            assert_eq!(properties.len(), params.len());
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let optional = |w: &str| w.trim().ends_with('?');
            let expected: Vec<&str> = params
                .iter()
                .filter(|(_, w)| !optional(w))
                .map(|(n, _)| n.as_str())
                .collect();
            assert_eq!(required, expected);
        }
        Err(e) => {
            assert!(!known(&params[&e.param]), "refused a known word: {e}");
        }
    }
});
