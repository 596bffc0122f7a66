//! The `pkcs11` seal against a real SoftHSM2 token, made fresh in a
//! temporary directory. SoftHSM2 (Debian's `softhsm2`) must be installed;
//! `.ci/run` installs it. Without it this test fails rather than pass
//! vacuously.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::path::{Path, PathBuf};
use std::process::Command;

use keyward_crypto::pkcs11::{Hsm, HsmConfig};
use keyward_crypto::{CryptoError, MasterKey};
use zeroize::Zeroizing;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn token_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kw-softhsm-{}", std::process::id()));
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // SoftHSM reads its configuration when the module is initialised; this
    // test binary has one test, so nothing else reads the variable.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let status = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "keyward-test",
            "--so-pin",
            "so-secret-1",
            "--pin",
            "user-secret-1",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util must be installed (apt-get install softhsm2)");
    assert!(status.status.success(), "{status:?}");
    dir
}

fn config(pin: &str) -> HsmConfig {
    HsmConfig {
        module: MODULE.into(),
        token_label: "keyward-test".into(),
        pin: Zeroizing::new(pin.into()),
        key_label: "keyward-master-wrap".into(),
    }
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}

#[test]
fn softhsm_wraps_the_master_key_and_unwraps_it_after_a_restart() {
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed: apt-get install softhsm2"
    );
    let dir = token_dir();
    let master = MasterKey::generate().unwrap();

    // Without the key and without leave to create it, opening fails.
    let err = Hsm::open(&config("user-secret-1"), false).err().unwrap();
    assert!(err.to_string().contains("no key labelled"), "{err}");

    let hsm = Hsm::open(&config("user-secret-1"), true).unwrap();
    let wrapped = hsm.wrap(&master).unwrap();
    assert_eq!(wrapped.len(), 60);
    assert_ne!(hsm.wrap(&master).unwrap(), wrapped, "fresh nonce per wrap");
    hsm.close();

    // A restart: a new session finds the same key and unwraps.
    let hsm = Hsm::open(&config("user-secret-1"), false).unwrap();
    assert!(hsm.unwrap(&wrapped).unwrap().secret() == master.secret());
    for bit in [0, 8 * 12, 8 * 30, 8 * 59 + 7] {
        let mut tampered = wrapped.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert!(matches!(hsm.unwrap(&tampered), Err(CryptoError::Tampered)));
    }
    assert!(matches!(
        hsm.unwrap(&wrapped[..59]),
        Err(CryptoError::Malformed(_))
    ));
    hsm.close();

    let wrong = Hsm::open(&config("not-the-pin"), false).err().unwrap();
    assert!(wrong.to_string().contains("log in"), "{wrong}");
    assert!(!wrong.to_string().contains("not-the-pin"));

    // The master key is nowhere in the token's files.
    assert!(!files_contain(&dir, master.secret().expose()));
    std::fs::remove_dir_all(&dir).unwrap();
}
