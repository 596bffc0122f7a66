//! A stream and the bytes read from it but not yet used.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// What one read asks for at least.
const READ_SIZE: usize = 8 * 1024;

/// One side's stream and the bytes read from it but not yet consumed.
pub struct Inbound<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + Unpin> Inbound<S> {
    pub fn new(stream: S) -> Self {
        Inbound {
            stream,
            buf: Vec::with_capacity(READ_SIZE),
            pos: 0,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// The stream and the bytes read from it and not yet consumed.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.buf.drain(..self.pos);
        (self.stream, self.buf)
    }

    /// Reads more; `Ok(0)` at the end of the stream.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }
}
