//! `assert.*`: what only gateway-assertion mode refuses. The broken
//! assertions every backend refuses (expired, another key, wrong `aud`,
//! `alg` swapped, ...) are the `auth.*` checks, which send assertions in
//! this mode.

use cortex_backend::testing::{TestIssuer, TokenBuilder};
use serde_json::json;

use super::{Run, auth::refused};
use crate::{
    options::{EMAIL, Identity, SUB, UserTokens},
    probe::Cred,
    report::Outcome,
};

/// The `act.sub` of `assert.foreign-actor`: not the gateway.
const FOREIGN_ACTOR: &str = "https://another-gateway.cortex-conformance.invalid";

const NO_GATEWAY: &str = "needs the harness's gateway issuer to mint assertions: pass --issuer \
     with the state file of `cortex-conformance issuer --identity assert`";

/// The harness's claims on a token: its user, every scope, the extra claims.
fn as_the_user<'a>(run: &Run, token: TokenBuilder<'a>) -> TokenBuilder<'a> {
    let mut token = token
        .sub(SUB)
        .email(EMAIL)
        .scopes(run.scopes.iter().map(String::as_str));
    for (k, v) in &run.options.claims {
        token = token.claim(k, v.clone());
    }
    token
}

pub(super) async fn run(run: &mut Run) {
    if run.options.identity != Identity::Assert {
        return;
    }
    let gateway = match &run.options.users {
        UserTokens::Issuer { issuer, audience } => Some((issuer.clone(), audience.clone())),
        _ => None,
    };
    let gateway_audience = run.options.gateway_audience.clone();
    // The identity provider a forward-mode gateway would take tokens from.
    let idp = if run.wants("assert.idp-token") && gateway.is_some() {
        TestIssuer::start().await.ok()
    } else {
        None
    };
    let cases: [(&'static str, &str); 4] = [
        ("assert.without-act", "an assertion without `act`"),
        (
            "assert.foreign-actor",
            "an assertion whose `act.sub` is another gateway",
        ),
        (
            "assert.idp-token",
            "an identity provider's token for the gateway's audience",
        ),
        (
            "assert.gateway-audience",
            "a token the gateway signed for its own audience",
        ),
    ];
    for (id, what) in cases {
        if !run.wants(id) {
            continue;
        }
        let Some((issuer, audience)) = &gateway else {
            run.record(id, Outcome::skip(NO_GATEWAY));
            continue;
        };
        let token = match id {
            "assert.without-act" => Some(
                as_the_user(run, issuer.token(audience))
                    .without("act")
                    .mint(),
            ),
            "assert.foreign-actor" => Some(
                as_the_user(run, issuer.token(audience))
                    .claim("act", json!({"sub": FOREIGN_ACTOR}))
                    .mint(),
            ),
            "assert.idp-token" => idp
                .as_ref()
                .map(|idp| as_the_user(run, idp.token(&gateway_audience)).mint()),
            _ => Some(as_the_user(run, issuer.token(&gateway_audience)).mint()),
        };
        let outcome = match token {
            Some(token) => refused(run, Some(&Cred::new(what, token)), what).await,
            None => Outcome::skip("could not start the harness's identity provider on loopback"),
        };
        run.record(id, outcome);
    }
}
