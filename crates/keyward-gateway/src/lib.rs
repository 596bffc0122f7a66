//! `keyward gateway`: a reverse proxy in front of the provider's API.
//!
//! For every request it takes the key from `Authorization: Bearer` or
//! `X-API-Key`, normalises the path ([`keyward_gateway_head::path`]), finds the first route whose
//! method and path (whole segments) match, verifies the key in process with
//! the route's scopes (the same [`Verifier`] as the verify endpoint: cache,
//! limits, credits, usage), and either answers the refusal itself or
//! forwards the request to the upstream over a keep-alive connection — with
//! the key stripped and the caller's identity in `X-Keyward-Key-Id`,
//! `X-Keyward-Owner` and `X-Keyward-Scopes`. Identity headers sent by the
//! client are removed first, in any spelling (`_` read as `-`), so they
//! cannot be forged; the client's address is the peer's unless that is a
//! trusted proxy ([`forwarded`]). Upstream answers pass through unchanged
//! but for hop-by-hop headers, with `X-RateLimit-*` added.
//!
//! The relay is HTTP/1.1 written for this one job: each client
//! connection is one task that reads a request head, verifies, writes the
//! rewritten head and the body to its own upstream connection, and relays
//! the answer back, with no per-request allocation, channel or other task.
//! A general HTTP library costs several times that per request: measured on
//! the benchmark machine, a hyper client and server in the same place
//! reached two thirds of nginx's throughput. Heads are parsed by `httparse`
//! and body framing is strict (see [`keyward_gateway_head`]).
//!
//! An HTTP/1 connection carries one request at a time, so each client
//! connection is paired with its own upstream connection, opened on its
//! first request and reopened when the upstream closes it: no pool, and no
//! lock shared between connections, on the way to the upstream.
//!
//! With `fast_path = false` ([`Gateway::with_fast_path`]) every client
//! connection is served by hyper's HTTP/1 server instead, and requests go
//! upstream through hyper's HTTP/1 client (`reference`). It is the
//! reference the relay is tested against. The decisions do not change:
//! both paths call the same functions (`decide`) for the route, the key,
//! the refusal and the headers added, and read headers by the same rules
//! ([`keyward_gateway_head::Scan`]). Deadlines and limits are the same.
//! Where hyper refuses a head before the gateway sees it, hyper answers
//! with the same status but no `code`.

mod decide;
mod forwarded;
mod reference;
mod signed;

pub use forwarded::ForwardedHeader;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::{Method, Uri};
use keyward_core::limits::Cidr;
use keyward_core::{ApiId, Environment, Scope, VerifyCode};
use serde::Deserialize;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use keyward_gateway_head::{
    parse_request, parse_response, path, BadResponse, Framing, HeadConfig, RequestHead,
    ResponseHead, MAX_HEAD,
};
use keyward_net::body::{relay_body, Bounds, RelayError};
use keyward_net::tls::{PeerCertificate, Tls};
use keyward_net::workers::{Open, Scheduling, Workers};
use keyward_net::Inbound;
use keyward_net::{Connections, Limits, Pace, Shed, Slot, Stream};
use keyward_proto::errors::TOO_MANY_CONNECTIONS;

use decide::{decide, Decision, Refusal};
use keyward_verify::{
    Listener, Observation, Observe, Proof, Reach, RequestLog, Scheme, Verification, Verifier,
};

/// How long opening an upstream connection may take, by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upstream may take to begin its answer once it has the whole
/// request, by default.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request body, by default.
const MAX_BODY: u64 = 10 * 1024 * 1024;
/// How long, and for how many bytes, a connection closed on a client still
/// sending is drained first ([`linger`]).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

impl Reach for Gateway {
    fn can_access(&self, api: &ApiId, _workspace: Option<&str>, _environment: Environment) -> bool {
        self.api_ids.as_ref().is_none_or(|ids| ids.contains(api))
    }

