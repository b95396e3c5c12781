//! The status page's HTML. Every text that comes from outside (tool names
//! and descriptions, backend errors, configuration values) is escaped; no
//! script is ever written.

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use super::super::link::escape;
use crate::{audit::Refusal, catalog::integrity::QuarantineView};

/// The stylesheet (served at [`super::STYLE_PATH`]).
pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;\
max-width:72em;padding:0 1em;color:#1d232a;line-height:1.4}h1{font-size:1.5em;margin:0}\
h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #d6dbe0}\
header{display:flex;justify-content:space-between;align-items:center}\
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;\
padding:.25em .6em;border-bottom:1px solid #eceff2;vertical-align:top}th{background:#f4f6f8}\
.up{color:#17663a;font-weight:600}.down{color:#a4262c;font-weight:600}\
.muted{color:#65707c}.note{background:#fff7e0;padding:.5em .8em;border-left:3px solid #d9a400}\
pre{background:#f4f6f8;padding:.8em;overflow:auto;font-size:.85em}\
form.inline{display:inline}button{font:inherit;padding:.2em .8em;cursor:pointer}\
input[type=password]{font:inherit;padding:.3em;width:24em}";

/// What the status page shows.
pub(crate) struct View {
    pub(crate) version: &'static str,
    pub(crate) csrf: String,
    pub(crate) sources: Vec<SourceRow>,
    pub(crate) tools: Vec<ToolRow>,
    pub(crate) integrity_mode: String,
    pub(crate) baseline_problem: Option<String>,
    pub(crate) approvals_blocked: Option<String>,
    pub(crate) quarantines: Vec<(QuarantineView, bool)>,
    pub(crate) linked: Result<Vec<(String, u64)>, String>,
    pub(crate) refusals: Vec<Refusal>,
    pub(crate) config_toml: String,
    pub(crate) notice: Option<String>,
}

/// One backend or MCP server.
pub(crate) struct SourceRow {
    pub(crate) id: String,
    pub(crate) kind: &'static str,
    pub(crate) health: Result<(), String>,
    pub(crate) refreshed: Option<SystemTime>,
    pub(crate) latency: Option<Duration>,
    pub(crate) tools: usize,
}

/// One served tool.
pub(crate) struct ToolRow {
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) scope: String,
    pub(crate) description: String,
    pub(crate) integrity: &'static str,
}

fn time(t: SystemTime) -> String {
    crate::audit::rfc3339(t)
}

fn since(secs: u64) -> String {
    time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A whole page; `body` is already escaped.
pub(crate) fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <link rel=\"stylesheet\" href=\"{}\"></head><body>{body}</body></html>",
        escape(title),
        super::STYLE_PATH
    )
}

/// The sign-in form, with `problem` above it.
pub(crate) fn sign_in(problem: Option<&str>) -> String {
    let mut body = String::from("<h1>Cortex gateway: operator sign-in</h1>");
    if let Some(p) = problem {
        let _ = write!(body, "<p class=\"note\" id=\"problem\">{}</p>", escape(p));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\"><p><label>Admin secret \
         (<code>CORTEX_ADMIN_SECRET</code>)<br><input type=\"password\" name=\"secret\" \
         autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">Sign in</button></p></form>",
        super::SIGN_IN_PATH
    );
    document("Cortex operator sign-in", &body)
}

fn button(path: &str, csrf: &str, tool: &str, label: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{path}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"tool\" value=\"{}\">\
         <button type=\"submit\" name=\"do\" value=\"{}\">{label}</button></form>",
        escape(csrf),
        escape(tool),
        escape(label),
    )
}

