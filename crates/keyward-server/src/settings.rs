//! What the server needs to start. The binary fills this from its TOML file,
//! `KEYWARD_*` variables and flags; tests fill it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use keyward_store::Store;
use serde::Deserialize;

use crate::StartError;

/// Server settings. Every field has a default, so an empty file (or none)
/// gives a working single-machine server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Directory for the embedded database (and, later, seal files).
    pub data_dir: PathBuf,
    /// `postgres://…` for the multi-node store, or `sqlite://PATH`; when
    /// unset, `keyward.db` in `data_dir`.
    pub database_url: Option<String>,
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
