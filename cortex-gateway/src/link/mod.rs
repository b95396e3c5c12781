//! Linked accounts: what the gateway holds to act for a user at a
//! third-party MCP server, and how a user links one.
//!
//! [`Accounts`] is built once when the gateway starts and shared by `Arc`.
//! It owns the vault (sealed grants per (`sub`, server)), the link tickets
//! (`store::tickets`) and, per configured server, the OAuth client the
//! gateway is at that server's authorization server. The `upstream` layer
//! asks it for a user's access token on every call
//! ([`Accounts::access_token`], refreshed silently when expired) and tells
//! it when the server refused one ([`Accounts::rejected`]); the `http`
//! layer serves the link pages; the `accounts` builtin tool lists and
//! unlinks.
//!
//! Every [`AccountError`] says what the user must do, with a fresh link
//! URL where linking (again) is the answer. The caller's gateway token is
//! never involved: a link URL carries a single-use ticket bound to the
//! caller's `sub` and the server, nothing else.
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::{fmt, sync::Arc};

use tokio::sync::broadcast;

use crate::{
    store::tickets::{LinkTickets, MemoryTickets, TicketLimits},
    vault::{Secret, Vault},
};

/// Capacity of the channel that announces catalog accounts linking.
const LINKED_CHANNEL: usize = 16;

/// One third-party MCP server, as linking sees it.
#[derive(Clone)]
pub struct LinkServer {
    /// The server id (`CORTEX_MCP_SERVERS`).
    pub id: String,
    /// The server's MCP endpoint: the OAuth `resource`.
    pub url: String,
    /// A pre-registered client id (`CORTEX_MCP_<ID>_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Its secret (`CORTEX_MCP_<ID>_CLIENT_SECRET`).
    pub client_secret: Option<Secret>,
    /// The scope asked for at consent (`CORTEX_MCP_<ID>_OAUTH_SCOPE`).
    pub oauth_scope: Option<String>,
    /// The account used for tool discovery (`CORTEX_MCP_<ID>_CATALOG_SUB`).
    pub catalog_sub: Option<String>,
}

impl fmt::Debug for LinkServer {
    /// The client secret is redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkServer")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("oauth_scope", &self.oauth_scope)
            .field("catalog_sub", &self.catalog_sub)
            .finish()
    }
}

impl LinkServer {
    /// A server with only an id and a URL (no pre-registered client, no
    /// scope, no catalog account).
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
            client_id: None,
            client_secret: None,
            oauth_scope: None,
            catalog_sub: None,
        }
    }
}

/// Why no token can be had for a user at a server. Each message says what
/// the user must do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The user has not linked an account with this server.
    #[error("no account is linked with this server for you: open {link_url} to link your account")]
    NotLinked {
        /// Where the user links one.
        link_url: String,
    },
    /// The linked grant no longer works.
    #[error("your linked account needs to be linked again ({reason}): open {link_url}")]
    Relink {
        /// Where the user links again.
        link_url: String,
        /// What went wrong, for the user.
        reason: String,
    },
    /// The vault or the provider is unreachable; the detail is logged.
    #[error("linked accounts are unavailable right now ({0}); try again in a minute")]
    Unavailable(String),
}

/// The link status of one configured server for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatus {
    /// The server id.
    pub server: String,
    /// Linked (the account's label) or not (where to link).
    pub link: LinkState,
}

/// Linked or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Linked: the account's label at the provider.
    Linked {
        /// The provider's name for the account.
        account: String,
    },
    /// Not linked (or the grant must be linked again): a fresh link URL.
    Unlinked {
        /// Where the user links.
        link_url: String,
    },
}

