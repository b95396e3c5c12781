//! One integration-test binary: official MCP clients and the official
//! conformance suite against Cortex (see the crate docs and e2e/README.md).

mod admin_page;
mod bridge_oauth;
mod conformance;
mod conformance_meridian;
mod container;
mod facade;
mod inspector;
mod linking;
mod meridian;
mod meridian_oauth;
// The gateway's throwaway PostgreSQL cluster harness, reused as is (this
// binary uses part of it).
#[allow(dead_code)]
#[path = "../../../cortex-gateway/tests/it/pg_server.rs"]
mod pg_server;
mod real_issuer;
mod replicas;
mod rust_sdk;
mod sdk_clients;
mod support;
mod tracker;
