//! The `store` layer: state that outlives a request and that replicas would
//! have to share. Bounded caches, the per-caller memo, and the per-caller
//! budgets (rate limit, stream cap). Everything here lives in this
//! process's memory and is bounded by count and bytes.

pub(crate) mod cache;
pub(crate) mod memo;
pub(crate) mod ratelimit;