    fn needs_workspace(&self) -> bool {
        false
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
    /// The proxies in front of the gateway (CIDR ranges) whose forwarding
    /// header is believed; none by default, so the connection's address
    /// is the client's. From a trusted peer the client is the first
    /// address, from the right, of the forwarding chain that is not a
    /// trusted proxy.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Which header the trusted proxies write: `x-forwarded-for` (the
    /// default) or `forwarded` (RFC 7239).
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
    /// Accept request header names with `_`, as nginx's
    /// `underscores_in_headers on` does. Off by default: such a name is
    /// refused with 400 `BAD_HEADER`, because upstreams on CGI, WSGI, PHP
    /// and many frameworks read `_` and `-` as one, so `X_Keyward_Owner`
    /// would pass for the gateway's own header. When on, a name that reads,
    /// with `-` for `_`, as a header the gateway handles is still dropped.
    #[serde(default)]
    pub underscores_in_headers: bool,
    /// The switch `trusted_proxies` replaced: a configuration naming it is
    /// refused with a message saying so, rather than silently trusting no
    /// one or everyone.
    #[serde(default, rename = "trust_forwarded_for")]
    _trust_forwarded_for: ReplacedByTrustedProxies,
    /// Threads serving client connections, each keeping its connections to
    /// itself, as nginx's workers do; one per core when absent. `0` serves
    /// them on the server's own (work-stealing) runtime instead.
    pub threads: Option<usize>,
    /// How the kernel schedules those threads; `batch` when absent.
    #[serde(default)]
    pub scheduling: Scheduling,
    /// Largest request body in bytes (10 MiB when absent). A larger
    /// `Content-Length` is refused with 413 before the upstream is
    /// contacted; a chunked body that grows past it is cut off.
    pub max_body: Option<u64>,
    /// How long opening an upstream connection may take (10 s when absent).
    pub upstream_connect_timeout_ms: Option<u64>,
    /// How long the upstream may take to begin its answer once it has the
    /// whole request, and to take each write of it (60 s when absent).
    pub upstream_timeout_ms: Option<u64>,
    /// Routes, first match wins. A request no route matches is refused.
    #[serde(rename = "route", default)]
    pub routes: Vec<Route>,
    /// How requests on every route are signed, unless a route says:
    /// `rfc9421` or `binance`. A key that must sign is refused
    /// (`SIGNATURE_REQUIRED`) on a route without one.
    pub signature: Option<SignatureScheme>,
    /// The header carrying the key owner's one-time code for a critical
    /// scope; `X-Keyward-OTP` when absent. It never reaches the upstream.
    pub otp_header: Option<String>,
}

/// A signature scheme a route checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    /// RFC 9421 HTTP Message Signatures: `Signature-Input` and `Signature`
    /// headers, `keyid` the key's id.
    Rfc9421,
    /// Binance's SIGNED endpoints: the key in `X-MBX-APIKEY`, `timestamp`,
    /// `recvWindow` and `signature` among the query or form parameters.
    Binance,
}

/// `trust_forwarded_for`, which `trusted_proxies` replaced: there is no
/// value it may take.
#[derive(Debug, Clone, Copy, Default)]
struct ReplacedByTrustedProxies;

impl<'de> Deserialize<'de> for ReplacedByTrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "`trust_forwarded_for` was replaced by `trusted_proxies = [\"CIDR\", …]`: list \
             the addresses of the proxies in front of the gateway (for example \
             `trusted_proxies = [\"10.0.0.0/8\"]`), whose X-Forwarded-For is then read from \
             the right",
        ))
    }
}

/// One route: requests with this method (any when absent) whose normalised
/// path is `path` or lies below it, whole segments only, need these scopes.
/// Methods match case-sensitively (RFC 9110 §9.1), and a `GET` route also
/// takes `HEAD`, which upstreams answer with their `GET` handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub method: Option<String>,
    pub path: String,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Units a request on this route costs (default 1).
    pub cost: Option<u64>,
    /// How requests on this route are signed; the gateway's `signature`
    /// when absent.
    pub signature: Option<SignatureScheme>,
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
    /// How request heads are read and rewritten: the upstream's base path
    /// and authority, underscores, the forwarding header.
    head: HeadConfig,
    routes: Vec<CompiledRoute>,
    environment: Option<Environment>,
    /// The APIs whose keys the gateway accepts; `None` for all.
    api_ids: Option<Vec<ApiId>>,
    /// Peers whose forwarding header names the client.
    trusted_proxies: Vec<Cidr>,
    /// Connection threads (0: the server's runtime).
    threads: usize,
    scheduling: Scheduling,
    /// The server's runtime, which owns the store's connections: a verify
    /// that needs the store runs there.
    store_runtime: tokio::runtime::Handle,
    /// Deadlines and caps of client connections, shared with the API
    /// listener.
    limits: Limits,
    max_body: u64,
    connect_timeout: Duration,
    /// For the answer's head, and for each write of the request to the
    /// upstream.
    upstream_timeout: Duration,
    /// Told of every request answered.
    observer: Arc<dyn Observe>,
    /// Whether client connections are served by the hand-written relay
    /// (`true`, the default) or by hyper ([`reference`]).
    fast_path: bool,
    /// When set, every client connection starts with a TLS handshake.
    tls: Option<Tls>,
    /// Whether any route checks signatures: only then is each request's
    /// head kept for the signature check.
    signs: bool,
}

