//! `keyward gateway`: a reverse proxy in front of the provider's API.
//!
//! For every request it takes the key from `Authorization: Bearer` or
//! `X-API-Key`, finds the first route whose method and path prefix match,
//! verifies the key in process with the route's scopes (the same
//! [`Verifier`] as the verify endpoint: cache, limits, credits, usage), and
//! either answers the refusal itself or forwards the request to the upstream
//! over a keep-alive connection — with the key stripped and the
//! caller's identity in `X-Keyward-Key-Id`, `X-Keyward-Owner` and
//! `X-Keyward-Scopes`. Identity headers sent by the client are removed first,
//! so they cannot be forged. Upstream answers pass through unchanged.
//!
//! An HTTP/1 connection carries one request at a time, so each client
//! connection is paired with its own upstream connection, opened on its
//! first request and reopened when the upstream closes it: no pool, and no
//! lock shared between connections, on the way to the upstream.
//!
//! The upstream connection is driven by the client connection's own task,
//! beside it, rather than by a task of its own: a request handed over is
//! written upstream in the same poll, and its answer wakes no other task.
//! Connections are tasks of the calling (multi-threaded) runtime, whose
//! work stealing keeps tail latency low when a thread is descheduled.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use axum::body::Body;
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use keyward_core::{ApiId, Environment, Requirements, Scope, VerifyCode};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::verifier::{Reach, Verification, Verifier};

impl Reach for Gateway {
    fn can_access(&self, api: &ApiId, _environment: Environment) -> bool {
        self.api_ids.as_ref().is_none_or(|ids| ids.contains(api))
    }
}

/// What the gateway fronts and how requests map to scopes. Read from the
/// routes file (or the `[gateway]` section of the server's file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens (`--listen` overrides it).
    pub listen: Option<SocketAddr>,
    /// Base URL of the upstream API, e.g. `http://127.0.0.1:9000`.
    pub upstream: String,
    /// When set, keys must belong to this environment.
    pub environment: Option<Environment>,
    /// When set, only keys of these APIs are accepted.
    pub api_ids: Option<Vec<ApiId>>,
    /// Take the client address from the first `X-Forwarded-For` entry
    /// instead of the connection; only behind a proxy that sets it.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Routes, first match wins. A request no route matches is refused.
    #[serde(rename = "route", default)]
    pub routes: Vec<Route>,
}

/// One route: requests with this method (any when absent) whose path starts
/// with `path` need these scopes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub method: Option<String>,
    pub path: String,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Units a request on this route costs (default 1).
    pub cost: Option<u64>,
}

/// Why a gateway configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid gateway configuration: {0}")]
pub struct GatewayConfigError(String);

/// A running gateway's shared state.
pub struct Gateway {
    verifier: Arc<Verifier>,
    /// `host:port` to connect to.
    upstream_address: String,
    upstream_scheme_authority: (axum::http::uri::Scheme, axum::http::uri::Authority),
    upstream_base_path: String,
    routes: Vec<CompiledRoute>,
    environment: Option<Environment>,
    /// The APIs whose keys the gateway accepts; `None` for all.
    api_ids: Option<Vec<ApiId>>,
    trust_forwarded_for: bool,
}

struct CompiledRoute {
    method: Option<Method>,
    path: String,
    scopes: Arc<[Scope]>,
    cost: u64,
}

/// Headers the gateway sets for the upstream; clients may not send them.
const KEY_ID: HeaderName = HeaderName::from_static("x-keyward-key-id");
const OWNER: HeaderName = HeaderName::from_static("x-keyward-owner");
const SCOPES: HeaderName = HeaderName::from_static("x-keyward-scopes");
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Hop-by-hop headers, which belong to one connection and are never
/// forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    axum::http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    axum::http::header::PROXY_AUTHENTICATE,
    axum::http::header::PROXY_AUTHORIZATION,
    axum::http::header::TE,
    axum::http::header::TRAILER,
    axum::http::header::TRANSFER_ENCODING,
    axum::http::header::UPGRADE,
];

impl Gateway {
    pub fn new(config: GatewayConfig, verifier: Arc<Verifier>) -> Result<Self, GatewayConfigError> {
        let upstream: Uri = config.upstream.parse().map_err(|_| {
            GatewayConfigError(format!("upstream {:?} is not a URL", config.upstream))
        })?;
        let scheme = upstream
            .scheme()
            .cloned()
            .unwrap_or(axum::http::uri::Scheme::HTTP);
        if scheme != axum::http::uri::Scheme::HTTP {
            return Err(GatewayConfigError(
                "the upstream must be http:// (TLS to the upstream is not supported yet)".into(),
            ));
        }
        let authority = upstream
            .authority()
            .cloned()
            .ok_or_else(|| GatewayConfigError("the upstream URL needs a host".into()))?;
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in config.routes {
            let method = route
                .method
                .as_deref()
                .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                .transpose()
                .map_err(|_| GatewayConfigError(format!("bad method in route {}", route.path)))?;
            if !route.path.starts_with('/') {
                return Err(GatewayConfigError(format!(
                    "route path {:?} must start with /",
                    route.path
                )));
            }
            routes.push(CompiledRoute {
                method,
                path: route.path,
                scopes: route.scopes.into(),
                cost: route.cost.unwrap_or(1),
            });
        }
        if routes.is_empty() {
            return Err(GatewayConfigError("at least one route is needed".into()));
        }
        let upstream_address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(Gateway {
            verifier,
            upstream_address,
            upstream_scheme_authority: (scheme, authority),
            upstream_base_path: upstream.path().trim_end_matches('/').to_owned(),
            routes,
            environment: config.environment,
            api_ids: config.api_ids,
            trust_forwarded_for: config.trust_forwarded_for,
        })
    }

