//! Request paths, normalised once so that the route a request matches and
//! the path the upstream receives are the same string.
//!
//! Normalisation follows RFC 3986 §6.2.2: escapes of unreserved characters
//! are decoded, the hex digits of the other escapes are upper-cased, dot
//! segments are removed (§5.2.4) and, beyond the RFC, runs of `/` are merged
//! into one, as most servers do. Raw non-ASCII characters are
//! percent-encoded. What servers are known to read in different ways is not
//! normalised but refused ([`BadPath`]): escaped separators, control
//! characters, escapes that do not decode to UTF-8, path parameters,
//! double encoding, fragments, and segments that end in a dot or a space.
//!
//! Paths are case-sensitive (RFC 3986 §6.2.2.1): only the hex digits of an
//! escape change case.

use std::fmt::Write as _;

/// Why a request path cannot be normalised safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// `%2F`, `%5C` or a literal `\`: a segment boundary that one server
    /// sees and the next does not.
    EncodedSeparator,
    /// `%00` or another control character (encoded; raw ones never parse).
    Control,
    /// Escapes that do not decode to UTF-8.
    InvalidUtf8,
    /// `;`, literal or encoded: path parameters, which servers such as
    /// Tomcat strip before routing (`/prices/..;/admin`).
    Parameters,
    /// `%25` followed by two hex digits: an escape that a server decoding
    /// twice reads as another character.
    DoubleEncoded,
    /// A `#`, which has no place in a request target.
    Fragment,
    /// A segment ending in `.` or a space, which Windows servers strip
    /// (`/admin.`, `/admin%20`).
    TrailingDotOrSpace,
    /// A raw `<`, `>` or `` ` `` in the path, or `"`, `<` or `>` in the
    /// query: characters a URI cannot hold unescaped, which some servers
    /// (hyper) refuse and others take.
    Unescaped,
}

impl BadPath {
    pub fn message(self) -> &'static str {
        match self {
            BadPath::InvalidEscape => "the path has a % not followed by two hex digits",
            BadPath::EncodedSeparator => "the path has an encoded / or \\, or a literal \\",
            BadPath::Control => "the path has a control character",
            BadPath::InvalidUtf8 => "the path's escapes do not decode to UTF-8",
            BadPath::Parameters => "the path has a ; (path parameters are not accepted)",
            BadPath::DoubleEncoded => "the path has a double-encoded escape (%25 and hex digits)",
            BadPath::Fragment => "the request target has a #",
            BadPath::TrailingDotOrSpace => "a path segment ends in a dot or a space",
            BadPath::Unescaped => "the request target has a character that must be escaped",
        }
    }
}