struct CompiledRoute {
    method: Option<Method>,
    path: String,
    scopes: Arc<[Scope]>,
    cost: u64,
    signature: Option<Scheme>,
}

impl CompiledRoute {
    fn new(route: Route, default: Option<SignatureScheme>) -> Result<Self, GatewayConfigError> {
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
        // Requests are matched on their normalised path, which a route
        // that is not normalised itself could never match.
        let mut normalised = String::new();
        match path::normalize(&route.path, &mut normalised) {
            Ok(()) if normalised == route.path => {}
            Ok(()) => {
                return Err(GatewayConfigError(format!(
                    "route path {:?} is not normalised: write {normalised:?}",
                    route.path
                )));
            }
            Err(bad) => {
                return Err(GatewayConfigError(format!(
                    "route path {:?} is refused: {}",
                    route.path,
                    bad.message()
                )));
            }
        }
        Ok(CompiledRoute {
            method,
            path: route.path,
            scopes: route.scopes.into(),
            cost: route.cost.unwrap_or(1),
            signature: route.signature.or(default).map(|s| match s {
                SignatureScheme::Rfc9421 => Scheme::Rfc9421,
                SignatureScheme::Binance => Scheme::Binance,
            }),
        })
    }

    /// Whether a request with `method` and the normalised `path` is this
    /// route's: the same method (a `GET` route takes `HEAD` too), and the
    /// route's path or a path below it, whole segments only.
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m == method || (*m == Method::GET && *method == Method::HEAD))
            && path.starts_with(&self.path)
            && (path.len() == self.path.len()
                || self.path.ends_with('/')
                || path.as_bytes()[self.path.len()] == b'/')
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig, verifier: Arc<Verifier>) -> Result<Self, GatewayConfigError> {
        let store_runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            GatewayConfigError("the gateway must be created inside the server's runtime".into())
        })?;
        let upstream: Uri = config.upstream.parse().map_err(|_| {
            GatewayConfigError(format!("upstream {:?} is not a URL", config.upstream))
        })?;
        let scheme = upstream
            .scheme()
            .cloned()
            .unwrap_or(hyper::http::uri::Scheme::HTTP);
        if scheme != hyper::http::uri::Scheme::HTTP {
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
            routes.push(CompiledRoute::new(route, config.signature)?);
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
            head: HeadConfig {
                base_path: upstream.path().trim_end_matches('/').to_owned(),
                host: authority.as_str().to_owned(),
                underscores_in_headers: config.underscores_in_headers,
                forwarded_header: config.forwarded_header,
                otp_header: Some(
                    config
                        .otp_header
                        .unwrap_or_else(|| "x-keyward-otp".to_owned())
                        .to_ascii_lowercase(),
                ),
            },
            environment: config.environment,
            api_ids: config.api_ids,
            trusted_proxies: config.trusted_proxies,
            threads: config.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            }),
            scheduling: config.scheduling,
            store_runtime,
            limits: Limits::default(),
            max_body: config.max_body.unwrap_or(MAX_BODY),
            connect_timeout: config
                .upstream_connect_timeout_ms
                .map_or(CONNECT_TIMEOUT, Duration::from_millis),
            upstream_timeout: config
                .upstream_timeout_ms
                .map_or(UPSTREAM_TIMEOUT, Duration::from_millis),
            observer: Arc::new(RequestLog),
            fast_path: true,
            tls: None,
            signs: routes.iter().any(|r| r.signature.is_some()),
            routes,
        })
    }

    /// Holds client connections to `limits` (the server's `[limits]`).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Reports every request to `observer` instead of logging it.
    pub fn with_observer(mut self, observer: Arc<dyn Observe>) -> Self {
        self.observer = observer;
        self
    }

    /// Serves client connections with the hand-written relay (`true`, the
    /// default) or with hyper's HTTP/1 server and client (`false`), under
    /// the same rules.
    pub fn with_fast_path(mut self, fast_path: bool) -> Self {
        self.fast_path = fast_path;
        self
    }

    /// Serves client connections over TLS (`Some`), with a client
    /// certificate required when it has a client CA, or in plaintext.
    pub fn with_tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }

    /// The first route for a request; `path` is normalised.
    fn route(&self, method: &Method, path: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| r.matches(method, path))
    }
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shed: Shed,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let workers = Workers::start("keyward-gateway", gateway.threads, gateway.scheduling)?;
    let admission = Connections::new(gateway.limits, shed.clone());
    let take = |stream: TcpStream,
                peer: SocketAddr,
                slot: Slot,
                stopping: &tokio::sync::watch::Receiver<bool>,
                connections: &mut tokio::task::JoinSet<()>| {
        let gateway = Arc::clone(&gateway);
        let stopping = stopping.clone();
        let shed = shed.clone();
        match workers.least_busy() {
            None => {
                let _ = stream.set_nodelay(true);
                connections.spawn(async move {
                    let _slot = slot;
                    serve_connection(gateway, stream, peer, stopping, shed).await;
                });
            }
            Some(worker) => match stream.into_std() {
                Ok(stream) => {
                    let open = Open::count(&worker.open);
                    let served = async move {
                        let (_open, _slot) = (open, slot);
                        // Registered with this thread's own reactor.
                        match TcpStream::from_std(stream) {
                            Ok(stream) => {
                                let _ = stream.set_nodelay(true);
                                serve_connection(gateway, stream, peer, stopping, shed).await;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "gateway could not take a connection");
                            }
                        }
                    };
                    connections.spawn_on(served, &worker.runtime);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway could not hand a connection over");
                }
            },
        }
    };
    keyward_net::accept_until(listener, &admission, TOO_MANY_CONNECTIONS, shutdown, take).await;
    Ok(())
}

