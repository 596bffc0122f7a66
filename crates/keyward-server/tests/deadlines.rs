//! Slow, stalled, idle and too many connections, sent as raw TCP against the
//! real server and gateway with short `[limits]`: each must be closed (or
//! refused) within its deadline, and other clients must still be served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use keyward_gateway::GatewayConfig;
use keyward_server::settings::LimitSettings;
use keyward_server::{Application, Settings};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The limits every test runs under: a second of idle, head and body
/// grace, 100 bytes a second after it, four connections an address.
fn limits() -> LimitSettings {
    LimitSettings {
        idle_timeout_ms: 1000,
        head_timeout_ms: 1000,
        body_timeout_ms: 1000,
        body_min_rate: 100,
        max_connections_per_ip: 4,
    }
}

/// Longest a connection may take to be closed after its limit of about a
/// second: generous, so a loaded machine does not fail the test, and far
/// below the minutes the connections stayed open without limits.
const BOUND: Duration = Duration::from_secs(6);

struct Server {
    api: SocketAddr,
    gateway: Option<SocketAddr>,
    root: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// As the shared test support reads it: `KEYWARD_TEST_FAST_PATH=0` sends
/// every request through hyper.
fn fast_path() -> bool {
    std::env::var("KEYWARD_TEST_FAST_PATH").map_or(true, |v| v != "0")
}

async fn start(gateway: Option<GatewayConfig>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        gateway,
        limits: limits(),
        fast_path: fast_path(),
        ..Settings::default()
    };
    let mut app = Application::build(settings).await.unwrap();
    let root = app.take_root_token().unwrap().expose().to_owned();
    let api = app.local_addr().unwrap();
    let gateway = app.gateway_addr().map(|a| a.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Server {
        api,
        gateway,
        root,
        _dir: dir,
        _stop: stop,
    }
}

/// An admin client that keeps no connection open after a call, so the
/// setup does not count against the per-address cap.
fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Server {
    async fn call(&self, path: &str, body: Value) -> Value {
        let r = admin_client()
            .post(format!("http://{}{path}", self.api))
            .bearer_auth(&self.root)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A live key of a new API.
    async fn key(&self) -> String {
        let api = self
            .call(
                "/v1/apis",
                json!({"name": "dl", "prefix": "dl", "environments": ["live"]}),
            )
            .await;
        let key = self
            .call(
                "/v1/keys",
                json!({"api_id": api["id"], "environment": "live", "owner": "acme",
                       "scopes": ["prices:read"]}),
            )
            .await;
        key["key"].as_str().unwrap().to_owned()
    }

    fn verify_request(&self, key: &str) -> String {
        let body = json!({"key": key}).to_string();
        format!(
            "POST /v1/keys/verify HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.root,
            body.len()
        )
    }
}

/// What an upstream saw: the target of every request whose body it read.
type Seen = Arc<Mutex<Vec<(Uri, Bytes)>>>;

async fn recording_upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push((uri, body));
            (StatusCode::OK, "upstream")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// An upstream that accepts, reads whatever comes, and never answers.
async fn silent_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                // Held open until the gateway gives up.
            });
        }
    });
    format!("http://{addr}")
}

fn gateway_config(upstream: &str) -> GatewayConfig {
    serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "upstream": upstream,
        "max_body": 1000,
        "upstream_timeout_ms": 1000,
        "threads": 1,
        "route": [{"path": "/v1"}],
    }))
    .unwrap()
}

