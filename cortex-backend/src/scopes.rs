//! Scope matching, shared by the SDK and the gateway so they never disagree.
//!
//! The one implication (contract §4, ext): `mcp:<domain>:write` satisfies
//! `mcp:<domain>:read`. Nothing else implies anything.

/// Whether a set of granted scopes satisfies `required`.
///
/// ```
/// use cortex_backend::scopes::satisfies;
/// let granted = ["mcp:crm:write".to_string()];
/// assert!(satisfies(&granted, "mcp:crm:read"));
/// assert!(satisfies(&granted, "mcp:crm:write"));
/// assert!(!satisfies(&granted, "mcp:docs:read"));
/// assert!(!satisfies(&["mcp:crm:read".to_string()], "mcp:crm:write"));
/// ```
pub fn satisfies<S: AsRef<str>>(granted: &[S], required: &str) -> bool {
    if granted.iter().any(|g| g.as_ref() == required) {
        return true;
    }
    match implied_by(required) {
        Some(write) => granted.iter().any(|g| g.as_ref() == write),
        None => false,
    }
}

/// The scope that implies `required`, if any: `mcp:<d>:write` for
/// `mcp:<d>:read`.
pub fn implied_by(required: &str) -> Option<String> {
    let domain = required.strip_prefix("mcp:")?.strip_suffix(":read")?;
    if domain.is_empty() || domain.contains(':') {
        return None;
    }
    Some(format!("mcp:{domain}:write"))
}

/// Whether a scope follows the `mcp:<domain>:<action>` convention.
pub fn is_conventional(scope: &str) -> bool {
    let mut parts = scope.split(':');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
    };
    parts.next() == Some("mcp") && ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Whether `scope` is one OAuth scope token (RFC 6749 §3.3): printable
/// ASCII without space, `"` or `\`. A sentence never is.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_write_implies_read_in_the_same_domain() {
        let w = ["mcp:crm:write"];
        assert!(satisfies(&w, "mcp:crm:read"));
        assert!(!satisfies(&w, "mcp:crm:admin"));
        assert!(!satisfies(&w, "mcp:crmx:read"));
        assert!(!satisfies(&["mcp:crm:admin"], "mcp:crm:read"));
        assert!(!satisfies(&["mcp::write"], "mcp::read"));
        assert!(!satisfies::<&str>(&[], "mcp:crm:read"));
    }

    #[test]
    fn convention() {
        assert!(is_conventional("mcp:billing:write"));
        assert!(!is_conventional("billing.write"));
        assert!(!is_conventional("mcp:billing"));
        assert!(!is_conventional("mcp:billing:write:x"));
        assert!(is_scope_token("crm.export"));
        assert!(is_scope_token("mcp:billing:write"));
        assert!(!is_scope_token("Log a call."));
        assert!(!is_scope_token(""));
        assert!(!is_scope_token("a\"b"));
        assert!(!is_scope_token("é"));
    }
}
