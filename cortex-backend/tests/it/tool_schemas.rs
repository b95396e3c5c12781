//! Schemas derived from tool types: snapshots, 2020-12 validity, and the
//! registration checks of `build()`.

use cortex_backend::{Backend, BuildError, Ctx, ToolError, ToolFn, schema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an invoice is in its life.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Status {
    Draft,
    Sent,
    Paid,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[allow(dead_code)]
struct Line {
    /// What was sold.
    item: String,
    /// Units sold.
    quantity: u32,
    /// Price of one unit, in cents.
    unit_price: i64,
}

/// Arguments of `create_invoice`.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct CreateInvoice {
    /// The customer's account id.
    account: String,
    /// Invoice lines; at least one.
    lines: Vec<Line>,
    /// Initial status (default draft).
    status: Option<Status>,
    /// Payment terms in days.
    terms_days: Option<u16>,
    /// Discount in percent.
    discount: f32,
}

#[derive(Serialize, JsonSchema)]
#[allow(dead_code)]
struct Invoice {
    /// Invoice number.
    number: u64,
    status: Status,
    lines: Vec<Line>,
    /// Due date, ISO 8601.
    due: Option<String>,
}

fn assert_mcp_friendly(schema: &Value) {
    let text = schema.to_string();
    for forbidden in [
        "$ref",
        "$defs",
        "$schema",
        "uint",
        "int64",
        "int32",
        "\"float\"",
        "\"double\"",
        "nullable",
    ] {
        assert!(!text.contains(forbidden), "{forbidden} in {text}");
    }
    assert_eq!(schema["type"], "object");
    jsonschema::meta::validate(schema).expect("a valid JSON Schema 2020-12");
    jsonschema::draft202012::new(schema).expect("compiles as 2020-12");
}

#[test]
fn input_schema_snapshot() {
    let s = schema::input_schema::<CreateInvoice>().unwrap();
    assert_mcp_friendly(&s);
    insta::assert_json_snapshot!("create_invoice_input", s);
}

#[test]
fn output_schema_snapshot() {
    let s = schema::output_schema::<Invoice>().unwrap();
    assert_mcp_friendly(&s);
    insta::assert_json_snapshot!("invoice_output", s);
}

#[test]
fn schemas_accept_and_reject_real_values() {
    let s = schema::input_schema::<CreateInvoice>().unwrap();
    let v = jsonschema::validator_for(&s).unwrap();
    assert!(v.is_valid(&serde_json::json!({"account": "A1", "lines": [{"item": "x", "quantity": 1, "unit_price": 5}], "discount": 0.0})));
    assert!(!v.is_valid(&serde_json::json!({"account": "A1", "lines": [{"item": "x", "quantity": -1, "unit_price": 5}], "discount": 0})));
    assert!(!v.is_valid(
        &serde_json::json!({"account": "A1", "lines": [], "discount": 0, "status": "void"})
    ));
}

async fn takes_string(_: Ctx<()>, _: String) -> Result<Value, ToolError> {
    Ok(Value::Null)
}

async fn takes_value(_: Ctx<()>, _: Value) -> Result<Value, ToolError> {
    Ok(Value::Null)
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Tree {
    children: Vec<Tree>,
}

async fn takes_tree(_: Ctx<()>, _: Tree) -> Result<Value, ToolError> {
    Ok(Value::Null)
}

#[derive(Deserialize, JsonSchema)]
struct Nothing {}

async fn nothing(_: Ctx<()>, _: Nothing) -> Result<Vec<String>, ToolError> {
    Ok(vec![])
}

#[test]
fn build_refuses_non_object_arguments_naming_the_tool() {
    for (name, err) in [
        (
            "by_string",
            Backend::builder("x")
                .tool(
                    ToolFn::new("by_string")
                        .scope("mcp:x:read")
                        .description("d")
                        .handler(takes_string),
                )
                .build()
                .unwrap_err(),
        ),
        (
            "by_value",
            Backend::builder("x")
                .tool(
                    ToolFn::new("by_value")
                        .scope("mcp:x:read")
                        .description("d")
                        .handler(takes_value),
                )
                .build()
                .unwrap_err(),
        ),
        (
            "by_tree",
            Backend::builder("x")
                .tool(
                    ToolFn::new("by_tree")
                        .scope("mcp:x:read")
                        .description("d")
                        .handler(takes_tree),
                )
                .build()
                .unwrap_err(),
        ),
    ] {
        assert!(matches!(err, BuildError::Schema { .. }), "{err}");
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
}

#[test]
fn build_refuses_bad_names_duplicates_and_reserved_words() {
    let dup = Backend::builder("x")
        .tool(
            ToolFn::new("a")
                .scope("mcp:x:read")
                .description("d")
                .handler(nothing),
        )
        .tool(
            ToolFn::new("a")
                .scope("mcp:x:read")
                .description("d")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(matches!(dup, BuildError::Duplicate(_)), "{dup}");
    for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
        let e = Backend::builder("x")
            .tool(
                ToolFn::new(bad)
                    .scope("mcp:x:read")
                    .description("d")
                    .handler(nothing),
            )
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::BadName(..)), "{bad}: {e}");
    }
    let e = Backend::builder("x")
        .tool(
            ToolFn::new("whoami")
                .scope("mcp:x:read")
                .description("d")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    let e = Backend::builder("x")
        .tool(
            ToolFn::new("a")
                .scope(" ")
                .description("d")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::EmptyScope(_)));
    let e = Backend::builder("bad id").build().unwrap_err();
    assert!(matches!(e, BuildError::BadId(_)));
}

#[test]
fn build_refuses_a_swapped_scope_and_description_naming_the_tool() {
    // The description given as the scope.
    let e = Backend::builder("crm")
        .tool(
            ToolFn::new("log_call")
                .scope("Log a call on an account.")
                .description("mcp:crm:write")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::BadScope { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("tool `log_call`"), "{text}");
    assert!(text.contains("`Log a call on an account.`"), "{text}");
    assert!(text.contains("mcp:<domain>:<action>"), "{text}");
    assert!(text.contains("swapped"), "{text}");

    // Only the description is a scope (the scope was given twice).
    let e = Backend::builder("crm")
        .tool(
            ToolFn::new("log_call")
                .scope("mcp:crm:write")
                .description("mcp:crm:write")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::BadDescription(..)), "{e}");
    assert!(e.to_string().contains("tool `log_call`"), "{e}");
    assert!(e.to_string().contains("swapped"), "{e}");

    // Positional `Tool::new` accepts any OAuth scope token (the contract
    // allows unconventional scopes) but not a sentence, nor a scope as the
    // description.
    let e = Backend::builder("crm")
        .tool(cortex_backend::Tool::new(
            "log_call",
            "Log a call on an account.",
            "mcp:crm:write",
            nothing,
        ))
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::BadScope { .. }), "{e}");
    assert!(e.to_string().contains("tool `log_call`"), "{e}");
    let e = Backend::builder("crm")
        .tool(cortex_backend::Tool::new(
            "log_call",
            "crm.write",
            "mcp:crm:write",
            nothing,
        ))
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::BadDescription(..)), "{e}");
    Backend::builder("crm")
        .tool(cortex_backend::Tool::new(
            "legacy_export",
            "crm.export",
            "Export every account.",
            nothing,
        ))
        .build()
        .expect("an unconventional scope token builds through Tool::new");

    // A forgotten scope or description is refused too.
    let e = Backend::builder("crm")
        .tool(
            ToolFn::new("log_call")
                .description("Log a call.")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::EmptyScope(_)), "{e}");
    let e = Backend::builder("crm")
        .tool(
            ToolFn::new("log_call")
                .scope("mcp:crm:write")
                .handler(nothing),
        )
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::BadDescription(..)), "{e}");
    assert!(e.to_string().contains("description is empty"), "{e}");

    // Scopes off the `mcp:<domain>:<action>` convention.
    for bad in [
        "crm.write",
        "mcp:crm",
        "mcp::write",
        "mcp:crm:write:x",
        "MCP:crm:read",
    ] {
        let e = Backend::builder("crm")
            .tool(
                ToolFn::new("log_call")
                    .scope(bad)
                    .description("Log a call.")
                    .handler(nothing),
            )
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::BadScope { .. }), "{bad}: {e}");
    }
    // The right order builds, and lists what was given.
    let b = Backend::builder("crm")
        .tool(
            ToolFn::new("log_call")
                .scope("mcp:crm:write")
                .description("Log a call on an account.")
                .handler(nothing),
        )
        .build()
        .unwrap();
    let d = b
        .tools()
        .into_iter()
        .find(|t| t.name == "log_call")
        .unwrap();
    assert_eq!(
        (d.scope.as_str(), d.description.as_str()),
        ("mcp:crm:write", "Log a call on an account.")
    );
}

