//! TLS on the API listener and the gateway, against the real server: real
//! handshakes from reqwest and rustls with certificates made at run time,
//! mutual TLS, certificate reloads, plaintext refused where others can
//! reach it, and hostile handshakes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use keyward_gateway::GatewayConfig;
use keyward_server::settings::LimitSettings;
use keyward_server::tls::{PeerCertificate, Tls, TlsFiles};
use keyward_server::{Application, Settings, StartError};
use keyward_verify::{Listener, Observation, Observe};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use support::Backend;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends_raw!(
    the_api_answers_over_tls_with_tls_13_and_http_11,
    the_gateway_answers_over_tls,
    an_expired_server_certificate_is_refused_by_the_client,
    mutual_tls_needs_a_client_certificate_from_the_ca,
    the_client_certificate_reaches_every_request_of_its_connection,
    a_reload_serves_new_handshakes_and_keeps_open_connections,
    plaintext_is_refused_on_a_public_address_unless_allowed,
    hostile_handshakes_are_closed_and_the_server_goes_on,
    a_token_bound_to_a_client_certificate_works_only_with_it,
);

/// A certificate authority that issues the test's certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, in PEM.
struct Issued {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            None,
        )
    }

    /// A server certificate that expired yesterday.
    fn expired_server(&self) -> Issued {
        let now = OffsetDateTime::now_utc();
        self.issue(
            "expired",
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            Some((
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            )),
        )
    }

    fn client(&self, name: &str) -> Issued {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, None)
    }

    fn issue(
        &self,
        name: &str,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        validity: Option<(OffsetDateTime, OffsetDateTime)>,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        if let Some((not_before, not_after)) = validity {
            params.not_before = not_before;
            params.not_after = not_after;
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// Writes a server certificate and key (and a client CA) where `[tls]`
/// names them.
fn write_files(dir: &Path, server: &Issued, client_ca: Option<&Ca>) -> TlsFiles {
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, &server.cert).unwrap();
    std::fs::write(&key, &server.key).unwrap();
    let client_ca = client_ca.map(|ca| {
        let path = dir.join("client-ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        path
    });
    TlsFiles {
        cert,
        key,
        client_ca,
    }
}

/// One request answered: its listener, path and the client certificate
/// its observation carried.
type Seen = (Listener, String, Option<[u8; 32]>);

/// Every request the listeners answered.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Observe for Recorder {
    fn wants(&self, _: Listener) -> bool {
        true
    }

    fn observe(&self, o: &Observation<'_>) {
        let seen = (o.listener, o.path.to_owned(), o.client_certificate);
        self.seen.lock().unwrap().push(seen);
    }
}

impl Recorder {
    fn certificates_of(&self, listener: Listener, path: &str) -> Vec<Option<[u8; 32]>> {
        let seen = self.seen.lock().unwrap();
        let of = seen.iter().filter(|(l, p, _)| *l == listener && p == path);
        of.map(|(_, _, c)| *c).collect()
    }
}

struct Server {
    api: SocketAddr,
    gateway: Option<SocketAddr>,
    root: String,
    tls: Option<Tls>,
    recorder: Arc<Recorder>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Settings for a server on `127.0.0.1:0` with a data directory in `dir`.
fn settings(dir: &Path, tls: Option<TlsFiles>, gateway: Option<GatewayConfig>) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        gateway,
        tls,
        fast_path: support::fast_path(),
        limits: LimitSettings {
            idle_timeout_ms: 1000,
            head_timeout_ms: 1000,
            ..LimitSettings::default()
        },
        ..Settings::default()
    }
}

async fn start(backend: Backend, tls: Option<TlsFiles>, gateway: Option<GatewayConfig>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = support::fresh_store(backend, dir.path()).await;
    let recorder = Arc::new(Recorder::default());
    let settings = settings(dir.path(), tls, gateway);
    let observer: Arc<dyn Observe> = recorder.clone();
    let mut app = Application::with_observer(settings, store, observer)
        .await
        .unwrap();
    let root = app.take_root_token().unwrap().expose().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server {
        api: app.local_addr().unwrap(),
        gateway: app.gateway_addr().map(|a| a.unwrap()),
        root,
        tls: app.tls(),
        recorder,
        _dir: dir,
        _stop: stop,
    };
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    server
}

/// A client that trusts `ca` (only it) and, when given, presents
/// `identity`.
fn client(ca: &Ca, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(30));
    if let Some(identity) = identity {
        let pem = format!("{}{}", identity.cert, identity.key);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// The DER of the certificate the server presented for `response`.
fn server_certificate(response: &reqwest::Response) -> Vec<u8> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>();
    info.and_then(|i| i.peer_certificate()).unwrap().to_vec()
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.api.port())
    }

    async fn admin(&self, client: &reqwest::Client, path: &str, body: Value) -> Value {
        let response = client
            .post(self.url(path))
            .bearer_auth(&self.root)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }
}

