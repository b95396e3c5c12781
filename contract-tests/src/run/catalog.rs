//! `catalog.*`: what `list_tools`, `list_prompts` and
//! `list_resource_templates` return, checked without calling any tool.

use std::collections::BTreeMap;

use cortex_backend::{contract::methods, scopes};
use serde_json::Value;

use super::{NO_CATALOG, Run, name, scope};
use crate::{
    formats,
    probe::Exchange,
    report::{Finding, Outcome},
    schemas,
};

/// A check of the tool descriptors alone.
type CatalogCheck = fn(&[Value]) -> Outcome;

pub(super) async fn run(run: &mut Run, listed: Exchange) {
    let outcome = list_tools(run, &listed);
    run.record("catalog.list-tools", outcome);
    let checks: [(&'static str, CatalogCheck); 9] = [
        ("catalog.descriptor-schema", descriptor_schema),
        ("catalog.unique-names", unique_names),
        ("catalog.name-format", name_format),
        ("catalog.input-schema", input_schema),
        ("catalog.input-schema-self-contained", self_contained),
        ("catalog.params-types", params_types),
        ("catalog.output-schema", output_schema),
        ("catalog.version-semver", version_semver),
        ("catalog.deprecation-date", deprecation_date),
    ];
    for (id, check) in checks {
        let outcome = match &run.tools {
            Some(tools) => check(tools),
            None => Outcome::skip(NO_CATALOG),
        };
        run.record(id, outcome);
    }
    let technical = run.technical.clone();
    let prompts = run
        .call(methods::LIST_PROMPTS, None, Some(&technical))
        .await;
    let outcome = optional_list(run, &prompts, "prompts", |v| {
        schemas::problems(&schemas::contract().prompt_list, v)
    });
    run.record("catalog.prompts", outcome);
    let templates = run
        .call(methods::LIST_RESOURCE_TEMPLATES, None, Some(&technical))
        .await;
    let outcome = optional_list(run, &templates, "resourceTemplates", |v| {
        schemas::problems(&schemas::contract().resource_template_list, v).or_else(|| {
            let bad: Vec<&str> = v["resourceTemplates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("uriTemplate").and_then(Value::as_str))
                .filter(|u| !u.contains("://"))
                .collect();
            (!bad.is_empty()).then(|| {
                format!(
                    "uriTemplate without a scheme:// (the scheme routes reads): {}",
                    bad.join(", ")
                )
            })
        })
    });
    run.record("catalog.resource-templates", outcome);
    collect_scopes(run);
    let outcome = scope_convention(run);
    run.record("catalog.scope-convention", outcome);
}

fn list_tools(run: &mut Run, listed: &Exchange) -> Outcome {
    if !listed.is(200) {
        let hint = if listed.is(404) || listed.is(405) {
            ": is the URL the full path of the contract endpoint (usually ending in /api/cortex/backend)?"
        } else {
            ""
        };
        return Outcome::fail(
            format!("list_tools with the technical token did not answer 200{hint}"),
            vec![listed.finding(format!(
                "expected 200, got {}",
                listed.status().map_or("no answer".into(), |s| s.to_string())
            ))],
        );
    }
    match listed.object().and_then(|o| o.get("tools")) {
        Some(Value::Array(tools)) => {
            run.tools = Some(tools.clone());
            Outcome::pass(format!("{} tools listed", tools.len()))
        }
        _ => Outcome::fail(
            "list_tools did not return {\"tools\": [...]}",
            vec![listed.finding("the body is not a JSON object with a `tools` array")],
        ),
    }
}

/// Checks every descriptor with `problem`, one finding per bad one.
fn each(tools: &[Value], what: &str, problem: impl Fn(&Value) -> Option<String>) -> Outcome {
    let findings: Vec<Finding> = tools
        .iter()
        .filter_map(|t| problem(t).map(|p| Finding::new(format!("tool `{}`: {p}", name(t)))))
        .collect();
    Outcome::from_findings(findings, format!("{} tools checked", tools.len()), |n| {
        format!("{n} of {} tools {what}", tools.len())
    })
}

fn descriptor_schema(tools: &[Value]) -> Outcome {
    each(tools, "break the descriptor schema", |t| {
        schemas::problems(&schemas::contract().tool_descriptor, t)
    })
}

fn unique_names(tools: &[Value]) -> Outcome {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tools {
        *counts.entry(name(t)).or_default() += 1;
    }
    let findings: Vec<Finding> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(name, n)| Finding::new(format!("`{name}` is listed {n} times")))
        .collect();
    Outcome::from_findings(
        findings,
        format!("{} names, all distinct", tools.len()),
        |n| format!("{n} names are listed more than once"),
    )
}

fn name_format(tools: &[Value]) -> Outcome {
    each(tools, "have a bad name", |t| {
        let Some(n) = t.get("name").and_then(Value::as_str) else {
            return Some("no string `name`".into());
        };
        let ok = (1..=64).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            Some(format!(
                "`{n}` ({} characters) does not match ^[A-Za-z0-9_-]{{1,64}}$",
                n.chars().count()
            ))
        } else if methods::is_reserved(n) && n != methods::GET_HELP {
            Some(format!(
                "`{n}` is a reserved method name; calls would never reach the tool"
            ))
        } else {
            None
        }
    })
}

