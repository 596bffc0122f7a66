//! The admin API's HTTP/1.1 front. It answers the two routes a provider
//! calls at request rate, `POST /v1/keys/verify` and `GET /health`, itself,
//! and hands every other connection to hyper and the axum router.
//!
//! Verify is called once per request of every customer, and through hyper
//! and axum it cost about twice `/health` in server CPU, almost all of it in
//! the framework rather than in the verify (about a third of a microsecond).
//! This front reads a request head with `httparse` and, when it is one of
//! the two routes in its plainest form — HTTP/1.1, a `Content-Length` body
//! within [`MAX_BODY_BYTES`], no `Transfer-Encoding`, `Expect` or `Upgrade`
//! — answers it with the same handler code, errors and log line as the
//! router. Anything else, malformed or merely unusual, goes to hyper
//! together with the bytes already read, and hyper serves that connection
//! from then on: only well-formed requests of the two routes take the
//! short path, and every other request is served exactly as before.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth;
use crate::error::ApiError;
use crate::gateway::http1::Inbound;
use crate::handlers;
use crate::wire::{Health, VerifyRequest};
use crate::{AppState, MAX_BODY_BYTES};

/// How long a connection may wait for its next request head, or take to
/// send one with its body, before it is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Largest head this front reads; a longer one goes to hyper, which
/// refuses it.
const MAX_HEAD: usize = 16 * 1024;
/// Most headers this front parses; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// Serves the API on `listener` until `shutdown` completes, then lets the
/// requests in flight finish; idle connections are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let health = Arc::new(Fixed::json(&Health { status: "ok" })?);
    let take = |stream: TcpStream,
                _peer: SocketAddr,
                stopping: &watch::Receiver<bool>,
                connections: &mut JoinSet<()>| {
        let front = Front {
            router: router.clone(),
            state: Arc::clone(&state),
            health: Arc::clone(&health),
        };
        connections.spawn(front.connection(stream, stopping.clone()));
    };
    accept_until(listener, shutdown, take).await;
    Ok(())
}

/// Accepts connections on `listener` and gives each to `take`, with the
/// receiver that tells them the server is stopping and the set their tasks
/// go in, until `shutdown` completes; then stops listening, tells them, and
/// waits for every task in the set to end.
pub(crate) async fn accept_until(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    mut take: impl FnMut(TcpStream, SocketAddr, &watch::Receiver<bool>, &mut JoinSet<()>),
) {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => take(stream, peer, &stopping, &mut connections),
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Resolves once the server is stopping.
pub(crate) async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Moves a connection's idle deadline to `timeout` from now, at most once a
/// second: a timer is not re-armed for every request.
pub(crate) fn push_back(idle: Pin<&mut tokio::time::Sleep>, timeout: Duration) {
    let now = tokio::time::Instant::now();
    if idle.deadline() + Duration::from_secs(1) < now + timeout {
        idle.reset(now + timeout);
    }
}

/// A fixed answer, serialized once.
struct Fixed {
    body: Vec<u8>,
}

impl Fixed {
    fn json(value: &impl serde::Serialize) -> io::Result<Self> {
        Ok(Fixed {
            body: serde_json::to_vec(value)?,
        })
    }
}

/// What one connection needs.
struct Front {
    router: Router,
    state: Arc<AppState>,
    health: Arc<Fixed>,
}

/// The routes this front answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Verify,
}

/// A request head this front answers, by offsets into the bytes read.
#[derive(Debug)]
struct Head {
    route: Route,
    /// Length of the head.
    len: usize,
    /// Length of the body that follows it.
    body: usize,
    /// The client asked to close the connection after this request.
    close: bool,
    /// The first `Authorization` and `X-Vault-Token` values.
    authorization: Option<Range<usize>>,
    vault_token: Option<Range<usize>>,
}

/// What the bytes read so far hold.
#[derive(Debug)]
enum Parsed {
    /// A request this front answers.
    Ours(Head),
    /// A request for hyper: another route, an unusual form, or not HTTP/1.1.
    Theirs,
    /// Not a whole head yet.
    Partial,
}

