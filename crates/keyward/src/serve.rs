//! `keyward serve`: settings from a TOML file, `KEYWARD_*` variables and
//! flags (in rising order of precedence), then the server until a signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use keyward_server::{Application, Settings};
use tracing_subscriber::EnvFilter;

/// Options of `keyward serve`. Each has a `KEYWARD_*` variable and a key of
/// the same name in the TOML file.
#[derive(Args)]
pub struct ServeArgs {
    /// TOML file with any of: listen, data_dir, database_url.
    #[arg(long, env = "KEYWARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8720]. Loopback by default:
    /// expose Keyward beyond this machine only behind TLS.
    #[arg(long, env = "KEYWARD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
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
    /// Log filter, e.g. `info` or `keyward_server=debug`.
    #[arg(
        long,
        env = "KEYWARD_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    log: String,
}

impl ServeArgs {
    /// Merges the file (if any) with flags and variables.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?
            }
            None => Settings::default(),
        };
        if let Some(listen) = self.listen {
            settings.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            settings.database_url = Some(url.clone());
        }
        Ok(settings)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log).context("invalid --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = args.settings()?;
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
    tracing::info!(addr = %app.local_addr()?, %database, "keyward is serving");
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("keyward stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
