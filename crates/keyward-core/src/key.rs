//! The API key format: `{prefix}_{env}_{body}{check}`.
//!
//! `body` is 32 bytes from the OS CSPRNG written as one big-endian base62
//! number of 43 digits; `check` is the CRC32 (IEEE) of everything before it,
//! in 6 base62 digits. The checksum lets scanners find keys without false
//! positives and lets the server refuse a mistyped or invented key before it
//! touches storage. Parsing is total: every input either yields a
//! [`ParsedKey`] or a [`KeyFormatError`] naming the cause, never a panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::base62;

// Defined with core's other errors; named here too, where it always was.
pub use crate::error::KeyFormatError;

/// Digits in a key body: 62^43 is the first power of 62 above 2^256.
pub const BODY_LEN: usize = 43;
/// Digits in the checksum: 62^6 is above 2^32.
pub const CHECK_LEN: usize = 6;
/// Longest prefix allowed.
pub const MAX_PREFIX_LEN: usize = 12;
/// Longest possible key: a 12-character prefix and the 4-character `live`/`test`.
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + 4 + 1 + BODY_LEN + CHECK_LEN;
/// Characters of a key kept for display ("the start"), enough to tell keys
/// apart in a list and far too few to guess the rest.
pub const DISPLAY_START_LEN: usize = 12;
/// The body of the largest 32-byte number, 2^256 − 1.
const MAX_BODY: &str = "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1";

/// The prefix of admin tokens, reserved: no API may use it.
pub const ADMIN_PREFIX: &str = "kwa";

/// The prefix of a signed-in user's session token.
pub const SESSION_PREFIX: &str = "kws";

/// An environment: keys of one never verify where another is required.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
    Dev,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Environment::Live, Environment::Test, Environment::Dev];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
            Environment::Dev => "dev",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = KeyFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            "dev" => Ok(Environment::Dev),
            _ => Err(KeyFormatError::BadEnvironment),
        }
    }
}