async fn gateway(upstream: &str) -> (Server, String) {
    let server = start(Some(gateway_config(upstream))).await;
    let key = server.key().await;
    (server, key)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (an end of stream or a
/// reset), within [`BOUND`]; returns what was read and how long it took.
async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> (String, Duration) {
    let started = Instant::now();
    let mut read = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, reading)
        .await
        .expect("the server should have closed the connection");
    (
        String::from_utf8_lossy(&read).into_owned(),
        started.elapsed(),
    )
}

/// Reads one whole answer (head and `Content-Length` body) and returns its
/// status and body, leaving the connection open.
async fn answer(stream: &mut TcpStream) -> (u16, String) {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let whole = async {
        loop {
            if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if read.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    let body = String::from_utf8_lossy(&read[end + 4..end + 4 + length]);
                    return (status, body.into_owned());
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {read:?}");
            read.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(BOUND, whole)
        .await
        .expect("an answer within the bound")
}

fn status_of(text: &str) -> u16 {
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// Sends `bytes` one at a time, `gap` apart, until the server stops
/// taking them; returns how long the server let it go on.
async fn trickle(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8], gap: Duration) -> Duration {
    let started = Instant::now();
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
        if started.elapsed() > BOUND {
            break;
        }
    }
    started.elapsed()
}

// The gateway's relay.

#[tokio::test]
async fn gateway_stalled_body_is_cut_off_within_its_deadline() {
    let (up, seen) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    let mut client = connect(server.gateway.unwrap()).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 100\r\n\r\n0123456789"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let (text, took) = until_closed(&mut client).await;
    assert_eq!(status_of(&text), 408, "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    assert!(
        took >= Duration::from_millis(900),
        "not before the grace: {took:?}"
    );
    assert!(seen.lock().unwrap().is_empty(), "no whole request went on");
}

/// Sends `head`, then `body` a byte every 300 ms (never stalled, far below
/// 100 bytes a second) while reading; returns what the server answered
/// before it closed, and how long that took.
async fn trickled(stream: &mut TcpStream, head: &str, body: &[u8]) -> (String, Duration) {
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let gap = Duration::from_millis(300);
    tokio::select! {
        closed = until_closed(&mut reader) => closed,
        _ = trickle(&mut writer, body, gap) => panic!("the whole slow body was taken"),
    }
}

#[tokio::test]
async fn gateway_body_at_a_byte_per_interval_is_cut_off() {
    let (up, seen) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    let mut client = connect(server.gateway.unwrap()).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 900\r\n\r\n"
    );
    let (text, took) = trickled(&mut client, &head, &[b'a'; 900]).await;
    assert_eq!(status_of(&text), 408, "{text}");
    assert!(took < BOUND, "{took:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gateway_stalled_chunked_body_is_cut_off() {
    let (up, seen) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    let mut client = connect(server.gateway.unwrap()).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let (text, _) = until_closed(&mut client).await;
    assert_eq!(status_of(&text), 408, "{text}");
    // A chunk line sent a byte at a time is cut off the same way.
    let mut client = connect(server.gateway.unwrap()).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let (text, _) = trickled(&mut client, &head, &[b'1'; 64]).await;
    assert!(text.is_empty() || status_of(&text) == 408, "{text}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gateway_refuses_an_oversized_content_length_before_the_upstream() {
    let (up, seen) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    for length in ["9999999999999999999", "1001"] {
        let mut client = connect(server.gateway.unwrap()).await;
        let head = format!(
            "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: {length}\r\n\r\nabc"
        );
        client.write_all(head.as_bytes()).await.unwrap();
        let (text, _) = until_closed(&mut client).await;
        assert_eq!(status_of(&text), 413, "{length}: {text}");
        assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    }
    // Refused without a key too: the size is checked first.
    let mut client = connect(server.gateway.unwrap()).await;
    client
        .write_all(b"POST /v1/orders HTTP/1.1\r\nHost: g\r\nContent-Length: 5000\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = until_closed(&mut client).await;
    assert_eq!(status_of(&text), 413, "{text}");
    // At the limit, the body goes through.
    let mut client = connect(server.gateway.unwrap()).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 1000\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&[b'b'; 1000]).await.unwrap();
    assert_eq!(answer(&mut client).await.0, 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "only the body within the limit reached it");
    assert_eq!(seen[0].1.len(), 1000);
}

#[tokio::test]
async fn gateway_cuts_off_a_chunked_body_past_max_body() {
    let (up, seen) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    let mut client = connect(server.gateway.unwrap()).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("258\r\n{}\r\n", "c".repeat(600));
    client.write_all(chunk.as_bytes()).await.unwrap();
    client.write_all(chunk.as_bytes()).await.unwrap();
    let (text, _) = until_closed(&mut client).await;
    assert_eq!(status_of(&text), 413, "{text}");
    assert!(text.contains("connection: close"), "{text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "the upstream never got a whole request"
    );
}

#[tokio::test]
async fn gateway_answers_504_when_the_upstream_is_silent() {
    let up = silent_upstream().await;
    let (server, key) = gateway(&up).await;
    for request in [
        format!("GET /v1/prices HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\r\n"),
        format!(
            "POST /v1/orders HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 2\r\n\r\n{{}}"
        ),
    ] {
        let mut client = connect(server.gateway.unwrap()).await;
        client.write_all(request.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (status, body) = answer(&mut client).await;
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("UPSTREAM_TIMEOUT"), "{body}");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
}

/// An upstream address that takes no more connections: a listener whose
/// accept queue is full and never accepted from, so the kernel drops every
/// further SYN. Returns it with the connections that fill the queue.
async fn unconnectable_upstream() -> (String, Vec<TcpStream>, tokio::net::TcpListener) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(1).unwrap();
    let mut filling = Vec::new();
    loop {
        assert!(filling.len() < 64, "the accept queue never filled");
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => filling.push(stream),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
    }
    (format!("http://{addr}"), filling, listener)
}

#[tokio::test]
async fn gateway_answers_504_when_the_upstream_does_not_connect() {
    let (up, _filling, _listener) = unconnectable_upstream().await;
    let mut config = gateway_config(&up);
    config.upstream_connect_timeout_ms = Some(500);
    let server = start(Some(config)).await;
    let key = server.key().await;
    let mut client = connect(server.gateway.unwrap()).await;
    let request =
        format!("GET /v1/prices HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (status, body) = answer(&mut client).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("UPSTREAM_TIMEOUT"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn gateway_closes_idle_and_slow_head_connections() {
    let (up, _) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    let addr = server.gateway.unwrap();
    let mut idle = connect(addr).await;
    let (text, took) = until_closed(&mut idle).await;
    assert!(
        text.is_empty() && took >= Duration::from_millis(900),
        "{text} {took:?}"
    );
    // Idle after an answer.
    let mut client = connect(addr).await;
    let request =
        format!("GET /v1/prices HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(answer(&mut client).await.0, 200);
    until_closed(&mut client).await;
    // A head sent a byte every 300 ms.
    let mut slow = connect(addr).await;
    let (_, took) = trickled(&mut slow, "", request.as_bytes()).await;
    assert!(took < BOUND, "{took:?}");
}

// The API listener: the front, and hyper behind it.

#[tokio::test]
async fn idle_and_slow_connections_after_an_admin_request_are_closed() {
    let server = start(None).await;
    // A 401, as an unauthenticated flood would get, then nothing: hyper
    // serves the connection from the first request.
    let mut client = connect(server.api).await;
    client
        .write_all(b"GET /v1/keys HTTP/1.1\r\nHost: k\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut client).await.0, 401);
    let (_, took) = until_closed(&mut client).await;
    assert!(took < BOUND, "{took:?}");
    // The next head a byte every 300 ms.
    let mut client = connect(server.api).await;
    client
        .write_all(b"GET /v1/keys HTTP/1.1\r\nHost: k\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut client).await.0, 401);
    let (_, took) = trickled(&mut client, "", b"GET /v1/keys HTTP/1.1\r\nHost: k\r\n\r\n").await;
    assert!(took < BOUND, "{took:?}");
    // An authenticated request too.
    let mut client = connect(server.api).await;
    let request = format!(
        "GET /v1/apis HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\r\n",
        server.root
    );
    client.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(answer(&mut client).await.0, 200);
    until_closed(&mut client).await;
}

#[tokio::test]
async fn idle_and_slow_connections_after_a_verify_are_closed() {
    let server = start(None).await;
    let key = server.key().await;
    let verify = server.verify_request(&key);
    let mut client = connect(server.api).await;
    client.write_all(verify.as_bytes()).await.unwrap();
    let (status, body) = answer(&mut client).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"VALID\""), "{body}");
    let (_, took) = until_closed(&mut client).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // The next verify's head a byte every 300 ms.
    let mut client = connect(server.api).await;
    client.write_all(verify.as_bytes()).await.unwrap();
    assert_eq!(answer(&mut client).await.0, 200);
    let (_, took) = trickled(&mut client, "", verify.as_bytes()).await;
    assert!(took < BOUND, "{took:?}");
    // A verify body that stalls half way: the front closes without an
    // answer; through hyper alone the router answers 400 and closes.
    let mut client = connect(server.api).await;
    let cut = verify.len() - 10;
    client.write_all(&verify.as_bytes()[..cut]).await.unwrap();
    let (text, took) = until_closed(&mut client).await;
    if fast_path() {
        assert!(text.is_empty(), "{text}");
    } else {
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    }
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn chunked_verify_and_stalled_admin_bodies_are_closed() {
    let server = start(None).await;
    let key = server.key().await;
    let body = json!({"key": key}).to_string();
    let head = format!(
        "POST /v1/keys/verify HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.root
    );
    // A whole chunked verify (hyper's), then idle.
    let mut client = connect(server.api).await;
    let request = format!("{head}{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    client.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(answer(&mut client).await.0, 200);
    until_closed(&mut client).await;
    // A chunked verify that stalls after its first chunk.
    let mut client = connect(server.api).await;
    let request = format!("{head}5\r\n{}\r\n", &body[..5]);
    client.write_all(request.as_bytes()).await.unwrap();
    let (text, took) = until_closed(&mut client).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(text.is_empty() || status_of(&text) >= 400, "{text}");
    // A stalled admin body.
    let mut client = connect(server.api).await;
    let request = format!(
        "POST /v1/apis HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\"",
        server.root
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let (text, _) = until_closed(&mut client).await;
    assert!(text.is_empty() || status_of(&text) >= 400, "{text}");
    // An admin body a byte every 300 ms.
    let mut client = connect(server.api).await;
    let head = format!(
        "POST /v1/apis HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        server.root
    );
    let (text, took) = trickled(&mut client, &head, &[b' '; 200]).await;
    assert!(took < BOUND, "{took:?}");
    assert!(text.is_empty() || status_of(&text) >= 400, "{text}");
}

// Connections per address.

/// Opens the cap of idle connections from 127.0.0.1, checks the next one
/// from there is refused, and returns the open ones.
async fn fill_the_cap(addr: SocketAddr) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(connect_from("127.0.0.1", addr).await);
    }
    // The listener counts a connection once it has accepted it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from("127.0.0.1", addr).await;
    let (text, _) = until_closed(&mut over).await;
    assert_eq!(status_of(&text), 429, "{text}");
    assert!(text.contains("TOO_MANY_CONNECTIONS"), "{text}");
    open
}

#[tokio::test]
async fn one_address_at_its_cap_leaves_verify_to_other_addresses() {
    let (up, _) = recording_upstream().await;
    let (server, key) = gateway(&up).await;
    let _held = fill_the_cap(server.api).await;
    // Another address is served on the same listener.
    let mut other = connect_from("127.0.0.2", server.api).await;
    other
        .write_all(server.verify_request(&key).as_bytes())
        .await
        .unwrap();
    let (status, body) = answer(&mut other).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"VALID\""), "{body}");
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: k\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut other).await.0, 200);
    // The gateway counts its own connections.
    let gw = server.gateway.unwrap();
    let _held_gw = fill_the_cap(gw).await;
    let mut other = connect_from("127.0.0.2", gw).await;
    let request =
        format!("GET /v1/prices HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\n\r\n");
    other.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(answer(&mut other).await.0, 200);
}

#[tokio::test]
async fn a_closed_connection_frees_its_slot() {
    let server = start(None).await;
    let mut held = fill_the_cap(server.api).await;
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.1", server.api).await;
    again
        .write_all(b"GET /health HTTP/1.1\r\nHost: k\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut again).await.0, 200);
}
