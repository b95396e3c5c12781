//! The agents the facade knows: clients registered with `/register`
//! (RFC 7591, public clients, kept in the store) and clients whose id is
//! the URL of their Client ID Metadata Document (fetched when they start a
//! sign-in: https, or http to a loopback host; no redirects; capped).

use serde_json::{Value, json};

use crate::store::facade::RegisteredClient;

/// The largest registration request read.
pub(crate) const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
/// The largest metadata document read.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Redirect URIs a client may register.
const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI accepted.
const MAX_URI_BYTES: usize = 2048;
/// The longest client name kept (characters).
const MAX_NAME_CHARS: usize = 200;

/// Why a client is refused: the RFC 7591 error and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientError {
    /// `invalid_redirect_uri` or `invalid_client_metadata`.
    pub(crate) error: &'static str,
    /// What is wrong.
    pub(crate) description: String,
}

fn metadata_error(description: impl Into<String>) -> ClientError {
    ClientError {
        error: "invalid_client_metadata",
        description: description.into(),
    }
}

fn uri_error(description: impl Into<String>) -> ClientError {
    ClientError {
        error: "invalid_redirect_uri",
        description: description.into(),
    }
}

/// Whether `uri` may be a redirect URI: https, http to a loopback host
/// (RFC 8252 native apps), or a private-use scheme (`com.example.app:`);
/// never with a fragment, never a scheme that runs or reads locally.
fn check_redirect_uri(uri: &str) -> Result<(), ClientError> {
    if uri.len() > MAX_URI_BYTES || uri.chars().any(char::is_control) {
        return Err(uri_error(
            "a redirect URI is too long or holds control characters",
        ));
    }
    let parsed =
        url::Url::parse(uri).map_err(|_| uri_error(format!("`{uri}` is not an absolute URI")))?;
    if parsed.fragment().is_some() {
        return Err(uri_error(format!(
            "`{uri}` has a fragment; redirect URIs must not"
        )));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if cortex_backend::auth::is_loopback_authority(&uri["http://".len()..]) => Ok(()),
        "http" => Err(uri_error(format!(
            "`{uri}` uses plaintext http to a host that is not loopback; use https"
        ))),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => Err(uri_error(format!(
            "`{uri}` uses a scheme that cannot be a redirect URI"
        ))),
        _ => Ok(()),
    }
}

