//! The seam between the gateway and what it federates: a source of tools,
//! prompts and resource templates, by kind. The catalog discovers through
//! it and the MCP layer calls through it, so neither knows how a kind is
//! reached. Two kinds: contract backends (`POST {"method", "params"}`,
//! the backend contract), called with the caller's own token; and
//! third-party MCP servers reached over Streamable HTTP, called with the
//! token of the account the caller linked there (never the caller's
//! gateway token).

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use cortex_backend::{Caller, contract::methods};
use serde_json::{Map, Value};

use super::{
    Credential, UpstreamClient, UpstreamError,
    mcp::{McpClient, settings::McpServerConfig},
    settings::BackendConfig,
};
use crate::link::Accounts;

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
    /// A third-party MCP server.
    Mcp {
        /// The client every MCP server shares.
        client: &'a McpClient,
        /// The server.
        server: &'a McpServerConfig,
        /// Where the callers' linked accounts are.
        accounts: &'a Accounts,
    },
}

impl<'a> Upstream<'a> {
    /// The source's id (its tool prefix).
    pub(crate) fn id(&self) -> &'a str {
        match self {
            Self::Contract { backend, .. } => &backend.id,
            Self::Mcp { server, .. } => &server.id,
        }
    }

    /// How long one call may take.
    pub(crate) fn timeout(&self) -> Duration {
        match self {
            Self::Contract { backend, .. } => backend.timeout(),
            Self::Mcp { server, .. } => server.timeout(),
        }
    }

    /// A contract backend's discovery list (`list_tools`, `list_prompts`,
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
            Self::Mcp { .. } => Err(UpstreamError::Status {
                status: 404,
                message: format!("{method} is a contract method"),
                required: None,
                body: Value::Null,
            }),
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
        use futures::future::Either;
        use tracing::Instrument as _;
        let span = crate::telemetry::upstream_span(self.id(), name);
        let call = match self {
            Self::Contract { client, backend } => Either::Left(client.call_raw(
                backend,
                Credential::User(caller),
                name,
                Some(arguments),
                backend.timeout(),
            )),
            Self::Mcp {
                client,
                server,
                accounts,
            } => Either::Right(Box::pin(call_mcp_tool(
                client, server, accounts, caller, name, arguments,
            ))),
        };
        call.instrument(span)
    }

    /// What the source knows about `caller` (`whoami`), within `limit` or
    /// the source's own timeout, whichever is shorter.
    pub(crate) async fn whoami(
        &self,
        caller: &Arc<Caller>,
        limit: Duration,
    ) -> Result<Value, UpstreamError> {
        if let Self::Mcp { server, .. } = self {
            // Nothing is sent: the server would only learn the caller's
            // linked account, which the `accounts` tool shows.
            return Ok(serde_json::json!({
                "kind": "mcp",
                "note": format!("third-party MCP server; tools are called as the account you linked there (see the accounts tool for {})", server.id),
            }));
        }
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
            // MCP servers offer tools only: no prompt or template of theirs
            // is in the catalog to route here.
            Self::Mcp { .. } => Err(UpstreamError::Status {
                status: 404,
                message: format!("{method} is not offered by this server through the gateway"),
                required: None,
                body: Value::Null,
            }),
        }
    }
}

/// `tools/call` at an MCP server for `caller`, with the token of the
/// account `caller` linked there: refreshed once when the server refuses
/// it, else the caller is asked to link again. The result as the server
/// wrote it (serialized; the MCP layer checks it as an MCP result).
async fn call_mcp_tool(
    client: &McpClient,
    server: &McpServerConfig,
    accounts: &Accounts,
    caller: &Caller,
    name: &str,
    arguments: &Map<String, Value>,
) -> Result<Bytes, UpstreamError> {
    let sub = caller.sub.as_str();
    let token = accounts
        .access_token(caller, &server.id)
        .await
        .map_err(UpstreamError::Account)?;
    let first = client
        .call_tool(server, token.expose(), sub, name, arguments)
        .await;
    match first {
        Err(UpstreamError::Status { status: 401, .. }) => {
            let token = accounts
                .rejected(caller, &server.id, &token)
                .await
                .map_err(UpstreamError::Account)?;
            match client
                .call_tool(server, token.expose(), sub, name, arguments)
                .await
            {
                // Refused again: the grant is marked, so later calls ask
                // to link again without refreshing first.
                Err(UpstreamError::Status { status: 401, .. }) => Err(UpstreamError::Account(
                    accounts.refused(caller, &server.id, &token).await,
                )),
                other => other,
            }
        }
        other => other,
    }
}
