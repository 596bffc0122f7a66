//! Lower-case hex for the text forms of keys and shares. Decoding works on
//! bytes, so any input — non-ASCII included — is an error, never a panic.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as hex to `out`.
pub(crate) fn push(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// Fills `out` from exactly `2 * out.len()` hex digits; `None` otherwise.
pub(crate) fn decode(text: &str, out: &mut [u8]) -> Option<()> {
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(())
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_anything_else() {
        let mut text = String::new();
        super::push(&mut text, &[0x00, 0xab, 0xff]);
        assert_eq!(text, "00abff");
        let mut out = [0u8; 3];
        assert_eq!(super::decode("00ABff", &mut out), Some(()));
        assert_eq!(out, [0x00, 0xab, 0xff]);
        for bad in ["00abf", "00abfg", "éé00", "00abff00"] {
            assert_eq!(super::decode(bad, &mut [0u8; 3]), None, "{bad}");
        }
    }
}
