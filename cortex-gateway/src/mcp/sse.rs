//! Server-sent event streams: the legacy GET stream of a session and the
//! stateless era's `subscriptions/listen` response stream. Both carry only
//! list-changed notifications, end when the gateway shuts down (and the
//! legacy one when its session ends), and send keep-alive comments.

use std::{collections::VecDeque, convert::Infallible};

use axum::response::{
    IntoResponse, Response,
    sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::{
    Service,
    jsonrpc::{Revision, notification, response},
    methods::server_info,
};
use crate::{catalog::ListChanged, store::ratelimit::StreamSlot};

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
    mcp: &Service,
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    // At least every half idle timeout, so that an open stream is never an
    // idle connection (`watch.rs`).
    let interval = mcp.settings.keep_alive;
    let keep_alive = KeepAlive::new().interval(interval);
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

/// Keeps `slot` for as long as the response body (the stream) lives.
pub(crate) fn hold_slot(response: Response, slot: StreamSlot) -> Response {
    let (parts, body) = response.into_parts();
    let stream = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _ = &slot;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// The legacy GET stream of a session.
pub(crate) fn legacy_stream(
    mcp: &Service,
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
        changes: mcp.catalog.subscribe(),
        ended: Some(session_ended),
        shutdown: mcp.shutdown.clone(),
        pending,
        filter: Filter::ALL,
        subscription: None,
        revision,
        done: false,
    };
    sse(mcp, stream(state))
}

/// The `subscriptions/listen` response stream: the acknowledgement first,
/// then the requested notifications tagged with the subscription id.
pub(crate) fn listen_stream(
    mcp: &Service,
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
        changes: mcp.catalog.subscribe(),
        ended: None,
        shutdown: mcp.shutdown.clone(),
        pending: VecDeque::from([event(&ack)]),
        filter,
        subscription: Some(id),
        revision,
        done: false,
    };
    sse(mcp, stream(state))
}
