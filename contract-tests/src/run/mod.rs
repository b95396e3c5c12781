//! One run against one backend: the shared state (endpoint, tokens, what
//! the catalog said) and the order in which the check groups run.
//!
//! Each group lives in its own module. A check records exactly one
//! [`Outcome`]; a check that cannot run (no user token, an optional method
//! not implemented, a failed prerequisite) records a skip saying why, so a
//! report always lists every selected check.

mod assert;
mod auth;
mod calls;
mod catalog;
mod help;
mod transport;

use std::{collections::BTreeMap, time::Instant};

use serde_json::{Map, Value, json};

use crate::{
    CheckError,
    checks::{ASSERT_GROUP, CHECKS, check_info},
    options::{Identity, Options, UserTokens},
    probe::{Call, Cred, Exchange, Probe},
    report::{CheckResult, Outcome, Report},
};

/// The state of a run.
pub(crate) struct Run {
    probe: Probe,
    options: Options,
    technical: Cred,
    results: Vec<CheckResult>,
    /// The descriptors `list_tools` returned, when it answered properly.
    tools: Option<Vec<Value>>,
    /// `list_prompts`, when implemented and valid enough to use.
    prompts: Option<Vec<Value>>,
    /// `list_resource_templates`, when implemented and valid enough to use.
    templates: Option<Vec<Value>>,
    /// Every scope the catalogs name: what a "full" user token holds.
    scopes: Vec<String>,
    /// Whether optional methods answered as implemented, per method.
    implemented: BTreeMap<&'static str, bool>,
    /// The body of `whoami` under the full token, when it answered 200.
    whoami: Option<Value>,
    /// The token holding every scope of the catalogs, minted once.
    full: Option<Cred>,
}

/// Why a check group could not use the user tokens.
const NO_USER_TOKEN: &str =
    "needs a user token: pass --issuer (the harness mints every token) or --user-token";
/// Why checks on the catalog could not run.
const NO_CATALOG: &str = "list_tools did not return a usable catalog (see catalog.list-tools)";

impl Run {
    fn wants(&self, id: &str) -> bool {
        if self.options.identity != Identity::Assert
            && check_info(id).is_some_and(|c| c.group() == ASSERT_GROUP)
        {
            return false;
        }
        self.options.only.is_empty() || self.options.only.iter().any(|o| o == id)
    }

    fn wants_any(&self, ids: &[&str]) -> bool {
        ids.iter().any(|id| self.wants(id))
    }

    fn record(&mut self, id: &'static str, outcome: Outcome) {
        let info = check_info(id).unwrap_or_else(|| panic!("check `{id}` is not in CHECKS"));
        if self.wants(id) {
            self.results.push(CheckResult::new(info, outcome));
        }
    }

    async fn send(&self, call: Call) -> Exchange {
        self.probe.send(call).await
    }

    /// `POST {"method", "params"}` with `cred`.
    async fn call(&self, method: &str, params: Option<Value>, cred: Option<&Cred>) -> Exchange {
        self.send(Call::method(method, params).cred(cred)).await
    }

    fn full(&self) -> Option<Cred> {
        self.full.clone()
    }

    /// Sets the scopes a full token holds, and mints it.
    fn set_scopes(&mut self, scopes: Vec<String>) {
        self.full = self.options.users.full(&scopes, &self.options.claims);
        self.scopes = scopes;
    }

    fn tools(&self) -> &[Value] {
        self.tools.as_deref().unwrap_or_default()
    }

    /// Whether an optional method is implemented: listed as a tool, or
    /// answered with anything but 400 under the full user token. `None`
    /// when that cannot be told (no user token).
    async fn is_implemented(&mut self, method: &'static str) -> Option<bool> {
        if let Some(known) = self.implemented.get(method) {
            return Some(*known);
        }
        if self.tools().iter().any(|t| name(t) == method) {
            self.implemented.insert(method, true);
            return Some(true);
        }
        let full = self.full()?;
        let answer = self.call(method, Some(json!({})), Some(&full)).await;
        let known = !answer.is(400);
        self.implemented.insert(method, known);
        Some(known)
    }
}

/// A descriptor's `name`, or `?` when it has none.
pub(crate) fn name(descriptor: &Value) -> &str {
    descriptor
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
}