#[test]
fn empty_args_and_list_results() {
    let b = Backend::builder("x")
        .tool(
            ToolFn::new("nothing")
                .scope("mcp:x:read")
                .description("d")
                .handler(nothing),
        )
        .build()
        .unwrap();
    let d = b.tools().into_iter().find(|t| t.name == "nothing").unwrap();
    assert_eq!(
        d.input_schema.unwrap(),
        serde_json::json!({"type": "object", "properties": {}})
    );
    // A list result has no outputSchema: the contract requires an object root.
    assert!(d.output_schema.is_none());
}

async fn free_form(
    _: Ctx<()>,
    args: serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, ToolError> {
    Ok(args)
}

#[test]
fn a_hand_written_input_schema_replaces_the_derived_one() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"when": {"type": "string", "format": "date-time"}},
        "required": ["when"],
        "additionalProperties": false
    });
    let b = Backend::builder("x")
        .tool(
            cortex_backend::Tool::new("free", "mcp:x:read", "d", free_form)
                .input_schema(schema.clone()),
        )
        .build()
        .unwrap();
    let d = b.tools().into_iter().find(|t| t.name == "free").unwrap();
    assert_eq!(d.input_schema.unwrap(), schema);
    let e = Backend::builder("x")
        .tool(
            cortex_backend::Tool::new("free", "mcp:x:read", "d", free_form)
                .input_schema(serde_json::json!({"type": "array"})),
        )
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("`free`"), "{e}");
}
