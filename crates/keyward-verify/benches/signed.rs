//! Verify of a signed request on a cache hit, next to what it cannot do
//! without: for an HMAC key, SHA-256 of the key and one HMAC-SHA256 of the
//! signature base; for an Ed25519 key, one bare `ed25519-dalek` verify of
//! the same base. The requests are RFC 9421's, each with its own nonce
//! (signed outside the measured time), checked against this node's replay
//! memory. Requests are built and dropped outside the measured time, and
//! the memory is pruned there as the usage flush prunes it, so it holds
//! about one window of requests. The allocator is mimalloc, as in
//! `keyward serve`. `bench/README.md` reports the ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Setup failures end the benchmark.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use keyward_core::{
    Environment, KeyId, KeyRecord, KeySigning, PlaintextKey, Requirements, Scope, SigningAlgorithm,
    VerifyCode,
};
use keyward_store::Store;
use keyward_verify::{Opened, Opener, Proof, Scheme, SignedRequest};
use keyward_verify::{Verifier, VerifierConfig};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod setup;
use setup::Everywhere;

/// The bench's keyring: every HMAC envelope opens to this secret.
const SECRET: &[u8] = b"6c2d0f3ab1e94c07a9d55e1f0b7c3e28d4a6f1b90c2e5d7a8f3b6c1e0d9a2f47";

struct Unsealed;

#[async_trait::async_trait]
impl Opener for Unsealed {
    async fn signing_secret(&self, _: &KeyId, _: &[u8]) -> Opened {
        Opened::Secret(Zeroizing::new(SECRET.to_vec()))
    }
    async fn owner_totp(&self, _: &str, _: &[u8]) -> Opened {
        Opened::Sealed
    }
}

const BODY: &[u8] =
    br#"{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","qty":"1","price":"97000"}"#;

/// The signature base of the bench's request, and the request itself.
fn request(key_id: &str, alg: &str, nonce: u64) -> (String, SignedRequest) {
    let digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(BODY))
    );
    let created = OffsetDateTime::now_utc().unix_timestamp();
    let params = format!(
        "(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created={created};\
         keyid=\"{key_id}\";nonce=\"{nonce:016x}\";alg=\"{alg}\""
    );
    let base = format!(
        "\"@method\": POST\n\"@authority\": api.example.com\n\"@path\": /api/v3/order\n\
         \"@query\": ?venue=spot\n\"content-digest\": {digest}\n\"@signature-params\": {params}"
    );
    let request = SignedRequest {
        scheme: Scheme::Rfc9421,
        method: "POST".into(),
        url_scheme: "https".into(),
        authority: "api.example.com".into(),
        path: "/api/v3/order".into(),
        query: Some("venue=spot".into()),
        headers: vec![
            ("Host".into(), b"api.example.com".to_vec()),
            ("Content-Type".into(), b"application/json".to_vec()),
            ("Content-Digest".into(), digest.into_bytes()),
            (
                "Signature-Input".into(),
                format!("sig1={params}").into_bytes(),
            ),
        ],
        body: Some(BODY.to_vec()),
        body_sha256: None,
    };
    (base, request)
}

fn with_signature(mut request: SignedRequest, signature: &[u8]) -> Proof {
    let value = format!(
        "sig1=:{}:",
        base64::engine::general_purpose::STANDARD.encode(signature)
    );
    request
        .headers
        .push(("Signature".into(), value.into_bytes()));
    Proof {
        request: Some(Arc::new(request)),
        otp: None,
    }
}

