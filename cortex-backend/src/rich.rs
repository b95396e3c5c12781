//! Rich MCP tool results (`resultKind: "mcp"`), built with types rather than
//! hand-written JSON.

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use crate::contract::{ContentBlock, EmbeddedResource, McpToolResult};

/// A rich tool result: text, images, audio, resource links and embedded
/// resources, with optional structured content.
///
/// ```
/// use cortex_backend::McpResult;
/// let result = McpResult::new()
///     .text("Here is the chart.")
///     .image(vec![0x89, b'P', b'N', b'G'], "image/png")
///     .resource_link("docs://document/42", "Q3 report");
/// let wire = result.into_wire();
/// assert_eq!(wire["content"][1]["type"], "image");
/// assert_eq!(wire["content"][1]["data"], "iVBORw==");
/// ```
#[derive(Debug, Clone, Default)]
pub struct McpResult {
    inner: McpToolResult,
}

impl McpResult {
    /// An empty result.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a text block.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.inner
            .content
            .push(ContentBlock::Text { text: text.into() });
        self
    }

    /// Adds an image block (the bytes are base64-encoded here).
    #[must_use]
    pub fn image(mut self, bytes: impl AsRef<[u8]>, mime_type: impl Into<String>) -> Self {
        self.inner.content.push(ContentBlock::Image {
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            mime_type: mime_type.into(),
        });
        self
    }

    /// Adds an audio block.
    #[must_use]
    pub fn audio(mut self, bytes: impl AsRef<[u8]>, mime_type: impl Into<String>) -> Self {
        self.inner.content.push(ContentBlock::Audio {
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            mime_type: mime_type.into(),
        });
        self
    }

    /// Adds a resource link.
    #[must_use]
    pub fn resource_link(mut self, uri: impl Into<String>, name: impl Into<String>) -> Self {
        self.inner.content.push(ContentBlock::ResourceLink {
            uri: uri.into(),
            name: name.into(),
            description: None,
            mime_type: None,
        });
        self
    }

    /// Adds an embedded text resource.
    #[must_use]
    pub fn embedded_text(
        mut self,
        uri: impl Into<String>,
        mime_type: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        self.inner.content.push(ContentBlock::Resource {
            resource: EmbeddedResource {
                uri: uri.into(),
                mime_type: Some(mime_type.into()),
                text: Some(text.into()),
                blob: None,
            },
        });
        self
    }

    /// Adds an embedded binary resource.
    #[must_use]
    pub fn embedded_blob(
        mut self,
        uri: impl Into<String>,
        mime_type: impl Into<String>,
        bytes: impl AsRef<[u8]>,
    ) -> Self {
        self.inner.content.push(ContentBlock::Resource {
            resource: EmbeddedResource {
                uri: uri.into(),
                mime_type: Some(mime_type.into()),
                text: None,
                blob: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        });
        self
    }

    /// Adds any content block.
    #[must_use]
    pub fn block(mut self, block: ContentBlock) -> Self {
        self.inner.content.push(block);
        self
    }

    /// Sets the structured content from a serializable value.
    #[must_use]
    pub fn structured(mut self, value: impl Serialize) -> Self {
        self.inner.structured_content = serde_json::to_value(value).ok();
        self
    }

    /// Marks the result as a tool-level error (`isError: true`).
    #[must_use]
    pub fn error(mut self) -> Self {
        self.inner.is_error = Some(true);
        self
    }

    /// The wire JSON.
    pub fn into_wire(self) -> Value {
        serde_json::to_value(self.inner).unwrap_or(Value::Null)
    }
}