/// Serves one client connection on the path the gateway was built with,
/// after a TLS handshake when it has TLS. The handshake is held to the
/// deadline hyper has for a head: a client that stalls in it, or sends what
/// is not TLS, is dropped, as is one still in it when the gateway stops.
async fn serve_connection(
    gateway: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: tokio::sync::watch::Receiver<bool>,
    shed: Shed,
) {
    let Some(tls) = gateway.tls.clone() else {
        let client = Client {
            addr: peer,
            certificate: None,
        };
        return serve_stream(gateway, stream, client, stopping, shed).await;
    };
    let handshake = tls.accept(stream, gateway.limits.hyper_head());
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        () = keyward_net::stopped(stopping.clone()) => return,
    };
    match accepted {
        Ok((stream, certificate)) => {
            let client = Client {
                addr: peer,
                certificate,
            };
            serve_stream(gateway, stream, client, stopping, shed).await;
        }
        Err(e) => tracing::debug!(error = %e, "gateway TLS handshake failed"),
    }
}

async fn serve_stream<C: Stream>(
    gateway: Arc<Gateway>,
    stream: C,
    client: Client,
    stopping: tokio::sync::watch::Receiver<bool>,
    shed: Shed,
) {
    if gateway.fast_path {
        connection(gateway, stream, client, stopping, shed).await;
    } else {
        reference::connection(gateway, stream, client, stopping, shed).await;
    }
}

/// Who is at the other end of a client connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    /// The peer's address: the client's, unless it is a trusted proxy.
    addr: SocketAddr,
    /// The client's verified certificate, on a mutual TLS connection.
    certificate: Option<PeerCertificate>,
}

/// Whether a client connection goes on after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    KeepAlive,
    Close,
}

/// Buffers one client connection reuses for every request.
#[derive(Default)]
struct Scratch {
    /// The key presented, wiped when the connection ends.
    key: Zeroizing<String>,
    /// The request target, normalised path and query.
    target: String,
    /// The client's forwarding header, its lines joined.
    forwarded: String,
    /// The head (and body bytes) being written.
    out: Vec<u8>,
    /// The status of the answer to the current request, for the observer.
    status: u16,
    /// The current request's verification code, once verified.
    code: Option<VerifyCode>,
    /// The raw head of the current request, kept when a route checks
    /// signatures.
    raw_head: Vec<u8>,
    /// The current request's one-time code, wiped when the connection
    /// ends.
    otp: Zeroizing<String>,
}

