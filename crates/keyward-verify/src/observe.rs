//! One hook for every request any listener serves: the router, the API
//! listener's front and the gateway each report a request once it is
//! answered, so logging (and anything that watches requests) is written
//! once.
//!
//! Invariant: an observation never carries a key, a body or a query string;
//! a path is redacted by whoever shows it ([`RequestLog`] does).

use std::time::Duration;

use keyward_core::VerifyCode;

/// The listener that served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The admin API and verify endpoint (the front and the router).
    Api,
    Gateway,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Api => "api",
            Listener::Gateway => "gateway",
        }
    }
}

/// A request that was answered.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub listener: Listener,
    pub method: &'a str,
    /// The path without its query; it may hold a key pasted by mistake.
    pub path: &'a str,
    pub status: u16,
    /// From the first byte of the request head to the last of the answer.
    pub latency: Duration,
    /// The verification's answer, for requests that verified a key.
    pub code: Option<VerifyCode>,
    /// The SHA-256 of the client's certificate, on a connection the
    /// listener verified one on (mutual TLS). A fingerprint is not secret.
    pub client_certificate: Option<[u8; 32]>,
}

/// Whatever watches requests.
pub trait Observe: Send + Sync + 'static {
    /// Whether an observation from `listener` would be used: a listener
    /// skips building one (and reading the clock for it) when not.
    fn wants(&self, listener: Listener) -> bool;

    fn observe(&self, observation: &Observation<'_>);
}

/// Logs every request as `request` with method, path (keys in it
/// redacted), status and latency in microseconds: the API listener's at
/// `info`, the gateway's — which carry the verify code — at `debug`, since
/// a gateway in front of a busy API would otherwise write a line for every
/// call its upstream serves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLog;

impl Observe for RequestLog {
    fn wants(&self, listener: Listener) -> bool {
        if listener == Listener::Gateway {
            tracing::enabled!(tracing::Level::DEBUG)
        } else {
            tracing::enabled!(tracing::Level::INFO)
        }
    }

    fn observe(&self, o: &Observation<'_>) {
        let path = loggable_path(o.path);
        // Written only for a connection with a client certificate.
        let client_cert = o
            .client_certificate
            .as_ref()
            .map(|c| tracing::field::display(Hex(c)));
        match o.code {
            None if o.listener == Listener::Api => tracing::info!(
                method = o.method,
                path = %path,
                status = o.status,
                micros = o.latency.as_micros() as u64,
                client_cert,
                "request"
            ),
            code => tracing::debug!(
                listener = o.listener.as_str(),
                method = o.method,
                path = %path,
                status = o.status,
                code = code.map_or("", |c| c.as_str()),
                micros = o.latency.as_micros() as u64,
                client_cert,
                "request"
            ),
        }
    }
}

/// A fingerprint in lower-case hex.
struct Hex<'a>(&'a [u8; 32]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A request path as it may be logged: every key or admin token in it,
/// written plainly or with its characters percent-escaped, replaced by
/// [`keyward_core::key::REDACTED_KEY`].
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    use keyward_core::key::{contains_key, redact_keys};
    if !path.contains('%') {
        return redact_keys(path);
    }
    // Keys are made of `0-9A-Za-z_`; decoding only escapes of those
    // characters finds an escaped key without making the path ambiguous.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'_');
        match escaped {
            Some(b) => {
                decoded.push(char::from(b));
                i += 3;
            }
            None => {
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                decoded.push_str(&path[i..i + len]);
                i += len;
            }
        }
    }
    if contains_key(&decoded) {
        redact_keys(&decoded).into_owned().into()
    } else {
        path.into()
    }
}
