//! Reuse of header maps between the messages of a connection.

/// The largest header map kept for reuse; a larger one (a message with
/// unusually many headers) is dropped instead, so it does not stay behind.
const REUSED_HEADER_CAPACITY: usize = 32;

/// `map` emptied for reuse, or `None` when it is too large to keep. hyper
/// parses a connection's next message into the header map of the last one
/// it sent, so handing it a map that already fits saves an allocation per
/// message (the server's responses and the backend requests both do).
pub(crate) fn reusable_header_map(mut map: axum::http::HeaderMap) -> Option<axum::http::HeaderMap> {
    if map.capacity() > REUSED_HEADER_CAPACITY {
        return None;
    }
    map.clear();
    Some(map)
}
