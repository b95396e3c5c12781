//! Integration tests of cortex-backend (one binary: contract, dispatcher, schemas).

mod auth;
mod contract_examples;
mod dispatcher;
mod support;
mod tool_schemas;
