//! The conformance fixture backend: the tools, prompts and resources the
//! official MCP conformance suite calls by name, built with our SDK.
//!
//! Federated with `prefix = false`, its names reach MCP clients unchanged
//! (`test_simple_text`, `test://static-text`, ...). Only what the backend
//! contract can express is here; `conformance-expected-failures.yml` lists
//! the rest with the reason.
//!
//! | suite scenario | fixture |
//! |---|---|
//! | `tools-call-simple-text` | tool `test_simple_text` |
//! | `tools-call-image` | tool `test_image_content` (1x1 PNG) |
//! | `tools-call-audio` | tool `test_audio_content` (WAV) |
//! | `tools-call-embedded-resource` | tool `test_embedded_resource` |
//! | `tools-call-mixed-content` | tool `test_multiple_content_types` |
//! | `tools-call-error` | tool `test_error_handling` (`isError: true`) |
//! | `prompts-get-simple` | prompt `test_simple_prompt` |
//! | `prompts-get-with-args`, `completion-complete` | prompt `test_prompt_with_arguments` |
//! | `resources-read-text` | resource `test://static-text` |
//! | `resources-read-binary` | resource `test://static-binary` |
//! | `resources-templates-read` | template `test://template/{id}/data` |
//! | `server-stateless` (list-changed checks) | tools `test_trigger_tool_change`, `test_trigger_prompt_change` |
//!
//! Rich content travels as `resultKind: "mcp"` ([`McpResult`]). Resources
//! are declared as templates (the contract has no static resource list): a
//! template without variables such as `test://static-text` names exactly one
//! resource, and the `test` scheme routes every `test://` read here.
//!
//! The two trigger tools change the catalog (a backend's catalog is fixed
//! when it is built, so [`router`] keeps one build per catalog variant and
//! answers from the current one); the gateway sees the change at its next
//! refresh and notifies its listeners.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use cortex_backend::{
    Auth, Backend, BuildError, Ctx, McpResult, Tool, ToolError,
    contract::{
        GetPromptResult, PromptArgument, PromptDescriptor, PromptMessage, ReadResourceResult,
        ResourceContent, ResourceTemplate,
    },
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The backend id (never shown to clients: federated without prefix).
pub const ID: &str = "conformance";

/// The one scope every fixture requires; the harness's token carries it.
pub const SCOPE: &str = "mcp:conformance:read";

/// A 1x1 red PNG.
pub const RED_PIXEL_PNG: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0xc9, 0xfe, 0x92, 0xef, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A short mono 8 kHz 8-bit WAV: a RIFF header and 80 samples (10 ms) of a
/// square wave.
pub fn short_wav() -> Vec<u8> {
    let samples: Vec<u8> = (0..80)
        .map(|i| if i % 8 < 4 { 0xc0 } else { 0x40 })
        .collect();
    let data_len = u32::try_from(samples.len()).unwrap_or(0);
    let mut wav = Vec::with_capacity(44 + samples.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8_000u32.to_le_bytes()); // sample rate
    wav.extend_from_slice(&8_000u32.to_le_bytes()); // byte rate
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend_from_slice(&samples);
    wav
}

/// The fixtures take no arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Which catalog variant the fixture currently serves; flipped by the
/// trigger tools.
#[derive(Debug, Default)]
pub struct Catalog {
    extra_tool: AtomicBool,
    extra_prompt: AtomicBool,
    changes: tokio::sync::Notify,
}

impl Catalog {
    /// Resolves after a trigger tool changed the catalog (the harness then
    /// refreshes the gateway rather than wait for its next periodic refresh).
    pub async fn changed(&self) {
        self.changes.notified().await;
    }
}

type State = Arc<Catalog>;

/// What a trigger tool reports.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Triggered {
    /// Whether the extra entry is now listed.
    pub listed: bool,
}

fn rich(name: &str, description: &str, result: fn() -> McpResult) -> Tool<State> {
    Tool::new(
        name,
        SCOPE,
        description,
        move |_: Ctx<State>, _: NoArgs| async move { Ok::<_, ToolError>(result()) },
    )
    .read_only()
}

fn trigger(name: &str, description: &str, flag: fn(&Catalog) -> &AtomicBool) -> Tool<State> {
    Tool::new(
        name,
        SCOPE,
        description,
        move |ctx: Ctx<State>, _: NoArgs| async move {
            let listed = !flag(ctx.state()).fetch_xor(true, Ordering::SeqCst);
            ctx.state().changes.notify_one();
            Ok::<_, ToolError>(Triggered { listed })
        },
    )
}

fn tools(extra_tool: bool) -> Vec<Tool<State>> {
    let mut tools = vec![
        trigger(
            "test_trigger_tool_change",
            "Adds or removes the tool `test_dynamic_tool` (the tool list changes).",
            |c| &c.extra_tool,
        ),
        trigger(
            "test_trigger_prompt_change",
            "Adds or removes the prompt `test_dynamic_prompt` (the prompt list changes).",
            |c| &c.extra_prompt,
        ),
        rich("test_simple_text", "Returns one text block.", || {
            McpResult::new().text("This is a simple text response for testing.")
        }),
        rich("test_image_content", "Returns a 1x1 PNG image.", || {
            McpResult::new().image(RED_PIXEL_PNG, "image/png")
        }),
        rich("test_audio_content", "Returns a short WAV clip.", || {
            McpResult::new().audio(short_wav(), "audio/wav")
        }),
        rich(
            "test_embedded_resource",
            "Returns an embedded text resource.",
            || {
                McpResult::new().embedded_text(
                    "test://embedded-resource",
                    "text/plain",
                    "This is an embedded resource content.",
                )
            },
        ),
        rich(
            "test_multiple_content_types",
            "Returns text, an image and an embedded resource.",
            || {
                McpResult::new()
                    .text("Multiple content types test:")
                    .image(RED_PIXEL_PNG, "image/png")
                    .embedded_text(
                        "test://mixed-content-resource",
                        "application/json",
                        r#"{"test":"data","value":123}"#,
                    )
            },
        ),
        rich(
            "test_error_handling",
            "Always fails (a tool-level error).",
            || {
                McpResult::new()
                    .text("This tool intentionally returns an error for testing")
                    .error()
            },
        ),
    ];
    if extra_tool {
        tools.push(rich(
            "test_dynamic_tool",
            "Listed after test_trigger_tool_change.",
            || McpResult::new().text("This tool comes and goes."),
        ));
    }
    tools
}

