//! Known-answer vectors from the shared key-format file, and properties of
//! generated keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use keyward_core::{Environment, KeyDigest, ParsedKey, PlaintextKey, Prefix};
use proptest::prelude::*;

fn vectors() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testdata/key-format-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("vector file is part of the repository");
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn hex(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

#[test]
fn valid_vectors_are_generated_parsed_and_digested_exactly() {
    let v = vectors();
    let valid = v["valid"].as_array().expect("valid list");
    assert!(valid.len() >= 8);
    for case in valid {
        let prefix = Prefix::parse(case["prefix"].as_str().unwrap()).unwrap();
        let env: Environment = case["environment"].as_str().unwrap().parse().unwrap();
        let key = PlaintextKey::from_body(&prefix, env, &hex(case["bytes_hex"].as_str().unwrap()));
        let expected = case["key"].as_str().unwrap();
        assert_eq!(key.expose(), expected);
        let parsed = ParsedKey::parse(expected).expect("valid vector parses");
        assert_eq!(parsed.prefix(), prefix.as_str());
        assert_eq!(parsed.environment(), env);
        assert_eq!(
            parsed.digest(),
            KeyDigest::from_bytes(hex(case["sha256_hex"].as_str().unwrap()))
        );
    }
}

#[test]
fn invalid_vectors_fail_to_parse() {
    let v = vectors();
    let invalid = v["invalid"].as_array().expect("invalid list");
    assert!(invalid.len() >= 7);
    for case in invalid {
        let key = case["key"].as_str().unwrap();
        assert!(ParsedKey::parse(key).is_err(), "{key} ({})", case["why"]);
    }
}

fn any_env() -> impl Strategy<Value = Environment> {
    prop_oneof![
        Just(Environment::Live),
        Just(Environment::Test),
        Just(Environment::Dev)
    ]
}

proptest! {
    #[test]
    fn any_generated_key_parses_and_round_trips(
        prefix in "[a-z0-9]{1,12}",
        env in any_env(),
        body in any::<[u8; 32]>(),
    ) {
        let prefix = Prefix::parse(&prefix).unwrap();
        let key = PlaintextKey::from_body(&prefix, env, &body);
        let parsed = ParsedKey::parse(key.expose()).unwrap();
        prop_assert_eq!(parsed.prefix(), prefix.as_str());
        prop_assert_eq!(parsed.environment(), env);
        prop_assert_eq!(parsed.digest(), key.digest());
        let decoded = keyward_core::base62::decode::<32>(
            &key.expose().as_bytes()[key.expose().len() - 49..key.expose().len() - 6],
        );
        prop_assert_eq!(decoded, Some(body));
    }

    #[test]
    fn any_single_character_change_fails(
        prefix in "[a-z0-9]{1,12}",
        env in any_env(),
        body in any::<[u8; 32]>(),
        position in any::<prop::sample::Index>(),
        replacement in "[0-9A-Za-z_]",
    ) {
        let prefix = Prefix::parse(&prefix).unwrap();
        let key = PlaintextKey::from_body(&prefix, env, &body);
        let mut bytes = key.expose().as_bytes().to_vec();
        let i = position.index(bytes.len());
        let new = replacement.as_bytes()[0];
        prop_assume!(bytes[i] != new);
        bytes[i] = new;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(ParsedKey::parse(&changed).is_err(), "{} was accepted", changed);
    }
}
