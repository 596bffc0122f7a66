//! Validators: the checks a regex cannot make. A rule names one; it runs on
//! every candidate the rule's regex finds and either refuses it or confirms
//! it, possibly narrowing it to the part that is the secret (a seed phrase
//! inside a longer run of words).
//!
//! Checksummed formats (Keyward keys, GitHub tokens, Base58Check, BIP-39) are
//! what let the scanner report them with no false positives: a random string
//! of the right shape passes a CRC32 once in four billion tries.

use std::ops::Range;

use base64::Engine as _;
use serde::Deserialize;

/// The validators a rule may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validator {
    /// A Keyward API key or admin token: shape, alphabet and CRC32.
    Keyward,
    /// A GitHub `gh?_` token: 30 random base62 characters, then the CRC32
    /// of those 30 in 6 base62 characters.
    Github,
    /// An AWS access key id: a known four-letter kind, then base32.
    AwsKeyId,
    /// A Bitcoin WIF private key: Base58Check, version 0x80 or 0xef.
    Wif,
    /// A BIP-32 extended private key: Base58Check of 78 bytes.
    Xprv,
    /// 12–24 BIP-39 English words whose checksum holds.
    Bip39,
    /// A PEM private-key block with matching labels and a DER body.
    Pem,
    /// An OpenSSH private key (`openssh-key-v1`).
    Openssh,
    /// An armored PGP private key block.
    Pgp,
    /// A JSON Web Token whose header and payload are JSON objects.
    Jwt,
    /// A secp256k1 private scalar in hex: in [1, n − 1].
    Secp256k1,
    /// The password of a URL's userinfo.
    UrlPassword,
}

impl Validator {
    /// Whether the format carries a checksum or structure strict enough that
    /// the placeholder filter must not second-guess it.
    pub fn is_structural(self) -> bool {
        !matches!(self, Validator::UrlPassword | Validator::AwsKeyId)
    }

    /// Checks `candidate`; on success, the range of it that is the secret.
    pub fn check(self, candidate: &[u8]) -> Option<Range<usize>> {
        let whole = 0..candidate.len();
        let ok = match self {
            Validator::Keyward => keyward(candidate),
            Validator::Github => github(candidate),
            Validator::AwsKeyId => aws_key_id(candidate),
            Validator::Wif => wif(candidate),
            Validator::Xprv => xprv(candidate),
            Validator::Bip39 => return bip39(candidate),
            Validator::Pem => pem(candidate),
            Validator::Openssh => openssh(candidate),
            Validator::Pgp => pgp(candidate),
            Validator::Jwt => jwt(candidate),
            Validator::Secp256k1 => secp256k1(candidate),
            Validator::UrlPassword => !candidate.is_empty(),
        };
        ok.then_some(whole)
    }
}

