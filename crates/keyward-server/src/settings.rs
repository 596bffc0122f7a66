//! What the server needs to start. The binary fills this from its TOML file,
//! `KEYWARD_*` variables and flags; tests fill it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use keyward_store::Store;
use serde::Deserialize;

use crate::{StartError, VerifierConfig};
use std::time::Duration;

/// Server settings. Every field has a default, so an empty file (or none)
/// gives a working single-machine server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Directory for the embedded database and the `file` seal's key.
    pub data_dir: PathBuf,
    /// `postgres://…` for the multi-node store, or `sqlite://PATH`; when
    /// unset, `keyward.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Tuning of the verify hot path (`[verify]` in the file).
    pub verify: VerifySettings,
    /// A gateway to run inside the server (`[gateway]` with `listen`,
    /// `upstream` and `[[gateway.route]]`s).
    pub gateway: Option<keyward_gateway::GatewayConfig>,
    /// Where the master key lives (`[seal]`, `type` = `file`, `shamir` or
    /// `pkcs11`).
    pub seal: keyward_service::seal::SealSettings,
    /// Who may report leaked keys besides admin tokens (`[leaks]`).
    pub leaks: LeakSettings,
    /// Sessions and step-up (`[auth]`).
    pub auth: AuthFileSettings,
    /// The audit log's hash chain (`[audit]`).
    pub audit: AuditFileSettings,
    /// Deadlines and caps of client connections, on the API listener and
    /// the gateway alike (`[limits]`).
    pub limits: LimitSettings,
    /// Whether the API listener answers plain verify and `/health` requests
    /// with its own HTTP/1.1 reader, and the gateway relays with its own
    /// (`true`, the default). `false` sends every request through hyper:
    /// the router's on the API listener, hyper's server and client in the
    /// gateway. Slower, and the reference the fast path is tested against.
    pub fast_path: bool,
    /// TLS on the API listener and the gateway's (`[tls]`: `cert`, `key`,
    /// and `client_ca` for mutual TLS). Without it both listen in
    /// plaintext, which is refused on any address but loopback unless
    /// `danger_allow_plaintext`.
    pub tls: Option<keyward_net::tls::TlsFiles>,
    /// Listen in plaintext on an address other machines reach: for a
    /// listener behind a proxy that terminates TLS itself.
    pub danger_allow_plaintext: bool,
    /// Redis shared by the nodes (`[redis] url`): signed requests are
    /// remembered there, so a replay at any node is refused.
    pub redis: Option<RedisSettings>,
}

/// The `[redis]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`, or `rediss://` for TLS.
    pub url: String,
}

/// The `[limits]` section: how long and how slow a client connection may be,
/// and how many one address may hold open. Durations are in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// How long a connection may wait, with nothing received, for its next
    /// request.
    pub idle_timeout_ms: u64,
    /// How long a request head may take from its first byte.
    pub head_timeout_ms: u64,
    /// How long a request body may take before `body_min_rate` applies.
    pub body_timeout_ms: u64,
    /// Bytes a second a request body must keep up, on average, once
    /// `body_timeout_ms` is over.
    pub body_min_rate: u64,
    /// Most connections open at once from one client address (IPv6: one
    /// /64), per listener; 0 for no cap. Behind a load balancer every
    /// connection comes from it: raise this to match.
    pub max_connections_per_ip: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let d = keyward_net::Limits::default();
        LimitSettings {
            idle_timeout_ms: d.idle.as_millis() as u64,
            head_timeout_ms: d.head.as_millis() as u64,
            body_timeout_ms: d.body_grace.as_millis() as u64,
            body_min_rate: d.body_min_rate,
            max_connections_per_ip: d.max_connections_per_ip,
        }
    }
}

