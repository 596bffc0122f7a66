//! Fixed-width base62 (`0-9A-Za-z`) of big-endian unsigned integers.
//!
//! Fixed width matters twice: keys have a constant length, so a scanner can
//! match them with one pattern, and identifiers sort in the same order as the
//! numbers they encode, so cursor pagination by id is chronological.

/// The digit alphabet; a character's value is its index.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes `bytes` (one big-endian integer) in exactly `width` digits,
/// left-padded with `0`. Returns `None` when the number needs more digits.
pub fn encode(bytes: &[u8], width: usize) -> Option<String> {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    let mut position = width;
    while number.iter().any(|&b| b != 0) {
        if position == 0 {
            return None;
        }
        // Long division of the whole number by 62, most significant byte first.
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let accumulator = (remainder << 8) | u32::from(*byte);
            *byte = (accumulator / 62) as u8;
            remainder = accumulator % 62;
        }
        position -= 1;
        digits[position] = ALPHABET[remainder as usize];
    }
    // Every byte pushed is from ALPHABET, which is ASCII.
    String::from_utf8(digits).ok()
}

/// Decodes base62 `digits` into a big-endian integer of exactly `N` bytes.
/// Returns `None` on a character outside the alphabet or when the number does
/// not fit in `N` bytes.
pub fn decode<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut number = [0u8; N];
    for &character in digits {
        let mut carry = u32::from(digit_value(character)?);
        // number = number * 62 + digit, least significant byte last.
        for byte in number.iter_mut().rev() {
            let accumulator = u32::from(*byte) * 62 + carry;
            *byte = (accumulator & 0xff) as u8;
            carry = accumulator >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

/// The value of one base62 digit, or `None` for any other byte.
pub fn digit_value(character: u8) -> Option<u8> {
    match character {
        b'0'..=b'9' => Some(character - b'0'),
        b'A'..=b'Z' => Some(character - b'A' + 10),
        b'a'..=b'z' => Some(character - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers_are_left_padded() {
        assert_eq!(encode(&[0], 3).as_deref(), Some("000"));
        assert_eq!(encode(&[61], 2).as_deref(), Some("0z"));
        assert_eq!(encode(&[62], 2).as_deref(), Some("10"));
        assert_eq!(encode(&[1, 0], 3).as_deref(), Some("048"));
    }

    #[test]
    fn too_narrow_a_width_is_refused() {
        assert_eq!(encode(&[62], 1), None);
    }

    #[test]
    fn decode_inverts_encode() {
        let bytes = [0x12, 0x34, 0x56, 0x78, 0x9a];
        let text = encode(&bytes, 7).unwrap_or_default();
        assert_eq!(decode::<5>(text.as_bytes()), Some(bytes));
    }

    #[test]
    fn decode_refuses_overflow_and_foreign_characters() {
        assert_eq!(decode::<1>(b"44"), Some([252]));
        assert_eq!(decode::<1>(b"47"), Some([255]));
        assert_eq!(decode::<1>(b"48"), None); // 256 does not fit in one byte
        assert_eq!(decode::<4>(b"a_b"), None);
    }
}
