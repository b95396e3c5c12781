//! The one HTTP-level suite of the framework adapters. Every test is written
//! once; [`fixture::send`] sends each request to the same backend served by
//! `cortex-backend-axum` and by `cortex-backend-actix` over real sockets,
//! fails on any difference between the two answers, and returns the answer
//! for the test's own expectations.

mod backend;
mod fixture;

mod concurrency;
mod statuses;
mod tokens;
mod transport;
