//! The auth micro-benchmark, in process: `JwtValidator::validate` of a
//! token already seen (the cache hit every repeated request takes) against
//! `JwtValidator::verify` (full signature and claim checks), plus a check
//! that the cache stays within its capacity.

use std::time::{Duration, Instant};

use cortex_backend::{
    auth::{JwtValidator, KeySource},
    testing::TestIssuer,
};

use crate::{backend::SCOPE, gateway::CANONICAL_URI, report::Verdict};

const VERIFY_ITERATIONS: u32 = 2_000;
const HIT_ITERATIONS: u32 = 200_000;
const ROUNDS: usize = 5;
const SMALL_CAPACITY: usize = 64;
const DISTINCT_TOKENS: usize = 200;

/// What the micro-benchmark found.
pub(crate) struct AuthFigures {
    /// Median time of one full verification.
    pub(crate) verify: Duration,
    /// Median time of one cache hit.
    pub(crate) hit: Duration,
    /// The largest cache size seen while inserting more tokens than fit.
    pub(crate) max_len: usize,
}

fn validator(issuer: &TestIssuer, capacity: usize) -> anyhow::Result<JwtValidator> {
    let mut config = issuer.jwt_config(CANONICAL_URI);
    config.keys = KeySource::JwksUrl(issuer.jwks_url());
    config.cache_capacity = capacity;
    Ok(JwtValidator::new(config)?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs the micro-benchmark against `issuer`.
pub(crate) async fn run(issuer: &TestIssuer) -> anyhow::Result<AuthFigures> {
    let token = issuer
        .token(CANONICAL_URI)
        .sub("bench-user")
        .scopes([SCOPE])
        .mint();
    let v = validator(issuer, 10_000)?;
    // Fetches the keys and fills the cache.
    v.validate(&token).await?;
    let mut verify = Vec::new();
    let mut hit = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..VERIFY_ITERATIONS {
            std::hint::black_box(v.verify(std::hint::black_box(&token)).await?);
        }
        verify.push(t.elapsed() / VERIFY_ITERATIONS);
        let t = Instant::now();
        for _ in 0..HIT_ITERATIONS {
            std::hint::black_box(v.validate(std::hint::black_box(&token)).await?);
        }
        hit.push(t.elapsed() / HIT_ITERATIONS);
    }

    let small = validator(issuer, SMALL_CAPACITY)?;
    let tokens = crate::scenarios::mint_tokens(issuer, DISTINCT_TOKENS).await?;
    let mut max_len = 0;
    for t in &tokens {
        small.validate(t).await?;
        max_len = max_len.max(small.cache_len());
    }
    Ok(AuthFigures {
        verify: median(verify),
        hit: median(hit),
        max_len,
    })
}

impl AuthFigures {
    /// The verdicts of this scenario.
    pub(crate) fn verdicts(&self) -> Vec<Verdict> {
        let ratio = self.verify.as_secs_f64() / self.hit.as_secs_f64().max(1e-12);
        vec![
            Verdict::at_least(
                &format!(
                    "auth: full verify ({:.1} µs) / cache hit ({:.0} ns)",
                    self.verify.as_secs_f64() * 1e6,
                    self.hit.as_secs_f64() * 1e9
                ),
                ratio,
                10.0,
            ),
            Verdict::custom(
                &format!(
                    "auth: cache size after {DISTINCT_TOKENS} distinct tokens (capacity {SMALL_CAPACITY})"
                ),
                self.max_len.to_string(),
                format!("<= {SMALL_CAPACITY}"),
                self.max_len <= SMALL_CAPACITY,
            ),
        ]
    }
}