/// Serves one client connection until it closes, breaks the protocol, is
/// idle or slow past its [`Limits`] or the gateway stops.
async fn connection<C: Stream>(
    gateway: Arc<Gateway>,
    stream: C,
    peer: Client,
    stopping: tokio::sync::watch::Receiver<bool>,
    shed: Shed,
) {
    let limits = gateway.limits;
    let mut client = Inbound::new(stream);
    let mut upstream: Option<Inbound> = None;
    let mut scratch = Scratch::default();
    let stopped = keyward_net::stopped(stopping.clone());
    tokio::pin!(stopped);
    let shed = shed.asked();
    tokio::pin!(shed);
    // The wait for a request, then its head, as the front does: re-armed
    // for the head only when it does not arrive whole in one read.
    let idle = tokio::time::sleep(limits.idle);
    tokio::pin!(idle);
    let mut head_begun = false;
    loop {
        let head = loop {
            let parsed = parse_request(
                client.data(),
                &gateway.head,
                &mut scratch.key,
                &mut scratch.otp,
                &mut scratch.target,
                &mut scratch.forwarded,
                &mut scratch.out,
            );
            match parsed {
                Ok(Some(head)) => break head,
                Ok(None) if client.data().len() >= MAX_HEAD => {
                    bad_request(&mut client, &mut scratch, &Refusal::head_too_large()).await;
                    return;
                }
                Ok(None) if !head_begun && !client.data().is_empty() => {
                    head_begun = true;
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + limits.head);
                }
                Ok(None) => {}
                Err(bad) => {
                    bad_request(&mut client, &mut scratch, &Refusal::unreadable(bad)).await;
                    return;
                }
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
                () = &mut idle => return,
            }
        };
        let raw = &client.data()[..head.len];
        if gateway.signs {
            scratch.raw_head.clear();
            scratch.raw_head.extend_from_slice(raw);
        }
        client.consume(head.len);
        let started = gateway
            .observer
            .wants(Listener::Gateway)
            .then(std::time::Instant::now);
        scratch.status = 0;
        scratch.code = None;
        let flow = match head.framing {
            Framing::Length(n) if n > gateway.max_body => {
                let refusal = Refusal::body_too_large();
                let (client, scratch) = (&mut client, &mut scratch);
                refuse(client, scratch, &head, Body::Unread, &refusal, None).await
            }
            _ => {
                exchange(
                    &gateway,
                    &peer,
                    &mut client,
                    &mut upstream,
                    &mut scratch,
                    &head,
                )
                .await
            }
        };
        if let Some(started) = started {
            gateway.observer.observe(&Observation {
                listener: Listener::Gateway,
                method: head.method.as_str(),
                path: &scratch.target[..head.path_end],
                status: scratch.status,
                latency: started.elapsed(),
                code: scratch.code,
                client_certificate: peer.certificate.map(|c| c.sha256),
            });
        }
        if flow == Flow::Close || !head.keep_alive || !matches!(stopping.has_changed(), Ok(false)) {
            return;
        }
        if head_begun {
            head_begun = false;
            idle.as_mut()
                .reset(tokio::time::Instant::now() + limits.idle);
        } else {
            keyward_net::push_back(idle.as_mut(), limits.idle);
        }
    }
}

/// Answers a request that could not be read, before closing.
async fn bad_request<C: Stream>(client: &mut Inbound<C>, scratch: &mut Scratch, refusal: &Refusal) {
    // The head could not be read, so its method is not known.
    decide::refusal(&mut scratch.out, refusal, None, true, false);
    if client.stream.write_all(&scratch.out).await.is_ok() {
        linger(client).await;
    }
}

/// Closes a connection whose client may still be sending. Closing a socket
/// with bytes unread resets the connection, which can destroy the answer
/// before the client reads it; so the write side is shut first and what
/// still arrives is read and dropped, for a bounded time (as nginx's
/// lingering close does).
async fn linger<C: Stream>(client: &mut Inbound<C>) {
    let n = client.data().len();
    client.consume(n);
    linger_stream(&mut client.stream).await;
}

/// [`linger`] on a bare stream, for either path: shuts the write side, then
/// reads and drops what still arrives, up to [`LINGER_BYTES`] within
/// [`LINGER`].
pub(crate) async fn linger_stream<S: Stream>(stream: &mut S) {
    use tokio::io::AsyncReadExt;
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 8192];
        let mut drained = 0;
        while drained <= LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// One request: routed, verified, then refused or forwarded.
