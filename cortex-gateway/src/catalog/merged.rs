//! The merged catalog: every healthy backend's tools, prompts and resource
//! templates under public names, in a deterministic order, plus the
//! per-scope-set renderings of `tools/list` (built once per catalog, on
//! first use, never per request).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, LazyLock, Mutex},
};

use bytes::Bytes;
use cortex_backend::{
    contract::{PromptDescriptor, ResourceTemplate, ResultKind, ToolDescriptor},
    scopes,
};
use serde_json::{Map, Value, json};

use crate::store::cache::{BoundedCache, CacheUsage};
use crate::sync::lock;

/// The names the gateway's own tools take; backend tools with these public
/// names are masked (`accounts` only when it is served: see
/// [`Catalog::build_with`]).
pub(crate) const BUILTINS: [&str; 7] = [
    "whoami",
    "find_tools",
    "report_missing_capability",
    "list_cortex_tickets",
    "list_cortex_resources",
    "read_cortex_resource",
    ACCOUNTS_TOOL,
];
/// The builtin that lists and unlinks the caller's linked third-party
/// accounts (served when third-party MCP servers are configured).
pub(crate) const ACCOUNTS_TOOL: &str = "accounts";

/// One tool under its public name.
#[derive(Debug, Clone)]
pub struct CatalogTool {
    /// Public (MCP) name, e.g. `crm_search_accounts`.
    pub name: String,
    /// Owning backend.
    pub backend: String,
    /// Name in the backend.
    pub original: String,
    /// Scope required to see and call it.
    pub scope: String,
    /// How its result is treated.
    pub result_kind: ResultKind,
    /// The MCP `Tool` object (newest shape; older revisions drop fields).
    pub definition: Value,
}

/// One prompt under its public name.
#[derive(Debug, Clone)]
pub struct CatalogPrompt {
    /// Public name.
    pub name: String,
    /// Owning backend.
    pub backend: String,
    /// Name in the backend.
    pub original: String,
    /// Scope required.
    pub scope: String,
    /// The MCP `Prompt` object.
    pub definition: Value,
}

/// One resource template.
#[derive(Debug, Clone)]
pub struct CatalogTemplate {
    /// Owning backend.
    pub backend: String,
    /// URI scheme (routing key).
    pub scheme: String,
    /// The RFC 6570 URI template.
    pub uri_template: String,
    /// Scope required.
    pub scope: String,
    /// The MCP `ResourceTemplate` object.
    pub definition: Value,
}

/// A public tool name offered by two backends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NameClash {
    /// The public name.
    pub tool: String,
    /// The backend that keeps it (the one that had it first).
    pub owner: String,
    /// The backend whose tool of that name is refused (not served, never
    /// approved by the integrity check).
    pub refused: String,
}

impl NameClash {
    /// What the log and the catalog's warnings say.
    pub fn message(&self) -> String {
        format!(
            "backend {}: tool `{}` clashes with backend {}, which keeps it; {}'s tool is not served. \
             Rename one of the tools or give one backend a prefix",
            self.refused, self.tool, self.owner, self.refused
        )
    }
}

/// Decides which backend owns each public tool name at a refresh, and
/// removes every other backend's tool of that name from `offers` (so it is
/// neither served nor screened, nor approved, by the integrity check).
///
/// The owner is the backend that owned the name at the previous refresh
/// (`previous`), as long as it still offers the tool or cannot be asked
/// (down): a backend cannot take over another's tool name by adding a tool
/// later, nor while the owner is unreachable. A name nobody owned goes to
/// the first backend in configuration order. Returns the owners to carry
/// to the next refresh, and the clashes.
pub(crate) fn settle_names(
    offers: &mut [(String, bool, Result<BackendOffer, String>)],
    previous: &HashMap<String, String>,
) -> (HashMap<String, String>, Vec<NameClash>) {
    // Each up backend's public names, in its tools' order, made once.
    let names: Vec<Vec<String>> = offers
        .iter()
        .map(|(id, prefix, offer)| match offer {
            Ok(o) => o
                .tools
                .iter()
                .map(|t| {
                    if *prefix {
                        format!("{id}_{}", t.name)
                    } else {
                        t.name.clone()
                    }
                })
                .collect(),
            Err(_) => Vec::new(),
        })
        .collect();
    let mut offered_by: HashMap<&str, Vec<&str>> = HashMap::new();
    for ((id, _, _), names) in offers.iter().zip(&names) {
        for name in names {
            offered_by.entry(name).or_default().push(id);
        }
    }
    let down: Vec<&str> = offers
        .iter()
        .filter(|(_, _, offer)| offer.is_err())
        .map(|(id, _, _)| id.as_str())
        .collect();
    let mut owners: HashMap<String, String> = HashMap::new();
    // Names whose owner cannot be asked now stay theirs.
    for (name, owner) in previous {
        if down.contains(&owner.as_str()) {
            owners.insert(name.clone(), owner.clone());
        }
    }
    for (name, by) in &offered_by {
        if owners.contains_key(*name) {
            continue;
        }
        let owner = match previous.get(*name) {
            Some(p) if by.contains(&p.as_str()) => p.clone(),
            // Configuration order: `by` was filled in that order.
            _ => by[0].to_string(),
        };
        owners.insert((*name).to_string(), owner);
    }
    let mut clashes = Vec::new();
    for ((id, _, offer), names) in offers.iter_mut().zip(&names) {
        let Ok(offer) = offer else { continue };
        let mut names = names.iter();
        offer.tools.retain(|_| {
            let Some(name) = names.next() else {
                return true;
            };
            match owners.get(name) {
                Some(owner) if owner != id => {
                    clashes.push(NameClash {
                        tool: name.clone(),
                        owner: owner.clone(),
                        refused: id.clone(),
                    });
                    false
                }
                _ => true,
            }
        });
    }
    (owners, clashes)
}

