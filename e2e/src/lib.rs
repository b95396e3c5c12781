//! # e2e: Cortex against software we did not write
//!
//! The integration test of this crate (`tests/e2e/`) points the official MCP
//! clients and the official conformance suite at a running gateway:
//!
//! - the TypeScript SDK (`@modelcontextprotocol/sdk` v1 and the v2
//!   `@modelcontextprotocol/client`), the Python SDK (`mcp`) and the Rust SDK
//!   (`rmcp`) against Meridian, persona by persona, in both MCP eras;
//! - the MCP Inspector CLI in both `--protocol-era` modes;
//! - `@modelcontextprotocol/conformance` with `--requirements 2025-11-25` and
//!   `--requirements 2026-07-28` against [`stack::ConformanceStack`], and
//!   its generic scenarios against the `meridian` binary on its defaults;
//! - a real authorization server, oidc-provider, issuing its default tokens
//!   to the gateway (client credentials, code + PKCE, and the TypeScript
//!   SDK's own OAuth client);
//! - the gateway's OAuth facade ([`facade`]) in front of oidc-provider
//!   shaped like Entra ID and like a generic OpenID Connect provider, with
//!   the TypeScript SDK's OAuth client signing in through it;
//! - a third-party MCP server with its own authorization server
//!   ([`tracker`]: the TypeScript SDK's `McpServer` and a second
//!   oidc-provider), which users link their accounts to through the
//!   gateway.
//!
//! This library holds what those tests start: the [`fixture`] backend the
//! suite expects, the [`proxy`] that gives the suite a bearer token, the
//! [`stack`] tying them to a gateway, the [`real_issuer`] stack, the
//! [`tracker`], the gateway linking users to it ([`linking`]), three gateway
//! [`replicas`] on Redis behind nginx, and the
//! Node.js [`node`] processes behind them. The Node.js and Python parts are
//! installed by `e2e/install.sh` (run by `.ci/run`).

pub mod facade;
pub mod fixture;
pub mod http;
pub mod linking;
pub mod node;
pub mod proxy;
pub mod real_issuer;
pub mod replicas;
pub mod stack;
pub mod tracker;
