//! Meridian's one integration-test binary: the whole example started
//! in-process on loopback, checked through the gateway (the persona table
//! of docs/architecture.md) and app by app (each app's own record rules), and the
//! dev authorization server (sign-in, tokens, revocation).

mod apps;
mod assert_mode;
mod cli;
mod conformance;
mod gateway;
mod oauth;
mod support;
mod tracker;
