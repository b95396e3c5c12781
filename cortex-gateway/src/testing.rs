//! Internals the gateway's own integration tests reach (the `testing`
//! feature; not a public API).

pub use crate::{
    audit::{MAX_LINE_BYTES, TOOL_CHARS, UNKNOWN_METHOD},
    auth::introspection::{IntrospectionConfig, Introspector},
    catalog::{PAGE_CACHE_BYTES, PAGE_CACHE_ENTRIES, RENDER_CACHE_BYTES, RENDER_CACHE_ENTRIES},
    link::{
        AccountError, AccountStatus, Accounts, CallbackQuery, LinkPageError, LinkServer, LinkState,
    },
    upstream::{
        Credential, FailureKind, TokenExchanger, TokenFailure, UpstreamClient, UpstreamError,
        thread_slot,
    },
};

/// The account-linking routes (`/link/…`) over `accounts`, alone.
pub fn link_router(accounts: std::sync::Arc<Accounts>) -> axum::Router {
    crate::http::link::router(accounts)
}

/// The linked accounts a gateway built from its configuration.
pub fn accounts_of(gateway: &crate::Gateway) -> std::sync::Arc<Accounts> {
    gateway.inner.app.accounts.clone()
}

pub use crate::redis_server::RedisServer;
