//! Keyward's HTTP server: the admin API and the verify endpoint, as thin
//! axum handlers over `keyward-service`.
//!
//! It is built as [`Application::build`] then
//! [`Application::run_until_stopped`], so the binary and the tests start
//! exactly the same server, the tests on `127.0.0.1:0`.
//!
//! - `front`: the listener, which answers verify and `/health` itself and
//!   hands every other request to hyper and the router (`fast_path`).
//! - [`settings`]: what the server needs to start.
//! - [`tls`]: TLS on the listeners, and the client certificate every
//!   request of a mutual TLS connection carries.
//! - [`auth`]: the admin token of each request, as the operation's actor.
//! - [`handlers`]: one module per resource, translating between the wire
//!   (`keyward-proto`) and the service.
//! - [`error`]: the one table from failures to status codes and stable
//!   `code`s.
//! - `apidoc`: what the OpenAPI document says beyond the handlers'
//!   annotations.

#![forbid(unsafe_code)]

mod apidoc;
pub mod auth;
pub mod error;
mod front;
pub mod handlers;
mod replay;
pub mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use keyward_core::PlaintextKey;
use keyward_net::tls::{PeerCertificate, Tls};
use keyward_store::Store;
use keyward_verify::{Listener, Observation, Observe, RequestLog};
use tokio::net::TcpListener;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use keyward_verify::{Verifier, VerifierConfig};
pub use settings::Settings;

/// TLS on the listeners: the files (`[tls]`), the reloadable configuration
/// built from them, and the client certificate of a mutual TLS connection,
/// which every admin request of that connection carries as a request
/// extension.
pub mod tls {
    pub use keyward_net::tls::{PeerCertificate, Tls, TlsError, TlsFiles};
}

/// Runs a gateway as its own process: opens the store the settings name
/// (without creating any admin token), verifies in process, and serves on
/// `listener` until `shutdown` completes, flushing usage at the end.
///
/// `tls` is the listener's TLS, from [`Settings::tls`]; the caller keeps a
/// clone to reload it. Without it, a `listener` other machines can reach
/// is refused unless `danger_allow_plaintext`.
pub async fn run_gateway(
    settings: Settings,
    config: keyward_gateway::GatewayConfig,
    listener: TcpListener,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if tls.is_none() {
        settings.check_plaintext("the gateway", listener.local_addr()?)?;
    }
    let store = settings.open_store().await?;
    let verify = settings.verify.config();
    let verifier = Arc::new(Verifier::new(Arc::clone(&store), verify.clone()));
    settings.share_replays(&verifier, &store).await?;
    // HMAC signing secrets and owners' TOTP secrets open under the keyring:
    // a `file` or `pkcs11` seal unseals here as in the server; a `shamir`
    // one stays sealed, and such requests answer 503. A store whose seal
    // the server has not made yet is left for the server to make.
    let initialised = matches!(store.seal().await, Ok(Some(_)));
    let barrier = match initialised {
        true => keyward_service::seal::Barrier::open(
            &settings.seal,
            &settings.data_dir,
            Arc::clone(&store),
        )
        .await
        .ok(),
        false => None,
    };
    if let Some(barrier) = barrier {
        verifier.set_opener(Arc::new(keyward_service::signing::KeyringOpener(Arc::new(
            barrier,
        ))));
    }
    let follower =
        keyward_verify::ChangeFollower::start(store, Arc::clone(&verifier), None).await?;
    let gateway = keyward_gateway::Gateway::new(config, Arc::clone(&verifier))
        .map_err(|e| StartError::Settings(e.to_string()))?
        .with_limits(settings.limits.limits())
        .with_fast_path(settings.fast_path)
        .with_tls(tls);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut watch: tokio::sync::watch::Receiver<bool>| async move {
        let _ = watch.wait_for(|stop| *stop).await;
    };
    let flusher = tokio::spawn(Arc::clone(&verifier).run_flusher(until_stopped(stopped.clone())));
    let following = tokio::spawn(follower.run(verify.change_poll_interval, until_stopped(stopped)));
    let shed = keyward_net::Shed::default();
    let served = keyward_gateway::serve(Arc::new(gateway), listener, shed, shutdown).await;
    let _ = stop.send(true);
    if let Err(e) = following.await {
        tracing::error!(error = %e, "the change follower failed");
    }
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "the usage flusher failed");
    }
    Ok(served?)
}

