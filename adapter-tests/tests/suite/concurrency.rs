//! Many calls at once through each adapter.

use serde_json::json;

use crate::{
    backend::READ,
    fixture::{Call, send, token},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_tool_calls_all_get_their_own_answer() {
    let t = token(&[READ]);
    let calls = (0..64).map(|i| {
        let call = Call::method(&t, "echo", json!({"text": format!("call-{i}")}));
        async move { (i, send(call).await) }
    });
    let replies = futures::future::join_all(calls).await;
    for (i, reply) in replies {
        assert_eq!(reply.status, 200, "call {i}: {}", reply.body);
        assert_eq!(reply.body["text"], json!(format!("call-{i}")));
    }
}
