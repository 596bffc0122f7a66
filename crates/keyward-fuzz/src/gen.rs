//! Near-valid HTTP/1.1 messages built from a byte string read as a list of
//! choices: mostly well-formed pieces, with the spellings parsers are known
//! to read differently mixed in, and raw bytes anywhere.
//!
//! Every byte string builds some message (past its end every choice is the
//! first), so random bytes and a fuzzer's mutations both map onto it.

/// Choices read from a byte string.
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data, pos: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number below `n` (at most 256).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    /// Up to `max` bytes taken as they are.
    pub fn raw(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }
}

const METHODS: &[&str] = &[
    "POST", "GET", "POST", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "PRI",
    "get", "Post", "TRACE", "X-CUSTOM", "G\u{e9}T", "",
];

const TARGETS: &[&str] = &[
    "/v1/keys/verify",
    "/health",
    "/v1/keys/verify",
    "/health",
    "/",
    "/v1/orders?x=1",
    "/health?x=1",
    "/v1/keys/verify/",
    "/V1/keys/verify",
    "*",
    "http://example/health",
    "example:443",
    "/a/../health",
    "//v1//keys/verify",
    "/%76%31/keys",
    "/a%2fb",
    "/a#frag",
    "/a?b#c",
    "/a\"b",
    "/a{b}",
    "/a|b",
    "/a\\b",
    "/a?q=\"x\"",
    "/a?q={x}|y\\z^`",
    "/caf\u{e9}",
    "/a;b",
    "/a/.",
    "/a%00",
    "/a%zz",
];

const VERSIONS: &[&str] = &[
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/1.2",
    "HTTP/2.0",
    "http/1.1",
    "HTTP/11",
    "HTTP/1.1 ",
    "HTTP/1.",
];

const LINE_ENDS: &[&str] = &[
    "\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", " \r\n", "",
];

/// Header names, each with the values worth trying for it.
const HEADERS: &[(&str, &[&str])] = &[
    ("Content-Length", LENGTHS),
    ("content-length", LENGTHS),
    ("Transfer-Encoding", CODINGS),
    ("transfer-encoding", CODINGS),
    ("Connection", CONNECTION),
    ("connection", CONNECTION),
    ("Authorization", CREDENTIALS),
    ("X-Vault-Token", CREDENTIALS),
    ("X-API-Key", CREDENTIALS),
    ("Host", OTHER),
    ("Expect", EXPECT),
    ("Upgrade", OTHER),
    ("TE", CODINGS),
    ("Trailer", OTHER),
    ("Keep-Alive", OTHER),
    ("Proxy-Connection", CONNECTION),
    ("Content_Length", LENGTHS),
    ("Transfer_Encoding", CODINGS),
    ("X_Keyward_Owner", OTHER),
    ("X-Keyward-Key-Id", OTHER),
    ("X-Forwarded-For", FORWARDED),
    ("Forwarded", FORWARDED),
    ("X-Trace", OTHER),
    ("Content-Length ", LENGTHS),
    (" Content-Length", LENGTHS),
    ("Transfer-Encoding\t", CODINGS),
    ("Content\u{e9}", OTHER),
    ("", OTHER),
];

const LENGTHS: &[&str] = &[
    "2",
    "0",
    "1",
    "5",
    "12",
    "0005",
    "+5",
    "-1",
    "5, 5",
    "5,5",
    "5 5",
    "0x5",
    "5.0",
    "",
    "65536",
    "65537",
    "18446744073709551615",
    "18446744073709551614",
    "9999999999999999999",
    "99999999999999999999",
    "\u{663}",
];

const CODINGS: &[&str] = &[
    "chunked",
    "Chunked",
    "CHUNKED",
    "chunked ",
    "chunked, chunked",
    "gzip, chunked",
    "chunked, gzip",
    "identity",
    "chunked;q=1",
    "\"chunked\"",
    "chunke",
    "xchunked",
    ", chunked",
    "chunked\u{e9}",
    "trailers",
    "",
];

const CONNECTION: &[&str] = &[
    "close",
    "keep-alive",
    "Keep-Alive",
    "CLOSE",
    "close, keep-alive",
    "keep-alive, close",
    "keep-alive,close",
    ",close",
    "close,",
    "upgrade",
    "x-trace",
    "te",
    "close, \u{e9}",
    "keep-alive, \u{e9}",
    "keep-alive\u{b}",
    "",
];

const CREDENTIALS: &[&str] = &[
    "Bearer a",
    "Bearer  b ",
    "bearer c",
    "Bearer",
    "Bearer \u{e9}",
    "kw_test_abc",
    "",
];

const EXPECT: &[&str] = &["100-continue", "100-Continue", "200-ok", ""];

const FORWARDED: &[&str] = &["1.2.3.4", "for=1.2.3.4", "unknown", "\u{e9}"];

const OTHER: &[&str] = &["x", "a b", "h2c", "\u{e9}", "\t", "a\tb", ""];

const SEPARATORS: &[&str] = &[": ", ": ", ":", " : ", ":\t", ":  ", "::", " "];

