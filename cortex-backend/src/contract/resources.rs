//! `list_resource_templates` and `read_resource`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A resource template (RFC 6570 URI template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplate {
    /// E.g. `docs://document/{id}`; the scheme routes reads to this backend.
    pub uri_template: String,
    /// Name.
    pub name: String,
    /// What the resources are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// OAuth scope required to read.
    pub scope: String,
}

impl ResourceTemplate {
    /// Whether `uri` is one of the URIs this template describes, matched
    /// the way a backend routes `read_resource` (RFC 6570 level 1 and
    /// `{+name}`: `{name}` matches a non-empty run without `/`, `{+name}`
    /// any non-empty run). A gateway uses it to apply the matching
    /// template's scope.
    pub fn matches(&self, uri: &str) -> bool {
        uri_template_matches(&self.uri_template, uri)
    }
}

/// Whether `uri` matches the URI template `template` (see
/// [`ResourceTemplate::matches`]).
pub fn uri_template_matches(template: &str, uri: &str) -> bool {
    crate::backend::match_template(template, uri).is_some()
}

/// `list_resource_templates` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplateList {
    /// The templates.
    pub resource_templates: Vec<ResourceTemplate>,
}

/// `read_resource` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadResourceParams {
    /// The URI to read.
    pub uri: String,
}

/// One content item of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceContent {
    /// The URI.
    pub uri: String,
    /// MIME type.
    pub mime_type: String,
    /// Text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// `read_resource` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadResourceResult {
    /// The contents.
    pub contents: Vec<ResourceContent>,
}