/// What one backend offered at the last refresh.
#[derive(Debug, Clone, Default)]
pub struct BackendOffer {
    /// Tools.
    pub tools: Vec<ToolDescriptor>,
    /// Prompts.
    pub prompts: Vec<PromptDescriptor>,
    /// Resource templates.
    pub templates: Vec<ResourceTemplate>,
}

/// Health of one backend after the last refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Answered `list_tools`.
    Up,
    /// Failed; the reason.
    Down(String),
}

/// Which renderings are cached: the caller's scope set (sorted,
/// deduplicated), the backend filter as indices of known backends (sorted,
/// deduplicated, unknown ids dropped), and compact mode. Built from known
/// values only, so a caller cannot make two keys for one view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RenderKey {
    scopes: Vec<String>,
    filter: Option<Vec<u16>>,
    compact: bool,
}

impl RenderKey {
    /// Bytes charged for a key held by a cache.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .scopes
                .iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
            + self.filter.as_ref().map_or(0, |f| f.capacity() * 2)
    }
}

/// Which serialized `tools/list` pages are cached: the rendering, the
/// revision (its shape and `_meta`) and the page's offset.
type PageKey = (Arc<RenderKey>, &'static str, usize);

/// Renderings kept per catalog (distinct caller views).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const RENDER_CACHE_ENTRIES: usize = 1024;
/// Bytes of renderings kept per catalog (keys and tool indices).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const RENDER_CACHE_BYTES: usize = 4 << 20;
/// Serialized `tools/list` pages kept per catalog.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const PAGE_CACHE_ENTRIES: usize = 1024;
/// Bytes of serialized pages kept per catalog (JSON, plus a quarter for
/// the gzip copy made on demand).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const PAGE_CACHE_BYTES: usize = 48 << 20;

/// The per-catalog caches of `tools/list`, bounded by count and bytes.
#[derive(Debug)]
struct ListCaches {
    renders: Mutex<BoundedCache<Arc<RenderKey>, Arc<[u32]>>>,
    pages: Mutex<BoundedCache<PageKey, Arc<Page>>>,
}

impl Default for ListCaches {
    fn default() -> Self {
        Self {
            renders: Mutex::new(BoundedCache::new(RENDER_CACHE_ENTRIES, RENDER_CACHE_BYTES)),
            pages: Mutex::new(BoundedCache::new(PAGE_CACHE_ENTRIES, PAGE_CACHE_BYTES)),
        }
    }
}

/// How full a catalog's `tools/list` caches are ([`Catalog::cache_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListCacheUsage {
    /// Renderings (caller views).
    pub renders: CacheUsage,
    /// Serialized pages.
    pub pages: CacheUsage,
}

/// The tool definitions one caller view shows, builtins first
/// ([`Catalog::visible_tools`]): indices into the catalog, shared with its
/// cache, not copies of the definitions.
#[derive(Debug, Clone)]
pub struct Visible<'a> {
    catalog: &'a Catalog,
    key: Arc<RenderKey>,
    entries: Arc<[u32]>,
}

impl<'a> Visible<'a> {
    /// How many tools the view holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none (never: the builtins are always there).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The definitions, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a Value> + '_ {
        let catalog = self.catalog;
        let compact = self.key.compact;
        self.entries
            .iter()
            .map(move |i| catalog.definition(*i as usize, compact))
    }

    /// The backend filter as applied: the known backend ids it named,
    /// sorted (`None` without a filter).
    pub fn backend_filter(&self) -> Option<Vec<String>> {
        self.key.filter.as_ref().map(|f| {
            f.iter()
                .map(|i| self.catalog.health[usize::from(*i)].0.clone())
                .collect()
        })
    }

    /// The definitions from `start` to `end` (clamped to the view).
    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &'a Value> + '_ {
        let end = end.min(self.entries.len());
        let start = start.min(end);
        let catalog = self.catalog;
        let compact = self.key.compact;
        self.entries[start..end]
            .iter()
            .map(move |i| catalog.definition(*i as usize, compact))
    }
}