/// The status page.
pub(crate) fn status(v: &View) -> String {
    let mut b = String::with_capacity(8 * 1024);
    let _ = write!(
        b,
        "<header><h1>Cortex gateway {}</h1><form method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form></header>",
        escape(v.version),
        super::SIGN_OUT_PATH,
        escape(&v.csrf)
    );
    if let Some(n) = &v.notice {
        let _ = write!(b, "<p class=\"note\" id=\"notice\">{}</p>", escape(n));
    }

    b.push_str(
        "<h2>Backends and MCP servers</h2><table id=\"sources\"><tr><th>Id</th><th>Kind</th>\
         <th>Health</th><th>Last refresh</th><th>Latency</th><th>Tools</th></tr>",
    );
    for s in &v.sources {
        let health = match &s.health {
            Ok(()) => "<span class=\"up\">up</span>".to_string(),
            Err(why) => format!("<span class=\"down\">down</span> {}", escape(why)),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{health}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.id),
            s.kind,
            s.refreshed.map_or_else(|| "never".into(), time),
            s.latency
                .map_or_else(|| "–".into(), |d| format!("{} ms", d.as_millis())),
            s.tools
        );
    }
    b.push_str("</table>");

    let _ = write!(
        b,
        "<h2>Quarantined tools</h2><p class=\"muted\">Tool integrity: {}. Approve serves the \
         tool's new definition; reject keeps it withheld and stops offering approval until the \
         backend changes the tool again (reconsider undoes a reject).</p>",
        escape(&v.integrity_mode)
    );
    if let Some(p) = &v.baseline_problem {
        let _ = write!(b, "<p class=\"note\">Baseline unusable: {}</p>", escape(p));
    }
    if let Some(why) = &v.approvals_blocked {
        let _ = write!(
            b,
            "<p class=\"note\" id=\"blocked\">The buttons cannot act here: {}</p>",
            escape(why)
        );
    }
    if v.quarantines.is_empty() {
        b.push_str("<p id=\"quarantines\">None.</p>");
    } else {
        b.push_str(
            "<table id=\"quarantines\"><tr><th>Tool</th><th>Backend</th><th>Changed</th>\
             <th>Since</th><th>State</th><th></th></tr>",
        );
        for (q, rejected) in &v.quarantines {
            let actions = if v.approvals_blocked.is_some() {
                String::new()
            } else if *rejected {
                button(super::RECONSIDER_PATH, &v.csrf, &q.tool, "Reconsider")
            } else {
                format!(
                    "{} {}",
                    button(super::APPROVE_PATH, &v.csrf, &q.tool, "Approve"),
                    button(super::REJECT_PATH, &v.csrf, &q.tool, "Reject")
                )
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
                escape(&q.tool),
                escape(&q.backend),
                escape(&q.changed.join(", ")),
                since(q.since),
                if *rejected {
                    "rejected"
                } else {
                    "awaiting review"
                },
            );
        }
        b.push_str("</table>");
    }

    b.push_str(
        "<h2>Catalog</h2><table id=\"catalog\"><tr><th>Tool</th><th>Source</th><th>Scope</th>\
         <th>Integrity</th><th>Description</th></tr>",
    );
    for t in &v.tools {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"muted\">{}</td></tr>",
            escape(&t.name),
            escape(&t.backend),
            escape(&t.scope),
            t.integrity,
            escape(&t.description)
        );
    }
    b.push_str("</table>");

    b.push_str("<h2>Linked accounts</h2>");
    match &v.linked {
        Ok(counts) if counts.is_empty() => b.push_str("<p>No MCP servers are configured.</p>"),
        Ok(counts) => {
            b.push_str("<table id=\"linked\"><tr><th>MCP server</th><th>Accounts</th></tr>");
            for (server, n) in counts {
                let _ = write!(b, "<tr><td>{}</td><td>{n}</td></tr>", escape(server));
            }
            b.push_str("</table>");
        }
        Err(why) => {
            let _ = write!(b, "<p class=\"muted\">Not available: {}</p>", escape(why));
        }
    }

    b.push_str("<h2>Last refusals</h2>");
    if v.refusals.is_empty() {
        b.push_str("<p id=\"refusals\">None since the start.</p>");
    } else {
        let mut classes: Vec<(&str, usize)> = Vec::new();
        for r in &v.refusals {
            match classes.iter_mut().find(|(c, _)| *c == r.class) {
                Some((_, n)) => *n += 1,
                None => classes.push((&r.class, 1)),
            }
        }
        b.push_str("<p>");
        for (c, n) in &classes {
            let _ = write!(b, "<strong>{}</strong>: {n} &nbsp; ", escape(c));
        }
        b.push_str(
            "</p><table id=\"refusals\"><tr><th>Time</th><th>Class</th><th>Status</th>\
             <th>Request</th><th>Tool</th></tr>",
        );
        for r in &v.refusals {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(r.at),
                escape(&r.class),
                r.status,
                escape(&r.what),
                escape(r.tool.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</table>");
    }

    let _ = write!(
        b,
        "<h2>Configuration (secrets masked)</h2><pre id=\"config\">{}</pre>",
        escape(&v.config_toml)
    );
    document("Cortex gateway status", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_backends_is_escaped() {
        let evil = "<img src=x onerror=alert(1)>\"'";
        let view = View {
            version: "0",
            csrf: "t\"oken".into(),
            sources: vec![SourceRow {
                id: evil.into(),
                kind: "backend",
                health: Err(evil.into()),
                refreshed: None,
                latency: None,
                tools: 1,
            }],
            tools: vec![ToolRow {
                name: evil.into(),
                backend: evil.into(),
                scope: evil.into(),
                description: evil.into(),
                integrity: "approved",
            }],
            integrity_mode: "block".into(),
            baseline_problem: Some(evil.into()),
            approvals_blocked: None,
            quarantines: vec![(
                QuarantineView {
                    tool: evil.into(),
                    backend: evil.into(),
                    name: evil.into(),
                    changed: vec![evil.into()],
                    since: 0,
                },
                false,
            )],
            linked: Ok(vec![(evil.into(), 1)]),
            refusals: vec![Refusal {
                at: SystemTime::UNIX_EPOCH,
                class: evil.into(),
                status: 401,
                what: evil.into(),
                tool: Some(evil.into()),
            }],
            config_toml: evil.into(),
            notice: Some(evil.into()),
        };
        let html = status(&view);
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("t\"oken"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;"));
        assert!(!sign_in(Some(evil)).contains("<img"));
    }
}
