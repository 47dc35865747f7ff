//! Small helpers to write JSON straight into an output buffer.

use bytes::{BufMut, BytesMut};

/// Appends `s` as a JSON string literal (with quotes).
pub(crate) fn write_str(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most text needs no escape: skip it eight bytes at a time.
        if let Some(block) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(block);
            if !needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.put_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.put_slice(b"\\u00");
                out.put_u8(HEX[(b >> 4) as usize]);
                out.put_u8(HEX[(b & 0xf) as usize]);
                i += 1;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(esc);
        i += 1;
        start = i;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

/// Whether any of the eight bytes in `w` is `"`, `\\` or below 0x20.
pub(crate) fn needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is below `n` (n <= 0x80).
    let below = |x: u64, n: u64| x.wrapping_sub(LO * n) & !x & HI;
    let quote = w ^ (LO * u64::from(b'"'));
    let backslash = w ^ (LO * u64::from(b'\\'));
    (below(w, 0x20) | below(quote, 1) | below(backslash, 1)) != 0
}

/// Appends an unsigned integer.
pub(crate) fn write_u64(out: &mut BytesMut, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_like_serde() {
        for s in [
            "plain",
            "quote\"back\\slash",
            "nl\n\r\t\u{1}\u{1f}é✓",
            "",
            "eight ok",
            "a longer clean run of text, then \"a quote\" and\\ more \u{7f}\u{1f}",
        ] {
            let mut b = BytesMut::new();
            write_str(&mut b, s);
            assert_eq!(&b[..], serde_json::to_string(s).unwrap().as_bytes());
        }
    }

    #[test]
    fn writes_integers() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut b = BytesMut::new();
            write_u64(&mut b, n);
            assert_eq!(&b[..], n.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in ".*") {
            let mut b = BytesMut::new();
            write_str(&mut b, &s);
            let back: String = serde_json::from_slice(&b).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn escapes_exactly_like_serde(s in "[a-z \\x00-\\x1f\"\\\\é✓\\x7f]{0,40}") {
            let mut b = BytesMut::new();
            write_str(&mut b, &s);
            let want = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(&b[..], want.as_bytes());
        }
    }
}
