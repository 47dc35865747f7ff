//! Small helpers to write JSON straight into an output buffer.

use bytes::{BufMut, BytesMut};

/// Appends `s` as a JSON string literal (with quotes).
pub(crate) fn write_str(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
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
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(esc);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
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
        for s in ["plain", "quote\"back\\slash", "nl\n\r\t\u{1}\u{1f}é✓", ""] {
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
    }
}