/// An API's key prefix: 1–12 characters of `[a-z0-9]`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        check_prefix(s)?;
        Ok(Prefix(s.to_owned()))
    }

    /// The prefix of admin tokens.
    pub fn admin() -> Self {
        Prefix(ADMIN_PREFIX.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of session tokens.
    pub fn session() -> Self {
        Prefix(SESSION_PREFIX.to_owned())
    }

    /// Whether this is a prefix Keyward keeps for its own tokens (admin and
    /// session), which no API may use.
    pub fn is_admin(&self) -> bool {
        self.0 == ADMIN_PREFIX || self.0 == SESSION_PREFIX
    }
}

impl TryFrom<String> for Prefix {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Prefix::parse(&s)
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which bytes may appear in a key: `0-9A-Za-z` and `_`.
static KEY_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// Which bytes are base62 digits.
static BASE62_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    table
};

/// Checks a prefix without allocating (verify runs this on every request).
fn check_prefix(s: &str) -> Result<(), KeyFormatError> {
    let valid_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if s.is_empty() || s.len() > MAX_PREFIX_LEN || !valid_chars {
        Err(KeyFormatError::BadPrefix)
    } else {
        Ok(())
    }
}

/// The plaintext of a key. It exists only between generation and the one
/// response that shows it, and between a verify request and its digest. No
/// `Debug`, `Display` or `Serialize`: showing it takes an explicit `expose`.
pub struct PlaintextKey(Zeroizing<String>);

impl PlaintextKey {
    /// Generates a new key for `prefix` and `environment` from the OS CSPRNG.
    pub fn generate(prefix: &Prefix, environment: Environment) -> Result<Self, getrandom::Error> {
        let mut body = Zeroizing::new([0u8; 32]);
        getrandom::fill(body.as_mut())?;
        Ok(Self::from_body(prefix, environment, &body))
    }

    /// Builds the key for a given body. Deterministic; used by generation and
    /// by known-answer tests.
    pub fn from_body(prefix: &Prefix, environment: Environment, body: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new(String::with_capacity(MAX_KEY_LEN));
        key.push_str(prefix.as_str());
        key.push('_');
        key.push_str(environment.as_str());
        key.push('_');
        // 43 digits always hold a 32-byte number, so encoding cannot fail;
        // the fallback keeps this function total without a panic path.
        let mut digits = base62::encode(body, BODY_LEN).unwrap_or_default();
        key.push_str(&digits);
        digits.zeroize();
        let check = checksum(key.as_bytes());
        key.push_str(&check);
        PlaintextKey(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(self.expose())
    }

    /// The first characters, stored and shown to tell keys apart.
    pub fn display_start(&self) -> String {
        self.0.chars().take(DISPLAY_START_LEN).collect()
    }
}

/// A key that passed the format check, borrowed from the caller's input.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    text: &'a str,
    prefix: &'a str,
    environment: Environment,
}

impl<'a> ParsedKey<'a> {
    /// Checks the shape, alphabet, body range and checksum of `text`.
    pub fn parse(text: &'a str) -> Result<Self, KeyFormatError> {
        if text.len() > MAX_KEY_LEN {
            return Err(KeyFormatError::TooLong);
        }
        // One table lookup per byte, no branches in the loop.
        if !text
            .bytes()
            .fold(true, |ok, b| ok & KEY_CHAR[usize::from(b)])
        {
            return Err(KeyFormatError::BadCharacter);
        }
        // Shape by hand rather than with `split`: this runs on every verify.
        let bytes = text.as_bytes();
        let Some(cut) = bytes.iter().position(|&b| b == b'_') else {
            return Err(KeyFormatError::BadShape);
        };
        let prefix = &text[..cut];
        check_prefix(prefix)?;
        let rest = &bytes[cut + 1..];
        let (environment, env_len) = if rest.starts_with(b"live_") {
            (Environment::Live, 5)
        } else if rest.starts_with(b"test_") {
            (Environment::Test, 5)
        } else if rest.starts_with(b"dev_") {
            (Environment::Dev, 4)
        } else if rest.contains(&b'_') {
            return Err(KeyFormatError::BadEnvironment);
        } else {
            return Err(KeyFormatError::BadShape);
        };
        let tail = &text[cut + 1 + env_len..];
        if tail.len() != BODY_LEN + CHECK_LEN
            || !tail
                .bytes()
                .fold(true, |ok, b| ok & BASE62_CHAR[usize::from(b)])
        {
            return Err(KeyFormatError::BadShape);
        }
        let (body, check) = tail.split_at(BODY_LEN);
        // Fixed width and an alphabet in ASCII order make string order the
        // numeric order, so the range check is a comparison, not a decode.
        // The alphabet itself was checked above except for `_`, excluded by
        // the shape check.
        if body.as_bytes() > MAX_BODY.as_bytes() {
            return Err(KeyFormatError::BadBody);
        }
        let signed = &text[..text.len() - CHECK_LEN];
        if checksum_digits(signed.as_bytes()) != check.as_bytes() {
            return Err(KeyFormatError::BadChecksum);
        }
        Ok(ParsedKey {
            text,
            prefix,
            environment,
        })
    }

    pub fn prefix(&self) -> &'a str {
        self.prefix
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(self.text)
    }
}

/// What stands in a message or a log line where a key or token was.
pub const REDACTED_KEY: &str = "[redacted key]";

/// The byte ranges of every well-formed key or admin token inside `text`,
/// in order and not overlapping. A candidate counts only when
/// [`ParsedKey::parse`] accepts it, checksum included, so ordinary words
/// with underscores are never taken for keys.
pub fn find_keys(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    // A key cannot start inside the one found before it.
    let mut floor = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'_' || i == 0 {
            i += 1;
            continue;
        }
        let rest = &bytes[i + 1..];
        let env_len = if rest.starts_with(b"live_") || rest.starts_with(b"test_") {
            5
        } else if rest.starts_with(b"dev_") {
            4
        } else {
            i += 1;
            continue;
        };
        let end = i + 1 + env_len + BODY_LEN + CHECK_LEN;
        let lowest = i.saturating_sub(MAX_PREFIX_LEN).max(floor);
        let hit = (lowest..i).find(|&start| {
            text.get(start..end)
                .is_some_and(|candidate| ParsedKey::parse(candidate).is_ok())
        });
        match hit {
            Some(start) => {
                found.push(start..end);
                floor = end;
                i = end;
            }
            None => i += 1,
        }
    }
    found
}

/// Whether `text` holds a well-formed key or admin token anywhere.
pub fn contains_key(text: &str) -> bool {
    !find_keys(text).is_empty()
}