impl LimitSettings {
    pub fn limits(&self) -> keyward_net::Limits {
        keyward_net::Limits {
            idle: Duration::from_millis(self.idle_timeout_ms.max(1)),
            head: Duration::from_millis(self.head_timeout_ms.max(1)),
            body_grace: Duration::from_millis(self.body_timeout_ms.max(1)),
            body_min_rate: self.body_min_rate.max(1),
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

/// The `[leaks]` section: public keys of secret-scanning partners, e.g.
/// GitHub's (from `https://api.github.com/meta/public_keys/secret_scanning`):
///
/// ```toml
/// [[leaks.partner_keys]]
/// id = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
/// pem = "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakSettings {
    pub partner_keys: Vec<PartnerKeySettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerKeySettings {
    /// The identifier the partner sends with each report.
    pub id: String,
    /// The ECDSA P-256 public key, PEM (SubjectPublicKeyInfo).
    pub pem: String,
}

impl LeakSettings {
    /// The configured keys, parsed; a key that does not parse stops the start.
    pub fn partner_keys(
        &self,
    ) -> Result<Vec<(String, keyward_crypto::partner::PartnerKey)>, String> {
        self.partner_keys
            .iter()
            .map(|k| {
                keyward_crypto::partner::PartnerKey::from_pem(&k.pem)
                    .map(|key| (k.id.clone(), key))
                    .map_err(|e| format!("[leaks] partner key {}: {e}", k.id))
            })
            .collect()
    }
}

/// The `[auth]` section: how long a session lasts and how long a second
/// factor counts for critical operations. Durations are a number and a unit:
/// `s`, `m`, `h` or `d` (`5m`, `12h`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthFileSettings {
    pub step_up_window: String,
    pub session_ttl: String,
}

impl Default for AuthFileSettings {
    fn default() -> Self {
        AuthFileSettings {
            step_up_window: "5m".to_owned(),
            session_ttl: "12h".to_owned(),
        }
    }
}

impl AuthFileSettings {
    pub fn settings(&self) -> Result<keyward_service::users::AuthSettings, String> {
        let step_up_window = parse_duration(&self.step_up_window)
            .ok_or("[auth] step_up_window must be a duration such as 5m")?;
        let session_ttl = parse_duration(&self.session_ttl)
            .ok_or("[auth] session_ttl must be a duration such as 12h")?;
        if step_up_window > Duration::from_secs(3600)
            || session_ttl > Duration::from_secs(30 * 86_400)
        {
            return Err("[auth] step_up_window is at most 1h and session_ttl at most 30d".into());
        }
        Ok(keyward_service::users::AuthSettings {
            step_up_window: time::Duration::try_from(step_up_window).map_err(|e| e.to_string())?,
            session_ttl: time::Duration::try_from(session_ttl).map_err(|e| e.to_string())?,
            ..keyward_service::users::AuthSettings::default()
        })
    }
}

/// The `[audit]` section: how often the server checks the audit log's hash
/// chain from end to end (`verify_interval`), how often it signs a
/// checkpoint of it (`checkpoint_interval`, and after `checkpoint_events`
/// events), and the file each checkpoint is also appended to
/// (`witness_file`). Durations are a number and a unit (`1m`, `1h`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditFileSettings {
    pub verify_interval: String,
    pub checkpoint_interval: String,
    pub checkpoint_events: u64,
    pub witness_file: Option<PathBuf>,
}

impl Default for AuditFileSettings {
    fn default() -> Self {
        AuditFileSettings {
            verify_interval: "1h".to_owned(),
            checkpoint_interval: "1m".to_owned(),
            checkpoint_events: 1000,
            witness_file: None,
        }
    }
}

impl AuditFileSettings {
    /// How checkpoints are made.
    pub fn checkpoints(&self) -> Result<keyward_service::audit_log::CheckpointSettings, String> {
        let interval = parse_duration(&self.checkpoint_interval)
            .ok_or("[audit] checkpoint_interval must be a duration such as 1m")?;
        if self.checkpoint_events == 0 {
            return Err("[audit] checkpoint_events must be at least 1".into());
        }
        Ok(keyward_service::audit_log::CheckpointSettings {
            interval,
            events: self.checkpoint_events,
            witness_file: self.witness_file.clone(),
        })
    }

