//! The admin API's HTTP/1.1 front. It answers the two routes a provider
//! calls at request rate, `POST /v1/keys/verify` and `GET /health`, itself,
//! and hands every other connection to hyper and the axum router.
//!
//! Verify is called once per request of every customer, and through hyper
//! and axum it cost about twice `/health` in server CPU, almost all of it in
//! the framework rather than in the verify (about a third of a microsecond).
//! This front reads a request head with `httparse` ([`keyward_net::plain`])
//! and, when it is one of the two routes in its plainest form — HTTP/1.1, a
//! `Content-Length` body within [`MAX_BODY_BYTES`], no `Transfer-Encoding`,
//! `Expect` or `Upgrade` — answers it with the same handler code, errors
//! and observation as the router. Anything else, malformed or merely unusual, goes to hyper
//! together with the bytes already read, and hyper serves that connection
//! from then on: only well-formed requests of the two routes take the
//! short path, and every other request is served exactly as before.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::service::TowerToHyperService;
use keyward_net::plain;
use keyward_net::tls::{PeerCertificate, Tls, WithPeer};
use keyward_net::write::{finish_head, status_line};
use keyward_net::{accept_until, push_back, stopped, Inbound, Stream};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth;
use crate::error::ApiError;
use crate::handlers;
use crate::{AppState, MAX_BODY_BYTES};
use keyward_net::{Connections, Limits, Pace, Shed, Slot};
use keyward_proto::errors::TOO_MANY_CONNECTIONS;
use keyward_proto::{Health, VerifyRequest};
use keyward_verify::{Listener, Observation};

/// Largest head this front reads; a longer one goes to hyper, which
/// refuses it.
const MAX_HEAD: usize = 16 * 1024;

/// Serves the API on `listener` until `shutdown` completes, then lets the
/// requests in flight finish; idle connections are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
    options: Options,
    shed: Shed,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Options {
        limits,
        fast_path,
        tls,
    } = options;
    let health = Arc::new(Fixed::json(&Health { status: "ok" })?);
    let admission = Connections::new(limits, shed.clone());
    let take = |stream: TcpStream,
                peer: SocketAddr,
                slot: Slot,
                stopping: &watch::Receiver<bool>,
                connections: &mut JoinSet<()>| {
        let front = Front {
            router: router.clone(),
            state: Arc::clone(&state),
            health: Arc::clone(&health),
            limits,
            fast_path,
            shed: shed.clone(),
            peer: None,
            client: peer,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(front.start(stream, tls.clone(), slot, stopping.clone()));
    };
    accept_until(listener, &admission, TOO_MANY_CONNECTIONS, shutdown, take).await;
    Ok(())
}

/// How the listener serves.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub limits: Limits,
    /// `false`: every connection goes to hyper from its first byte.
    pub fast_path: bool,
    /// When set, every connection starts with a TLS handshake.
    pub tls: Option<Tls>,
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
    limits: Limits,
    /// Whether this front answers its two routes itself.
    fast_path: bool,
    /// Asks this connection to close when it is idle and the process is
    /// out of file descriptors.
    shed: Shed,
    /// The client's verified certificate on a mutual TLS connection. Every
    /// request of the connection carries it: the front's own and, as a
    /// request extension, those hyper reads.
    peer: Option<PeerCertificate>,
    /// The client's address, given to handlers as [`crate::ClientAddr`].
    client: SocketAddr,
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

/// The requests this front answers; [`ROUTE_OF`] names each route.
const RULES: plain::Rules<'static, 2> = plain::Rules {
    routes: &[
        plain::Route {
            method: "GET",
            path: "/health",
            body: plain::Body::None,
        },
        plain::Route {
            method: "POST",
            path: "/v1/keys/verify",
            body: plain::Body::Length {
                max: MAX_BODY_BYTES,
            },
        },
    ],
    capture: ["authorization", "x-vault-token"],
    max_head: MAX_HEAD,
};
const ROUTE_OF: [Route; 2] = [Route::Health, Route::Verify];

fn parse(data: &[u8]) -> Parsed {
    match plain::classify(data, &RULES) {
        plain::Classified::Plain(head) => {
            let Some(&route) = ROUTE_OF.get(head.route) else {
                return Parsed::Theirs;
            };
            let [authorization, vault_token] = head.captured;
            Parsed::Ours(Head {
                route,
                len: head.len,
                body: head.body,
                close: head.close,
                authorization,
                vault_token,
            })
        }
        plain::Classified::Other => Parsed::Theirs,
        plain::Classified::Partial => Parsed::Partial,
    }
}

impl Front {
    /// Reports a request to the observer as the router's middleware does.
    fn observe(&self, route: Route, status: StatusCode, started: Option<Instant>) {
        let Some(started) = started else { return };
        let (method, path) = match route {
            Route::Health => ("GET", "/health"),
            Route::Verify => ("POST", "/v1/keys/verify"),
        };
        self.state.observer.observe(&Observation {
            listener: Listener::Api,
            method,
            path,
            status: status.as_u16(),
            latency: started.elapsed(),
            code: None,
            client_certificate: self.peer.map(|peer| peer.sha256),
        });
    }