/// `text` with every well-formed key or admin token in it replaced by
/// [`REDACTED_KEY`]; borrowed unchanged when it holds none.
pub fn redact_keys(text: &str) -> std::borrow::Cow<'_, str> {
    let found = find_keys(text);
    if found.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in found {
        out.push_str(&text[at..range.start]);
        out.push_str(REDACTED_KEY);
        at = range.end;
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

/// CRC32 (IEEE) of `signed` in six base62 digits.
fn checksum(signed: &[u8]) -> String {
    // The digits are from the base62 alphabet, which is ASCII.
    String::from_utf8_lossy(&checksum_digits(signed)).into_owned()
}

/// The checksum digits without allocating: this runs on every verify.
fn checksum_digits(signed: &[u8]) -> [u8; CHECK_LEN] {
    let mut crc = crc32fast::hash(signed);
    let mut digits = [b'0'; CHECK_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = base62::ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    digits
}

/// SHA-256 of a key's full text: the only form in which a key is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    pub fn of(key: &str) -> Self {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        KeyDigest(bytes)
    }

    /// Reads a digest from storage; `None` if it is not 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(KeyDigest)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality, so a timing side channel cannot reveal how
    /// much of a digest matched.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not secret, but there is no reason to print it whole.
        write!(f, "KeyDigest({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str, env: Environment, body: [u8; 32]) -> String {
        let prefix = Prefix::parse(prefix).unwrap();
        PlaintextKey::from_body(&prefix, env, &body)
            .expose()
            .to_owned()
    }

    #[test]
    fn keys_inside_text_are_found_and_redacted() {
        let live = key("tm", Environment::Live, [7; 32]);
        let admin = key(ADMIN_PREFIX, Environment::Live, [9; 32]);
        let text = format!("a {live}, `x{admin}` and /v1/keys/{live}z end");
        let redacted = redact_keys(&text);
        assert_eq!(
            redacted,
            format!("a {REDACTED_KEY}, `x{REDACTED_KEY}` and /v1/keys/{REDACTED_KEY}z end")
        );
        assert!(contains_key(&live));
        // A near miss (one character changed) fails its checksum and stays.
        let mut typo = live.clone();
        typo.replace_range(10..11, if &live[10..11] == "A" { "B" } else { "A" });
        assert!(!contains_key(&typo));
        assert!(!contains_key("snake_live_case and_test_words under_dev_"));
        assert_eq!(redact_keys("nothing here"), "nothing here");
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let prefix = Prefix::parse("tm").unwrap();
        let k = PlaintextKey::generate(&prefix, Environment::Live).unwrap();
        assert!(k.expose().starts_with("tm_live_"));
        assert_eq!(k.expose().len(), "tm_live_".len() + BODY_LEN + CHECK_LEN);
        assert!(ParsedKey::parse(k.expose()).is_ok());
        assert_eq!(k.display_start(), &k.expose()[..12]);
    }

    #[test]
    fn every_cause_is_named() {
        let valid = key("tm", Environment::Live, [7; 32]);
        let cases: Vec<(String, KeyFormatError)> = vec![
            (format!("{valid}x"), KeyFormatError::BadShape),
            ("x".repeat(MAX_KEY_LEN + 1), KeyFormatError::TooLong),
            (valid.replace("tm_", "tm-"), KeyFormatError::BadCharacter),
            ("tm_live".into(), KeyFormatError::BadShape),
            (valid.replace("tm_", "_"), KeyFormatError::BadPrefix),
            (
                valid.replace("_live_", "_prod_"),
                KeyFormatError::BadEnvironment,
            ),
            (valid.replacen('_', "__", 2), KeyFormatError::BadEnvironment),
        ];
        for (input, expected) in cases {
            assert_eq!(ParsedKey::parse(&input).err(), Some(expected), "{input}");
        }
    }

    #[test]
    fn the_body_limit_is_the_largest_32_byte_number() {
        assert_eq!(
            base62::encode(&[0xff; 32], BODY_LEN).as_deref(),
            Some(MAX_BODY)
        );
        let max = key("tm", Environment::Live, [0xff; 32]);
        assert!(ParsedKey::parse(&max).is_ok());
    }

    #[test]
    fn digests_compare_in_constant_time_and_correctly() {
        let a = KeyDigest::of("a");
        assert!(a.ct_eq(&KeyDigest::of("a")));
        assert!(!a.ct_eq(&KeyDigest::of("b")));
    }
}
