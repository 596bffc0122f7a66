//! Differential checks of Keyward's hand-written HTTP/1.1 readers against
//! hyper: any input the two read differently is a failure.
//!
//! - [`front`]: `keyward_net::plain::classify`, with the API front's
//!   routes, against hyper's server.
//! - [`gateway`]: the gateway's request heads
//!   (`keyward_gateway_head::parse_request`) against hyper's server, and the
//!   head it writes for the upstream against `httparse` and hyper again.
//! - [`chunked`]: `keyward_net::body::relay_body` on a chunked body against
//!   hyper's chunked decoding.
//!
//! Each `check` takes any bytes and panics on a discrepancy. Its first byte
//! chooses whether the rest is used as it is or read as choices for a
//! generator of near-valid messages ([`gen`]), so that both random bytes
//! (proptest) and a coverage-guided fuzzer reach deep into the parsers.
//! Refusing is always allowed: a check only constrains what a Keyward
//! reader accepts.
//!
//! [`hyper_read`] runs hyper's HTTP/1.1 server over an in-memory stream,
//! polled by hand: no runtime, no threads, no timers.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a check reports a discrepancy by panicking, as a fuzz target must"
)]

pub mod chunked;
pub mod front;
pub mod gateway;
pub mod gen;
pub mod hyper_read;

/// A request sent after the one under test, to see where hyper thinks the
/// first one ends and whether it keeps the connection open.
pub const NEXT: &[u8] = b"GET /__next HTTP/1.1\r\nhost: next\r\n\r\n";
