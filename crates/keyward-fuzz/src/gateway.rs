//! The gateway's request heads against hyper's server, and the head it
//! writes for the upstream against `httparse` and hyper.
//!
//! Property: whenever `keyward_gateway_head::parse_request` accepts a head,
//! hyper, given the same head, a body as the gateway frames it and one
//! more request, reads the same method and version, the same framing
//! (`Content-Length` n, chunked or none), the same body, and then the next
//! request exactly when the gateway keeps the connection open — so the two
//! agree on where the request ends. The head written for the upstream
//! parses, with `httparse` and with hyper (with the headers the relay adds
//! after it), to the same method, the path the gateway chose, and the same
//! framing, and carries no header the gateway must not forward.

use keyward_gateway_head::{parse_request, ForwardedHeader, Framing, HeadConfig, RequestHead};

use crate::gen::{self, Choices};
use crate::hyper_read::{self, End, HyperRead};
use crate::NEXT;

/// A chunked body to send when the gateway reads chunked framing, and what
/// it holds.
const CHUNKED: &[u8] = b"3\r\nabc\r\n0\r\n\r\n";
const CHUNKED_BODY: &[u8] = b"abc";
/// Bodies longer than this are not sent whole: hyper's framing is then
/// told by the length it announces.
const MAX_SENT_BODY: u64 = 64 * 1024;

/// Checks one input. Its first byte chooses raw bytes or a generated
/// request (bit 0), whether header names with `_` are accepted (bit 1),
/// the forwarding header (bit 2) and the base path (bit 3).
pub fn check(data: &[u8]) {
    let (flags, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let config = HeadConfig {
        base_path: if flags & 8 == 0 {
            String::new()
        } else {
            "/base".into()
        },
        host: "upstream:8080".into(),
        underscores_in_headers: flags & 2 != 0,
        forwarded_header: if flags & 4 == 0 {
            ForwardedHeader::XForwardedFor
        } else {
            ForwardedHeader::Forwarded
        },
        otp_header: Some("x-keyward-otp".into()),
    };
    if flags & 1 == 1 {
        let mut request = Vec::new();
        gen::request(&mut Choices::new(rest), &mut request);
        check_request(&request, &config);
    } else {
        check_request(rest, &config);
    }
}

/// Checks the request at the start of `data` under `config`.
pub fn check_request(data: &[u8], config: &HeadConfig) {
    let (mut key, mut otp, mut target, mut forwarded, mut out) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        Vec::new(),
    );
    let Ok(Some(head)) = parse_request(
        data,
        config,
        &mut key,
        &mut otp,
        &mut target,
        &mut forwarded,
        &mut out,
    ) else {
        return;
    };
    let head_bytes = &data[..head.len];
    client_side(head_bytes, &head);
    upstream_side(&out, &head, &format!("{}{target}", config.base_path));
}

/// What the relay writes after the head `parse_request` rewrites
/// ([`keyward_gateway_head::ADDED_HEADERS`] of them), and the end of the
/// head.
const ADDED: &[u8] = b"x-keyward-key-id: k\r\nx-keyward-owner: o\r\nx-keyward-scopes: s\r\n\
    x-forwarded-for: 192.0.2.1\r\nforwarded: for=192.0.2.1\r\n\r\n";

/// The body to send after a head of `framing`, what hyper must read of it,
/// and whether it is sent whole.
fn body_for(framing: Framing) -> (Vec<u8>, Vec<u8>, bool) {
    match framing {
        Framing::Empty | Framing::UntilClose => (Vec::new(), Vec::new(), true),
        Framing::Chunked => (CHUNKED.to_vec(), CHUNKED_BODY.to_vec(), true),
        Framing::Length(n) if n <= MAX_SENT_BODY => {
            let body = vec![b'b'; n as usize];
            (body.clone(), body, true)
        }
        Framing::Length(_) => (vec![b'b'; 16], vec![b'b'; 16], false),
    }
}

/// hyper's reading of `head` followed by a body of `framing` and [`NEXT`].
fn read_with_body(head: &[u8], framing: Framing) -> (Vec<u8>, HyperRead, Vec<u8>, bool) {
    let (body, expected, whole) = body_for(framing);
    let mut message = head.to_vec();
    message.extend_from_slice(&body);
    if whole {
        message.extend_from_slice(NEXT);
    }
    let read = hyper_read::read(&message, usize::MAX, false);
    (message, read, expected, whole)
}

