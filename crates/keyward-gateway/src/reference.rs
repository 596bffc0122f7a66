//! The reference path (`fast_path = false`): client connections served by
//! hyper's HTTP/1 server, requests sent on by hyper's HTTP/1 client.
//!
//! hyper reads and frames the messages; the gateway's rules do not change.
//! Each request goes through the same functions as on the hand-written
//! relay: the header rules of [`keyward_gateway_head::Scan`], the path
//! normalisation, then [`decide`] for the route and the key, and
//! [`crate::decide::refusal`] for every answer the gateway gives itself.
//!
//! Each client connection has its own upstream connection, opened on its
//! first request and opened again once the upstream closes it, as on the
//! relay. hyper's client drives it from a task of its own.
//!
//! What hyper refuses before a request reaches the gateway's code (a head
//! that is not HTTP/1.1, too large, or framed two ways), hyper answers
//! itself: the status is the same, but the body carries no `code`.

use std::convert::Infallible;
use std::error::Error as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use keyward_core::VerifyCode;
use keyward_gateway_head::{
    check_target, forwards, request_target, response_forwards, BadRequest, Scan, ADDED_HEADERS,
    MAX_HEAD, MAX_UPSTREAM_HEADERS,
};
use keyward_net::{Pace, Shed, Stream};
use keyward_verify::{Listener, Observation, Proof, Verification};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
use zeroize::Zeroizing;

use crate::decide::{self, decide, Decision, Refusal};
use crate::{Client, Gateway};
use keyward_net::tls::PeerCertificate;

/// Serves one client connection with hyper until it closes, breaks the
/// protocol, is idle or slow past its limits, or the gateway stops.
pub(crate) async fn connection<C: Stream>(
    gateway: Arc<Gateway>,
    stream: C,
    client: Client,
    stopping: watch::Receiver<bool>,
    shed: Shed,
) {
    let limits = gateway.limits;
    let shared = Arc::new(Shared {
        gateway,
        peer: client.addr,
        certificate: client.certificate,
        upstream: tokio::sync::Mutex::new(None),
        linger: AtomicBool::new(false),
    });
    let service = Service(Arc::clone(&shared));
    // A client that stops reading an answer is let go once a write has
    // waited as long as an idle connection may.
    let io = TokioIo::new(Timed::new(stream, limits.idle));
    let mut connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.hyper_head())
        .serve_connection(io, service);
    let stopped = keyward_net::stopped(stopping);
    tokio::pin!(stopped);
    let asked = shed.asked();
    tokio::pin!(asked);
    let mut closing = false;
    let served = loop {
        let serving = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx));
        tokio::select! {
            served = serving => break served,
            () = &mut stopped, if !closing => closing = true,
            () = &mut asked, if !closing => closing = true,
        }
        Pin::new(&mut connection).graceful_shutdown();
    };
    // hyper answers a head it cannot read itself, with the rest of the
    // request maybe still arriving.
    let unread = served.is_err() || shared.linger.load(Ordering::Relaxed);
    if let Err(e) = served {
        tracing::debug!(error = %e, "gateway connection ended with an error");
    }
    let mut client = connection.into_parts().io.into_inner();
    if unread {
        crate::linger_stream(&mut client.stream).await;
    } else {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut client.stream).await;
    }
}

/// What the requests of one client connection share.
struct Shared {
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    /// The client's verified certificate, on a mutual TLS connection.
    certificate: Option<PeerCertificate>,
    /// The connection's own upstream connection, once opened. hyper serves
    /// one request of a connection at a time, so the lock is never waited
    /// on.
    upstream: tokio::sync::Mutex<Option<SendRequest<Outgoing>>>,
    /// Set when an answer left the request's body unread: the connection
    /// closes after it, lingering.
    linger: AtomicBool,
}

#[derive(Clone)]
struct Service(Arc<Shared>);

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Answer>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let shared = Arc::clone(&self.0);
        Box::pin(async move { Ok(shared.serve(request).await) })
    }
}

/// How a request went, for the observer.
struct Served {
    response: Response<Answer>,
    /// The normalised path; `None` for a request the gateway could not read.
    path: Option<String>,
    code: Option<VerifyCode>,
}

impl Shared {
    async fn serve(&self, request: Request<Incoming>) -> Response<Answer> {
        let gateway = &self.gateway;
        let started = gateway.observer.wants(Listener::Gateway).then(Instant::now);
        let method = request.method().clone();
        let served = self.exchange(request).await;
        if let (Some(started), Some(path)) = (started, &served.path) {
            gateway.observer.observe(&Observation {
                listener: Listener::Gateway,
                method: method.as_str(),
                path,
                status: served.response.status().as_u16(),
                latency: started.elapsed(),
                code: served.code,
                client_certificate: self.certificate.map(|c| c.sha256),
            });
        }
        served.response
    }