/// Largest request body accepted. Admin requests are small; this keeps a
/// flood of large bodies from costing memory.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest body of a secrets or transit request: a `batch_input` of
/// thousands of items, or a large secret.
pub(crate) const MAX_ENGINE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler shares.
pub struct AppState {
    /// Every operation; handlers only translate between it and the wire.
    pub service: keyward_service::Service,
    /// The source of truth for APIs, keys, tokens and the audit log.
    pub store: Arc<dyn Store>,
    /// The verify hot path, shared with the gateway.
    pub verifier: Arc<Verifier>,
    /// Admin tokens recently seen, so authenticating a verify call costs no
    /// query.
    pub tokens: Arc<keyward_verify::TokenCache>,
    /// The seal, and the keyring when unsealed.
    pub barrier: Arc<keyward_service::seal::Barrier>,
    /// Public keys of secret-scanning partners (GitHub) by identifier, whose
    /// signed leak reports are accepted.
    pub partner_keys: Vec<(String, keyward_crypto::partner::PartnerKey)>,
    /// Told of every request the API listener answers, by the front and the
    /// router alike.
    pub observer: Arc<dyn Observe>,
}

/// A server bound to its listener and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// What the HTTP front's own routes need.
    state: Arc<AppState>,
    verifier: Arc<Verifier>,
    /// Keeps the caches true to changes made elsewhere.
    follower: keyward_verify::ChangeFollower,
    change_poll_interval: std::time::Duration,
    /// How long between two checks of the audit log's hash chain.
    audit_check_interval: std::time::Duration,
    /// The gateway and its listener, when the settings have a `[gateway]`.
    gateway: Option<(Arc<keyward_gateway::Gateway>, TcpListener)>,
    /// Deadlines and caps of client connections, on both listeners.
    limits: keyward_net::Limits,
    /// Whether the front answers plain verify and `/health` itself.
    fast_path: bool,
    /// TLS on both listeners, when the settings have `[tls]`.
    tls: Option<Tls>,
    /// The root token when this start created it; shown once, then dropped.
    root_token: Option<PlaintextKey>,
}