async fn the_api_answers_over_tls_with_tls_13_and_http_11(backend: Backend) {
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        backend,
        Some(write_files(dir.path(), &ca.server("api"), None)),
        None,
    )
    .await;
    let https = client(&ca, None);
    let health = https.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let apis = https
        .get(server.url("/v1/apis"))
        .bearer_auth(&server.root)
        .send()
        .await
        .unwrap();
    assert_eq!(apis.status(), StatusCode::OK);
    let api = server
        .admin(
            &https,
            "/v1/apis",
            json!({"name": "Tls", "prefix": "tl", "environments": ["live"]}),
        )
        .await;
    assert_eq!(api["prefix"], "tl");

    // The protocol a client offering both gets, and ALPN: TLS 1.3 and
    // HTTP/1.1, even to a client that would rather speak h2.
    let (version, alpn) = handshake(server.api, &ca, &[b"h2", b"http/1.1"], None).await;
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    // TLS 1.2 is still spoken to a client that has nothing newer.
    let tls12 = Some(&rustls::version::TLS12);
    let (version, _) = handshake(server.api, &ca, &[b"http/1.1"], tls12).await;
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));
}

/// A rustls handshake with `addr` offering `alpn` (and only `version` when
/// given): the protocol version and ALPN protocol agreed.
async fn handshake(
    addr: SocketAddr,
    ca: &Ca,
    alpn: &[&[u8]],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> (Option<rustls::ProtocolVersion>, Option<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = match version {
        Some(version) => builder.with_protocol_versions(&[version]).unwrap(),
        None => builder.with_safe_default_protocol_versions().unwrap(),
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let connection = tls.get_ref().1;
    let agreed = (
        connection.protocol_version(),
        connection.alpn_protocol().map(<[u8]>::to_vec),
    );
    agreed
}

/// A stand-in upstream that answers every request with 200 `upstream`.
async fn upstream() -> String {
    let app = axum::Router::new().fallback(|| async { "upstream" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn gateway_config(upstream: &str) -> GatewayConfig {
    serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "upstream": upstream,
        "threads": 1,
        "route": [{"method": "GET", "path": "/v1/prices", "scopes": ["prices:read"]}],
    }))
    .unwrap()
}

/// A key the gateway admits on `/v1/prices`.
async fn key(server: &Server, https: &reqwest::Client) -> String {
    let api = server
        .admin(
            https,
            "/v1/apis",
            json!({"name": "Gw", "prefix": "gw", "environments": ["live"]}),
        )
        .await;
    let key = server
        .admin(
            https,
            "/v1/keys",
            json!({"api_id": api["id"], "environment": "live", "owner": "acme",
                   "scopes": ["prices:read"]}),
        )
        .await;
    key["key"].as_str().unwrap().to_owned()
}

async fn the_gateway_answers_over_tls(backend: Backend) {
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.server("both"), None);
    let upstream = upstream().await;
    let server = start(backend, Some(files), Some(gateway_config(&upstream))).await;
    let https = client(&ca, None);
    let key = key(&server, &https).await;
    let gateway = server.gateway.unwrap();
    let url = format!("https://localhost:{}/v1/prices", gateway.port());
    for _ in 0..2 {
        let answer = https.get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.text().await.unwrap(), "upstream");
    }
    let refused = https.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/prices", gateway.port()))
        .bearer_auth(&key)
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plaintext HTTP to the TLS gateway is not served"
    );
}

async fn an_expired_server_certificate_is_refused_by_the_client(backend: Backend) {
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.expired_server(), None);
    let server = start(backend, Some(files), None).await;
    let refused = client(&ca, None).get(server.url("/health")).send().await;
    let error = refused.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert!(format!("{error:?}").contains("Expired"), "{error:?}");
}

async fn mutual_tls_needs_a_client_certificate_from_the_ca(backend: Backend) {
    let (ca, client_ca, stranger) = (Ca::new("test CA"), Ca::new("client CA"), Ca::new("other"));
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.server("api"), Some(&client_ca));
    let upstream = upstream().await;
    let server = start(backend, Some(files), Some(gateway_config(&upstream))).await;
    let gateway = format!(
        "https://localhost:{}/v1/prices",
        server.gateway.unwrap().port()
    );
    for url in [server.url("/health"), gateway.clone()] {
        let anonymous = client(&ca, None).get(&url).send().await;
        assert!(
            anonymous.is_err(),
            "{url}: no client certificate, no answer"
        );
        let foreign = client(&ca, Some(&stranger.client("stranger")));
        assert!(
            foreign.get(&url).send().await.is_err(),
            "{url}: another CA's"
        );
    }
    let admin = client(&ca, Some(&client_ca.client("operator")));
    let health = admin.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let key = key(&server, &admin).await;
    let answer = admin.get(&gateway).bearer_auth(&key).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