/// Writes the normalised form of `path` (which starts with `/` and holds no
/// query) to `out`, which is cleared first.
pub fn normalize(path: &str, out: &mut String) -> Result<(), BadPath> {
    out.clear();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        out.push('/');
        push_segment(segment, out)?;
        match &out[start + 1..] {
            // `//` is merged; at the end it is the trailing slash.
            "" if !last => out.truncate(start),
            "" => {}
            "." => out.truncate(start + usize::from(last)),
            ".." => {
                out.truncate(start);
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                if last {
                    out.push('/');
                }
            }
            text if text.ends_with('.') || text.ends_with("%20") => {
                return Err(BadPath::TrailingDotOrSpace);
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(())
}

/// Appends the normalised form of one segment.
fn push_segment(segment: &str, out: &mut String) -> Result<(), BadPath> {
    let bytes = segment.as_bytes();
    let mut utf8 = Utf8::default();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let byte = escape(bytes, i).ok_or(BadPath::InvalidEscape)?;
                i += 3;
                if is_unreserved(byte) {
                    utf8.ascii()?;
                    out.push(char::from(byte));
                    continue;
                }
                match byte {
                    b'/' | b'\\' => return Err(BadPath::EncodedSeparator),
                    b';' => return Err(BadPath::Parameters),
                    b'%' if bytes[i..]
                        .iter()
                        .take(2)
                        .filter(|b| b.is_ascii_hexdigit())
                        .count()
                        == 2 =>
                    {
                        return Err(BadPath::DoubleEncoded);
                    }
                    0..0x20 | 0x7f => return Err(BadPath::Control),
                    _ => {}
                }
                if byte < 0x80 {
                    utf8.ascii()?;
                } else {
                    utf8.byte(byte)?;
                }
                // Infallible: writing to a String.
                let _ = write!(out, "%{byte:02X}");
                continue;
            }
            b'\\' => return Err(BadPath::EncodedSeparator),
            b';' => return Err(BadPath::Parameters),
            b'#' => return Err(BadPath::Fragment),
            0..0x20 | 0x7f => return Err(BadPath::Control),
            b'<' | b'>' | b'`' => return Err(BadPath::Unescaped),
            0x80.. => {
                // A raw character: valid UTF-8 by itself, since `segment` is
                // a `str`; sent on encoded.
                utf8.ascii()?;
                let width = segment[i..].chars().next().map_or(1, char::len_utf8);
                for &byte in &bytes[i..i + width] {
                    let _ = write!(out, "%{byte:02X}");
                }
                i += width;
                continue;
            }
            _ => {
                utf8.ascii()?;
                out.push(char::from(b));
            }
        }
        i += 1;
    }
    utf8.end()
}