/// Appends a request head and maybe a body to `out`. Half the requests
/// are tame — a plain route, HTTP/1.1, CRLF, well-known headers — with
/// oddities rarer, so that they reach what follows a successful parse.
pub fn request(choices: &mut Choices<'_>, out: &mut Vec<u8>) {
    let tame = choices.below(2) == 0;
    // Whether to try something odd, one time in `n` (rarer when tame).
    let odd =
        |choices: &mut Choices<'_>, n: usize| choices.below(if tame { 4 * n } else { n }) == 0;
    if odd(choices, 16) {
        out.extend_from_slice(b"\r\n");
    }
    let (method, target) = if tame && choices.below(4) != 0 {
        *choices.pick(&[("POST", "/v1/keys/verify"), ("GET", "/health")])
    } else {
        (*choices.pick(METHODS), *choices.pick(TARGETS))
    };
    if odd(choices, 16) {
        out.extend_from_slice(choices.raw(8));
    } else {
        out.extend_from_slice(method.as_bytes());
    }
    out.extend_from_slice(
        if odd(choices, 8) {
            choices.pick(&["  ", "\t", ""])
        } else {
            " "
        }
        .as_bytes(),
    );
    if odd(choices, 16) {
        out.push(b'/');
        out.extend_from_slice(choices.raw(12));
    } else {
        out.extend_from_slice(target.as_bytes());
    }
    out.extend_from_slice(
        if odd(choices, 8) {
            choices.pick(&["  ", "\t"])
        } else {
            " "
        }
        .as_bytes(),
    );
    let version = if odd(choices, 2) {
        choices.pick(VERSIONS)
    } else {
        "HTTP/1.1"
    };
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(line_end(choices, tame));
    let mut length = None;
    for _ in 0..choices.below(if tame { 5 } else { 9 }) {
        let (name, values) = if tame && choices.below(2) == 0 {
            *choices.pick(&HEADERS[..10])
        } else {
            *choices.pick(HEADERS)
        };
        if odd(choices, 24) {
            out.extend_from_slice(choices.raw(10));
        } else {
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(
            if odd(choices, 4) {
                choices.pick(SEPARATORS)
            } else {
                ": "
            }
            .as_bytes(),
        );
        let value = if odd(choices, 12) {
            choices.raw(10)
        } else if tame && choices.below(2) == 0 {
            values[0].as_bytes()
        } else {
            choices.pick(values).as_bytes()
        };
        out.extend_from_slice(value);
        if values == LENGTHS {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        }
        if odd(choices, 32) {
            // An obsolete line folding.
            out.extend_from_slice(b"\r\n folded");
        }
        out.extend_from_slice(line_end(choices, tame));
    }
    out.extend_from_slice(line_end(choices, tame));
    match choices.below(4) {
        0 => {}
        1 => {
            let n = length.unwrap_or(0).min(4096);
            out.resize(out.len() + n, b'x');
        }
        2 => chunked(choices, out),
        _ => out.extend_from_slice(choices.raw(24)),
    }
}

fn line_end(choices: &mut Choices<'_>, tame: bool) -> &'static [u8] {
    if choices.below(if tame { 16 } else { 4 }) == 0 {
        choices.pick(LINE_ENDS).as_bytes()
    } else {
        b"\r\n"
    }
}

const EXTENSIONS: &[&str] = &[
    ";a=b",
    "; a",
    " ;x",
    "\t;x",
    ";a=\"b;c\"",
    ";",
    ";\u{e9}",
    ";a\nb",
    ";a\rb",
    " ",
    "\t",
    " x",
    ";\u{1}",
    "\u{b};x",
];

const TRAILERS: &[&str] = &[
    "a: b",
    "X-Checksum: 1",
    "Content-Length: 5",
    "bad line",
    "a b: c",
    ":x",
    "a:\u{1}",
    "a: b\nc: d",
    "a: b\rc",
    "a\u{e9}: b",
    " a: b",
    "a: \u{e9}",
    "a:",
];

/// Appends a chunked body, maybe broken, to `out`.
pub fn chunked(choices: &mut Choices<'_>, out: &mut Vec<u8>) {
    for _ in 0..choices.below(5) {
        let size = match choices.below(8) {
            0 => 16 + choices.below(48),
            _ => 1 + choices.below(12),
        };
        let declared = match choices.below(24) {
            0 => size + 1,
            1 => size - 1,
            _ => size,
        };
        match choices.below(16) {
            0 => out.extend_from_slice(format!("{declared:X}").as_bytes()),
            1 => out.extend_from_slice(format!("000{declared:x}").as_bytes()),
            2 => out.extend_from_slice(format!("0x{declared:x}").as_bytes()),
            3 => out.extend_from_slice(format!(" {declared:x}").as_bytes()),
            4 => out.extend_from_slice(format!("{declared:016x}").as_bytes()),
            5 => out.extend_from_slice(b"ffffffffffffffffff"),
            6 => out.extend_from_slice(format!("+{declared:x}").as_bytes()),
            _ => out.extend_from_slice(format!("{declared:x}").as_bytes()),
        }
        if choices.below(4) == 0 {
            out.extend_from_slice(choices.pick(EXTENSIONS).as_bytes());
        }
        out.extend_from_slice(line_end(choices, true));
        if choices.below(16) == 0 {
            out.extend_from_slice(choices.raw(size));
        } else {
            out.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        }
        out.extend_from_slice(line_end(choices, true));
    }
    out.extend_from_slice(
        choices
            .pick(&["0", "0", "0", "00", "0;x", "000000000000000000", "0 "])
            .as_bytes(),
    );
    out.extend_from_slice(line_end(choices, true));
    for _ in 0..choices.below(3) {
        if choices.below(8) == 0 {
            out.extend_from_slice(choices.raw(12));
        } else {
            out.extend_from_slice(choices.pick(TRAILERS).as_bytes());
        }
        out.extend_from_slice(line_end(choices, true));
    }
    out.extend_from_slice(line_end(choices, true));
    if choices.below(8) == 0 {
        out.extend_from_slice(choices.raw(16));
    }
}