    /// One request: read by the relay's rules, routed, verified, then
    /// refused or forwarded.
    async fn exchange(&self, request: Request<Incoming>) -> Served {
        let gateway = &*self.gateway;
        let (parts, body) = request.into_parts();
        let unreadable = |bad: BadRequest| Served {
            response: self.refusal(&Refusal::unreadable(bad), None, true),
            path: None,
            code: None,
        };
        // The request target as sent: only origin-form is a path.
        let raw = match (parts.uri.scheme(), parts.uri.path_and_query()) {
            (None, Some(target)) if parts.method != Method::CONNECT => target.as_str(),
            _ => return unreadable(BadRequest::Target),
        };
        if let Err(bad) = check_target(raw) {
            return unreadable(bad);
        }
        // hyper reads heads up to its own buffer's size; the gateway's
        // limit is the relay's, counted on the head as written.
        let head_len = parts.method.as_str().len() + raw.len() + " HTTP/1.1\r\n\r\n".len();
        let head_len = parts.headers.iter().fold(head_len, |n, (name, value)| {
            n + name.as_str().len() + ": \r\n".len() + value.len()
        });
        if head_len >= MAX_HEAD {
            return Served {
                response: self.refusal(&Refusal::head_too_large(), None, true),
                path: None,
                code: None,
            };
        }
        let mut scan = Scan::default();
        let mut forwarded = String::new();
        let mut kinds = Vec::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            match scan.header(
                name.as_str(),
                value.as_bytes(),
                &gateway.head,
                &mut forwarded,
            ) {
                Ok(kind) => kinds.push(kind),
                Err(bad) => return unreadable(bad),
            }
        }
        let mut key = Zeroizing::new(String::new());
        let has_key = scan.key(&mut key);
        let mut otp = Zeroizing::new(String::new());
        scan.otp(&mut otp);
        let mut target = String::new();
        let path_end = match request_target(raw, &mut target) {
            Ok(end) => end,
            Err(bad) => return unreadable(bad),
        };
        let mut headers = HeaderMap::with_capacity(kinds.len() + 2 + ADDED_HEADERS);
        let connection = scan.connection();
        for ((name, value), kind) in parts.headers.iter().zip(kinds) {
            if forwards(kind, name.as_str(), connection) {
                headers.append(name.clone(), value.clone());
            }
        }
        if headers.len() + 2 + ADDED_HEADERS > MAX_UPSTREAM_HEADERS {
            return unreadable(BadRequest::TooManyHeaders);
        }
        let path = target[..path_end].to_owned();
        let served = |response, code| Served {
            response,
            path: Some(path.clone()),
            code,
        };
        let whole = body.is_end_stream();
        if body.size_hint().lower() > gateway.max_body {
            let refusal = Refusal::body_too_large();
            return served(self.refusal(&refusal, None, !whole), None);
        }
        let key = has_key.then_some(key.as_str());
        let peer = self.peer.ip();
        // This path streams bodies and does not check signatures: a key
        // that must sign is refused here (`SIGNATURE_REQUIRED`).
        let proof = Proof {
            request: None,
            otp: (!otp.is_empty()).then(|| Arc::new(otp)),
        };
        let decided = decide(
            &self.gateway,
            &parts.method,
            &path,
            key,
            &forwarded,
            peer,
            proof,
        )
        .await;
        let (verification, origin) = match decided {
            Decision::Admit {
                verification,
                origin,
            } => (verification, origin),
            Decision::Refuse {
                refusal,
                verification,
            } => {
                let code = verification.as_ref().map(|v| v.code);
                let response = self.refusal(&refusal, verification.as_ref(), !whole);
                return served(response, code);
            }
        };
        let mut lines = Vec::new();
        decide::admitted_headers(&mut lines, gateway, &verification, &forwarded, origin, peer);
        append_lines(&mut headers, &lines);
        if let Ok(host) = HeaderValue::from_str(&gateway.head.host) {
            headers.insert(HOST, host);
        }
        let uri = format!("{}{}", gateway.head.base_path, target);
        let Ok(uri) = uri.parse::<Uri>() else {
            let refusal = Refusal::unreadable(BadRequest::Target);
            return served(self.refusal(&refusal, None, !whole), None);
        };
        let upstream = UpstreamRequest {
            method: parts.method,
            uri,
            headers,
        };
        let response = self.forward(upstream, body, whole, &verification).await;
        served(response, Some(verification.code))
    }

    /// Sends an admitted request upstream and relays the answer.
    async fn forward(
        &self,
        request: UpstreamRequest,
        body: Incoming,
        whole: bool,
        verification: &Verification,
    ) -> Response<Answer> {
        let gateway = &*self.gateway;
        // A request without a body can be sent again on a new connection
        // when a kept one turns out closed before any answer; only
        // idempotent methods, since the upstream may have acted on it.
        let resendable = whole && request.method.is_idempotent();
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let (done, mut body_done) = oneshot::channel();
        let body = Outgoing {
            inner: Some(body),
            pace: Pace::start(&gateway.limits),
            timer: None,
            max: gateway.max_body,
            received: 0,
            fault: Arc::clone(&fault),
            done: Some(done),
        };
        let mut pending = request.build(body);
        // The upstream may take `upstream_timeout` to begin its answer once
        // it has the whole request.
        let mut sent_whole = whole;
        let mut retried = false;
        let mut upstream = self.upstream.lock().await;
        let answered = loop {
            if upstream.as_ref().is_some_and(SendRequest::is_closed) {
                *upstream = None;
            }
            let reused = upstream.is_some();
            let mut sender = match upstream.take() {
                Some(sender) => sender,
                None => match connect(gateway).await {
                    Ok(sender) => sender,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect to the upstream");
                        let timed_out = e.kind() == io::ErrorKind::TimedOut;
                        return self.refusal(&Refusal::upstream(timed_out), None, !whole);
                    }
                },
            };
            let sending = sender.try_send_request(pending);
            tokio::pin!(sending);
            let early = if sent_whole {
                None
            } else {
                tokio::select! {
                    answer = &mut sending => Some(answer),
                    _ = &mut body_done => None,
                }
            };
            sent_whole = true;
            let answer = match early {
                Some(answer) => Some(answer),
                None => tokio::time::timeout(gateway.upstream_timeout, &mut sending)
                    .await
                    .ok(),
            };
            let mut failed = match answer {
                Some(Ok(response)) => break (sender, response),
                Some(Err(failed)) => failed,
                None => {
                    tracing::warn!("the upstream did not answer in time");
                    return self.refusal(&Refusal::upstream(true), None, !whole);
                }
            };
            if let Some(refusal) = Fault::load(&fault).refusal() {
                return self.refusal(&refusal, None, true);
            }
            let timed_out = is_timeout(failed.error());
            // A kept connection that failed, once: with the request itself
            // when it was never written, or again when it has no body and
            // may be repeated. Not one that was merely slow, which would
            // double the wait on a silent upstream.
            if reused && !retried && !timed_out {
                let again = failed
                    .take_message()
                    .or_else(|| resendable.then(|| request.build(Outgoing::empty(&fault))));
                if let Some(again) = again {
                    tracing::debug!(error = %failed.error(), "kept upstream connection failed; sending again");
                    retried = true;
                    pending = again;
                    continue;
                }
            }
            tracing::warn!(error = %failed.error(), "upstream request failed");
            return self.refusal(&Refusal::upstream(timed_out), None, !whole);
        };
        let (sender, response) = answered;
        *upstream = Some(sender);
        drop(upstream);
        let (parts, body) = response.into_parts();
        let mut answer = Response::new(Answer::Upstream(body));
        *answer.status_mut() = parts.status;
        let connection: Vec<&[u8]> = parts
            .headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let chunked = parts.headers.contains_key(TRANSFER_ENCODING);
        let headers = answer.headers_mut();
        for (name, value) in &parts.headers {
            if response_forwards(name.as_str(), &connection, chunked) {
                headers.append(name.clone(), value.clone());
            }
        }
        let mut lines = Vec::new();
        decide::rate_limit_headers(&mut lines, verification);
        append_lines(headers, &lines);
        answer
    }

    /// An answer the gateway gives itself, from the relay's own bytes;
    /// `close` ends the connection after it, lingering, as when the
    /// request's body is left unread.
    fn refusal(
        &self,
        refusal: &Refusal,
        verification: Option<&Verification>,
        close: bool,
    ) -> Response<Answer> {
        if close {
            self.linger.store(true, Ordering::Relaxed);
        }
        let mut message = Vec::new();
        // hyper leaves the body out of an answer to HEAD itself.
        decide::refusal(&mut message, refusal, verification, close, false);
        let split = message.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(at) => (&message[..at + 2], &message[at + 4..]),
            None => (&message[..], &[][..]),
        };
        // The status line is the refusal's own status; hyper writes the
        // length and the date itself.
        let lines = head
            .iter()
            .position(|b| *b == b'\n')
            .map_or(&[][..], |at| &head[at + 1..]);
        let mut response = Response::new(Answer::Full(Some(Bytes::copy_from_slice(body))));
        *response.status_mut() =
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
        append_lines(response.headers_mut(), lines);
        let headers = response.headers_mut();
        headers.remove(hyper::header::CONTENT_LENGTH);
        headers.remove(hyper::header::DATE);
        response
    }
}

