//! The link pages' side of [`Accounts`]: `confirm` (ticket checked, whom
//! it is for), `start` (ticket checked, consent URL, browser-binding
//! cookie) and `finish` (state, cookie and ticket checked, code exchanged,
//! grant stored). `crate::http::link` renders what they return.

use super::{
    Accounts, ProviderError, grant_from,
    state::{self, LinkState as PendingLink},
};
use crate::{store::tickets::Holder, vault::unix_now};

/// Why a link page cannot do what the browser asked; the message says
/// what the user should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkPageError {
    /// No such server is configured.
    #[error("no server `{0}` is configured on this gateway; check the link you followed")]
    UnknownServer(String),
    /// The ticket is unknown, used, expired or for another server.
    #[error(
        "this link has expired or was already used; ask your agent for a new link (it gives one \
         whenever a tool needs your account) and open it within 10 minutes"
    )]
    BadTicket,
    /// The state does not open, expired, or was started in another browser.
    #[error(
        "this sign-in answer does not belong to a link started in this browser (it may have \
         expired, been altered or been sent to you by someone else); start the link again from \
         your agent"
    )]
    BadState,
    /// The provider did not grant access.
    #[error("the provider did not grant access ({0}); start the link again from your agent")]
    Denied(String),
    /// The provider or the vault failed; the detail is logged.
    #[error("linking is unavailable right now; try again in a minute")]
    Unavailable,
}

/// Where to send the browser to consent, and the cookie that binds the
/// link to it.
#[derive(Debug)]
pub struct Started {
    /// The caller the ticket was issued to.
    pub sub: String,
    /// The provider's authorization URL.
    pub location: String,
    /// The `Set-Cookie` value.
    pub cookie: String,
}

/// A link completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The caller whose account it is.
    pub sub: String,
    /// The provider's name for the account.
    pub account: String,
}

/// What a callback carries.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The sealed state.
    pub state: Option<String>,
    /// The provider's error code, when it did not grant access.
    pub error: Option<String>,
}

impl Accounts {
    fn cookie_name(server: &str) -> String {
        format!("cortex_link_{server}")
    }

    /// `GET /link/<server>/start?ticket=…`: whom a ticket live for that
    /// server was issued to (the `sub` and the label the confirmation page
    /// shows); the ticket stays usable.
    pub(crate) async fn confirm(
        &self,
        server: &str,
        ticket: &str,
    ) -> Result<Holder, LinkPageError> {
        self.holder(server, ticket).await.map(|(_, holder)| holder)
    }

    async fn holder(&self, server: &str, ticket: &str) -> Result<(usize, Holder), LinkPageError> {
        let i = self
            .index(server)
            .ok_or_else(|| LinkPageError::UnknownServer(server.chars().take(64).collect()))?;
        let holder = self
            .tickets
            .holder(ticket, server)
            .await
            .ok_or(LinkPageError::BadTicket)?;
        Ok((i, holder))
    }

    /// Whether an `Origin` header value is the gateway's own origin (the
    /// origin of `CORTEX_CANONICAL_URI`).
    pub fn is_own_origin(&self, origin: &str) -> bool {
        url::Url::parse(origin).is_ok_and(|o| o.origin().ascii_serialization() == self.page_origin)
    }

