//! The `file` seal: the master key in a file only its owner can read.
//!
//! This protects against theft of the database alone (a dump, a backup, a
//! replica); anyone who can read the data directory has the key. The
//! server says so in its log when it uses this seal.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::master::MasterKey;
use crate::secret::{SecretKey, KEY_LEN};
use crate::CryptoError;

const HEADER: &str = "keyward-master-key-v1\n";

/// Reads the master key from `path`, creating it (mode 0600) on first use.
/// Returns the key and whether it was created now. Creation is atomic: a
/// crash leaves either no file or a whole one, and two processes starting
/// at once end up with the same key.
pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), CryptoError> {
    match read(path) {
        Ok(key) => return Ok((key, false)),
        Err(ReadError::Missing) => {}
        Err(ReadError::Other(e)) => return Err(e),
    }
    let key = SecretKey::generate()?;
    let mut text = Zeroizing::new(String::with_capacity(HEADER.len() + KEY_LEN * 2 + 1));
    text.push_str(HEADER);
    crate::hex::push(&mut text, key.expose());
    text.push('\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 8];
    crate::secret::fill_random(&mut suffix)?;
    let temporary = dir.join(format!(".master.key.{}.tmp", u64::from_be_bytes(suffix)));
    let storage = |what: &str, e: std::io::Error| {
        CryptoError::Storage(format!("{what} {}: {e}", temporary.display()))
    };
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| storage("cannot create", e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| storage("cannot write", e))?;
    }
    // A hard link fails if the name exists: whoever links first wins, and
    // everyone else reads the winner's key.
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            if let Ok(dir) = fs::File::open(dir) {
                let _ = dir.sync_all();
            }
            Ok((MasterKey::from_secret(key), true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(path) {
            Ok(key) => Ok((key, false)),
            Err(ReadError::Missing) => Err(CryptoError::Storage(format!(
                "{} vanished while being created",
                path.display()
            ))),
            Err(ReadError::Other(e)) => Err(e),
        },
        Err(e) => Err(CryptoError::Storage(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Reads the master key from `path` without creating it: `None` when the
/// file does not exist.
pub fn load(path: &Path) -> Result<Option<MasterKey>, CryptoError> {
    match read(path) {
        Ok(key) => Ok(Some(key)),
        Err(ReadError::Missing) => Ok(None),
        Err(ReadError::Other(e)) => Err(e),
    }
}

enum ReadError {
    Missing,
    Other(CryptoError),
}

fn read(path: &Path) -> Result<MasterKey, ReadError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => {
            return Err(ReadError::Other(CryptoError::Storage(format!(
                "cannot read {}: {e}",
                path.display()
            ))))
        }
    };
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(ReadError::Other(CryptoError::Storage(format!(
                "{} is readable by others than its owner; chmod 600 it",
                path.display()
            ))));
        }
    }
    let damaged = || {
        ReadError::Other(CryptoError::Storage(format!(
            "{} is not a Keyward master key file",
            path.display()
        )))
    };
    let body = text.strip_prefix(HEADER).ok_or_else(damaged)?.trim_end();
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    crate::hex::decode(body, bytes.as_mut()).ok_or_else(damaged)?;
    Ok(MasterKey::from_secret(SecretKey::from_bytes(&mut bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_with_mode_0600_and_read_back() {
        let dir = tempdir();
        let path = dir.join("master.key");
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (second, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert!(first.secret() == second.secret());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn a_damaged_or_exposed_file_is_refused() {
        let dir = tempdir();
        let path = dir.join("master.key");
        fs::write(&path, "keyward-master-key-v1\nnot hex\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(CryptoError::Storage(_))
        ));
        // Non-ASCII of the right length is refused, not a panic.
        fs::write(
            &path,
            format!("keyward-master-key-v1\na{}b\n", "é".repeat(31)),
        )
        .unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(CryptoError::Storage(_))
        ));
        load_or_create(&dir.join("good.key")).unwrap();
        fs::set_permissions(dir.join("good.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&dir.join("good.key")).err().unwrap();
        assert!(err.to_string().contains("chmod 600"));
    }

    fn tempdir() -> std::path::PathBuf {
        let mut name = [0u8; 8];
        crate::secret::fill_random(&mut name).unwrap();
        let dir = std::env::temp_dir().join(format!("kw-seal-{}", u64::from_be_bytes(name)));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
