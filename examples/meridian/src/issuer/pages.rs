//! The server-rendered pages: sign-in, consent, errors, admin. Plain HTML
//! forms (no script), every dynamic value escaped, framing forbidden.

use std::fmt::Write as _;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{DEV_ONLY, Shared, store::SignIn};
use crate::firm::{Employee, Persona};

/// Escapes text for HTML content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
main{max-width:980px;margin:0 auto;padding:24px}
.dev{background:#fff4d6;border:1px solid #e8c25a;border-radius:6px;padding:8px 12px;font-size:14px}
h1{font-size:26px;margin:18px 0 6px} h2{font-size:17px;margin:22px 0 8px;color:#4a5566}
.lead{margin:4px 0 14px} code{background:#e9ecf1;padding:1px 5px;border-radius:4px}
.personas{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.people{display:grid;grid-template-columns:repeat(4,1fr);gap:6px}
button.who{display:block;width:100%;text-align:left;border:1px solid #cdd3dc;background:#fff;border-radius:6px;padding:8px 10px;cursor:pointer;font:inherit}
button.who:hover{border-color:#3763d6;background:#f0f4ff}
.personas button.who{padding:12px;border-color:#3763d6}
.who b{display:block} .who span{display:block;font-size:13px;color:#5b6678} .who small{display:block;font-size:12px;color:#3763d6;margin-top:4px}
.dept{grid-column:1/-1;font-weight:600;font-size:14px;margin-top:10px;color:#4a5566}
.card{background:#fff;border:1px solid #cdd3dc;border-radius:8px;padding:18px 22px;max-width:640px}
.scopes li{margin:6px 0} .actions{margin-top:18px;display:flex;gap:10px}
.actions button{font:inherit;padding:9px 22px;border-radius:6px;border:1px solid #3763d6;cursor:pointer}
#allow{background:#3763d6;color:#fff} #deny{background:#fff;color:#3763d6}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #cdd3dc;padding:6px 10px;text-align:left}
";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Meridian (dev)</title><style>{STYLE}</style></head>\
         <body><main><p class=\"dev\"><b>Meridian dev authorization server</b>: {}. \
         Never put it in front of real accounts.</p>{body}</main></body></html>\n",
        escape(title),
        escape(DEV_ONLY),
    )
}

/// An HTML response that is never cached nor framed.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // No `form-action`: browsers apply it to the redirect that follows the
    // consent form, which goes to the client's redirect URI.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An error page.
pub(crate) fn error(status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        document(
            title,
            &format!(
                "<h1>{}</h1><p class=\"lead\" id=\"error\">{}</p>",
                escape(title),
                escape(message)
            ),
        ),
    )
}

fn person_button(e: &Employee, scopes: Option<&[&str]>) -> String {
    let mut out = format!(
        "<button class=\"who\" type=\"submit\" name=\"person\" value=\"{id}\" id=\"person-{id}\">\
         <b>{name}</b><span>{title} · {team}</span>",
        id = escape(&e.id),
        name = escape(&e.name),
        title = escape(e.title),
        team = escape(e.team),
    );
    if let Some(scopes) = scopes {
        let _ = write!(out, "<small>{}</small>", escape(&scopes.join(" ")));
    }
    out.push_str("</button>");
    out
}

/// The sign-in page: the four personas, then everyone.
pub(crate) fn sign_in(s: &Shared, id: &str, sign_in: &SignIn) -> String {
    let mut body = format!(
        "<h1>Sign in to {realm}</h1>\
         <p class=\"lead\"><b id=\"client-name\">{client}</b> wants to connect to <code>{resource}</code>. \
         Pick who you are; the next page shows what it will be allowed to do.</p>\
         <form method=\"post\" action=\"/authorize/person\">\
         <input type=\"hidden\" name=\"request\" value=\"{id}\">\
         <h2>Demo personas</h2><div class=\"personas\">",
        realm = escape(s.settings.realm.title()),
        client = escape(&sign_in.client_name),
        resource = escape(&sign_in.resource),
        id = escape(id),
    );
    for persona in Persona::ALL {
        if let Some(e) = s.person(persona.employee_id()) {
            body.push_str(&person_button(e, Some(s.settings.realm.granted(e.role))));
        }
    }
    let _ = write!(
        body,
        "</div><h2>Everyone at Meridian ({})</h2><div class=\"people\">",
        s.people.len()
    );
    let mut department = "";
    for e in &s.people {
        if e.department != department {
            department = e.department;
            let _ = write!(body, "<div class=\"dept\">{}</div>", escape(department));
        }
        body.push_str(&person_button(e, None));
    }
    body.push_str("</div></form>");
    document("Sign in", &body)
}

fn describe(scope: &str) -> String {
    match scope {
        "issues:read" => return "read your issues in the tracker".into(),
        "issues:write" => return "create and change issues in the tracker as you".into(),
        _ => {}
    }
    let mut parts = scope.split(':').skip(1);
    let (Some(app), Some(action)) = (parts.next(), parts.next()) else {
        return String::new();
    };
    match action {
        "write" => format!("read and change records in the {app} app"),
        _ => format!("read the {app} app"),
    }
}

/// The consent page: the client, the person, the scopes.
pub(crate) fn consent(
    s: &Shared,
    id: &str,
    sign_in: &SignIn,
    person: &Employee,
    scopes: &[&str],
) -> String {
    let redirect_host = url::Url::parse(&sign_in.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_else(|| sign_in.redirect_uri.clone());
    let mut items = String::new();
    for scope in scopes {
        let _ = write!(
            items,
            "<li><code>{}</code>: {}</li>",
            escape(scope),
            escape(&describe(scope))
        );
    }
    let body = format!(
        "<h1>Allow <span id=\"client-name\">{client}</span>?</h1><div class=\"card\">\
         <p>Signed in as <b id=\"person\">{name}</b> ({role}, {team}).</p>\
         <p><b>{client}</b> will act as you at <code>{resource}</code> with these scopes, \
         which come from your role:</p><ul class=\"scopes\" id=\"scopes\">{items}</ul>\
         <p>{note} After you answer, your browser returns to <code>{host}</code>. \
         You can revoke this at any time on the <a href=\"{admin}\">grants page</a>.</p>\
         <form method=\"post\" action=\"/authorize/consent\">\
         <input type=\"hidden\" name=\"request\" value=\"{id}\"><div class=\"actions\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button>\
         </div></form></div>",
        client = escape(&sign_in.client_name),
        name = escape(&person.name),
        role = escape(person.role),
        team = escape(person.team),
        resource = escape(&sign_in.resource),
        note = escape(&sign_in.client_note),
        host = escape(&redirect_host),
        admin = escape(&s.url("/admin")),
        id = escape(id),
    );
    document("Allow access", &body)
}

/// The grants page: who holds grants, with a revoke button each.
pub(crate) fn admin(s: &Shared, grants: &[(String, Vec<String>)], notice: Option<&str>) -> String {
    let mut body = String::from("<h1>Grants</h1>");
    if let Some(notice) = notice {
        let _ = write!(
            body,
            "<p class=\"lead\" id=\"notice\">{}</p>",
            escape(notice)
        );
    }
    body.push_str(
        "<p class=\"lead\">Revoking a person ends all their grants: their agents' next call through \
         the gateway is refused once the gateway's introspection cache expires (seconds), and their \
         refresh tokens stop working.</p>",
    );
    if grants.is_empty() {
        body.push_str("<p id=\"no-grants\">Nobody holds a grant.</p>");
    } else {
        body.push_str("<table><tr><th>person</th><th>clients</th><th></th></tr>");
        for (sub, clients) in grants {
            let name = s.person(sub).map_or(sub.as_str(), |e| e.name.as_str());
            let _ = write!(
                body,
                "<tr><td>{name} <code>{sub}</code></td><td>{clients}</td><td>\
                 <form method=\"post\" action=\"/admin/revoke\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" name=\"person\" value=\"{sub}\" id=\"revoke-{sub}\">Revoke everything</button>\
                 </form></td></tr>",
                name = escape(name),
                sub = escape(sub),
                clients = escape(&clients.join(", ")),
                csrf = escape(&s.admin_secret),
            );
        }
        body.push_str("</table>");
    }
    document("Grants", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn scopes_are_described() {
        assert_eq!(
            describe("mcp:crm:write"),
            "read and change records in the crm app"
        );
        assert_eq!(describe("mcp:docs:read"), "read the docs app");
        assert_eq!(describe("odd"), "");
        assert_eq!(describe("issues:read"), "read your issues in the tracker");
    }
}