async fn the_client_certificate_reaches_every_request_of_its_connection(backend: Backend) {
    let (ca, client_ca) = (Ca::new("test CA"), Ca::new("client CA"));
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.server("api"), Some(&client_ca));
    let upstream = upstream().await;
    let server = start(backend, Some(files), Some(gateway_config(&upstream))).await;
    let operator = client_ca.client("operator");
    let fingerprint = PeerCertificate::of(&operator.der).sha256;
    let https = client(&ca, Some(&operator));
    // On one connection: requests the front answers itself, then ones
    // only the router serves.
    for path in ["/health", "/health", "/v1/apis", "/v1/openapi.json"] {
        let answer = https
            .get(server.url(path))
            .bearer_auth(&server.root)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
    let key = key(&server, &https).await;
    let gateway = format!(
        "https://localhost:{}/v1/prices",
        server.gateway.unwrap().port()
    );
    let answer = https.get(&gateway).bearer_auth(&key).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // The gateway observes a request once its answer is written, so the
    // client may read the answer before the observation lands.
    let recorder = &server.recorder;
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder
        .certificates_of(Listener::Gateway, "/v1/prices")
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (listener, path, count) in [
        (Listener::Api, "/health", 2),
        (Listener::Api, "/v1/apis", 2),
        (Listener::Api, "/v1/openapi.json", 1),
        (Listener::Api, "/v1/keys", 1),
        (Listener::Gateway, "/v1/prices", 1),
    ] {
        assert_eq!(
            recorder.certificates_of(listener, path),
            vec![Some(fingerprint); count],
            "{listener:?} {path}"
        );
    }
}

async fn a_reload_serves_new_handshakes_and_keeps_open_connections(backend: Backend) {
    let ca = Ca::new("test CA");
    let (first, second) = (ca.server("first"), ca.server("second"));
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &first, None);
    let server = start(backend, Some(files.clone()), None).await;
    let tls = server.tls.clone().unwrap();
    let open = client(&ca, None);
    let health = open.get(server.url("/health")).send().await.unwrap();
    assert_eq!(server_certificate(&health), first.der);

    write_files(dir.path(), &second, None);
    tls.reload().unwrap();
    // The connection open before the reload keeps its session: a new
    // connection would have been given the second certificate.
    for _ in 0..3 {
        let kept = open.get(server.url("/health")).send().await.unwrap();
        assert_eq!(kept.status(), StatusCode::OK);
        assert_eq!(server_certificate(&kept), first.der, "the same connection");
    }
    let fresh = client(&ca, None).get(server.url("/health")).send().await;
    assert_eq!(server_certificate(&fresh.unwrap()), second.der);

    // A certificate file that cannot be read leaves the one in use.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let error = tls.reload().unwrap_err().to_string();
    assert!(error.contains("server.pem"), "{error}");
    std::fs::write(&files.cert, &first.cert).unwrap();
    std::fs::write(&files.key, ca.server("unrelated").key).unwrap();
    let error = tls.reload().unwrap_err().to_string();
    assert!(!error.contains("PRIVATE KEY"), "{error}");
    let still = client(&ca, None).get(server.url("/health")).send().await;
    assert_eq!(server_certificate(&still.unwrap()), second.der);
}

async fn plaintext_is_refused_on_a_public_address_unless_allowed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let public = |settings: Settings| Settings {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..settings
    };
    let (store, _) = support::fresh_store(backend, dir.path()).await;
    let refused = Application::with_store(public(settings(dir.path(), None, None)), store.clone())
        .await
        .err()
        .expect("plaintext on 0.0.0.0 is refused");
    assert!(matches!(refused, StartError::Plaintext { .. }), "{refused}");
    let message = refused.to_string();
    for needed in ["0.0.0.0:0", "--tls-cert", "--danger-allow-plaintext"] {
        assert!(message.contains(needed), "{needed} in {message}");
    }
    let mut gateway = gateway_config("http://127.0.0.1:9");
    gateway.listen = Some("[::]:0".parse().unwrap());
    let refused = Application::with_store(settings(dir.path(), None, Some(gateway)), store.clone())
        .await
        .err()
        .expect("a plaintext gateway on [::] is refused");
    assert!(refused.to_string().contains("the gateway"), "{refused}");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let standalone = keyward_server::run_gateway(
        settings(dir.path(), None, None),
        gateway_config("http://127.0.0.1:9"),
        listener,
        None,
        async {},
    )
    .await;
    assert!(matches!(standalone, Err(StartError::Plaintext { .. })));

    let allowed = Settings {
        danger_allow_plaintext: true,
        ..public(settings(dir.path(), None, None))
    };
    let app = Application::with_store(allowed, store).await.unwrap();
    let port = app.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    assert_eq!(health.unwrap().status(), StatusCode::OK);
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

