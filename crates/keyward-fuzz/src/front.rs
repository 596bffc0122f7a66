//! The API front's classifier against hyper's server.
//!
//! Property: whenever `keyward_net::plain::classify` says a request is
//! plain, hyper, given exactly its head and body, reads one request with
//! the same method, path, HTTP/1.1, body bytes and first `Authorization`
//! and `X-Vault-Token` values, and keeps the connection open exactly when
//! the front would. Requests the front leaves to hyper need no check.

use keyward_net::plain::{self, Classified};

use crate::gen::{self, Choices};
use crate::hyper_read::{self, End};

/// The front's own table (`keyward-server`'s `front::RULES`), copied here
/// so this crate does not build the server.
pub const RULES: plain::Rules<'static, 2> = plain::Rules {
    routes: &[
        plain::Route {
            method: "GET",
            path: "/health",
            body: plain::Body::None,
        },
        plain::Route {
            method: "POST",
            path: "/v1/keys/verify",
            body: plain::Body::Length { max: 64 * 1024 },
        },
    ],
    capture: ["authorization", "x-vault-token"],
    max_head: 16 * 1024,
};

/// Checks one input: its first byte chooses raw bytes (even) or a
/// generated request (odd).
pub fn check(data: &[u8]) {
    match data.split_first() {
        Some((first, rest)) if first % 2 == 1 => {
            let mut request = Vec::new();
            gen::request(&mut Choices::new(rest), &mut request);
            check_request(&request);
        }
        Some((_, rest)) => check_request(rest),
        None => check_request(data),
    }
}

/// Checks the request at the start of `data`.
pub fn check_request(data: &[u8]) {
    let Classified::Plain(head) = plain::classify(data, &RULES) else {
        return;
    };
    // The front waits for the whole body; give it one.
    let end = head.len + head.body;
    let mut message = data[..end.min(data.len())].to_vec();
    message.resize(end, b'x');
    match plain::classify(&message, &RULES) {
        Classified::Plain(again) => assert_eq!(again, head, "the body changed the head"),
        other => panic!("the head alone classifies as {other:?}"),
    }
    let route = RULES.routes[head.route];
    let read = hyper_read::read(&message, usize::MAX, false);
    let context = || format!("{:?}\nhyper: {read:?}", String::from_utf8_lossy(&message));
    assert_eq!(
        read.requests.len(),
        1,
        "hyper read another number of requests: {}",
        context()
    );
    let seen = &read.requests[0];
    assert_eq!(seen.method.as_str(), route.method, "{}", context());
    assert_eq!(seen.target, route.path, "{}", context());
    assert_eq!(seen.version, hyper::Version::HTTP_11, "{}", context());
    assert!(seen.complete && seen.body_error.is_none(), "{}", context());
    assert_eq!(seen.body, &message[head.len..], "{}", context());
    for (name, range) in RULES.capture.iter().zip(&head.captured) {
        let ours = range.clone().map(|r| &message[r]);
        let theirs = seen.headers.get(*name).map(|v| v.as_bytes());
        assert_eq!(ours, theirs, "first {name}: {}", context());
    }
    let expected = if head.close {
        End::Closed
    } else {
        End::Waiting
    };
    assert_eq!(read.end, expected, "keep-alive: {}", context());
}