/// The merged catalog. Immutable once built; a refresh builds a new one.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Tools sorted by public name.
    pub tools: Vec<CatalogTool>,
    index: HashMap<String, usize>,
    /// Prompts sorted by public name.
    pub prompts: Vec<CatalogPrompt>,
    /// Templates in backend order, then template order.
    pub templates: Vec<CatalogTemplate>,
    /// URI scheme to owning backend.
    pub schemes: HashMap<String, String>,
    /// Health per backend id, in configuration order.
    pub health: Vec<(String, Health)>,
    /// Warnings produced while merging (dropped names, clashes).
    pub warnings: Vec<String>,
    /// Name clashes caused by an unprefixed backend (refused at start).
    pub unprefixed_clashes: Vec<String>,
    /// Tool names offered by more than one backend at the last refresh:
    /// the owner keeps the name, the other backend's tool is not served.
    pub clashes: Vec<NameClash>,
    /// Public tool name to the backend that owns it, carried from refresh
    /// to refresh (see [`settle_names`]).
    pub(crate) owners: HashMap<String, String>,
    /// Each tool's definition in compact form (same order as `tools`).
    compacts: Vec<Value>,
    caches: ListCaches,
    /// Whether the `accounts` builtin is served.
    accounts_tool: bool,
}

/// Whether a name satisfies MCP's tool-name rule.
pub(crate) fn valid_mcp_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The URI scheme of a URI or template (`docs://x/{id}` gives `docs`).
pub(crate) fn scheme_of(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    let ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    ok.then(|| scheme.to_ascii_lowercase())
}

fn tool_definition(name: &str, d: &ToolDescriptor) -> Result<Value, String> {
    let schema = d
        .effective_input_schema()
        .map_err(|e| format!("bad params: {e}"))?;
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("inputSchema has no root \"type\": \"object\"".into());
    }
    let mut t = Map::new();
    t.insert("name".into(), json!(name));
    if let Some(title) = &d.title {
        t.insert("title".into(), json!(title));
    }
    let mut description = d.description.clone();
    if let Some(dep) = &d.deprecated {
        description.push_str(" (Deprecated");
        if let Some(r) = &dep.replaced_by {
            description.push_str(&format!("; use {r}"));
        }
        if let Some(at) = &dep.removed_at {
            description.push_str(&format!("; removed after {at}"));
        }
        description.push(')');
    }
    t.insert("description".into(), json!(description));
    t.insert("inputSchema".into(), schema);
    if let Some(out) = &d.output_schema
        && out.get("type").and_then(Value::as_str) == Some("object")
    {
        t.insert("outputSchema".into(), out.clone());
    }
    if let Some(a) = &d.annotations {
        let v = serde_json::to_value(a).unwrap_or(Value::Null);
        if v.as_object().is_some_and(|o| !o.is_empty()) {
            t.insert("annotations".into(), v);
        }
    }
    Ok(Value::Object(t))
}

/// The builtin tools' definitions (`accounts` last: it is served only
/// with third-party MCP servers).
pub(crate) fn builtin_definitions() -> [Value; 7] {
    [
        json!({
            "name": "find_tools",
            "title": "Find tools",
            "description": "Search the tools you may call by words, or get the full definitions of named tools. \
                            Use it when tools/list was trimmed or to check a tool's arguments before calling it.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Words to look for in tool names and descriptions (the first 32 distinct words count)."},
                    "names": {"type": "array", "items": {"type": "string"}, "maxItems": 100, "description": "Exact tool names whose full definitions you want (at most 100)."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "At most this many matches (default 20)."}
                },
                "additionalProperties": false
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": "whoami",
            "title": "Who am I",
            "description": "Your identity and scopes as the gateway sees them, and what each backend you hold a scope for knows about you.",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": "report_missing_capability",
            "title": "Report a missing capability",
            "description": "When no tool does what the user needs, report it here so that the team running the app can add it. \
                            Reports of the same need about the same backend within 24 hours are merged; the answer has the ticket's id.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "whatIWanted": {"type": "string", "maxLength": 2000, "description": "What you wanted to do and could not, e.g. `list invoices by due date`."},
                    "userIntent": {"type": "string", "maxLength": 2000, "description": "What the user was trying to achieve."},
                    "severity": {"type": "string", "enum": ["blocking", "inconvenient", "nice_to_have"], "description": "`blocking`: the user could not finish; `inconvenient`: a workaround exists."},
                    "contextTool": {"type": "string", "maxLength": 128, "description": "The tool you were using, if any (its backend gets the ticket)."},
                    "backend": {"type": "string", "maxLength": 128, "description": "The backend the need concerns, when no contextTool names it."},
                    "suggestedShape": {"description": "The tool you would have wanted: name, arguments, result (at most 8 KiB of JSON)."}
                },
                "required": ["whatIWanted", "userIntent", "severity"],
                "additionalProperties": false
            },
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": true}
        }),
        json!({
            "name": "list_cortex_tickets",
            "title": "My reported needs",
            "description": "The tickets you reported with report_missing_capability (kept by the gateway or by the backend concerned), newest first.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "maxLength": 32, "description": "Only tickets with this status (`open`, `planned`, `done`, `declined`)."},
                    "severity": {"type": "string", "enum": ["blocking", "inconvenient", "nice_to_have"]},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "At most this many (default 50)."}
                },
                "additionalProperties": false
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": "list_cortex_resources",
            "title": "List resources",
            "description": "The resource templates you may read, and the gateway's own resources (cortex://architecture: the backends, your tools and the scopes).",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": "read_cortex_resource",
            "title": "Read a resource",
            "description": "Reads one resource by URI: cortex://architecture, or a URI built from a template of list_cortex_resources.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "uri": {"type": "string", "maxLength": 2048, "description": "The resource's URI."}
                },
                "required": ["uri"],
                "additionalProperties": false
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": true}
        }),
        json!({
            "name": ACCOUNTS_TOOL,
            "title": "Linked accounts",
            "description": "Your accounts at the third-party services behind this gateway. \
                            `list` shows, per service, the account you linked or a link to open in a browser to link one; \
                            `unlink` removes the gateway's access to one service (and revokes it there when the service allows).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["list", "unlink"], "description": "What to do (default `list`)."},
                    "server": {"type": "string", "maxLength": 128, "description": "The service to unlink (with `unlink`)."}
                },
                "additionalProperties": false
            },
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": true}
        }),
    ]
}

