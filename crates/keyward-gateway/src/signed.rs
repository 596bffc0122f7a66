//! What the gateway gives the verifier beside the key: the signed request
//! as the client sent it, read again from its raw head, and the one-time
//! code of the configured header.
//!
//! Invariant: the signature is checked against the request line and headers
//! exactly as the client sent them, and against the whole body; the path
//! the route matched and the upstream is sent are normalised from that
//! same request line, so what was signed is what is served.

use keyward_verify::{Scheme, SignedRequest};

/// Most headers a signed request's head may have; the head parser holds
/// every request to fewer.
const MAX_HEADERS: usize = 100;

/// The signed request in `head` (the raw bytes of a request head the relay
/// already parsed) with `body`; `None` when it cannot be read again.
pub(crate) fn signed_request(
    scheme: Scheme,
    tls: bool,
    head: &[u8],
    body: &[u8],
) -> Option<SignedRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let method = request.method?.to_owned();
    let target = request.path?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let mut authority = String::new();
    let mut list = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("host") {
            authority = std::str::from_utf8(header.value).ok()?.trim().to_owned();
        }
        list.push((header.name.to_owned(), header.value.to_vec()));
    }
    Some(SignedRequest {
        scheme,
        method,
        url_scheme: if tls { "https" } else { "http" }.to_owned(),
        authority,
        path: path.to_owned(),
        query,
        headers: list,
        body: Some(body.to_vec()),
        body_sha256: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_is_read_as_sent() {
        let head =
            b"POST /v1/order?b=2&a=1 HTTP/1.1\r\nHost: Api.Example.com\r\nSignature: x\r\n\r\n";
        let signed = signed_request(Scheme::Rfc9421, true, head, b"{}");
        let Some(signed) = signed else {
            panic!("the head reads");
        };
        assert_eq!(signed.method, "POST");
        assert_eq!(signed.path, "/v1/order");
        assert_eq!(signed.query.as_deref(), Some("b=2&a=1"));
        assert_eq!(signed.authority, "Api.Example.com");
        assert_eq!(signed.url_scheme, "https");
        assert_eq!(signed.headers.len(), 2);
        assert_eq!(signed.body.as_deref(), Some(&b"{}"[..]));
    }
}
