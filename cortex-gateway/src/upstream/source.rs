//! The seam between the gateway and what it federates: a source of tools,
//! prompts and resource templates, by kind. The catalog discovers through
//! it and the MCP layer calls through it, so neither knows how a kind is
//! reached. Contract backends (`POST {"method", "params"}`, the backend
//! contract) are the one kind today; a native MCP server reached over
//! Streamable HTTP is meant to be the second variant.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use cortex_backend::{Caller, contract::methods};
use serde_json::{Map, Value};

use super::{Credential, UpstreamClient, UpstreamError, settings::BackendConfig};

/// One federated source, borrowed for a call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Upstream<'a> {
    /// A Cortex backend speaking the backend contract.
    Contract {
        /// The pooled client every contract backend shares.
        client: &'a UpstreamClient,
        /// The backend.
        backend: &'a BackendConfig,
    },
}

impl<'a> Upstream<'a> {
    /// The source's id (its tool prefix).
    pub(crate) fn id(&self) -> &'a str {
        match self {
            Self::Contract { backend, .. } => &backend.id,
        }
    }

    /// How long one call may take.
    pub(crate) fn timeout(&self) -> Duration {
        match self {
            Self::Contract { backend, .. } => backend.timeout(),
        }
    }

    /// A discovery list (`list_tools`, `list_prompts`,
    /// `list_resource_templates`), asked with the technical token.
    pub(crate) async fn discover(
        &self,
        method: &'static str,
        technical_token: &str,
    ) -> Result<Value, UpstreamError> {
        match *self {
            Self::Contract { client, backend } => {
                let token = backend.technical_token(technical_token);
                client
                    .call(
                        backend,
                        Credential::Technical(token),
                        method,
                        None,
                        backend.timeout(),
                    )
                    .await
            }
        }
    }

    /// Calls the tool `name` (the source's own name) for `caller`: the
    /// result as the source wrote it. A plain function returning the
    /// kind's own future: an `async fn` here would wrap that future in one
    /// more, moved on every call of the hot path.
    pub(crate) fn call_tool(
        self,
        caller: &'a Arc<Caller>,
        name: &'a str,
        arguments: &'a Map<String, Value>,
    ) -> impl Future<Output = Result<Bytes, UpstreamError>> + 'a {
        match self {
            Self::Contract { client, backend } => client.call_raw(
                backend,
                Credential::User(caller),
                name,
                Some(arguments),
                backend.timeout(),
            ),
        }
    }

    /// What the source knows about `caller` (`whoami`), within `limit` or
    /// the source's own timeout, whichever is shorter.
    pub(crate) async fn whoami(
        &self,
        caller: &Arc<Caller>,
        limit: Duration,
    ) -> Result<Value, UpstreamError> {
        self.user_call(caller, methods::WHOAMI, None, limit.min(self.timeout()))
            .await
    }

    /// `get_prompt` for `caller`.
    pub(crate) async fn get_prompt(
        &self,
        caller: &Arc<Caller>,
        params: &Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        self.user_call(caller, methods::GET_PROMPT, Some(params), self.timeout())
            .await
    }

    /// `read_resource` for `caller`.
    pub(crate) async fn read_resource(
        &self,
        caller: &Arc<Caller>,
        params: &Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        self.user_call(caller, methods::READ_RESOURCE, Some(params), self.timeout())
            .await
    }

    async fn user_call(
        &self,
        caller: &Arc<Caller>,
        method: &str,
        params: Option<&Map<String, Value>>,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        match *self {
            Self::Contract { client, backend } => {
                client
                    .call(backend, Credential::User(caller), method, params, timeout)
                    .await
            }
        }
    }
}
