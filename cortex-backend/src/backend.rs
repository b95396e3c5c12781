//! `Backend` and its builder: tools, help, and the optional methods.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use serde_json::Value;

use crate::{
    auth::{Auth, AuthConfig},
    contract::{
        GetPromptResult, ListTicketsParams, MissingCapabilityReport, PromptDescriptor,
        ReadResourceResult, ResourceTemplate, Snapshot, TicketList, TicketReceipt, methods,
    },
    error::ToolError,
    help::Help,
    schema::SchemaError,
    tool::{BoxFuture, Ctx, ErasedCall, Tool},
};

/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

type PromptCall<S> = Arc<
    dyn Fn(Ctx<S>, BTreeMap<String, String>) -> BoxFuture<Result<GetPromptResult, ToolError>>
        + Send
        + Sync,
>;
type ResourceCall<S> = Arc<
    dyn Fn(
            Ctx<S>,
            String,
            BTreeMap<String, String>,
        ) -> BoxFuture<Result<ReadResourceResult, ToolError>>
        + Send
        + Sync,
>;
type SnapshotCall<S> = Arc<dyn Fn(Arc<S>) -> BoxFuture<Result<Snapshot, ToolError>> + Send + Sync>;
type ReportCall<S> = Arc<
    dyn Fn(Ctx<S>, MissingCapabilityReport) -> BoxFuture<Result<TicketReceipt, ToolError>>
        + Send
        + Sync,
>;
type ListTicketsCall<S> = Arc<
    dyn Fn(Ctx<S>, ListTicketsParams) -> BoxFuture<Result<TicketList, ToolError>> + Send + Sync,
>;

pub(crate) struct RegisteredTool<S> {
    pub(crate) descriptor: crate::contract::ToolDescriptor,
    pub(crate) call: ErasedCall<S>,
    pub(crate) output_validator: Option<Arc<jsonschema::Validator>>,
}

pub(crate) struct Prompt<S> {
    pub(crate) descriptor: PromptDescriptor,
    pub(crate) call: PromptCall<S>,
}

pub(crate) struct Resource<S> {
    pub(crate) template: ResourceTemplate,
    pub(crate) call: ResourceCall<S>,
}

pub(crate) struct Inner<S> {
    pub(crate) id: Arc<str>,
    pub(crate) state: Arc<S>,
    pub(crate) auth: Auth,
    pub(crate) tools: Vec<RegisteredTool<S>>,
    pub(crate) tool_index: BTreeMap<String, usize>,
    pub(crate) help: Help,
    pub(crate) help_scope: String,
    pub(crate) prompts: Vec<Prompt<S>>,
    pub(crate) resources: Vec<Resource<S>>,
    pub(crate) snapshot: Option<SnapshotCall<S>>,
    pub(crate) report: Option<ReportCall<S>>,
    pub(crate) list_tickets: Option<ListTicketsCall<S>>,
    pub(crate) body_limit: usize,
    pub(crate) list_tools_body: bytes::Bytes,
}

/// A contract backend: state, auth, tools and optional methods. Cheap to
/// clone. Serve it with `cortex-backend-axum` or `cortex-backend-actix`, or
/// call [`Backend::handle`] from any HTTP stack.
pub struct Backend<S = ()> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S> Clone for Backend<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Backend<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.inner.id)
            .field("tools", &self.inner.tools.len())
            .finish_non_exhaustive()
    }
}

/// Why `build()` refused the backend. Every variant names the tool or
/// setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The tool's argument or result type cannot give an MCP schema.
    #[error("tool `{tool}`: {source}")]
    Schema {
        /// The tool.
        tool: String,
        /// Why.
        source: SchemaError,
    },
    /// The tool's name breaks `^[A-Za-z0-9_-]{{1,64}}$` or is reserved.
    #[error("tool `{0}`: {1}")]
    BadName(String, String),
    /// Two tools, prompts or templates share a name.
    #[error("`{0}` is registered twice")]
    Duplicate(String),
    /// A tool, prompt or template has an empty scope.
    #[error("`{0}` has an empty scope; use `mcp:<domain>:<action>`")]
    EmptyScope(String),
    /// A tool's scope is not one OAuth scope token (RFC 6749 §3.3), or,
    /// for a [`crate::ToolFn`], not `mcp:<domain>:<action>` (often: the
    /// description was passed as the scope).
    #[error(
        "tool `{tool}`: scope `{scope}` is not of the form `mcp:<domain>:<action>` \
         (for example `mcp:crm:read`); check that the scope and the description are not swapped"
    )]
    BadScope {
        /// The tool.
        tool: String,
        /// The scope it was given.
        scope: String,
    },
    /// A tool's description is empty or is a scope (often: the scope was
    /// passed as the description).
    #[error("tool `{0}`: {1}")]
    BadDescription(String, String),
    /// A declared output schema is not a valid JSON Schema.
    #[error("tool `{0}`: its outputSchema is not a valid JSON Schema: {1}")]
    BadOutputSchema(String, String),
    /// A resource template without a `scheme://`.
    #[error(
        "resource template `{0}` has no `scheme://` prefix; the scheme routes reads to this backend"
    )]
    BadTemplate(String),
    /// The backend id breaks `^[A-Za-z0-9_-]{{1,32}}$`.
    #[error(
        "backend id `{0}` must match ^[A-Za-z0-9-]{{1,32}}$ (it prefixes tool names at the gateway)"
    )]
    BadId(String),
    /// The auth settings cannot work.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
}

