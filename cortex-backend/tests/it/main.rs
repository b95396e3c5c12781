//! Integration tests of cortex-backend (one binary: contract, dispatcher, schemas).

mod auth;
mod contract_examples;
mod dispatcher;
mod gateway_assertions;
mod support;
mod tool_schemas;
