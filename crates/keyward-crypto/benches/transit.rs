//! Transit encryption against the bare AEAD in the same run: what the
//! transit layer (version lookup, associated data, the cached cipher) adds
//! to AES-256-GCM, for a 64-byte and a 64-KiB message.

#![allow(clippy::unwrap_used)] // Setup failures end the benchmark.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keyward_crypto::transit::{KeyType, KeyVersion};
use keyward_crypto::{AeadKey, Cipher, SecretKey};

fn encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("transit_encrypt");
    let transit = KeyVersion::generate(KeyType::Aes256Gcm96).unwrap();
    let bare = AeadKey::new(
        Cipher::Aes256Gcm,
        &SecretKey::from_slice(transit.material()).unwrap(),
    );
    let aad = b"keyward/transit/v1/orders\x00\x00\x00\x00\x01";
    for size in [64usize, 64 * 1024] {
        let plaintext = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("bare_aes_256_gcm", size),
            &plaintext,
            |b, p| b.iter(|| bare.seal(aad, p).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("transit", size), &plaintext, |b, p| {
            b.iter(|| transit.encrypt(aad, false, None, p).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, encrypt);
criterion_main!(benches);
