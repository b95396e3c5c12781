//! `transport.*`: the HTTP envelope. Every request here carries the
//! technical token (a user token for the unknown method), so the backend
//! has no authentication reason to refuse and must judge the request
//! itself.

use bytes::Bytes;
use reqwest::Method;

use super::{NO_USER_TOKEN, Run};
use crate::{
    probe::{Call, Exchange},
    report::Outcome,
};

/// Pass when the answer is the contract error body with one of `statuses`.
fn expect_error(answer: &Exchange, statuses: &[u16], checked: &str) -> Outcome {
    match answer.error_problem(statuses) {
        None => Outcome::pass(checked.to_string()),
        Some(problem) => Outcome::fail(problem.clone(), vec![answer.finding(problem)]),
    }
}

pub(super) async fn run(run: &mut Run) {
    let technical = Some(run.technical.clone());
    let technical = technical.as_ref();

    if run.wants("transport.post-only") {
        let mut findings = Vec::new();
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let answer = run.send(Call::http(method.clone()).cred(technical)).await;
            if !(answer.is(405) || answer.is(404)) {
                findings.push(answer.finding(format!(
                    "{method} got {}, expected 405 (or 404)",
                    answer.status().map_or("no answer".into(), |s| s.to_string())
                )));
            }
        }
        let outcome = Outcome::from_findings(findings, "GET, PUT and DELETE refused", |n| {
            format!("{n} of 3 other HTTP methods were not refused with 405 or 404")
        });
        run.record("transport.post-only", outcome);
    }

    let bodies: [(&'static str, &'static [u8], &'static str); 2] = [
        (
            "transport.malformed-json",
            br#"{"method": "list_tools", "params": {"#,
            "truncated JSON refused",
        ),
        ("transport.empty-body", b"", "empty body refused"),
    ];
    for (id, body, checked) in bodies {
        if run.wants(id) {
            let answer = run
                .send(Call::raw(Bytes::from_static(body)).cred(technical))
                .await;
            run.record(id, expect_error(&answer, &[400], checked));
        }
    }

    if run.wants("transport.params-not-object") {
        let mut outcome = Outcome::pass("params as an array and as a string refused");
        for body in [
            r#"{"method": "list_tools", "params": ["not", "an", "object"]}"#,
            r#"{"method": "list_tools", "params": "not an object"}"#,
        ] {
            let answer = run.send(Call::raw(body).cred(technical)).await;
            if let Some(problem) = answer.error_problem(&[400]) {
                outcome = Outcome::fail(problem.clone(), vec![answer.finding(problem)]);
                break;
            }
        }
        run.record("transport.params-not-object", outcome);
    }

    if run.wants("transport.content-type") {
        let answer = run
            .send(
                Call::raw(r#"{"method": "list_tools"}"#)
                    .content_type(Some("text/plain"))
                    .cred(technical),
            )
            .await;
        let outcome = expect_error(&answer, &[400, 415], "text/plain refused");
        run.record("transport.content-type", outcome);
    }

    if run.wants("transport.oversized-body") {
        let size = run.options.oversized_body;
        let head = br#"{"method": "list_tools", "params": {"padding": ""#;
        let tail = br#""}}"#;
        let mut body = Vec::with_capacity(size.max(head.len() + tail.len()));
        body.extend_from_slice(head);
        body.resize(size.saturating_sub(tail.len()).max(head.len()), b'x');
        body.extend_from_slice(tail);
        // A server may answer 413 before reading the whole body and then
        // close the connection: keep it out of the client's pool so the next
        // check does not inherit a dead connection.
        let answer = run
            .send(
                Call::raw(body)
                    .cred(technical)
                    .header("connection", "close"),
            )
            .await;
        let outcome = expect_error(
            &answer,
            &[413],
            &format!("a {size}-byte body refused with 413"),
        );
        run.record("transport.oversized-body", outcome);
    }

    if run.wants("transport.unknown-method") {
        let outcome = match run.full() {
            None => Outcome::skip(NO_USER_TOKEN),
            Some(user) => {
                let answer = run
                    .call("cortex_conformance_no_such_method", None, Some(&user))
                    .await;
                expect_error(&answer, &[400], "unknown method refused with 400")
            }
        };
        run.record("transport.unknown-method", outcome);
    }
}