async fn exchange<C: Stream>(
    gateway: &Arc<Gateway>,
    peer: &Client,
    client: &mut Inbound<C>,
    upstream: &mut Option<Inbound>,
    scratch: &mut Scratch,
    head: &RequestHead,
) -> Flow {
    let path = &scratch.target[..head.path_end];
    let key = head.has_key.then_some(&**scratch.key);
    let scheme = match gateway.signs {
        true => gateway.route(&head.method, path).and_then(|r| r.signature),
        false => None,
    };
    let mut proof = Proof {
        request: None,
        otp: (!scratch.otp.is_empty()).then(|| Arc::new(scratch.otp.clone())),
    };
    // A signature covers the body, so a signed route's body is read whole
    // before the request is decided; the client that waits for leave to
    // send it gets it first.
    let mut head_sent_continue = None;
    if let Some(scheme) = scheme {
        let length = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => n,
            _ => {
                let refusal = Refusal::length_required();
                return refuse(client, scratch, head, Body::Unread, &refusal, None).await;
            }
        };
        if length > 0 {
            if head.expect_continue && !head.http10 {
                if client
                    .stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
                {
                    return Flow::Close;
                }
                head_sent_continue = Some(RequestHead {
                    method: head.method.clone(),
                    expect_continue: false,
                    ..*head
                });
            }
            if let Err(refusal) = read_body(gateway, client, length).await {
                return refuse(client, scratch, head, Body::Broken, &refusal, None).await;
            }
        }
        let body = &client.data()[..length as usize];
        let tls = gateway.tls.is_some();
        match signed::signed_request(scheme, tls, &scratch.raw_head, body) {
            Some(signed) => proof.request = Some(Arc::new(signed)),
            None => {
                let refusal = Refusal::unsigned_head();
                return refuse(client, scratch, head, Body::Unread, &refusal, None).await;
            }
        }
    }
    let head = head_sent_continue.as_ref().unwrap_or(head);
    let path = &scratch.target[..head.path_end];
    let decided = decide(
        gateway,
        &head.method,
        path,
        key,
        &scratch.forwarded,
        peer.addr.ip(),
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
            scratch.code = verification.as_ref().map(|v| v.code);
            let verification = verification.as_ref();
            return refuse(client, scratch, head, Body::Unread, &refusal, verification).await;
        }
    };
    scratch.code = Some(verification.code);
    let (out, forwarded) = (&mut scratch.out, &scratch.forwarded);
    decide::admitted_headers(
        out,
        gateway,
        &verification,
        forwarded,
        origin,
        peer.addr.ip(),
    );
    scratch.out.extend_from_slice(b"\r\n");
    forward(gateway, client, upstream, scratch, head, &verification).await
}

/// Reads a signed request's body of `length` bytes whole into the client's
/// buffer, at the pace `[limits]` asks of any body.
async fn read_body<C: Stream>(
    gateway: &Gateway,
    client: &mut Inbound<C>,
    length: u64,
) -> Result<(), Refusal> {
    if length > gateway.max_body {
        return Err(Refusal::body_too_large());
    }
    let mut pace = Pace::start(&gateway.limits);
    while (client.data().len() as u64) < length {
        let deadline = pace.deadline();
        match tokio::time::timeout_at(deadline, client.fill()).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Refusal::body_broken()),
            Ok(Ok(n)) => pace.received(n as u64),
            Err(_) => return Err(Refusal::body_too_slow()),
        }
    }
    Ok(())
}

/// Where the body of a request being refused stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Not read yet: it is skipped when it has arrived whole, and the
    /// connection closes when it has not.
    Unread,
    /// Read whole (sent upstream).
    Sent,
    /// Read in part: the connection is out of step and closes.
    Broken,
}

/// Answers a request the gateway refuses itself. The connection stays open
/// only when the request's body has been read whole (or there is none).
async fn refuse<C: Stream>(
    client: &mut Inbound<C>,
    scratch: &mut Scratch,
    head: &RequestHead,
    body: Body,
    refusal: &Refusal,
    verification: Option<&Verification>,
) -> Flow {
    scratch.status = refusal.status;
    let body_read = match (body, head.framing) {
        (Body::Sent, _) | (Body::Unread, Framing::Empty) => true,
        (Body::Unread, Framing::Length(n)) if (client.data().len() as u64) >= n => {
            client.consume(n as usize);
            true
        }
        _ => false,
    };
    let flow = if body_read && head.keep_alive {
        Flow::KeepAlive
    } else {
        Flow::Close
    };
    let close = flow == Flow::Close;
    let head_only = head.method == Method::HEAD;
    decide::refusal(&mut scratch.out, refusal, verification, close, head_only);
    match client.stream.write_all(&scratch.out).await {
        Ok(()) if !body_read => {
            linger(client).await;
            Flow::Close
        }
        Ok(()) => flow,
        Err(_) => Flow::Close,
    }
}

/// Whether a kept upstream connection can carry another request: nothing
/// unread, and the upstream has not closed it while it was idle.
fn still_open(upstream: &Inbound) -> bool {
    if !upstream.data().is_empty() {
        return false;
    }
    let mut ready = std::pin::pin!(upstream.stream.ready(Interest::READABLE));
    match ready.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(ready)) => !ready.is_read_closed() && !ready.is_error(),
        Poll::Ready(Err(_)) => false,
        Poll::Pending => true,
    }
}

