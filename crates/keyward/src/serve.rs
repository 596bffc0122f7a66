//! `keyward serve`: settings from a TOML file, `KEYWARD_*` variables and
//! flags (in rising order of precedence), then the server until a signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use keyward_server::tls::{Tls, TlsFiles};
use keyward_server::{Application, Settings};
use tracing_subscriber::EnvFilter;

/// Options of `keyward serve`. Each has a `KEYWARD_*` variable and a key of
/// the same name in the TOML file.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8720]. Loopback by default:
    /// expose Keyward beyond this machine only behind TLS.
    #[arg(long, env = "KEYWARD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// TLS on the listeners: shared by `serve` (the API listener and an
/// embedded gateway) and `gateway`.
#[derive(Args)]
pub struct TlsArgs {
    /// The server's certificate chain, PEM, leaf first ([tls] cert). With
    /// --tls-key the listeners speak only HTTPS. Read again on SIGHUP.
    #[arg(long, env = "KEYWARD_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM ([tls] key). Read again on SIGHUP.
    #[arg(long, env = "KEYWARD_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA, PEM (mutual TLS;
    /// [tls] client_ca). A client without one is refused in the handshake.
    #[arg(long, env = "KEYWARD_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Listen without TLS on an address other machines reach, e.g. behind
    /// a proxy that terminates TLS (danger_allow_plaintext). Without TLS or
    /// this, only loopback addresses are accepted.
    #[arg(long, env = "KEYWARD_DANGER_ALLOW_PLAINTEXT")]
    danger_allow_plaintext: bool,
}

impl TlsArgs {
    /// Applies the flags over what the file said: each flag replaces its
    /// key of `[tls]`.
    fn apply(&self, settings: &mut Settings) -> anyhow::Result<()> {
        if self.danger_allow_plaintext {
            settings.danger_allow_plaintext = true;
        }
        if self.tls_cert.is_none() && self.tls_key.is_none() && self.tls_client_ca.is_none() {
            return Ok(());
        }
        let file = settings.tls.take();
        let cert = self
            .tls_cert
            .clone()
            .or_else(|| file.as_ref().map(|f| f.cert.clone()));
        let key = self
            .tls_key
            .clone()
            .or_else(|| file.as_ref().map(|f| f.key.clone()));
        let client_ca = self
            .tls_client_ca
            .clone()
            .or_else(|| file.and_then(|f| f.client_ca));
        let (Some(cert), Some(key)) = (cert, key) else {
            anyhow::bail!(
                "TLS needs both --tls-cert FILE and --tls-key FILE (or [tls] cert and key in \
                 the config file)"
            );
        };
        settings.tls = Some(TlsFiles {
            cert,
            key,
            client_ca,
        });
        Ok(())
    }
}

/// Where the data is, and how to log: shared by `serve` and `gateway`.
#[derive(Args)]
pub struct StoreArgs {
    /// TOML file with any of: listen, data_dir, database_url,
    /// danger_allow_plaintext, [tls], [verify], [limits], [gateway].
    #[arg(long, env = "KEYWARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded SQLite database [default: ./keyward-data].
    #[arg(long, env = "KEYWARD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… selects PostgreSQL (for several nodes),
    /// sqlite://PATH a SQLite file [default: DATA_DIR/keyward.db].
    #[arg(
        long,
        env = "KEYWARD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Where the master key lives: file (default), shamir or pkcs11. The
    /// pkcs11 seal takes the HSM PIN from KEYWARD_HSM_PIN.
    #[arg(long, env = "KEYWARD_SEAL", value_name = "SEAL")]
    seal: Option<String>,
    /// Log filter, e.g. `info`, or `info,keyward_verify::observe=debug` for
    /// the gateway's request lines too.
    #[arg(
        long,
        env = "KEYWARD_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    log: String,
}

impl StoreArgs {
    /// The settings and the store they name, for commands that work on an
    /// install's store directly: an embedded store that is not there is
    /// refused rather than created.
    pub(crate) async fn open_existing(
        &self,
    ) -> anyhow::Result<(Settings, std::sync::Arc<dyn keyward_store::Store>)> {
        let settings = self.settings(None)?;
        if settings.database_url.is_none() {
            let db = settings.data_dir.join("keyward.db");
            if !db.exists() {
                anyhow::bail!(
                    "no Keyward store at {}: give the --data-dir, --database-url or --config \
                     the server runs with",
                    db.display()
                );
            }
        }
        let store = settings
            .open_store()
            .await
            .context("cannot open the store")?;
        Ok((settings, store))
    }