    fn route(&self, method: &Method, path: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| {
            r.method.as_ref().is_none_or(|m| m == method)
                && path.starts_with(&r.path)
                && (path.len() == r.path.len()
                    || r.path.ends_with('/')
                    || path.as_bytes()[r.path.len()] == b'/')
        })
    }

    fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        if self.trust_forwarded_for {
            let forwarded = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok());
            if let Some(ip) = forwarded {
                return ip;
            }
        }
        peer.ip()
    }
}

/// The upstream side of one client connection. Its connection is driven by
/// the client connection's own task ([`drive`]), not a task of its own, so
/// handing a request over and its answer back wakes no other task.
#[derive(Default)]
struct Upstream {
    state: Mutex<UpstreamState>,
}

#[derive(Default)]
struct UpstreamState {
    /// Sends requests on the open connection; taken while one is in flight.
    sender: Option<SendRequest<Body>>,
    /// The open connection's I/O, polled by [`drive`].
    connection: Option<Pin<Box<UpstreamConnection>>>,
    /// Wakes the client connection's task when a new connection needs
    /// driving.
    waker: Option<Waker>,
}

type UpstreamConnection =
    hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Body>;

impl Upstream {
    fn state(&self) -> std::sync::MutexGuard<'_, UpstreamState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `connection` the one [`drive`] polls, replacing a closed one.
    fn install(&self, connection: UpstreamConnection) {
        let mut state = self.state();
        state.connection = Some(Box::pin(connection));
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// Drives the upstream connection of one client connection; never ends.
/// Polled beside the client connection in the same task.
fn drive(upstream: &Upstream) -> impl Future<Output = Infallible> + '_ {
    std::future::poll_fn(move |cx| {
        let mut state = upstream.state();
        if let Some(connection) = &mut state.connection {
            if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                state.connection = None;
                state.sender = None;
            }
        }
        if state.connection.is_none()
            && !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    })
}

/// Why a request could not be sent upstream.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl Gateway {
    /// Sends `request` on the connection's upstream connection, opening one
    /// when there is none or it was closed. A request that never left
    /// because the kept-alive connection had closed is sent again on a new
    /// one.
    async fn send(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let idle = upstream.state().sender.take();
        let request = match idle {
            Some(mut sender) if !sender.is_closed() => {
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        Self::keep(upstream, sender);
                        return Ok(response);
                    }
                    Err(mut failed) => match failed.take_message() {
                        Some(request) => request,
                        None => return Err(failed.into_error().into()),
                    },
                }
            }
            _ => request,
        };
        let stream = tokio::net::TcpStream::connect(&self.upstream_address).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        upstream.install(connection);
        let response = sender.send_request(request).await?;
        Self::keep(upstream, sender);
        Ok(response)
    }

    fn keep(upstream: &Upstream, sender: SendRequest<Body>) {
        upstream.state().sender = Some(sender);
    }
}

async fn handle(
    gateway: &Gateway,
    peer: SocketAddr,
    upstream: &Upstream,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(route) = gateway.route(request.method(), request.uri().path()) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "NO_ROUTE",
            "no route matches this request",
            None,
        );
    };
    let Some(key) = presented_key(request.headers()) else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "MISSING_KEY",
            "an API key is required in Authorization: Bearer or X-API-Key",
            None,
        );
    };
    let required = Requirements {
        scopes: Arc::clone(&route.scopes),
        environment: gateway.environment,
        ip: Some(gateway.client_ip(request.headers(), peer)),
    };
    let verification = match gateway
        .verifier
        .verify(gateway, &key, &required, route.cost)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "gateway could not verify");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the key store is not available",
                None,
            );
        }
    };
    if verification.code != VerifyCode::Valid {
        let status = match verification.code {
            VerifyCode::InsufficientScope | VerifyCode::IpNotAllowed => StatusCode::FORBIDDEN,
            VerifyCode::RateLimited | VerifyCode::UsageExceeded => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNAUTHORIZED,
        };
        return refusal(
            status,
            verification.code.as_str(),
            denial_message(verification.code),
            Some(&verification),
        );
    }
    let mut response = forward(gateway, upstream, request, &verification).await;
    rate_limit_headers(response.headers_mut(), &verification);
    response
}