    /// How long between two checks of the whole chain.
    pub fn verify_interval(&self) -> Result<Duration, String> {
        parse_duration(&self.verify_interval)
            .ok_or_else(|| "[audit] verify_interval must be a duration such as 1h".to_owned())
    }
}

/// A duration written as a number and a unit: `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(seconds)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// The `[verify]` section: cache, negative cache, usage flushing and credit
/// leasing. Durations are in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySettings {
    /// How long a cached key is trusted; the change feed brings changes
    /// sooner, this bounds staleness should it miss one.
    pub cache_ttl_ms: u64,
    /// Most keys held in memory.
    pub cache_capacity: usize,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl_ms: u64,
    /// Most unknown keys remembered.
    pub negative_capacity: usize,
    /// How often usage counts and last-used times of minutes that are over
    /// are written.
    pub usage_flush_interval_ms: u64,
    /// How long per-minute usage is kept in the store (at least a minute).
    pub usage_retention_ms: u64,
    /// Credits a node leases from the store at a time.
    pub credit_block: u64,
    /// How often the change feed is read for changes made on other nodes.
    pub change_poll_interval_ms: u64,
    /// Where signed requests seen inside their window are remembered, so a
    /// replay is refused: `memory` (this process alone) or `database`
    /// (every node sharing the store, one INSERT per signed request). The
    /// default is `database` on PostgreSQL and `memory` on SQLite.
    pub replay: Option<ReplayScope>,
}

/// Where signed requests are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayScope {
    Memory,
    Database,
}

impl Default for VerifySettings {
    fn default() -> Self {
        let d = VerifierConfig::default();
        VerifySettings {
            cache_ttl_ms: d.cache_ttl.as_millis() as u64,
            cache_capacity: d.cache_capacity,
            negative_ttl_ms: d.negative_ttl.as_millis() as u64,
            negative_capacity: d.negative_capacity,
            usage_flush_interval_ms: d.usage_flush_interval.as_millis() as u64,
            usage_retention_ms: d.usage_retention.as_millis() as u64,
            credit_block: d.credit_block,
            change_poll_interval_ms: d.change_poll_interval.as_millis() as u64,
            replay: None,
        }
    }
}

impl VerifySettings {
    pub fn config(&self) -> VerifierConfig {
        VerifierConfig {
            cache_ttl: Duration::from_millis(self.cache_ttl_ms),
            cache_capacity: self.cache_capacity,
            negative_ttl: Duration::from_millis(self.negative_ttl_ms),
            negative_capacity: self.negative_capacity,
            usage_flush_interval: Duration::from_millis(self.usage_flush_interval_ms.max(10)),
            usage_retention: Duration::from_millis(self.usage_retention_ms.max(60_000)),
            credit_block: self.credit_block.max(1),
            change_poll_interval: Duration::from_millis(self.change_poll_interval_ms.max(10)),
        }
    }
}

/// The default listen address: loopback only, so a fresh install is not
/// reachable from the network until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8720";
/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "keyward-data";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8720)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            verify: VerifySettings::default(),
            gateway: None,
            seal: keyward_service::seal::SealSettings::default(),
            leaks: LeakSettings::default(),
            auth: AuthFileSettings::default(),
            audit: AuditFileSettings::default(),
            limits: LimitSettings::default(),
            fast_path: true,
            tls: None,
            danger_allow_plaintext: false,
            redis: None,
        }
    }
}