/// The redirect URIs of a registration or metadata document.
fn redirect_uris(doc: &Value) -> Result<Vec<String>, ClientError> {
    let Some(list) = doc.get("redirect_uris").and_then(Value::as_array) else {
        return Err(uri_error(
            "`redirect_uris` (a non-empty array of URIs) is required",
        ));
    };
    if list.is_empty() || list.len() > MAX_REDIRECT_URIS {
        return Err(uri_error(format!(
            "give between 1 and {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    list.iter()
        .map(|v| {
            let uri = v
                .as_str()
                .ok_or_else(|| uri_error("every redirect URI must be a string"))?;
            check_redirect_uri(uri)?;
            Ok(uri.to_string())
        })
        .collect()
}

fn client_name(doc: &Value) -> Option<String> {
    doc.get("client_name")
        .and_then(Value::as_str)
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_CHARS)
                .collect::<String>()
        })
        .filter(|s| !s.trim().is_empty())
}

/// Whether `used` may stand for the registered redirect URI `registered`:
/// the same text, or (RFC 8252 section 7.3, a native app on a loopback IP)
/// the same URI on another port.
pub(crate) fn redirect_matches(registered: &str, used: &str) -> bool {
    if registered == used {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(registered), url::Url::parse(used)) else {
        return false;
    };
    let loopback_ip = |u: &url::Url| {
        u.scheme() == "http"
            && matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                | matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
    };
    loopback_ip(&a)
        && loopback_ip(&b)
        && a.host() == b.host()
        && a.path() == b.path()
        && a.query() == b.query()
        && a.username() == b.username()
        && a.password() == b.password()
}

/// Reads an RFC 7591 registration request: public clients only (the
/// facade's token endpoint authenticates nobody; PKCE binds the code).
pub(crate) fn registration(body: &[u8]) -> Result<RegisteredClient, ClientError> {
    if body.len() > MAX_REGISTRATION_BYTES {
        return Err(metadata_error(format!(
            "the registration request is larger than {MAX_REGISTRATION_BYTES} bytes"
        )));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| metadata_error("the registration request is not a JSON object"))?;
    if !doc.is_object() {
        return Err(metadata_error(
            "the registration request is not a JSON object",
        ));
    }
    if let Some(method) = doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        && method != "none"
    {
        return Err(metadata_error(format!(
            "token_endpoint_auth_method `{method}` is not offered: register a public client \
             (`none`); PKCE protects its codes"
        )));
    }
    let listed = |key: &str, allowed: &[&str]| -> Result<(), ClientError> {
        let Some(list) = doc.get(key) else {
            return Ok(());
        };
        let ok = list.as_array().is_some_and(|a| {
            a.iter()
                .all(|v| v.as_str().is_some_and(|s| allowed.contains(&s)))
        });
        if ok {
            Ok(())
        } else {
            Err(metadata_error(format!(
                "`{key}` may only hold {}",
                allowed.join(", ")
            )))
        }
    };
    listed("grant_types", &["authorization_code", "refresh_token"])?;
    listed("response_types", &["code"])?;
    Ok(RegisteredClient {
        name: client_name(&doc),
        redirect_uris: redirect_uris(&doc)?,
    })
}

/// The RFC 7591 answer for a client registered as `client_id`.
pub(crate) fn registration_answer(client_id: &str, client: &RegisteredClient, now: u64) -> Value {
    let mut doc = json!({
        "client_id": client_id,
        "client_id_issued_at": now,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    if let Some(name) = &client.name {
        doc["client_name"] = json!(name);
    }
    doc
}

/// Whether `client_id` names a metadata document the facade may fetch.
pub(crate) fn is_document_url(client_id: &str) -> bool {
    let Ok(url) = url::Url::parse(client_id) else {
        return false;
    };
    let loopback = url.scheme() == "http"
        && cortex_backend::auth::is_loopback_authority(&client_id["http://".len()..]);
    (url.scheme() == "https" || loopback)
        && url.path() != "/"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
}

/// Fetches and checks the Client ID Metadata Document at `client_id`.
pub(crate) async fn fetch_document(
    http: &reqwest::Client,
    client_id: &str,
) -> Result<RegisteredClient, ClientError> {
    // The reason stays in the log: shown to whoever sent the browser here,
    // it would tell what the gateway can reach.
    let doc = cortex_backend::auth::get_json_capped(http, client_id, false, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| {
            tracing::info!(error = %e, "a client metadata document cannot be read");
            metadata_error(
                "the client's metadata document cannot be read (not found, too large, not JSON, \
                 or behind a redirect); the agent's client_id must be the document's URL",
            )
        })?;
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(metadata_error(
            "the client's metadata document does not name its own URL as `client_id`",
        ));
    }
    if let Some(method) = doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        && method != "none"
    {
        return Err(metadata_error(format!(
            "the client's metadata document asks for `{method}`; only public clients (`none`) \
             are served"
        )));
    }
    Ok(RegisteredClient {
        name: client_name(&doc),
        redirect_uris: redirect_uris(&doc)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_or_private_schemes() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/callback",
            "http://localhost:6274/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "https://x.example/cb#frag",
            "not a uri",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_redirect_uris_may_change_port_and_nothing_else() {
        let registered = "http://127.0.0.1/callback";
        assert!(redirect_matches(
            registered,
            "http://127.0.0.1:43117/callback"
        ));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(!redirect_matches(
            registered,
            "http://127.0.0.1:43117/other"
        ));
        assert!(!redirect_matches(
            registered,
            "http://localhost:43117/callback"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
    }

    #[test]
    fn registrations_are_public_and_bounded() {
        let ok = registration(br#"{"redirect_uris":["http://127.0.0.1:1/cb"],"client_name":"A"}"#)
            .unwrap();
        assert_eq!(ok.name.as_deref(), Some("A"));
        for bad in [
            &br#"{"redirect_uris":[]}"#[..],
            br#"{"client_name":"x"}"#,
            br#"{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            br#"{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["client_credentials"]}"#,
            br#"[1]"#,
        ] {
            assert!(registration(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many: Vec<String> = (0..11)
            .map(|i| format!("\"https://x.example/{i}\""))
            .collect();
        let body = format!("{{\"redirect_uris\":[{}]}}", many.join(","));
        assert!(registration(body.as_bytes()).is_err());
        let huge = vec![b' '; MAX_REGISTRATION_BYTES + 1];
        assert!(registration(&huge).is_err());
    }

    #[test]
    fn document_urls_are_https_or_loopback_with_a_path() {
        assert!(is_document_url("https://app.example/client.json"));
        assert!(is_document_url("http://127.0.0.1:4000/client.json"));
        assert!(!is_document_url("https://app.example/"));
        assert!(!is_document_url("http://app.example/client.json"));
        assert!(!is_document_url("a-dcr-client-id"));
    }
}
