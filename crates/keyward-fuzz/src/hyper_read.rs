//! What hyper's HTTP/1.1 server reads from a given byte string.
//!
//! The connection is served over an in-memory stream and polled with a
//! no-op waker until it ends or stops making progress with all input
//! taken; nothing in it waits on anything but that stream, so this is
//! deterministic.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use http_body::Body as _;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::rt::ReadBufCursor;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, Version};

/// Polls without progress after which a connection counts as waiting.
const IDLE_POLLS: usize = 8;
/// Polls after which a connection that still makes progress is given up
/// on (far more than any input a check builds needs).
const MAX_POLLS: usize = 1_000_000;

/// One request as hyper's service saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The request target as hyper holds it.
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body's exact length, when its framing says it (`Content-Length`).
    pub exact: Option<u64>,
    /// The body bytes read so far.
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// Why reading the body failed.
    pub body_error: Option<String>,
    /// The whole body was read.
    pub complete: bool,
}

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// hyper closed it without error.
    Closed,
    /// hyper closed it with an error (a refused head, a broken body).
    Failed(String),
    /// hyper took all input and waits for more.
    Waiting,
}

/// Everything hyper did with an input.
#[derive(Clone)]
pub struct HyperRead {
    pub requests: Vec<Seen>,
    pub end: End,
    /// What hyper wrote back.
    pub written: Vec<u8>,
}

impl std::fmt::Debug for HyperRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperRead")
            .field("requests", &self.requests)
            .field("end", &self.end)
            .field("written", &String::from_utf8_lossy(&self.written))
            .finish()
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Seen>,
    /// Bumped on every step of a service, to tell progress.
    events: u64,
}

struct Stream {
    input: Vec<u8>,
    pos: usize,
    /// Bytes handed out per read at most.
    piece: usize,
    /// Whether the end of input reads as the end of the stream (else as
    /// waiting for more).
    eof: bool,
    written: Rc<RefCell<Vec<u8>>>,
    /// Reads served, to tell progress.
    reads: Rc<RefCell<u64>>,
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.input.len() - self.pos;
        if left == 0 && !self.eof {
            return Poll::Pending;
        }
        *self.reads.borrow_mut() += 1;
        let n = left.min(self.piece).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.input[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.borrow_mut().extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What hyper's server reads from `input`, handed out at most `piece`
/// bytes a read; at its end the stream ends when `eof`, else it waits.
/// Every request is answered `200` with an empty body once its body has
/// been read whole.
pub fn read(input: &[u8], piece: usize, eof: bool) -> HyperRead {
    let shared = Rc::new(RefCell::new(Shared::default()));
    let written = Rc::new(RefCell::new(Vec::new()));
    let reads = Rc::new(RefCell::new(0));
    let stream = Stream {
        input: input.to_vec(),
        pos: 0,
        piece: piece.max(1),
        eof,
        written: Rc::clone(&written),
        reads: Rc::clone(&reads),
    };
    let service = {
        let shared = Rc::clone(&shared);
        service_fn(move |request: Request<Incoming>| serve(Rc::clone(&shared), request))
    };
    // With half-close, the end of input does not cut off the answer to a
    // request whose service is still running.
    let connection = http1::Builder::new()
        .half_close(true)
        .serve_connection(stream, service);
    let mut connection = pin!(connection);
    let mut cx = Context::from_waker(Waker::noop());
    let progress = || {
        (
            *reads.borrow(),
            written.borrow().len(),
            shared.borrow().events,
        )
    };
    let mut idle = 0;
    let mut end = End::Waiting;
    for _ in 0..MAX_POLLS {
        let before = progress();
        match connection.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(())) => {
                end = End::Closed;
                break;
            }
            Poll::Ready(Err(e)) => {
                end = End::Failed(e.to_string());
                break;
            }
            Poll::Pending if progress() == before => {
                idle += 1;
                if idle == IDLE_POLLS {
                    break;
                }
            }
            Poll::Pending => idle = 0,
        }
    }
    let requests = std::mem::take(&mut shared.borrow_mut().requests);
    let written = written.borrow().clone();
    HyperRead {
        requests,
        end,
        written,
    }
}

async fn serve(
    shared: Rc<RefCell<Shared>>,
    request: Request<Incoming>,
) -> Result<Response<String>, Infallible> {
    let (parts, mut body) = request.into_parts();
    let index = {
        let mut shared = shared.borrow_mut();
        shared.events += 1;
        shared.requests.push(Seen {
            method: parts.method,
            target: parts.uri.to_string(),
            version: parts.version,
            headers: parts.headers,
            exact: body.size_hint().exact(),
            body: Vec::new(),
            trailers: None,
            body_error: None,
            complete: false,
        });
        shared.requests.len() - 1
    };
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let mut shared = shared.borrow_mut();
        shared.events += 1;
        let seen = &mut shared.requests[index];
        match frame {
            None => {
                seen.complete = true;
                break;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => seen.body.extend_from_slice(&data),
                Err(frame) => seen.trailers = frame.into_trailers().ok(),
            },
            Some(Err(e)) => {
                seen.body_error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(Response::new(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_waits_and_close_closes() {
        let read = read(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 7, false);
        assert_eq!(read.requests.len(), 2);
        assert_eq!(read.requests[1].target, "/b");
        assert_eq!(read.end, End::Waiting);
        let read = super::read(
            b"POST /a HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n",
            usize::MAX,
            false,
        );
        assert_eq!(read.requests.len(), 1);
        assert_eq!(read.requests[0].body, b"hi");
        assert!(read.requests[0].complete);
        assert_eq!(read.end, End::Closed);
    }

    #[test]
    fn chunked_bodies_and_refusals_are_seen() {
        let read = read(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx: y\r\n\r\n",
            usize::MAX,
            true,
        );
        assert_eq!(read.requests[0].body, b"abc");
        assert_eq!(read.requests[0].exact, None);
        assert_eq!(read.end, End::Closed);
        let read = super::read(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx y\r\n\r\n",
            usize::MAX,
            true,
        );
        assert!(read.requests[0].body_error.is_some(), "{read:?}");
        let read = super::read(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", usize::MAX, false);
        assert!(read.requests.is_empty());
        assert!(matches!(read.end, End::Failed(_)), "{:?}", read.end);
    }
}
