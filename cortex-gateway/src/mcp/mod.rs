//! The `mcp` layer: MCP over Streamable HTTP, both eras on one endpoint.
//! JSON-RPC framing, era detection, legacy sessions, one dispatch of the
//! methods and the gateway's builtins, and the envelope writer. It works
//! behind an admitted caller and knows nothing of sockets or tokens.
//!
#![doc = include_str!("README.md")]

pub(crate) mod endpoint;
pub(crate) mod envelope;
pub(crate) mod era;
pub(crate) mod fast_call;
pub(crate) mod feedback;
pub(crate) mod gzip;
pub(crate) mod jsonrpc;
pub(crate) mod methods;
pub(crate) mod resources;
mod service;
pub(crate) mod sse;
pub(crate) mod tools;
pub(crate) mod webhook;

pub(crate) use service::{Service, Settings};
