//! Serving the rest of a connection with hyper, starting with bytes a
//! hand-written reader already took from it.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::accept::stopped;
use crate::limits::{Limits, Shed};
use crate::Stream;

/// Serves the rest of the connection `stream` with hyper and `service`,
/// starting with the bytes in `read`, until it closes. hyper closes a
/// connection whose next head is not whole within [`Limits::hyper_head`];
/// when the server stops or idle connections are shed, hyper closes it at
/// once if idle, or after the request in flight.
pub async fn hand_over<S, Svc, B>(
    stream: S,
    read: Vec<u8>,
    service: Svc,
    limits: Limits,
    stopping: watch::Receiver<bool>,
    shed: &Shed,
) where
    S: Stream,
    Svc: HttpService<Incoming, ResBody = B>,
    Svc::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let io = TokioIo::new(Replay {
        read,
        pos: 0,
        stream,
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.hyper_head())
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let stopped = stopped(stopping);
    tokio::pin!(stopped);
    let shed = shed.asked();
    tokio::pin!(shed);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        () = &mut stopped => connection.as_mut().graceful_shutdown(),
        () = &mut shed => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A connection whose first bytes were already read: they are read again
/// before the stream's.
pub struct Replay<S> {
    read: Vec<u8>,
    pos: usize,
    stream: S,
}

impl<S> Replay<S> {
    pub fn new(read: Vec<u8>, stream: S) -> Self {
        Replay {
            read,
            pos: 0,
            stream,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.pos);
            buf.put_slice(&this.read[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.read.len() {
                this.read = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