fn keyward(candidate: &[u8]) -> bool {
    std::str::from_utf8(candidate).is_ok_and(|text| keyward_core::ParsedKey::parse(text).is_ok())
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `value` in base62, most significant digit first, zero-padded to `width`.
fn base62(mut value: u32, width: usize) -> Vec<u8> {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits
}

fn github(candidate: &[u8]) -> bool {
    // `ghp_` and its kin, 30 random characters, 6 of checksum.
    let Some(body) = candidate.get(4..) else {
        return false;
    };
    if body.len() != 36 || !body.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (random, check) = body.split_at(30);
    base62(crc32fast::hash(random), 6) == check
}

fn aws_key_id(candidate: &[u8]) -> bool {
    const KINDS: [&[u8]; 12] = [
        b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AROA", b"AIPA", b"ANPA", b"ANVA",
        b"APKA", b"ASCA",
    ];
    candidate.len() == 20
        && KINDS.iter().any(|kind| candidate.starts_with(kind))
        && candidate[4..]
            .iter()
            .all(|&b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

fn base58check(candidate: &[u8]) -> Option<Vec<u8>> {
    bs58::decode(candidate).with_check(None).into_vec().ok()
}

fn wif(candidate: &[u8]) -> bool {
    base58check(candidate).is_some_and(|payload| {
        matches!(payload.first(), Some(0x80 | 0xef))
            && (payload.len() == 33 || (payload.len() == 34 && payload[33] == 0x01))
            && payload[1..33].iter().any(|&b| b != 0)
    })
}

fn xprv(candidate: &[u8]) -> bool {
    // Version bytes of the private extended keys: xprv, tprv, yprv, zprv,
    // uprv, vprv, Yprv, Zprv, Uprv, Vprv.
    const VERSIONS: [[u8; 4]; 10] = [
        [0x04, 0x88, 0xad, 0xe4],
        [0x04, 0x35, 0x83, 0x94],
        [0x04, 0x9d, 0x78, 0x78],
        [0x04, 0xb2, 0x43, 0x0c],
        [0x04, 0x4a, 0x4e, 0x28],
        [0x04, 0x5f, 0x18, 0xbc],
        [0x02, 0x95, 0xb0, 0x05],
        [0x02, 0xaa, 0x7a, 0x99],
        [0x02, 0x42, 0x85, 0xb5],
        [0x02, 0x57, 0x50, 0x48],
    ];
    base58check(candidate).is_some_and(|payload| {
        // 4 version, 1 depth, 4 fingerprint, 4 child, 32 chain code, then
        // 0x00 and the 32-byte key.
        payload.len() == 78 && VERSIONS.iter().any(|v| payload[..4] == v[..]) && payload[45] == 0
    })
}

/// Finds, in a run of words, a phrase of 24, 21, 18, 15 or 12 BIP-39
/// English words whose checksum holds, and returns its byte range.
///
/// The phrase must be nearly the whole run of list words it sits in — at
/// most two list words before and after it (a heading such as "seed words"
/// may be in the list). Searching every window of a long run would find a
/// valid 12-word phrase by chance (its checksum is 4 bits) in any wordlist
/// or longer invalid phrase.
fn bip39(candidate: &[u8]) -> Option<Range<usize>> {
    const SLACK: usize = 2;
    let text = std::str::from_utf8(candidate).ok()?;
    let language = bip39::Language::English;
    // (start, end) of every word, and whether it is in the list.
    // Words are runs of ASCII letters; byte offsets stay on character
    // boundaries whatever else the candidate holds.
    let mut words: Vec<(usize, usize, bool)> = Vec::new();
    let mut start = None;
    for (at, byte) in candidate.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (byte.is_ascii_alphabetic(), start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                words.push((from, at, language.find_word(&text[from..at]).is_some()));
                start = None;
            }
            _ => {}
        }
    }
    let mut run_start = 0;
    for i in 0..=words.len() {
        if i < words.len() && words[i].2 {
            continue;
        }
        // words[run_start..i] are all in the list.
        let run = &words[run_start..i];
        run_start = i + 1;
        for length in [24, 21, 18, 15, 12] {
            let Some(extra) = run.len().checked_sub(length) else {
                continue;
            };
            for before in 0..=extra.min(SLACK) {
                if extra - before > SLACK {
                    continue;
                }
                let window = &run[before..before + length];
                let phrase: Vec<&str> = window.iter().map(|&(s, e, _)| &text[s..e]).collect();
                if bip39::Mnemonic::parse_in_normalized(language, &phrase.join(" ")).is_ok() {
                    return Some(window[0].0..window[length - 1].1);
                }
            }
        }
    }
    None
}

/// The base64 body between a PEM block's BEGIN and END lines, with any
/// `Header: value` lines and whitespace removed; and the two labels.
fn pem_parts(candidate: &[u8]) -> Option<(&[u8], &[u8], Vec<u8>)> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    const DASHES: &[u8] = b"-----";
    let rest = candidate.strip_prefix(BEGIN)?;
    let label_end = memchr::memmem::find(rest, DASHES)?;
    let begin_label = &rest[..label_end];
    let rest = &rest[label_end + DASHES.len()..];
    let end_at = memchr::memmem::find(rest, END)?;
    let body = &rest[..end_at];
    let after = &rest[end_at + END.len()..];
    let end_label = &after[..memchr::memmem::find(after, DASHES)?];
    // JSON strings hold PEM with `\n` escapes; treat them as newlines.
    let body = String::from_utf8_lossy(body).replace("\\n", "\n");
    let mut base64_text = Vec::with_capacity(body.len());
    for line in body.lines() {
        let line = line.trim();
        if line.contains(':') {
            continue; // Proc-Type, DEK-Info, Version and other headers.
        }
        if line.starts_with('=') && line.len() == 5 {
            continue; // The CRC-24 line of PGP armor.
        }
        base64_text.extend(line.bytes().filter(|b| !b.is_ascii_whitespace()));
    }
    Some((begin_label, end_label, base64_text))
}

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text).ok()
}

