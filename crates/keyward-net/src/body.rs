//! Relaying an HTTP/1.1 message body by its framing.
//!
//! Framing is strict, because a proxy and its upstream must agree on where
//! each message ends (request smuggling, RFC 9112 §11.2): chunk-size lines
//! must end in CRLF, trailer fields must be valid field lines, and a
//! chunked body is re-chunked with extensions and trailers dropped, never
//! passed on as the sender framed it. Where hyper limits a chunked body
//! (extension bytes, trailer fields), the relay's limits are no looser, so
//! what it relays hyper would read as the same body.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::limits::Pace;
use crate::Inbound;

/// Longest chunk-size line, and most bytes of trailer fields (with the
/// empty line after them).
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Most trailer fields, and most bytes of chunk extensions in one body:
/// hyper's limits, so that a body relayed upstream is one hyper would read.
const MAX_TRAILER_FIELDS: usize = 100;
const MAX_EXTENSIONS: usize = 16 * 1024 - 1;
/// Body bytes gathered before they are written on.
const WRITE_SIZE: usize = 64 * 1024;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Why a body could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The sender's side failed, ended early or broke the framing.
    #[error("reading the body failed: {0}")]
    Read(std::io::Error),
    /// The receiver's side failed, or did not take a write in time.
    #[error("writing the body failed: {0}")]
    Write(std::io::Error),
    /// The body grew past [`Bounds::max`].
    #[error("the body is larger than allowed")]
    TooLarge,
    /// The sender fell behind its [`Bounds::pace`].
    #[error("the body arrived too slowly")]
    TooSlow,
}

/// What a body relay holds each side to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// The sender must keep up this pace, or the relay fails with
    /// [`RelayError::TooSlow`].
    pub pace: Option<Pace>,
    /// Most bytes of a chunked body (a length is checked before the relay).
    pub max: Option<u64>,
    /// How long one write to the receiver may take.
    pub write: Option<Duration>,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Relays a body of `framing` from `source` to `sink`. `out` already holds
/// bytes to write first (a message head); they go out with the start of
/// the body. A chunked body is re-chunked with extensions and trailers
/// dropped, or sent bare when `dechunk` (for an HTTP/1.0 client).
pub async fn relay_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    source: &mut Inbound<R>,
    sink: &mut W,
    framing: Framing,
    out: &mut Vec<u8>,
    dechunk: bool,
    bounds: &mut Bounds,
) -> Result<(), RelayError> {
    match framing {
        Framing::Empty => flush(sink, out, bounds).await,
        Framing::Length(n) => relay_length(source, sink, n, out, bounds).await,
        Framing::Chunked => relay_chunked(source, sink, out, dechunk, bounds).await,
        Framing::UntilClose => loop {
            let data = source.data();
            out.extend_from_slice(data);
            let n = data.len();
            source.consume(n);
            flush(sink, out, bounds).await?;
            if source.fill().await.map_err(RelayError::Read)? == 0 {
                return Ok(());
            }
        },
    }
}

async fn flush<W: AsyncWrite + Unpin>(
    sink: &mut W,
    out: &mut Vec<u8>,
    bounds: &Bounds,
) -> Result<(), RelayError> {
    if !out.is_empty() {
        let written = match bounds.write {
            None => sink.write_all(out).await,
            Some(limit) => match tokio::time::timeout(limit, sink.write_all(out)).await {
                Ok(written) => written,
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            },
        };
        written.map_err(RelayError::Write)?;
        out.clear();
    }
    Ok(())
}

