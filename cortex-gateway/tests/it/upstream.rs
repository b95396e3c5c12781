//! The upstream client's HTTP/1.1 connections, against a raw loopback
//! server whose behaviour each test picks (keep-alive, closing idle
//! connections, `Connection: close`, never answering, oversized bodies):
//! connections are reused, a connection the backend closed is never used
//! again, and an abandoned call never leaves a half-read answer behind.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cortex_gateway::{
    config::BackendConfig,
    testing::{Credential, UpstreamClient, UpstreamError},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

/// How the raw server answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Keep-alive answers.
    KeepAlive,
    /// Answers (without saying so) and then closes the connection.
    CloseAfterAnswer,
    /// Answers with `Connection: close` and closes.
    ConnectionClose,
    /// Never answers the first request of a connection.
    HangFirst,
    /// A chunked body larger than the client's limit.
    Oversized,
}

struct Server {
    url: String,
    accepted: Arc<AtomicUsize>,
    /// The head of every request, lower-cased.
    heads: Arc<Mutex<Vec<String>>>,
    closed: Arc<Notify>,
}

impl Server {
    /// The `Host` of every request.
    fn hosts(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|head| header(head, "host").unwrap_or_default())
            .collect()
    }
}

/// The value of header `name` in a lower-cased request head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(Notify::new());
    let (a, h, c) = (accepted.clone(), heads.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let first = a.fetch_add(1, Ordering::SeqCst) == 0;
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move {
                connection(stream, mode, first, &h).await;
                c.notify_one();
            });
        }
    });
    Server {
        url,
        accepted,
        heads,
        closed,
    }
}

/// Serves one connection; returns when it is closed.
async fn connection(mut stream: TcpStream, mode: Mode, first: bool, heads: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        heads.lock().unwrap().push(head.clone());
        let length: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let body = br#"{"ok":true}"#;
        let answer = match mode {
            Mode::HangFirst if first => {
                // Hold the connection open without answering.
                let mut rest = [0u8; 1];
                let _ = stream.read(&mut rest).await;
                return;
            }
            Mode::ConnectionClose => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                body.len()
            ),
            Mode::Oversized => {
                let chunk = "x".repeat(1000);
                let mut text = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                for _ in 0..10 {
                    text.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
                }
                text.push_str("0\r\n\r\n");
                let _ = stream.write_all(text.as_bytes()).await;
                continue;
            }
            // Headers a request must never carry back (the client reuses
            // answers' header maps for its next requests).
            _ => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: session=backend\r\nx-backend-only: 1\r\ncontent-length: {}\r\n\r\n",
                body.len()
            ),
        };
        if stream.write_all(answer.as_bytes()).await.is_err()
            || stream.write_all(body).await.is_err()
        {
            return;
        }
        if mode == Mode::CloseAfterAnswer {
            // Later than the client takes to finish the exchange, so the
            // connection is idle in its list when it closes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if matches!(mode, Mode::CloseAfterAnswer | Mode::ConnectionClose) {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads until the end of a request head; the offset after it.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn call(
    client: &UpstreamClient,
    backend: &BackendConfig,
    timeout: Duration,
) -> Result<bytes::Bytes, UpstreamError> {
    client
        .call_raw(
            backend,
            Credential::Technical("technical"),
            "get_help",
            None,
            timeout,
        )
        .await
}

/// A server in `mode`, a client with a 1 MiB answer limit, and backend `b`
/// at the server.
async fn set_up(mode: Mode) -> (Server, UpstreamClient, BackendConfig) {
    let s = server(mode).await;
    let client = UpstreamClient::new(1 << 20).unwrap();
    let backend = BackendConfig::new("b", &s.url);
    (s, client, backend)
}

