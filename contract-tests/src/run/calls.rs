//! Checks that call methods beyond discovery: the technical-token boundary
//! (`technical.*`), identity and scopes (`whoami.*`, `scopes.*`), argument
//! handling (`arguments.*`) and, on request, the read-only tools
//! (`tools.*`).

use cortex_backend::contract::methods;
use serde_json::{Value, json};

use super::{NO_CATALOG, NO_USER_TOKEN, Run, effective_input_schema, expand_template, name, scope};
use crate::{args, report::Outcome, schemas};

pub(super) async fn run(run: &mut Run) {
    technical(run).await;
    whoami(run).await;
    header_spoofing(run).await;
    missing_scope(run).await;
    wrong_type(run).await;
    read_only(run).await;
}

/// Pass when `method` with the technical token gets 403; a 400 from a method
/// known not to be implemented is a skip.
async fn refuses_technical(
    run: &mut Run,
    method: &'static str,
    params: Value,
    implemented: Option<bool>,
) -> Outcome {
    let technical = run.technical.clone();
    let answer = run.call(method, Some(params), Some(&technical)).await;
    if answer.is(400) && implemented != Some(true) {
        return match implemented {
            Some(false) => Outcome::skip(format!("{method} is not implemented (400)")),
            _ => Outcome::skip(format!(
                "{method} answered 400, which may mean it is not implemented; {NO_USER_TOKEN} to tell"
            )),
        };
    }
    match answer.error_problem(&[403]) {
        None => Outcome::pass(format!("{method} refused the technical token with 403")),
        Some(problem) => Outcome::fail(
            format!("{method} did not refuse the technical token with 403"),
            vec![answer.finding(problem)],
        ),
    }
}

async fn technical(run: &mut Run) {
    if run.wants("technical.tools-refused") {
        let outcome = match &run.tools {
            None => Outcome::skip(NO_CATALOG),
            Some(tools) => {
                let names: Vec<String> = tools
                    .iter()
                    .map(|t| name(t).to_string())
                    .filter(|n| !methods::is_reserved(n))
                    .collect();
                let technical = run.technical.clone();
                let mut findings = Vec::new();
                for n in &names {
                    let answer = run.call(n, Some(json!({})), Some(&technical)).await;
                    if let Some(problem) = answer.error_problem(&[403]) {
                        findings.push(answer.finding(format!("tool `{n}`: {problem}")));
                    }
                }
                if names.is_empty() {
                    Outcome::skip("no tools besides reserved methods are listed")
                } else {
                    Outcome::from_findings(
                        findings,
                        format!("{} tools refused the technical token", names.len()),
                        |f| {
                            format!(
                                "{f} of {} tools did not refuse the technical token with 403",
                                names.len()
                            )
                        },
                    )
                }
            }
        };
        run.record("technical.tools-refused", outcome);
    }
    for (id, method) in [
        ("technical.get-help-refused", methods::GET_HELP),
        ("technical.whoami-refused", methods::WHOAMI),
    ] {
        if run.wants(id) {
            let implemented = run.is_implemented(method).await;
            let outcome = refuses_technical(run, method, json!({}), implemented).await;
            run.record(id, outcome);
        }
    }
    if run.wants("technical.get-prompt-refused") {
        let prompt = run.prompts.as_ref().and_then(|p| p.first()).cloned();
        let outcome = match prompt {
            None => Outcome::skip("no prompts are listed"),
            Some(p) => {
                refuses_technical(
                    run,
                    methods::GET_PROMPT,
                    super::prompt_params(&p),
                    Some(true),
                )
                .await
            }
        };
        run.record("technical.get-prompt-refused", outcome);
    }
    if run.wants("technical.read-resource-refused") {
        let template = run
            .templates
            .as_ref()
            .and_then(|t| t.first())
            .and_then(|t| t.get("uriTemplate"))
            .and_then(Value::as_str)
            .map(expand_template);
        let outcome = match template {
            None => Outcome::skip("no resource templates are listed"),
            Some(uri) => {
                refuses_technical(run, methods::READ_RESOURCE, json!({"uri": uri}), Some(true))
                    .await
            }
        };
        run.record("technical.read-resource-refused", outcome);
    }
}

async fn whoami(run: &mut Run) {
    if !run.wants_any(&["whoami.identity", "scopes.header-spoofing"]) {
        return;
    }
    let Some(user) = run.full() else {
        run.record("whoami.identity", Outcome::skip(NO_USER_TOKEN));
        return;
    };
    let answer = run.call(methods::WHOAMI, None, Some(&user)).await;
    let outcome = if answer.is(400) {
        Outcome::warn(
            "whoami is not implemented (400); backends SHOULD implement it",
            vec![answer.finding("400 to whoami")],
        )
    } else if !answer.is(200) || answer.object().is_none() {
        Outcome::fail(
            "whoami with a valid user token did not answer 200 with a JSON object",
            vec![answer.finding("expected 200 with a JSON object")],
        )
    } else {
        run.whoami = answer.json.clone();
        match run.options.users.sub() {
            Some(sub) if !answer.body.windows(sub.len()).any(|w| w == sub.as_bytes()) => {
                Outcome::warn(
                    "whoami does not mention the token's sub",
                    vec![answer.finding(format!("`{sub}` appears nowhere in the answer"))],
                )
            }
            _ => Outcome::pass("whoami answered 200 with the caller's identity"),
        }
    };
    run.record("whoami.identity", outcome);
}

