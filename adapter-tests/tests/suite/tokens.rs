//! 401 for every missing, malformed or broken token, and the technical
//! token's boundary.

use cortex_backend::{contract::methods, testing::BrokenToken};
use serde_json::json;

use crate::{
    backend::READ,
    fixture::{AUDIENCE, Call, TECHNICAL, fixture, send},
};

fn echo() -> serde_json::Value {
    json!({"method": "echo", "params": {"text": "x"}})
}

#[tokio::test]
async fn no_authorization_header_answers_401() {
    let mut call = Call::post("unused", &echo());
    call.authorization = None;
    send(call).await.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn malformed_authorization_headers_answer_401() {
    for header in [
        "Basic YW5hOnB3",
        "Bearer",
        "Bearer a b",
        "token-without-scheme",
    ] {
        let mut call = Call::post("unused", &echo());
        call.authorization = Some(header.to_string());
        send(call).await.assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn a_token_that_is_not_a_jwt_answers_401() {
    send(Call::post("not-a-jwt-and-not-technical", &echo()))
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn every_broken_token_kind_answers_401() {
    let issuer = &fixture().issuer;
    for kind in BrokenToken::ALL {
        let token = issuer.broken(kind, AUDIENCE, "ana", &[READ]);
        let reply = send(Call::post(&token, &echo())).await;
        assert_eq!(reply.status, 401, "{}: {}", kind.name(), reply.body);
        assert!(!reply.error().is_empty(), "{}", kind.name());
    }
}

#[tokio::test]
async fn the_technical_token_may_call_only_discovery() {
    for method in methods::DISCOVERY {
        let reply = send(Call::method(TECHNICAL, method, json!({}))).await;
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
    }
    let calls = [
        ("get_help", json!({})),
        ("whoami", json!({})),
        ("get_prompt", json!({"name": "summarise"})),
        ("read_resource", json!({"uri": "shelf://item/7"})),
        ("echo", json!({"text": "x"})),
        ("measure", json!({"blob": ""})),
        ("withdraw", json!({"amount": 1})),
        ("purge", json!({})),
        ("find", json!({"id": "known"})),
        ("explode", json!({})),
        ("fail", json!({})),
    ];
    for (method, params) in calls {
        let reply = send(Call::method(TECHNICAL, method, params)).await;
        reply.assert_error(403, "technical_token_not_allowed");
        assert!(
            reply.body.get("required").is_none(),
            "{method}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn every_tool_is_refused_to_the_technical_token() {
    let listed = send(Call::method(TECHNICAL, "list_tools", json!({}))).await;
    for tool in listed.body["tools"].as_array().expect("a tool list") {
        let name = tool["name"].as_str().expect("a tool name");
        let reply = send(Call::method(TECHNICAL, name, json!({}))).await;
        assert_eq!(reply.status, 403, "{name}: {}", reply.body);
    }
}