fn parse(data: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Theirs,
    };
    let route = match (request.method, request.path, request.version) {
        (Some("POST"), Some("/v1/keys/verify"), Some(1)) => Route::Verify,
        (Some("GET"), Some("/health"), Some(1)) => Route::Health,
        _ => return Parsed::Theirs,
    };
    let offset = |value: &[u8]| {
        let start = value.as_ptr() as usize - data.as_ptr() as usize;
        start..start + value.len()
    };
    let mut head = Head {
        route,
        len,
        body: 0,
        close: false,
        authorization: None,
        vault_token: None,
    };
    let mut length: Option<usize> = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = header.value;
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(seen)) if n == seen => {}
                _ => return Parsed::Theirs,
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization
                .get_or_insert_with(|| offset(header.value));
        } else if name.eq_ignore_ascii_case("x-vault-token") {
            head.vault_token.get_or_insert_with(|| offset(header.value));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Parsed::Theirs;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::Theirs;
        }
    }
    head.body = match (route, length) {
        (Route::Verify, Some(n)) if n <= MAX_BODY_BYTES => n,
        (Route::Health, None | Some(0)) => 0,
        _ => return Parsed::Theirs,
    };
    Parsed::Ours(head)
}

impl Front {
    /// Serves one connection until it closes, stays idle for [`IDLE`], the
    /// server stops, or a request for hyper arrives.
    async fn connection(self, stream: TcpStream, stopping: watch::Receiver<bool>) {
        let _ = stream.set_nodelay(true);
        let mut client = Inbound::new(stream);
        let mut out = Vec::with_capacity(1024);
        let stopped = stopped(stopping.clone());
        tokio::pin!(stopped);
        let idle = tokio::time::sleep(IDLE);
        tokio::pin!(idle);
        loop {
            let head = loop {
                match parse(client.data()) {
                    Parsed::Ours(head) if client.data().len() >= head.len + head.body => {
                        break head
                    }
                    Parsed::Theirs => return self.hand_over(client, stopping).await,
                    Parsed::Ours(_) | Parsed::Partial => {}
                }
                let waiting = client.data().is_empty();
                tokio::select! {
                    biased;
                    read = client.fill() => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    () = &mut stopped, if waiting => return,
                    () = &mut idle => return,
                }
            };
            let started = Instant::now();
            out.clear();
            let status = self.answer(&head, client.data(), &mut out).await;
            client.consume(head.len + head.body);
            log(head.route, status, started);
            if client.stream.write_all(&out).await.is_err() {
                return;
            }
            if head.close || !matches!(stopping.has_changed(), Ok(false)) {
                let _ = client.stream.shutdown().await;
                return;
            }
            push_back(idle.as_mut(), IDLE);
        }
    }

    /// Writes the whole answer to the request whose head and body start
    /// `data`, and returns its status.
    async fn answer(&self, head: &Head, data: &[u8], out: &mut Vec<u8>) -> StatusCode {
        let close = head.close.then_some("connection: close\r\n");
        match head.route {
            Route::Health => {
                write_json(out, StatusCode::OK, &self.health.body, close);
                StatusCode::OK
            }
            Route::Verify => {
                let body = &data[head.len..head.len + head.body];
                match self.verify(head, data, body).await {
                    Ok(answer) => {
                        write_json(out, StatusCode::OK, &answer, close);
                        StatusCode::OK
                    }
                    Err(e) => write_response(out, e.into_response(), close).await,
                }
            }
        }
    }

    async fn verify(&self, head: &Head, data: &[u8], body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let value = |range: &Option<Range<usize>>| range.clone().map(|r| &data[r]);
        let caller = auth::authenticate(
            &self.state,
            value(&head.authorization),
            value(&head.vault_token),
        )
        .await?;
        let request: VerifyRequest = handlers::parse_lenient(body)?;
        handlers::keys::verify_answer(&self.state, &caller, request).await
    }