/// The builtins' definitions, full and compact, made once.
static BUILTIN_VIEWS: LazyLock<([Value; 7], [Value; 7])> = LazyLock::new(|| {
    let full = builtin_definitions();
    let compacts = std::array::from_fn(|i| compact(&full[i]));
    (full, compacts)
});

/// A compact entry for search mode: name, first line of the description,
/// minimal schema.
pub(crate) fn compact(definition: &Value) -> Value {
    let description = definition
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    json!({
        "name": definition["name"],
        "description": description,
        "inputSchema": {"type": "object"}
    })
}

impl Catalog {
    /// Merges the offers of the backends (configuration order) into a
    /// catalog. `prefix` says, per backend, whether names are prefixed.
    pub fn build(backends: &[(String, bool, Result<BackendOffer, String>)]) -> Self {
        Self::build_with(backends, false)
    }

    /// [`Catalog::build`], serving the `accounts` builtin when
    /// `accounts_tool` (third-party MCP servers are configured).
    pub(crate) fn build_with(
        backends: &[(String, bool, Result<BackendOffer, String>)],
        accounts_tool: bool,
    ) -> Self {
        let mut catalog = Catalog {
            accounts_tool,
            ..Catalog::default()
        };
        let mut tools: BTreeMap<String, CatalogTool> = BTreeMap::new();
        let mut prompts: BTreeMap<String, CatalogPrompt> = BTreeMap::new();
        let unprefixed: Vec<String> = backends
            .iter()
            .filter(|(_, prefix, _)| !*prefix)
            .map(|(id, _, _)| id.clone())
            .collect();
        for (id, prefix, offer) in backends {
            let offer = match offer {
                Ok(o) => {
                    catalog.health.push((id.clone(), Health::Up));
                    o
                }
                Err(reason) => {
                    catalog
                        .health
                        .push((id.clone(), Health::Down(reason.clone())));
                    continue;
                }
            };
            let public = |name: &str| {
                if *prefix {
                    format!("{id}_{name}")
                } else {
                    name.to_string()
                }
            };
            for d in &offer.tools {
                let name = public(&d.name);
                if !valid_mcp_name(&name) {
                    catalog.warnings.push(format!(
                        "backend {id}: tool `{name}` dropped: MCP names are 1-128 characters of [A-Za-z0-9_.-]"
                    ));
                    continue;
                }
                if BUILTINS.contains(&name.as_str()) && (accounts_tool || name != ACCOUNTS_TOOL) {
                    catalog.warnings.push(format!(
                        "backend {id}: tool `{name}` is masked by the gateway's builtin of that name"
                    ));
                    continue;
                }
                if let Some(existing) = tools.get(&name) {
                    let message = format!(
                        "backend {id}: tool `{name}` clashes with backend {}; the first keeps it",
                        existing.backend
                    );
                    if !*prefix || unprefixed.contains(&existing.backend) {
                        catalog.unprefixed_clashes.push(message.clone());
                    }
                    catalog.warnings.push(message);
                    continue;
                }
                match tool_definition(&name, d) {
                    Ok(definition) => {
                        tools.insert(
                            name.clone(),
                            CatalogTool {
                                name,
                                backend: id.clone(),
                                original: d.name.clone(),
                                scope: d.scope.clone(),
                                result_kind: d.result_kind.unwrap_or_default(),
                                definition,
                            },
                        );
                    }
                    Err(e) => catalog
                        .warnings
                        .push(format!("backend {id}: tool `{}` dropped: {e}", d.name)),
                }
            }
            for p in &offer.prompts {
                let name = public(&p.name);
                if prompts.contains_key(&name) {
                    catalog.warnings.push(format!(
                        "backend {id}: prompt `{name}` clashes; the first keeps it"
                    ));
                    continue;
                }
                let mut def = json!({"name": name, "description": p.description});
                if let Some(args) = &p.arguments {
                    def["arguments"] = serde_json::to_value(args).unwrap_or(json!([]));
                }
                prompts.insert(
                    name.clone(),
                    CatalogPrompt {
                        name,
                        backend: id.clone(),
                        original: p.name.clone(),
                        scope: p.scope.clone(),
                        definition: def,
                    },
                );
            }
            for t in &offer.templates {
                let Some(scheme) = scheme_of(&t.uri_template) else {
                    catalog.warnings.push(format!(
                        "backend {id}: resource template `{}` dropped: no URI scheme",
                        t.uri_template
                    ));
                    continue;
                };
                match catalog.schemes.get(&scheme) {
                    Some(owner) if owner != id => {
                        catalog.warnings.push(format!(
                            "backend {id}: URI scheme `{scheme}` already belongs to {owner}; template `{}` dropped",
                            t.uri_template
                        ));
                        continue;
                    }
                    _ => {
                        catalog.schemes.insert(scheme.clone(), id.clone());
                    }
                }
                let mut def = json!({"uriTemplate": t.uri_template, "name": t.name});
                if let Some(d) = &t.description {
                    def["description"] = json!(d);
                }
                if let Some(m) = &t.mime_type {
                    def["mimeType"] = json!(m);
                }
                catalog.templates.push(CatalogTemplate {
                    backend: id.clone(),
                    scheme,
                    uri_template: t.uri_template.clone(),
                    scope: t.scope.clone(),
                    definition: def,
                });
            }
        }
        catalog.tools = tools.into_values().collect();
        catalog.index = catalog
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        catalog.compacts = catalog
            .tools
            .iter()
            .map(|t| compact(&t.definition))
            .collect();
        catalog.prompts = prompts.into_values().collect();
        catalog
    }

