//! What Keyward's gateway reads and writes of HTTP/1.1 message heads:
//! request heads parsed with `httparse`, their paths normalised ([`path`]),
//! their headers filtered and rewritten straight into the head sent
//! upstream, and upstream response heads read the same way. Bodies are
//! relayed by `keyward_net::body`, by the [`Framing`] found here.
//!
//! Framing is strict, because a proxy and its upstream must agree on where
//! each message ends (request smuggling, RFC 9112 §11.2): a request with
//! both `Transfer-Encoding` and `Content-Length`, with a transfer coding
//! other than `chunked`, or with several different lengths is refused, and
//! chunk-size lines must end in CRLF. A request body is always sent upstream
//! either with its exact `Content-Length` or re-chunked, never as the client
//! framed it.
//!
//! Invariant: no I/O, and nothing here depends on the rest of the gateway,
//! so the parsers can be fuzzed against hyper cheaply (`keyward-fuzz`).

#![forbid(unsafe_code)]

pub mod path;

use std::mem::MaybeUninit;

use hyper::Method;
pub use keyward_net::body::Framing;
use keyward_net::write::{push_decimal, push_header};
use serde::Deserialize;

use path::BadPath;

/// Most headers a message head may have.
const MAX_HEADERS: usize = 100;
/// Most headers the head sent upstream may have: hyper's limit, and so
/// that of many upstreams.
pub const MAX_UPSTREAM_HEADERS: usize = 100;
/// Headers the relay writes after the head [`parse_request`] rewrites: the
/// three identity headers and the two forwarding headers.
pub const ADDED_HEADERS: usize = 5;
/// Largest message head, request or response.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Not HTTP/1.x, or an invalid head.
    Malformed,
    /// More than [`MAX_HEADERS`] headers, or more forwarded than the head
    /// sent upstream can carry beside the gateway's own.
    TooManyHeaders,
    /// Conflicting or unsupported body framing.
    Framing,
    /// A request target that is not a path.
    Target,
    /// A path that cannot be normalised safely.
    Path(BadPath),
    /// A header name with `_`, refused unless `underscores_in_headers`.
    Underscore,
}

/// How request heads are read and rewritten for the upstream.
#[derive(Debug, Clone)]
pub struct HeadConfig {
    /// Prefixed to every path sent upstream.
    pub base_path: String,
    /// Sent as `Host`.
    pub host: String,
    /// Whether header names with `_` are accepted (and forwarded unless,
    /// read with `-`, they name a header the relay handles itself).
    pub underscores_in_headers: bool,
    /// The forwarding header whose values are gathered.
    pub forwarded_header: ForwardedHeader,
    /// The header, lower-case, that carries the key owner's one-time code
    /// for critical scopes: read, and never sent upstream.
    pub otp_header: Option<String>,
}

/// The header trusted proxies write the client's address to. Only one is
/// read: a proxy that writes one passes the other on as the client sent it,
/// and its rightmost entry is then the client's own choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`, as nginx and most load
    /// balancers write it.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

/// What the relay needs to know of a client's request; its head, rewritten
/// for the upstream, is in the `out` buffer given to [`parse_request`].
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    /// Length of the head in the client's buffer.
    pub len: usize,
    pub framing: Framing,
    /// Whether the client wants the connection kept open after this.
    pub keep_alive: bool,
    pub http10: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before the body.
    pub expect_continue: bool,
    /// End of the normalised path within `target` (where the query
    /// begins).
    pub path_end: usize,
    /// Whether a key header was sent (its text, maybe empty, is in `key`).
    pub has_key: bool,
}

/// Request headers the relay handles itself rather than copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Copied to the upstream as is.
    Plain,
    /// Hop-by-hop, the client's identity forgeries and `Host`: dropped.
    Dropped,
    Authorization,
    ApiKey,
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
    /// `X-Forwarded-For` or `Forwarded`: read when it is the configured
    /// one, and written anew by the gateway, never copied.
    ForwardedFor,
    Forwarded,
}

/// Client headers named like the identity the gateway sets.
const IDENTITY_PREFIX: &str = "x-keyward-";

