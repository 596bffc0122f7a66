//! Lower-case hex for the text forms of keys and shares, by `base16ct`:
//! no branch or table lookup depends on a digit's value, so the time taken
//! says nothing of the key. Decoding accepts either case and works on
//! bytes, so any input — non-ASCII included — is an error, never a panic.
//! What this module adds is the exact length and the wiped intermediate.

use zeroize::Zeroizing;

/// Appends `bytes` as lower-case hex to `out`. The intermediate text is
/// wiped, since `bytes` is often key material.
pub(crate) fn push(out: &mut String, bytes: &[u8]) {
    out.push_str(&Zeroizing::new(base16ct::lower::encode_string(bytes)));
}

/// Fills `out` from exactly `2 * out.len()` hex digits; `None` otherwise.
pub(crate) fn decode(text: &str, out: &mut [u8]) -> Option<()> {
    let len = out.len();
    match base16ct::mixed::decode(text, out) {
        // Fewer digits would fill only the start of `out`.
        Ok(decoded) if decoded.len() == len => Some(()),
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

    #[test]
    fn too_few_digits_are_refused_not_taken_for_the_start() {
        assert_eq!(super::decode("00ab", &mut [0u8; 3]), None);
        assert_eq!(super::decode("", &mut [0u8; 1]), None);
        assert_eq!(super::decode("", &mut []), Some(()));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_lower_case_hex_and_round_trip_in_either_case(bytes: Vec<u8>) {
            let mut text = String::new();
            super::push(&mut text, &bytes);
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            proptest::prop_assert_eq!(&text, &expected);
            let mut back = vec![0u8; bytes.len()];
            proptest::prop_assert_eq!(super::decode(&text.to_uppercase(), &mut back), Some(()));
            proptest::prop_assert_eq!(back, bytes);
        }

        #[test]
        fn any_text_is_decoded_or_refused_without_a_panic(text: String, len in 0usize..40) {
            let _ = super::decode(&text, &mut vec![0u8; len]);
        }
    }
}
