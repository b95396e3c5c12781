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

mod flow;
pub(crate) mod provider;
pub(crate) mod state;

pub use flow::{CallbackQuery, LinkPageError};

use std::{
    fmt,
    hash::{Hash as _, Hasher as _},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, broadcast};

use self::{
    provider::{Client, ClientAuth, Provider, ProviderError, Tokens},
    state::StateSealer,
};
use crate::{
    store::tickets::{LinkTickets, MemoryTickets, TicketLimits},
    vault::{Grant, Registration, Secret, Vault, unix_now},
};

/// A token this close to its expiry is refreshed before use.
const EXPIRY_MARGIN_S: u64 = 30;
/// Discovered provider metadata is used this long before it is fetched
/// again (a registration made by DCR is kept for good).
const PROVIDER_TTL: Duration = Duration::from_secs(3600);
/// Refreshes of one (`sub`, server) run one at a time; pairs are spread
/// over this many locks (a fixed set: nothing a request can grow).
const REFRESH_STRIPES: usize = 64;
/// The path of the Client ID Metadata Document the gateway publishes.
pub(crate) const CLIENT_METADATA_PATH: &str = "/link/client-metadata.json";

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

/// Whom a link URL is for: the caller's `sub` (the key of its grants)
/// and the label the link's confirmation page shows, so that a person who
/// opens a link someone else sent sees whose account it would be linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    /// The caller's `sub`.
    pub sub: &'a str,
    /// The caller's `email` claim when it had one, else the `sub`.
    pub label: &'a str,
}

impl<'a> From<&'a str> for Who<'a> {
    /// A caller known only by its `sub` (a server's catalog account).
    fn from(sub: &'a str) -> Self {
        Self { sub, label: sub }
    }
}

impl<'a> From<&'a String> for Who<'a> {
    /// A caller known only by its `sub` (a server's catalog account).
    fn from(sub: &'a String) -> Self {
        Self::from(sub.as_str())
    }
}

