//! # Meridian, the Cortex worked example
//!
//! Meridian Partners is a fictional 140-person engineering and consulting
//! firm. Four of its departments expose their apps to AI agents through
//! Cortex:
//!
//! | app | framework | data | its own rule |
//! |---|---|---|---|
//! | `crm` | axum | accounts, deals, calls | a sales rep sees and edits only their team's pipeline |
//! | `docs` | axum | projects, documents, milestones (+ a prompt and a resource template) | only people staffed on a project open it |
//! | `billing` | actix-web | invoices, payments | finance writes; project managers see their projects only |
//! | `staffing` | actix-web | people, availability, reviews, HR policies | personal data for the person and HR only |
//!
//! [`start`] runs, in one process on loopback: a dev authorization server
//! ([`issuer`]: sign-in and consent pages, code flow with PKCE, client ID
//! metadata documents, registration, refresh, revocation, introspection),
//! the four apps, and the Cortex gateway in front of them (checking every
//! token by introspection), then mints one token per [`firm::Persona`] for
//! scripts. `cargo run -p meridian` is a thin CLI over it; the integration
//! tests call it directly.

pub mod apps;
pub mod firm;
pub mod issuer;
pub mod mcp;
mod run;
pub mod tracker;

pub use mcp::curl_tools_list;
pub use run::{
    INTROSPECTION_CACHE_S, Options, Running, TRACKER_ID, Tokens, admin_file, parse_duration, start,
    start_with, write_admin_file,
};