/// `n` calls that must each get the server's `{"ok":true}`.
async fn calls_ok(client: &UpstreamClient, backend: &BackendConfig, n: usize) {
    for _ in 0..n {
        let body = call(client, backend, Duration::from_secs(5)).await.unwrap();
        assert_eq!(&body[..], br#"{"ok":true}"#);
    }
}

#[tokio::test]
async fn connections_are_reused_and_carry_the_host() {
    let (s, client, backend) = set_up(Mode::KeepAlive).await;
    calls_ok(&client, &backend, 5).await;
    assert_eq!(
        s.accepted.load(Ordering::SeqCst),
        1,
        "one connection for five calls"
    );
    assert_eq!(client.idle_connections(&backend), 1);
    let authority = s.url.trim_start_matches("http://");
    assert!(
        s.hosts().iter().all(|h| h == authority),
        "every request names the backend in Host: {:?}",
        s.hosts()
    );
}

/// A thread with a single-threaded runtime of its own, as the gateway's
/// serving threads have, that makes calls when asked.
struct CallerThread {
    slot: usize,
    asks: std::sync::mpsc::Sender<usize>,
    done: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl CallerThread {
    fn start(client: Arc<UpstreamClient>, backend: BackendConfig) -> Self {
        let (asks, asked) = std::sync::mpsc::channel::<usize>();
        let (slot_tx, slot_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            slot_tx
                .send(cortex_gateway::testing::thread_slot())
                .unwrap();
            // Ends when the test drops its sender.
            while let Ok(n) = asked.recv() {
                runtime.block_on(calls_ok(&client, &backend, n));
                done_tx.send(()).unwrap();
            }
        });
        let slot = slot_rx.recv().unwrap();
        Self { slot, asks, done }
    }

    async fn calls(&mut self, n: usize) {
        self.asks.send(n).unwrap();
        self.done.recv().await.expect("the thread's calls succeed");
    }
}

/// A backend connection is registered with the reactor of the thread that
/// opened it; another serving thread never takes it from the idle list
/// (its reads would be reported to the first thread), and the thread that
/// opened it takes it again.
#[tokio::test]
async fn a_thread_reuses_only_the_connections_it_opened() {
    let (s, client, backend) = set_up(Mode::KeepAlive).await;
    let client = Arc::new(client);
    let mut first = CallerThread::start(client.clone(), backend.clone());
    // Threads take slots in turn; a thread that landed in the first one's
    // slot (other tests take slots too) shares its list, so try another.
    let mut second = CallerThread::start(client.clone(), backend.clone());
    while second.slot == first.slot {
        second = CallerThread::start(client.clone(), backend.clone());
    }
    first.calls(2).await;
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    second.calls(2).await;
    assert_eq!(
        s.accepted.load(Ordering::SeqCst),
        2,
        "the second thread opened its own connection"
    );
    first.calls(3).await;
    second.calls(3).await;
    assert_eq!(
        s.accepted.load(Ordering::SeqCst),
        2,
        "each thread took its own connection back"
    );
    assert_eq!(client.idle_connections(&backend), 2);
}

#[tokio::test]
async fn an_answers_headers_never_reach_the_next_request() {
    let (s, client, backend) = set_up(Mode::KeepAlive).await;
    calls_ok(&client, &backend, 4).await;
    let heads = s.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 4);
    let names = |head: &str| {
        let mut names: Vec<String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
            .collect();
        names.sort();
        names
    };
    let first = names(&heads[0]);
    for name in ["host", "authorization", "content-type", "content-length"] {
        assert_eq!(
            first.iter().filter(|n| *n == name).count(),
            1,
            "one {name} in {first:?}"
        );
    }
    for head in &heads {
        assert!(
            !head.contains("set-cookie") && !head.contains("x-backend-only"),
            "a request carried an answer's header:\n{head}"
        );
        assert_eq!(names(head), first, "every request has the same headers");
    }
}

#[tokio::test]
async fn a_connection_the_backend_closed_is_not_used_again() {
    let (s, client, backend) = set_up(Mode::CloseAfterAnswer).await;
    for n in 1..=3 {
        call(&client, &backend, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            client.idle_connections(&backend),
            1,
            "kept after the answer"
        );
        // The backend has closed the idle connection before the next call.
        tokio::time::timeout(Duration::from_secs(5), s.closed.notified())
            .await
            .unwrap();
        assert_eq!(s.accepted.load(Ordering::SeqCst), n);
    }
}