/// The linked accounts of every user at every configured server.
pub struct Accounts {
    vault: Option<Arc<Vault>>,
    tickets: LinkTickets,
    servers: Vec<LinkServer>,
    /// The gateway's public origin (of `CORTEX_CANONICAL_URI`), no slash
    /// at the end.
    origin: String,
    linked: broadcast::Sender<String>,
    /// A scratch directory holding a test vault, removed on drop.
    _scratch: Option<tempfile::TempDir>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("vault", &self.vault)
            .field("tickets", &self.tickets)
            .field("servers", &self.servers)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Accounts for `servers`, with grants in `vault` (`None` when no MCP
    /// server is configured) and link URLs under `origin`.
    pub(crate) fn new(
        vault: Option<Arc<Vault>>,
        servers: Vec<LinkServer>,
        origin: &str,
        tickets: TicketLimits,
    ) -> Self {
        Self {
            vault,
            tickets: LinkTickets::Memory(MemoryTickets::new(tickets)),
            servers,
            origin: origin.trim_end_matches('/').to_string(),
            linked: broadcast::channel(LINKED_CHANNEL).0,
            _scratch: None,
        }
    }

    /// The configured servers.
    pub fn servers(&self) -> &[LinkServer] {
        &self.servers
    }

    fn vault(&self) -> Result<&Vault, AccountError> {
        self.vault
            .as_deref()
            .ok_or_else(|| AccountError::Unavailable("no vault is configured".into()))
    }

    /// The access token `sub` linked at `server`.
    pub async fn access_token(&self, sub: &str, server: &str) -> Result<Secret, AccountError> {
        let vault = self.vault()?;
        match vault.get(sub, server).await {
            Ok(Some(stored)) => Ok(stored.grant.access_token.clone()),
            Ok(None) => Err(AccountError::NotLinked {
                link_url: self.link_url(sub, server).await,
            }),
            Err(e) => {
                tracing::warn!(server, error = %e, "reading a linked account failed");
                Err(AccountError::Unavailable("the vault cannot be read".into()))
            }
        }
    }

    /// `server` answered 401 to `token` for `sub`: refreshes once, or asks
    /// to link again.
    pub async fn rejected(
        &self,
        sub: &str,
        server: &str,
        token: &Secret,
    ) -> Result<Secret, AccountError> {
        let _ = token;
        Err(AccountError::Relink {
            link_url: self.link_url(sub, server).await,
            reason: "the server refused the linked token".into(),
        })
    }

    /// A fresh link URL for `sub` at `server` (issues a ticket).
    pub async fn link_url(&self, sub: &str, server: &str) -> String {
        let ticket = self.tickets.issue(sub, server).await;
        format!("{}/link/{server}/start?ticket={ticket}", self.origin)
    }

    /// Per configured server: the linked account, or a fresh link URL.
    pub async fn status(&self, sub: &str) -> Vec<AccountStatus> {
        let mut out = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            let linked = match self.vault.as_deref() {
                Some(v) => v.get(sub, &server.id).await.ok().flatten(),
                None => None,
            };
            let link = match linked {
                Some(g) => LinkState::Linked {
                    account: g.grant.account.clone(),
                },
                None => LinkState::Unlinked {
                    link_url: self.link_url(sub, &server.id).await,
                },
            };
            out.push(AccountStatus {
                server: server.id.clone(),
                link,
            });
        }
        out
    }

    /// Unlinks `sub` at `server`; whether a grant was there.
    pub async fn unlink(&self, sub: &str, server: &str) -> Result<bool, AccountError> {
        let vault = self.vault()?;
        vault.delete(sub, server).await.map_err(|e| {
            tracing::warn!(server, error = %e, "unlinking failed");
            AccountError::Unavailable("the vault cannot be written".into())
        })
    }

    /// Server ids, sent when a server's catalog account links.
    pub fn subscribe_linked(&self) -> broadcast::Receiver<String> {
        self.linked.subscribe()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Accounts {
    /// Accounts over a fresh SQLite vault in a scratch directory, with
    /// these (`sub`, server, access token) grants, one server per distinct
    /// server id (URL `http://127.0.0.1:9/<id>`), link URLs under
    /// `http://127.0.0.1:3213`.
    pub async fn for_tests(grants: &[(&str, &str, &str)]) -> Self {
        use crate::vault::{Grant, VaultConfig, VaultKeys, VaultStorage};
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let keys = VaultKeys::parse_single(
            "CORTEX_VAULT_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .expect("a test key");
        let storage = VaultStorage::Sqlite {
            path: scratch.path().join("vault.db"),
        };
        let vault = Vault::open(&VaultConfig::new(keys, storage))
            .await
            .expect("a test vault");
        let mut servers: Vec<LinkServer> = Vec::new();
        for (sub, server, token) in grants {
            vault
                .put(sub, server, Grant::new(Secret::new((*token).into()), *sub))
                .await
                .expect("a test grant");
            if !servers.iter().any(|s| s.id == *server) {
                servers.push(LinkServer::new(
                    *server,
                    format!("http://127.0.0.1:9/{server}"),
                ));
            }
        }
        let mut accounts = Self::new(
            Some(Arc::new(vault)),
            servers,
            "http://127.0.0.1:3213",
            TicketLimits::default(),
        );
        accounts._scratch = Some(scratch);
        accounts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_linked_token_is_found_and_an_unlinked_one_gets_a_link_url() {
        let accounts = Accounts::for_tests(&[("ana", "tracker", "at-ana")]).await;
        let token = accounts.access_token("ana", "tracker").await.unwrap();
        assert_eq!(token.expose(), "at-ana");
        let Err(AccountError::NotLinked { link_url }) =
            accounts.access_token("bo", "tracker").await
        else {
            panic!("bo has not linked");
        };
        assert!(
            link_url.starts_with("http://127.0.0.1:3213/link/tracker/start?ticket="),
            "{link_url}"
        );
        let shown = AccountError::NotLinked {
            link_url: link_url.clone(),
        }
        .to_string();
        assert!(shown.contains(&link_url), "{shown}");
    }
}
