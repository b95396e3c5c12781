//! The second kind of upstream: a third-party MCP server reached over
//! Streamable HTTP.

pub(crate) mod settings;
