//! The `store` layer: state that outlives a request and that replicas would
//! have to share.
//!
//! [`Store`] is built once by the gateway and hands each layer the narrow
//! handle it needs: the legacy sessions, the per-caller budgets (rate limit,
//! stream cap), the token caches, the link tickets and the integrity
//! document. Each kind of state is an enum over its implementations: in
//! this process's memory, bounded by count and bytes, or on Redis
//! (`redis.rs`, shared by replicas; `docs/adr/0017-redis-store.md`).
//! Why enums, and which methods are `async`: `docs/adr/0015-store-seam.md`.
//!
//! Besides that shared state, the layer holds process-local helpers that
//! are caches of derived data, not state to share: the bounded map of the
//! catalog's renderings and the per-caller memo.

pub(crate) mod cache;
pub(crate) mod facade;
pub(crate) mod feedback;
pub(crate) mod integrity;
pub(crate) mod memo;
pub(crate) mod ratelimit;
pub(crate) mod redis;
pub(crate) mod redis_facade;
pub(crate) mod redis_feedback;
pub(crate) mod redis_tokens;
pub(crate) mod rejections;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod tickets;
pub(crate) mod tokens;

use std::{path::PathBuf, sync::Arc};

use facade::{FacadeLimits, FacadeState, MemoryFacade};
use feedback::{FeedbackLimits, FeedbackTickets, MemoryFeedback};
use integrity::IntegrityDocument;
use ratelimit::{Budgets, RateLimiter, StreamLimiter};
use sessions::{MemorySessions, SessionLimits, Sessions};
use tickets::{LinkTickets, MemoryTickets, TicketLimits};
use tokens::{
    ASSERTION_CACHE_LIMITS, EXCHANGE_CACHE_LIMITS, INTROSPECTION_CACHE_LIMITS, TokenCache,
};

/// Callers remembered by the in-memory rate limiter.
const MAX_TRACKED_CALLERS: usize = 100_000;

/// What the in-memory store is sized by.
#[derive(Debug, Clone)]
pub(crate) struct MemorySettings {
    /// Bounds of the legacy sessions.
    pub(crate) sessions: SessionLimits,
    /// Requests a minute per caller; 0: no rate limit.
    pub(crate) rate_per_minute: u32,
    /// Back-to-back requests a caller may burst.
    pub(crate) rate_burst: u32,
    /// Open notification streams per caller.
    pub(crate) streams_per_caller: usize,
    /// The integrity baseline file (`CORTEX_TOOL_BASELINE`); `None`: kept
    /// in memory.
    pub(crate) baseline: Option<PathBuf>,
    /// Bounds of the OAuth facade's state.
    pub(crate) facade: FacadeLimits,
}

/// All state that two replicas would have to share, one implementation per
/// kind.
#[derive(Debug)]
pub(crate) struct Store {
    /// Legacy-era sessions.
    pub(crate) sessions: Arc<Sessions>,
    /// Per-caller request budgets and stream slots.
    pub(crate) budgets: Arc<Budgets>,
    /// Introspection answers, per token.
    pub(crate) introspection: Arc<TokenCache>,
    /// Exchanged tokens (`exchange`, `obo`), per token and backend.
    pub(crate) exchange: Arc<TokenCache>,
    /// Gateway-signed assertions (`assert`), per token and backend.
    pub(crate) assertions: Arc<TokenCache>,
    /// Link tickets.
    #[allow(dead_code, reason = "the account-linking flow is its caller")]
    pub(crate) tickets: Arc<LinkTickets>,
    /// Approved tool definitions and open quarantines.
    pub(crate) integrity: Arc<IntegrityDocument>,
    /// The OAuth facade's clients, sign-ins, codes, grants, revocations.
    pub(crate) facade: Arc<FacadeState>,
    /// The agents' feedback tickets the gateway keeps itself.
    pub(crate) feedback: Arc<FeedbackTickets>,
    /// The status page's rejections.
    pub(crate) rejections: Arc<rejections::Rejections>,
}

