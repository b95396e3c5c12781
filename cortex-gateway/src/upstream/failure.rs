//! How a backend failure is presented: to the agent as a tool result's
//! text, to the audit line as a short class, and to a client of a non-tool
//! method as a [`RpcFault`] (the MCP layer gives it its JSON-RPC code).
//! One place, so the same failure reads the same wherever it surfaces.

use std::borrow::Cow;

use super::UpstreamError;

/// A failed non-tool request (a prompt, a resource) in the terms of a
/// JSON-RPC error; the MCP layer picks the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcFault {
    /// The backend refused the request (bad arguments, its own permission
    /// rule): invalid params.
    Refused(String),
    /// What was asked for does not exist.
    NotFound(String),
    /// The caller's token lacks `scope` for `what`.
    MissingScope {
        /// What the scope would allow.
        what: String,
        /// The scope.
        scope: String,
    },
    /// The backend failed: an internal error.
    Failed(String),
}

impl UpstreamError {
    /// What an agent reads when its call to `tool` on `backend` failed:
    /// what happened and what to do, in the tool result's text. Logs the
    /// detail callers must not see.
    pub(crate) fn tool_text(&self, backend: &str, tool: &str) -> String {
        if self.has_internal_detail() {
            tracing::warn!(backend, tool, error = %self, "backend call failed");
        }
        match self {
            Self::Status {
                status: 400,
                message,
                body,
                ..
            } => format!(
                "{backend} rejected the call to {tool}: {message}. Fix the arguments and retry. Details: {body}"
            ),
            Self::Status { status: 401, .. } => format!(
                "backend authentication failed: {backend} did not accept your token. \
                 It may trust another issuer or audience; ask the administrator of {backend}."
            ),
            Self::Status {
                status: 403,
                required: Some(r),
                ..
            } => format!(
                "missing scope {r}: {backend} requires the OAuth scope {r} for {tool}. \
                 Get a token that includes {r} and retry."
            ),
            Self::Status {
                status: 403,
                message,
                ..
            } => format!(
                "denied by {backend}: {message}. This is {backend}'s own permission rule for your account \
                 (role, membership or record ownership), not a missing OAuth scope: \
                 more scopes will not help; ask someone with access or the owner of the data."
            ),
            Self::Status {
                status: 404,
                message,
                ..
            } => {
                format!("{backend}: not found: {message}")
            }
            Self::Status {
                status: 413,
                message,
                ..
            } => format!(
                "{backend} refused the call because the request is too large: {message}. Send less data."
            ),
            Self::Status {
                status, message, ..
            } => format!(
                "{backend} failed while running {tool} (HTTP {status}): {message}. \
                 Retrying later may help; if it persists, tell the team running {backend}."
            ),
            Self::Timeout(ms) => format!(
                "{backend} did not answer {tool} within {ms} ms. It may be overloaded; retry later. \
                 The call may or may not have taken effect: check before repeating a change."
            ),
            Self::Unreachable(_) => {
                format!("{backend} is unreachable right now, so {tool} was not run. Retry later.")
            }
            Self::TooLarge(limit) => format!(
                "{backend} answered {tool} with more than {limit} bytes, which the gateway refuses. \
                 Ask for less data (filters, limits, pagination)."
            ),
            Self::InvalidJson(_) => format!(
                "{backend} answered {tool} with something that is not JSON; tell the team running {backend}."
            ),
            Self::Token(f) => f.caller_text(backend, &format!("so {tool} was not run")),
            Self::Rpc { code, message } => format!(
                "{backend} answered {tool} with an error ({code}): {message}. \
                 Fix the arguments if they are the cause; otherwise tell the team running {backend}."
            ),
            Self::Account(e) => e.to_string(),
            Self::UnsafeHeader(header) => format!(
                "the call was refused by the gateway and not forwarded: a claim of your token \
                 (sent as {header}) contains line breaks or control characters. Ask your identity administrator."
            ),
        }
    }

