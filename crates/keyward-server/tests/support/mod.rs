//! Starts the real server on `127.0.0.1:0` with a fresh store per test: a new
//! SQLite file, or a new PostgreSQL schema on the server
//! `KEYWARD_TEST_POSTGRES_URL` names.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use keyward_core::limits::RateLimit;
use keyward_core::{AdminToken, Api, ApiId, AuditEvent, KeyDigest, KeyId, KeyRecord, TokenId};
use keyward_gateway::GatewayConfig;
use keyward_server::settings::{LeakSettings, VerifySettings};
use keyward_server::{Application, Settings};
use keyward_service::seal::SealSettings;
use keyward_store::{
    ApiStore, AuditStore, ChangeStore, KeyStore, LimitStore, SealStore, SecretStore, SystemStore,
    TokenStore, TransitStore, UsageStore,
};
use keyward_store::{AuditEntry, LastFullToken, RevokedToken};
use keyward_store::{
    AuditFilter, BulkRevokeFilter, KeyFilter, KeyPatch, Page, PgStore, Rotation, SqliteStore, Store,
};
use keyward_store::{ChangeEntry, CreditLease, KeyringEntry, SealRecord, UsageRow};
use keyward_store::{
    EnvelopeColumn, EnvelopeCursor, SecretMeta, SecretMetaPatch, SecretMount, SecretVersion,
    SecretWrite, StoredEnvelope, TransitKey, TransitKeyVersion, UseTarget, VersionAction,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    /// The gateway's base URL, when one runs.
    pub gateway: Option<String>,
    pub root: String,
    pub client: reqwest::Client,
    /// Counts storage lookups by digest, to prove some answers need none.
    pub store: Arc<CountingStore>,
    pub verifier: Arc<keyward_server::Verifier>,
    /// Every change the server committed since it started serving.
    pub events: tokio::sync::Mutex<keyward_service::events::Events>,
    /// The SQLite database file, for tests that inspect what is on disk.
    pub db_file: Option<PathBuf>,
    pub backend_dir: Option<tempfile::TempDir>,
    /// Stops the server and waits until it has shut down.
    stop: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
}

/// Starts a server on `backend`. PostgreSQL needs `KEYWARD_TEST_POSTGRES_URL`;
/// its tests are ignored by default and fail when asked for without it.
pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, VerifySettings::default()).await
}

/// A fresh store on `backend`.
pub async fn fresh_store(
    backend: Backend,
    dir: &std::path::Path,
) -> (Arc<dyn Store>, Option<PathBuf>) {
    match backend {
        Backend::Sqlite => {
            let path = dir.join("keyward.db");
            (
                Arc::new(SqliteStore::open(&path).await.unwrap()),
                Some(path),
            )
        }
        Backend::Postgres => {
            let url = std::env::var("KEYWARD_TEST_POSTGRES_URL").expect(
                "KEYWARD_TEST_POSTGRES_URL must name the PostgreSQL server to test against",
            );
            let id = KeyId::generate(OffsetDateTime::now_utc()).unwrap();
            let schema = format!("kw_api_{}", id.as_str()[4..].to_ascii_lowercase());
            let store = PgStore::connect(&url, Some(&schema))
                .await
                .expect("PostgreSQL named by KEYWARD_TEST_POSTGRES_URL is reachable");
            (Arc::new(store), None)
        }
    }
}

/// Like [`spawn`] with the given hot-path tuning.
pub async fn spawn_with(backend: Backend, verify: VerifySettings) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (inner, db_file) = fresh_store(backend, dir.path()).await;
    spawn_on(inner, db_file, dir, verify, None).await
}

/// A server with a gateway inside it, in front of `gateway.upstream`.
pub async fn spawn_with_gateway(backend: Backend, gateway: GatewayConfig) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (inner, db_file) = fresh_store(backend, dir.path()).await;
    start(
        inner,
        db_file,
        dir,
        VerifySettings::default(),
        None,
        Some(gateway),
    )
    .await
}

