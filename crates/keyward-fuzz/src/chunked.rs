//! The chunked body relay against hyper's chunked decoding.
//!
//! Property: whenever `keyward_net::body::relay_body` relays a chunked body
//! to its end, hyper, given the bytes the relay took as a chunked request
//! body followed by one more request, reads the body whole, without error,
//! and then that request — so the two agree on where the body ends — and
//! the bytes the relay wrote de-chunk (with `httparse`, and with hyper) to
//! exactly that body, in the canonical form the relay promises: sizes in
//! lowercase hex, no extensions, no trailers. Sent bare (for an HTTP/1.0
//! client), they are the body itself.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use keyward_net::body::{relay_body, Bounds, Framing};
use keyward_net::Inbound;
use tokio::io::{AsyncRead, ReadBuf};

use crate::gen::{self, Choices};
use crate::hyper_read::{self, End};
use crate::NEXT;

const HEAD: &[u8] = b"POST /body HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
/// Bytes already in the relay's output buffer (a message head), which must
/// go out first.
const PREFIX: &[u8] = b"HEAD\r\n";
/// Bytes handed to the relay per read, by bits 2-4 of the first byte.
const PIECES: [usize; 8] = [usize::MAX, 1, 2, 3, 5, 8, 64, usize::MAX];

/// Checks one input. Its first byte chooses raw bytes or a generated body
/// (bit 0), whether the body is sent bare (bit 1), how many bytes each read
/// gets (bits 2-4) and whether the relay has a size limit (bit 5).
pub fn check(data: &[u8]) {
    let (flags, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let dechunk = flags & 2 != 0;
    let piece = PIECES[usize::from((flags >> 2) & 7)];
    let max = (flags & 32 != 0).then_some(40);
    if flags & 1 == 1 {
        let mut body = Vec::new();
        gen::chunked(&mut Choices::new(rest), &mut body);
        check_body(&body, dechunk, piece, max);
    } else {
        check_body(rest, dechunk, piece, max);
    }
}

/// A stream of `data`, `piece` bytes a read at most.
struct Pieces<'a> {
    data: &'a [u8],
    pos: usize,
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.data.len() - self.pos)
            .min(self.piece)
            .min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Relays `data` as a chunked body; returns how many bytes of it the relay
/// took and what it wrote, or `None` if it failed.
pub fn relay(
    data: &[u8],
    dechunk: bool,
    piece: usize,
    max: Option<u64>,
) -> Option<(usize, Vec<u8>)> {
    let mut source = Inbound::new(Pieces {
        data,
        pos: 0,
        piece,
    });
    let mut sink = Vec::new();
    let mut out = PREFIX.to_vec();
    let mut bounds = Bounds {
        max,
        ..Bounds::default()
    };
    let relayed = {
        let relay = relay_body(
            &mut source,
            &mut sink,
            Framing::Chunked,
            &mut out,
            dechunk,
            &mut bounds,
        );
        let mut relay = pin!(relay);
        let mut cx = Context::from_waker(Waker::noop());
        // Every read and write is ready at once, so one poll finishes.
        match relay.as_mut().poll(&mut cx) {
            Poll::Ready(relayed) => relayed,
            Poll::Pending => panic!("the relay waited on an in-memory stream"),
        }
    };
    relayed.ok()?;
    let taken = source.stream.pos - source.data().len();
    Some((taken, sink))
}

/// De-chunks `data` with `httparse`, insisting on the relay's canonical
/// form.
fn dechunk_canonical(data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&data[at..]) {
            Ok(httparse::Status::Complete((n, size))) => (at + n, size),
            other => panic!("the relay wrote a bad chunk line at {at}: {other:?}: {data:?}"),
        };
        let line = &data[at..start - 2];
        assert!(
            line.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
            "not a canonical chunk line: {line:?}"
        );
        if size == 0 {
            assert_eq!(
                &data[start..],
                b"\r\n",
                "the relay wrote more after the body"
            );
            return body;
        }
        let end =
            start + usize::try_from(size).expect("a chunk of the relay's output fits in memory");
        body.extend_from_slice(&data[start..end]);
        assert_eq!(
            &data[end..end + 2],
            b"\r\n",
            "a chunk without CRLF after it"
        );
        at = end + 2;
    }
}

/// Checks relaying `data` as a chunked body.
pub fn check_body(data: &[u8], dechunk: bool, piece: usize, max: Option<u64>) {
    let Some((taken, written)) = relay(data, dechunk, piece, max) else {
        return;
    };
    let taken_bytes = &data[..taken];
    assert!(
        written.starts_with(PREFIX),
        "the head went out late: {written:?}"
    );
    let written = &written[PREFIX.len()..];
    let body = if dechunk {
        written.to_vec()
    } else {
        dechunk_canonical(written)
    };
    if let Some(max) = max {
        assert!(body.len() as u64 <= max, "the relay passed its limit");
    }

    let mut message = HEAD.to_vec();
    message.extend_from_slice(taken_bytes);
    message.extend_from_slice(NEXT);
    let read = hyper_read::read(&message, usize::MAX, false);
    let context = || format!("{:?}\nhyper: {read:?}", String::from_utf8_lossy(&message));
    assert!(!read.requests.is_empty(), "{}", context());
    let seen = &read.requests[0];
    assert!(
        seen.complete && seen.body_error.is_none(),
        "hyper refused: {}",
        context()
    );
    assert_eq!(seen.body, body, "the body: {}", context());
    assert_eq!(read.requests.len(), 2, "the end of the body: {}", context());
    assert_eq!(
        read.requests[1].target,
        "/__next",
        "the end of the body: {}",
        context()
    );
    assert_eq!(read.end, End::Waiting, "{}", context());

    if !dechunk {
        let mut rechunked = HEAD.to_vec();
        rechunked.extend_from_slice(written);
        let read = hyper_read::read(&rechunked, usize::MAX, true);
        let seen = &read.requests[0];
        assert!(
            seen.complete && seen.body_error.is_none(),
            "hyper refused the relay's output"
        );
        assert_eq!(
            seen.body, body,
            "hyper de-chunks the relay's output otherwise"
        );
        assert!(seen.trailers.is_none(), "the relay sent trailers");
    }
}