    /// Serves the rest of the connection with hyper and the router,
    /// starting with the bytes this front has read and not answered.
    async fn hand_over(self, client: Inbound, stopping: watch::Receiver<bool>) {
        let (stream, read) = client.into_parts();
        let io = TokioIo::new(Replay {
            read,
            pos: 0,
            stream,
        });
        let service = TowerToHyperService::new(self.router);
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(connection);
        let stopped = stopped(stopping);
        tokio::pin!(stopped);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut stopped => connection.as_mut().graceful_shutdown(),
        }
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Logs a request as the router's `log_request` does.
fn log(route: Route, status: StatusCode, started: Instant) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let (method, path) = match route {
        Route::Health => ("GET", "/health"),
        Route::Verify => ("POST", "/v1/keys/verify"),
    };
    tracing::info!(
        method,
        path,
        status = status.as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
}

/// Writes a JSON answer with its head.
fn write_json(out: &mut Vec<u8>, status: StatusCode, body: &[u8], close: Option<&str>) {
    status_line(out, status);
    out.extend_from_slice(b"content-type: application/json\r\n");
    finish_head(out, body.len(), close);
    out.extend_from_slice(body);
}

/// Writes a response the router's code built, such as an error's.
async fn write_response(out: &mut Vec<u8>, response: Response, close: Option<&str>) -> StatusCode {
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "an answer's body could not be read");
            axum::body::Bytes::new()
        }
    };
    status_line(out, parts.status);
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH || name == axum::http::header::DATE {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    finish_head(out, body.len(), close);
    out.extend_from_slice(&body);
    parts.status
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `content-length`, `date`, the optional `connection` line and the blank
/// line that ends the head.
fn finish_head(out: &mut Vec<u8>, len: usize, close: Option<&str>) {
    out.extend_from_slice(b"content-length: ");
    crate::gateway::http1::push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\ndate: ");
    http_date(out);
    out.extend_from_slice(b"\r\n");
    if let Some(close) = close {
        out.extend_from_slice(close.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value of the current second, formatted once a second.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// A connection whose first bytes were already read: they are read again
/// before the socket's.
struct Replay {
    read: Vec<u8>,
    pos: usize,
    stream: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.pos);
            buf.put_slice(&this.read[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.read.len() {
                this.read = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(request: &str) -> Head {
        match parse(request.as_bytes()) {
            Parsed::Ours(head) => head,
            other => panic!("{request:?} parsed as {other:?}"),
        }
    }

    fn theirs(request: &str) -> bool {
        matches!(parse(request.as_bytes()), Parsed::Theirs)
    }

    #[test]
    fn plain_verify_and_health_requests_are_ours() {
        let verify = "POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n\
            Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\
            Content-Length: 12\r\nConnection: keep-alive\r\n\r\n";
        let head = ours(verify);
        assert_eq!(head.route, Route::Verify);
        assert_eq!(head.len, verify.len());
        assert_eq!(head.body, 12);
        assert!(!head.close);
        let first = head.authorization.expect("authorization");
        assert_eq!(&verify[first], "Bearer a", "the first value counts");
        let health = ours("GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(
            (health.route, health.body, health.close),
            (Route::Health, 0, true)
        );
        assert!(matches!(
            parse(b"POST /v1/keys/verify HTTP/1.1\r\nContent-Len"),
            Parsed::Partial
        ));
    }

    #[test]
    fn every_other_form_goes_to_hyper() {
        for request in [
            "GET /v1/keys HTTP/1.1\r\n\r\n",
            "GET /health?x=1 HTTP/1.1\r\n\r\n",
            "HEAD /health HTTP/1.1\r\n\r\n",
            "GET /health HTTP/1.0\r\n\r\n",
            "GET /health HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.0\r\nContent-Length: 2\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: +2\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: 2\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST /v1/keys/verify HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert!(theirs(request), "{request:?} should go to hyper");
        }
        let long = format!("GET /health HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(theirs(&long), "a head too long to finish goes to hyper");
    }
}
