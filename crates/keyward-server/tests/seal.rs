//! The seal over HTTP: a `shamir` server that starts sealed, is initialised
//! once, is unsealed share by share across restarts and keeps verifying keys
//! while sealed; the `file` default; the `pkcs11` seal on a fresh SoftHSM2
//! token unsealing itself after a restart; and no master key on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::path::Path;

use keyward_crypto::pkcs11::{Hsm, HsmConfig};
use keyward_crypto::shamir::{self, Share};
use keyward_service::seal::{Pin, SealSettings, SealType};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{fresh_store, spawn_sealed, Backend, TestApp};
use zeroize::Zeroizing;

fn shamir_settings() -> SealSettings {
    SealSettings {
        kind: SealType::Shamir,
        ..SealSettings::default()
    }
}

/// An exchange-style order body signed with an HMAC key's secret.
fn signed_order(secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let body = format!("symbol=BTCUSDT&side=BUY&quantity=1&timestamp={now}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes());
    format!("{body}&signature={signature}")
}

async fn status(app: &TestApp) -> Value {
    let (code, body) = app
        .call(Method::GET, "/v1/sys/seal-status", None, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    body
}

async fn unseal(app: &TestApp, key: &str) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        "/v1/sys/unseal",
        None,
        Some(json!({ "key": key })),
    )
    .await
}

