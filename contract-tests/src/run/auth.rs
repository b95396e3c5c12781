//! `auth.*`: which tokens the backend accepts on `list_tools`, the one
//! method every caller may use, so that any refusal is about the token.

use cortex_backend::{contract::methods, testing::BrokenToken};

use super::{NO_USER_TOKEN, Run};
use crate::{probe::Cred, report::Outcome};

/// The check of each kind of broken token.
fn broken_check(kind: BrokenToken) -> Option<&'static str> {
    Some(match kind {
        BrokenToken::Expired => "auth.expired-token",
        BrokenToken::NotYetValid => "auth.not-yet-valid-token",
        BrokenToken::WrongIssuer => "auth.wrong-issuer",
        BrokenToken::WrongAudience => "auth.wrong-audience",
        BrokenToken::BadSignature => "auth.bad-signature",
        BrokenToken::UnknownKid => "auth.unknown-kid",
        BrokenToken::Hs256WithPublicKey => "auth.hs256-public-key",
        BrokenToken::AlgNone => "auth.alg-none",
        BrokenToken::MissingAud => "auth.missing-aud",
        _ => return None,
    })
}

/// Pass when `list_tools` with `cred` gets the contract's 401.
pub(super) async fn refused(run: &Run, cred: Option<&Cred>, what: &str) -> Outcome {
    let answer = run.call(methods::LIST_TOOLS, None, cred).await;
    match answer.error_problem(&[401]) {
        None => Outcome::pass(format!("{what} refused with 401")),
        Some(problem) => Outcome::fail(
            format!("{what} was not refused with 401"),
            vec![answer.finding(problem)],
        ),
    }
}

pub(super) async fn run(run: &mut Run) {
    if run.wants("auth.valid-token") {
        let outcome = match run.full() {
            None => Outcome::skip(NO_USER_TOKEN),
            Some(user) => {
                let answer = run.call(methods::LIST_TOOLS, None, Some(&user)).await;
                if answer.is(200) {
                    Outcome::pass("list_tools with a valid user token answered 200")
                } else {
                    Outcome::fail(
                        "a valid user token was not accepted",
                        vec![answer.finding(format!(
                            "expected 200, got {}",
                            answer.status().map_or("no answer".into(), |s| s.to_string())
                        ))],
                    )
                }
            }
        };
        run.record("auth.valid-token", outcome);
    }
    if run.wants("auth.no-token") {
        let outcome = refused(run, None, "a request without Authorization").await;
        run.record("auth.no-token", outcome);
    }
    if run.wants("auth.wrong-technical-token") {
        let wrong = Cred::new(
            "unknown static token",
            "cortex-conformance-not-a-technical-token-0123456789",
        );
        let outcome = refused(run, Some(&wrong), "an unknown static token").await;
        run.record("auth.wrong-technical-token", outcome);
    }
    for kind in BrokenToken::ALL {
        let Some(id) = broken_check(kind) else {
            continue;
        };
        if !run.wants(id) {
            continue;
        }
        let outcome = match run.options.users.broken(kind, &run.scopes) {
            Some(cred) => refused(run, Some(&cred), &format!("a {} token", kind.name())).await,
            None if run.options.users.is_none() => Outcome::skip(NO_USER_TOKEN),
            None => {
                Outcome::skip("needs the harness's issuer to mint broken tokens: pass --issuer")
            }
        };
        run.record(id, outcome);
    }
}