/// Longest a hostile connection may stay open, with the 1 s limits of
/// [`settings`]: generous, for a loaded machine.
const BOUND: Duration = Duration::from_secs(6);

/// Sends `bytes` and waits for the server to close the connection.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(BOUND, tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "{bytes:?}: still open after {BOUND:?}");
    started.elapsed()
}

async fn hostile_handshakes_are_closed_and_the_server_goes_on(backend: Backend) {
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.server("api"), None);
    let upstream = upstream().await;
    let server = start(backend, Some(files), Some(gateway_config(&upstream))).await;
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c];
    garbage.extend(std::iter::repeat_n(0xa5, 60));
    let https = client(&ca, None);
    let gateway = server.gateway.unwrap();
    for (addr, path, status) in [
        (server.api, "/health", StatusCode::OK),
        (gateway, "/v1/prices", StatusCode::UNAUTHORIZED),
    ] {
        closed_after(addr, &garbage).await;
        closed_after(addr, b"\x00\xff\xff\xff").await;
        closed_after(addr, b"GET /health HTTP/1.1\r\nHost: k\r\n\r\n").await;
        // Half a ClientHello, then nothing: cut off by the 1 s deadline.
        let stalled = closed_after(addr, &garbage[..20]).await;
        assert!(stalled >= Duration::from_millis(900), "{stalled:?}");
        // Nothing at all.
        let silent = closed_after(addr, b"").await;
        assert!(silent >= Duration::from_millis(900), "{silent:?}");
        let served = https
            .get(format!("https://localhost:{}{path}", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), status, "{addr}{path} is still served");
    }
}

/// `keyward gateway` as its own process on the store of a server: over TLS
/// too. SQLite only: the gateway opens the store by its URL, which a test
/// schema on PostgreSQL does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_gateway_answers_over_tls() {
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.server("gateway"), None);
    let server = start(Backend::Sqlite, Some(files.clone()), None).await;
    let https = client(&ca, None);
    let key = key(&server, &https).await;
    let settings = Settings {
        tls: Some(files),
        ..settings(server._dir.path(), None, None)
    };
    let tls = settings.tls().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(keyward_server::run_gateway(
        settings,
        gateway_config(&upstream),
        listener,
        tls,
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("https://localhost:{port}/v1/prices");
    let answer = https.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "upstream");
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

async fn a_token_bound_to_a_client_certificate_works_only_with_it(backend: Backend) {
    let (ca, client_ca) = (Ca::new("test CA"), Ca::new("client CA"));
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &ca.server("api"), Some(&client_ca));
    let server = start(backend, Some(files), None).await;
    let (verifier, thief) = (client_ca.client("verifier"), client_ca.client("thief"));
    let fingerprint = PeerCertificate::of(&verifier.der).to_string();
    let own = client(&ca, Some(&verifier));
    let other = client(&ca, Some(&thief));
    let key = key(&server, &own).await;
    // A verify-only service identity: the token, and the certificate.
    let colons: Vec<String> = fingerprint
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
        .collect();
    let issued = server
        .admin(
            &own,
            "/v1/tokens",
            json!({"name": "verifier", "scopes": ["keys:verify", "tokens:write"],
                   "client_cert": colons.join(":")}),
        )
        .await;
    assert_eq!(issued["client_cert"], fingerprint.as_str());
    let token = issued["token"].as_str().unwrap().to_owned();
    let verify = |c: &reqwest::Client, token: &str| {
        c.post(server.url("/v1/keys/verify"))
            .bearer_auth(token)
            .json(&json!({"key": key}))
            .send()
    };
    let answer = verify(&own, &token).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["code"], "VALID");
    // The stolen token on another certificate of the same CA, on the
    // front's own path and through the router alike.
    let stolen = verify(&other, &token).await.unwrap();
    assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
    let listed = other
        .get(server.url("/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::UNAUTHORIZED);
    // What the bound token creates is bound too.
    let child = own
        .post(server.url("/v1/tokens"))
        .bearer_auth(&token)
        .json(&json!({"name": "child", "scopes": ["keys:verify"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(child.status(), StatusCode::CREATED);
    let child: Value = child.json().await.unwrap();
    assert_eq!(child["client_cert"], fingerprint.as_str());
    let child = child["token"].as_str().unwrap();
    assert_eq!(
        verify(&other, child).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verify(&own, child).await.unwrap().status(), StatusCode::OK);
    // A malformed fingerprint is refused.
    let bad = own
        .post(server.url("/v1/tokens"))
        .bearer_auth(&server.root)
        .json(&json!({"name": "bad", "scopes": ["keys:verify"], "client_cert": "abc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
