//! Facts of the MCP protocol every layer names: the revisions the gateway
//! speaks and the HTTP headers MCP defines (plus our two extensions).

use axum::http::HeaderName;

/// An MCP protocol revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Revision {
    /// 2025-03-26 (batches, no structured content).
    V2025_03_26,
    /// 2025-06-18.
    V2025_06_18,
    /// 2025-11-25 (newest initialize-based revision).
    V2025_11_25,
    /// 2026-07-28 (stateless).
    V2026_07_28,
}

impl Revision {
    /// The legacy revisions, newest first.
    pub(crate) const LEGACY: [Revision; 3] =
        [Self::V2025_11_25, Self::V2025_06_18, Self::V2025_03_26];
    /// The stateless revisions.
    pub(crate) const MODERN: [Revision; 1] = [Self::V2026_07_28];

    /// The wire string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Parses a wire string.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            Self::V2025_03_26,
            Self::V2025_06_18,
            Self::V2025_11_25,
            Self::V2026_07_28,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Whether this is the stateless era.
    pub(crate) fn is_modern(self) -> bool {
        self >= Self::V2026_07_28
    }

    /// All supported revisions as strings, newest first.
    pub(crate) fn all_strings() -> Vec<&'static str> {
        let mut v: Vec<&str> = Self::MODERN.iter().map(|r| r.as_str()).collect();
        v.extend(Self::LEGACY.iter().map(|r| r.as_str()));
        v
    }
}

/// The MCP headers every 2026-07-28 request carries, named once: a lookup
/// by a string parses and lower-cases the name first.
pub(crate) static MCP_PROTOCOL_VERSION: HeaderName =
    HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method`.
pub(crate) static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`.
pub(crate) static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `X-Cortex-Backends` (our extension: the `tools/list` backend filter).
pub(crate) static X_CORTEX_BACKENDS: HeaderName = HeaderName::from_static("x-cortex-backends");
/// `X-Cortex-Tool-Mode` (our extension: `search` for the compact list).
pub(crate) static X_CORTEX_TOOL_MODE: HeaderName = HeaderName::from_static("x-cortex-tool-mode");