    /// Merges the file (if any) with flags and variables.
    pub(crate) fn settings(&self, listen: Option<SocketAddr>) -> anyhow::Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?
            }
            None => Settings::default(),
        };
        if let Some(listen) = listen {
            settings.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            settings.database_url = Some(url.clone());
        }
        if let Some(seal) = &self.seal {
            settings.seal.kind = match seal.as_str() {
                "file" => keyward_service::seal::SealType::File,
                "shamir" => keyward_service::seal::SealType::Shamir,
                "pkcs11" => keyward_service::seal::SealType::Pkcs11,
                other => anyhow::bail!("unknown seal {other:?}: use file, shamir or pkcs11"),
            };
        }
        // The HSM PIN comes from the environment only: a flag would show in
        // the process list.
        if let Ok(pin) = std::env::var("KEYWARD_HSM_PIN") {
            settings.seal.pkcs11_pin = Some(keyward_service::seal::Pin::new(pin));
        }
        Ok(settings)
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).context("invalid --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.store.log)?;
    let mut settings = args.store.settings(args.listen)?;
    args.tls.apply(&mut settings)?;
    let embedded = settings.is_embedded();
    let mut app = Application::build(settings.clone())
        .await
        .context("cannot start the server")?;
    if let Some(root) = app.take_root_token() {
        // Printed, not logged: logs are shipped and kept, this must not be.
        eprintln!(
            "keyward: root admin token (shown once, store it now): {}",
            root.expose()
        );
    }
    // The PostgreSQL URL may hold a password, so only the SQLite path is named.
    let database = if embedded {
        settings.database_url()
    } else {
        "postgres".to_owned()
    };
    let stop = shutdown_signal()?;
    reload_on_hangup(app.tls())?;
    let scheme = if app.tls().is_some() { "https" } else { "http" };
    tracing::info!(addr = %app.local_addr()?, %scheme, %database, "keyward is serving");
    if let Some(addr) = app.gateway_addr() {
        tracing::info!(addr = %addr?, "the gateway is serving");
    }
    app.run_until_stopped(stop).await?;
    tracing::info!("keyward stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
/// Listens for SIGINT and SIGTERM from the moment it is called — before the
/// server says it is serving, so a signal sent right after never meets the
/// default action — and returns a future that completes on the first.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

/// Reads the TLS files again on every SIGHUP, for the handshakes that
/// follow; connections already open keep their session. A reload that fails
/// is logged and the certificate in use stays. Without TLS, SIGHUP keeps its
/// default action.
fn reload_on_hangup(tls: Option<Tls>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(tls) = tls else { return Ok(()) };
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let cert = tls.files().cert.display().to_string();
            match tls.reload() {
                Ok(()) => tracing::info!(%cert, "reloaded the TLS certificate"),
                Err(e) => tracing::error!(
                    error = %e,
                    "the TLS files could not be reloaded; the certificate in use stays"
                ),
            }
        }
    });
    Ok(())
}

/// Options of `keyward gateway`.
#[derive(Args)]
pub struct GatewayArgs {
    /// Base URL of the API to protect, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "KEYWARD_GATEWAY_UPSTREAM", value_name = "URL")]
    upstream: String,
    /// TOML file of routes: [[route]] method, path (it and the paths below
    /// it), scopes, cost; optional top-level environment, api_ids,
    /// trusted_proxies, forwarded_header, underscores_in_headers, max_body,
    /// upstream_connect_timeout_ms and upstream_timeout_ms.
    #[arg(long, env = "KEYWARD_GATEWAY_ROUTES", value_name = "FILE")]
    routes: PathBuf,
    /// Address the gateway listens on.
    #[arg(
        long,
        env = "KEYWARD_GATEWAY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8721"
    )]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    init_logging(&args.store.log)?;
    let mut settings = args.store.settings(None)?;
    args.tls.apply(&mut settings)?;
    let tls = settings.tls().context("cannot start the gateway")?;
    if tls.is_none() {
        // Before binding, so a refused start never says it is serving.
        settings
            .check_plaintext("the gateway", args.listen)
            .context("cannot start the gateway")?;
    }
    let text = std::fs::read_to_string(&args.routes)
        .with_context(|| format!("cannot read {}", args.routes.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", args.routes.display()))?;
    table.insert(
        "upstream".into(),
        toml::Value::String(args.upstream.clone()),
    );
    let config: keyward_gateway::GatewayConfig = table
        .try_into()
        .with_context(|| format!("invalid {}", args.routes.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let stop = shutdown_signal()?;
    reload_on_hangup(tls.clone())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        addr = %listener.local_addr()?,
        %scheme,
        upstream = %args.upstream,
        "the gateway is serving"
    );
    keyward_server::run_gateway(settings, config, listener, tls, stop)
        .await
        .context("the gateway failed")?;
    tracing::info!("keyward gateway stopped");
    Ok(())
}
