//! Typed tools: a handler `async fn(Ctx<S>, Args) -> Result<R, ToolError>`
//! becomes a descriptor (schemas derived from `Args` and `R`) and a type-erased
//! call.

use std::{future::Future, pin::Pin, sync::Arc};

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    auth::Caller,
    contract::{Deprecation, ResultKind, ToolAnnotations, ToolDescriptor},
    error::ToolError,
    rich::McpResult,
    schema::{self, SchemaError},
};

/// A boxed, `Send` future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler receives besides its arguments: the validated caller and
/// the app's state.
pub struct Ctx<S> {
    state: Arc<S>,
    caller: Arc<Caller>,
    backend: Arc<str>,
}

impl<S> Clone for Ctx<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            caller: self.caller.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Ctx<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("backend", &self.backend)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl<S> Ctx<S> {
    pub(crate) fn new(state: Arc<S>, caller: Arc<Caller>, backend: Arc<str>) -> Self {
        Self {
            state,
            caller,
            backend,
        }
    }

    /// The app's state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The app's state, shared.
    pub fn state_arc(&self) -> Arc<S> {
        self.state.clone()
    }

    /// The validated caller (identity from the token only).
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// This backend's id.
    pub fn backend_id(&self) -> &str {
        &self.backend
    }

    /// `Err(ToolError::MissingScope)` unless the caller holds `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), ToolError> {
        if self.caller.has_scope(scope) {
            Ok(())
        } else {
            Err(ToolError::missing_scope(scope))
        }
    }

    /// `Err(ToolError::Denied)` unless the caller's role is one of `roles`.
    pub fn require_role(&self, roles: &[&str]) -> Result<(), ToolError> {
        match self.caller.role.as_deref() {
            Some(role) if roles.contains(&role) => Ok(()),
            _ => Err(ToolError::denied(format!(
                "this requires one of the roles: {}",
                roles.join(", ")
            ))),
        }
    }
}

/// What a tool may return: any `Serialize + JsonSchema` type (a JSON result,
/// with an `outputSchema` when it is an object), or [`McpResult`] (rich MCP
/// content, `resultKind: "mcp"`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a Cortex tool",
    note = "return a type that implements `serde::Serialize + schemars::JsonSchema`, or `cortex_backend::McpResult` for rich content"
)]
pub trait ToolOutput: Send + 'static {
    /// `json` or `mcp`.
    fn result_kind() -> ResultKind;
    /// The derived output schema, when there is one.
    fn output_schema() -> Option<Value>;
    /// The wire value.
    fn into_value(self) -> Result<Value, ToolError>;
}

impl<R: Serialize + JsonSchema + Send + 'static> ToolOutput for R {
    fn result_kind() -> ResultKind {
        ResultKind::Json
    }
    fn output_schema() -> Option<Value> {
        schema::output_schema::<R>()
    }
    fn into_value(self) -> Result<Value, ToolError> {
        serde_json::to_value(self).map_err(ToolError::internal)
    }
}

impl ToolOutput for McpResult {
    fn result_kind() -> ResultKind {
        ResultKind::Mcp
    }
    fn output_schema() -> Option<Value> {
        None
    }
    fn into_value(self) -> Result<Value, ToolError> {
        Ok(self.into_wire())
    }
}

/// An async function usable as a tool handler.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Cortex tool handler",
    label = "expected `async fn(Ctx<S>, Args) -> Result<R, ToolError>`",
    note = "a tool handler takes `Ctx<S>` (S = the backend's state type) and one argument struct \
            that implements `serde::Deserialize + schemars::JsonSchema`, and returns \
            `Result<R, ToolError>` where R: `Serialize + JsonSchema` or `McpResult`"
)]
pub trait ToolHandler<S, A, R>: Send + Sync + 'static {
    /// Calls the handler.
    fn call(&self, ctx: Ctx<S>, args: A) -> BoxFuture<Result<R, ToolError>>;
}

impl<S, A, R, F, Fut> ToolHandler<S, A, R> for F
where
    F: Fn(Ctx<S>, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
{
    fn call(&self, ctx: Ctx<S>, args: A) -> BoxFuture<Result<R, ToolError>> {
        Box::pin((self)(ctx, args))
    }
}

pub(crate) type ErasedCall<S> =
    Arc<dyn Fn(Ctx<S>, Value) -> BoxFuture<Result<Value, ToolError>> + Send + Sync>;

/// A tool: its descriptor and its handler. Built with [`Tool::new`] or by
/// the `#[tool]` attribute, registered with `BackendBuilder::tool`.
pub struct Tool<S> {
    pub(crate) descriptor: ToolDescriptor,
    pub(crate) call: ErasedCall<S>,
    pub(crate) schema_error: Option<SchemaError>,
    /// Set by [`ToolFn`]: the scope must follow `mcp:<domain>:<action>`.
    pub(crate) conventional_scope: bool,
}

impl<S> std::fmt::Debug for Tool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("descriptor", &self.descriptor)
            .finish_non_exhaustive()
    }
}

/// Decodes arguments, naming the JSON path of the first bad field.
pub(crate) fn decode_args<A: DeserializeOwned>(args: Value) -> Result<A, ToolError> {
    serde_path_to_error::deserialize::<_, A>(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if path == "." {
            format!("invalid arguments: {inner}")
        } else {
            format!("invalid argument at `{path}`: {inner}")
        };
        ToolError::invalid(message).with_detail("path", Value::String(path))
    })
}