/// Starts a server on an existing store, as a restart or a second node
/// would. `root` is the root token when the store was bootstrapped before.
pub async fn spawn_on(
    inner: Arc<dyn Store>,
    db_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    verify: VerifySettings,
    root: Option<String>,
) -> TestApp {
    start(inner, db_file, dir, verify, root, None).await
}

/// Starts a server on an existing store with the given seal.
pub async fn spawn_sealed(
    inner: Arc<dyn Store>,
    db_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    seal: SealSettings,
    root: Option<String>,
) -> TestApp {
    start_with(
        inner,
        db_file,
        dir,
        VerifySettings::default(),
        root,
        None,
        seal,
        LeakSettings::default(),
    )
    .await
}

/// A server that accepts leak reports signed by these partner keys.
pub async fn spawn_with_leaks(backend: Backend, leaks: LeakSettings) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (inner, db_file) = fresh_store(backend, dir.path()).await;
    start_with(
        inner,
        db_file,
        dir,
        VerifySettings::default(),
        None,
        None,
        SealSettings::default(),
        leaks,
    )
    .await
}

async fn start(
    inner: Arc<dyn Store>,
    db_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    verify: VerifySettings,
    root: Option<String>,
    gateway: Option<GatewayConfig>,
) -> TestApp {
    start_with(
        inner,
        db_file,
        dir,
        verify,
        root,
        gateway,
        SealSettings::default(),
        LeakSettings::default(),
    )
    .await
}

/// Whether servers answer plain verify and `/health` requests on their own
/// HTTP/1.1 reader: yes, unless `KEYWARD_TEST_FAST_PATH=0`, which sends
/// every request through hyper, the reference the reader is checked
/// against (CI runs the suites both ways).
pub fn fast_path() -> bool {
    std::env::var("KEYWARD_TEST_FAST_PATH").map_or(true, |v| v != "0")
}

#[allow(clippy::too_many_arguments)] // Each test names only what it changes, through the helpers above.
async fn start_with(
    inner: Arc<dyn Store>,
    db_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    verify: VerifySettings,
    root: Option<String>,
    gateway: Option<GatewayConfig>,
    seal: SealSettings,
    leaks: LeakSettings,
) -> TestApp {
    let settings = Settings {
        verify,
        gateway,
        seal,
        leaks,
        ..Default::default()
    };
    start_settings(inner, db_file, dir, root, settings).await
}

/// A server whose sessions and step-up are set by `auth`.
pub async fn spawn_with_auth(
    backend: Backend,
    auth: keyward_server::settings::AuthFileSettings,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (inner, db_file) = fresh_store(backend, dir.path()).await;
    let settings = Settings {
        auth,
        ..Default::default()
    };
    start_settings(inner, db_file, dir, None, settings).await
}

/// Starts a server with `settings` on a loopback port, its data in `dir`.
pub async fn start_settings(
    inner: Arc<dyn Store>,
    db_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    root: Option<String>,
    settings: Settings,
) -> TestApp {
    let store = Arc::new(CountingStore {
        inner,
        digest_lookups: AtomicUsize::new(0),
        usage_writes: AtomicUsize::new(0),
        key_gate: Gate::default(),
        token_gate: Gate::default(),
    });
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        database_url: None,
        fast_path: fast_path(),
        ..settings
    };
    let mut app = Application::with_store(settings, store.clone())
        .await
        .unwrap();
    let root = match root {
        Some(root) => root,
        None => {
            let token = app.take_root_token();
            let token = token.expect("first start creates the root token");
            token.expose().to_owned()
        }
    };
    let addr = app.local_addr().unwrap();
    let gateway = app.gateway_addr().map(|a| format!("http://{}", a.unwrap()));
    let verifier = app.verifier();
    let events = tokio::sync::Mutex::new(app.events());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        gateway,
        root,
        // A request the server never answers fails its test instead of
        // hanging it.
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap(),
        store,
        verifier,
        events,
        db_file,
        stop: Some((stop, server)),
        backend_dir: Some(dir),
    }
}