/// Builds a [`Backend`]. Start with [`Backend::builder`].
pub struct BackendBuilder<S> {
    id: String,
    state: Option<Arc<S>>,
    auth: Option<Auth>,
    tools: Vec<Tool<S>>,
    help: Option<Help>,
    help_scope: Option<String>,
    list_help: bool,
    prompts: Vec<Prompt<S>>,
    resources: Vec<Resource<S>>,
    snapshot: Option<SnapshotCall<S>>,
    report: Option<ReportCall<S>>,
    list_tickets: Option<ListTicketsCall<S>>,
    body_limit: usize,
}

impl Backend<()> {
    /// A builder for a backend with this id (the gateway's tool prefix).
    pub fn builder(id: impl Into<String>) -> BackendBuilder<()> {
        BackendBuilder {
            id: id.into(),
            state: Some(Arc::new(())),
            auth: None,
            tools: Vec::new(),
            help: None,
            help_scope: None,
            list_help: true,
            prompts: Vec::new(),
            resources: Vec::new(),
            snapshot: None,
            report: None,
            list_tickets: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl<S> Backend<S> {
    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The request body limit in bytes (adapters stop reading past it).
    pub fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    /// The tool descriptors, as `list_tools` returns them.
    pub fn tools(&self) -> Vec<crate::contract::ToolDescriptor> {
        self.inner
            .tools
            .iter()
            .map(|t| t.descriptor.clone())
            .collect()
    }

    /// The state.
    pub fn state(&self) -> &S {
        &self.inner.state
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<S: Send + Sync + 'static> BackendBuilder<S> {
    /// Sets the app state handlers see through `Ctx::state()`. Call it before
    /// registering tools (they are typed by the state).
    pub fn state<T: Send + Sync + 'static>(self, state: T) -> BackendBuilder<T> {
        assert!(
            self.tools.is_empty() && self.prompts.is_empty() && self.resources.is_empty(),
            "BackendBuilder::state must be called before registering tools, prompts or resources"
        );
        BackendBuilder {
            id: self.id,
            state: Some(Arc::new(state)),
            auth: self.auth,
            tools: Vec::new(),
            help: self.help,
            help_scope: self.help_scope,
            list_help: self.list_help,
            prompts: Vec::new(),
            resources: Vec::new(),
            snapshot: None,
            report: None,
            list_tickets: None,
            body_limit: self.body_limit,
        }
    }

    /// Sets the authenticator.
    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Registers a tool (from [`crate::ToolFn`], [`Tool::new`] or the
    /// `#[tool]` attribute).
    #[must_use]
    pub fn tool(mut self, tool: impl Into<Tool<S>>) -> Self {
        self.tools.push(tool.into());
        self
    }

    /// Sets the `get_help` sections.
    #[must_use]
    pub fn help(mut self, help: Help) -> Self {
        self.help = Some(help);
        self
    }

    /// The scope of the listed `get_help` tool (default `mcp:<id>:read`).
    #[must_use]
    pub fn help_scope(mut self, scope: impl Into<String>) -> Self {
        self.help_scope = Some(scope.into());
        self
    }

    /// Whether `get_help` is listed as a tool (default yes).
    #[must_use]
    pub fn list_help_as_tool(mut self, listed: bool) -> Self {
        self.list_help = listed;
        self
    }

    /// Request body limit in bytes (default 1 MiB); larger bodies get 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Registers a prompt: `handler(ctx, arguments)`. Missing required
    /// arguments are refused with 400 before the handler runs.
    #[must_use]
    pub fn prompt<F, Fut>(mut self, descriptor: PromptDescriptor, handler: F) -> Self
    where
        F: Fn(Ctx<S>, BTreeMap<String, String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<GetPromptResult, ToolError>> + Send + 'static,
    {
        let call: PromptCall<S> = Arc::new(move |ctx, args| Box::pin(handler(ctx, args)));
        self.prompts.push(Prompt { descriptor, call });
        self
    }

    /// Registers a resource template: `handler(ctx, uri, variables)` where
    /// `variables` are the template's `{name}` parts matched in the URI.
    #[must_use]
    pub fn resource_template<F, Fut>(mut self, template: ResourceTemplate, handler: F) -> Self
    where
        F: Fn(Ctx<S>, String, BTreeMap<String, String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ReadResourceResult, ToolError>> + Send + 'static,
    {
        let call: ResourceCall<S> =
            Arc::new(move |ctx, uri, vars| Box::pin(handler(ctx, uri, vars)));
        self.resources.push(Resource { template, call });
        self
    }

    /// Implements `get_snapshot` (callable with the technical token, so the
    /// handler sees the state, not a caller: aggregates only).
    #[must_use]
    pub fn snapshot<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Snapshot, ToolError>> + Send + 'static,
    {
        self.snapshot = Some(Arc::new(move |s| Box::pin(handler(s))));
        self
    }

    /// Implements `report_missing_capability` and `list_tickets`.
    #[must_use]
    pub fn tickets<F1, Fut1, F2, Fut2>(mut self, report: F1, list: F2) -> Self
    where
        F1: Fn(Ctx<S>, MissingCapabilityReport) -> Fut1 + Send + Sync + 'static,
        Fut1: Future<Output = Result<TicketReceipt, ToolError>> + Send + 'static,
        F2: Fn(Ctx<S>, ListTicketsParams) -> Fut2 + Send + Sync + 'static,
        Fut2: Future<Output = Result<TicketList, ToolError>> + Send + 'static,
    {
        self.report = Some(Arc::new(move |c, a| Box::pin(report(c, a))));
        self.list_tickets = Some(Arc::new(move |c, a| Box::pin(list(c, a))));
        self
    }

    /// Validates everything and builds the backend.
    pub fn build(self) -> Result<Backend<S>, BuildError> {
        let id_ok = (1..=32).contains(&self.id.len())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            return Err(BuildError::BadId(self.id));
        }
        let auth = match self.auth {
            Some(auth) => auth,
            None => Auth::new(AuthConfig::default())?,
        };
        let help_scope = self
            .help_scope
            .unwrap_or_else(|| format!("mcp:{}:read", self.id));
        let help = self.help.unwrap_or_else(|| {
            let names: Vec<&str> = self
                .tools
                .iter()
                .map(|t| t.descriptor.name.as_str())
                .collect();
            Help::new(format!(
                "Backend `{}`. Tools: {}.",
                self.id,
                names.join(", ")
            ))
        });
        let mut tools = Vec::new();
        let mut tool_index = BTreeMap::new();
        let mut all = self.tools;
        if self.list_help {
            all.push(help_tool(&help_scope));
        }
        for tool in all {
            let name = tool.descriptor.name.clone();
            if let Some(source) = tool.schema_error {
                return Err(BuildError::Schema { tool: name, source });
            }
            if !valid_name(&name) {
                return Err(BuildError::BadName(
                    name,
                    "names must match ^[A-Za-z0-9_-]{1,64}$".into(),
                ));
            }
            let is_help = name == methods::GET_HELP && tool.descriptor.scope == help_scope;
            if methods::is_reserved(&name) && !is_help {
                return Err(BuildError::BadName(
                    name,
                    "this is a reserved method name of the contract".into(),
                ));
            }
            if tool.descriptor.scope.trim().is_empty() {
                return Err(BuildError::EmptyScope(name));
            }
            let scope = &tool.descriptor.scope;
            let scope_ok = if tool.conventional_scope {
                crate::scopes::is_conventional(scope)
            } else {
                crate::scopes::is_scope_token(scope)
            };
            if !scope_ok {
                return Err(BuildError::BadScope {
                    tool: name,
                    scope: tool.descriptor.scope,
                });
            }
            if let Some(why) = description_problem(&tool.descriptor.description) {
                return Err(BuildError::BadDescription(name, why.into()));
            }
            if tool_index.contains_key(&name) {
                return Err(BuildError::Duplicate(name));
            }
            let output_validator = match &tool.descriptor.output_schema {
                Some(schema) => {
                    Some(Arc::new(jsonschema::options().build(schema).map_err(
                        |e| BuildError::BadOutputSchema(name.clone(), e.to_string()),
                    )?))
                }
                None => None,
            };
            tool_index.insert(name, tools.len());
            tools.push(RegisteredTool {
                descriptor: tool.descriptor,
                call: tool.call,
                output_validator,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.prompts {
            if !seen.insert(format!("prompt:{}", p.descriptor.name)) {
                return Err(BuildError::Duplicate(p.descriptor.name.clone()));
            }
            if p.descriptor.scope.trim().is_empty() {
                return Err(BuildError::EmptyScope(p.descriptor.name.clone()));
            }
        }
        for r in &self.resources {
            if !r.template.uri_template.contains("://") {
                return Err(BuildError::BadTemplate(r.template.uri_template.clone()));
            }
            if !seen.insert(format!("template:{}", r.template.uri_template)) {
                return Err(BuildError::Duplicate(r.template.uri_template.clone()));
            }
            if r.template.scope.trim().is_empty() {
                return Err(BuildError::EmptyScope(r.template.name.clone()));
            }
        }
        let list = crate::contract::ToolList {
            tools: tools.iter().map(|t| t.descriptor.clone()).collect(),
        };
        let list_tools_body = bytes::Bytes::from(serde_json::to_vec(&list).unwrap_or_default());
        Ok(Backend {
            inner: Arc::new(Inner {
                id: self.id.into(),
                state: self
                    .state
                    .unwrap_or_else(|| unreachable!("state is always set")),
                auth,
                tools,
                tool_index,
                help,
                help_scope,
                prompts: self.prompts,
                resources: self.resources,
                snapshot: self.snapshot,
                report: self.report,
                list_tickets: self.list_tickets,
                body_limit: self.body_limit,
                list_tools_body,
            }),
        })
    }
}

/// Why a tool description cannot be published as it is, if it cannot.
fn description_problem(description: &str) -> Option<&'static str> {
    if description.trim().is_empty() {
        return Some("the description is empty; say what the tool does, for an LLM");
    }
    crate::scopes::is_conventional(description.trim()).then_some(
        "the description is a scope (`mcp:<domain>:<action>`); check that the scope and the \
         description are not swapped",
    )
}

/// The listed `get_help` tool. Its calls are answered by the dispatcher
/// (the reserved method), so the handler here is never reached.
fn help_tool<S: Send + Sync + 'static>(scope: &str) -> Tool<S> {
    async fn unreachable_help<S>(
        _: Ctx<S>,
        _: crate::contract::GetHelpParams,
    ) -> Result<Value, ToolError> {
        Err(ToolError::internal(
            "get_help is answered by the dispatcher",
        ))
    }
    let mut tool = Tool::new(
        methods::GET_HELP,
        scope,
        "How to use this backend: overview, concepts, workflows, conventions, limits and \
         examples. Call it before guessing; pass `topic` for one section.",
        unreachable_help::<S>,
    )
    .read_only()
    .idempotent()
    .open_world(false);
    tool.descriptor.output_schema = None;
    tool
}

/// Matches a URI against an RFC 6570 level-1/2 template: `{name}` matches a
/// non-empty run without `/`, `{+name}` matches anything non-empty.
pub(crate) fn match_template(template: &str, uri: &str) -> Option<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    let mut rest = uri;
    let mut tpl = template;
    while !tpl.is_empty() {
        if let Some(after_open) = tpl.strip_prefix('{') {
            let close = after_open.find('}')?;
            let spec = &after_open[..close];
            tpl = &after_open[close + 1..];
            let (reserved, name) = match spec.strip_prefix('+') {
                Some(n) => (true, n),
                None => (false, spec),
            };
            let next_literal_end = tpl.find('{').unwrap_or(tpl.len());
            let literal = &tpl[..next_literal_end];
            let end = if literal.is_empty() {
                rest.len()
            } else {
                rest.find(literal)?
            };
            let value = &rest[..end];
            if value.is_empty() || (!reserved && value.contains('/')) {
                return None;
            }
            vars.insert(name.to_string(), value.to_string());
            rest = &rest[end..];
        } else {
            let next = tpl.find('{').unwrap_or(tpl.len());
            let literal = &tpl[..next];
            rest = rest.strip_prefix(literal)?;
            tpl = &tpl[next..];
        }
    }
    rest.is_empty().then_some(vars)
}

#[cfg(test)]
mod tests {
    use super::match_template;

    #[test]
    fn templates() {
        let v = match_template("docs://document/{id}", "docs://document/42").unwrap();
        assert_eq!(v["id"], "42");
        assert!(match_template("docs://document/{id}", "docs://document/4/2").is_none());
        assert!(match_template("docs://document/{id}", "docs://document/").is_none());
        assert!(match_template("docs://document/{id}", "crm://document/1").is_none());
        let v = match_template("docs://{+path}", "docs://a/b/c").unwrap();
        assert_eq!(v["path"], "a/b/c");
        let v = match_template("x://p/{a}/q/{b}.json", "x://p/1/q/2.json").unwrap();
        assert_eq!((v["a"].as_str(), v["b"].as_str()), ("1", "2"));
        assert!(match_template("test://static-text", "test://static-text").is_some());
    }
}