fn pem(candidate: &[u8]) -> bool {
    let Some((begin, end, body)) = pem_parts(candidate) else {
        return false;
    };
    // A legacy encrypted key (`Proc-Type: 4,ENCRYPTED`) has ciphertext for
    // a body, which need not look like DER.
    let encrypted = memchr::memmem::find(candidate, b"4,ENCRYPTED").is_some();
    begin == end
        && begin.ends_with(b"PRIVATE KEY")
        && decode_base64(&body).is_some_and(|der| der.len() >= 32 && (encrypted || der[0] == 0x30))
}

fn openssh(candidate: &[u8]) -> bool {
    let Some((begin, end, body)) = pem_parts(candidate) else {
        return false;
    };
    begin == b"OPENSSH PRIVATE KEY"
        && end == begin
        && decode_base64(&body).is_some_and(|raw| raw.starts_with(b"openssh-key-v1\0"))
}

fn pgp(candidate: &[u8]) -> bool {
    let Some((begin, end, body)) = pem_parts(candidate) else {
        return false;
    };
    // A secret-key packet (tag 5) opens the block; its first byte is 0x95
    // or 0x94 in the old format, 0xc5 in the new.
    begin == b"PGP PRIVATE KEY BLOCK"
        && end == begin
        && decode_base64(&body)
            .is_some_and(|raw| raw.len() >= 32 && matches!(raw[0], 0x94..=0x97 | 0xc5))
}

fn jwt(candidate: &[u8]) -> bool {
    let mut parts = candidate.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |part: &[u8]| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
    };
    let object = |part: &[u8]| {
        decode(part)
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .and_then(|value| match value {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            })
    };
    let Some(header) = object(header) else {
        return false;
    };
    // An unsigned token (`alg: none`) grants nothing; one with a signature
    // does until it expires.
    header
        .get("alg")
        .and_then(|a| a.as_str())
        .is_some_and(|alg| alg != "none")
        && object(payload).is_some()
        && decode(signature).is_some_and(|s| s.len() >= 16)
}

