//! The client's address behind trusted proxies, and the forwarding headers
//! the gateway writes for its upstream.
//!
//! A proxy appends the address it saw to `X-Forwarded-For` (or adds a
//! `Forwarded` element, RFC 7239): whatever lies left of the entries that
//! trusted proxies wrote came from the client and may be forged. So the
//! chain is walked from the right, skipping trusted proxies, and the first
//! other address is the client. Without a trusted peer the headers are not
//! read at all.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use keyward_core::limits::Cidr;
pub use keyward_gateway_head::ForwardedHeader;

/// The address a request comes from, and how many entries (from the right)
/// of the forwarding chain lead to it through trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Origin {
    pub client: IpAddr,
    /// Entries of the chain kept for the upstream, counted from the right.
    pub kept: usize,
}

/// Finds the client behind `peer`. `values` holds the lines of the
/// forwarding header, joined in order by `, `.
pub(super) fn origin(
    trusted: &[Cidr],
    header: ForwardedHeader,
    values: &str,
    peer: IpAddr,
) -> Origin {
    let peer = peer.to_canonical();
    let mut found = Origin {
        client: peer,
        kept: 0,
    };
    if !is_trusted(trusted, peer) || values.is_empty() {
        return found;
    }
    for (n, hop) in hops(header, values).rev().enumerate() {
        // An entry that is not an address (`unknown`, an obfuscated name,
        // garbage) ends the walk: what lies left of it cannot be checked.
        let Some(ip) = hop else {
            break;
        };
        found = Origin {
            client: ip,
            kept: n + 1,
        };
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    found
}

/// Writes `X-Forwarded-For` and `Forwarded` for the upstream: the client,
/// the trusted proxies between, and the peer the gateway saw. Entries the
/// client may have forged (left of the client) are not sent on.
pub(super) fn push_headers(
    out: &mut Vec<u8>,
    header: ForwardedHeader,
    values: &str,
    origin: Origin,
    peer: IpAddr,
) {
    let peer = peer.to_canonical();
    let each = |f: &mut dyn FnMut(IpAddr)| {
        if origin.kept > 0 {
            let total = hops(header, values).count();
            for ip in hops(header, values).skip(total - origin.kept).flatten() {
                f(ip);
            }
        }
        f(peer);
    };
    // Writing to a Vec cannot fail.
    out.extend_from_slice(b"x-forwarded-for: ");
    let mut first = true;
    each(&mut |ip| {
        if !std::mem::take(&mut first) {
            out.extend_from_slice(b", ");
        }
        let _ = write!(out, "{ip}");
    });
    out.extend_from_slice(b"\r\nforwarded: ");
    let mut first = true;
    each(&mut |ip| {
        if !std::mem::take(&mut first) {
            out.extend_from_slice(b", ");
        }
        let _ = match ip {
            IpAddr::V4(v4) => write!(out, "for={v4}"),
            IpAddr::V6(v6) => write!(out, "for=\"[{v6}]\""),
        };
    });
    out.extend_from_slice(b"\r\n");
}

fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|range| range.contains(ip))
}

/// The chain's entries, left to right; `None` for one that is not an
/// address.
fn hops(
    header: ForwardedHeader,
    values: &str,
) -> impl DoubleEndedIterator<Item = Option<IpAddr>> + '_ {
    split_outside_quotes(values, b',').map(move |entry| match header {
        ForwardedHeader::XForwardedFor => node(entry.trim()),
        ForwardedHeader::Forwarded => split_outside_quotes(entry, b';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
            .and_then(|(_, value)| node(unquote(value.trim()))),
    })
}