/// Appends header lines (`name: value\r\n`, as the relay writes them) to
/// `headers`.
fn append_lines(headers: &mut HeaderMap, lines: &[u8]) {
    for line in lines.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::error!("the gateway wrote a header hyper cannot carry"),
        }
    }
}

/// Whether an upstream failure was a deadline passing.
fn is_timeout(error: &hyper::Error) -> bool {
    if error.is_timeout() {
        return true;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// The parts of an admitted request, for the upstream; built again when it
/// is sent again.
struct UpstreamRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl UpstreamRequest {
    fn build(&self, body: Outgoing) -> Request<Outgoing> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

async fn connect(gateway: &Gateway) -> io::Result<SendRequest<Outgoing>> {
    let stream = crate::open_upstream(gateway).await?;
    // Each write to the upstream may take `upstream_timeout`.
    let io = TokioIo::new(Timed::new(stream, gateway.upstream_timeout));
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake(io)
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Why a request body stopped on its way upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Fault {
    None,
    TooLarge,
    TooSlow,
    Broken,
}

impl Fault {
    fn load(cell: &AtomicU8) -> Fault {
        match cell.load(Ordering::Relaxed) {
            1 => Fault::TooLarge,
            2 => Fault::TooSlow,
            3 => Fault::Broken,
            _ => Fault::None,
        }
    }

    /// The answer to a request whose body stopped so.
    fn refusal(self) -> Option<Refusal> {
        match self {
            Fault::None => None,
            Fault::TooLarge => Some(Refusal::body_too_large()),
            Fault::TooSlow => Some(Refusal::body_too_slow()),
            Fault::Broken => Some(Refusal::body_broken()),
        }
    }
}

/// Why a request body was not sent whole.
#[derive(Debug, thiserror::Error)]
#[error("the request body was cut off: {0:?}")]
struct BodyFault(Fault);

/// A client's request body on its way upstream: held to its pace and to
/// `max_body`, trailers dropped (as the relay re-chunks without them).
struct Outgoing {
    /// `None`: no body.
    inner: Option<Incoming>,
    pace: Pace,
    /// Made the first time the body waits for data.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    max: u64,
    received: u64,
    /// Where the reason it stopped is left for the exchange.
    fault: Arc<AtomicU8>,
    /// Told once the body is all sent.
    done: Option<oneshot::Sender<()>>,
}

impl Outgoing {
    /// An empty body, in place of an empty one already sent.
    fn empty(fault: &Arc<AtomicU8>) -> Outgoing {
        Outgoing {
            inner: None,
            pace: Pace::start(&keyward_net::Limits::default()),
            timer: None,
            max: 0,
            received: 0,
            fault: Arc::clone(fault),
            done: None,
        }
    }

    fn fail(&mut self, fault: Fault) -> Poll<Option<Result<Frame<Bytes>, BodyFault>>> {
        self.fault.store(fault as u8, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyFault(fault))))
    }
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = BodyFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFault>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers are not sent on.
                        continue;
                    };
                    let n = data.len() as u64;
                    this.received += n;
                    this.pace.received(n);
                    if this.received > this.max {
                        return this.fail(Fault::TooLarge);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "request body failed");
                    return this.fail(Fault::Broken);
                }
                Poll::Ready(None) => {
                    if let Some(done) = this.done.take() {
                        let _ = done.send(());
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    let deadline = this.pace.deadline();
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    return match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => this.fail(Fault::TooSlow),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// The body of an answer to the client: the gateway's own, or the
/// upstream's as it arrives.
enum Answer {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

impl Body for Answer {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Answer::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Answer::Upstream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Answer::Full(bytes) => bytes.is_none(),
            Answer::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Answer::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Answer::Upstream(body) => body.size_hint(),
        }
    }
}

/// A stream whose writes fail with `TimedOut` once one has waited `limit`.
struct Timed<S> {
    stream: S,
    limit: Duration,
    /// Armed when a write first waits; dropped when it goes through.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Timed<S> {
    fn new(stream: S, limit: Duration) -> Self {
        Timed {
            stream,
            limit,
            timer: None,
        }
    }

    fn bound<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                self.timer = None;
                done
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.bound(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.bound(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.bound(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
