//! [`ResponseStore`]: answered responses kept for a while, so a Responses
//! client can continue a conversation with `previous_response_id` (and read
//! or forget a response by its id).
//!
//! Bounded three ways, each a setting: entries, bytes, and a time to live.
//! Entries are keyed by the response id *and* the digest of the credential
//! the client sent ([`Owner`]), so one key never reads or continues
//! another's conversation. The least recently used entries go first; an
//! expired one is gone when next asked for.

use crate::signing::sha256;
use bytes::Bytes;
use http::HeaderMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who sent a request: a digest of its credential (`Authorization` or
/// `x-api-key`; none is an owner too). Put in the request's extensions by
/// the service before it takes the credential off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner([u8; 32]);

impl Owner {
    /// The owner of a request with these headers.
    pub(crate) fn of(headers: &HeaderMap) -> Owner {
        let credential = headers
            .get(http::header::AUTHORIZATION)
            .or_else(|| headers.get("x-api-key"))
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let credential = credential
            .strip_prefix(b"Bearer ")
            .or_else(|| credential.strip_prefix(b"bearer "))
            .unwrap_or(credential);
        Owner(sha256(credential.trim_ascii()))
    }

    /// This owner among the requests let in by the key with this digest:
    /// another key never names the same owner, whatever else the requests
    /// carry (a credential for the inner service beside the key).
    pub(crate) fn within(self, key: [u8; 32]) -> Owner {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&key);
        both[32..].copy_from_slice(&self.0);
        Owner(sha256(&both))
    }
}

/// One kept response.
#[derive(Debug)]
pub(crate) struct Kept {
    /// The conversation so far, as Responses items: every input item of the
    /// chain, then this response's output items (a JSON array).
    pub(crate) items: Bytes,
    /// The `response` object as answered.
    pub(crate) response: Bytes,
    /// The id of the conversation's first response (which names the
    /// conversation to a pool).
    pub(crate) root: String,
}

impl Kept {
    fn size(&self) -> usize {
        self.items.len() + self.response.len() + self.root.len() + 128
    }
}

/// The store's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoreLimits {
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
    pub(crate) ttl: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            entries: 1024,
            bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(30 * 60),
        }
    }
}

type Key = (String, Owner);

struct Entry {
    kept: Arc<Kept>,
    expires: Instant,
    /// Its place in the order of use.
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Use order: the oldest first.
    order: BTreeMap<u64, Key>,
    bytes: usize,
    clock: u64,
}

impl Inner {
    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.used);
        self.bytes -= entry.kept.size();
        Some(entry)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// Kept responses, shared by every clone of the layer.
pub(crate) struct ResponseStore {
    limits: StoreLimits,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStore")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ResponseStore {
    pub(crate) fn new(limits: StoreLimits) -> Arc<Self> {
        Arc::new(ResponseStore {
            limits,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Whether responses are kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.limits.entries > 0 && self.limits.bytes > 0 && !self.limits.ttl.is_zero()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data: use it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The response `id` that `owner` was given, unless it expired.
    pub(crate) fn get(&self, id: &str, owner: Owner, now: Instant) -> Option<Arc<Kept>> {
        let mut inner = self.lock();
        let key = (id.to_string(), owner);
        let expired = inner.entries.get(&key)?.expires <= now;
        if expired {
            inner.remove(&key);
            return None;
        }
        let used = inner.tick();
        let entry = inner.entries.get_mut(&key)?;
        let old = std::mem::replace(&mut entry.used, used);
        let kept = entry.kept.clone();
        inner.order.remove(&old);
        inner.order.insert(used, key);
        Some(kept)
    }

    /// Keeps a response; the least recently used go to make room. One
    /// larger than the whole store is not kept.
    pub(crate) fn put(&self, id: String, owner: Owner, kept: Kept, now: Instant) {
        if !self.enabled() || kept.size() > self.limits.bytes {
            return;
        }
        let mut inner = self.lock();
        let key = (id, owner);
        inner.remove(&key);
        while inner.entries.len() >= self.limits.entries
            || inner.bytes + kept.size() > self.limits.bytes
        {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                inner.bytes -= entry.kept.size();
            }
        }
        let used = inner.tick();
        inner.bytes += kept.size();
        inner.order.insert(used, key.clone());
        let expires = now + self.limits.ttl;
        inner.entries.insert(
            key,
            Entry {
                kept: Arc::new(kept),
                expires,
                used,
            },
        );
    }

    /// Forgets the response `id` of `owner`; whether it was there.
    pub(crate) fn remove(&self, id: &str, owner: Owner, now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.remove(&(id.to_string(), owner)) {
            Some(entry) => entry.expires > now,
            None => false,
        }
    }

    /// Entries and bytes held (for tests).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(n: usize) -> Kept {
        Kept {
            items: Bytes::from(vec![b'x'; n]),
            response: Bytes::from_static(b"{}"),
            root: String::new(),
        }
    }

    fn owner(key: &str) -> Owner {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {key}").parse().unwrap());
        Owner::of(&h)
    }

    #[test]
    fn an_owner_within_a_key_is_not_the_same_within_another() {
        let o = owner("user-1");
        let (k1, k2) = (sha256(b"k1"), sha256(b"k2"));
        assert_eq!(o.within(k1), owner("user-1").within(k1));
        assert_ne!(o.within(k1), o.within(k2));
        assert_ne!(o.within(k1), owner("user-2").within(k1));
        assert_ne!(o.within(k1), o);
    }

    #[test]
    fn owners_are_told_apart_by_their_credential() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(Owner::of(&h), owner("k1"));
        assert_ne!(owner("k1"), owner("k2"));
        assert_eq!(Owner::of(&HeaderMap::new()), Owner::of(&HeaderMap::new()));
        assert_ne!(Owner::of(&HeaderMap::new()), owner("k1"));
    }

