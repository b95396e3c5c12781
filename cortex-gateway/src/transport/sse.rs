//! Server-sent event streams: the legacy GET stream of a session and the
//! stateless era's `subscriptions/listen` response stream. Both carry only
//! list-changed notifications, end when the gateway shuts down (and the
//! legacy one when its session ends), and send keep-alive comments.

use std::{collections::VecDeque, convert::Infallible, sync::Arc, time::Duration};

use axum::response::{
    IntoResponse, Response,
    sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::{
    Inner,
    federation::ListChanged,
    mcp::{
        jsonrpc::{Revision, notification, response},
        methods::server_info,
    },
};

/// Which list-changed notifications a stream carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
}

impl Filter {
    /// Everything (the legacy GET stream).
    pub(crate) const ALL: Filter = Filter {
        tools: true,
        prompts: true,
        resources: true,
    };

    /// The honoured subset of a `subscriptions/listen` filter.
    pub(crate) fn from_request(notifications: &Value) -> Self {
        let flag = |k: &str| notifications.get(k).and_then(Value::as_bool) == Some(true);
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
        }
    }

    /// As a `SubscriptionFilter` object (only honoured, true entries).
    pub(crate) fn to_value(self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                m.insert(k.into(), json!(true));
            }
        }
        Value::Object(m)
    }

    fn methods(self, change: ListChanged) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.tools && change.tools {
            out.push("notifications/tools/list_changed");
        }
        if self.prompts && change.prompts {
            out.push("notifications/prompts/list_changed");
        }
        if self.resources && change.resources {
            out.push("notifications/resources/list_changed");
        }
        out
    }
}

struct StreamState {
    changes: broadcast::Receiver<ListChanged>,
    ended: Option<watch::Receiver<bool>>,
    shutdown: watch::Receiver<bool>,
    pending: VecDeque<Event>,
    filter: Filter,
    subscription: Option<Value>,
    revision: Revision,
    done: bool,
}

fn event(message: &Value) -> Event {
    Event::default().event("message").data(message.to_string())
}

impl StreamState {
    fn push_change(&mut self, change: ListChanged) {
        for method in self.filter.methods(change) {
            let params = self
                .subscription
                .as_ref()
                .map(|id| json!({"_meta": {"io.modelcontextprotocol/subscriptionId": id}}));
            self.pending.push_back(event(&notification(method, params)));
        }
    }

    fn finish(&mut self, graceful: bool) {
        self.done = true;
        if let (true, Some(id)) = (graceful, &self.subscription) {
            let result = json!({
                "resultType": "complete",
                "_meta": {
                    "io.modelcontextprotocol/subscriptionId": id,
                    "io.modelcontextprotocol/serverInfo": server_info(self.revision),
                }
            });
            self.pending.push_back(event(&response(id, result)));
        }
    }
}

async fn ended(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        Some(rx) => {
            let _ = rx.wait_for(|v| *v).await;
        }
        None => std::future::pending().await,
    }
}

fn stream(state: StreamState) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.pending.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.done {
                return None;
            }
            enum Wake {
                Change(ListChanged),
                Ended,
                Shutdown,
            }
            let all = ListChanged {
                tools: true,
                prompts: true,
                resources: true,
            };
            let wake = tokio::select! {
                r = s.changes.recv() => match r {
                    Ok(change) => Wake::Change(change),
                    Err(broadcast::error::RecvError::Lagged(_)) => Wake::Change(all),
                    Err(broadcast::error::RecvError::Closed) => Wake::Shutdown,
                },
                () = ended(&mut s.ended) => Wake::Ended,
                _ = s.shutdown.wait_for(|v| *v) => Wake::Shutdown,
            };
            match wake {
                Wake::Change(change) => s.push_change(change),
                Wake::Ended => s.finish(false),
                Wake::Shutdown => s.finish(true),
            }
        }
    })
}

fn sse(
    inner: &Inner,
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    // At least every half idle timeout, so that an open stream is never an
    // idle connection (`watch.rs`).
    let interval = Duration::from_secs(inner.config.keep_alive_s.max(1))
        .min(Duration::from_millis(inner.config.controls.idle_timeout_ms.max(2)) / 2);
    let keep_alive = KeepAlive::new().interval(interval);
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

/// The legacy GET stream of a session.
pub(crate) fn legacy_stream(
    inner: &Arc<Inner>,
    revision: Revision,
    session_ended: watch::Receiver<bool>,
) -> Response {
    let mut pending = VecDeque::new();
    if revision >= Revision::V2025_11_25 {
        // Priming event: an id with empty data, as 2025-11-25 recommends.
        pending.push_back(
            Event::default()
                .id(uuid::Uuid::new_v4().simple().to_string())
                .data(""),
        );
    }
    let state = StreamState {
        changes: inner.federation.subscribe(),
        ended: Some(session_ended),
        shutdown: inner.shutdown.subscribe(),
        pending,
        filter: Filter::ALL,
        subscription: None,
        revision,
        done: false,
    };
    sse(inner, stream(state))
}

/// The `subscriptions/listen` response stream: the acknowledgement first,
/// then the requested notifications tagged with the subscription id.
pub(crate) fn listen_stream(
    inner: &Arc<Inner>,
    id: Value,
    filter: Filter,
    revision: Revision,
) -> Response {
    let ack = notification(
        "notifications/subscriptions/acknowledged",
        Some(json!({
            "notifications": filter.to_value(),
            "_meta": {"io.modelcontextprotocol/subscriptionId": id},
        })),
    );
    let state = StreamState {
        changes: inner.federation.subscribe(),
        ended: None,
        shutdown: inner.shutdown.subscribe(),
        pending: VecDeque::from([event(&ack)]),
        filter,
        subscription: Some(id),
        revision,
        done: false,
    };
    sse(inner, stream(state))
}