    /// Serves one connection, after a TLS handshake when the listener has
    /// TLS. The handshake is held to the deadline hyper has for a head: a
    /// client that stalls in it, or sends what is not TLS, is dropped, as is
    /// one still in it when the server stops.
    async fn start(
        mut self,
        stream: TcpStream,
        tls: Option<Tls>,
        slot: Slot,
        stopping: watch::Receiver<bool>,
    ) {
        let Some(tls) = tls else {
            return self.connection(stream, slot, stopping).await;
        };
        let handshake = tls.accept(stream, self.limits.hyper_head());
        let accepted = tokio::select! {
            accepted = handshake => accepted,
            () = stopped(stopping.clone()) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                self.peer = peer;
                self.connection(stream, slot, stopping).await;
            }
            Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
        }
    }

    /// Serves one connection until it closes, is idle or slow past its
    /// [`Limits`], the server stops, or a request for hyper arrives.
    async fn connection<S: Stream>(self, stream: S, slot: Slot, stopping: watch::Receiver<bool>) {
        let limits = self.limits;
        let mut client = Inbound::new(stream);
        if !self.fast_path {
            return self.hand_over(client, slot, stopping).await;
        }
        let mut out = Vec::with_capacity(1024);
        let stopped = stopped(stopping.clone());
        tokio::pin!(stopped);
        let shed = self.shed.asked();
        tokio::pin!(shed);
        // One timer for the wait before a request, then for its head, then
        // for its body. It is re-armed for a request only when the request
        // does not arrive whole in one read, so a quick client costs no
        // timer work per request.
        let deadline = tokio::time::sleep(limits.idle);
        tokio::pin!(deadline);
        let mut timing = Timing::Idle;
        loop {
            let head = loop {
                let data = client.data();
                match parse(data) {
                    Parsed::Ours(head) if data.len() >= head.len + head.body => break head,
                    Parsed::Theirs => return self.hand_over(client, slot, stopping).await,
                    Parsed::Ours(head) => {
                        if !matches!(timing, Timing::Body(_)) {
                            timing = Timing::Body(Pace::start(&limits));
                        }
                        if let Timing::Body(mut pace) = timing {
                            pace.received((data.len() - head.len) as u64);
                            deadline.as_mut().reset(pace.deadline());
                        }
                    }
                    Parsed::Partial if !data.is_empty() && timing == Timing::Idle => {
                        timing = Timing::Head;
                        deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + limits.head);
                    }
                    Parsed::Partial => {}
                }
                let waiting = client.data().is_empty();
                tokio::select! {
                    biased;
                    read = client.fill() => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    () = &mut stopped, if waiting => return,
                    () = &mut shed, if waiting => return,
                    () = &mut deadline => return,
                }
            };
            let started = self.state.observer.wants(Listener::Api).then(Instant::now);
            out.clear();
            let status = self.answer(&head, client.data(), &mut out).await;
            client.consume(head.len + head.body);
            self.observe(head.route, status, started);
            if client.stream.write_all(&out).await.is_err() {
                return;
            }
            if head.close || !matches!(stopping.has_changed(), Ok(false)) {
                let _ = client.stream.shutdown().await;
                return;
            }
            if timing == Timing::Idle {
                push_back(deadline.as_mut(), limits.idle);
            } else {
                timing = Timing::Idle;
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + limits.idle);
            }
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
            self.peer,
        )
        .await?;
        let request: VerifyRequest = handlers::parse_lenient(body)?;
        handlers::keys::verify_answer(&self.state, &caller, request).await
    }

    /// Serves the rest of the connection with hyper and the router,
    /// starting with the bytes this front has read and not answered. hyper
    /// closes a connection whose next head is not whole within
    /// [`Limits::hyper_head`]; the router paces bodies ([`paced`]).
    async fn hand_over<S: Stream>(
        self,
        client: Inbound<S>,
        slot: Slot,
        stopping: watch::Receiver<bool>,
    ) {
        let _slot = slot;
        let (stream, read) = client.into_parts();
        let router = WithClientAddr {
            router: self.router,
            client: crate::ClientAddr(self.client),
        };
        let service = WithPeer::new(TowerToHyperService::new(router), self.peer);
        keyward_net::hand_over(stream, read, service, self.limits, stopping, &self.shed).await;
    }
}

/// Which part of a request the connection's deadline is set for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Timing {
    /// The wait before a request: [`Limits::idle`] from the previous answer.
    Idle,
    /// A head begun: [`Limits::head`] from its first byte.
    Head,
    /// A body begun: its [`Pace`].
    Body(Pace),
}

/// Wraps a request body so it fails once it arrives slower than the
/// [`Limits`] allow; the router's layer for every request hyper serves.
pub(crate) async fn paced(
    limits: Limits,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let request = request.map(|body| {
        axum::body::Body::new(PacedBody {
            inner: body,
            pace: Pace::start(&limits),
            timer: None,
        })
    });
    next.run(request).await
}

/// A request body held to a [`Pace`].
struct PacedBody {
    inner: axum::body::Body,
    pace: Pace,
    /// Made the first time the body waits for data.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error of a body that arrived too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
struct BodyTooSlow;

impl axum::body::HttpBody for PacedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.pace.received(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = this.pace.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

    #[test]
    fn the_table_fuzzed_against_hyper_is_this_one() {
        assert_eq!(RULES, keyward_fuzz::front::RULES);
    }
}

/// The router, with the connection's peer address in every request's
/// extensions.
#[derive(Clone)]
struct WithClientAddr {
    router: Router,
    client: crate::ClientAddr,
}

impl tower_service::Service<hyper::Request<hyper::body::Incoming>> for WithClientAddr {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<hyper::Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<hyper::Request<hyper::body::Incoming>>::poll_ready(
            &mut self.router,
            cx,
        )
    }

    fn call(&mut self, mut request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.client);
        tower_service::Service::call(&mut self.router, request)
    }
}