/// Every file under `dir`, searched for `needle` as raw bytes and as hex.
fn directory_contains(dir: &Path, needle: &[u8]) -> bool {
    let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle)
                || bytes.windows(hex.len()).any(|w| w == hex.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shamir_server_starts_sealed_unseals_share_by_share_and_verifies_keys_while_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (store, db_file) = fresh_store(Backend::Sqlite, &data).await;
    let mut app = spawn_sealed(store.clone(), db_file.clone(), dir, shamir_settings(), None).await;
    let root = app.root.clone();

    let s = status(&app).await;
    assert_eq!(s["type"], "shamir");
    assert_eq!(s["initialized"], false);
    assert_eq!(s["sealed"], true);
    let (code, body) = app
        .call(Method::POST, "/v1/sys/rotate", Some(&root), None)
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "SEALED");

    // Keys are issued and verified while sealed: verification needs only
    // digests.
    let api = app.create_api("tm", &["live"]).await;
    let key = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "c1"}))
        .await;
    let plaintext = key["key"].as_str().unwrap().to_owned();
    assert_eq!(app.verify_code(json!({ "key": plaintext })).await, "VALID");
    // Secrets need the keyring.
    let planted = json!({"data": {"api_secret": "planted-value-shamir"}});
    let (code, body) = app
        .call(
            Method::POST,
            "/v1/secret/data/exchange",
            Some(&root),
            Some(planted.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "SEALED");

    // Initialising needs sys:write, and sane numbers.
    let init = json!({"secret_shares": 5, "secret_threshold": 3});
    let (code, _) = app
        .call(Method::POST, "/v1/sys/init", None, Some(init.clone()))
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let weak = app
        .token(json!({"name": "w", "scopes": ["keys:read"]}))
        .await;
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/sys/init",
            Some(&weak),
            Some(init.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    for bad in [
        json!({"secret_shares": 5, "secret_threshold": 1}),
        json!({"secret_shares": 2, "secret_threshold": 3}),
        json!({"secret_shares": 300, "secret_threshold": 3}),
    ] {
        let (code, body) = app
            .call(Method::POST, "/v1/sys/init", Some(&root), Some(bad))
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    }
    let shares = app
        .ok(Method::POST, "/v1/sys/init", Some(init.clone()))
        .await;
    let shares: Vec<String> = shares["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shares.len(), 5);
    let (code, _) = app
        .call(Method::POST, "/v1/sys/init", Some(&root), Some(init))
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let s = status(&app).await;
    assert_eq!(
        (s["initialized"].clone(), s["sealed"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        (s["t"].clone(), s["n"].clone(), s["progress"].clone()),
        (json!(3), json!(5), json!(0))
    );

    // Wrong shares are refused and do not cost the progress made.
    let (code, s) = unseal(&app, &shares[0]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s["progress"], 1);
    let (code, body) = unseal(&app, &shares[0]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "INVALID_SHARE");
    let mut typo = shares[1].clone().into_bytes();
    typo[20] = if typo[20] == b'0' { b'1' } else { b'0' };
    let (code, _) = unseal(&app, std::str::from_utf8(&typo).unwrap()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = unseal(&app, "not a share").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(status(&app).await["progress"], 1);

    // Threshold minus one shares leave it sealed.
    let (_, s) = unseal(&app, &shares[3]).await;
    assert_eq!(
        (s["progress"].clone(), s["sealed"].clone()),
        (json!(2), json!(true))
    );
    let (code, _) = app
        .call(Method::POST, "/v1/sys/rotate", Some(&root), None)
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let (_, s) = unseal(&app, &shares[4]).await;
    assert_eq!(s["sealed"], false);
    assert_eq!(s["keyring_version"], 1);
    let (code, _) = unseal(&app, &shares[1]).await;
    assert_eq!(code, StatusCode::CONFLICT);
    // Unsealed, the node catches up on the checkpoints it could not sign
    // while sealed, and makes the audit key (an envelope too) for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit = app.ok(Method::GET, "/v1/audit/status", None).await;
        if !audit["public_key"].is_null() {
            assert_eq!(
                audit["last_checkpoint"]["sequence"], audit["head"]["sequence"],
                "{audit}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {audit}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    app.ok(
        Method::POST,
        "/v1/secret/data/exchange",
        Some(planted.clone()),
    )
    .await;
    app.ok(Method::POST, "/v1/transit/keys/orders", Some(json!({})))
        .await;
    let sealed_text = app
        .ok(
            Method::POST,
            "/v1/transit/encrypt/orders",
            Some(json!({"plaintext": "cGxhbnRlZA=="})),
        )
        .await;
    // Envelopes beside secret values and transit keys: a secret's custom
    // metadata, a key's HMAC signing secret, a key owner's confirmed and
    // pending TOTP secrets, a user's pending one; and the audit key above.
    let metadata = json!({"custom_metadata": {"desk": "otc"}});
    app.ok(Method::POST, "/v1/secret/metadata/exchange", Some(metadata))
        .await;
    let signed = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "c1",
            "signing": {"algorithm": "hmac-sha256"}}))
        .await;
    let enrolment = app.ok(Method::POST, "/v1/owners/c1/totp", None).await;
    let mut owner_phone = support::Authenticator::from_enrolment(&enrolment);
    let otp = owner_phone.code().await;
    let (code, body) = app
        .call(
            Method::POST,
            "/v1/owners/c1/totp/confirm",
            Some(&root),
            Some(json!({ "otp": otp })),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    app.create_key(json!({"api_id": api, "environment": "live", "owner": "c2"}))
        .await;
    let enrolment = app.ok(Method::POST, "/v1/owners/c2/totp", None).await;
    let mut pending_phone = support::Authenticator::from_enrolment(&enrolment);
    let user = json!({"email": "ops@example.com", "password": support::PASSWORD, "roles": []});
    app.ok(Method::POST, "/v1/users", Some(user)).await;
    let ops = support::session(&app, "ops@example.com", None).await;
    let (code, enrolment) = app
        .call(Method::POST, "/v1/auth/totp", Some(&ops), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{enrolment}");
    let mut user_phone = support::Authenticator::from_enrolment(&enrolment);

    let rotated = app.ok(Method::POST, "/v1/sys/rotate", None).await;
    assert_eq!(rotated["keyring_version"], 2);
    assert_eq!(status(&app).await["keyring_version"], 2);
    // Written under version 2 of the keyring; version 1 still opens the first.
    app.ok(
        Method::POST,
        "/v1/secret/data/exchange",
        Some(json!({"data": {"api_secret": "planted-value-v2"}})),
    )
    .await;
    // The rotation's background rewrap moves every stored data key to
    // version 2: the first secret version, the transit key's material and
    // every envelope above.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut stored = store.secret_envelopes(None, 100).await.unwrap();
        stored.extend(store.transit_envelopes(None, 100).await.unwrap());
        stored.extend(store.metadata_envelopes(None, 100).await.unwrap());
        for column in keyward_store::EnvelopeColumn::ALL {
            stored.extend(store.row_envelopes(column, None, 100).await.unwrap());
        }
        let versions: Vec<u32> = stored
            .iter()
            .map(|s| keyward_crypto::envelope_version(&s.envelope).unwrap())
            .collect();
        assert_eq!(versions.len(), 9, "{stored:?}");
        if versions.iter().all(|v| *v == 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not rewrapped: {versions:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report = app.ok(Method::POST, "/v1/sys/rewrap", None).await;
    assert_eq!(
        report["data"],
        json!({"moved": 0, "current": 9, "failed": 0})
    );
    // Each moved envelope still opens, under the record it belongs to.
    let read = app
        .ok(Method::GET, "/v1/secret/metadata/exchange", None)
        .await;
    assert_eq!(read["data"]["custom_metadata"], json!({"desk": "otc"}));
    let order = signed_order(signed["signing_secret"].as_str().unwrap());
    let request = json!({"method": "POST", "path": "/api/v3/order", "body": order,
        "headers": [["Host", "api.example.com"]]});
    let answer = app
        .verify(json!({"key": signed["key"], "request": request}))
        .await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    // The pending secrets confirm; the confirmed one was confirmed before.
    for (path, token, phone, expected) in [
        (
            "/v1/owners/c2/totp/confirm",
            &root,
            &mut pending_phone,
            StatusCode::NO_CONTENT,
        ),
        (
            "/v1/auth/totp/confirm",
            &ops,
            &mut user_phone,
            StatusCode::OK,
        ),
        (
            "/v1/owners/c1/totp/confirm",
            &root,
            &mut owner_phone,
            StatusCode::CONFLICT,
        ),
    ] {
        let otp = phone.code().await;
        let (code, body) = app
            .call(Method::POST, path, Some(token), Some(json!({ "otp": otp })))
            .await;
        assert_eq!(code, expected, "{path}: {body}");
    }

    // Sealing by hand needs sys:write and takes effect at once.
    let (code, _) = app
        .call(Method::POST, "/v1/sys/seal", Some(&weak), None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let s = app.ok(Method::POST, "/v1/sys/seal", None).await;
    assert_eq!(s["sealed"], true);
    assert_eq!(app.verify_code(json!({ "key": plaintext })).await, "VALID");
    let (code, _) = app
        .call(Method::GET, "/v1/secret/data/exchange", Some(&root), None)
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    // Transit keys loaded before the seal are gone with it.
    let (code, body) = app
        .call(
            Method::POST,
            "/v1/transit/decrypt/orders",
            Some(&root),
            Some(json!({"ciphertext": sealed_text["data"]["ciphertext"]})),
        )
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // A reset forgets the shares given so far.
    unseal(&app, &shares[2]).await;
    let (_, s) = app
        .call(
            Method::POST,
            "/v1/sys/unseal",
            None,
            Some(json!({"reset": true})),
        )
        .await;
    assert_eq!(s["progress"], 0);
    app.stop().await;

    // After a restart the node is sealed again; another subset unseals it,
    // and the rotated keyring is all there.
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_sealed(
        store.clone(),
        db_file.clone(),
        dir,
        shamir_settings(),
        Some(root),
    )
    .await;
    assert_eq!(status(&app).await["sealed"], true);
    for share in [&shares[1], &shares[2], &shares[4]] {
        let (code, body) = unseal(&app, share).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let s = status(&app).await;
    assert_eq!(
        (s["sealed"].clone(), s["keyring_version"].clone()),
        (json!(false), json!(2))
    );
    let v1 = app
        .ok(Method::GET, "/v1/secret/data/exchange?version=1", None)
        .await;
    assert_eq!(v1["data"]["data"]["api_secret"], "planted-value-shamir");
    let v2 = app.ok(Method::GET, "/v1/secret/data/exchange", None).await;
    assert_eq!(v2["data"]["data"]["api_secret"], "planted-value-v2");
    let opened = app
        .ok(
            Method::POST,
            "/v1/transit/decrypt/orders",
            Some(json!({"ciphertext": sealed_text["data"]["ciphertext"]})),
        )
        .await;
    assert_eq!(opened["data"]["plaintext"], "cGxhbnRlZA==");

    let audit = app.ok(Method::GET, "/v1/audit?limit=1000", None).await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for (action, count) in [
        ("seal.init", 1),
        ("seal.unseal", 2),
        ("seal.seal", 1),
        ("keyring.rotate", 1),
    ] {
        assert_eq!(
            actions.iter().filter(|a| **a == action).count(),
            count,
            "{action}: {actions:?}"
        );
    }

    // A rekey needs the threshold of current shares, and replaces them.
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/sys/rekey",
            Some(&app.root),
            Some(
                json!({"keys": [shares[0], shares[1]], "secret_shares": 3, "secret_threshold": 2}),
            ),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let rekeyed = app
        .ok(
            Method::POST,
            "/v1/sys/rekey",
            Some(json!({"keys": [shares[0], shares[2], shares[3]], "secret_shares": 3, "secret_threshold": 2})),
        )
        .await;
    let new_shares: Vec<String> = rekeyed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new_shares.len(), 3);
    let root = app.root.clone();
    app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_sealed(
        store.clone(),
        db_file.clone(),
        dir,
        shamir_settings(),
        Some(root),
    )
    .await;
    let (code, body) = unseal(&app, &shares[0]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "old shares are void: {body}");
    unseal(&app, &new_shares[2]).await;
    let (_, s) = unseal(&app, &new_shares[0]).await;
    assert_eq!(
        (s["sealed"].clone(), s["t"].clone(), s["n"].clone()),
        (json!(false), json!(2), json!(3))
    );
    let v1 = app
        .ok(Method::GET, "/v1/secret/data/exchange?version=1", None)
        .await;
    assert_eq!(v1["data"]["data"]["api_secret"], "planted-value-shamir");

    // The master key the shares make is nowhere on disk.
    let parsed: Vec<Share> = new_shares
        .iter()
        .map(|s| Share::parse(s).unwrap())
        .collect();
    let master = shamir::combine(parsed.iter().take(2)).unwrap();
    assert!(!directory_contains(&data, master.secret().expose()));
    for share in shares.iter().chain(&new_shares) {
        assert!(!directory_contains(&data, share.as_bytes()));
    }
    assert!(!directory_contains(&data, b"planted-value-shamir"));
    assert!(!directory_contains(&data, b"planted-value-v2"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_seal_is_the_default_and_needs_no_operator() {
    let app = support::spawn(Backend::Sqlite).await;
    let s = status(&app).await;
    assert_eq!(s["type"], "file");
    assert_eq!(s["sealed"], false);
    assert_eq!(s["keyring_version"], 1);
    let path = app.backend_dir.as_ref().unwrap().path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Init and unseal do not apply to it.
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/sys/init",
            Some(&app.root),
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, body) = unseal(&app, "kws1_").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_sealed_one_way_refuses_to_start_with_another_seal() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db_file) = fresh_store(Backend::Sqlite, dir.path()).await;
    let mut app = spawn_sealed(
        store.clone(),
        db_file.clone(),
        dir,
        SealSettings::default(),
        None,
    )
    .await;
    let root = app.root.clone();
    app.stop().await;
    let settings = keyward_server::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: tempfile::tempdir().unwrap().path().to_owned(),
        database_url: None,
        verify: Default::default(),
        gateway: None,
        seal: shamir_settings(),
        leaks: Default::default(),
        fast_path: true,
        ..Default::default()
    };
    let err = keyward_server::Application::with_store(settings, store)
        .await
        .err()
        .expect("a file-sealed store does not start as shamir");
    assert!(err.to_string().contains("seal"), "{err}");
    let _ = root;
}

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn softhsm_token(dir: &Path) -> HsmConfig {
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
    // Only this test in this binary loads SoftHSM, which reads the variable
    // when initialised.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "keyward-seal",
            "--so-pin",
            "so-pin-1",
            "--pin",
            "user-pin-1",
        ])
        .output()
        .expect("softhsm2-util must be installed (apt-get install softhsm2)");
    assert!(out.status.success(), "{out:?}");
    HsmConfig {
        module: SOFTHSM.into(),
        token_label: "keyward-seal".into(),
        pin: Zeroizing::new("user-pin-1".into()),
        key_label: "keyward-master-wrap".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pkcs11_server_unseals_itself_through_softhsm_after_a_restart() {
    assert!(Path::new(SOFTHSM).exists(), "apt-get install softhsm2");
    let hsm_dir = tempfile::tempdir().unwrap();
    let hsm = softhsm_token(hsm_dir.path());
    let settings = SealSettings {
        kind: SealType::Pkcs11,
        pkcs11_module: Some(hsm.module.clone()),
        pkcs11_token_label: Some(hsm.token_label.clone()),
        pkcs11_pin: Some(Pin::new("user-pin-1".into())),
        ..SealSettings::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (store, db_file) = fresh_store(Backend::Sqlite, &data).await;
    let mut app = spawn_sealed(store.clone(), db_file.clone(), dir, settings.clone(), None).await;
    let s = status(&app).await;
    assert_eq!(
        (s["type"].clone(), s["sealed"].clone()),
        (json!("pkcs11"), json!(false))
    );
    let rotated = app.ok(Method::POST, "/v1/sys/rotate", None).await;
    assert_eq!(rotated["keyring_version"], 2);
    app.ok(
        Method::POST,
        "/v1/secret/data/hsm",
        Some(json!({"data": {"v": "planted-value-pkcs11"}})),
    )
    .await;
    let root = app.root.clone();
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_sealed(
        store.clone(),
        db_file.clone(),
        dir,
        settings.clone(),
        Some(root),
    )
    .await;
    let s = status(&app).await;
    assert_eq!(
        (s["sealed"].clone(), s["keyring_version"].clone()),
        (json!(false), json!(2))
    );
    let read = app.ok(Method::GET, "/v1/secret/data/hsm", None).await;
    assert_eq!(read["data"]["data"]["v"], "planted-value-pkcs11");
    // A rekey: a new master key wrapped by the HSM; the data stays.
    let before = store.seal().await.unwrap().unwrap().wrapped_master;
    let rekeyed = app.ok(Method::POST, "/v1/sys/rekey", Some(json!({}))).await;
    assert_eq!(rekeyed["keys"], json!([]));
    assert_ne!(store.seal().await.unwrap().unwrap().wrapped_master, before);
    let root = app.root.clone();
    app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_sealed(
        store.clone(),
        db_file.clone(),
        dir,
        settings.clone(),
        Some(root),
    )
    .await;
    let read = app.ok(Method::GET, "/v1/secret/data/hsm", None).await;
    assert_eq!(read["data"]["data"]["v"], "planted-value-pkcs11");
    app.stop().await;

    // A wrong PIN stops the start with an error that does not echo it.
    let wrong = SealSettings {
        pkcs11_pin: Some(Pin::new("guessed-pin".into())),
        ..settings
    };
    let err = keyward_server::Application::with_store(
        keyward_server::Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.clone(),
            database_url: None,
            verify: Default::default(),
            gateway: None,
            seal: wrong,
            leaks: Default::default(),
            fast_path: true,
            ..Default::default()
        },
        store.clone(),
    )
    .await
    .err()
    .expect("a wrong PIN does not unseal");
    assert!(!err.to_string().contains("guessed-pin"), "{err}");

    // The master key is only wrapped in the store: unwrap it as the HSM's
    // user would and look for it in the data directory.
    let wrapped = store.seal().await.unwrap().unwrap().wrapped_master.unwrap();
    let master = tokio::task::spawn_blocking(move || {
        let hsm = Hsm::open(&hsm, false).unwrap();
        let master = hsm.unwrap(&wrapped).unwrap();
        hsm.close();
        master
    })
    .await
    .unwrap();
    assert!(!directory_contains(&data, master.secret().expose()));
    assert!(!directory_contains(&data, b"planted-value-pkcs11"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_master_key_file_serves_sealed_and_still_verifies() {
    let first_dir = tempfile::tempdir().unwrap();
    let first_path = first_dir.path().to_owned();
    let (store, db_file) = fresh_store(Backend::Sqlite, &first_path).await;
    let mut first = spawn_sealed(
        store.clone(),
        db_file.clone(),
        first_dir,
        SealSettings::default(),
        None,
    )
    .await;
    let root = first.root.clone();
    let api = first.create_api("tm", &["live"]).await;
    let key = first
        .create_key(json!({"api_id": api, "environment": "live", "owner": "c1"}))
        .await;
    let key_file = std::fs::read(first_path.join("master.key")).unwrap();
    first.stop().await;

    // Another machine's data directory has no master.key: the node starts
    // sealed, makes no key of its own, and verifies keys all the same.
    let other = tempfile::tempdir().unwrap();
    let other_path = other.path().to_owned();
    let mut second = spawn_sealed(
        store.clone(),
        db_file.clone(),
        other,
        SealSettings::default(),
        Some(root.clone()),
    )
    .await;
    let s = status(&second).await;
    assert_eq!(
        (s["type"].clone(), s["sealed"].clone()),
        (json!("file"), json!(true))
    );
    assert!(!other_path.join("master.key").exists());
    assert_eq!(
        second.verify_code(json!({ "key": key["key"] })).await,
        "VALID"
    );
    second.stop().await;

    // With the key copied over, it unseals at start.
    let third = tempfile::tempdir().unwrap();
    let copy = third.path().join("master.key");
    std::fs::write(&copy, &key_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut third = spawn_sealed(store, db_file, third, SealSettings::default(), Some(root)).await;
    assert_eq!(status(&third).await["sealed"], false);
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_rotated_on_another_node_opens_data_written_there() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db_file) = fresh_store(Backend::Sqlite, dir.path()).await;
    let mut a = spawn_sealed(store.clone(), db_file.clone(), dir, shamir_settings(), None).await;
    let root = a.root.clone();
    let init = a
        .ok(
            Method::POST,
            "/v1/sys/init",
            Some(json!({"secret_shares": 2, "secret_threshold": 2})),
        )
        .await;
    let shares: Vec<String> = init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mut b = spawn_sealed(
        store.clone(),
        db_file,
        tempfile::tempdir().unwrap(),
        shamir_settings(),
        Some(root.clone()),
    )
    .await;
    for node in [&a, &b] {
        for share in &shares {
            unseal(node, share).await;
        }
        assert_eq!(status(node).await["keyring_version"], 1);
    }
    // Node A rotates and writes under keyring version 2; node B, still on
    // version 1, reads the keyring again when it meets version 2.
    a.ok(Method::POST, "/v1/sys/rotate", None).await;
    a.ok(
        Method::POST,
        "/v1/secret/data/shared",
        Some(json!({"data": {"v": "from-a"}})),
    )
    .await;
    a.ok(Method::POST, "/v1/transit/keys/shared", Some(json!({})))
        .await;
    let read = b.ok(Method::GET, "/v1/secret/data/shared", None).await;
    assert_eq!(read["data"]["data"]["v"], "from-a");
    assert_eq!(status(&b).await["keyring_version"], 2);
    let sealed = b
        .ok(
            Method::POST,
            "/v1/transit/encrypt/shared",
            Some(json!({"plaintext": "YQ=="})),
        )
        .await;
    let opened = a
        .ok(
            Method::POST,
            "/v1/transit/decrypt/shared",
            Some(json!({"ciphertext": sealed["data"]["ciphertext"]})),
        )
        .await;
    assert_eq!(opened["data"]["plaintext"], "YQ==");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rotated_when_they_reach_the_usage_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db_file) = fresh_store(Backend::Sqlite, dir.path()).await;
    let settings = SealSettings {
        rotate_after_uses: 16,
        ..SealSettings::default()
    };
    let mut app = spawn_sealed(store.clone(), db_file, dir, settings, None).await;
    // Keyring: every secret write wraps a data key.
    for i in 0..20 {
        app.ok(
            Method::POST,
            &format!("/v1/secret/data/s{i}"),
            Some(json!({"data": {"v": "x"}})),
        )
        .await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(&app).await["keyring_version"] == 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the keyring was not rotated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let audit = app.ok(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "keyring.rotate" && e["details"]["reason"] == "usage limit"));
    // Everything written before the rotation still reads.
    let read = app.ok(Method::GET, "/v1/secret/data/s0", None).await;
    assert_eq!(read["data"]["data"]["v"], "x");

    // Transit: a batch that crosses the limit rotates the key; old
    // ciphertexts still decrypt.
    app.ok(Method::POST, "/v1/transit/keys/busy", Some(json!({})))
        .await;
    let first = app
        .ok(
            Method::POST,
            "/v1/transit/encrypt/busy",
            Some(json!({"plaintext": "YQ=="})),
        )
        .await;
    let batch: Vec<Value> = (0..20).map(|_| json!({"plaintext": "YQ=="})).collect();
    app.ok(
        Method::POST,
        "/v1/transit/encrypt/busy",
        Some(json!({"batch_input": batch})),
    )
    .await;
    let key = app.ok(Method::GET, "/v1/transit/keys/busy", None).await;
    assert_eq!(key["data"]["latest_version"], 2);
    let next = app
        .ok(
            Method::POST,
            "/v1/transit/encrypt/busy",
            Some(json!({"plaintext": "YQ=="})),
        )
        .await;
    assert!(next["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("kw:v2:"));
    let opened = app
        .ok(
            Method::POST,
            "/v1/transit/decrypt/busy",
            Some(json!({"ciphertext": first["data"]["ciphertext"]})),
        )
        .await;
    assert_eq!(opened["data"]["plaintext"], "YQ==");
    app.stop().await;
}