fn assert_framing(framing: Framing, read: &HyperRead, context: &dyn Fn() -> String) {
    let seen = &read.requests[0];
    match framing {
        Framing::Empty => assert_eq!(seen.exact, Some(0), "no body: {}", context()),
        Framing::Length(n) => assert_eq!(seen.exact, Some(n), "length: {}", context()),
        Framing::Chunked => {
            assert_eq!(seen.exact, None, "chunked: {}", context());
            let chunked = seen
                .headers
                .get_all("transfer-encoding")
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            assert!(chunked, "chunked: {}", context());
        }
        Framing::UntilClose => panic!("a request framed until close: {}", context()),
    }
}

fn client_side(head_bytes: &[u8], head: &RequestHead) {
    let (message, read, expected, whole) = read_with_body(head_bytes, head.framing);
    let context = || {
        format!(
            "{:?}\ngateway: {head:?}\nhyper: {read:?}",
            String::from_utf8_lossy(&message)
        )
    };
    assert!(
        !read.requests.is_empty(),
        "hyper read no request: {}",
        context()
    );
    let seen = &read.requests[0];
    assert_eq!(seen.method, head.method, "method: {}", context());
    let version = if head.http10 {
        hyper::Version::HTTP_10
    } else {
        hyper::Version::HTTP_11
    };
    assert_eq!(seen.version, version, "version: {}", context());
    assert_framing(head.framing, &read, &context);
    assert_eq!(seen.body, expected, "body: {}", context());
    assert!(seen.body_error.is_none(), "body: {}", context());
    if !whole {
        assert!(!seen.complete && read.end == End::Waiting, "{}", context());
        return;
    }
    assert!(seen.complete, "body: {}", context());
    if head.keep_alive {
        assert_eq!(read.requests.len(), 2, "keep-alive: {}", context());
        assert_eq!(read.requests[1].target, "/__next", "next: {}", context());
        assert_eq!(read.end, End::Waiting, "keep-alive: {}", context());
    } else {
        assert_eq!(read.requests.len(), 1, "close: {}", context());
        assert_eq!(read.end, End::Closed, "close: {}", context());
    }
}

/// Request headers the gateway writes itself or must never forward, as
/// names read with `_` as `-`.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-forwarded-for",
    "forwarded",
];

fn upstream_side(rewritten: &[u8], head: &RequestHead, path: &str) {
    let upstream = &[rewritten, b"\r\n"].concat();
    let text = || String::from_utf8_lossy(upstream).into_owned();
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(upstream) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, upstream.len(), "{:?}", text()),
        other => panic!("the upstream head does not parse: {other:?}: {:?}", text()),
    }
    assert_eq!(request.method, Some(head.method.as_str()), "{:?}", text());
    assert_eq!(request.path, Some(path), "{:?}", text());
    assert_eq!(request.version, Some(1), "{:?}", text());
    let mut lengths = Vec::new();
    let mut codings = Vec::new();
    let mut hosts = 0;
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase().replace('_', "-");
        assert!(
            !name.starts_with("x-keyward-") && !NOT_FORWARDED.contains(&name.as_str()),
            "{name} forwarded: {:?}",
            text()
        );
        match name.as_str() {
            "content-length" => lengths.push(header.value),
            "transfer-encoding" => codings.push(header.value),
            "host" => hosts += 1,
            _ => {}
        }
    }
    assert_eq!(hosts, 1, "{:?}", text());
    let framing_ok = match head.framing {
        Framing::Empty => codings.is_empty() && (lengths.is_empty() || lengths == [b"0"]),
        Framing::Length(n) => codings.is_empty() && lengths == [n.to_string().as_bytes()],
        Framing::Chunked => lengths.is_empty() && codings == [b"chunked"],
        Framing::UntilClose => false,
    };
    assert!(framing_ok, "framing {:?}: {:?}", head.framing, text());

    let sent = [rewritten, ADDED].concat();
    let (message, read, expected, whole) = read_with_body(&sent, head.framing);
    let context = || format!("{:?}\nhyper: {read:?}", String::from_utf8_lossy(&message));
    assert!(
        !read.requests.is_empty(),
        "hyper read no request upstream: {}",
        context()
    );
    let seen = &read.requests[0];
    assert_eq!(seen.method, head.method, "{}", context());
    assert_eq!(seen.target, path, "{}", context());
    assert_framing(head.framing, &read, &context);
    assert_eq!(seen.body, expected, "{}", context());
    if whole {
        assert_eq!(read.requests.len(), 2, "{}", context());
        assert_eq!(read.requests[1].target, "/__next", "{}", context());
    }
}
