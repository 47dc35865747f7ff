//! Identifiers, clocks and base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 32 bytes that differ on every call but are not guaranteed unpredictable:
/// std's randomly seeded hash keys over a counter and the clock. Only for
/// when the operating system's random source fails.
pub(crate) fn weak_entropy() -> [u8; 32] {
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// Fills `buf` from the operating system's random source. Should it fail,
/// the bytes come from [`weak_entropy`] instead and a warning is logged
/// once: identifiers are not secrets, only meant not to repeat.
fn fill_random(buf: &mut [u8]) {
    if let Err(error) = getrandom::fill(buf) {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(%error, "no operating-system randomness; ids use weaker sources");
        });
        for chunk in buf.chunks_mut(32) {
            let weak = weak_entropy();
            chunk.copy_from_slice(&weak[..chunk.len()]);
        }
    }
}

/// `prefix` followed by `len` characters of `[a-z0-9]` (or `[A-Za-z0-9]` when
/// `mixed_case`), drawn from the operating system's random source.
pub(crate) fn random_id(prefix: &str, len: usize, mixed_case: bool) -> String {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    /// Characters taken from one random `u64` (36^10 and 62^10 fit in it).
    const PER_WORD: usize = 10;
    let alphabet = if mixed_case { MIXED } else { LOWER };
    let base = alphabet.len() as u64;
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    // One call to the random source per 80 characters (ids are 24 or 32).
    let mut left = len;
    while left > 0 {
        let mut words = [0u8; 64];
        fill_random(&mut words);
        for word in words.chunks_exact(8) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(word);
            let mut bits = u64::from_le_bytes(raw);
            for _ in 0..PER_WORD.min(left) {
                id.push(char::from(alphabet[(bits % base) as usize]));
                bits /= base;
                left -= 1;
            }
            if left == 0 {
                break;
            }
        }
    }
    id
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Standard base64 (RFC 4648 alphabet) with padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard padded base64 (canonical padding and trailing bits);
/// `None` if it is not.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
        assert!(base64_decode("Zm9").is_none());
        assert!(base64_decode("Zm=v").is_none());
        assert!(base64_decode("Zm8").is_none(), "padding is required");
        assert!(base64_decode("Zg").is_none());
        assert!(base64_decode("Zm-_").is_none(), "not the URL-safe alphabet");
        assert!(base64_decode(" Zm9v").is_none());
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn ids_have_shape_and_differ() {
        let a = random_id("call_", 24, false);
        let b = random_id("call_", 24, false);
        assert_eq!(a.len(), 29);
        assert!(a.starts_with("call_"));
        assert!(a[5..]
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(a, b);
    }

    #[test]
    fn ids_of_any_length() {
        for len in [0, 1, 9, 10, 11, 79, 80, 81, 200] {
            let id = random_id("x_", len, true);
            assert_eq!(id.len(), 2 + len, "len {len}");
            assert!(id[2..].bytes().all(|c| c.is_ascii_alphanumeric()));
        }
        // Mixed case uses upper case too (32 characters: all lower case
        // by chance about once in 10^9).
        assert!((0..4).any(|_| random_id("", 32, true)
            .bytes()
            .any(|c| c.is_ascii_uppercase())));
    }

    #[test]
    fn weak_entropy_differs() {
        assert_ne!(weak_entropy(), weak_entropy());
    }
}
