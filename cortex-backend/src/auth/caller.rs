use serde_json::Value;

use crate::contract::UserContext;

/// A validated user: identity and scopes from the token's claims only.
#[derive(Clone)]
pub struct Caller {
    /// `sub`.
    pub sub: String,
    /// `email`, when present.
    pub email: Option<String>,
    /// `name` (display name), when present.
    pub name: Option<String>,
    /// Role, from the configured claim path.
    pub role: Option<String>,
    /// Pool, from the configured claim path.
    pub pool: Option<String>,
    /// Scopes from `scope` (space-separated) or `scp` (array).
    pub scopes: Vec<String>,
    /// `client_id` or `azp`, when present.
    pub client_id: Option<String>,
    /// `act.sub` (RFC 8693 actor): who presents the token on the user's
    /// behalf. In gateway-assertion mode (`CORTEX_GATEWAY_ISSUER`) it is
    /// always the trusted gateway; otherwise whatever the issuer wrote, if
    /// anything.
    pub actor: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// All claims, for app-specific rules.
    pub claims: Value,
    token: String,
}

#[cfg(feature = "testing")]
impl Caller {
    /// A caller holding `scopes`, for tests of the layers above token
    /// validation (no token was checked; its token is a placeholder).
    pub fn for_tests(sub: &str, scopes: &[&str]) -> Self {
        Self {
            sub: sub.to_string(),
            email: None,
            name: None,
            role: None,
            pool: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_id: None,
            actor: None,
            expires_at: u64::MAX,
            claims: serde_json::json!({"sub": sub}),
            token: "not-a-token".to_string(),
        }
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("sub", &self.sub)
            .field("actor", &self.actor)
            .field("role", &self.role)
            .field("pool", &self.pool)
            .field("scopes", &self.scopes)
            .field("token", &"[masked]")
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub(crate) fn from_claims(
        claims: Value,
        token: &str,
        role_claim: &str,
        pool_claim: &str,
    ) -> Result<Self, String> {
        let str_claim = |name: &str| claim_path(&claims, name).and_then(scalar_string);
        let sub = str_claim("sub").ok_or("the `sub` claim is missing or not a string")?;
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(String::from).collect(),
            (_, Some(Value::Array(items))) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            (_, Some(Value::String(s))) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("the `exp` claim is missing or not a number")?;
        let actor = claims
            .get("act")
            .and_then(|act| act.get("sub"))
            .and_then(Value::as_str)
            .map(String::from);
        Ok(Self {
            email: str_claim("email"),
            name: str_claim("name"),
            actor,
            role: str_claim(role_claim),
            pool: str_claim(pool_claim),
            client_id: str_claim("client_id").or_else(|| str_claim("azp")),
            sub,
            scopes,
            expires_at,
            token: token.to_string(),
            claims,
        })
    }

    /// Whether the caller holds `scope` (with the write-implies-read rule).
    pub fn has_scope(&self, scope: &str) -> bool {
        crate::scopes::satisfies(&self.scopes, scope)
    }

    /// The raw bearer token, for calling other services on the user's behalf.
    /// Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The identity as the contract's `UserContext`.
    pub fn user_context(&self) -> UserContext {
        UserContext {
            sub: self.sub.clone(),
            email: self.email.clone(),
            role: self.role.clone(),
            pool: self.pool.clone(),
            scopes: self.scopes.clone(),
        }
    }
}

/// Looks up a claim by name, then by dotted path (`metadata.role`).
fn claim_path<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_and_paths() {
        let c = Caller::from_claims(
            json!({"sub": "u1", "exp": 10, "scp": ["a", "b"], "metadata": {"role": "hr"}, "pool": "eu"}),
            "t",
            "metadata.role",
            "pool",
        )
        .unwrap();
        assert_eq!(c.scopes, ["a", "b"]);
        assert_eq!(c.role.as_deref(), Some("hr"));
        assert_eq!(c.pool.as_deref(), Some("eu"));
        assert_eq!(c.actor, None);
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn scope_string_wins() {
        let c = Caller::from_claims(
            json!({"sub": "u1", "exp": 10, "scope": "x y", "scp": ["z"]}),
            "t",
            "role",
            "pool",
        )
        .unwrap();
        assert_eq!(c.scopes, ["x", "y"]);
        assert!(Caller::from_claims(json!({"exp": 1}), "t", "role", "pool").is_err());
    }
}
