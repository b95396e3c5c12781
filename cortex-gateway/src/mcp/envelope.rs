//! JSON-RPC answers as HTTP responses. One envelope writer
//! ([`envelope`]) serves every era, single messages and batches: a result
//! serialized once is spliced between the envelope's opening and closing
//! bytes without a copy, and a batch joins its messages' envelopes.

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    gzip,
    jsonrpc::{self, RpcError},
    methods::Answer,
};

/// One answer in its JSON-RPC envelope, as the buffers to send in order:
/// the opening with the id, the result as it was serialized, the closing
/// brace; or, for an error, the whole error response.
pub(crate) fn envelope(id: &Value, answer: Result<Answer, RpcError>) -> [Bytes; 3] {
    let result = match answer {
        Ok(Answer::Bytes(bytes)) => Bytes::from(bytes),
        Ok(Answer::Page(page)) => page.json.clone(),
        Ok(Answer::Value(value)) => Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
        Err(e) => return error_envelope(Some(id), &e),
    };
    [
        envelope_open(id),
        result,
        Bytes::from_static(ENVELOPE_CLOSE),
    ]
}

/// An error response (`id` absent when the request had no usable one), in
/// the shape of [`envelope`].
pub(crate) fn error_envelope(id: Option<&Value>, error: &RpcError) -> [Bytes; 3] {
    let whole = serde_json::to_vec(&jsonrpc::error_response(id, error)).unwrap_or_default();
    [Bytes::from(whole), Bytes::new(), Bytes::new()]
}

/// The answer to one request: its [`envelope`], with `headers` (emptied)
/// as the response's header map when small enough to keep (see
/// [`with_header_map`]). A `tools/list` page is gzip-compressed when
/// `gzip` (the client accepts it) and the page is large enough to gain.
pub(crate) fn respond(
    id: &Value,
    answer: Result<Answer, RpcError>,
    gzip: bool,
    headers: HeaderMap,
) -> Response {
    match answer {
        Ok(Answer::Page(page)) => list_response(id, &page, gzip, headers),
        answer => json_parts(envelope(id, answer), headers),
    }
}

/// The answer to a batch: its messages' envelopes joined in a JSON array.
pub(crate) fn batch_response(messages: Vec<[Bytes; 3]>) -> Response {
    let len = messages.iter().flatten().map(Bytes::len).sum::<usize>() + messages.len() + 1;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, parts) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for part in parts {
            out.extend_from_slice(part);
        }
    }
    out.push(b']');
    json_parts(
        [Bytes::from(out), Bytes::new(), Bytes::new()],
        HeaderMap::new(),
    )
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    // to_vec writes through serde's serializer directly; `to_string` goes
    // through `core::fmt` token by token (measurable on large tool lists).
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// What closes the envelope [`envelope_open`] opens.
const ENVELOPE_CLOSE: &[u8] = b"}";

/// A JSON answer whose body is `parts`, with `headers` (emptied) as its
/// header map when it is small enough to keep: see [`with_header_map`].
fn json_parts(parts: [Bytes; 3], headers: HeaderMap) -> Response {
    let mut r = Response::new(Body::new(SplicedBody::new(parts)));
    let mut headers = crate::headers::reusable_header_map(headers).unwrap_or_default();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *r.headers_mut() = headers;
    r
}

/// A `tools/list` page in its envelope: gzip-compressed when the client
/// accepts it and the page is large enough to gain (the page compressed
/// once, see `gzip.rs`), as it is otherwise. Either way the answer says
/// that it varies with `Accept-Encoding`.
fn list_response(
    id: &Value,
    page: &crate::catalog::Page,
    gzip: bool,
    headers: HeaderMap,
) -> Response {
    let open = envelope_open(id);
    let mut r = match gzip
        .then(|| gzip::wrap(&open, page, ENVELOPE_CLOSE))
        .flatten()
    {
        Some(parts) => {
            let mut r = json_parts(parts, headers);
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => json_parts(
            [open, page.json.clone(), Bytes::from_static(ENVELOPE_CLOSE)],
            headers,
        ),
    };
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    r
}

/// `{"jsonrpc":"2.0","id":ID,"result":` in one allocation of its exact
/// size (a `Bytes` made from a `Vec` with spare capacity allocates a
/// second block to share it), written on the stack when the id is short.
fn envelope_open(id: &Value) -> Bytes {
    use std::io::Write as _;
    const OPEN: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
    const RESULT: &[u8] = br#","result":"#;
    let mut stack = [0u8; 96];
    let mut out = std::io::Cursor::new(&mut stack[..]);
    if out.write_all(OPEN).is_ok()
        && serde_json::to_writer(&mut out, id).is_ok()
        && out.write_all(RESULT).is_ok()
    {
        let len = out.position() as usize;
        return Bytes::copy_from_slice(&stack[..len]);
    }
    let mut open = OPEN.to_vec();
    if serde_json::to_writer(&mut open, id).is_err() {
        open.extend_from_slice(b"null");
    }
    open.extend_from_slice(RESULT);
    Bytes::from(open)
}

/// A body made of a few ready buffers, with its exact length (so it is
/// sent with `Content-Length`, not chunked).
struct SplicedBody<const N: usize> {
    parts: [Bytes; N],
    next: usize,
    remaining: u64,
}

impl<const N: usize> SplicedBody<N> {
    fn new(parts: [Bytes; N]) -> Self {
        let remaining = parts.iter().map(|b| b.len() as u64).sum();
        Self {
            parts,
            next: 0,
            remaining,
        }
    }
}

impl<const N: usize> hyper::body::Body for SplicedBody<N> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        while this.next < N {
            let part = std::mem::take(&mut this.parts[this.next]);
            this.next += 1;
            if !part.is_empty() {
                this.remaining -= part.len() as u64;
                return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(part))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

pub(crate) fn rpc_error(status: StatusCode, id: Option<&Value>, error: RpcError) -> Response {
    let mut r = json_parts(error_envelope(id, &error), HeaderMap::new());
    *r.status_mut() = status;
    r
}

pub(crate) fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

pub(crate) fn method_not_allowed() -> Response {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method not allowed: protocol revision 2026-07-28 uses POST only"}),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

/// `response` with its headers moved into `map`, the request's header map,
/// emptied. hyper keeps the header map of each response it sends and
/// parses the connection's next request into it; a response map built
/// fresh for every request is an allocation, and too small for the next
/// request's headers (a second one). Recycling the request's map makes
/// both unnecessary: its capacity already fits the agent's headers.
pub(crate) fn with_header_map(mut response: Response, map: HeaderMap) -> Response {
    let Some(mut map) = crate::headers::reusable_header_map(map) else {
        return response;
    };
    map.extend(std::mem::take(response.headers_mut()));
    *response.headers_mut() = map;
    response
}