impl Application {
    /// Opens the store the settings name, migrates it, opens the seal, binds
    /// the listeners and, on the first start of the store, creates the root
    /// admin token.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let store = settings.open_store().await?;
        Self::with_store(settings, store).await
    }

    /// Like [`Application::build`] with a store opened by the caller.
    ///
    /// The root token is created last, once everything that can fail has
    /// succeeded: a start that fails (a port in use, a wrong HSM PIN, a bad
    /// setting) creates no token, so the next start that succeeds creates
    /// it and shows it. A token created by a start that failed would be shown
    /// to no one, and no later start would create another.
    pub async fn with_store(settings: Settings, store: Arc<dyn Store>) -> Result<Self, StartError> {
        Self::with_observer(settings, store, Arc::new(RequestLog)).await
    }

    /// Like [`Application::with_store`], with every request of both
    /// listeners reported to `observer` instead of logged.
    pub async fn with_observer(
        settings: Settings,
        store: Arc<dyn Store>,
        observer: Arc<dyn Observe>,
    ) -> Result<Self, StartError> {
        // TLS first: a listener that would serve in plaintext where it must
        // not, or whose certificate cannot be read, stops the start before
        // anything else is done.
        let tls = settings.tls()?;
        if tls.is_none() {
            settings.check_plaintext("the API listener", settings.listen)?;
            if let Some(listen) = settings.gateway.as_ref().and_then(|g| g.listen) {
                settings.check_plaintext("the gateway", listen)?;
            }
        }
        let barrier = Arc::new(
            keyward_service::seal::Barrier::open(
                &settings.seal,
                &settings.data_dir,
                Arc::clone(&store),
            )
            .await
            .map_err(|e| StartError::Seal(e.to_string()))?,
        );
        keyward_service::bootstrap::default_mount(store.as_ref()).await?;
        let listener = TcpListener::bind(settings.listen).await?;
        let config = settings.verify.config();
        let verifier = Arc::new(Verifier::new(Arc::clone(&store), config.clone()));
        settings.share_replays(&verifier, &store).await?;
        let tokens = Arc::new(keyward_verify::TokenCache::new(config.cache_ttl));
        let follower = keyward_verify::ChangeFollower::start(
            Arc::clone(&store),
            Arc::clone(&verifier),
            Some(Arc::clone(&tokens)),
        )
        .await?;
        let partner_keys = settings
            .leaks
            .partner_keys()
            .map_err(|e| StartError::Settings(e.to_string()))?;
        let auth = settings.auth.settings().map_err(StartError::Settings)?;
        let audit_check_interval = settings
            .audit
            .verify_interval()
            .map_err(StartError::Settings)?;
        let checkpoints = settings.audit.checkpoints().map_err(StartError::Settings)?;
        let service = keyward_service::Service::new(
            Arc::clone(&store),
            Arc::clone(&verifier),
            Arc::clone(&tokens),
            Arc::clone(&barrier),
        )
        .with_auth(auth)
        .with_checkpoints(checkpoints);
        let state = Arc::new(AppState {
            store,
            verifier: Arc::clone(&verifier),
            tokens,
            barrier,
            service,
            partner_keys,
            observer,
        });
        let gateway = match settings.gateway {
            Some(config) => {
                let listen = config.listen.ok_or_else(|| {
                    StartError::Settings("[gateway] needs listen = \"ADDR:PORT\"".into())
                })?;
                let gateway = keyward_gateway::Gateway::new(config, Arc::clone(&verifier))
                    .map_err(|e| StartError::Settings(e.to_string()))?
                    .with_limits(settings.limits.limits())
                    .with_observer(Arc::clone(&state.observer))
                    .with_fast_path(settings.fast_path)
                    .with_tls(tls.clone());
                Some((Arc::new(gateway), TcpListener::bind(listen).await?))
            }
            None => None,
        };
        // Last, once nothing else can fail: the start that creates the token
        // is one that goes on to serve and shows it.
        let root_token = bootstrap(state.store.as_ref()).await?;
        let limits = settings.limits.limits();
        Ok(Application {
            listener,
            router: router(Arc::clone(&state), limits),
            limits,
            fast_path: settings.fast_path,
            tls,
            state,
            verifier,
            follower,
            change_poll_interval: config.change_poll_interval,
            audit_check_interval,
            gateway,
            root_token,
        })
    }

    /// The address the server listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The root admin token if this start created it. It exists nowhere else:
    /// the caller shows it once to the operator.
    pub fn take_root_token(&mut self) -> Option<PlaintextKey> {
        self.root_token.take()
    }

    /// The gateway's address, when one runs inside this server.
    pub fn gateway_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.gateway.as_ref().map(|(_, l)| l.local_addr())
    }

    /// The TLS of both listeners, when the settings have `[tls]`: its
    /// [`Tls::reload`] serves new handshakes with the files' new contents.
    pub fn tls(&self) -> Option<Tls> {
        self.tls.clone()
    }

    /// The verify hot path of this server.
    pub fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.verifier)
    }

    /// Follows every change this server commits from now on.
    pub fn events(&self) -> keyward_service::events::Events {
        self.state.service.events()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests,
    /// writes the usage counted in memory and gives back leased credits.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut watch: tokio::sync::watch::Receiver<bool>| async move {
            let _ = watch.wait_for(|stop| *stop).await;
        };
        let flusher =
            tokio::spawn(Arc::clone(&self.verifier).run_flusher(until_stopped(stopped.clone())));
        let chain_checks = tokio::spawn(check_audit_chain(
            Arc::clone(&self.state),
            self.audit_check_interval,
            until_stopped(stopped.clone()),
        ));
        let checkpoints = tokio::spawn(checkpoint_audit_chain(
            Arc::clone(&self.state),
            until_stopped(stopped.clone()),
        ));
        let service_state = Arc::clone(&self.state);
        let following = tokio::spawn(
            self.follower
                .run(self.change_poll_interval, until_stopped(stopped)),
        );
        // One shutdown signal for the API and the gateway listeners.
        let (signal, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = signal.send(true);
        });
        let stopping = |mut watch: tokio::sync::watch::Receiver<bool>| async move {
            let _ = watch.wait_for(|stop| *stop).await;
        };
        // One signal for idle connections of both to close when the process
        // runs out of file descriptors.
        let shed = keyward_net::Shed::default();
        let limits = self.limits;
        let gateway = self.gateway.map(|(gateway, listener)| {
            let stopping = stopping(watch.clone());
            tokio::spawn(keyward_gateway::serve(
                gateway,
                listener,
                shed.clone(),
                stopping,
            ))
        });
        let served = front::serve(
            self.listener,
            self.router,
            self.state,
            front::Options {
                limits,
                fast_path: self.fast_path,
                tls: self.tls,
            },
            shed,
            stopping(watch),
        )
        .await;
        if let Some(gateway) = gateway {
            match gateway.await {
                Ok(Err(e)) => tracing::error!(error = %e, "the gateway failed"),
                Err(e) => tracing::error!(error = %e, "the gateway task failed"),
                Ok(Ok(())) => {}
            }
        }
        let _ = stop.send(true);
        if let Err(e) = following.await {
            tracing::error!(error = %e, "the change follower failed");
        }
        if let Err(e) = flusher.await {
            tracing::error!(error = %e, "the usage flusher failed");
        }
        if let Err(e) = chain_checks.await {
            tracing::error!(error = %e, "the audit chain check failed");
        }
        if let Err(e) = checkpoints.await {
            tracing::error!(error = %e, "the audit checkpointer failed");
        }
        // The last events of a clean shutdown are checkpointed too.
        if let Err(e) = service_state.service.checkpoint(true).await {
            tracing::error!(error = %e, "could not checkpoint the audit chain at shutdown");
        }
        served
    }
}

