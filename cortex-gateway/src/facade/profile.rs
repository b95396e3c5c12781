//! What differs between identity providers, as data: one [`Profile`] row
//! per [`FacadeProfile`]. The flow in `facade/mod.rs` reads these fields
//! and has no branch on the provider's name.
//!
//! The rows record these facts about each provider:
//!
//! - **Entra ID** serves only OpenID discovery (no RFC 8414), under the v2
//!   issuer `https://login.microsoftonline.com/<tenant>/v2.0`; it supports
//!   PKCE S256 without advertising it; it rejects the RFC 8707 `resource`
//!   parameter (AADSTS9010010) when v2 scopes are used; scopes of an API
//!   are `api://<app>/<name>` while the access token's `scp` carries the
//!   bare names; app roles come in `roles`; the stable user id is `oid`
//!   (`sub` is pairwise per application) and the sign-in name
//!   `preferred_username`.
//! - **Okta** and **Auth0** ignore `resource` and take the API's audience
//!   in an `audience` parameter; Okta puts `scp` (an array) and `groups`
//!   in its tokens, Auth0 `scope` and, with RBAC, `permissions`.
//! - **Keycloak** serves only OpenID discovery, ignores `resource`, and
//!   puts realm roles under `realm_access.roles`.
//! - A generic **OIDC** provider is asked with RFC 8707 `resource` when an
//!   audience is configured, and read through `scope`/`scp`.

use super::settings::FacadeProfile;

/// How the provider's metadata is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discovery {
    /// `<issuer>/.well-known/openid-configuration` only.
    OpenIdOnly,
    /// RFC 8414 first, then OpenID discovery.
    Rfc8414ThenOpenId,
}

/// One identity provider's differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Profile {
    /// How its metadata is found.
    pub(crate) discovery: Discovery,
    /// Whether S256 must be advertised in its metadata (Entra supports it
    /// without saying so).
    pub(crate) pkce_advertised: bool,
    /// The parameter that carries the configured audience to the
    /// authorization and token endpoints (`None`: none is sent, whatever
    /// the agent asked for).
    pub(crate) audience_parameter: Option<&'static str>,
    /// Whether the default scope prefix is `api://<client id>/`.
    pub(crate) api_scope_prefix: bool,
    /// Whether the client id is an accepted audience of its access tokens
    /// when none is configured.
    pub(crate) client_id_audience: bool,
    /// Claim naming the user (the `sub` of the gateway's tokens).
    pub(crate) subject_claim: &'static str,
    /// Claims naming the e-mail, first present wins.
    pub(crate) email_claims: &'static [&'static str],
    /// Claim holding the display name.
    pub(crate) name_claim: &'static str,
    /// Claims whose values are granted scopes (space-separated string or
    /// array), read from the access token (when it validates) or else
    /// from the token endpoint's `scope`.
    pub(crate) scope_claims: &'static [&'static str],
    /// Claims (dotted paths) whose values are granted as scopes: roles or
    /// permissions.
    pub(crate) role_claims: &'static [&'static str],
    /// Claim holding group names (mapped by `CORTEX_FACADE_GROUP_SCOPES`).
    pub(crate) groups_claim: &'static str,
}

/// The row of `profile`.
pub(crate) fn profile(profile: FacadeProfile) -> Profile {
    match profile {
        FacadeProfile::Entra => Profile {
            discovery: Discovery::OpenIdOnly,
            pkce_advertised: false,
            audience_parameter: None,
            api_scope_prefix: true,
            client_id_audience: true,
            subject_claim: "oid",
            email_claims: &["email", "preferred_username"],
            name_claim: "name",
            scope_claims: &["scp"],
            role_claims: &["roles"],
            groups_claim: "groups",
        },
        FacadeProfile::Okta => Profile {
            discovery: Discovery::OpenIdOnly,
            pkce_advertised: true,
            audience_parameter: Some("audience"),
            api_scope_prefix: false,
            client_id_audience: false,
            subject_claim: "sub",
            email_claims: &["email"],
            name_claim: "name",
            scope_claims: &["scp", "scope"],
            role_claims: &[],
            groups_claim: "groups",
        },
        FacadeProfile::Keycloak => Profile {
            discovery: Discovery::OpenIdOnly,
            pkce_advertised: true,
            audience_parameter: None,
            api_scope_prefix: false,
            client_id_audience: true,
            subject_claim: "sub",
            email_claims: &["email"],
            name_claim: "name",
            scope_claims: &["scope"],
            role_claims: &["realm_access.roles"],
            groups_claim: "groups",
        },
        FacadeProfile::Auth0 => Profile {
            discovery: Discovery::OpenIdOnly,
            pkce_advertised: true,
            audience_parameter: Some("audience"),
            api_scope_prefix: false,
            client_id_audience: false,
            subject_claim: "sub",
            email_claims: &["email"],
            name_claim: "name",
            scope_claims: &["scope"],
            role_claims: &["permissions"],
            groups_claim: "groups",
        },
        FacadeProfile::Oidc => Profile {
            discovery: Discovery::Rfc8414ThenOpenId,
            pkce_advertised: true,
            audience_parameter: Some("resource"),
            api_scope_prefix: false,
            client_id_audience: true,
            subject_claim: "sub",
            email_claims: &["email"],
            name_claim: "name",
            scope_claims: &["scope", "scp"],
            role_claims: &[],
            groups_claim: "groups",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entra_and_keycloak_never_send_an_audience() {
        for p in [
            FacadeProfile::Entra,
            FacadeProfile::Okta,
            FacadeProfile::Keycloak,
            FacadeProfile::Auth0,
            FacadeProfile::Oidc,
        ] {
            let row = profile(p);
            let resource = row.audience_parameter == Some("resource");
            assert_eq!(resource, p == FacadeProfile::Oidc, "{p:?}");
        }
        assert_eq!(profile(FacadeProfile::Entra).audience_parameter, None);
        assert_eq!(profile(FacadeProfile::Keycloak).audience_parameter, None);
        for p in [FacadeProfile::Okta, FacadeProfile::Auth0] {
            assert_eq!(profile(p).audience_parameter, Some("audience"), "{p:?}");
        }
        assert_eq!(profile(FacadeProfile::Entra).subject_claim, "oid");
    }
}