impl<'a> From<&'a cortex_backend::Caller> for Who<'a> {
    fn from(caller: &'a cortex_backend::Caller) -> Self {
        Self {
            sub: &caller.sub,
            label: caller
                .email
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or(&caller.sub),
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
#[non_exhaustive]
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
    /// The vault cannot say right now.
    Unavailable,
}

/// Per server: the discovered provider and the registration made there.
#[derive(Default)]
struct ProviderSlot {
    discovered: Option<(Arc<Provider>, Instant)>,
    /// (issuer, client) registered by DCR.
    registered: Option<(String, Client)>,
}

/// The linked accounts of every user at every configured server.
pub struct Accounts {
    vault: Option<Arc<Vault>>,
    sealer: Option<StateSealer>,
    tickets: LinkTickets,
    ticket_ttl: Duration,
    servers: Vec<LinkServer>,
    providers: Vec<Mutex<ProviderSlot>>,
    refreshing: Vec<Mutex<()>>,
    /// The gateway's public origin (of `CORTEX_CANONICAL_URI`), no slash
    /// at the end.
    origin: String,
    /// `origin` as a browser serializes it in an `Origin` header.
    page_origin: String,
    http: reqwest::Client,
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

/// A grant whose refresh failed is kept with an empty access token, so
/// that the next call asks to link again (with the account's label).
fn must_relink(grant: &Grant) -> bool {
    grant.access_token.expose().is_empty()
}

fn unavailable(what: &str, e: &dyn fmt::Display) -> AccountError {
    tracing::warn!(error = %e, "{what}");
    AccountError::Unavailable(what.to_string())
}

impl Accounts {
    /// Accounts for `servers`, with grants in `vault` (`None` when no MCP
    /// server is configured) and link URLs under `origin`; fails only if
    /// the HTTP client for providers cannot be built.
    pub(crate) fn new(
        vault: Option<Arc<Vault>>,
        servers: Vec<LinkServer>,
        origin: &str,
        tickets: TicketLimits,
    ) -> Result<Self, String> {
        let sealer = vault
            .as_ref()
            .map(|v| StateSealer::new(&v.derive_key(state::KEY_LABEL)));
        Ok(Self {
            vault,
            sealer,
            ticket_ttl: tickets.ttl,
            tickets: LinkTickets::Memory(MemoryTickets::new(tickets)),
            providers: servers.iter().map(|_| Mutex::default()).collect(),
            refreshing: (0..REFRESH_STRIPES).map(|_| Mutex::new(())).collect(),
            servers,
            origin: origin.trim_end_matches('/').to_string(),
            page_origin: url::Url::parse(origin)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default(),
            http: provider::http_client()?,
            linked: broadcast::channel(LINKED_CHANNEL).0,
            _scratch: None,
        })
    }

    /// The configured servers.
    pub fn servers(&self) -> &[LinkServer] {
        &self.servers
    }

    /// Linked accounts per configured server (counts only, no
    /// identities); `Err` says why they cannot be read.
    pub(crate) async fn linked_counts(&self) -> Result<Vec<(String, u64)>, String> {
        let counts = self
            .vault()
            .map_err(|e| e.to_string())?
            .linked_counts()
            .await
            .map_err(|e| e.to_string())?;
        Ok(self
            .servers
            .iter()
            .map(|s| (s.id.clone(), counts.get(&s.id).copied().unwrap_or(0)))
            .collect())
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.id == id)
    }

    fn vault(&self) -> Result<&Vault, AccountError> {
        self.vault
            .as_deref()
            .ok_or_else(|| AccountError::Unavailable("no vault is configured".into()))
    }

    fn redirect_uri(&self, server: &str) -> String {
        format!("{}/link/{server}/callback", self.origin)
    }

    /// The Client ID Metadata Document's URL, when the gateway can publish
    /// one (its origin is https).
    fn client_metadata_url(&self) -> Option<String> {
        self.origin
            .starts_with("https://")
            .then(|| format!("{}{CLIENT_METADATA_PATH}", self.origin))
    }

    /// The Client ID Metadata Document, if published.
    pub fn client_metadata(&self) -> Option<serde_json::Value> {
        let id = self.client_metadata_url()?;
        let uris: Vec<String> = self
            .servers
            .iter()
            .map(|s| self.redirect_uri(&s.id))
            .collect();
        Some(provider::client_metadata(Some(&id), &uris, "none"))
    }

    /// The provider of server `i` (discovered, with a client), cached.
    async fn provider(&self, i: usize) -> Result<Arc<Provider>, ProviderError> {
        let server = &self.servers[i];
        let mut slot = self.providers[i].lock().await;
        if let Some((p, at)) = &slot.discovered
            && at.elapsed() < PROVIDER_TTL
        {
            return Ok(p.clone());
        }
        let found = provider::discover(&self.http, server).await?;
        let client = if let Some(id) = &server.client_id {
            Client {
                id: id.clone(),
                secret: server.client_secret.clone(),
                auth: if server.client_secret.is_some() {
                    found.secret_auth()
                } else {
                    ClientAuth::None
                },
            }
        } else if let (true, Some(id)) = (found.cimd_supported, self.client_metadata_url()) {
            Client {
                id,
                secret: None,
                auth: ClientAuth::None,
            }
        } else if let Some((_, client)) = slot
            .registered
            .as_ref()
            .filter(|(issuer, _)| *issuer == found.issuer)
        {
            client.clone()
        } else if let Some(client) = self.stored_registration(&found.issuer, &server.id).await {
            slot.registered = Some((found.issuer.clone(), client.clone()));
            client
        } else {
            let Some(registration) = found.registration_endpoint.clone() else {
                return Err(ProviderError::Failed(format!(
                    "the authorization server {} of `{}` supports neither client metadata \
                     documents (with an https gateway) nor dynamic registration; set \
                     CORTEX_MCP_{}_CLIENT_ID and _CLIENT_SECRET",
                    found.issuer,
                    server.id,
                    server.id.to_ascii_uppercase()
                )));
            };
            let client = provider::register(
                &self.http,
                &found,
                &registration,
                &self.redirect_uri(&server.id),
            )
            .await?;
            self.store_registration(&found.issuer, &server.id, &client)
                .await;
            slot.registered = Some((found.issuer.clone(), client.clone()));
            client
        };
        let p = Arc::new(found.with_client(client));
        slot.discovered = Some((p.clone(), Instant::now()));
        Ok(p)
    }

    /// The registration made at `issuer` for `server` by this or another
    /// replica, if the vault holds one that opens (one that does not, e.g.
    /// under a key removed since, is replaced by a new registration).
    async fn stored_registration(&self, issuer: &str, server: &str) -> Option<Client> {
        let found = self.vault.as_deref()?.get_client(issuer, server).await;
        match found {
            Ok(Some(r)) => Some(Client {
                id: r.client_id,
                auth: match (r.client_secret.is_some(), r.auth_method.as_str()) {
                    (false, _) | (_, "none") => ClientAuth::None,
                    (true, "client_secret_post") => ClientAuth::Post,
                    (true, _) => ClientAuth::Basic,
                },
                secret: r.client_secret,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(server, error = %e, "a stored client registration cannot be used; registering again");
                None
            }
        }
    }

    async fn store_registration(&self, issuer: &str, server: &str, client: &Client) {
        let Some(vault) = self.vault.as_deref() else {
            return;
        };
        let registration = Registration {
            client_id: client.id.clone(),
            client_secret: client.secret.clone(),
            auth_method: match client.auth {
                ClientAuth::Basic => "client_secret_basic",
                ClientAuth::Post => "client_secret_post",
                ClientAuth::None => "none",
            }
            .to_string(),
        };
        if let Err(e) = vault.put_client(issuer, server, &registration).await {
            tracing::warn!(server, error = %e, "the client registration cannot be stored; it is kept in memory");
        }
    }

    fn stripe(&self, sub: &str, server: &str) -> &Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sub.hash(&mut h);
        server.hash(&mut h);
        &self.refreshing[(h.finish() as usize) % REFRESH_STRIPES]
    }

    /// The access token `sub` linked at `server`, refreshed first when it
    /// is expired or about to be.
    pub async fn access_token<'a>(
        &self,
        who: impl Into<Who<'a>>,
        server: &str,
    ) -> Result<Secret, AccountError> {
        let who = who.into();
        let sub = who.sub;
        let vault = self.vault()?;
        let stored = vault
            .get(sub, server)
            .await
            .map_err(|e| unavailable("the vault cannot be read", &e))?;
        match stored {
            None => Err(AccountError::NotLinked {
                link_url: self.link_url(who, server).await,
            }),
            Some(s) if must_relink(&s.grant) => Err(self.relink(who, server, RELINK_EXPIRED).await),
            Some(s) if is_fresh(&s.grant) => Ok(s.grant.access_token.clone()),
            Some(s) => {
                let stale = s.grant.access_token.clone();
                self.refresh(who, server, &stale).await
            }
        }
    }

    /// `server` answered 401 to `token` for `sub`: refreshes once, or asks
    /// to link again.
    pub async fn rejected<'a>(
        &self,
        who: impl Into<Who<'a>>,
        server: &str,
        token: &Secret,
    ) -> Result<Secret, AccountError> {
        self.refresh(who.into(), server, token).await
    }

    /// `server` refused `token` for `who` again right after a refresh:
    /// the grant is marked, so later calls ask to link again at once
    /// instead of refreshing first. A grant that has meanwhile changed
    /// (linked again, refreshed by another call) is left as it is.
    pub async fn refused<'a>(
        &self,
        who: impl Into<Who<'a>>,
        server: &str,
        token: &Secret,
    ) -> AccountError {
        let who = who.into();
        let sub = who.sub;
        let vault = match self.vault() {
            Ok(vault) => vault,
            Err(e) => return e,
        };
        let _one_at_a_time = self.stripe(sub, server).lock().await;
        match vault.get(sub, server).await {
            Ok(Some(stored)) if stored.grant.access_token == *token => {
                self.mark_relink(vault, sub, server, &stored.grant).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(server, error = %e, "reading a linked account failed"),
        }
        self.relink(who, server, RELINK_SERVER_REFUSED).await
    }

    /// Replaces `stale` (the token that expired or was refused) with a
    /// refreshed one; one refresh at a time per (`sub`, server), and a
    /// token someone else refreshed meanwhile is taken as it is.
    async fn refresh(
        &self,
        who: Who<'_>,
        server: &str,
        stale: &Secret,
    ) -> Result<Secret, AccountError> {
        let sub = who.sub;
        let vault = self.vault()?;
        let _one_at_a_time = self.stripe(sub, server).lock().await;
        let Some(stored) = vault
            .get(sub, server)
            .await
            .map_err(|e| unavailable("the vault cannot be read", &e))?
        else {
            return Err(AccountError::NotLinked {
                link_url: self.link_url(who, server).await,
            });
        };
        let grant = &stored.grant;
        if must_relink(grant) {
            return Err(self.relink(who, server, RELINK_EXPIRED).await);
        }
        if grant.access_token != *stale && is_fresh(grant) {
            return Ok(grant.access_token.clone());
        }
        let Some(refresh_token) = grant.refresh_token.clone() else {
            self.mark_relink(vault, sub, server, grant).await;
            return Err(self.relink(who, server, RELINK_REFUSED).await);
        };
        let Some(i) = self.index(server) else {
            return Err(AccountError::Unavailable(format!(
                "no server `{server}` is configured"
            )));
        };
        let provider = self
            .provider(i)
            .await
            .map_err(|e| unavailable("the provider cannot be reached", &e))?;
        match provider
            .refresh(
                &self.http,
                &refresh_token,
                Some(("resource", &self.servers[i].url)),
            )
            .await
        {
            Ok(tokens) => {
                let access = tokens.access_token.clone();
                let renewed = grant_from(tokens, grant.account.clone(), Some(refresh_token));
                vault
                    .put(sub, server, renewed)
                    .await
                    .map_err(|e| unavailable("the vault cannot be written", &e))?;
                Ok(access)
            }
            Err(ProviderError::Refused(reason)) => {
                tracing::info!(server, reason = %reason, "refreshing a linked account was refused");
                self.mark_relink(vault, sub, server, grant).await;
                Err(self.relink(who, server, RELINK_REFUSED).await)
            }
            Err(e) => Err(unavailable("the provider cannot refresh the account", &e)),
        }
    }

    async fn mark_relink(&self, vault: &Vault, sub: &str, server: &str, grant: &Grant) {
        let marked = Grant::new(Secret::new(String::new()), grant.account.clone());
        if let Err(e) = vault.put(sub, server, marked).await {
            tracing::warn!(server, error = %e, "marking a linked account for re-linking failed");
        }
    }

    async fn relink(&self, who: Who<'_>, server: &str, reason: &str) -> AccountError {
        AccountError::Relink {
            link_url: self.link_url(who, server).await,
            reason: reason.into(),
        }
    }

    /// A fresh link URL for `who` at `server` (issues a ticket).
    pub async fn link_url<'a>(&self, who: impl Into<Who<'a>>, server: &str) -> String {
        let who = who.into();
        let ticket = self.tickets.issue(who.sub, who.label, server).await;
        format!("{}/link/{server}/start?ticket={ticket}", self.origin)
    }

    /// Per configured server: the linked account, or a fresh link URL.
    pub async fn status<'a>(&self, who: impl Into<Who<'a>>) -> Vec<AccountStatus> {
        let who = who.into();
        let sub = who.sub;
        let mut out = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            let found = match self.vault.as_deref() {
                Some(v) => v.get(sub, &server.id).await,
                None => Ok(None),
            };
            let link = match found {
                Ok(Some(g)) if !must_relink(&g.grant) => LinkState::Linked {
                    account: g.grant.account.clone(),
                },
                Ok(_) => LinkState::Unlinked {
                    link_url: self.link_url(who, &server.id).await,
                },
                Err(e) => {
                    tracing::warn!(server = %server.id, error = %e, "reading a linked account failed");
                    LinkState::Unavailable
                }
            };
            out.push(AccountStatus {
                server: server.id.clone(),
                link,
            });
        }
        out
    }

    /// Unlinks `sub` at `server` and revokes the grant at the provider
    /// where it advertises RFC 7009 revocation (a failed revocation is
    /// logged; the grant is gone from the vault either way). Whether a
    /// grant was there.
    pub async fn unlink(&self, sub: &str, server: &str) -> Result<bool, AccountError> {
        let vault = self.vault()?;
        let stored = vault.get(sub, server).await.ok().flatten();
        let removed = vault
            .delete(sub, server)
            .await
            .map_err(|e| unavailable("the vault cannot be written", &e))?;
        if let (Some(stored), Some(i)) = (stored, self.index(server)) {
            let grant = &stored.grant;
            let token = match &grant.refresh_token {
                Some(r) => Some((r, "refresh_token")),
                None if !must_relink(grant) => Some((&grant.access_token, "access_token")),
                None => None,
            };
            if let Some((token, hint)) = token {
                let revoked = match self.provider(i).await {
                    Ok(p) => p.revoke(&self.http, token, hint).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = revoked {
                    tracing::warn!(server, error = %e, "revoking an unlinked grant failed");
                }
            }
        }
        Ok(removed)
    }

    /// Server ids, sent when a server's catalog account links.
    pub fn subscribe_linked(&self) -> broadcast::Receiver<String> {
        self.linked.subscribe()
    }
}