/// The key from `Authorization: Bearer` or `X-API-Key`. A header that is not
/// UTF-8 still yields a (malformed) key, so it is refused as `MALFORMED`.
fn presented_key(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    fn text(bytes: &[u8]) -> Cow<'_, str> {
        match String::from_utf8_lossy(bytes) {
            Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
            Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
        }
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
        if let Some(key) = value.as_bytes().strip_prefix(b"Bearer ") {
            return Some(text(key));
        }
    }
    headers.get(API_KEY).map(|value| text(value.as_bytes()))
}

async fn forward(
    gateway: &Gateway,
    upstream: &Upstream,
    request: Request<Incoming>,
    verification: &Verification,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Without a base path the request's own path is shared, not copied.
    let path_and_query = if gateway.upstream_base_path.is_empty() {
        Some(path_and_query)
    } else {
        let joined = format!("{}{}", gateway.upstream_base_path, path_and_query.as_str());
        PathAndQuery::try_from(joined).ok()
    };
    let (scheme, authority) = &gateway.upstream_scheme_authority;
    let uri = path_and_query.and_then(|path_and_query| {
        Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
    });
    let Some(uri) = uri else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "BAD_PATH",
            "the request path is invalid",
            None,
        );
    };
    parts.uri = uri;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    headers.remove(AUTHORIZATION);
    headers.remove(API_KEY);
    headers.remove(KEY_ID);
    headers.remove(OWNER);
    headers.remove(SCOPES);
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(HOST, host);
    }
    if let Some(key) = &verification.key {
        let mut scopes = String::with_capacity(64);
        for scope in key.policy.scopes.iter() {
            if !scopes.is_empty() {
                scopes.push(' ');
            }
            scopes.push_str(scope.as_str());
        }
        for (name, value) in [
            (KEY_ID, key.id()),
            (OWNER, &key.owner),
            (SCOPES, scopes.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }
    match gateway
        .send(upstream, Request::from_parts(parts, Body::new(body)))
        .await
    {
        Ok(upstream) => {
            let (mut parts, body) = upstream.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            refusal(
                StatusCode::BAD_GATEWAY,
                "UPSTREAM_UNAVAILABLE",
                "the upstream API did not answer",
                None,
            )
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few headers is cheaper
    // than a hashed removal of each name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn rate_limit_headers(headers: &mut HeaderMap, verification: &Verification) {
    if let Some(limit) = verification.ratelimit {
        for (name, value) in [
            ("x-ratelimit-limit", limit.limit.to_string()),
            ("x-ratelimit-remaining", limit.remaining.to_string()),
            // Seconds until reset, rounded up, as the draft RateLimit fields do.
            (
                "x-ratelimit-reset",
                ((limit.reset - now_ms()).max(0) as u64)
                    .div_ceil(1000)
                    .to_string(),
            ),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn refusal(
    status: StatusCode,
    code: &str,
    message: &str,
    verification: Option<&Verification>,
) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut response = (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(v) = verification {
        rate_limit_headers(response.headers_mut(), v);
        if let (StatusCode::TOO_MANY_REQUESTS, Some(limit)) = (status, v.ratelimit) {
            let after = ((limit.reset - now_ms()).max(0) as u64).div_ceil(1000);
            if let Ok(value) = HeaderValue::from_str(&after.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
    }
    response
}

fn denial_message(code: VerifyCode) -> &'static str {
    match code {
        VerifyCode::Malformed => "the API key is malformed",
        VerifyCode::NotFound => "the API key is not valid",
        VerifyCode::Expired => "the API key has expired",
        VerifyCode::Revoked => "the API key was revoked",
        VerifyCode::Disabled => "the API key is disabled",
        VerifyCode::WrongEnvironment => "the API key belongs to another environment",
        VerifyCode::InsufficientScope => "the API key lacks a scope this route requires",
        VerifyCode::IpNotAllowed => "the API key may not be used from this address",
        VerifyCode::RateLimited => "rate limit exceeded",
        VerifyCode::UsageExceeded => "usage credits exhausted",
        _ => "the API key was refused",
    }
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        Arc::clone(&gateway),
                        stream,
                        peer,
                        stopping.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "gateway could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one client connection until it closes or the gateway stops.
async fn connection(
    gateway: Arc<Gateway>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let upstream: Arc<Upstream> = Arc::default();
    let driven = Arc::clone(&upstream);
    let service = hyper::service::service_fn(move |request| {
        let gateway = Arc::clone(&gateway);
        let upstream = Arc::clone(&upstream);
        async move { Ok::<_, Infallible>(handle(&gateway, peer, &upstream, request).await) }
    });
    let served =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let driver = drive(&driven);
    tokio::pin!(driver);
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    // The client side first: a request it hands over is then written
    // upstream in the same poll.
    let result = tokio::select! {
        biased;
        result = served.as_mut() => result,
        never = driver.as_mut() => match never {},
        () = stopped => {
            served.as_mut().graceful_shutdown();
            tokio::select! {
                biased;
                result = served.as_mut() => result,
                never = driver.as_mut() => match never {},
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "gateway connection ended");
    }
}