/// The byte escaped at `at` (`%` and two hex digits), if it is one.
fn escape(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let high = hex(*bytes.get(at + 1)?)?;
    let low = hex(*bytes.get(at + 2)?)?;
    u8::try_from(high * 16 + low).ok()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks that the bytes escapes decode to form UTF-8, one sequence at a
/// time, without gathering them.
#[derive(Default)]
struct Utf8 {
    pending: [u8; 4],
    have: usize,
    need: usize,
}

impl Utf8 {
    /// A byte below 0x80 (decoded or raw) comes next.
    fn ascii(&mut self) -> Result<(), BadPath> {
        if self.have == 0 {
            Ok(())
        } else {
            Err(BadPath::InvalidUtf8)
        }
    }

    /// A decoded byte of 0x80 or above comes next.
    fn byte(&mut self, byte: u8) -> Result<(), BadPath> {
        if self.have == 0 {
            self.need = match byte {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return Err(BadPath::InvalidUtf8),
            };
        }
        self.pending[self.have] = byte;
        self.have += 1;
        if self.have == self.need {
            std::str::from_utf8(&self.pending[..self.have]).map_err(|_| BadPath::InvalidUtf8)?;
            self.have = 0;
        }
        Ok(())
    }

    fn end(&self) -> Result<(), BadPath> {
        if self.have == 0 {
            Ok(())
        } else {
            Err(BadPath::InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(path: &str, expected: Result<&str, BadPath>) {
        let mut out = String::new();
        let got = normalize(path, &mut out).map(|()| out.as_str());
        assert_eq!(got, expected, "{path:?}");
    }

    #[test]
    fn paths_are_normalised_as_rfc_3986_says() {
        for (path, expected) in [
            ("/", "/"),
            ("/v1/prices", "/v1/prices"),
            ("/v1/prices/", "/v1/prices/"),
            ("/v1/prices/../admin", "/v1/admin"),
            ("/v1/prices/%2e%2e/admin", "/v1/admin"),
            ("/v1/prices/%2E./admin", "/v1/admin"),
            ("/v1/prices/.%2e/admin", "/v1/admin"),
            ("/v1/./prices", "/v1/prices"),
            ("/v1/prices/.", "/v1/prices/"),
            ("/v1/prices/..", "/v1/"),
            ("/..", "/"),
            ("/../../v1/admin", "/v1/admin"),
            ("//v1//admin", "/v1/admin"),
            ("///", "/"),
            ("/v1/%61dmin", "/v1/admin"),
            ("/v1/%7Euser%2d%5F", "/v1/~user-_"),
            ("/V1/ADMIN", "/V1/ADMIN"),
            ("/v1/a%2bb", "/v1/a%2Bb"),
            ("/v1/caf%c3%a9", "/v1/caf%C3%A9"),
            ("/v1/café", "/v1/caf%C3%A9"),
            ("/v1/a%20b", "/v1/a%20b"),
            ("/v1/100%25", "/v1/100%25"),
            ("/v1/1.5/x", "/v1/1.5/x"),
        ] {
            check(path, Ok(expected));
        }
    }

    #[test]
    fn paths_servers_read_differently_are_refused() {
        for (path, why) in [
            ("/v1/admin%2f", BadPath::EncodedSeparator),
            ("/v1/prices/..%2fadmin", BadPath::EncodedSeparator),
            ("/v1/prices/..%2Fadmin", BadPath::EncodedSeparator),
            ("/v1/prices/..%5cadmin", BadPath::EncodedSeparator),
            ("/v1/prices/..\\admin", BadPath::EncodedSeparator),
            ("/v1/admin%00", BadPath::Control),
            ("/v1/admin%0a", BadPath::Control),
            ("/v1/admin%7f", BadPath::Control),
            ("/v1/admin%", BadPath::InvalidEscape),
            ("/v1/admin%4", BadPath::InvalidEscape),
            ("/v1/admin%g1", BadPath::InvalidEscape),
            ("/v1/admin%ff", BadPath::InvalidUtf8),
            ("/v1/admin%c3", BadPath::InvalidUtf8),
            ("/v1/admin%c3x", BadPath::InvalidUtf8),
            ("/v1/%c0%af", BadPath::InvalidUtf8),
            ("/v1/%ed%a0%80", BadPath::InvalidUtf8),
            ("/v1/admin;x=1", BadPath::Parameters),
            ("/v1/prices/..;/admin", BadPath::Parameters),
            ("/v1/admin%3b", BadPath::Parameters),
            ("/v1/%2561dmin", BadPath::DoubleEncoded),
            ("/v1/prices#/../admin", BadPath::Fragment),
            ("/v1/admin.", BadPath::TrailingDotOrSpace),
            ("/v1/admin%2e", BadPath::TrailingDotOrSpace),
            ("/v1/admin%20", BadPath::TrailingDotOrSpace),
            ("/v1/admin.%20/x", BadPath::TrailingDotOrSpace),
            ("/v1/.../admin", BadPath::TrailingDotOrSpace),
        ] {
            check(path, Err(why));
        }
    }

    /// Characters a fuzzed path is built from: the tricky ones often.
    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2f".to_owned()),
            Just("%25".to_owned()),
            Just("%c3%a9".to_owned()),
            Just("%".to_owned()),
            Just(";".to_owned()),
            Just(" ".to_owned()),
            Just("%20".to_owned()),
            Just("é".to_owned()),
            "[a-zA-Z0-9_~-]{1,4}",
            "%[0-9a-fA-F]{2}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest! {
        #[test]
        fn normalised_paths_are_stable_and_clean(path in path_strategy()) {
            let mut once = String::new();
            if normalize(&path, &mut once).is_ok() {
                let mut twice = String::new();
                prop_assert_eq!(normalize(&once, &mut twice), Ok(()));
                prop_assert_eq!(&twice, &once);
                prop_assert!(once.starts_with('/'));
                prop_assert!(!once.contains("//"), "{}", once);
                for segment in once.split('/') {
                    prop_assert!(segment != "." && segment != "..", "{}", once);
                }
                let upper = once.to_ascii_uppercase();
                prop_assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{}", once);
                prop_assert!(!upper.contains("%2E"), "{}", once);
                prop_assert!(once.is_ascii(), "{}", once);
            }
        }

        #[test]
        fn any_text_is_normalised_or_refused(path in "/\\PC{0,40}") {
            let mut out = String::new();
            let _ = normalize(&path, &mut out);
        }
    }
}