fn secp256k1(candidate: &[u8]) -> bool {
    /// The order of the secp256k1 group, in lowercase hex.
    const ORDER: &[u8; 64] = b"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    let hex = candidate.strip_prefix(b"0x").unwrap_or(candidate);
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let lower: Vec<u8> = hex.iter().map(u8::to_ascii_lowercase).collect();
    // Equal widths: string order is numeric order.
    lower.iter().any(|&b| b != b'0') && lower.as_slice() < ORDER.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(validator: Validator, candidate: &str) -> bool {
        validator.check(candidate.as_bytes()).is_some()
    }

    #[test]
    fn keyward_vectors_pass_and_altered_ones_fail() {
        let vectors: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../keyward-core/tests/testdata/key-format-vectors.json"
        )))
        .unwrap();
        let good = vectors["valid"].as_array().unwrap();
        assert!(!good.is_empty());
        for v in good {
            let key = v["key"].as_str().unwrap();
            assert!(valid(Validator::Keyward, key), "{key}");
            let mut altered = key.as_bytes().to_vec();
            let last = altered.len() - 10;
            altered[last] = if altered[last] == b'a' { b'b' } else { b'a' };
            assert!(!valid(
                Validator::Keyward,
                std::str::from_utf8(&altered).unwrap()
            ));
        }
        for v in vectors["invalid"].as_array().unwrap() {
            let key = v["key"].as_str().unwrap();
            assert!(!valid(Validator::Keyward, key), "{key}");
        }
    }

    #[test]
    fn github_checksum_is_crc32_of_the_random_part_in_base62() {
        let random = "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123";
        let check = base62(crc32fast::hash(random.as_bytes()), 6);
        let token = format!("ghp_{random}{}", String::from_utf8(check).unwrap());
        assert!(valid(Validator::Github, &token));
        let mut wrong = token.clone().into_bytes();
        wrong[10] = b'Q';
        assert!(!valid(
            Validator::Github,
            std::str::from_utf8(&wrong).unwrap()
        ));
        assert!(!valid(
            Validator::Github,
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
        ));
    }

    #[test]
    fn base62_pads_and_orders_digits() {
        assert_eq!(base62(0, 6), b"000000");
        assert_eq!(base62(61, 6), b"00000z");
        assert_eq!(base62(62, 6), b"000010");
        assert_eq!(base62(u32::MAX, 6), b"4gfFC3");
    }

    #[test]
    fn aws_key_ids_need_a_known_kind_and_base32() {
        assert!(valid(Validator::AwsKeyId, "AKIAQYLPMN5HHHFPZAM2"));
        assert!(!valid(Validator::AwsKeyId, "AKIAQYLPMN5HHHFPZAM1")); // 1 is not base32
        assert!(!valid(Validator::AwsKeyId, "AXXAQYLPMN5HHHFPZAM2"));
    }

    #[test]
    fn wif_and_xprv_follow_base58check() {
        // The Bitcoin wiki's WIF example and BIP-32 test vector 1's master key.
        assert!(valid(
            Validator::Wif,
            "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"
        ));
        assert!(!valid(
            Validator::Wif,
            "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTK"
        ));
        let xprv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
        assert!(valid(Validator::Xprv, xprv));
        assert!(!valid(Validator::Xprv, &xprv.replace("Hi", "Hj")));
        // The public counterpart is not a secret.
        assert!(!valid(Validator::Xprv, "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"));
    }

    #[test]
    fn bip39_finds_the_valid_phrase_in_a_run_of_words() {
        let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        assert_eq!(
            Validator::Bip39.check(phrase.as_bytes()),
            Some(0..phrase.len())
        );
        let wrong = phrase.replace("about", "abandon");
        assert_eq!(Validator::Bip39.check(wrong.as_bytes()), None);
        // The BIP-39 24-word vector, with words around it that are not in
        // the list and a line break inside.
        let long = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title";
        let text = format!("seed zzz {}\n{} qqq", &long[..55], &long[56..]);
        let found = Validator::Bip39.check(text.as_bytes()).unwrap();
        assert_eq!(found, 9..9 + long.len());
        // The wordlist's own first 48 words hold 12-word windows whose
        // checksum passes by chance; a list is not a phrase.
        let list: Vec<&str> = bip39::Language::English.word_list()[..48].to_vec();
        assert_eq!(Validator::Bip39.check(list.join("\n").as_bytes()), None);
        // Letters beyond ASCII between the words split them, never a
        // character.
        let accented = phrase.replace(' ', " é ");
        assert_eq!(
            Validator::Bip39.check(accented.as_bytes()),
            Some(0..accented.len())
        );
    }

    #[test]
    fn secp256k1_scalars_must_be_in_range() {
        assert!(valid(
            Validator::Secp256k1,
            "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
        ));
        assert!(!valid(Validator::Secp256k1, &"0".repeat(64)));
        assert!(!valid(
            Validator::Secp256k1,
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        ));
    }

    #[test]
    fn jwt_needs_json_header_with_alg_and_a_signature() {
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert!(valid(Validator::Jwt, token));
        assert!(!valid(
            Validator::Jwt,
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."
        ));
        assert!(!valid(
            Validator::Jwt,
            "eyJub3Rqd3QiOjF9.eyJzdWIiOiIxIn0.abc"
        ));
    }

    #[test]
    fn pem_labels_must_agree_and_the_body_be_der() {
        let body = base64::engine::general_purpose::STANDARD.encode([0x30u8; 48]);
        let good = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----");
        assert!(valid(Validator::Pem, &good));
        let mismatched = good.replace("END PRIVATE", "END RSA PRIVATE");
        assert!(!valid(Validator::Pem, &mismatched));
        let escaped = good.replace('\n', "\\n");
        assert!(valid(Validator::Pem, &escaped));
        let not_der = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            base64::engine::general_purpose::STANDARD.encode([0x41u8; 48])
        );
        assert!(!valid(Validator::Pem, &not_der));
        assert!(!valid(
            Validator::Pem,
            "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----"
        ));
    }
}