async fn connect(gateway: &Gateway) -> std::io::Result<Inbound> {
    Ok(Inbound::new(open_upstream(gateway).await?))
}

/// A new connection to the upstream, within the connect deadline, for
/// either path.
pub(crate) async fn open_upstream(gateway: &Gateway) -> std::io::Result<TcpStream> {
    let connecting = TcpStream::connect(&gateway.upstream_address);
    let stream = tokio::time::timeout(gateway.connect_timeout, connecting)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads the upstream's answer head, and relays any informational (1xx)
/// answers before it to an HTTP/1.1 client.
async fn response_head<C: Stream>(
    upstream: &mut Inbound,
    client: &mut Inbound<C>,
    head: &RequestHead,
    out: &mut Vec<u8>,
) -> Result<ResponseHead, BadResponse> {
    loop {
        match parse_response(upstream.data(), &head.method, out)? {
            Some(response) if (100..200).contains(&response.status) => {
                upstream.consume(response.len);
                // The gateway answered any `Expect: 100-continue` itself.
                if response.status != 100 && !head.http10 {
                    out.extend_from_slice(b"\r\n");
                    client.stream.write_all(out).await?;
                }
            }
            Some(response) => {
                upstream.consume(response.len);
                return Ok(response);
            }
            None => {
                if upstream.fill().await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
    }
}

/// Sends an admitted request upstream (its head is in `scratch.out`) and
/// relays the answer.
async fn forward<C: Stream>(
    gateway: &Gateway,
    client: &mut Inbound<C>,
    upstream: &mut Option<Inbound>,
    scratch: &mut Scratch,
    head: &RequestHead,
    verification: &Verification,
) -> Flow {
    if upstream.as_ref().is_some_and(|up| !still_open(up)) {
        *upstream = None;
    }
    // A request without a body is all in `out` and can be sent again on a
    // new connection when a kept one turns out closed before any answer;
    // only idempotent methods, since the upstream may have acted on it.
    let resendable = head.framing == Framing::Empty && head.method.is_idempotent();
    // The client waits for leave to send its body: the gateway gives it,
    // having admitted the request (`Expect` is not forwarded).
    let waits = head.expect_continue && head.framing != Framing::Empty && !head.http10;
    if waits
        && client
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Flow::Close;
    }
    // The client must keep its body coming; the upstream must take each
    // write in time.
    let mut request_bounds = Bounds {
        pace: Some(Pace::start(&gateway.limits)),
        max: Some(gateway.max_body),
        write: Some(gateway.upstream_timeout),
    };
    let answered = loop {
        let reused = upstream.is_some();
        let mut up = match upstream.take() {
            Some(up) => up,
            None => match connect(gateway).await {
                Ok(up) => up,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to the upstream");
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                    return upstream_failed(client, scratch, head, Body::Unread, timed_out).await;
                }
            },
        };
        let sent = if head.framing == Framing::Empty {
            let writing = up.stream.write_all(&scratch.out);
            match tokio::time::timeout(gateway.upstream_timeout, writing).await {
                Ok(written) => written.map_err(RelayError::Write),
                Err(_) => Err(RelayError::Write(std::io::ErrorKind::TimedOut.into())),
            }
        } else {
            let mut out = std::mem::take(&mut scratch.out);
            let sent = relay_body(
                client,
                &mut up.stream,
                head.framing,
                &mut out,
                false,
                &mut request_bounds,
            )
            .await;
            scratch.out = out;
            sent
        };
        let mut body = Body::Sent;
        let result = match sent {
            Ok(()) => {
                let answer = response_head(&mut up, client, head, &mut scratch.out);
                match tokio::time::timeout(gateway.upstream_timeout, answer).await {
                    Ok(answer) => answer.map(|response| (up, response)),
                    Err(_) => Err(BadResponse::Io(std::io::ErrorKind::TimedOut.into())),
                }
            }
            Err(RelayError::TooLarge) => {
                let refusal = Refusal::body_too_large();
                return refuse(client, scratch, head, Body::Broken, &refusal, None).await;
            }
            Err(RelayError::TooSlow) => {
                let refusal = Refusal::body_too_slow();
                return refuse(client, scratch, head, Body::Broken, &refusal, None).await;
            }
            Err(RelayError::Read(e)) => {
                // The client broke off or mis-framed its body: both
                // connections are out of step now, and both close.
                tracing::debug!(error = %e, "request body failed");
                let refusal = Refusal::body_broken();
                return refuse(client, scratch, head, Body::Broken, &refusal, None).await;
            }
            Err(RelayError::Write(e)) => {
                if head.framing != Framing::Empty {
                    // Some of the body may have been read and not sent.
                    body = Body::Broken;
                }
                Err(BadResponse::Io(e))
            }
        };
        match result {
            Ok(answered) => break answered,
            // A kept connection that failed; not one that was merely slow,
            // which would double the wait on a silent upstream.
            Err(BadResponse::Io(e))
                if reused
                    && resendable
                    && body != Body::Broken
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                tracing::debug!(error = %e, "kept upstream connection failed; sending again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "upstream request failed");
                let timed_out =
                    matches!(&e, BadResponse::Io(e) if e.kind() == std::io::ErrorKind::TimedOut);
                return upstream_failed(client, scratch, head, body, timed_out).await;
            }
        }
    };
    let (mut up, response) = answered;
    scratch.status = response.status;
    let dechunk = head.http10 && response.framing == Framing::Chunked;
    let close = !head.keep_alive || response.framing == Framing::UntilClose || dechunk;
    let out = &mut scratch.out;
    decide::rate_limit_headers(out, verification);
    if response.framing == Framing::Chunked && !dechunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if head.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // A client that stops reading the answer is let go once a write has
    // waited as long as an idle connection may.
    let mut answer_bounds = Bounds {
        write: Some(gateway.limits.idle),
        ..Bounds::default()
    };
    let relayed = relay_body(
        &mut up,
        &mut client.stream,
        response.framing,
        out,
        dechunk,
        &mut answer_bounds,
    );
    if let Err(e) = relayed.await {
        tracing::debug!(error = %e, "response body failed");
        return Flow::Close;
    }
    if response.reusable {
        *upstream = Some(up);
    }
    if close {
        Flow::Close
    } else {
        Flow::KeepAlive
    }
}

/// Answers 502 when the upstream could not be reached or broke off before
/// its answer began, 504 when it did not connect or answer in time.
async fn upstream_failed<C: Stream>(
    client: &mut Inbound<C>,
    scratch: &mut Scratch,
    head: &RequestHead,
    body: Body,
    timed_out: bool,
) -> Flow {
    let refusal = Refusal::upstream(timed_out);
    refuse(client, scratch, head, body, &refusal, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Option<&str>, path: &str) -> Result<CompiledRoute, GatewayConfigError> {
        CompiledRoute::new(
            Route {
                method: method.map(str::to_owned),
                path: path.to_owned(),
                scopes: Vec::new(),
                cost: None,
                signature: None,
            },
            None,
        )
    }

    #[test]
    fn routes_match_whole_segments_and_methods_exactly() {
        let admin = route(None, "/v1/admin").unwrap();
        let prices = route(Some("GET"), "/v1/prices").unwrap();
        let tree = route(None, "/v1/").unwrap();
        let get = Method::GET;
        let lower = Method::from_bytes(b"get").unwrap();
        for (route, method, path, expected) in [
            (&admin, &get, "/v1/admin", true),
            (&admin, &get, "/v1/admin/", true),
            (&admin, &get, "/v1/admin/x", true),
            (&admin, &get, "/v1/adminx", false),
            (&admin, &get, "/v1/Admin", false),
            (&admin, &get, "/v1", false),
            (&prices, &get, "/v1/prices", true),
            (&prices, &Method::HEAD, "/v1/prices", true),
            (&prices, &lower, "/v1/prices", false),
            (&prices, &Method::POST, "/v1/prices", false),
            (&tree, &get, "/v1/x", true),
            (&tree, &get, "/v1/", true),
            (&tree, &get, "/v1", false),
        ] {
            assert_eq!(
                route.matches(method, path),
                expected,
                "{} {path}",
                route.path
            );
        }
        let head = route(Some("HEAD"), "/v1/prices").unwrap();
        assert!(
            !head.matches(&get, "/v1/prices"),
            "a HEAD route takes only HEAD"
        );
    }

    #[test]
    fn route_paths_must_be_normalised() {
        for path in ["/v1/../admin", "//v1", "/v1/%61dmin", "/v1/./x"] {
            let error = route(None, path).err().unwrap().to_string();
            assert!(error.contains("not normalised"), "{path}: {error}");
        }
        for path in ["/v1/admin%2f", "/v1;x", "/v1/admin."] {
            let error = route(None, path).err().unwrap().to_string();
            assert!(error.contains("refused"), "{path}: {error}");
        }
        assert!(route(None, "v1").is_err());
        assert!(route(None, "/v1/caf%C3%A9").is_ok());
    }
}