impl TestApp {
    /// Shuts the server down as a signal would: drains requests, flushes
    /// usage and gives back leased credits.
    pub async fn stop(&mut self) {
        if let Some((stop, server)) = self.stop.take() {
            let _ = stop.send(());
            server.await.unwrap().unwrap();
        }
    }

    /// The store underneath, to start a second server on the same data.
    pub fn inner_store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store.inner)
    }

    /// Sends a request with `token` (none when `None`) and returns the status
    /// and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// A call as root that must succeed.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self
            .call(method, path, Some(&self.root.clone()), body)
            .await;
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    pub async fn create_api(&self, prefix: &str, environments: &[&str]) -> String {
        let api = self
            .ok(
                Method::POST,
                "/v1/apis",
                Some(json!({"name": format!("{prefix} API"), "prefix": prefix, "environments": environments})),
            )
            .await;
        api["id"].as_str().unwrap().to_owned()
    }

    /// Issues a key and returns (record with plaintext `key`).
    pub async fn create_key(&self, body: Value) -> Value {
        self.ok(Method::POST, "/v1/keys", Some(body)).await
    }

    /// Verifies as root; returns the verify response.
    pub async fn verify(&self, body: Value) -> Value {
        self.ok(Method::POST, "/v1/keys/verify", Some(body)).await
    }

    pub async fn verify_code(&self, body: Value) -> String {
        self.verify(body).await["code"].as_str().unwrap().to_owned()
    }

    /// Creates an admin token as root and returns its plaintext.
    pub async fn token(&self, body: Value) -> String {
        let t = self.ok(Method::POST, "/v1/tokens", Some(body)).await;
        t["token"].as_str().unwrap().to_owned()
    }
}

/// A real store with a counter on digest lookups. Everything is delegated.
pub struct CountingStore {
    pub inner: Arc<dyn Store>,
    pub digest_lookups: AtomicUsize,
    /// Counts calls that write usage or credits, to prove verify does not
    /// write per request.
    pub usage_writes: AtomicUsize,
    /// Holds a key lookup by digest between its read and its answer.
    pub key_gate: Gate,
    /// Holds an admin token lookup by digest the same way.
    pub token_gate: Gate,
}

/// Holds the next lookup that passes it after the lookup has read the
/// store, until released: a reader that read before a change and answers
/// after it, as a slow query does.
#[derive(Default)]
pub struct Gate {
    armed: std::sync::Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Gate {
    /// Arms the gate. The first receiver resolves when a lookup has read
    /// and is held; the sender lets it go on.
    pub fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (held, on_hold) = oneshot::channel();
        let (release, released) = oneshot::channel();
        *self.armed.lock().unwrap() = Some((held, released));
        (on_hold, release)
    }

    async fn pass(&self) {
        let armed = self.armed.lock().unwrap().take();
        if let Some((held, released)) = armed {
            let _ = held.send(());
            let _ = released.await;
        }
    }
}

impl CountingStore {
    pub fn lookups(&self) -> usize {
        self.digest_lookups.load(Ordering::SeqCst)
    }

    pub fn writes(&self) -> usize {
        self.usage_writes.load(Ordering::SeqCst)
    }
}

type R<T> = keyward_store::Result<T>;

#[async_trait]
impl SystemStore for CountingStore {
    async fn ping(&self) -> R<()> {
        self.inner.ping().await
    }
    async fn bootstrap(&self, root: &AdminToken, event: &AuditEvent) -> R<bool> {
        self.inner.bootstrap(root, event).await
    }
}