/// What the Redis store is sized and configured by, besides the memory
/// settings.
#[derive(Debug, Clone)]
pub(crate) struct RedisSettings {
    /// The store's URL (with its password).
    pub(crate) url: settings::RedisUrl,
    /// Prefix of every key.
    pub(crate) prefix: String,
    /// The rate limit and stream caps while Redis is lost.
    pub(crate) on_failure: settings::RateLimitOnFailure,
    /// The key sealing the OAuth facade's state (derived from the vault's
    /// first key); `None`: the facade is off, its state stays in memory.
    pub(crate) facade_key: Option<zeroize::Zeroizing<[u8; 32]>>,
    /// The key sealing cached exchanged tokens and assertions (derived
    /// from the vault's first key); `None`: those caches stay in memory.
    pub(crate) token_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

/// The token cache `name` on Redis, sealed with `key`; in memory without a
/// key.
fn sealed_cache(
    shared: &redis::Shared,
    name: &'static str,
    limits: tokens::TokenCacheLimits,
    key: Option<&[u8; 32]>,
) -> TokenCache {
    match key {
        Some(key) => TokenCache::Redis(Box::new(redis_tokens::RedisTokenCache::new(
            shared.clone(),
            name,
            limits,
            Some(key),
        ))),
        None => TokenCache::in_memory(limits),
    }
}

impl Store {
    /// A store on Redis, shared by every replica that names the same
    /// server and prefix. Fails when Redis cannot be reached now: a
    /// replica does not start without its shared state.
    pub(crate) async fn on_redis(
        memory: MemorySettings,
        settings: RedisSettings,
    ) -> Result<(Self, redis::Shared), redis::OpenError> {
        let shared = redis::Shared::open(
            settings.url.secret_url(),
            settings.url.shown(),
            &settings.prefix,
        )
        .await?;
        let local = RateLimiter::new(
            memory.rate_per_minute.max(1),
            memory.rate_burst,
            MAX_TRACKED_CALLERS,
        );
        let rate = if memory.rate_per_minute > 0 {
            ratelimit::RateBudget::Redis(Box::new(redis::RedisRate::new(
                shared.clone(),
                memory.rate_per_minute,
                memory.rate_burst,
                settings.on_failure,
                local,
            )))
        } else {
            ratelimit::RateBudget::Off
        };
        let document = redis::RedisDocument::open(shared.clone())
            .await
            .map_err(|e| redis::OpenError::new(shared.place(), e.0))?;
        let store = Self {
            sessions: Arc::new(Sessions::Redis(Box::new(redis::RedisSessions::new(
                shared.clone(),
                memory.sessions,
            )))),
            budgets: Arc::new(Budgets::new(
                rate,
                ratelimit::StreamSlots::Redis(Box::new(redis::RedisStreams::new(
                    shared.clone(),
                    memory.streams_per_caller,
                    settings.on_failure,
                ))),
            )),
            introspection: Arc::new(TokenCache::Redis(Box::new(
                redis_tokens::RedisTokenCache::new(
                    shared.clone(),
                    redis_tokens::INTROSPECTION,
                    INTROSPECTION_CACHE_LIMITS,
                    None,
                ),
            ))),
            // Exchanged tokens and signed assertions are bearer secrets for
            // a backend: shared only sealed, else each replica keeps its
            // own (docs/adr/0017-redis-store.md).
            exchange: Arc::new(sealed_cache(
                &shared,
                redis_tokens::EXCHANGED,
                EXCHANGE_CACHE_LIMITS,
                settings.token_key.as_deref(),
            )),
            assertions: Arc::new(sealed_cache(
                &shared,
                redis_tokens::ASSERTIONS,
                ASSERTION_CACHE_LIMITS,
                settings.token_key.as_deref(),
            )),
            tickets: Arc::new(LinkTickets::Redis(Box::new(redis::RedisTickets::new(
                shared.clone(),
                TicketLimits::default(),
            )))),
            integrity: Arc::new(IntegrityDocument::Redis(Box::new(document))),
            facade: Arc::new(match &settings.facade_key {
                Some(key) => FacadeState::Redis(redis_facade::RedisFacade::new(
                    shared.clone(),
                    memory.facade,
                    key,
                )),
                None => FacadeState::Memory(MemoryFacade::new(memory.facade)),
            }),
            feedback: Arc::new(FeedbackTickets::Redis(redis_feedback::RedisFeedback::new(
                shared.clone(),
                FeedbackLimits::default(),
            ))),
            rejections: Arc::new(rejections::Rejections::on_redis(shared.clone())),
        };
        Ok((store, shared))
    }

    /// A store in this process's memory.
    pub(crate) fn in_memory(settings: MemorySettings) -> Self {
        Self {
            sessions: Arc::new(Sessions::Memory(MemorySessions::new(settings.sessions))),
            budgets: Arc::new(Budgets::in_memory(
                (settings.rate_per_minute > 0).then(|| {
                    RateLimiter::new(
                        settings.rate_per_minute,
                        settings.rate_burst,
                        MAX_TRACKED_CALLERS,
                    )
                }),
                StreamLimiter::new(settings.streams_per_caller),
            )),
            introspection: Arc::new(TokenCache::in_memory(INTROSPECTION_CACHE_LIMITS)),
            exchange: Arc::new(TokenCache::in_memory(EXCHANGE_CACHE_LIMITS)),
            assertions: Arc::new(TokenCache::in_memory(ASSERTION_CACHE_LIMITS)),
            tickets: Arc::new(LinkTickets::Memory(MemoryTickets::new(
                TicketLimits::default(),
            ))),
            integrity: Arc::new(IntegrityDocument::at(settings.baseline)),
            facade: Arc::new(FacadeState::Memory(MemoryFacade::new(settings.facade))),
            feedback: Arc::new(FeedbackTickets::Memory(MemoryFeedback::new(
                FeedbackLimits::default(),
            ))),
            rejections: Arc::new(rejections::Rejections::in_memory()),
        }
    }
}