/// A descriptor's `scope`, when it has one.
pub(crate) fn scope(descriptor: &Value) -> Option<&str> {
    descriptor.get("scope").and_then(Value::as_str)
}

/// The input schema the gateway would publish for a descriptor.
pub(crate) fn effective_input_schema(descriptor: &Value) -> Value {
    if let Some(schema) = descriptor.get("inputSchema").filter(|s| s.is_object()) {
        return schema.clone();
    }
    if let Some(params) = descriptor.get("params").and_then(Value::as_object) {
        let words: BTreeMap<String, String> = params
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|w| (k.clone(), w.to_string())))
            .collect();
        if let Ok(schema) = cortex_backend::params::params_to_schema(&words) {
            return schema;
        }
    }
    cortex_backend::params::empty_object_schema()
}

/// Runs every selected check.
pub(crate) async fn execute(url: &str, options: Options) -> Result<Report, CheckError> {
    for id in &options.only {
        match check_info(id) {
            None => return Err(CheckError::UnknownCheck(id.clone())),
            Some(c) if c.group() == ASSERT_GROUP && options.identity != Identity::Assert => {
                return Err(CheckError::Identity(format!(
                    "`{id}` runs only with --identity assert (Identity::Assert)"
                )));
            }
            Some(_) => {}
        }
    }
    if let UserTokens::Issuer { issuer, .. } = &options.users {
        match (options.identity, issuer.is_gateway()) {
            (Identity::Assert, false) => {
                return Err(CheckError::Identity(
                    "--identity assert needs a gateway issuer: start `cortex-conformance issuer \
                     --identity assert` (TestIssuer::start_gateway) and configure the backend \
                     with the CORTEX_GATEWAY_ISSUER it prints"
                        .into(),
                ));
            }
            (Identity::Forward, true) => {
                return Err(CheckError::Identity(
                    "the issuer is a gateway (it mints assertions): pass --identity assert \
                     (Identity::Assert), or start `cortex-conformance issuer` without it for \
                     identity-provider tokens"
                        .into(),
                ));
            }
            _ => {}
        }
    }
    let probe = Probe::new(url, options.timeout).map_err(CheckError::InvalidUrl)?;
    let technical = Cred::new("technical token", options.technical_token.0.clone());
    let started = Instant::now();
    let listed = probe
        .send(Call::method("list_tools", None).cred(Some(&technical)))
        .await;
    if let Err(reason) = &listed.status {
        return Err(CheckError::Unreachable {
            url: url.to_string(),
            reason: reason.clone(),
        });
    }
    let user_tokens = options.users.describe().to_string();
    let mut run = Run {
        probe,
        options,
        technical,
        results: Vec::new(),
        tools: None,
        prompts: None,
        templates: None,
        scopes: Vec::new(),
        implemented: BTreeMap::new(),
        whoami: None,
        full: None,
    };
    catalog::run(&mut run, listed).await;
    transport::run(&mut run).await;
    auth::run(&mut run).await;
    assert::run(&mut run).await;
    calls::run(&mut run).await;
    help::run(&mut run).await;
    let mut results = std::mem::take(&mut run.results);
    results.sort_by_key(|r| CHECKS.iter().position(|c| c.id == r.id));
    Ok(Report::new(
        url.to_string(),
        user_tokens,
        started.elapsed(),
        results,
    ))
}

/// `{"name": ..., "arguments": {required ones}}` for a prompt descriptor.
pub(crate) fn prompt_params(prompt: &Value) -> Value {
    let mut arguments = Map::new();
    for a in prompt
        .get("arguments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = a.get("name").and_then(Value::as_str) {
            arguments.insert(n.to_string(), json!("conformance"));
        }
    }
    json!({"name": name(prompt), "arguments": arguments})
}

/// A URI matching a resource template: every `{var}` becomes `conformance-1`.
pub(crate) fn expand_template(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str("conformance-1");
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand() {
        assert_eq!(
            expand_template("docs://document/{id}"),
            "docs://document/conformance-1"
        );
        assert_eq!(
            expand_template("x://{a}/{+b}.json"),
            "x://conformance-1/conformance-1.json"
        );
        assert_eq!(expand_template("plain://x"), "plain://x");
    }
}