    /// `POST /link/<server>/start` (the confirmation page's form): checks
    /// the ticket is live for that server and sends the browser to the
    /// provider's consent.
    pub async fn start(&self, server: &str, ticket: &str) -> Result<Started, LinkPageError> {
        let (i, Holder { sub, .. }) = self.holder(server, ticket).await?;
        let Some(sealer) = &self.sealer else {
            return Err(LinkPageError::Unavailable);
        };
        let provider = self.provider(i).await.map_err(|e| {
            tracing::warn!(server, error = %e, "link start: the provider cannot be used");
            LinkPageError::Unavailable
        })?;
        let pending = PendingLink {
            ticket: ticket.to_string(),
            sub,
            server: server.to_string(),
            verifier: state::random_text(32),
            browser: state::random_text(16),
            expires_at: unix_now() + self.ticket_ttl.as_secs(),
        };
        let mut location = url::Url::parse(&provider.authorization_endpoint).map_err(|e| {
            tracing::warn!(server, error = %e, "link start: bad authorization endpoint");
            LinkPageError::Unavailable
        })?;
        {
            let mut q = location.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &provider.client.id)
                .append_pair("redirect_uri", &self.redirect_uri(server))
                .append_pair("state", &sealer.seal(&pending))
                .append_pair("code_challenge", &state::challenge(&pending.verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", &self.servers[i].url);
            if let Some(scope) = self.servers[i]
                .oauth_scope
                .as_ref()
                .or(provider.default_scope.as_ref())
            {
                q.append_pair("scope", scope);
            }
        }
        let secure = if self.origin.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        Ok(Started {
            sub: pending.sub.clone(),
            location: location.into(),
            cookie: format!(
                "{}={}; Path=/link/{server}/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                Self::cookie_name(server),
                pending.browser,
                self.ticket_ttl.as_secs()
            ),
        })
    }

    /// The value of this server's binding cookie in a `Cookie` header.
    fn cookie_value<'a>(server: &str, cookies: &'a str) -> Option<&'a str> {
        let name = Self::cookie_name(server);
        cookies
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The `Set-Cookie` value that removes this server's binding cookie.
    pub fn clear_cookie(server: &str) -> String {
        format!(
            "{}=; Path=/link/{server}/; Max-Age=0; HttpOnly; SameSite=Lax",
            Self::cookie_name(server)
        )
    }

    /// `/link/<server>/callback`: refuses a state that does not open, was
    /// started in another browser, or whose ticket is not live for its
    /// caller; redeems the ticket (once), exchanges the code and stores
    /// the grant. The caller and the linked account's label.
    pub async fn finish(
        &self,
        server: &str,
        query: &CallbackQuery,
        cookies: Option<&str>,
    ) -> Result<Linked, LinkPageError> {
        let i = self
            .index(server)
            .ok_or_else(|| LinkPageError::UnknownServer(server.chars().take(64).collect()))?;
        let (Some(sealer), Some(vault)) = (&self.sealer, self.vault.as_deref()) else {
            return Err(LinkPageError::Unavailable);
        };
        let pending = query
            .state
            .as_deref()
            .and_then(|s| sealer.open(server, s, unix_now()))
            .ok_or(LinkPageError::BadState)?;
        let bound = cookies
            .and_then(|c| Self::cookie_value(server, c))
            .is_some_and(|v| {
                use subtle::ConstantTimeEq as _;
                bool::from(v.as_bytes().ct_eq(pending.browser.as_bytes()))
            });
        if !bound {
            return Err(LinkPageError::BadState);
        }
        self.tickets
            .redeem(&pending.ticket, &pending.sub, server)
            .await
            .map_err(|_| LinkPageError::BadTicket)?;
        if let Some(error) = &query.error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(LinkPageError::Denied(error));
        }
        let code = query.code.as_deref().ok_or(LinkPageError::BadState)?;
        let provider = self.provider(i).await.map_err(|e| {
            tracing::warn!(server, error = %e, "link callback: the provider cannot be used");
            LinkPageError::Unavailable
        })?;
        let tokens = provider
            .exchange_code(
                &self.http,
                code,
                &pending.verifier,
                &self.redirect_uri(server),
                Some(("resource", &self.servers[i].url)),
            )
            .await
            .map_err(|e| match e {
                ProviderError::Refused(reason) => {
                    tracing::info!(server, reason = %reason, "link callback: code refused");
                    LinkPageError::Denied("the sign-in answer was refused".into())
                }
                ProviderError::Failed(detail) => {
                    tracing::warn!(server, error = %detail, "link callback: code exchange failed");
                    LinkPageError::Unavailable
                }
            })?;
        let account = provider.account_label(&self.http, &tokens).await;
        vault
            .put(
                &pending.sub,
                server,
                grant_from(tokens, account.clone(), None),
            )
            .await
            .map_err(|e| {
                tracing::warn!(server, error = %e, "link callback: the vault cannot be written");
                LinkPageError::Unavailable
            })?;
        if self.servers[i].catalog_sub.as_deref() == Some(pending.sub.as_str()) {
            let _ = self.linked.send(server.to_string());
        }
        Ok(Linked {
            sub: pending.sub,
            account,
        })
    }
}
