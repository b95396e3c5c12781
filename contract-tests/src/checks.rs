//! The catalog of checks: stable ids, what each one verifies, and the rule of
//! `contract.md` it enforces. Ids never change meaning; new checks get new
//! ids.

use serde::Serialize;

/// One check of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckInfo {
    /// Stable id, `<group>.<name>` (for `--only` and CI dashboards).
    pub id: &'static str,
    /// One line: what the check verifies.
    pub description: &'static str,
    /// The section of `contract.md` that states the rule, e.g. `§2`.
    pub section: &'static str,
    /// The rule, in the contract's words or close to them.
    pub requires: &'static str,
}

impl CheckInfo {
    /// The group of the id (`transport`, `auth`, ...).
    pub fn group(&self) -> &'static str {
        self.id.split_once('.').map_or(self.id, |(g, _)| g)
    }
}

macro_rules! checks {
    ($($id:literal, $section:literal, $description:literal, $requires:literal;)*) => {
        /// Every check, in the order they run and are reported.
        pub const CHECKS: &[CheckInfo] = &[
            $(CheckInfo { id: $id, section: $section, description: $description, requires: $requires },)*
        ];
    };
}

checks! {
    "catalog.list-tools", "§3",
        "list_tools with the technical token answers 200 with {\"tools\": [...]}",
        "A backend MUST implement list_tools; the technical token may call it.";
    "catalog.descriptor-schema", "§4",
        "Every tool descriptor is valid against schemas/tool-descriptor.schema.json",
        "Each ToolDescriptor has name, scope and description, and its optional fields have the documented types.";
    "catalog.unique-names", "§4",
        "Tool names are unique",
        "name is unique in this backend.";
    "catalog.name-format", "§4",
        "Tool names match ^[A-Za-z0-9_-]{1,64}$ and are not reserved method names",
        "name matches ^[A-Za-z0-9_-]{1,64}$ (so <backendId>_<name> stays within MCP's 128 characters); reserved method names are not tools (get_help excepted).";
    "catalog.input-schema", "§4",
        "Every inputSchema is a valid, self-resolving JSON Schema with root type object",
        "inputSchema MUST be a JSON Schema whose root has \"type\": \"object\"; the gateway forwards it verbatim, so it cannot point at other documents.";
    "catalog.input-schema-self-contained", "§4",
        "inputSchemas are inlined, without $ref or $defs (warning)",
        "Schemas are forwarded verbatim to MCP clients, many of which do not resolve $ref; inline them.";
    "catalog.params-types", "§4",
        "Simplified params use only the contract's type words",
        "params types: string, number, boolean, string[], number[], boolean[], with a trailing ? for optional.";
    "catalog.output-schema", "§4",
        "Every outputSchema is a valid JSON Schema with root type object",
        "outputSchema (ext), when present, MUST have \"type\": \"object\" at its root.";
    "catalog.version-semver", "§4",
        "Tool versions are semver",
        "version is the semver of the tool's contract (e.g. 1.2.0); absent means 1.0.0.";
    "catalog.deprecation-date", "§4",
        "Deprecation dates are ISO 8601",
        "deprecated.removedAt is an ISO 8601 date, e.g. 2027-01-01.";
    "catalog.scope-convention", "§4",
        "Scopes follow mcp:<domain>:<action> (warning)",
        "Scope naming convention: mcp:<domain>:<action> (e.g. mcp:billing:write).";
    "catalog.prompts", "§5",
        "list_prompts, when implemented, is valid against schemas/prompt-list.schema.json",
        "list_prompts returns {\"prompts\": [PromptDescriptor]}; an optional method answers 400 when not implemented.";
    "catalog.resource-templates", "§5",
        "list_resource_templates, when implemented, is valid and every uriTemplate has a scheme",
        "list_resource_templates returns {\"resourceTemplates\": [ResourceTemplate]} with RFC 6570 templates whose scheme routes reads.";
    "transport.post-only", "§1",
        "GET, PUT and DELETE on the endpoint get 405 or 404, never 2xx or 5xx",
        "Any HTTP method other than POST on the path: 405 (or 404). Never 5xx.";
    "transport.malformed-json", "§1, §6",
        "A body that is not JSON gets 400 with a JSON error body",
        "Bad requests get 400 with {\"error\": string} as application/json.";
    "transport.params-not-object", "§1, §6",
        "params that is not an object gets 400 with a JSON error body",
        "params MUST be a JSON object when present; anything else is a bad request (400, {\"error\": string}).";
    "transport.content-type", "§1, §6",
        "A body sent as text/plain gets 400 (or 415) with a JSON error body",
        "Requests carry Content-Type: application/json; others are refused with a JSON error body.";
    "transport.empty-body", "§1, §6",
        "An empty body gets 400 with a JSON error body",
        "The body is {\"method\": ..., \"params\"?: ...}; an empty body is a bad request (400, {\"error\": string}).";
    "transport.oversized-body", "§6",
        "A body over the backend's limit gets 413 with a JSON error body",
        "413 {\"error\": string}: request body over the backend's limit.";
    "transport.unknown-method", "§3, §6",
        "An unknown method gets 400 with a JSON error body",
        "Unknown method: 400 {\"error\": string}; the gateway reads it as \"not implemented\".";
    "auth.valid-token", "§2",
        "A valid user token is accepted",
        "User tokens signed by the issuer, for the configured audience, within their lifetime, are accepted.";
    "auth.no-token", "§2",
        "A request without a token gets 401",
        "Missing, malformed or invalid token: 401 with {\"error\": \"...\"}.";
    "auth.wrong-technical-token", "§2",
        "An unknown static token gets 401",
        "Technical tokens are compared in constant time against the configured ones; anything else is an invalid token (401).";
    "auth.expired-token", "§2",
        "An expired user token gets 401",
        "The backend MUST validate exp (small leeway); invalid token: 401.";
    "auth.not-yet-valid-token", "§2",
        "A user token whose nbf is in the future gets 401",
        "The backend MUST validate nbf (small leeway); invalid token: 401.";
    "auth.wrong-issuer", "§2",
        "A user token from another issuer gets 401",
        "The backend MUST validate iss; invalid token: 401.";
    "auth.wrong-audience", "§2",
        "A user token for another audience gets 401",
        "The backend MUST validate aud; invalid token: 401.";
    "auth.bad-signature", "§2",
        "A user token with a forged signature gets 401",
        "The backend MUST validate the signature with keys from the issuer's JWKS; invalid token: 401.";
    "auth.unknown-kid", "§2",
        "A user token signed with a key the JWKS does not have gets 401",
        "Keys come from the issuer's JWKS only; invalid token: 401.";
    "auth.hs256-public-key", "§2",
        "An HS256 token keyed with the issuer's public key gets 401",
        "Allowed algorithms are asymmetric only: never an HMAC secret derived from a public key; invalid token: 401.";
    "auth.alg-none", "§2",
        "An unsigned token (alg none) gets 401",
        "Allowed algorithms are asymmetric only, never none; invalid token: 401.";
    "auth.missing-aud", "§2",
        "A user token without aud gets 401",
        "The backend MUST validate aud; a token without one is invalid: 401.";
    "assert.without-act", "§2",
        "In assert mode, a gateway assertion without act gets 401",
        "A backend that trusts gateway assertions accepts only tokens whose act.sub names the gateway (RFC 8693 actor); invalid token: 401.";
    "assert.foreign-actor", "§2",
        "In assert mode, an assertion whose act.sub is not the gateway gets 401",
        "act.sub MUST equal the trusted gateway's issuer; invalid token: 401.";
    "assert.idp-token", "§2",
        "In assert mode, an identity provider's token for the gateway's audience gets 401",
        "A backend that trusts gateway assertions never accepts a caller's own token (what forward mode passes on), so a token it collects cannot be replayed to it; invalid token: 401.";
    "assert.gateway-audience", "§2",
        "In assert mode, a token the gateway signed for its own public audience gets 401",
        "A token for the gateway's canonical URI (a caller's token, or one the gateway issued an agent) is not an assertion for this backend; invalid token: 401.";
    "technical.tools-refused", "§2",
        "Every listed tool refuses the technical token with 403",
        "The technical token MAY call only list_tools, list_prompts, list_resource_templates and get_snapshot; every other method MUST get 403.";
    "technical.get-help-refused", "§2",
        "get_help refuses the technical token with 403",
        "The technical token MAY call only the discovery methods; get_help with it MUST get 403.";
    "technical.whoami-refused", "§2",
        "whoami refuses the technical token with 403",
        "The technical token is not an identity; whoami with it MUST get 403.";
    "technical.get-prompt-refused", "§2",
        "get_prompt refuses the technical token with 403",
        "The technical token MAY call only the discovery methods; get_prompt with it MUST get 403.";
    "technical.read-resource-refused", "§2",
        "read_resource refuses the technical token with 403",
        "The technical token MAY call only the discovery methods; read_resource with it MUST get 403.";
    "whoami.identity", "§3",
        "whoami with a user token answers 200 with a JSON object",
        "A backend SHOULD implement whoami: the caller's effective identity, role and capabilities in this backend.";
    "scopes.missing-scope", "§4, §6",
        "A token without a tool's scope gets 403 with required naming that scope",
        "The backend re-checks the scope: 403 {\"error\", \"required\": scope} when the token lacks it.";
    "scopes.header-spoofing", "§2",
        "X-Cortex-* headers naming another user do not change whoami",
        "Identity and scopes come from the validated token; the X-Cortex-* headers MUST NOT override its claims.";
    "help.all-sections", "§3, §7",
        "get_help without a topic answers 200 with the sections as a JSON object",
        "get_help returns all sections when topic is absent, as structured JSON.";
    "help.known-topic", "§3, §7",
        "get_help with a known topic answers 200 with that section only",
        "get_help returns one section when topic is present.";
    "help.unknown-topic", "§3, §7",
        "get_help with an unknown topic gets 400 listing the known topics",
        "An unknown topic gets 400 listing the known topics.";
    "arguments.wrong-type", "§6",
        "A wrongly typed argument gets 400, never 2xx or 5xx",
        "Bad params: 400 {\"error\": string}; 500 is for unexpected failures only.";
    "tools.read-only-call", "§6",
        "Read-only tools called with schema-generated arguments never answer 5xx",
        "500 is for unexpected failures; valid arguments to a read-only tool get a result or a 4xx.";
    "tools.output-schema", "§4",
        "Results of read-only tools validate against their outputSchema",
        "When outputSchema is declared, the tool's result MUST validate against it.";
    "snapshot.envelope", "§5",
        "get_snapshot, when implemented, is valid against schemas/snapshot.schema.json",
        "Snapshot: {backend, generatedAt (ISO 8601), title, headline: [Metric], sections?, hint?}.";
    "robustness.concurrent-list-tools", "§8",
        "32 concurrent list_tools calls all succeed with identical catalogs",
        "The gateway discovers catalogs in parallel and fingerprints them; list_tools must be stable under concurrency.";
}

/// The group of the checks that run only with `--identity assert`
/// ([`crate::Identity::Assert`]).
pub const ASSERT_GROUP: &str = "assert";

/// The check with this id.
pub fn check_info(id: &str) -> Option<&'static CheckInfo> {
    CHECKS.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::CHECKS;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CHECKS {
            assert!(seen.insert(c.id), "duplicate id {}", c.id);
            assert!(
                c.id.split_once('.').is_some()
                    && c.id.chars().all(|ch| ch.is_ascii_lowercase()
                        || ch.is_ascii_digit()
                        || ch == '.'
                        || ch == '-'),
                "bad id {}",
                c.id
            );
        }
    }
}