    /// How many builtins this catalog serves (`accounts`, the last, only
    /// with third-party MCP servers).
    fn builtin_count(&self) -> usize {
        BUILTIN_VIEWS.0.len() - usize::from(!self.accounts_tool)
    }

    /// Whether the `accounts` builtin is served.
    pub(crate) fn serves_accounts_tool(&self) -> bool {
        self.accounts_tool
    }

    /// Entry `i` of a view: the builtins first, then the tools.
    fn definition(&self, i: usize, compact_mode: bool) -> &Value {
        let (full, compacts) = &*BUILTIN_VIEWS;
        match (i.checked_sub(self.builtin_count()), compact_mode) {
            (None, false) => &full[i],
            (None, true) => &compacts[i],
            (Some(t), false) => &self.tools[t].definition,
            (Some(t), true) => &self.compacts[t],
        }
    }

    /// The normalized key of a caller's view (see [`RenderKey`]).
    fn render_key(
        &self,
        granted: &[String],
        backends: Option<&[String]>,
        compact_mode: bool,
    ) -> RenderKey {
        let mut scopes = granted.to_vec();
        scopes.sort();
        scopes.dedup();
        let filter = backends.map(|wanted| {
            let mut known: Vec<u16> = self
                .health
                .iter()
                .enumerate()
                .filter(|(_, (id, _))| wanted.iter().any(|w| w == id))
                .map(|(i, _)| i as u16)
                .collect();
            known.shrink_to_fit();
            known
        });
        RenderKey {
            scopes,
            filter,
            compact: compact_mode,
        }
    }

    /// How full this catalog's `tools/list` caches are.
    pub fn cache_usage(&self) -> ListCacheUsage {
        ListCacheUsage {
            renders: lock(&self.caches.renders).usage(),
            pages: lock(&self.caches.pages).usage(),
        }
    }

    /// The tool with this public name.
    pub fn tool(&self, name: &str) -> Option<&CatalogTool> {
        self.index.get(name).map(|i| &self.tools[*i])
    }

    /// The prompt with this public name.
    pub fn prompt(&self, name: &str) -> Option<&CatalogPrompt> {
        self.prompts.iter().find(|p| p.name == name)
    }

    /// The scopes that gate something of `backend` in this catalog (its
    /// Every scope the catalog's tools, prompts and templates use (with
    /// repeats; the resource server sorts them).
    pub fn scopes_in_use(&self) -> Vec<String> {
        self.tools
            .iter()
            .map(|t| t.scope.clone())
            .chain(self.prompts.iter().map(|p| p.scope.clone()))
            .chain(self.templates.iter().map(|t| t.scope.clone()))
            .collect()
    }

