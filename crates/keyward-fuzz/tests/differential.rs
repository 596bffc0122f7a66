//! The differential checks as ordinary tests: a few hundred random inputs
//! each (most of them read as choices for the generator), and the inputs
//! the fuzzer once found, named after what they pinned.

use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..160)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_front_reads_its_requests_as_hyper_does(data in input()) {
        keyward_fuzz::front::check(&data);
    }

    #[test]
    fn the_gateway_reads_heads_as_hyper_does(data in input()) {
        keyward_fuzz::gateway::check(&data);
    }

    #[test]
    fn the_chunked_relay_reads_bodies_as_hyper_does(data in input()) {
        keyward_fuzz::chunked::check(&data);
    }
}

#[test]
fn plain_requests_are_checked_against_hyper() {
    for request in [
        "POST /v1/keys/verify HTTP/1.1\r\nAuthorization: Bearer a\r\nContent-Length: 2\r\n\r\n{}",
        "GET /health HTTP/1.1\r\nConnection: close\r\nX-Vault-Token: t\r\n\r\n",
        "\r\nGET /health HTTP/1.1\nConnection: keep-alive\n\n",
    ] {
        keyward_fuzz::front::check_request(request.as_bytes());
    }
}

#[test]
fn chunked_bodies_are_checked_against_hyper() {
    for body in [
        "3\r\nabc\r\n0\r\n\r\n",
        "1;a=b\r\nx\r\n0\r\nX-Checksum: 1\r\n\r\n",
        "A\r\n0123456789\r\n0\r\n\r\n",
    ] {
        for piece in [1, 2, usize::MAX] {
            keyward_fuzz::chunked::check_body(body.as_bytes(), false, piece, None);
            keyward_fuzz::chunked::check_body(body.as_bytes(), true, piece, None);
        }
    }
}