impl Settings {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("keyward.db").display()),
        }
    }

    /// Tells `verifier` where signed requests are remembered: Redis when
    /// `[redis]` is set, else `[verify] replay`.
    pub async fn share_replays(
        &self,
        verifier: &keyward_verify::Verifier,
        store: &Arc<dyn Store>,
    ) -> Result<(), StartError> {
        if let Some(redis) = &self.redis {
            let replay = crate::replay::RedisReplay::connect(&redis.url)
                .await
                .map_err(|e| StartError::Settings(format!("[redis] url: {e}")))?;
            verifier.set_replay_store(Arc::new(replay));
            return Ok(());
        }
        let scope = self.verify.replay.unwrap_or(if self.is_embedded() {
            ReplayScope::Memory
        } else {
            ReplayScope::Database
        });
        if scope == ReplayScope::Database {
            verifier.set_replay_store(Arc::new(keyward_verify::proof::DatabaseReplay(Arc::clone(
                store,
            ))));
        }
        Ok(())
    }

    /// Whether the embedded SQLite store is in use.
    pub fn is_embedded(&self) -> bool {
        !self.database_url().starts_with("postgres")
    }

    /// Opens (and migrates) the store, creating the data directory with
    /// owner-only permissions when the embedded store lives there.
    pub async fn open_store(&self) -> Result<Arc<dyn Store>, StartError> {
        if self.is_embedded() {
            create_private_dir(&self.data_dir)?;
        }
        Ok(keyward_store::open(&self.database_url()).await?)
    }

    /// The listeners' TLS, read from the files `[tls]` names; `None`
    /// without `[tls]`.
    pub fn tls(&self) -> Result<Option<keyward_net::tls::Tls>, StartError> {
        match &self.tls {
            Some(files) => Ok(Some(keyward_net::tls::Tls::load(files.clone())?)),
            None => Ok(None),
        }
    }

    /// Refuses to serve `listener` on `addr` in plaintext when other
    /// machines can reach it, unless `danger_allow_plaintext` says to.
    pub fn check_plaintext(
        &self,
        listener: &'static str,
        addr: SocketAddr,
    ) -> Result<(), StartError> {
        if self.danger_allow_plaintext || addr.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        Err(StartError::Plaintext { listener, addr })
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_by_their_documented_names() {
        let settings: Settings = serde_json::from_value(serde_json::json!({
            "limits": {
                "idle_timeout_ms": 5000,
                "head_timeout_ms": 4000,
                "body_timeout_ms": 3000,
                "body_min_rate": 10,
                "max_connections_per_ip": 7,
            }
        }))
        .unwrap();
        let limits = settings.limits.limits();
        assert_eq!(limits.idle, Duration::from_secs(5));
        assert_eq!(limits.head, Duration::from_secs(4));
        assert_eq!(limits.body_grace, Duration::from_secs(3));
        assert_eq!(limits.body_min_rate, 10);
        assert_eq!(limits.max_connections_per_ip, 7);
        assert_eq!(limits.hyper_head(), Duration::from_secs(4));
        assert_eq!(
            Settings::default().limits.limits(),
            keyward_net::Limits::default()
        );
        let typo = serde_json::json!({"limits": {"idle_timeout": 5000}});
        assert!(serde_json::from_value::<Settings>(typo).is_err());
    }

    #[test]
    fn tls_is_read_by_its_documented_names() {
        let settings: Settings = toml::from_str(
            "danger_allow_plaintext = true\n\
             [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let tls = settings.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.key, PathBuf::from("k.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(settings.danger_allow_plaintext);
        assert!(toml::from_str::<Settings>("[tls]\ncert = \"c\"\nkeys = \"k\"\n").is_err());
    }

    #[test]
    fn plaintext_is_refused_off_loopback_unless_allowed() {
        let mut settings = Settings::default();
        for loopback in [
            "127.0.0.1:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
            "127.8.9.10:0",
        ] {
            let addr = loopback.parse().unwrap();
            assert!(settings.check_plaintext("the API listener", addr).is_ok());
        }
        for public in [
            "0.0.0.0:0",
            "[::]:0",
            "10.0.0.1:8720",
            "[::ffff:10.0.0.1]:1",
        ] {
            let addr = public.parse().unwrap();
            let refused = settings.check_plaintext("the API listener", addr);
            let message = refused.unwrap_err().to_string();
            assert!(message.contains("--danger-allow-plaintext"), "{message}");
            assert!(message.contains("--tls-cert"), "{message}");
        }
        settings.danger_allow_plaintext = true;
        let addr = "0.0.0.0:0".parse().unwrap();
        assert!(settings.check_plaintext("the API listener", addr).is_ok());
    }
}
