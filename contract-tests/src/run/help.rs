//! `help.*` (get_help with and without a topic), `snapshot.envelope` and
//! `robustness.concurrent-list-tools`.

use cortex_backend::{TOPICS, contract::methods};
use serde_json::{Value, json};

use super::{NO_USER_TOKEN, Run};
use crate::{
    formats,
    probe::{Call, Exchange},
    report::Outcome,
    schemas,
};

/// A topic no backend documents.
const UNKNOWN_TOPIC: &str = "cortex-conformance-no-such-topic";
/// How many `list_tools` calls run at once.
const CONCURRENCY: usize = 32;

pub(super) async fn run(run: &mut Run) {
    help(run).await;
    snapshot(run).await;
    concurrent(run).await;
}

async fn help(run: &mut Run) {
    const IDS: [&str; 3] = [
        "help.all-sections",
        "help.known-topic",
        "help.unknown-topic",
    ];
    if !run.wants_any(&IDS) {
        return;
    }
    let Some(user) = run.full() else {
        for id in IDS {
            run.record(id, Outcome::skip(NO_USER_TOKEN));
        }
        return;
    };
    let all = run
        .call(methods::GET_HELP, Some(json!({})), Some(&user))
        .await;
    let listed = run
        .tools()
        .iter()
        .any(|t| super::name(t) == methods::GET_HELP);
    if all.is(400) && !listed {
        run.record(
            "help.all-sections",
            Outcome::warn(
                "get_help is not implemented (400); backends SHOULD implement it",
                vec![all.finding("400 to get_help")],
            ),
        );
        for id in &IDS[1..] {
            run.record(id, Outcome::skip("get_help is not implemented"));
        }
        return;
    }
    let sections = all
        .object()
        .filter(|o| all.is(200) && !o.is_empty())
        .cloned();
    let outcome = match &sections {
        Some(s) => Outcome::pass(format!("{} sections", s.len())),
        None => Outcome::fail(
            "get_help without a topic did not answer 200 with the sections as a JSON object",
            vec![all.finding("expected 200 with a non-empty JSON object")],
        ),
    };
    run.record("help.all-sections", outcome);

    let keys: Vec<String> = sections
        .as_ref()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    let topic = keys
        .iter()
        .find(|k| TOPICS.contains(&k.as_str()))
        .or(keys.first())
        .cloned()
        .unwrap_or_else(|| "overview".to_string());

    let one = run
        .call(
            methods::GET_HELP,
            Some(json!({"topic": topic})),
            Some(&user),
        )
        .await;
    let outcome = if !one.is(200) || one.json.is_none() {
        Outcome::fail(
            format!("get_help with the topic `{topic}` did not answer 200 with JSON"),
            vec![one.finding("expected 200 with that section")],
        )
    } else if keys.len() > 1 && one.json == all.json {
        Outcome::fail(
            format!("get_help with the topic `{topic}` returned every section"),
            vec![one.finding("the answer is identical to get_help without a topic")],
        )
    } else {
        Outcome::pass(format!("the topic `{topic}` answered alone"))
    };
    run.record("help.known-topic", outcome);

    let unknown = run
        .call(
            methods::GET_HELP,
            Some(json!({"topic": UNKNOWN_TOPIC})),
            Some(&user),
        )
        .await;
    let outcome = match unknown.error_problem(&[400]) {
        Some(problem) => Outcome::fail(
            "an unknown help topic was not refused with 400",
            vec![unknown.finding(problem)],
        ),
        None if !keys.is_empty() && !mentions(&unknown, &topic) => Outcome::fail(
            "the 400 for an unknown topic does not list the known topics",
            vec![unknown.finding(format!("the known topic `{topic}` is not mentioned"))],
        ),
        None => Outcome::pass("an unknown topic got 400 with the topic list"),
    };
    run.record("help.unknown-topic", outcome);
}

fn mentions(answer: &Exchange, word: &str) -> bool {
    String::from_utf8_lossy(&answer.body).contains(word)
}

async fn snapshot(run: &mut Run) {
    if !run.wants("snapshot.envelope") {
        return;
    }
    let technical = run.technical.clone();
    let answer = run
        .call(methods::GET_SNAPSHOT, None, Some(&technical))
        .await;
    let outcome = if answer.is(400) {
        Outcome::skip("get_snapshot is not implemented (400)")
    } else if !answer.is(200) {
        Outcome::fail(
            "get_snapshot with the technical token answered neither 200 nor 400 (not implemented)",
            vec![answer.finding("expected 200, or 400 when not implemented")],
        )
    } else {
        let problem = match &answer.json {
            None => Some("the body is not JSON".to_string()),
            Some(body) => schemas::problems(&schemas::contract().snapshot, body).or_else(|| {
                match body.get("generatedAt").and_then(Value::as_str) {
                    Some(t) if formats::is_iso_datetime(t) => None,
                    Some(t) => Some(format!(
                        "generatedAt `{t}` is not an ISO 8601 date-time (e.g. 2026-11-25T13:00:00Z)"
                    )),
                    None => Some("generatedAt is missing".to_string()),
                }
            }),
        };
        match problem {
            None => Outcome::pass("the snapshot envelope is valid"),
            Some(p) => Outcome::fail(
                "the snapshot breaks the contract's shape",
                vec![answer.finding(p)],
            ),
        }
    };
    run.record("snapshot.envelope", outcome);
}

async fn concurrent(run: &mut Run) {
    if !run.wants("robustness.concurrent-list-tools") {
        return;
    }
    let technical = run.technical.clone();
    let calls = (0..CONCURRENCY)
        .map(|_| run.send(Call::method(methods::LIST_TOOLS, None).cred(Some(&technical))));
    let answers = futures::future::join_all(calls).await;
    let mut findings = Vec::new();
    let mut distinct: Vec<&Option<Value>> = Vec::new();
    for answer in &answers {
        if !answer.is(200) {
            findings.push(answer.finding("expected 200"));
        } else if !distinct.contains(&&answer.json) {
            if !distinct.is_empty() {
                findings.push(answer.finding("this catalog differs from the first one"));
            }
            distinct.push(&answer.json);
        }
    }
    let outcome = Outcome::from_findings(
        findings,
        format!("{CONCURRENCY} concurrent calls, one identical catalog"),
        |n| format!("{n} of {CONCURRENCY} concurrent list_tools calls failed or disagreed"),
    );
    run.record("robustness.concurrent-list-tools", outcome);
}
