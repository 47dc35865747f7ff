//! Identifiers and clocks.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random 64-bit value (not for cryptography): std's per-process random
/// hash keys mixed with a counter and the clock.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// `prefix` followed by `len` characters of `[a-z0-9]` (or `[A-Za-z0-9]` when
/// `mixed_case`).
pub(crate) fn random_id(prefix: &str, len: usize, mixed_case: bool) -> String {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let alphabet = if mixed_case { MIXED } else { LOWER };
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    let mut bits = random_u64();
    let mut left = 10;
    for _ in 0..len {
        if left == 0 {
            bits = random_u64();
            left = 10;
        }
        id.push(alphabet[(bits % alphabet.len() as u64) as usize] as char);
        bits /= alphabet.len() as u64;
        left -= 1;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