/// Values no real token carries; finding one in `whoami` means a header won.
const SPOOFED: [(&str, &str); 5] = [
    ("x-cortex-user-id", "spoofed-cortex-user"),
    ("x-cortex-user-email", "spoofed@attacker.example"),
    ("x-cortex-user-role", "spoofed-admin"),
    ("x-cortex-user-pool", "spoofed-pool"),
    ("x-cortex-scopes", "mcp:spoofed:admin"),
];

async fn header_spoofing(run: &mut Run) {
    if !run.wants("scopes.header-spoofing") {
        return;
    }
    let outcome = match (run.full(), run.whoami.is_some()) {
        (None, _) => Outcome::skip(NO_USER_TOKEN),
        (Some(_), false) => Outcome::skip("whoami did not answer 200 (see whoami.identity)"),
        (Some(user), true) => {
            let mut call = crate::probe::Call::method(methods::WHOAMI, None).cred(Some(&user));
            for (header, value) in SPOOFED {
                call = call.header(header, value);
            }
            let answer = run.send(call).await;
            let text = String::from_utf8_lossy(&answer.body);
            let leaked: Vec<&str> = SPOOFED
                .iter()
                .filter(|(_, v)| text.contains(v))
                .map(|(h, _)| *h)
                .collect();
            if !answer.is(200) {
                Outcome::fail(
                    "whoami with X-Cortex-* headers did not answer 200",
                    vec![answer.finding("expected 200, as without the headers")],
                )
            } else if !leaked.is_empty() {
                Outcome::fail(
                    "whoami reports identity from X-Cortex-* headers instead of the token",
                    vec![answer.finding(format!(
                        "the answer shows the values of {}",
                        leaked.join(", ")
                    ))],
                )
            } else {
                Outcome::pass("spoofed X-Cortex-* headers were ignored")
            }
        }
    };
    run.record("scopes.header-spoofing", outcome);
}

async fn missing_scope(run: &mut Run) {
    if !run.wants("scopes.missing-scope") {
        return;
    }
    if run.tools.is_none() {
        run.record("scopes.missing-scope", Outcome::skip(NO_CATALOG));
        return;
    }
    let (mut checked, mut skipped, mut findings) = (0, 0, Vec::new());
    for tool in run.tools().to_vec() {
        let Some(scope) = scope(&tool) else { continue };
        let Some(cred) = run
            .options
            .users
            .without(scope, &run.scopes, &run.options.claims)
        else {
            skipped += 1;
            continue;
        };
        checked += 1;
        let params = args::valid(&effective_input_schema(&tool));
        let answer = run.call(name(&tool), Some(params), Some(&cred)).await;
        let problem = answer.error_problem(&[403]).or_else(|| {
            match answer.str_field("required") {
                Some(r) if r == scope => None,
                Some(r) => Some(format!("`required` is `{r}`, expected `{scope}`")),
                None => Some(format!(
                    "403 without `required`: the gateway would report an ACL refusal, not the missing scope {scope}"
                )),
            }
        });
        if let Some(p) = problem {
            findings.push(answer.finding(format!("tool `{}`: {p}", name(&tool))));
        }
    }
    let outcome = if checked == 0 {
        if run.options.users.is_none() {
            Outcome::skip(NO_USER_TOKEN)
        } else {
            Outcome::skip(
                "the given token holds every tool's scope; pass --issuer to mint tokens without one",
            )
        }
    } else {
        let note = if skipped > 0 {
            format!(" ({skipped} skipped: the given token holds their scope)")
        } else {
            String::new()
        };
        Outcome::from_findings(
            findings,
            format!("{checked} tools refused a token without their scope{note}"),
            |n| format!("{n} of {checked} tools did not answer 403 with `required`"),
        )
    };
    run.record("scopes.missing-scope", outcome);
}

/// The tools a full user token may call, with their input schemas.
fn callable(run: &Run) -> (Vec<(Value, Value)>, usize) {
    let mut out = Vec::new();
    let mut not_held = 0;
    for tool in run.tools() {
        match scope(tool) {
            Some(s) if run.options.users.full_holds(s) => {
                out.push((tool.clone(), effective_input_schema(tool)));
            }
            _ => not_held += 1,
        }
    }
    (out, not_held)
}