/// Signs a checkpoint of the audit chain whenever one is due, looking once
/// a second, until `stop`. A sealed node makes none until it is unsealed.
async fn checkpoint_audit_chain(state: Arc<AppState>, stop: impl Future<Output = ()>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = state.service.checkpoint(false).await {
                    tracing::error!(error = %e, "could not checkpoint the audit chain; will retry");
                }
            }
            () = &mut stop => return,
        }
    }
}

/// Checks the audit log's hash chain from end to end soon after the start
/// and then every `interval`, until `stop`; a finding is logged and
/// audited by the service.
async fn check_audit_chain(
    state: Arc<AppState>,
    interval: std::time::Duration,
    stop: impl Future<Output = ()>,
) {
    // The first check waits a little, so that a start is not slowed by it.
    const FIRST: std::time::Duration = std::time::Duration::from_secs(5);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + FIRST, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = state.service.check_audit_chain().await {
                    tracing::error!(error = %e, "could not check the audit chain; will retry");
                }
            }
            () = &mut stop => return,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] keyward_store::StoreError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// A certificate, key or client CA file of `[tls]` could not be used.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] keyward_net::tls::TlsError),
    /// A listener other machines can reach would serve in plaintext.
    #[error(
        "{listener} would listen on {addr} without TLS, so the keys and tokens \
         sent to it would cross the network in the clear: give --tls-cert FILE --tls-key FILE \
         (or [tls] cert and key in the config file), or, when a proxy in front of it \
         terminates TLS, --danger-allow-plaintext (danger_allow_plaintext = true)"
    )]
    Plaintext {
        listener: &'static str,
        addr: SocketAddr,
    },
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("cannot open the seal: {0}")]
    Seal(String),
    /// A first-start operation failed (the root token, the default mount).
    #[error("cannot prepare the store: {0}")]
    Bootstrap(#[from] keyward_service::Error),
}

/// The OpenAPI document of everything the router serves, built from the same
/// handler list as the router so the two cannot drift apart.
pub fn openapi() -> OpenApiDoc {
    documented(api_router()).1
}