/// A tool from a plain async function, with its name, scope and
/// description given by name so they cannot be swapped silently:
///
/// ```
/// # use cortex_backend::{Backend, Ctx, ToolError, ToolFn};
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct LogCall { account: String }
/// # #[derive(serde::Serialize, schemars::JsonSchema)] struct Logged { id: u64 }
/// async fn log_call(_: Ctx<()>, _: LogCall) -> Result<Logged, ToolError> { Ok(Logged { id: 1 }) }
///
/// let backend = Backend::builder("crm")
///     .tool(
///         ToolFn::new("log_call")
///             .scope("mcp:crm:write")
///             .description("Log a call on an account.")
///             .handler(log_call),
///     )
///     .build();
/// assert!(backend.is_ok());
/// ```
///
/// `build()` refuses a scope that is not `mcp:<domain>:<action>` and a
/// description that is empty or is a scope, naming the tool, so a swapped
/// pair never reaches a gateway. ([`Tool::new`] and `#[tool]` accept any
/// OAuth scope token, which the contract allows, with the same check of
/// the description.) The result is a [`Tool`]: the
/// same builder calls (`read_only()`, `title()`, ...) apply.
#[derive(Debug, Clone)]
#[must_use = "a ToolFn does nothing until `.handler(...)` makes it a Tool"]
pub struct ToolFn {
    name: String,
    scope: String,
    description: String,
}

impl ToolFn {
    /// A tool named `name` (unique in the backend, `^[A-Za-z0-9_-]{1,64}$`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scope: String::new(),
            description: String::new(),
        }
    }

    /// The OAuth scope required to see and call the tool,
    /// `mcp:<domain>:<action>` (for example `mcp:crm:write`).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// What the tool does, written for an LLM.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The handler, `async fn(Ctx<S>, Args) -> Result<Out, ToolError>`:
    /// gives the [`Tool`] to register with `BackendBuilder::tool`.
    pub fn handler<S, A, R, H>(self, handler: H) -> Tool<S>
    where
        S: Send + Sync + 'static,
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: ToolOutput,
        H: ToolHandler<S, A, R>,
    {
        let mut tool = Tool::new(self.name, self.scope, self.description, handler);
        tool.conventional_scope = true;
        tool
    }
}

impl<S: Send + Sync + 'static> Tool<S> {
    /// A tool from a typed handler. The input schema comes from `A`, the
    /// output schema from `R`; problems (an argument type that is not an
    /// object) surface when the backend is built.
    pub fn new<A, R, H>(
        name: impl Into<String>,
        scope: impl Into<String>,
        description: impl Into<String>,
        handler: H,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: ToolOutput,
        H: ToolHandler<S, A, R>,
    {
        let (input_schema, schema_error) = match schema::input_schema::<A>() {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let kind = R::result_kind();
        let handler = Arc::new(handler);
        let call: ErasedCall<S> = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            Box::pin(async move {
                let args = decode_args::<A>(args)?;
                handler.call(ctx, args).await?.into_value()
            })
        });
        Self {
            descriptor: ToolDescriptor {
                name: name.into(),
                scope: scope.into(),
                description: description.into(),
                params: None,
                input_schema,
                version: None,
                deprecated: None,
                title: None,
                output_schema: R::output_schema(),
                annotations: None,
                result_kind: (kind == ResultKind::Mcp).then_some(kind),
            },
            call,
            schema_error,
            conventional_scope: false,
        }
    }

    /// The descriptor as it will be listed.
    pub fn descriptor(&self) -> &ToolDescriptor {
        &self.descriptor
    }

    /// Sets the display title.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.descriptor.title = Some(title.into());
        self
    }

    /// Sets the tool's semver.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.descriptor.version = Some(version.into());
        self
    }

    /// Marks the tool deprecated.
    #[must_use]
    pub fn deprecated(mut self, deprecation: Deprecation) -> Self {
        self.descriptor.deprecated = Some(deprecation);
        self
    }

    fn annotations(&mut self) -> &mut ToolAnnotations {
        self.descriptor
            .annotations
            .get_or_insert_with(Default::default)
    }

    /// `readOnlyHint: true` (and not destructive).
    #[must_use]
    pub fn read_only(mut self) -> Self {
        let a = self.annotations();
        a.read_only_hint = Some(true);
        a.destructive_hint = Some(false);
        self
    }

    /// `destructiveHint: true`.
    #[must_use]
    pub fn destructive(mut self) -> Self {
        let a = self.annotations();
        a.read_only_hint = Some(false);
        a.destructive_hint = Some(true);
        self
    }

    /// `idempotentHint: true`.
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.annotations().idempotent_hint = Some(true);
        self
    }

    /// `openWorldHint` as given.
    #[must_use]
    pub fn open_world(mut self, open: bool) -> Self {
        self.annotations().open_world_hint = Some(open);
        self
    }

    /// Replaces the derived input schema, for a tool whose arguments are
    /// described better by hand (for example a `serde_json::Map` argument
    /// with a hand-written schema). The root must still be an object:
    /// `build()` refuses anything else, naming the tool.
    #[must_use]
    pub fn input_schema(mut self, schema: Value) -> Self {
        let root_is_object = schema.get("type").and_then(Value::as_str) == Some("object");
        self.schema_error = (!root_is_object).then(|| SchemaError::NotAnObject {
            type_name: "the hand-written inputSchema".into(),
            found: schema
                .get("type")
                .map_or("untyped".into(), Value::to_string),
        });
        self.descriptor.input_schema = Some(schema);
        self
    }

    /// Replaces the derived output schema (or removes it with `None`).
    #[must_use]
    pub fn output_schema(mut self, schema: Option<Value>) -> Self {
        self.descriptor.output_schema = schema;
        self
    }
}