#[tokio::test]
async fn pruning_closes_what_the_backend_closed_and_keeps_the_rest() {
    let open = server(Mode::KeepAlive).await;
    let closing = server(Mode::CloseAfterAnswer).await;
    let client = UpstreamClient::new(1 << 20).unwrap();
    let (kept, gone) = (
        BackendConfig::new("kept", &open.url),
        BackendConfig::new("gone", &closing.url),
    );
    for backend in [&kept, &gone] {
        call(&client, backend, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(client.idle_connections(backend), 1);
    }
    tokio::time::timeout(Duration::from_secs(5), closing.closed.notified())
        .await
        .unwrap();
    // The end of the connection reaches the client once its I/O driver
    // has run; prune until it has (bounded), without a call to `gone`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.prune_idle() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection the backend closed was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client.idle_connections(&gone), 0);
    assert_eq!(client.idle_connections(&kept), 1, "an open one is kept");
    // The kept one still works: the next call reuses it.
    call(&client, &kept, Duration::from_secs(5)).await.unwrap();
    assert_eq!(open.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_close_answers_are_used_and_the_connection_dropped() {
    let (s, client, backend) = set_up(Mode::ConnectionClose).await;
    calls_ok(&client, &backend, 3).await;
    assert_eq!(s.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(client.idle_connections(&backend), 0);
}

#[tokio::test]
async fn a_timed_out_call_takes_its_connection_with_it() {
    let (s, client, backend) = set_up(Mode::HangFirst).await;
    let err = call(&client, &backend, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err, UpstreamError::Timeout(200));
    assert_eq!(client.idle_connections(&backend), 0);
    let body = call(&client, &backend, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&body[..], br#"{"ok":true}"#);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2, "a fresh connection");
}

#[tokio::test]
async fn an_oversized_chunked_answer_is_refused() {
    let s = server(Mode::Oversized).await;
    let client = UpstreamClient::new(4096).unwrap();
    let backend = BackendConfig::new("b", &s.url);
    let err = call(&client, &backend, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err, UpstreamError::TooLarge(4096));
    assert_eq!(client.idle_connections(&backend), 0);
}

/// A TLS backend issued by the test authority, offering `alpn`; records
/// the HTTP version of every request and counts connections.
async fn tls_server(alpn: &[&[u8]]) -> (Server, Arc<Mutex<Vec<hyper::Version>>>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = crate::support::tls_acceptor(
        include_bytes!("../fixtures/backend-cert.pem"),
        include_bytes!("../fixtures/backend-key.pem"),
        alpn,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let versions = Arc::new(Mutex::new(Vec::new()));
    let (a, v) = (accepted.clone(), versions.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let (acceptor, v) = (acceptor.clone(), v.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    v.lock().unwrap().push(request.version());
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(br#"{"ok":true}"#)),
                        ))
                    }
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    let server = Server {
        url,
        accepted,
        heads: Arc::default(),
        closed: Arc::new(Notify::new()),
    };
    (server, versions)
}

fn test_roots() -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    vec![CertificateDer::from_pem_slice(include_bytes!("../fixtures/test-ca-cert.pem")).unwrap()]
}

/// Three calls to a TLS backend offering `alpn`: the HTTP versions it saw,
/// the connections it accepted, and the idle connections left.
async fn three_tls_calls(alpn: &[&[u8]]) -> (Vec<hyper::Version>, usize, usize) {
    let (s, versions) = tls_server(alpn).await;
    let client = UpstreamClient::with_roots(1 << 20, test_roots()).unwrap();
    let backend = BackendConfig::new("b", &s.url);
    calls_ok(&client, &backend, 3).await;
    let seen = versions.lock().unwrap().clone();
    (
        seen,
        s.accepted.load(Ordering::SeqCst),
        client.idle_connections(&backend),
    )
}

#[tokio::test]
async fn a_tls_backend_on_http1_keeps_its_connection() {
    let (versions, accepted, idle) = three_tls_calls(&[b"http/1.1"]).await;
    assert_eq!(versions, vec![hyper::Version::HTTP_11; 3]);
    assert_eq!((accepted, idle), (1, 1), "one connection, kept");
}

#[tokio::test]
async fn a_tls_backend_that_chooses_http2_is_called_over_http2() {
    let (versions, accepted, idle) = three_tls_calls(&[b"h2"]).await;
    assert_eq!(versions, vec![hyper::Version::HTTP_2; 3]);
    // The first connection only found out the protocol; the pooled client
    // then keeps one HTTP/2 connection for every call.
    assert_eq!((accepted, idle), (2, 0));
}

#[tokio::test]
async fn a_tls_backend_from_another_authority_gets_nothing() {
    let (s, versions) = tls_server(&[b"http/1.1"]).await;
    // Trusts only the platform's roots, which did not issue the test CA.
    let client = UpstreamClient::new(1 << 20).unwrap();
    let backend = BackendConfig::new("b", &s.url);
    let err = call(&client, &backend, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unreachable(_)), "{err:?}");
    assert!(versions.lock().unwrap().is_empty());
}
