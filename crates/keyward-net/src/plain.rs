//! Recognising a request in its plainest HTTP/1.1 form, so a listener can
//! answer a few hot routes by hand and leave every other request to hyper.
//!
//! A request is plain when it is HTTP/1.1, its method and path (no query)
//! are exactly those of a [`Route`], its body, if the route takes one, has
//! one `Content-Length` (or several equal ones) within the route's limit,
//! and it has no `Transfer-Encoding`, `Expect` or `Upgrade`, nor a
//! `Connection` option other than `close` and `keep-alive`. Anything else,
//! malformed or merely unusual, is [`Classified::Other`].
//!
//! Invariant: a request classified as plain is read exactly as hyper reads
//! it — the same method, path, body bytes, first values of the captured
//! headers and keep-alive decision — so answering it by hand cannot serve a
//! different request than hyper would. The differential tests of
//! `keyward-fuzz` check this against hyper itself.

use std::ops::Range;

/// Most headers parsed; a request with more is [`Classified::Other`].
const MAX_HEADERS: usize = 64;

/// A route answered by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub method: &'a str,
    /// The whole request target: a request with a query is not plain.
    pub path: &'a str,
    pub body: Body,
}

/// What body a [`Route`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// None: no `Content-Length`, or `0`.
    None,
    /// A `Content-Length` body of at most `max` bytes; one is required.
    Length { max: usize },
}

/// What [`classify`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules<'a, const N: usize> {
    pub routes: &'a [Route<'a>],
    /// Headers whose first value is wanted, by name (any case); not one of
    /// the headers that decide whether a request is plain.
    pub capture: [&'a str; N],
    /// Longest head read: one still partial at this length is
    /// [`Classified::Other`], for hyper to refuse.
    pub max_head: usize,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Classified<const N: usize> {
    /// A plain request for one of the routes.
    Plain(PlainHead<N>),
    /// Any other request, or not HTTP/1.1 at all.
    Other,
    /// Not a whole head yet.
    Partial,
}

/// A plain request head, by offsets into the bytes classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainHead<const N: usize> {
    /// Index of the route in [`Rules::routes`].
    pub route: usize,
    /// Length of the head.
    pub len: usize,
    /// Length of the body that follows it.
    pub body: usize,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// The first value of each of [`Rules::capture`], in its order.
    pub captured: [Option<Range<usize>>; N],
}

/// Classifies the request at the start of `data`.
pub fn classify<const N: usize>(data: &[u8], rules: &Rules<'_, N>) -> Classified<N> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if data.len() < rules.max_head => return Classified::Partial,
        _ => return Classified::Other,
    };
    if request.version != Some(1) {
        return Classified::Other;
    }
    let Some((index, route)) = rules.routes.iter().enumerate().find(|(_, route)| {
        request.method == Some(route.method) && request.path == Some(route.path)
    }) else {
        return Classified::Other;
    };
    let offset = |value: &[u8]| {
        let start = value.as_ptr() as usize - data.as_ptr() as usize;
        start..start + value.len()
    };
    let mut head = PlainHead {
        route: index,
        len,
        body: 0,
        close: false,
        captured: [const { None }; N],
    };
    let mut length: Option<usize> = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = header.value;
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(seen)) if n == seen => {}
                _ => return Classified::Other,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Classified::Other;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Classified::Other;
        } else if let Some(at) = rules
            .capture
            .iter()
            .position(|wanted| name.eq_ignore_ascii_case(wanted))
        {
            head.captured[at].get_or_insert_with(|| offset(header.value));
        }
    }
    head.body = match (route.body, length) {
        (Body::Length { max }, Some(n)) if n <= max => n,
        (Body::None, None | Some(0)) => 0,
        _ => return Classified::Other,
    };
    Classified::Plain(head)
}