fn classify_request_header(name: &str) -> Special {
    let is = |other: &str| name.eq_ignore_ascii_case(other);
    match name.len() {
        2 if is("te") => Special::Dropped,
        4 if is("host") => Special::Dropped,
        6 if is("expect") => Special::Expect,
        7 if is("upgrade") || is("trailer") => Special::Dropped,
        9 if is("x-api-key") => Special::ApiKey,
        12 if is("x-mbx-apikey") => Special::ApiKey,
        9 if is("forwarded") => Special::Forwarded,
        10 if is("connection") => Special::Connection,
        10 if is("keep-alive") => Special::Dropped,
        13 if is("authorization") => Special::Authorization,
        14 if is("content-length") => Special::ContentLength,
        15 if is("x-forwarded-for") => Special::ForwardedFor,
        17 if is("transfer-encoding") => Special::TransferEncoding,
        16 | 19 if is("proxy-connection") || is("proxy-authorization") => Special::Dropped,
        18 if is("proxy-authenticate") => Special::Dropped,
        _ if name
            .get(..IDENTITY_PREFIX.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(IDENTITY_PREFIX)) =>
        {
            Special::Dropped
        }
        _ => Special::Plain,
    }
}

/// A header name with `_`, when such names are accepted: read with `-` for
/// `_`, as CGI, WSGI, PHP and many frameworks read it, a name the relay
/// handles itself (the identity, the key, framing, forwarding) is dropped,
/// so that it cannot pass for the real one upstream; others are copied.
fn classify_underscored(name: &str) -> Special {
    let dashed = name.replace('_', "-");
    match classify_request_header(&dashed) {
        Special::Plain => Special::Plain,
        _ => Special::Dropped,
    }
}

/// Whether a comma-separated header value lists `token`.
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `Connection` values name `header` (so it is hop-by-hop).
fn named_by_connection(connection: &[&[u8]], header: &str) -> bool {
    connection.iter().any(|value| lists(value, header))
}

/// Whether a message with these `Connection` values leaves the connection
/// open: `close` anywhere wins (as in hyper, however the options are
/// spread over lines), and HTTP/1.0 needs `keep-alive`.
fn keeps_alive(http10: bool, connection: &[&[u8]]) -> bool {
    !named_by_connection(connection, "close")
        && (!http10 || named_by_connection(connection, "keep-alive"))
}

/// Whether a `Connection` value can be read as options: visible ASCII,
/// spaces and tabs only. hyper ignores a value with other bytes whole, so
/// a `close` in it would close here and not there.
fn is_options(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| *b == b'\t' || (b' '..0x7f).contains(b))
}

/// A `Content-Length` value: digits only.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// What the headers of one request head say, gathered header by header
/// ([`Scan::header`]). [`parse_request`] reads every head through it, and so
/// does any other reader of request heads, so that both apply the same
/// rules to the same headers.
#[derive(Debug, Default)]
pub struct Scan<'a> {
    connection: [&'a [u8]; 4],
    connections: usize,
    length: Option<u64>,
    chunked: bool,
    expect_continue: bool,
    bearer: Option<&'a [u8]>,
    api_key: Option<&'a [u8]>,
    otp: Option<&'a [u8]>,
}