const RELINK_EXPIRED: &str = "the provider no longer accepts its grant";
const RELINK_SERVER_REFUSED: &str =
    "the server refused the linked account's token, also after renewing it";
const RELINK_REFUSED: &str = "the provider refused the linked token and it could not be renewed";

/// Whether `grant`'s access token is usable for a while yet.
fn is_fresh(grant: &Grant) -> bool {
    grant
        .expires_at
        .is_none_or(|at| at > unix_now() + EXPIRY_MARGIN_S)
}

/// The grant to store from a token answer; `previous_refresh` is kept when
/// the provider does not rotate refresh tokens.
fn grant_from(tokens: Tokens, account: String, previous_refresh: Option<Secret>) -> Grant {
    Grant {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token.or(previous_refresh),
        expires_at: tokens
            .expires_in
            .map(|s| unix_now().saturating_add(s.min(10 * 365 * 86_400))),
        scope: tokens.scope.unwrap_or_default(),
        account,
    }
}

#[cfg(any(test, feature = "testing"))]
impl Accounts {
    /// Accounts over a fresh SQLite vault in a scratch directory, with
    /// these (`sub`, server, access token) grants, one server per distinct
    /// server id (URL `http://127.0.0.1:9/<id>`), link URLs under
    /// `http://127.0.0.1:3213`.
    pub async fn for_tests(grants: &[(&str, &str, &str)]) -> Self {
        let mut servers: Vec<LinkServer> = Vec::new();
        for (_, server, _) in grants {
            if !servers.iter().any(|s| s.id == *server) {
                servers.push(LinkServer::new(
                    *server,
                    format!("http://127.0.0.1:9/{server}"),
                ));
            }
        }
        let accounts = Self::for_tests_with(
            servers,
            "http://127.0.0.1:3213",
            TicketLimits::default().ttl,
        )
        .await;
        if let Some(vault) = &accounts.vault {
            for (sub, server, token) in grants {
                vault
                    .put(sub, server, Grant::new(Secret::new((*token).into()), *sub))
                    .await
                    .expect("a test grant");
            }
        }
        accounts
    }