    /// A short class of the failure, for the audit line and metrics.
    pub(crate) fn class(&self) -> Cow<'static, str> {
        match self {
            Self::Status { status, .. } => format!("backend_{status}").into(),
            Self::Timeout(_) => "backend_timeout".into(),
            Self::Unreachable(_) => "backend_unreachable".into(),
            Self::TooLarge(_) => "backend_too_large".into(),
            Self::InvalidJson(_) => "backend_invalid_json".into(),
            Self::Token(f) => f.class().into(),
            Self::UnsafeHeader(_) => "unsafe_claim".into(),
            Self::Rpc { .. } => "backend_rpc_error".into(),
            Self::Account(crate::link::AccountError::NotLinked { .. }) => {
                "account_not_linked".into()
            }
            Self::Account(crate::link::AccountError::Relink { .. }) => "account_relink".into(),
            Self::Account(crate::link::AccountError::Unavailable(_)) => {
                "account_unavailable".into()
            }
        }
    }

    /// The failure of a non-tool request to `backend`, worded for its
    /// client. Logs the detail callers must not see.
    pub(crate) fn rpc_fault(self, backend: &str) -> RpcFault {
        match self {
            Self::Status {
                status: 400,
                message,
                ..
            } => RpcFault::Refused(format!("{backend} refused the request: {message}")),
            Self::Status {
                status: 404,
                message,
                ..
            } => RpcFault::NotFound(format!("{backend}: {message}")),
            Self::Status {
                status: 403,
                message,
                required: Some(scope),
                ..
            } => RpcFault::MissingScope {
                what: format!("this on {backend} ({message})"),
                scope,
            },
            Self::Status {
                status: 403,
                message,
                ..
            } => RpcFault::Refused(format!("denied by {backend}: {message}")),
            other => RpcFault::Failed(format!(
                "backend {backend} failed: {}",
                other.caller_text(backend)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::upstream::{
        FailureKind, TokenFailure,
        settings::{BackendConfig, TokenMode},
    };

    fn status(status: u16, required: Option<&str>) -> UpstreamError {
        UpstreamError::Status {
            status,
            message: "nope".into(),
            required: required.map(String::from),
            body: json!({"error": "nope"}),
        }
    }

    /// A failure to obtain crm's token in `mode`; the identity provider's
    /// words name idp.internal.
    fn token(mode: TokenMode, kind: FailureKind) -> UpstreamError {
        let mut crm = BackendConfig::new("crm", "https://crm.internal");
        crm.token_mode = mode;
        if mode == TokenMode::Obo {
            crm.audience = Some("api://crm".into());
        }
        UpstreamError::Token(TokenFailure::new(
            &crm,
            kind,
            "idp.internal said no: AADSTS70011 with token eyJhbGciOi".into(),
        ))
    }

    /// Each kind of failure, what the agent reads, its class and its
    /// fault: the wording agents and clients see, pinned.
    #[test]
    fn every_failure_reads_as_pinned() {
        let table = [
            (
                status(400, None),
                "crm rejected the call to create_deal: nope. Fix the arguments and retry. Details: {\"error\":\"nope\"}",
                "backend_400",
                RpcFault::Refused("crm refused the request: nope".into()),
            ),
            (
                status(401, None),
                "backend authentication failed: crm did not accept your token. It may trust another issuer or audience; ask the administrator of crm.",
                "backend_401",
                RpcFault::Failed("backend crm failed: HTTP 401: nope".into()),
            ),
            (
                status(403, Some("crm.write")),
                "missing scope crm.write: crm requires the OAuth scope crm.write for create_deal. Get a token that includes crm.write and retry.",
                "backend_403",
                RpcFault::MissingScope {
                    what: "this on crm (nope)".into(),
                    scope: "crm.write".into(),
                },
            ),
            (
                status(403, None),
                "denied by crm: nope. This is crm's own permission rule for your account (role, membership or record ownership), not a missing OAuth scope: more scopes will not help; ask someone with access or the owner of the data.",
                "backend_403",
                RpcFault::Refused("denied by crm: nope".into()),
            ),
            (
                status(404, None),
                "crm: not found: nope",
                "backend_404",
                RpcFault::NotFound("crm: nope".into()),
            ),
            (
                status(413, None),
                "crm refused the call because the request is too large: nope. Send less data.",
                "backend_413",
                RpcFault::Failed("backend crm failed: HTTP 413: nope".into()),
            ),
            (
                status(502, None),
                "crm failed while running create_deal (HTTP 502): nope. Retrying later may help; if it persists, tell the team running crm.",
                "backend_502",
                RpcFault::Failed("backend crm failed: HTTP 502: nope".into()),
            ),
            (
                UpstreamError::Timeout(1500),
                "crm did not answer create_deal within 1500 ms. It may be overloaded; retry later. The call may or may not have taken effect: check before repeating a change.",
                "backend_timeout",
                RpcFault::Failed("backend crm failed: no answer within 1500 ms; retry later".into()),
            ),
            (
                UpstreamError::Unreachable("10.0.0.7:8080 refused".into()),
                "crm is unreachable right now, so create_deal was not run. Retry later.",
                "backend_unreachable",
                RpcFault::Failed("backend crm failed: it is unreachable right now; retry later".into()),
            ),
            (
                UpstreamError::TooLarge(4096),
                "crm answered create_deal with more than 4096 bytes, which the gateway refuses. Ask for less data (filters, limits, pagination).",
                "backend_too_large",
                RpcFault::Failed("backend crm failed: its answer exceeded 4096 bytes".into()),
            ),
            (
                UpstreamError::InvalidJson("eof at 3".into()),
                "crm answered create_deal with something that is not JSON; tell the team running crm.",
                "backend_invalid_json",
                RpcFault::Failed("backend crm failed: its answer is not JSON; tell the team running it".into()),
            ),
            (
                token(TokenMode::Exchange, FailureKind::Unavailable),
                "the gateway could not obtain a token for backend crm from the identity provider, so create_deal was not run. Retry later; if it persists, tell the gateway's operator (the gateway's log has the reason).",
                "token_exchange",
                RpcFault::Failed("backend crm failed: the gateway could not obtain a token for backend crm from the identity provider, so the request was not sent. Retry later; if it persists, tell the gateway's operator (the gateway's log has the reason).".into()),
            ),
            (
                token(TokenMode::Exchange, FailureKind::Refused),
                "the identity provider refused the token exchange for backend crm, so create_deal was not run: ask the operator to allow the gateway's client to exchange tokens for https://crm.internal.",
                "token_exchange",
                RpcFault::Failed("backend crm failed: the identity provider refused the token exchange for backend crm, so the request was not sent: ask the operator to allow the gateway's client to exchange tokens for https://crm.internal.".into()),
            ),
            (
                token(TokenMode::Obo, FailureKind::Refused),
                "the identity provider refused the on-behalf-of exchange for backend crm, so create_deal was not run: ask the operator to grant the gateway's app permission to api://crm/.default.",
                "token_obo",
                RpcFault::Failed("backend crm failed: the identity provider refused the on-behalf-of exchange for backend crm, so the request was not sent: ask the operator to grant the gateway's app permission to api://crm/.default.".into()),
            ),
            (
                token(TokenMode::Obo, FailureKind::Interaction),
                "the identity provider wants your consent or a fresh sign-in before the gateway may act for you at backend crm, so create_deal was not run: sign in again; if that does not help, ask the operator to grant admin consent for api://crm/.default.",
                "token_obo",
                RpcFault::Failed("backend crm failed: the identity provider wants your consent or a fresh sign-in before the gateway may act for you at backend crm, so the request was not sent: sign in again; if that does not help, ask the operator to grant admin consent for api://crm/.default.".into()),
            ),
            (
                token(TokenMode::Obo, FailureKind::ClientRejected),
                "the identity provider did not accept the gateway's own client credentials when asked for a token for backend crm, so create_deal was not run: ask the operator to check OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET.",
                "token_obo",
                RpcFault::Failed("backend crm failed: the identity provider did not accept the gateway's own client credentials when asked for a token for backend crm, so the request was not sent: ask the operator to check OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET.".into()),
            ),
            (
                token(TokenMode::Assert, FailureKind::Signing),
                "the gateway could not sign an assertion for backend crm, so create_deal was not run: tell the gateway's operator (the gateway's log has the reason).",
                "token_assert",
                RpcFault::Failed("backend crm failed: the gateway could not sign an assertion for backend crm, so the request was not sent: tell the gateway's operator (the gateway's log has the reason).".into()),
            ),
            (
                UpstreamError::UnsafeHeader("x-cortex-user-id"),
                "the call was refused by the gateway and not forwarded: a claim of your token (sent as x-cortex-user-id) contains line breaks or control characters. Ask your identity administrator.",
                "unsafe_claim",
                RpcFault::Failed("backend crm failed: a value for `x-cortex-user-id` cannot be sent in a header".into()),
            ),
            (
                UpstreamError::Rpc {
                    code: -32602,
                    message: "unknown project".into(),
                },
                "crm answered create_deal with an error (-32602): unknown project. Fix the arguments if they are the cause; otherwise tell the team running crm.",
                "backend_rpc_error",
                RpcFault::Failed("backend crm failed: error -32602: unknown project".into()),
            ),
            (
                UpstreamError::Account(crate::link::AccountError::NotLinked {
                    link_url: "https://gw.example/link/crm/start?ticket=t1".into(),
                }),
                "no account is linked with this server for you: open https://gw.example/link/crm/start?ticket=t1 to link your account",
                "account_not_linked",
                RpcFault::Failed("backend crm failed: no account is linked with this server for you: open https://gw.example/link/crm/start?ticket=t1 to link your account".into()),
            ),
        ];
        for (e, text, class, fault) in table {
            assert_eq!(e.tool_text("crm", "create_deal"), text, "{e:?}");
            assert_eq!(e.class(), class, "{e:?}");
            assert_eq!(e.rpc_fault("crm"), fault);
        }
    }

    /// Connection errors, parser messages and the authorization server's
    /// words are logged, never shown.
    #[test]
    fn internal_detail_never_reaches_the_caller() {
        for e in [
            UpstreamError::Unreachable("10.0.0.7:8080 refused".into()),
            UpstreamError::InvalidJson("eof at 3".into()),
            token(TokenMode::Obo, FailureKind::Refused),
            token(TokenMode::Exchange, FailureKind::Unavailable),
        ] {
            let fault = format!("{:?}", e.clone().rpc_fault("crm"));
            for shown in [e.tool_text("crm", "create_deal"), fault] {
                for secret in ["10.0.0.7", "eof at 3", "idp.internal", "AADSTS", "eyJ"] {
                    assert!(!shown.contains(secret), "{shown}");
                }
            }
        }
    }
}