impl<'a> Scan<'a> {
    /// Takes one header: finds its kind, checks it, and notes what it says
    /// of the key, the framing and the connection. The lines of the
    /// configured forwarding header are joined by `, ` in `forwarded`.
    #[inline]
    pub fn header(
        &mut self,
        name: &str,
        value: &'a [u8],
        config: &HeadConfig,
        forwarded: &mut String,
    ) -> Result<Special, BadRequest> {
        let kind = if !name.contains('_') {
            classify_request_header(name)
        } else if config.underscores_in_headers {
            classify_underscored(name)
        } else {
            return Err(BadRequest::Underscore);
        };
        if let Some(otp) = config.otp_header.as_deref() {
            if name.len() == otp.len() {
                if name.eq_ignore_ascii_case(otp) {
                    self.otp.get_or_insert(value);
                    return Ok(Special::Dropped);
                }
                // Read with `-` for `_`, it names the code: dropped unread,
                // like the other headers the relay handles itself.
                let dashed =
                    |(a, b): (u8, u8)| a.to_ascii_lowercase() == b || a == b'_' && b == b'-';
                if name.bytes().zip(otp.bytes()).all(dashed) {
                    return Ok(Special::Dropped);
                }
            }
        }
        match kind {
            Special::Connection => {
                if self.connections == self.connection.len() || !is_options(value) {
                    return Err(BadRequest::Malformed);
                }
                self.connection[self.connections] = value;
                self.connections += 1;
            }
            Special::ContentLength => {
                let n = content_length(value).ok_or(BadRequest::Framing)?;
                if self.length.is_some_and(|m| m != n) {
                    return Err(BadRequest::Framing);
                }
                self.length = Some(n);
            }
            Special::TransferEncoding => {
                // Only `chunked`, once: anything else cannot be framed here.
                if self.chunked || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(BadRequest::Framing);
                }
                self.chunked = true;
            }
            Special::Expect => {
                if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                }
            }
            Special::Authorization => {
                if let Some(rest) = value.strip_prefix(b"Bearer ") {
                    self.bearer = Some(rest);
                }
            }
            Special::ApiKey => self.api_key = Some(value),
            Special::ForwardedFor | Special::Forwarded => {
                let read = match config.forwarded_header {
                    ForwardedHeader::XForwardedFor => Special::ForwardedFor,
                    ForwardedHeader::Forwarded => Special::Forwarded,
                };
                if kind == read {
                    // Not text: the chain cannot be read, and what a
                    // trusted proxy added is lost with it.
                    let text = std::str::from_utf8(value).unwrap_or("unknown");
                    if !forwarded.is_empty() {
                        forwarded.push_str(", ");
                    }
                    forwarded.push_str(text);
                }
            }
            Special::Plain | Special::Dropped => {}
        }
        Ok(kind)
    }

    /// The `Connection` values seen so far.
    pub fn connection(&self) -> &[&'a [u8]] {
        &self.connection[..self.connections]
    }

    /// Puts the one-time code presented (the first line of the configured
    /// header, trimmed) in `otp`; empty when there is none or it is not
    /// text.
    pub fn otp(&self, otp: &mut String) {
        otp.clear();
        if let Some(text) = self.otp.and_then(|value| std::str::from_utf8(value).ok()) {
            otp.push_str(text.trim());
        }
    }

    /// Puts the key presented (`Authorization: Bearer` before `X-API-Key`)
    /// in `key`, trimmed; whether one was presented at all.
    pub fn key(&self, key: &mut String) -> bool {
        key.clear();
        let presented = self.bearer.or(self.api_key);
        if let Some(presented) = presented {
            match String::from_utf8_lossy(presented) {
                std::borrow::Cow::Borrowed(text) => key.push_str(text.trim()),
                std::borrow::Cow::Owned(text) => key.push_str(text.trim()),
            }
        }
        presented.is_some()
    }
}

/// Whether a client header of `kind` named `name` goes upstream as it is,
/// given the request's `Connection` values.
#[inline]
pub fn forwards(kind: Special, name: &str, connection: &[&[u8]]) -> bool {
    match kind {
        Special::Plain => connection.is_empty() || !named_by_connection(connection, name),
        // Written by the gateway, from what it read and saw.
        Special::ForwardedFor | Special::Forwarded => false,
        // Sent as the body is actually framed.
        Special::ContentLength | Special::TransferEncoding => false,
        // Answered by the gateway itself.
        Special::Expect => false,
        Special::Dropped | Special::Authorization | Special::ApiKey | Special::Connection => false,
    }
}

/// Refuses a request target that is not a path (origin-form), or that has
/// a fragment; checked before the headers are read.
#[inline]
pub fn check_target(raw: &str) -> Result<(), BadRequest> {
    if !raw.starts_with('/') {
        return Err(BadRequest::Target);
    }
    if raw.contains('#') {
        return Err(BadRequest::Path(BadPath::Fragment));
    }
    Ok(())
}