/// Reads more of a body, held to its pace; the end of the stream is an
/// error.
async fn fill_body<R: AsyncRead + Unpin>(
    source: &mut Inbound<R>,
    bounds: &mut Bounds,
) -> Result<(), RelayError> {
    let read = match &bounds.pace {
        None => source.fill().await,
        Some(pace) => match tokio::time::timeout_at(pace.deadline(), source.fill()).await {
            Ok(read) => read,
            Err(_) => return Err(RelayError::TooSlow),
        },
    };
    match read.map_err(RelayError::Read)? {
        0 => Err(RelayError::Read(std::io::ErrorKind::UnexpectedEof.into())),
        n => {
            if let Some(pace) = &mut bounds.pace {
                pace.received(n as u64);
            }
            Ok(())
        }
    }
}

/// Moves up to `n` buffered body bytes of `source` into `out`; returns how
/// many.
fn take<R: AsyncRead + Unpin>(source: &mut Inbound<R>, n: u64, out: &mut Vec<u8>) -> u64 {
    let data = source.data();
    let k = data.len().min(usize::try_from(n).unwrap_or(usize::MAX));
    out.extend_from_slice(&data[..k]);
    source.consume(k);
    k as u64
}

async fn relay_length<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    source: &mut Inbound<R>,
    sink: &mut W,
    mut n: u64,
    out: &mut Vec<u8>,
    bounds: &mut Bounds,
) -> Result<(), RelayError> {
    loop {
        n -= take(source, n, out);
        if n == 0 {
            return flush(sink, out, bounds).await;
        }
        flush(sink, out, bounds).await?;
        fill_body(source, bounds).await?;
    }
}

/// A line ending in CRLF at the start of `source`'s buffer, reading more as
/// needed (after writing what `out` holds, so nothing waits on a slow
/// sender); returns its length without the CRLF.
async fn line<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    source: &mut Inbound<R>,
    sink: &mut W,
    out: &mut Vec<u8>,
    limit: usize,
    bounds: &mut Bounds,
) -> Result<usize, RelayError> {
    let mut searched = 0;
    loop {
        let data = source.data();
        if let Some(at) = data[searched..].iter().position(|b| *b == b'\n') {
            let end = searched + at;
            if end == 0 || data[end - 1] != b'\r' {
                return Err(RelayError::Read(invalid("a chunk line without CRLF")));
            }
            return Ok(end - 1);
        }
        searched = data.len();
        if searched > limit {
            return Err(RelayError::Read(invalid("a chunk line too long")));
        }
        flush(sink, out, bounds).await?;
        fill_body(source, bounds).await?;
    }
}

/// Whether `line`, with its CRLF, is a valid header field line.
fn is_field_line(line: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 1];
    // A valid field line is a header section that lacks only its end.
    matches!(
        httparse::parse_headers(line, &mut headers),
        Ok(httparse::Status::Partial)
    )
}

/// The size of a chunk-size line (`1a;ext=1`): hex digits, then optional
/// extensions, which are dropped.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty()
        || (rest.trim_ascii_start().starts_with(b";")
            && rest.iter().all(|b| *b == b'\t' || (b' '..0x7f).contains(b)));
    if !rest_ok {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(text, 16).ok()
}