async fn wrong_type(run: &mut Run) {
    if !run.wants("arguments.wrong-type") {
        return;
    }
    let outcome = match (run.full(), run.tools.is_some()) {
        (None, _) => Outcome::skip(NO_USER_TOKEN),
        (_, false) => Outcome::skip(NO_CATALOG),
        (Some(user), true) => {
            let (tools, _) = callable(run);
            let (mut checked, mut findings, mut inconclusive) = (0, Vec::new(), Vec::new());
            for (tool, schema) in tools {
                let Some((property, params)) = args::with_wrong_type(&schema) else {
                    continue;
                };
                if jsonschema::validator_for(&schema).is_ok_and(|v| v.is_valid(&params)) {
                    continue;
                }
                checked += 1;
                let answer = run.call(name(&tool), Some(params), Some(&user)).await;
                let tool = name(&tool);
                match answer.status() {
                    Some(400) => {}
                    Some(404) => inconclusive.push(answer.finding(format!(
                        "tool `{tool}`: 404 before the arguments were judged"
                    ))),
                    Some(403) if answer.str_field("required").is_none() => {
                        inconclusive.push(answer.finding(format!(
                            "tool `{tool}`: the app's ACL refused before the arguments were judged"
                        )));
                    }
                    _ => findings.push(answer.finding(format!(
                        "tool `{tool}`: `{property}` of the wrong type did not get 400"
                    ))),
                }
            }
            if checked == 0 {
                Outcome::skip("no callable tool declares a typed argument")
            } else if !findings.is_empty() {
                let n = findings.len();
                findings.extend(inconclusive);
                Outcome::fail(
                    format!(
                        "{n} of {checked} tools did not refuse a wrongly typed argument with 400"
                    ),
                    findings,
                )
            } else if inconclusive.len() == checked {
                Outcome::warn(
                    "no tool judged its arguments (each refused the caller first)",
                    inconclusive,
                )
            } else {
                let mut o = Outcome::pass(format!(
                    "{} tools refused a wrongly typed argument with 400",
                    checked - inconclusive.len()
                ));
                o.findings = inconclusive;
                o
            }
        }
    };
    run.record("arguments.wrong-type", outcome);
}

async fn read_only(run: &mut Run) {
    const IDS: [&str; 2] = ["tools.read-only-call", "tools.output-schema"];
    if !run.wants_any(&IDS) {
        return;
    }
    let skip = |run: &mut Run, reason: &str| {
        for id in IDS {
            run.record(id, Outcome::skip(reason));
        }
    };
    if !run.options.call_read_only {
        return skip(
            run,
            "pass --call-read-only to call the tools annotated readOnlyHint with made-up arguments",
        );
    }
    let Some(user) = run.full() else {
        return skip(run, NO_USER_TOKEN);
    };
    if run.tools.is_none() {
        return skip(run, NO_CATALOG);
    }
    let (tools, _) = callable(run);
    let read_only: Vec<(Value, Value)> = tools
        .into_iter()
        .filter(|(t, _)| t.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true)))
        .collect();
    if read_only.is_empty() {
        return skip(run, "no callable tool is annotated readOnlyHint: true");
    }
    let (mut failures, mut results) = (Vec::new(), Vec::new());
    for (tool, schema) in &read_only {
        let answer = run
            .call(name(tool), Some(args::valid(schema)), Some(&user))
            .await;
        match answer.status() {
            None => failures.push(answer.finding(format!("tool `{}`: no answer", name(tool)))),
            Some(s) if s >= 500 => failures.push(answer.finding(format!(
                "tool `{}`: {s} to arguments made from its own schema",
                name(tool)
            ))),
            Some(401) => failures.push(answer.finding(format!(
                "tool `{}`: 401 with a token list_tools accepted",
                name(tool)
            ))),
            Some(200) => results.push((tool.clone(), answer)),
            Some(_) => {}
        }
    }
    let n = read_only.len();
    let outcome = Outcome::from_findings(
        failures,
        format!("{n} read-only tools called, none answered 5xx"),
        |f| format!("{f} of {n} read-only tools failed"),
    );
    run.record("tools.read-only-call", outcome);

    let mut validated = 0;
    let mut findings = Vec::new();
    for (tool, answer) in &results {
        let Some(validator) = tool.get("outputSchema").and_then(schemas::compile_declared) else {
            continue;
        };
        if tool.get("resultKind") == Some(&json!("mcp")) {
            continue;
        }
        validated += 1;
        match &answer.json {
            None => findings
                .push(answer.finding(format!("tool `{}`: the result is not JSON", name(tool)))),
            Some(result) => {
                if let Some(p) = schemas::problems(&validator, result) {
                    findings.push(answer.finding(format!(
                        "tool `{}`: the result breaks its outputSchema: {p}",
                        name(tool)
                    )));
                }
            }
        }
    }
    let outcome = if validated == 0 {
        Outcome::skip("no read-only tool with a valid outputSchema answered 200")
    } else {
        Outcome::from_findings(
            findings,
            format!("{validated} results matched their outputSchema"),
            |f| format!("{f} of {validated} results break their outputSchema"),
        )
    };
    run.record("tools.output-schema", outcome);
}
