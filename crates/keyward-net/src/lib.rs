//! The HTTP/1.1 plumbing every Keyward listener shares, with no Keyward
//! names in it: what a request means is the caller's business.
//!
//! - [`limits`]: the deadlines and caps of client connections.
//! - [`accept`]: the accept loop, its per-address cap and shedding, and
//!   graceful stop.
//! - [`Inbound`]: a stream and the bytes read from it but not yet used.
//! - [`body`]: relaying a message body by its framing.
//! - [`plain`]: recognising a request plain enough to answer by hand.
//! - [`write`]: writing message heads by hand.
//! - [`hand_over`]: serving the rest of a connection with hyper.
//! - [`workers`]: one single-threaded runtime per core.
//! - [`tls`]: certificates from PEM files, reloaded on demand, and the
//!   handshake of each connection.
//!
//! Invariant: everything here is generic over the stream
//! (`AsyncRead + AsyncWrite`), so a TLS stream plugs in where a TCP one
//! does, once for every listener.

#![forbid(unsafe_code)]

pub mod accept;
pub mod body;
mod hyper_conn;
mod inbound;
pub mod limits;
pub mod plain;
pub mod tls;
pub mod workers;
pub mod write;

pub use accept::{accept_until, push_back, stopped};
pub use hyper_conn::{hand_over, Replay};
pub use inbound::Inbound;
pub use limits::{Connections, Limits, Pace, Shed, Slot};

/// Anything a connection can be served over: a TCP stream, or a TLS stream
/// over one.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for S {}