fn input_schema(tools: &[Value]) -> Outcome {
    each(tools, "have a bad inputSchema", |t| {
        t.get("inputSchema")
            .and_then(|s| schemas::object_schema_problem(s).map(|p| format!("inputSchema {p}")))
    })
}

fn self_contained(tools: &[Value]) -> Outcome {
    let findings: Vec<Finding> = tools
        .iter()
        .filter_map(|t| {
            let schema = t.get("inputSchema")?;
            let refs = schemas::refs(schema);
            let defs = schema.get("$defs").is_some() || schema.get("definitions").is_some();
            (!refs.is_empty() || defs).then(|| {
                Finding::new(format!(
                    "tool `{}`: inputSchema uses {} $ref{}",
                    name(t),
                    refs.len(),
                    if defs { " and $defs" } else { "" }
                ))
            })
        })
        .collect();
    if findings.is_empty() {
        Outcome::pass("no $ref in any inputSchema")
    } else {
        Outcome::warn(
            format!(
                "{} tools have input schemas with references",
                findings.len()
            ),
            findings,
        )
    }
}

fn params_types(tools: &[Value]) -> Outcome {
    each(tools, "use unknown params types", |t| {
        let params = t.get("params")?;
        let Some(map) = params.as_object() else {
            return Some(format!(
                "params is {}, not an object",
                schemas::kind(params)
            ));
        };
        let mut words = BTreeMap::new();
        for (k, v) in map {
            match v.as_str() {
                Some(w) => {
                    words.insert(k.clone(), w.to_string());
                }
                None => {
                    return Some(format!(
                        "params.{k} is {}, not a type word",
                        schemas::kind(v)
                    ));
                }
            }
        }
        cortex_backend::params::params_to_schema(&words)
            .err()
            .map(|e| e.to_string())
    })
}

fn output_schema(tools: &[Value]) -> Outcome {
    each(tools, "have a bad outputSchema", |t| {
        t.get("outputSchema")
            .and_then(|s| schemas::object_schema_problem(s).map(|p| format!("outputSchema {p}")))
    })
}

fn version_semver(tools: &[Value]) -> Outcome {
    each(tools, "have a version that is not semver", |t| {
        match t.get("version")? {
            Value::String(v) if formats::is_semver(v) => None,
            Value::String(v) => Some(format!("version `{v}` is not semver (MAJOR.MINOR.PATCH)")),
            other => Some(format!("version is {}, not a string", schemas::kind(other))),
        }
    })
}

fn deprecation_date(tools: &[Value]) -> Outcome {
    each(tools, "have a bad deprecation date", |t| {
        match t.get("deprecated")?.get("removedAt")? {
            Value::String(d) if formats::is_iso_date(d) || formats::is_iso_datetime(d) => None,
            Value::Null => None,
            Value::String(d) => Some(format!(
                "deprecated.removedAt `{d}` is not an ISO 8601 date (YYYY-MM-DD)"
            )),
            other => Some(format!(
                "deprecated.removedAt is {}, not a date string",
                schemas::kind(other)
            )),
        }
    })
}

/// `list_prompts` / `list_resource_templates`: skipped when the backend
/// answers 400 (not implemented), else 200 with a valid body.
fn optional_list(
    run: &mut Run,
    answer: &Exchange,
    key: &str,
    problem: impl Fn(&Value) -> Option<String>,
) -> Outcome {
    let method = if key == "prompts" {
        methods::LIST_PROMPTS
    } else {
        methods::LIST_RESOURCE_TEMPLATES
    };
    if answer.is(400) {
        return Outcome::skip(format!("{method} is not implemented (400)"));
    }
    if !answer.is(200) {
        return Outcome::fail(
            format!("{method} answered neither 200 nor 400 (not implemented)"),
            vec![answer.finding("expected 200, or 400 when not implemented")],
        );
    }
    let Some(body) = &answer.json else {
        return Outcome::fail(
            format!("{method} did not answer JSON"),
            vec![answer.finding("the body is not JSON")],
        );
    };
    if let Some(p) = problem(body) {
        return Outcome::fail(
            format!("{method} breaks the contract's shape"),
            vec![answer.finding(p)],
        );
    }
    let items = body[key].as_array().cloned().unwrap_or_default();
    let n = items.len();
    if key == "prompts" {
        run.prompts = Some(items);
    } else {
        run.templates = Some(items);
    }
    Outcome::pass(format!("{n} listed"))
}

fn collect_scopes(run: &mut Run) {
    let mut all: Vec<String> = Vec::new();
    let lists = [&run.tools, &run.prompts, &run.templates];
    for item in lists.into_iter().flatten().flatten() {
        if let Some(s) = scope(item)
            && !all.iter().any(|a| a == s)
        {
            all.push(s.to_string());
        }
    }
    run.set_scopes(all);
}

fn scope_convention(run: &Run) -> Outcome {
    if run.tools.is_none() {
        return Outcome::skip(NO_CATALOG);
    }
    let findings: Vec<Finding> = run
        .scopes
        .iter()
        .filter(|s| !scopes::is_conventional(s))
        .map(|s| Finding::new(format!("scope `{s}` does not follow mcp:<domain>:<action>")))
        .collect();
    if findings.is_empty() {
        Outcome::pass(format!("{} scopes follow the convention", run.scopes.len()))
    } else {
        Outcome::warn(
            format!("{} scopes break the naming convention", findings.len()),
            findings,
        )
    }
}