    /// tools, prompts and resource templates; with repeats).
    pub fn scopes_of<'a>(&'a self, backend: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let tools = self.tools.iter().map(|t| (&t.backend, &t.scope));
        let prompts = self.prompts.iter().map(|p| (&p.backend, &p.scope));
        let templates = self.templates.iter().map(|t| (&t.backend, &t.scope));
        tools
            .chain(prompts)
            .chain(templates)
            .filter(move |(b, _)| b.as_str() == backend)
            .map(|(_, s)| s.as_str())
    }

    /// The first resource template (in the owning backend's order, as the
    /// backend itself routes a read) that matches `uri`.
    pub fn template_for(&self, uri: &str) -> Option<&CatalogTemplate> {
        let scheme = scheme_of(uri)?;
        self.templates.iter().find(|t| {
            t.scheme == scheme
                && cortex_backend::contract::uri_template_matches(&t.uri_template, uri)
        })
    }

    /// Backends that answered at the last refresh.
    pub fn healthy(&self) -> impl Iterator<Item = &str> {
        self.health
            .iter()
            .filter(|(_, h)| *h == Health::Up)
            .map(|(id, _)| id.as_str())
    }

    /// The tool definitions a caller with `granted` scopes sees, builtins
    /// first, optionally narrowed to some backends (ids that name no
    /// backend are ignored) and in compact form. Rendered once per
    /// distinct view for the life of this catalog, within the cache's
    /// bounds ([`RENDER_CACHE_ENTRIES`], [`RENDER_CACHE_BYTES`]).
    pub fn visible_tools(
        &self,
        granted: &[String],
        backends: Option<&[String]>,
        compact_mode: bool,
    ) -> Visible<'_> {
        let key = self.render_key(granted, backends, compact_mode);
        let mut renders = lock(&self.caches.renders);
        if let Some((key, entries)) = renders.get_key_value(&key) {
            return Visible {
                catalog: self,
                key,
                entries,
            };
        }
        let filter: Option<Vec<&str>> = key.filter.as_ref().map(|f| {
            f.iter()
                .map(|i| self.health[usize::from(*i)].0.as_str())
                .collect()
        });
        let builtins = self.builtin_count();
        let entries: Arc<[u32]> = (0..builtins as u32)
            .chain(
                self.tools
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| scopes::satisfies(granted, &t.scope))
                    .filter(|(_, t)| {
                        filter
                            .as_ref()
                            .is_none_or(|f| f.contains(&t.backend.as_str()))
                    })
                    .map(|(i, _)| (i + builtins) as u32),
            )
            .collect();
        let key = Arc::new(key);
        let bytes = key.bytes() + entries.len() * 4 + 64;
        renders.insert(key.clone(), entries.clone(), bytes);
        Visible {
            catalog: self,
            key,
            entries,
        }
    }

    /// A serialized `tools/list` result page of the view `visible`, built
    /// by `build` the first time this catalog is asked for it and then
    /// served as bytes: a request costs a copy, not a clone, serialization
    /// and drop of up to a page of tool definitions (docs/performance.md).
    /// Kept within [`PAGE_CACHE_ENTRIES`] and [`PAGE_CACHE_BYTES`].
    pub fn tools_page(
        &self,
        visible: &Visible<'_>,
        revision: &'static str,
        offset: usize,
        build: impl FnOnce() -> Vec<u8>,
    ) -> Arc<Page> {
        let key = (visible.key.clone(), revision, offset);
        if let Some(hit) = lock(&self.caches.pages).get(&key) {
            return hit;
        }
        let page = Arc::new(Page::new(Bytes::from(build())));
        let bytes = page.json.len() + page.json.len() / 4 + visible.key.bytes() + 128;
        lock(&self.caches.pages).insert(key, page.clone(), bytes);
        page
    }

    /// A fingerprint of each list, to tell whether a refresh changed it.
    pub fn fingerprints(&self) -> (u64, u64, u64) {
        use std::hash::{Hash, Hasher};
        let hash = |v: &mut dyn Iterator<Item = String>| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for s in v {
                s.hash(&mut h);
            }
            h.finish()
        };
        (
            hash(
                &mut self
                    .tools
                    .iter()
                    .map(|t| format!("{}{}{}", t.scope, t.backend, t.definition)),
            ),
            hash(
                &mut self
                    .prompts
                    .iter()
                    .map(|p| format!("{}{}", p.scope, p.definition)),
            ),
            hash(
                &mut self
                    .templates
                    .iter()
                    .map(|t| format!("{}{}", t.scope, t.definition)),
            ),
        )
    }
}

/// A serialized `tools/list` result page, and the same bytes compressed
/// for clients that accept gzip (made the first time one asks).
pub struct Page {
    /// The result object, serialized.
    pub json: Bytes,
    deflated: std::sync::OnceLock<Deflated>,
}

/// A page as raw deflate blocks that end on a sync flush (byte-aligned,
/// no final block), with the CRC-32 state of its bytes: a response puts it
/// between blocks of its own (the JSON-RPC envelope) without compressing
/// the page again or the envelope with it.
pub(crate) struct Deflated {
    /// The deflate blocks.
    pub(crate) blocks: Bytes,
    /// The CRC-32 of the page's uncompressed bytes, to be combined.
    pub(crate) crc: crc32fast::Hasher,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("bytes", &self.json.len())
            .field("deflated", &self.deflated.get().map(|d| d.blocks.len()))
            .finish()
    }
}