    #[test]
    fn a_response_is_kept_for_its_owner_until_it_expires() {
        let store = ResponseStore::new(StoreLimits {
            entries: 10,
            bytes: 1 << 20,
            ttl: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        store.put("resp_1".into(), owner("a"), kept(10), t0);
        assert!(store.get("resp_1", owner("a"), t0).is_some());
        assert!(store.get("resp_1", owner("b"), t0).is_none(), "another key");
        assert!(store.get("resp_2", owner("a"), t0).is_none());
        assert!(store
            .get("resp_1", owner("a"), t0 + Duration::from_secs(61))
            .is_none());
        assert_eq!(
            store.held(),
            (0, 0),
            "an expired entry is gone once asked for"
        );
        store.put("resp_1".into(), owner("a"), kept(10), t0);
        assert!(!store.remove("resp_1", owner("b"), t0));
        assert!(store.remove("resp_1", owner("a"), t0));
        assert!(store.get("resp_1", owner("a"), t0).is_none());
    }

    #[test]
    fn entries_and_bytes_are_bounded_least_recently_used_first() {
        let store = ResponseStore::new(StoreLimits {
            entries: 3,
            bytes: 1000,
            ttl: Duration::from_secs(60),
        });
        let t = Instant::now();
        for i in 0..3 {
            store.put(format!("r{i}"), owner("a"), kept(10), t);
        }
        assert!(
            store.get("r0", owner("a"), t).is_some(),
            "r0 used: r1 is the oldest now"
        );
        store.put("r3".into(), owner("a"), kept(10), t);
        assert!(store.get("r1", owner("a"), t).is_none());
        assert!(store.get("r0", owner("a"), t).is_some());
        assert_eq!(store.held().0, 3);
        // Bytes: a big one pushes out what it must.
        store.put("big".into(), owner("a"), kept(700), t);
        let (entries, bytes) = store.held();
        assert!(
            bytes <= 1000 && entries <= 3,
            "{entries} entries, {bytes} bytes"
        );
        assert!(store.get("big", owner("a"), t).is_some());
        // Larger than the whole store: not kept, nothing pushed out.
        let before = store.held();
        store.put("huge".into(), owner("a"), kept(5000), t);
        assert!(store.get("huge", owner("a"), t).is_none());
        assert_eq!(store.held(), before);
    }

    #[test]
    fn a_store_of_no_entries_keeps_nothing() {
        let store = ResponseStore::new(StoreLimits {
            entries: 0,
            ..StoreLimits::default()
        });
        assert!(!store.enabled());
        let t = Instant::now();
        store.put("r".into(), owner("a"), kept(1), t);
        assert!(store.get("r", owner("a"), t).is_none());
    }
}