/// The router and its document, with the error answers every operation
/// shares added to each.
fn documented(router: OpenApiRouter<Arc<AppState>>) -> (Router<Arc<AppState>>, OpenApiDoc) {
    let (router, mut doc) = router.split_for_parts();
    apidoc::ErrorAnswers.modify(&mut doc);
    apidoc::Constraints.modify(&mut doc);
    apidoc::IntegerBounds.modify(&mut doc);
    (router, doc)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyward",
        description = "Keyward issues, verifies, rotates and revokes API keys. \
            Admin calls carry an admin token in `Authorization: Bearer`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    paths(
        apidoc::kv_read, apidoc::kv_write, apidoc::kv_patch, apidoc::kv_delete_latest,
        apidoc::kv_delete, apidoc::kv_undelete, apidoc::kv_destroy, apidoc::kv_read_metadata,
        apidoc::kv_list, apidoc::kv_write_metadata, apidoc::kv_delete_all,
        apidoc::kv_read_config, apidoc::kv_write_config,
        apidoc::transit_list, apidoc::transit_create, apidoc::transit_read,
        apidoc::transit_delete, apidoc::transit_rotate, apidoc::transit_config,
        apidoc::transit_encrypt, apidoc::transit_decrypt, apidoc::transit_rewrap,
        apidoc::transit_datakey, apidoc::transit_sign, apidoc::transit_verify,
        apidoc::transit_hmac, apidoc::transit_random,
    ),
    tags(
        (name = "apis", description = "The provider's APIs and their key prefixes"),
        (name = "keys", description = "API keys: issue, verify, rotate, revoke"),
        (name = "tokens", description = "Admin tokens"),
        (name = "audit", description = "The audit log"),
        (name = "health", description = "Health and readiness"),
        (name = "sys", description = "The seal: status, init, unseal, seal, keyring rotation"),
        (name = "secrets", description = "Secrets in Vault's KV v2 shape, under each mount"),
        (name = "transit", description = "Transit in Vault's shape: encryption as a service"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut OpenApiDoc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api_router() -> OpenApiRouter<Arc<AppState>> {
    use handlers::{apis, audit, health, keys, leaks, sys, tokens, users};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(apis::create_api, apis::list_apis))
        .routes(routes!(apis::get_api, apis::update_api))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::get_key, keys::update_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(keys::bulk_revoke))
        .routes(routes!(keys::verify_key))
        .routes(routes!(keys::key_usage))
        .routes(routes!(leaks::report))
        .routes(routes!(
            keys::get_owner_ratelimits,
            keys::set_owner_ratelimits
        ))
        .routes(routes!(keys::enrol_owner_totp, keys::remove_owner_totp))
        .routes(routes!(keys::confirm_owner_totp))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::audit_status))
        .routes(routes!(audit::export_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(sys::seal_status))
        .routes(routes!(sys::init, sys::init_status))
        .routes(routes!(sys::unseal))
        .routes(routes!(sys::seal))
        .routes(routes!(sys::rotate))
        .routes(routes!(sys::rewrap))
        .routes(routes!(sys::rekey))
        .routes(routes!(sys::list_mounts))
        .routes(routes!(sys::mount))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::get_user, users::update_user))
        .routes(routes!(users::user_sessions))
        .routes(routes!(users::login))
        .routes(routes!(users::logout))
        .routes(routes!(users::whoami))
        .routes(routes!(users::enroll_totp))
        .routes(routes!(users::confirm_totp))
        .routes(routes!(users::step_up))
        .routes(routes!(users::create_workspace, users::list_workspaces))
        .routes(routes!(users::list_roles))
        .routes(routes!(users::put_role, users::delete_role))
        .routes(routes!(users::access_review))
        .routes(routes!(sys::vault_health))
        .routes(routes!(tokens::lookup_self))
}

/// The address a request's connection came from (the API listener's peer;
/// proxies in front are not consulted).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

fn router(state: Arc<AppState>, limits: keyward_net::Limits) -> Router {
    let (router, doc) = documented(api_router());
    let doc = Arc::new(doc);
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.observer),
            observe_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(move |request, next| {
            front::paced(limits, request, next)
        }))
        .with_state(state)
}

/// Requests no declared route took: KV v2 operations on secrets mounts
/// (whose paths are chosen at run time), else `NOT_FOUND`.
async fn fallback(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
) -> Response {
    handlers::kv::dispatch(state, request).await
}

/// Reports method, path, status and latency of every request the router
/// serves to the observer. Never the body or the query string: a key may be
/// in either by mistake; the observer redacts the path before showing it.
async fn observe_request(
    axum::extract::State(observer): axum::extract::State<Arc<dyn Observe>>,
    request: Request,
    next: Next,
) -> Response {
    if !observer.wants(Listener::Api) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client_certificate = request
        .extensions()
        .get::<PeerCertificate>()
        .map(|peer| peer.sha256);
    let response = next.run(request).await;
    observer.observe(&Observation {
        listener: Listener::Api,
        method: method.as_str(),
        path: &path,
        status: response.status().as_u16(),
        latency: started.elapsed(),
        code: None,
        client_certificate,
    });
    response
}

/// Creates the root admin token on the first start of a store. Returns its
/// plaintext only to the start that created it.
async fn bootstrap(store: &dyn Store) -> Result<Option<PlaintextKey>, StartError> {
    let created = keyward_service::bootstrap::root_token(store).await?;
    Ok(created.map(|(plaintext, id)| {
        tracing::info!(token_id = %id, "created the root admin token");
        plaintext
    }))
}