fn hmac(base: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(base);
    mac.finalize().into_bytes().to_vec()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let customer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let (verifier, keys) = runtime.block_on(async {
        let (store, api) = setup::store_with_api(dir.path()).await;
        let now = OffsetDateTime::now_utc();
        let mut keys = Vec::new();
        for signing in [
            KeySigning {
                algorithm: SigningAlgorithm::HmacSha256,
                window_ms: KeySigning::DEFAULT_WINDOW_MS,
                public_key: None,
                sealed_secret: Some(b"sealed".to_vec()),
            },
            KeySigning {
                algorithm: SigningAlgorithm::Ed25519,
                window_ms: KeySigning::DEFAULT_WINDOW_MS,
                public_key: Some(*customer.verifying_key().as_bytes()),
                sealed_secret: None,
            },
        ] {
            let plain = PlaintextKey::generate(&api.prefix, Environment::Live).unwrap();
            let mut record = KeyRecord::new(
                api.id.clone(),
                Environment::Live,
                "acme".into(),
                &plain,
                now,
            )
            .unwrap();
            record.scopes = vec![Scope::parse("orders:write").unwrap()];
            record.signing = Some(signing);
            setup::add_key(&store, &record).await;
            keys.push((record.id.as_str().to_owned(), plain.expose().to_owned()));
        }
        let store: Arc<dyn Store> = Arc::new(store);
        let config = VerifierConfig {
            cache_ttl: std::time::Duration::from_secs(3600),
            ..VerifierConfig::default()
        };
        let verifier = Verifier::new(store, config);
        verifier.set_opener(Arc::new(Unsealed));
        (verifier, keys)
    });
    let required = Requirements {
        scopes: vec![Scope::parse("orders:write").unwrap()].into(),
        environment: Some(Environment::Live),
        ip: None,
    };
    let nonce = AtomicU64::new(0);
    let next = || {
        let n = nonce.fetch_add(1, Ordering::Relaxed);
        if n % 65_536 == 0 {
            let now_ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            verifier.forget_seen(i64::try_from(now_ms).unwrap());
        }
        n
    };
    let (hmac_id, hmac_key) = &keys[0];
    let (ed_id, ed_key) = &keys[1];
    let hmac_proof = || {
        let (base, request) = request(hmac_id, "hmac-sha256", next());
        with_signature(request, &hmac(base.as_bytes()))
    };
    let ed_proof = || {
        let (base, request) = request(ed_id, "ed25519", next());
        with_signature(request, &customer.sign(base.as_bytes()).to_bytes())
    };
    // Warm each key into the cache through the full path once; then a hit
    // verifies in memory, and the same request twice is a replay.
    let makers: [(&String, &dyn Fn() -> Proof); 2] = [(hmac_key, &hmac_proof), (ed_key, &ed_proof)];
    for (key, make) in makers {
        let warm = runtime
            .block_on(verifier.verify_with(&Everywhere, key, &required, 1, &make()))
            .unwrap();
        assert_eq!(warm.code, VerifyCode::Valid, "{:?}", warm.reason);
        let proof = make();
        let hit = verifier
            .verify_in_memory_with(&Everywhere, key, &required, 1, &proof)
            .unwrap();
        assert_eq!(hit.code, VerifyCode::Valid, "{:?}", hit.reason);
        let again = verifier
            .verify_in_memory_with(&Everywhere, key, &required, 1, &proof)
            .unwrap();
        assert_eq!(again.code, VerifyCode::Replayed);
    }

    let mut group = c.benchmark_group("signed");
    let (base, _) = request(hmac_id, "hmac-sha256", 0);
    group.bench_function("sha256_of_key_and_hmac_of_base", |b| {
        b.iter(|| {
            (
                Sha256::digest(black_box(hmac_key.as_bytes())),
                hmac(black_box(base.as_bytes())),
            )
        })
    });
    group.bench_function("verify_hmac_signed", |b| {
        b.iter_batched_ref(
            hmac_proof,
            |proof| {
                verifier
                    .verify_in_memory_with(&Everywhere, black_box(hmac_key), &required, 1, proof)
                    .map(|v| v.code)
            },
            BatchSize::SmallInput,
        )
    });
    // The scheme's check alone, on one request that stays in the CPU's
    // caches: what `verify_hmac_signed` spends outside the key cache, the
    // replay memory and fresh request memory.
    let one = hmac_proof();
    let one = one.request.as_ref().unwrap();
    let headers: Vec<(&str, &[u8])> = one
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
        .collect();
    let parts = keyward_crypto::httpsig::Request {
        method: &one.method,
        scheme: &one.url_scheme,
        authority: &one.authority,
        path: &one.path,
        query: one.query.as_deref(),
        headers: &headers,
        body: one.body.as_deref(),
        body_sha256: None,
    };
    group.bench_function("rfc9421_check_alone", |b| {
        b.iter(|| {
            keyward_crypto::httpsig::verify_rfc9421(
                black_box(&parts),
                hmac_id,
                keyward_crypto::httpsig::KeyMaterial::Hmac(SECRET),
            )
            .is_ok()
        })
    });
    let (base, _) = request(ed_id, "ed25519", 0);
    let signature = customer.sign(base.as_bytes());
    let public = customer.verifying_key();
    group.bench_function("ed25519_verify", |b| {
        use ed25519_dalek::Verifier as _;
        b.iter(|| public.verify(black_box(base.as_bytes()), &signature))
    });
    group.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| public.verify_strict(black_box(base.as_bytes()), &signature))
    });
    group.bench_function("verify_ed25519_signed", |b| {
        b.iter_batched_ref(
            ed_proof,
            |proof| {
                verifier
                    .verify_in_memory_with(&Everywhere, black_box(ed_key), &required, 1, proof)
                    .map(|v| v.code)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