fn prompt(name: &str, description: &str, arguments: &[&str]) -> PromptDescriptor {
    PromptDescriptor {
        name: name.into(),
        description: description.into(),
        arguments: (!arguments.is_empty()).then(|| {
            arguments
                .iter()
                .map(|a| PromptArgument {
                    name: (*a).into(),
                    description: Some(format!("The {a} of the prompt.")),
                    required: Some(true),
                })
                .collect()
        }),
        scope: SCOPE.into(),
    }
}

fn template(uri_template: &str, name: &str, mime_type: &str) -> ResourceTemplate {
    ResourceTemplate {
        uri_template: uri_template.into(),
        name: name.into(),
        description: Some(format!("Conformance fixture `{uri_template}`.")),
        mime_type: Some(mime_type.into()),
        scope: SCOPE.into(),
    }
}

fn one_content(
    uri: String,
    mime_type: &str,
    text: Option<String>,
    blob: Option<String>,
) -> ReadResourceResult {
    ReadResourceResult {
        contents: vec![ResourceContent {
            uri,
            mime_type: mime_type.into(),
            text,
            blob,
        }],
    }
}

/// One catalog variant of the fixture backend, authenticating with `auth`
/// (the harness's issuer and technical token).
pub fn backend(
    auth: Auth,
    catalog: Arc<Catalog>,
    extra_tool: bool,
    extra_prompt: bool,
) -> Result<Backend<State>, BuildError> {
    let mut builder = Backend::builder(ID).state(catalog).auth(auth);
    for tool in tools(extra_tool) {
        builder = builder.tool(tool);
    }
    if extra_prompt {
        builder = builder.prompt(
            prompt(
                "test_dynamic_prompt",
                "Listed after test_trigger_prompt_change.",
                &[],
            ),
            |_, _| async {
                Ok(GetPromptResult {
                    description: None,
                    messages: vec![PromptMessage::user("This prompt comes and goes.")],
                })
            },
        );
    }
    builder
        .prompt(
            prompt("test_simple_prompt", "A prompt without arguments.", &[]),
            |_, _| async {
                Ok(GetPromptResult {
                    description: None,
                    messages: vec![PromptMessage::user("This is a simple prompt for testing.")],
                })
            },
        )
        .prompt(
            prompt(
                "test_prompt_with_arguments",
                "A prompt with two required arguments.",
                &["arg1", "arg2"],
            ),
            |_, args: BTreeMap<String, String>| async move {
                let arg = |name: &str| args.get(name).cloned().unwrap_or_default();
                Ok(GetPromptResult {
                    description: None,
                    messages: vec![PromptMessage::user(format!(
                        "Prompt with arguments: arg1='{}', arg2='{}'",
                        arg("arg1"),
                        arg("arg2")
                    ))],
                })
            },
        )
        .resource_template(
            template("test://static-text", "static-text", "text/plain"),
            |_, uri, _| async move {
                Ok(one_content(
                    uri,
                    "text/plain",
                    Some("This is the content of the static text resource.".into()),
                    None,
                ))
            },
        )
        .resource_template(
            template("test://static-binary", "static-binary", "image/png"),
            |_, uri, _| async move {
                use base64::Engine as _;
                let blob = base64::engine::general_purpose::STANDARD.encode(RED_PIXEL_PNG);
                Ok(one_content(uri, "image/png", None, Some(blob)))
            },
        )
        .resource_template(
            template(
                "test://template/{id}/data",
                "template-data",
                "application/json",
            ),
            |_, uri, vars: BTreeMap<String, String>| async move {
                let id = vars.get("id").cloned().unwrap_or_default();
                let body = serde_json::json!({
                    "id": id,
                    "templateTest": true,
                    "data": format!("Data for ID: {id}"),
                });
                Ok(one_content(
                    uri,
                    "application/json",
                    Some(body.to_string()),
                    None,
                ))
            },
        )
        .build()
}

/// The fixture's contract endpoint: every request is answered by the
/// variant matching the current [`Catalog`].
pub fn router(auth: Auth, catalog: Arc<Catalog>) -> Result<axum::Router, BuildError> {
    use tower::ServiceExt as _;

    let mut variants = Vec::new();
    for (extra_tool, extra_prompt) in [(false, false), (true, false), (false, true), (true, true)] {
        let built = backend(auth.clone(), catalog.clone(), extra_tool, extra_prompt)?;
        variants.push(cortex_backend_axum::router::<(), State>(built));
    }
    let variants = Arc::new(variants);
    let handler = move |request: axum::extract::Request| {
        let (catalog, variants) = (catalog.clone(), variants.clone());
        async move {
            let index = usize::from(catalog.extra_tool.load(Ordering::SeqCst))
                + 2 * usize::from(catalog.extra_prompt.load(Ordering::SeqCst));
            variants[index].clone().oneshot(request).await
        }
    };
    Ok(axum::Router::new().route(
        cortex_backend::contract::DEFAULT_PATH,
        axum::routing::any(handler),
    ))
}