impl Page {
    pub(crate) fn new(json: Bytes) -> Self {
        Self {
            json,
            deflated: std::sync::OnceLock::new(),
        }
    }

    /// The page compressed (once; about a millisecond for 100 tools).
    pub(crate) fn deflated(&self) -> &Deflated {
        self.deflated.get_or_init(|| {
            use std::io::Write as _;
            let mut encoder = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(self.json.len() / 4 + 64),
                flate2::Compression::default(),
            );
            // Writing into a Vec cannot fail; `flush` ends on a sync flush
            // and, unlike `finish`, writes no final block.
            let _ = encoder.write_all(&self.json);
            let _ = encoder.flush();
            let blocks = Bytes::from(encoder.get_ref().clone());
            let mut crc = crc32fast::Hasher::new();
            crc.update(&self.json);
            Deflated { blocks, crc }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, scope: &str) -> ToolDescriptor {
        serde_json::from_value(
            json!({"name": name, "scope": scope, "description": "d", "params": {"q": "string?"}}),
        )
        .unwrap()
    }

    fn template(uri: &str) -> ResourceTemplate {
        serde_json::from_value(json!({"uriTemplate": uri, "name": "n", "scope": "s:r"})).unwrap()
    }

    #[test]
    fn names_order_clashes_and_schemes() {
        let long = "x".repeat(130);
        let crm = BackendOffer {
            tools: vec![tool("search", "mcp:crm:read"), tool(&long, "mcp:crm:read")],
            templates: vec![template("crm://a/{id}"), template("shared://x/{id}")],
            ..BackendOffer::default()
        };
        let docs = BackendOffer {
            tools: vec![
                tool("search", "mcp:docs:read"),
                tool("whoami", "mcp:docs:read"),
            ],
            templates: vec![template("shared://y/{id}")],
            ..BackendOffer::default()
        };
        let c = Catalog::build(&[
            ("docs".into(), true, Ok(docs.clone())),
            ("crm".into(), true, Ok(crm)),
            ("down".into(), true, Err("unreachable".into())),
        ]);
        let names: Vec<&str> = c.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["crm_search", "docs_search", "docs_whoami"]);
        assert!(c.warnings.iter().any(|w| w.contains("dropped: MCP names")));
        assert_eq!(
            c.schemes["shared"], "docs",
            "the first owner keeps a scheme"
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("already belongs to docs"))
        );
        assert_eq!(
            c.health[2],
            ("down".into(), Health::Down("unreachable".into()))
        );
        assert_eq!(c.tool("crm_search").unwrap().original, "search");
        assert_eq!(
            c.tool("crm_search").unwrap().definition["inputSchema"]["properties"]["q"]["type"],
            "string"
        );
        assert!(c.unprefixed_clashes.is_empty());

