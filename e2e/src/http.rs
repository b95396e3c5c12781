//! One plain HTTP/1.1 request over loopback, for the harness and the tests.

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// What an HTTP request got back: status, headers and body text.
pub type Answer = (u16, hyper::HeaderMap, String);

/// Sends `method url` with `headers` and `body`; the answer, whatever its
/// status.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<Answer> {
    use anyhow::Context as _;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .with_context(|| format!("{method} {url}"))?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .with_context(|| format!("{method} {url}: reading the body"))?
        .to_bytes();
    Ok((
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}