/// Normalises a request target that passed [`check_target`] into `target`:
/// the path normalised ([`path`]), the query as sent. Returns where the
/// path ends in `target`.
#[inline]
pub fn request_target(raw: &str, target: &mut String) -> Result<usize, BadRequest> {
    let (raw_path, query) = raw.split_at(raw.find('?').unwrap_or(raw.len()));
    path::normalize(raw_path, target).map_err(BadRequest::Path)?;
    if query.bytes().any(|b| matches!(b, b'"' | b'<' | b'>')) {
        return Err(BadRequest::Path(BadPath::Unescaped));
    }
    let path_end = target.len();
    target.push_str(query);
    Ok(path_end)
}

/// Whether an upstream answer's header goes on to the client: not
/// hop-by-hop, not named by the answer's `Connection` values, and not a
/// `Content-Length` beside a `Transfer-Encoding`.
#[inline]
pub fn response_forwards(name: &str, connection: &[&[u8]], transfer_encoding: bool) -> bool {
    !(is_response_hop_by_hop(name)
        || (transfer_encoding && name.eq_ignore_ascii_case("content-length"))
        || (!connection.is_empty() && named_by_connection(connection, name)))
}

/// Parses the request head at the start of `data`. `Ok(None)` when more
/// bytes are needed. On success the key presented (from `Authorization:
/// Bearer` or `X-API-Key`) is in `key`, the request target — its path
/// normalised ([`path`]), its query as sent — in `target`, the lines
/// of the configured forwarding header joined by `, ` in `forwarded`, and
/// the head for the upstream — request line with the base path and the
/// normalised target, the headers to forward, `host` — in `out`, open for
/// more headers.
pub fn parse_request(
    data: &[u8],
    config: &HeadConfig,
    key: &mut String,
    otp: &mut String,
    target: &mut String,
    forwarded: &mut String,
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, BadRequest> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest::TooManyHeaders),
        Err(_) => return Err(BadRequest::Malformed),
    };
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version)
    else {
        return Err(BadRequest::Malformed);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| BadRequest::Malformed)?;
    // CONNECT opens a tunnel (hyper reads nothing after it as a request),
    // and its target is an authority, never a path.
    if method == Method::CONNECT {
        return Err(BadRequest::Target);
    }
    check_target(path)?;
    let http10 = version == 0;

    forwarded.clear();
    let mut scan = Scan::default();
    // Each header's kind, found once: the head is written in a second pass,
    // once every `Connection` header is known.
    let mut kinds = [Special::Plain; MAX_HEADERS];
    for (header, kind) in request.headers.iter().zip(kinds.iter_mut()) {
        *kind = scan.header(header.name, header.value, config, forwarded)?;
    }
    let (length, chunked, expect_continue) = (scan.length, scan.chunked, scan.expect_continue);
    let connection = scan.connection();
    if chunked && (length.is_some() || http10) {
        return Err(BadRequest::Framing);
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::Empty,
    };
    let keep_alive = keeps_alive(http10, connection);

    let has_key = scan.key(key);
    scan.otp(otp);
    let path_end = request_target(path, target)?;

    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(config.base_path.as_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(config.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    // `host`, the framing header and the relay's own come on top.
    let mut written = 2 + ADDED_HEADERS;
    for (header, kind) in request.headers.iter().zip(kinds) {
        if forwards(kind, header.name, connection) {
            written += 1;
            if written > MAX_UPSTREAM_HEADERS {
                return Err(BadRequest::TooManyHeaders);
            }
            push_header(out, header.name.as_bytes(), header.value);
        }
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty if length == Some(0) => out.extend_from_slice(b"content-length: 0\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
    Ok(Some(RequestHead {
        method,
        len,
        framing,
        keep_alive,
        http10,
        expect_continue,
        path_end,
        has_key,
    }))
}

/// What the relay needs to know of an upstream response; its head, with
/// hop-by-hop headers removed, is in the `out` buffer given to
/// [`parse_response`], open for more headers.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub len: usize,
    pub framing: Framing,
    /// Whether the upstream connection may carry another request.
    pub reusable: bool,
}

/// Why an upstream response head could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BadResponse {
    #[error("the upstream answered with an invalid head: {0}")]
    Malformed(httparse::Error),
    #[error("the upstream answered with a head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("the upstream answered with conflicting framing")]
    Framing,
    #[error("the upstream switched protocols, which the gateway does not forward")]
    SwitchingProtocols,
    #[error("the upstream connection failed: {0}")]
    Io(#[from] std::io::Error),
}

fn is_response_hop_by_hop(name: &str) -> bool {
    let is = |other: &str| name.eq_ignore_ascii_case(other);
    match name.len() {
        2 => is("te"),
        7 => is("upgrade") || is("trailer"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        _ => false,
    }
}

/// Parses the response head at the start of `data`, for a request with
/// `method`. `Ok(None)` when more bytes are needed.
pub fn parse_response(
    data: &[u8],
    method: &Method,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, BadResponse> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        data,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => {
            return Err(BadResponse::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse::Malformed(e)),
    };
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return Err(BadResponse::Malformed(httparse::Error::Status));
    };
    if status == 101 {
        return Err(BadResponse::SwitchingProtocols);
    }
    let mut connection: [&[u8]; 4] = [&[]; 4];
    let mut connections = 0;
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            if connections == connection.len() {
                return Err(BadResponse::Framing);
            }
            connection[connections] = header.value;
            connections += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(header.value).ok_or(BadResponse::Framing)?;
            if length.is_some_and(|m| m != n) {
                return Err(BadResponse::Framing);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                // Several codings in several fields: only the last matters,
                // and a chunked body in the middle cannot be; refuse.
                return Err(BadResponse::Framing);
            }
            transfer_encoding = Some(header.value);
        }
    }
    let connection = &connection[..connections];
    let informational = (100..200).contains(&status);
    let framing = if informational || *method == Method::HEAD || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(coding) = transfer_encoding {
        // RFC 9112 §6.3: chunked last frames the body; any other final
        // coding runs until the connection closes. Content-Length is ignored.
        let last = coding.rsplit(|b| *b == b',').next().unwrap_or_default();
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let reusable = framing != Framing::UntilClose && keeps_alive(version == 0, connection);

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    let reason = response
        .reason
        .filter(|r| !r.is_empty())
        .or_else(|| {
            hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
        })
        .unwrap_or("Unknown");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in response.headers.iter() {
        let name = header.name;
        if response_forwards(name, connection, transfer_encoding.is_some()) {
            push_header(out, name.as_bytes(), header.value);
        }
    }
    Ok(Some(ResponseHead {
        status,
        len,
        framing,
        reusable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(underscores_in_headers: bool) -> HeadConfig {
        HeadConfig {
            base_path: "/base".into(),
            host: "up:80".into(),
            underscores_in_headers,
            forwarded_header: ForwardedHeader::XForwardedFor,
            otp_header: Some("x-otp".into()),
        }
    }

    /// Parses `text`: the head, and the key, one-time code and upstream
    /// head `parse_request` wrote.
    fn parse_all(
        text: &[u8],
        config: &HeadConfig,
    ) -> Result<Option<(RequestHead, String, String, String)>, BadRequest> {
        let (mut key, mut otp, mut target, mut forwarded, mut out) = (
            String::new(),
            "stale".to_owned(),
            String::new(),
            String::new(),
            Vec::new(),
        );
        let head = parse_request(
            text,
            config,
            &mut key,
            &mut otp,
            &mut target,
            &mut forwarded,
            &mut out,
        )?;
        Ok(head.map(|h| (h, key, otp, String::from_utf8(out).unwrap())))
    }

    fn parse(
        text: &str,
        config: &HeadConfig,
    ) -> Result<Option<(RequestHead, String, String)>, BadRequest> {
        Ok(parse_all(text.as_bytes(), config)?.map(|(head, key, _, out)| (head, key, out)))
    }

    fn request(text: &str) -> Result<Option<(RequestHead, String, String)>, BadRequest> {
        parse(text, &config(false))
    }

    /// The one-time code read from `text`, and the head written upstream.
    fn otp_and_upstream(text: &[u8], config: &HeadConfig) -> (String, String) {
        let Ok(Some((_, _, otp, out))) = parse_all(text, config) else {
            panic!("not parsed");
        };
        (otp, out.to_ascii_lowercase())
    }

    #[test]
    fn the_one_time_code_is_read_and_never_sent_upstream() {
        let text = "POST /v1/order HTTP/1.1\r\nHost: a\r\nX-OTP:  123456 \r\nx-otp: 999999\r\n\
                    X_Otp: 111111\r\nX-OTPX: 1\r\n\r\n";
        for underscores in [false, true] {
            let text = if underscores {
                text.to_owned()
            } else {
                text.replace("X_Otp: 111111\r\n", "")
            };
            let (otp, upstream) = otp_and_upstream(text.as_bytes(), &config(underscores));
            // The first line counts; a spelling with `_` is dropped unread.
            assert_eq!(otp, "123456");
            assert!(!upstream.contains("otp:"), "{upstream}");
            assert!(upstream.contains("x-otpx: 1"), "{upstream}");
        }
        let plain = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(otp_and_upstream(plain, &config(false)).0, "");
    }

    #[test]
    fn identity_headers_are_dropped_in_any_spelling() {
        let forged = "GET /v1/x HTTP/1.1\r\nX_Keyward_Owner: f\r\nx-KEYWARD_key-id: f\r\n\
                      X-Keyward_Scopes: f\r\nX-Keyward-Anything: f\r\nX_Api_Key: k\r\n\
                      Transfer_Encoding: chunked\r\nX_Forwarded_For: 1.2.3.4\r\nX_Trace: t\r\n\r\n";
        assert_eq!(request(forged).unwrap_err(), BadRequest::Underscore);
        let (head, key, out) = parse(forged, &config(true)).unwrap().unwrap();
        assert!(!head.has_key && key.is_empty());
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(
            out, "GET /base/v1/x HTTP/1.1\r\nhost: up:80\r\nX_Trace: t\r\n",
            "only the plain underscored header is forwarded"
        );
        let (_, _, out) =
            request("GET / HTTP/1.1\r\nx-keyward-owner: f\r\nX-KEYWARD-NEW: f\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(out, "GET /base/ HTTP/1.1\r\nhost: up:80\r\n");
    }

    #[test]
    fn the_path_is_normalised_before_it_is_sent_and_the_query_is_not() {
        let (head, _, out) =
            request("GET //v1/prices/../%61dmin?a=%2e%2e/&b=..%2f HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(head.path_end, "/v1/admin".len());
        assert_eq!(
            out,
            "GET /base/v1/admin?a=%2e%2e/&b=..%2f HTTP/1.1\r\nhost: up:80\r\n"
        );
        assert_eq!(
            request("GET /v1/admin%2f HTTP/1.1\r\n\r\n").unwrap_err(),
            BadRequest::Path(BadPath::EncodedSeparator)
        );
        assert_eq!(
            request("GET /v1/prices#/../admin HTTP/1.1\r\n\r\n").unwrap_err(),
            BadRequest::Path(BadPath::Fragment)
        );
        // Found by the `gateway_head` fuzz target: hyper refuses these
        // targets, so the gateway must not read them as requests.
        for target in ["/a<b", "/a>", "/`", "/a?q=\"x\"", "/a?<", "/a?>"] {
            let text = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(
                request(&text).unwrap_err(),
                BadRequest::Path(BadPath::Unescaped),
                "{target}"
            );
        }
        let (_, _, out) = request("GET /a\"{}|^[]?q={}|`^ HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(
            out.starts_with("GET /base/a\"{}|^[]?q={}|`^ HTTP/1.1\r\n"),
            "{out}"
        );
    }

    #[test]
    fn a_request_head_is_rewritten_for_the_upstream() {
        let (head, key, out) = request(
            "POST /v1/orders?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer  k1 \r\n\
             X-Keyward-Owner: forged\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\
             X-Trace: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        )
        .unwrap()
        .unwrap();
        assert_eq!(key, "k1");
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive && head.expect_continue && !head.http10);
        assert_eq!(head.path_end, "/v1/orders".len());
        assert_eq!(
            out,
            "POST /base/v1/orders?x=1 HTTP/1.1\r\nhost: up:80\r\nX-Trace: t\r\n\
             content-length: 5\r\n"
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(request(text).unwrap_err(), BadRequest::Framing, "{text:?}");
        }
        for text in [
            "GET / HTTP/1.1\r\nX-A: 1\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nX A: 1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            assert_eq!(
                request(text).unwrap_err(),
                BadRequest::Malformed,
                "{text:?}"
            );
        }
        assert_eq!(
            request("GET http://evil/ HTTP/1.1\r\n\r\n").unwrap_err(),
            BadRequest::Target
        );
        // Found by the `gateway_head` fuzz target: hyper takes what follows
        // a CONNECT for a tunnel, the gateway read it as the next request.
        assert_eq!(
            request("CONNECT /x HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n").unwrap_err(),
            BadRequest::Target
        );
        assert!(request("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    /// Found by the `gateway_head` fuzz target: 100 headers forwarded with
    /// the gateway's own were more than hyper takes upstream (431).
    #[test]
    fn a_head_forwarded_stays_within_the_upstreams_header_limit() {
        let head = |n: usize| {
            let mut text = "GET / HTTP/1.1\r\nAuthorization: Bearer k\r\n".to_owned();
            for i in 0..n {
                text.push_str(&format!("X-{i}: v\r\n"));
            }
            text + "Content-Length: 1\r\n\r\n"
        };
        let most = MAX_UPSTREAM_HEADERS - 2 - ADDED_HEADERS;
        let (_, _, out) = request(&head(most)).unwrap().unwrap();
        assert_eq!(out.matches("\r\n").count(), 1 + most + 2);
        assert_eq!(
            request(&head(most + 1)).unwrap_err(),
            BadRequest::TooManyHeaders
        );
    }

    /// Found by the `gateway_head` fuzz target: hyper closes after these
    /// (or, for a value that is not text, keeps alive), the gateway read
    /// the next request (or closed).
    #[test]
    fn connection_options_are_read_as_hyper_reads_them() {
        for text in [
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        ] {
            let (head, _, _) = request(text).unwrap().unwrap();
            assert!(!head.keep_alive, "{text:?}");
        }
        assert_eq!(
            request("GET / HTTP/1.1\r\nConnection: close, \u{e9}\r\n\r\n").unwrap_err(),
            BadRequest::Malformed
        );
    }

    #[test]
    fn http10_closes_unless_asked_to_keep_alive() {
        let (head, _, _) = request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(head.http10 && !head.keep_alive);
        let (head, _, _) = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        let (head, _, _) = request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
    }

    fn response(text: &str, method: Method) -> (ResponseHead, String) {
        let mut out = Vec::new();
        let head = parse_response(text.as_bytes(), &method, &mut out)
            .unwrap()
            .unwrap();
        (head, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (head, out) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\
             Connection: x-secret\r\nX-Secret: s\r\nX-Up: 1\r\n\r\n",
            Method::GET,
        );
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.reusable);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nX-Up: 1\r\n");
        let (head, _) = response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD);
        assert_eq!(head.framing, Framing::Empty);
        let (head, _) = response("HTTP/1.1 204 No Content\r\n\r\n", Method::GET);
        assert_eq!(head.framing, Framing::Empty);
        let (head, _) = response("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(!head.reusable);
        let (head, _) = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
        );
        assert!(!head.reusable);
        let (head, _) = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET);
        assert!(!head.reusable);
        let (head, out) = response("HTTP/1.1 418 \r\nContent-Length: 1\r\n\r\n", Method::GET);
        assert_eq!(head.status, 418);
        assert!(out.starts_with("HTTP/1.1 418 I'm a teapot\r\n"), "{out}");
    }
}
