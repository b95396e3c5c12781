//! MCP over Streamable HTTP, both eras on one endpoint: JSON-RPC framing,
//! era dispatch, legacy sessions, the methods and the gateway's builtins.
//!
#![doc = include_str!("README.md")]

pub mod era;
pub mod jsonrpc;
pub mod methods;
pub(crate) mod quick;
pub mod session;
pub mod tools;
