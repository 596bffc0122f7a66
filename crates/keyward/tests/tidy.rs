//! The crate graph points one way. Each crate may depend only on the
//! Keyward crates its row names (normal dependencies; tests may use more),
//! so no import can point back up the layers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each crate and the Keyward crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("keyward-core", &[]),
    ("keyward-os", &[]),
    ("keyward-crypto", &["keyward-core"]),
    ("keyward-store", &["keyward-core"]),
    ("keyward-proto", &["keyward-core"]),
    ("keyward-scan", &["keyward-core"]),
    ("keyward-net", &["keyward-os"]),
    ("keyward-gateway-head", &["keyward-net"]),
    ("keyward-fuzz", &["keyward-gateway-head", "keyward-net"]),
    (
        "keyward-verify",
        &["keyward-core", "keyward-crypto", "keyward-store"],
    ),
    (
        "keyward-service",
        &[
            "keyward-core",
            "keyward-crypto",
            "keyward-store",
            "keyward-verify",
        ],
    ),
    (
        "keyward-gateway",
        &[
            "keyward-core",
            "keyward-gateway-head",
            "keyward-net",
            "keyward-proto",
            "keyward-verify",
        ],
    ),
    (
        "keyward-server",
        &[
            "keyward-core",
            "keyward-crypto",
            "keyward-gateway",
            "keyward-net",
            "keyward-proto",
            "keyward-service",
            "keyward-store",
            "keyward-verify",
        ],
    ),
    (
        "keyward",
        &[
            "keyward-core",
            "keyward-gateway",
            "keyward-proto",
            "keyward-scan",
            "keyward-server",
            "keyward-service",
            "keyward-store",
        ],
    ),
];

fn keyward_dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|deps| {
            deps.keys()
                .filter(|name| name.starts_with("keyward"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_crate_depends_only_on_the_layers_below_it() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(crates).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(may) = allowed.get(name.as_str()) else {
            panic!("{name} has no row in ALLOWED: say what it may depend on");
        };
        for dependency in keyward_dependencies(&manifest) {
            assert!(
                may.contains(&dependency.as_str()),
                "{name} depends on {dependency}, which its layer may not use"
            );
        }
        seen.insert(name);
    }
    assert_eq!(
        seen.len(),
        ALLOWED.len(),
        "every row names a crate that exists"
    );
}

#[test]
fn the_table_has_no_cycle() {
    // Each row may name only crates whose rows come before it.
    for (at, (name, may)) in ALLOWED.iter().enumerate() {
        for dependency in *may {
            let before = ALLOWED[..at].iter().any(|(n, _)| n == dependency);
            assert!(before, "{name} names {dependency}, which is not below it");
        }
    }
}

/// Files of `keyward-server` that compose the server from its parts, and so
/// may name storage and cryptography: opening the configured store and
/// reading partner keys from the settings. Everything else in the crate
/// reaches them only through the service.
const SERVER_COMPOSITION: &[&str] = &["lib.rs", "settings.rs"];

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn server_handlers_reach_storage_and_crypto_only_through_the_service() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("keyward-server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "the server's sources are found");
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        if SERVER_COMPOSITION.contains(&relative.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for layer in ["keyward_store", "keyward_crypto"] {
                assert!(
                    !code.contains(layer),
                    "keyward-server/src/{relative}:{} names {layer}: go through keyward_service",
                    n + 1
                );
            }
        }
    }
}