/// An address, maybe with a port (`192.0.2.1:80`, `[2001:db8::1]:443`) or
/// in brackets.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// A quoted-string's content (escapes are not expected in an address and
/// make it invalid).
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Splits on `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: u8) -> impl DoubleEndedIterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    let mut bounds = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == separator && !quoted {
            bounds.push((start, i));
            start = i + 1;
        }
    }
    bounds.push((start, text.len()));
    bounds.into_iter().map(move |(from, to)| &text[from..to])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|r| Cidr::parse(r).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_first_untrusted_address_from_the_right() {
        let trusted = ranges(&["10.0.0.0/8", "2001:db8::/32"]);
        let xff = ForwardedHeader::XForwardedFor;
        let fwd = ForwardedHeader::Forwarded;
        for (header, values, peer, client, kept) in [
            // No trusted peer: the headers are not read.
            (xff, "192.0.2.9", "198.51.100.1", "198.51.100.1", 0),
            (xff, "", "10.0.0.1", "10.0.0.1", 0),
            (xff, "192.0.2.9", "10.0.0.1", "192.0.2.9", 1),
            (
                xff,
                "203.0.113.5, 192.0.2.9, 10.1.1.1",
                "10.0.0.1",
                "192.0.2.9",
                2,
            ),
            (xff, "10.2.2.2, 10.1.1.1", "10.0.0.1", "10.2.2.2", 2),
            (
                xff,
                "203.0.113.5, garbage, 10.1.1.1",
                "10.0.0.1",
                "10.1.1.1",
                1,
            ),
            (xff, "192.0.2.9:4711", "10.0.0.1", "192.0.2.9", 1),
            (xff, "[2001:db9::1]:80", "::ffff:10.0.0.1", "2001:db9::1", 1),
            (fwd, "for=192.0.2.9", "10.0.0.1", "192.0.2.9", 1),
            (
                fwd,
                "for=203.0.113.5, for=\"[2001:db9::7]:4711\";proto=https, for=10.1.1.1",
                "10.0.0.1",
                "2001:db9::7",
                2,
            ),
            (
                fwd,
                "by=10.0.0.1;For=\"192.0.2.9\"",
                "10.0.0.1",
                "192.0.2.9",
                1,
            ),
            (fwd, "for=unknown", "10.0.0.1", "10.0.0.1", 0),
            (fwd, "for=_hidden, for=10.1.1.1", "10.0.0.1", "10.1.1.1", 1),
            (
                fwd,
                "for=\"a,b\";by=x, for=192.0.2.9",
                "10.0.0.1",
                "192.0.2.9",
                1,
            ),
        ] {
            let got = origin(&trusted, header, values, ip(peer));
            assert_eq!(
                got,
                Origin {
                    client: ip(client),
                    kept
                },
                "{values:?} from {peer}"
            );
        }
    }

    #[test]
    fn the_upstream_gets_the_chain_from_the_client_on() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let header = ForwardedHeader::XForwardedFor;
        let values = "203.0.113.5, 192.0.2.9, 10.1.1.1";
        let peer = ip("10.0.0.1");
        let origin = origin(&trusted, header, values, peer);
        let mut out = Vec::new();
        push_headers(&mut out, header, values, origin, peer);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-forwarded-for: 192.0.2.9, 10.1.1.1, 10.0.0.1\r\n\
             forwarded: for=192.0.2.9, for=10.1.1.1, for=10.0.0.1\r\n"
        );
        let peer = ip("2001:db8::5");
        let origin = super::origin(&trusted, header, values, peer);
        let mut out = Vec::new();
        push_headers(&mut out, header, values, origin, peer);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-forwarded-for: 2001:db8::5\r\nforwarded: for=\"[2001:db8::5]\"\r\n"
        );
    }

    /// Entries a chain is made of: trusted proxies, outsiders, and things
    /// that are not addresses.
    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..4).prop_map(|n| format!("10.0.0.{n}")),
            (0u8..4).prop_map(|n| format!("192.0.2.{n}")),
            (0u8..4).prop_map(|n| format!("[2001:db9::{n}]:80")),
            Just("unknown".to_owned()),
            Just(String::new()),
        ]
    }

    proptest! {
        /// Whatever a client writes to the left of a chain that reaches an
        /// outsider does not change who the client is; and without a
        /// trusted peer no header does.
        #[test]
        fn a_client_cannot_choose_its_address(
            forged in proptest::collection::vec(entry(), 0..6),
            chain in proptest::collection::vec(entry(), 0..6),
            peer_trusted in any::<bool>(),
        ) {
            let trusted = ranges(&["10.0.0.0/8"]);
            let peer = if peer_trusted { ip("10.9.9.9") } else { ip("198.51.100.1") };
            let header = ForwardedHeader::XForwardedFor;
            let honest = chain.join(", ");
            let both = forged.iter().chain(&chain).cloned().collect::<Vec<_>>().join(", ");
            let alone = origin(&trusted, header, &honest, peer);
            let with_forgery = origin(&trusted, header, &both, peer);
            if !peer_trusted {
                prop_assert_eq!(with_forgery.client, peer);
                prop_assert_eq!(with_forgery.kept, 0);
            } else if alone.kept > 0 && !is_trusted(&trusted, alone.client) {
                prop_assert_eq!(with_forgery, alone);
            }
            let mut out = Vec::new();
            push_headers(&mut out, header, &both, with_forgery, peer);
            let text = String::from_utf8(out).unwrap();
            let first = format!("x-forwarded-for: {}", with_forgery.client);
            prop_assert!(text.starts_with(&first), "{}", text);
        }
    }
}
