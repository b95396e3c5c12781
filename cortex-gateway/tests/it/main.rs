//! Integration tests: the gateway in front of two SDK backends on loopback,
//! driven over HTTP by an MCP client in both eras, with tokens from the
//! SDK's test issuer. Every JSON-RPC message the gateway sends is validated
//! against the official schema of the revision in use.

mod audit_ops;
mod auth;
mod bridge;
mod cli;
mod client;
mod controls;
mod facade;
mod federation;
mod feedback;
mod hostile;
mod hostile_catalog;
mod identity;
mod layers;
mod legacy;
mod link;
mod mcp_upstream;
mod modern;
mod one_path;
mod otel;
mod pg_server;
mod redis_store;
mod signed_baseline;
mod status_page;
mod support;
mod upstream;
mod vault;