#[async_trait]
impl ApiStore for CountingStore {
    async fn create_api(&self, api: &Api, event: &AuditEvent) -> R<()> {
        self.inner.create_api(api, event).await
    }
    async fn get_api(&self, id: &ApiId) -> R<Option<Api>> {
        self.inner.get_api(id).await
    }
    async fn list_apis(&self) -> R<Vec<Api>> {
        self.inner.list_apis().await
    }
    async fn update_api(
        &self,
        id: &ApiId,
        patch: &keyward_store::ApiPatch,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<Api> {
        self.inner.update_api(id, patch, now, event).await
    }
}

#[async_trait]
impl KeyStore for CountingStore {
    async fn create_key(&self, key: &KeyRecord, event: &AuditEvent) -> R<()> {
        self.inner.create_key(key, event).await
    }
    async fn create_keys(&self, keys: &[KeyRecord], events: &[AuditEvent]) -> R<()> {
        self.inner.create_keys(keys, events).await
    }
    async fn get_key(&self, id: &KeyId) -> R<Option<KeyRecord>> {
        self.inner.get_key(id).await
    }
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> R<Option<KeyRecord>> {
        self.digest_lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.inner.find_key_by_digest(digest).await;
        self.key_gate.pass().await;
        found
    }
    async fn list_keys(&self, f: &KeyFilter, p: &Page, now: OffsetDateTime) -> R<Vec<KeyRecord>> {
        self.inner.list_keys(f, p, now).await
    }
    async fn update_key(
        &self,
        id: &KeyId,
        patch: &KeyPatch,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<KeyRecord> {
        self.inner.update_key(id, patch, now, event).await
    }
    async fn revoke_key(
        &self,
        id: &KeyId,
        reason: &str,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<(KeyRecord, bool)> {
        self.inner.revoke_key(id, reason, now, event).await
    }
    async fn rotate_key(&self, rotation: &Rotation, events: &[AuditEvent]) -> R<()> {
        self.inner.rotate_key(rotation, events).await
    }
    async fn bulk_revoke(
        &self,
        filter: &BulkRevokeFilter,
        reason: &str,
        now: OffsetDateTime,
        template: &AuditEvent,
    ) -> R<Vec<KeyDigest>> {
        self.inner.bulk_revoke(filter, reason, now, template).await
    }
}

#[async_trait]
impl LimitStore for CountingStore {
    async fn lease_credits(
        &self,
        id: &KeyId,
        want: u64,
        now: OffsetDateTime,
    ) -> R<Option<CreditLease>> {
        self.usage_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.lease_credits(id, want, now).await
    }
    async fn return_credits(&self, id: &KeyId, amount: u64, period: OffsetDateTime) -> R<()> {
        self.inner.return_credits(id, amount, period).await
    }
    async fn owner_ratelimits(&self, owner: &str) -> R<Vec<RateLimit>> {
        self.inner.owner_ratelimits(owner).await
    }
    async fn all_owner_ratelimits(&self) -> R<Vec<(String, Vec<RateLimit>)>> {
        self.inner.all_owner_ratelimits().await
    }
    async fn set_owner_ratelimits(
        &self,
        owner: &str,
        limits: &[RateLimit],
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .set_owner_ratelimits(owner, limits, now, event)
            .await
    }
}

#[async_trait]
impl UsageStore for CountingStore {
    async fn record_usage(
        &self,
        rows: &[UsageRow],
        last_used: &[(KeyId, OffsetDateTime)],
    ) -> R<()> {
        self.usage_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.record_usage(rows, last_used).await
    }
    async fn key_usage(&self, id: &KeyId, minutes: RangeInclusive<i64>) -> R<Vec<UsageRow>> {
        self.inner.key_usage(id, minutes).await
    }
    async fn prune_usage(&self, before: i64) -> R<u64> {
        self.inner.prune_usage(before).await
    }
}

#[async_trait]
impl TokenStore for CountingStore {
    async fn touch_token(&self, id: &TokenId, at: OffsetDateTime) -> R<()> {
        self.inner.touch_token(id, at).await
    }
    async fn create_token(&self, token: &AdminToken, event: &AuditEvent) -> R<()> {
        self.inner.create_token(token, event).await
    }
    async fn get_token(&self, id: &TokenId) -> R<Option<AdminToken>> {
        self.inner.get_token(id).await
    }
    async fn find_token_by_digest(&self, digest: &KeyDigest) -> R<Option<AdminToken>> {
        let found = self.inner.find_token_by_digest(digest).await;
        self.token_gate.pass().await;
        found
    }
    async fn list_tokens(&self, page: &Page) -> R<Vec<AdminToken>> {
        self.inner.list_tokens(page).await
    }
    async fn revoke_token(&self, id: &TokenId, now: OffsetDateTime, event: &AuditEvent) -> R<bool> {
        self.inner.revoke_token(id, now, event).await
    }
    async fn revoke_token_tree(
        &self,
        id: &TokenId,
        now: OffsetDateTime,
        event: &AuditEvent,
        last: LastFullToken,
    ) -> R<Vec<RevokedToken>> {
        self.inner.revoke_token_tree(id, now, event, last).await
    }
    async fn has_full_token(&self, now: OffsetDateTime) -> R<bool> {
        self.inner.has_full_token(now).await
    }
    async fn adopt_tokens(&self, from: &TokenId, to: &TokenId, event: &AuditEvent) -> R<u64> {
        self.inner.adopt_tokens(from, to, event).await
    }
}

#[async_trait]
impl AuditStore for CountingStore {
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> R<Vec<AuditEntry>> {
        self.inner.list_audit(filter, page).await
    }
    async fn append_audit(&self, events: &[AuditEvent]) -> R<()> {
        self.inner.append_audit(events).await
    }
    async fn chain_head(&self) -> R<Option<keyward_core::chain::ChainHead>> {
        self.inner.chain_head().await
    }
    async fn chain_rows(&self, after: u64, limit: u32) -> R<Vec<keyward_core::chain::ChainRow>> {
        self.inner.chain_rows(after, limit).await
    }
    async fn first_unchained(&self) -> R<Option<u64>> {
        self.inner.first_unchained().await
    }
    async fn audit_key(&self) -> R<Option<keyward_store::AuditKey>> {
        self.inner.audit_key().await
    }
    async fn put_audit_key(&self, key: &keyward_store::AuditKey) -> R<keyward_store::AuditKey> {
        self.inner.put_audit_key(key).await
    }
    async fn put_checkpoint(&self, checkpoint: &keyward_core::chain::Checkpoint) -> R<()> {
        self.inner.put_checkpoint(checkpoint).await
    }
    async fn checkpoints(&self, after: u64, limit: u32) -> R<Vec<keyward_core::chain::Checkpoint>> {
        self.inner.checkpoints(after, limit).await
    }
    async fn last_checkpoint(&self) -> R<Option<keyward_core::chain::Checkpoint>> {
        self.inner.last_checkpoint().await
    }
    fn committed(&self) -> keyward_store::Committed {
        self.inner.committed()
    }
}

#[async_trait]
impl SealStore for CountingStore {
    async fn seal(&self) -> R<Option<SealRecord>> {
        self.inner.seal().await
    }
    async fn keyring(&self) -> R<Vec<KeyringEntry>> {
        self.inner.keyring().await
    }
    async fn init_seal(
        &self,
        seal: &SealRecord,
        first: &KeyringEntry,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner.init_seal(seal, first, event).await
    }
    async fn add_keyring_key(&self, entry: &KeyringEntry, event: &AuditEvent) -> R<()> {
        self.inner.add_keyring_key(entry, event).await
    }
    async fn rekey_seal(
        &self,
        seal: &SealRecord,
        keyring: &[KeyringEntry],
        event: &AuditEvent,
    ) -> R<()> {
        self.inner.rekey_seal(seal, keyring, event).await
    }
    async fn secret_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> R<Vec<StoredEnvelope>> {
        self.inner.secret_envelopes(after, limit).await
    }
    async fn transit_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> R<Vec<StoredEnvelope>> {
        self.inner.transit_envelopes(after, limit).await
    }
    async fn metadata_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> R<Vec<StoredEnvelope>> {
        self.inner.metadata_envelopes(after, limit).await
    }
    async fn row_envelopes(
        &self,
        column: EnvelopeColumn,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> R<Vec<StoredEnvelope>> {
        self.inner.row_envelopes(column, after, limit).await
    }
    async fn replace_envelope(&self, at: &EnvelopeCursor, old: &[u8], new: &[u8]) -> R<bool> {
        self.inner.replace_envelope(at, old, new).await
    }
    async fn reserve_uses(&self, target: &UseTarget, n: u64) -> R<u64> {
        self.inner.reserve_uses(target, n).await
    }
}

#[async_trait]
impl SecretStore for CountingStore {
    async fn create_mount(&self, mount: &SecretMount, event: &AuditEvent) -> R<()> {
        self.inner.create_mount(mount, event).await
    }
    async fn get_mount(&self, path: &str) -> R<Option<SecretMount>> {
        self.inner.get_mount(path).await
    }
    async fn list_mounts(&self) -> R<Vec<SecretMount>> {
        self.inner.list_mounts().await
    }
    async fn configure_mount(
        &self,
        path: &str,
        max_versions: u32,
        cas_required: bool,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .configure_mount(path, max_versions, cas_required, event)
            .await
    }
    async fn secret_meta(&self, mount: &str, path: &str) -> R<Option<SecretMeta>> {
        self.inner.secret_meta(mount, path).await
    }
    async fn secret_versions(&self, mount: &str, path: &str) -> R<Vec<SecretVersion>> {
        self.inner.secret_versions(mount, path).await
    }
    async fn write_secret(&self, write: &SecretWrite, event: &AuditEvent) -> R<()> {
        self.inner.write_secret(write, event).await
    }
    async fn act_on_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
        action: VersionAction,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .act_on_versions(mount, path, versions, action, event)
            .await
    }
    async fn patch_secret_meta(
        &self,
        mount: &str,
        path: &str,
        patch: &SecretMetaPatch,
        at: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .patch_secret_meta(mount, path, patch, at, event)
            .await
    }
    async fn delete_secret(&self, mount: &str, path: &str, event: &AuditEvent) -> R<bool> {
        self.inner.delete_secret(mount, path, event).await
    }
    async fn secret_paths(&self, mount: &str, prefix: &str) -> R<Vec<String>> {
        self.inner.secret_paths(mount, prefix).await
    }
}

#[async_trait]
impl TransitStore for CountingStore {
    async fn create_transit_key(
        &self,
        key: &TransitKey,
        first: &TransitKeyVersion,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner.create_transit_key(key, first, event).await
    }
    async fn get_transit_key(&self, name: &str) -> R<Option<(TransitKey, Vec<TransitKeyVersion>)>> {
        self.inner.get_transit_key(name).await
    }
    async fn list_transit_keys(&self) -> R<Vec<TransitKey>> {
        self.inner.list_transit_keys().await
    }
    async fn add_transit_key_version(
        &self,
        name: &str,
        version: &TransitKeyVersion,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .add_transit_key_version(name, version, event)
            .await
    }
    async fn configure_transit_key(
        &self,
        name: &str,
        min_decryption_version: u32,
        min_encryption_version: u32,
        deletion_allowed: bool,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .configure_transit_key(
                name,
                min_decryption_version,
                min_encryption_version,
                deletion_allowed,
                event,
            )
            .await
    }
    async fn delete_transit_key(&self, name: &str, event: &AuditEvent) -> R<()> {
        self.inner.delete_transit_key(name, event).await
    }
}

#[async_trait]
impl keyward_store::AccessStore for CountingStore {
    async fn create_workspace(&self, w: &keyward_core::Workspace, e: &AuditEvent) -> R<()> {
        self.inner.create_workspace(w, e).await
    }
    async fn get_workspace(&self, name: &str) -> R<Option<keyward_core::Workspace>> {
        self.inner.get_workspace(name).await
    }
    async fn list_workspaces(&self) -> R<Vec<keyward_core::Workspace>> {
        self.inner.list_workspaces().await
    }
    async fn put_role(&self, r: &keyward_core::CustomRole, e: &AuditEvent) -> R<Vec<KeyDigest>> {
        self.inner.put_role(r, e).await
    }
    async fn delete_role(&self, name: &str, e: &AuditEvent) -> R<()> {
        self.inner.delete_role(name, e).await
    }
    async fn list_roles(&self) -> R<Vec<keyward_core::CustomRole>> {
        self.inner.list_roles().await
    }
    async fn create_user(&self, u: &keyward_store::StoredUser, e: &AuditEvent) -> R<()> {
        self.inner.create_user(u, e).await
    }
    async fn get_user(&self, id: &keyward_core::UserId) -> R<Option<keyward_store::StoredUser>> {
        self.inner.get_user(id).await
    }
    async fn find_user_by_email(&self, email: &str) -> R<Option<keyward_store::StoredUser>> {
        self.inner.find_user_by_email(email).await
    }
    async fn list_users(&self, page: &Page) -> R<Vec<keyward_core::User>> {
        self.inner.list_users(page).await
    }
    async fn update_user(
        &self,
        id: &keyward_core::UserId,
        patch: &keyward_store::UserPatch,
        now: OffsetDateTime,
        e: &AuditEvent,
    ) -> R<Vec<KeyDigest>> {
        self.inner.update_user(id, patch, now, e).await
    }
    async fn set_totp_pending(
        &self,
        id: &keyward_core::UserId,
        env: &[u8],
        e: &AuditEvent,
    ) -> R<()> {
        self.inner.set_totp_pending(id, env, e).await
    }
    async fn confirm_totp(
        &self,
        id: &keyward_core::UserId,
        step: i64,
        codes: &[String],
        e: &AuditEvent,
    ) -> R<()> {
        self.inner.confirm_totp(id, step, codes, e).await
    }
    async fn sign_in(
        &self,
        session: &AdminToken,
        factor: Option<&keyward_store::Factor>,
        e: &AuditEvent,
    ) -> R<bool> {
        self.inner.sign_in(session, factor, e).await
    }
    async fn step_up(
        &self,
        session: &TokenId,
        user: &keyward_core::UserId,
        factor: &keyward_store::Factor,
        at: OffsetDateTime,
        e: &AuditEvent,
    ) -> R<Option<KeyDigest>> {
        self.inner.step_up(session, user, factor, at, e).await
    }
    async fn user_sessions(&self, user: &keyward_core::UserId) -> R<Vec<AdminToken>> {
        self.inner.user_sessions(user).await
    }
}

#[async_trait]
impl ChangeStore for CountingStore {
    async fn latest_change(&self) -> R<i64> {
        self.inner.latest_change().await
    }
    async fn changes_after(&self, after: i64, limit: u32) -> R<Vec<ChangeEntry>> {
        self.inner.changes_after(after, limit).await
    }
    async fn wait_for_change(&self, timeout: std::time::Duration) {
        self.inner.wait_for_change(timeout).await
    }
    async fn prune_changes(&self, before: OffsetDateTime) -> R<u64> {
        self.inner.prune_changes(before).await
    }
}

/// Declares each listed test, which takes the backend and starts its own
/// servers, once per backend.
#[macro_export]
macro_rules! on_both_backends_raw {
    ($($name:ident),* $(,)?) => {
        mod sqlite_raw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres_raw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Declares each listed test once per backend: `sqlite::NAME` always runs;
/// `postgres::NAME` is ignored unless asked for with `--ignored`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::support::spawn($crate::support::Backend::Sqlite).await;
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
                async fn $name() {
                    let app = $crate::support::spawn($crate::support::Backend::Postgres).await;
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// The password test users are given.
pub const PASSWORD: &str = "plum-violet-harbor-42";

/// An authenticator app: the secret from an enrolment, and the last step
/// whose code it gave, so each code it gives is one the server has not
/// seen.
pub struct Authenticator {
    secret: keyward_crypto::totp::Secret,
    last: Option<u64>,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Authenticator {
    pub fn from_enrolment(enrolment: &Value) -> Self {
        let secret = enrolment["secret"].as_str().unwrap();
        let uri = enrolment["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/Keyward:"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
        assert!(uri.contains("algorithm=SHA1&digits=6&period=30"), "{uri}");
        let bytes = data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap();
        assert_eq!(bytes.len(), 20);
        Authenticator {
            secret: keyward_crypto::totp::Secret::from_bytes(bytes),
            last: None,
        }
    }

    pub fn code_at(&self, step: u64) -> String {
        format!(
            "{:0width$}",
            self.secret.code(step, keyward_crypto::totp::DIGITS),
            width = keyward_crypto::totp::DIGITS as usize
        )
    }

    /// A fresh code: of the earliest step the server still accepts (one
    /// of drift either side) after the last one given, waiting for the
    /// clock when all three are used.
    pub async fn code(&mut self) -> String {
        loop {
            let now = unix_now() / keyward_crypto::totp::STEP_SECONDS;
            let earliest = self.last.map_or(now - 1, |l| (l + 1).max(now - 1));
            if earliest <= now + 1 {
                self.last = Some(earliest);
                return self.code_at(earliest);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

pub async fn login(app: &TestApp, email: &str, otp: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(otp) = otp {
        body["otp"] = json!(otp);
    }
    app.call(Method::POST, "/v1/auth/login", None, Some(body))
        .await
}

pub async fn session(app: &TestApp, email: &str, otp: Option<&str>) -> String {
    let (status, answer) = login(app, email, otp).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let token = answer["token"].as_str().unwrap();
    assert!(token.starts_with("kws_"), "{token}");
    token.to_owned()
}

/// Enrols TOTP for the session's user; returns its authenticator and
/// recovery codes.
pub async fn enrol(app: &TestApp, session: &str) -> (Authenticator, Vec<String>) {
    let (status, enrolment) = app
        .call(Method::POST, "/v1/auth/totp", Some(session), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{enrolment}");
    let mut app_code = Authenticator::from_enrolment(&enrolment);
    let code = app_code.code().await;
    let (status, confirmed) = app
        .call(
            Method::POST,
            "/v1/auth/totp/confirm",
            Some(session),
            Some(json!({"otp": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let codes: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (app_code, codes)
}

#[async_trait]
impl keyward_store::SigningStore for CountingStore {
    async fn remember_nonce(
        &self,
        key_id: &str,
        nonce: &[u8; 32],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> R<bool> {
        self.inner
            .remember_nonce(key_id, nonce, expires_at, now)
            .await
    }
    async fn prune_nonces(&self, now: OffsetDateTime) -> R<u64> {
        self.inner.prune_nonces(now).await
    }
    async fn get_owner_factor(&self, owner: &str) -> R<Option<keyward_store::OwnerFactor>> {
        self.inner.get_owner_factor(owner).await
    }
    async fn set_owner_totp_pending(
        &self,
        owner: &str,
        sealed: &[u8],
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner
            .set_owner_totp_pending(owner, sealed, now, event)
            .await
    }
    async fn confirm_owner_totp(
        &self,
        owner: &str,
        step: i64,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> R<()> {
        self.inner.confirm_owner_totp(owner, step, now, event).await
    }
    async fn remove_owner_totp(&self, owner: &str, event: &AuditEvent) -> R<()> {
        self.inner.remove_owner_totp(owner, event).await
    }
    async fn spend_owner_step(&self, owner: &str, step: i64) -> R<bool> {
        self.inner.spend_owner_step(owner, step).await
    }
}