async fn relay_chunked<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    source: &mut Inbound<R>,
    sink: &mut W,
    out: &mut Vec<u8>,
    dechunk: bool,
    bounds: &mut Bounds,
) -> Result<(), RelayError> {
    let mut total: u64 = 0;
    let mut extensions = 0;
    loop {
        let len = line(source, sink, out, MAX_CHUNK_LINE, bounds).await?;
        let size_line = &source.data()[..len];
        let size = chunk_size(size_line)
            .ok_or_else(|| RelayError::Read(invalid("an invalid chunk size")))?;
        extensions += size_line
            .iter()
            .skip_while(|b| b.is_ascii_hexdigit())
            .count();
        if extensions > MAX_EXTENSIONS {
            return Err(RelayError::Read(invalid("chunk extensions too large")));
        }
        source.consume(len + 2);
        if size == 0 {
            break;
        }
        // Refused before any of the chunk that passes the limit is sent.
        total = total.saturating_add(size);
        if bounds.max.is_some_and(|max| total > max) {
            return Err(RelayError::TooLarge);
        }
        if !dechunk {
            out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        }
        let mut left = size;
        loop {
            left -= take(source, left, out);
            if left == 0 {
                break;
            }
            flush(sink, out, bounds).await?;
            fill_body(source, bounds).await?;
        }
        while source.data().len() < 2 {
            flush(sink, out, bounds).await?;
            fill_body(source, bounds).await?;
        }
        if &source.data()[..2] != b"\r\n" {
            return Err(RelayError::Read(invalid("a chunk without CRLF after it")));
        }
        source.consume(2);
        if !dechunk {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_SIZE {
            flush(sink, out, bounds).await?;
        }
    }
    // Trailer fields, up to an empty line: checked as hyper checks them,
    // so a body relayed is one hyper would read, then dropped.
    let mut trailers = 2;
    let mut fields = 0;
    loop {
        let len = line(source, sink, out, MAX_CHUNK_LINE, bounds).await?;
        if len == 0 {
            source.consume(2);
            break;
        }
        trailers += len + 2;
        fields += 1;
        if trailers > MAX_TRAILERS || fields > MAX_TRAILER_FIELDS {
            return Err(RelayError::Read(invalid("trailer fields too large")));
        }
        if !is_field_line(&source.data()[..len + 2]) {
            return Err(RelayError::Read(invalid("an invalid trailer field")));
        }
        source.consume(len + 2);
    }
    if !dechunk {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(sink, out, bounds).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relay(body: &[u8]) -> Result<Vec<u8>, RelayError> {
        let mut source = Inbound::new(body);
        let mut sink = Vec::new();
        let mut bounds = Bounds::default();
        relay_body(
            &mut source,
            &mut sink,
            Framing::Chunked,
            &mut Vec::new(),
            false,
            &mut bounds,
        )
        .await?;
        Ok(sink)
    }

    /// Found by the `chunked_relay` fuzz target: the relay dropped these
    /// trailers and passed the body on, where hyper refuses the body.
    #[tokio::test]
    async fn trailer_fields_hyper_refuses_are_refused() {
        for body in [
            &b"0\r\na: b\rc\r\n\r\n"[..],
            b"0\r\n a: b\r\n\r\n",
            b"0\r\nbad line\r\n\r\n",
            b"0\r\na:\x01\r\n\r\n",
            b"0\r\n:x\r\n\r\n",
        ] {
            assert!(relay(body).await.is_err(), "{body:?}");
        }
        let sent = relay(b"1\r\nx\r\n0\r\nX-Checksum: 1\r\na:\r\n\r\n").await;
        assert_eq!(sent.unwrap(), b"1\r\nx\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn a_body_past_hypers_limits_is_refused() {
        let mut fields = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILER_FIELDS {
            fields.extend_from_slice(b"a: b\r\n");
        }
        let mut more = fields.clone();
        fields.extend_from_slice(b"\r\n");
        assert!(relay(&fields).await.is_ok());
        more.extend_from_slice(b"a: b\r\n\r\n");
        assert!(relay(&more).await.is_err());

        let extension = format!(";{}", "x".repeat(4000));
        let chunks = |n: usize| {
            let mut body = Vec::new();
            for _ in 0..n {
                body.extend_from_slice(format!("1{extension}\r\nx\r\n").as_bytes());
            }
            body.extend_from_slice(b"0\r\n\r\n");
            body
        };
        assert!(relay(&chunks(4)).await.is_ok());
        assert!(relay(&chunks(5)).await.is_err());
    }

    #[test]
    fn chunk_sizes_are_strict() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"5;name=value"), Some(5));
        assert_eq!(chunk_size(b"5 ;x"), Some(5));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"-1"), None);
        assert_eq!(chunk_size(b"5 5"), None);
        assert_eq!(chunk_size(b"0x5"), None);
        assert_eq!(chunk_size(b"1000000000000000"), None);
    }
}