        // Unprefixed: the builtin masks `whoami`; a clash is recorded.
        let c = Catalog::build(&[
            ("docs".into(), false, Ok(docs.clone())),
            ("other".into(), false, Ok(docs)),
        ]);
        assert!(c.tool("whoami").is_none());
        assert_eq!(c.tool("search").unwrap().backend, "docs");
        assert_eq!(c.unprefixed_clashes.len(), 1);
    }

    #[test]
    fn renderings_are_cached_per_scope_set() {
        let offer = BackendOffer {
            tools: vec![tool("read", "mcp:crm:read"), tool("write", "mcp:crm:write")],
            ..BackendOffer::default()
        };
        let c = Catalog::build(&[("crm".into(), true, Ok(offer))]);
        let reader = c.visible_tools(&["mcp:crm:read".into()], None, false);
        // The builtins but `accounts`, then the tools.
        let builtins = BUILTINS.len() - 1;
        assert_eq!(reader.len(), builtins + 1);
        let writer = c.visible_tools(&["mcp:crm:write".into()], None, false);
        assert_eq!(writer.len(), builtins + 2, "write implies read");
        let again = c.visible_tools(&["mcp:crm:read".into(), "mcp:crm:read".into()], None, false);
        assert!(Arc::ptr_eq(&reader.entries, &again.entries));
        let compact = c.visible_tools(&["mcp:crm:read".into()], None, true);
        let names: Vec<&Value> = compact.iter().map(|d| &d["name"]).collect();
        assert_eq!(
            names,
            [
                "find_tools",
                "whoami",
                "report_missing_capability",
                "list_cortex_tickets",
                "list_cortex_resources",
                "read_cortex_resource",
                "crm_read"
            ]
        );
        assert_eq!(
            compact.iter().nth(builtins).unwrap()["inputSchema"],
            json!({"type": "object"})
        );
        assert_eq!(c.cache_usage().renders.entries, 3);
    }

    /// Backend filters that name unknown backends, in any order and with
    /// repeats, share the rendering and the pages of the known ids they
    /// name; and however many distinct views are asked for, both caches
    /// stay within their bounds.
    #[test]
    fn unknown_filter_ids_share_a_view_and_the_caches_stay_bounded() {
        let many: Vec<ToolDescriptor> = (0..300)
            .map(|i| tool(&format!("t{i}_{}", "d".repeat(60)), "mcp:crm:read"))
            .collect();
        let c = Catalog::build(&[
            (
                "crm".into(),
                true,
                Ok(BackendOffer {
                    tools: many,
                    ..BackendOffer::default()
                }),
            ),
            (
                "docs".into(),
                true,
                Ok(BackendOffer {
                    tools: vec![tool("search", "mcp:docs:read")],
                    ..BackendOffer::default()
                }),
            ),
        ]);
        let scopes = vec!["mcp:crm:read".to_string(), "mcp:docs:read".to_string()];
        let page = |filter: &[String]| {
            let view = c.visible_tools(&scopes, Some(filter), false);
            let names: Vec<String> = view
                .range(0, 5)
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            let bytes = c
                .tools_page(&view, "2026-07-28", 0, || names.join(",").into_bytes())
                .json
                .clone();
            (view.len(), view.backend_filter(), bytes)
        };
        let expected = page(&["crm".into()]);
        assert_eq!(expected.0, 300 + BUILTINS.len() - 1);
        assert_eq!(expected.1, Some(vec!["crm".to_string()]));
        for n in 0..5_000 {
            let junk = vec![format!("junk{n}"), "crm".into(), "crm".into()];
            assert_eq!(page(&junk), expected, "{junk:?}");
        }
        let usage = c.cache_usage();
        assert_eq!((usage.renders.entries, usage.pages.entries), (1, 1));
        // Nothing but unknown ids: the builtins only, one view for all.
        let (len, filter, _) = page(&["junk".into()]);
        assert_eq!((len, filter), (BUILTINS.len() - 1, Some(vec![])));
        let (both, _, _) = page(&["docs".into(), "junk".into(), "crm".into()]);
        assert_eq!(both, 301 + BUILTINS.len() - 1);

        // Distinct real views (scope sets, as many tokens would bring)
        // are cached up to the bounds, never beyond them.
        for n in 0..(RENDER_CACHE_ENTRIES + PAGE_CACHE_ENTRIES) * 2 {
            let scopes = vec!["mcp:crm:read".to_string(), format!("other:{n}")];
            let view = c.visible_tools(&scopes, None, n % 2 == 0);
            assert_eq!(view.len(), 300 + BUILTINS.len() - 1);
            c.tools_page(&view, "2025-11-25", 100, || vec![b'x'; 64 << 10]);
            let usage = c.cache_usage();
            assert!(usage.renders.entries <= RENDER_CACHE_ENTRIES, "{usage:?}");
            assert!(usage.renders.bytes <= RENDER_CACHE_BYTES, "{usage:?}");
            assert!(usage.pages.entries <= PAGE_CACHE_ENTRIES, "{usage:?}");
            assert!(usage.pages.bytes <= PAGE_CACHE_BYTES, "{usage:?}");
        }
        let usage = c.cache_usage();
        assert_eq!(usage.renders.entries, RENDER_CACHE_ENTRIES);
        assert!(usage.pages.bytes > PAGE_CACHE_BYTES / 2, "{usage:?}");
    }

    /// Who keeps a name: the previous owner while it offers the tool or
    /// is down; nobody's name goes by configuration order; an owner that
    /// answers without the tool gives the name up.
    #[test]
    fn names_stay_with_their_owner() {
        let offer = |names: &[&str]| {
            Ok(BackendOffer {
                tools: names.iter().map(|n| tool(n, "s:read")).collect(),
                ..BackendOffer::default()
            })
        };
        let mut first = vec![
            ("a".to_string(), false, offer(&["x"])),
            ("b".to_string(), false, offer(&["shared"])),
        ];
        let (owners, clashes) = settle_names(&mut first, &HashMap::new());
        assert!(clashes.is_empty());
        assert_eq!(owners["shared"], "b");

        let mut later = vec![
            ("a".to_string(), false, offer(&["x", "shared"])),
            ("b".to_string(), false, offer(&["shared"])),
        ];
        let (owners, clashes) = settle_names(&mut later, &owners);
        assert_eq!(owners["shared"], "b");
        assert_eq!(
            clashes,
            [NameClash {
                tool: "shared".into(),
                owner: "b".into(),
                refused: "a".into()
            }]
        );
        let a_tools: Vec<&str> = later[0]
            .2
            .as_ref()
            .unwrap()
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(a_tools, ["x"]);

        let mut down = vec![
            ("a".to_string(), false, offer(&["x", "shared"])),
            ("b".to_string(), false, Err("down".to_string())),
        ];
        let (owners, clashes) = settle_names(&mut down, &owners);
        assert_eq!((owners["shared"].as_str(), clashes.len()), ("b", 1));

        let mut released = vec![
            ("a".to_string(), false, offer(&["x", "shared"])),
            ("b".to_string(), false, offer(&[])),
        ];
        let (owners, clashes) = settle_names(&mut released, &owners);
        assert_eq!((owners["shared"].as_str(), clashes.len()), ("a", 0));
    }
}