    /// Accounts for `servers` over a fresh SQLite vault in a scratch
    /// directory, link URLs under `origin`, tickets living `ticket_ttl`.
    pub async fn for_tests_with(
        servers: Vec<LinkServer>,
        origin: &str,
        ticket_ttl: Duration,
    ) -> Self {
        use crate::vault::{VaultConfig, VaultKeys, VaultStorage};
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
        let mut accounts = Self::new(
            Some(Arc::new(vault)),
            servers,
            origin,
            TicketLimits {
                ttl: ticket_ttl,
                ..TicketLimits::default()
            },
        )
        .expect("an HTTP client");
        accounts._scratch = Some(scratch);
        accounts
    }

    /// The vault (tests read it directly).
    pub fn vault_for_tests(&self) -> Arc<Vault> {
        self.vault.clone().expect("a test vault")
    }

    /// The files of the test vault (the SQLite database and its journal).
    pub fn vault_files_for_tests(&self) -> Vec<std::path::PathBuf> {
        let Some(dir) = &self._scratch else {
            return Vec::new();
        };
        std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{state::LinkState as PendingLink, *};

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

    #[tokio::test]
    async fn a_state_whose_ticket_was_issued_to_another_sub_is_refused() {
        let accounts = Accounts::for_tests_with(
            vec![LinkServer::new("tracker", "http://127.0.0.1:9/mcp")],
            "http://127.0.0.1:3213",
            Duration::from_secs(600),
        )
        .await;
        let ticket = accounts.tickets.issue("ana", "ana", "tracker").await;
        let forged = PendingLink {
            ticket: ticket.clone(),
            sub: "eve".into(),
            server: "tracker".into(),
            verifier: state::random_text(32),
            browser: "b".into(),
            expires_at: unix_now() + 60,
        };
        let query = CallbackQuery {
            code: Some("code".into()),
            state: Some(accounts.sealer.as_ref().unwrap().seal(&forged)),
            error: None,
        };
        assert_eq!(
            accounts
                .finish("tracker", &query, Some("cortex_link_tracker=b"))
                .await,
            Err(LinkPageError::BadTicket)
        );
        assert!(
            accounts.tickets.holder(&ticket, "tracker").await.is_none(),
            "the attempt used the ticket up"
        );
    }
}
