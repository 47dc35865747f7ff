//! Who may do what: named API keys, the paths each may reach, and how many
//! requests each may have in flight.
//!
//! An [`Access`] is given to the layer with
//! [`OllamaTranslateLayer::access`](crate::OllamaTranslateLayer::access).
//! It holds a set of [`Keys`], each a name and the SHA-256 digest of the
//! key (never the key), whether it is an admin key, and how many requests
//! it may have in flight. Every clone of the layer shares it, and
//! [`Access::replace`] swaps the keys at run time: a key added or revoked
//! counts from the next request, without a restart.
//!
//! Paths have a [`Scope`]: generation and read-only paths are open to every
//! key; model management, blobs, Ollama's account and cloud endpoints and
//! anything the layer does not know need an admin key, and are refused
//! with a 403 in the path's error shape otherwise.
//!
//! ```
//! use ollama_translate::access::{Access, Key, KeyDigest, Keys};
//! use ollama_translate::OllamaTranslateLayer;
//!
//! let mut keys = Keys::new();
//! keys.insert(Key::new("ops", KeyDigest::of("sk-ops-secret"))?.admin(true))?;
//! keys.insert(Key::new("alice", KeyDigest::of("sk-alice-secret"))?.max_in_flight(4))?;
//! let access = Access::new(keys);
//! let layer = OllamaTranslateLayer::new().access(access.clone());
//! // Later, from a file watcher: alice's key is revoked.
//! let mut keys = Keys::new();
//! keys.insert(Key::new("ops", KeyDigest::of("sk-ops-secret"))?.admin(true))?;
//! access.replace(keys);
//! assert_eq!(access.len(), 1);
//! # let _ = layer;
//! # Ok::<(), ollama_translate::ConfigError>(())
//! ```
//!
//! A request that carries a known key gets a [`Caller`] in its extensions
//! (the inner service can read it), and reaches the inner service without
//! the key. Its key's *name* labels the request's metrics and span.

use crate::config::ConfigError;
use crate::error::ApiError;
use crate::signing::sha256;
use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// The SHA-256 digest of an API key: what a keys file stores instead of
/// the key. Written as 64 hex digits.
///
/// ```
/// use ollama_translate::access::KeyDigest;
///
/// let d = KeyDigest::of("abc");
/// assert_eq!(d.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert_eq!(d.to_string().parse::<KeyDigest>(), Ok(d));
/// assert_eq!(KeyDigest::of(" abc\n"), d, "surrounding whitespace is not part of a key");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `key`, without surrounding ASCII whitespace (as the
    /// layer reads keys from headers).
    pub fn of(key: &str) -> KeyDigest {
        KeyDigest(sha256(trim(key).as_bytes()))
    }

    pub(crate) fn bytes(&self) -> [u8; 32] {
        self.0
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyDigest {
    /// The first eight digits only: enough to tell two apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({}…)", hex::encode(&self.0[..4]))
    }
}

impl std::str::FromStr for KeyDigest {
    type Err = ConfigError;

    /// 64 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError(format!(
                "a key digest is 64 hex digits (SHA-256), got {} characters",
                s.chars().count()
            ))
        };
        let s = s.trim().as_bytes();
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| ConfigError("a key digest is 64 hex digits (SHA-256)".into()))?;
        Ok(KeyDigest(out))
    }
}

/// The longest key name: names label metrics.
pub const MAX_NAME_BYTES: usize = 64;

/// One named key: its name, its digest, whether it may use the admin paths,
/// and how many requests it may have in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    name: Arc<str>,
    digest: KeyDigest,
    admin: bool,
    max_in_flight: Option<usize>,
}

impl Key {
    /// A key named `name` (1 to [`MAX_NAME_BYTES`] ASCII letters, digits
    /// and `_ - . @`), neither admin nor limited.
    pub fn new(name: &str, digest: KeyDigest) -> Result<Key, ConfigError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@');
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.chars().all(ok) {
            return Err(ConfigError(format!(
                "key name {:?}: 1 to {MAX_NAME_BYTES} ASCII letters, digits and _ - . @",
                name.escape_debug().to_string()
            )));
        }
        Ok(Key {
            name: Arc::from(name),
            digest,
            admin: false,
            max_in_flight: None,
        })
    }

    /// Whether the key may use the admin paths (default: no).
    pub fn admin(mut self, admin: bool) -> Key {
        self.admin = admin;
        self
    }

    /// At most `n` requests of this key in flight at once (default: no
    /// limit; `0` removes the limit). A request counts from its arrival to
    /// the end of its response body, so a stream counts for as long as it
    /// streams. Past it the layer answers 429 with `Retry-After` in the
    /// client's error shape at once; nothing waits in a queue.
    pub fn max_in_flight(mut self, n: usize) -> Key {
        self.max_in_flight = (n > 0).then_some(n);
        self
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's digest.
    pub fn digest(&self) -> KeyDigest {
        self.digest
    }

    /// Whether the key may use the admin paths.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Its limit of requests in flight, if it has one.
    pub fn in_flight_limit(&self) -> Option<usize> {
        self.max_in_flight
    }
}

/// A set of named keys: names and digests are unique.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    keys: Vec<Key>,
}

impl Keys {
    /// No keys.
    pub fn new() -> Keys {
        Keys::default()
    }

    /// Adds `key`; an error when its name or digest is already there.
    pub fn insert(&mut self, key: Key) -> Result<(), ConfigError> {
        if self.keys.iter().any(|k| k.name == key.name) {
            return Err(ConfigError(format!("two keys are named {:?}", &*key.name)));
        }
        if let Some(k) = self.keys.iter().find(|k| k.digest == key.digest) {
            return Err(ConfigError(format!(
                "keys {:?} and {:?} have the same digest",
                &*k.name, &*key.name
            )));
        }
        self.keys.push(key);
        Ok(())
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

/// What a path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Generation and read-only paths: open to every key.
    Use,
    /// Model management (`/api/pull`, `/api/push`, `/api/create`,
    /// `/api/copy`, `/api/delete`), blobs, Ollama's account and cloud
    /// endpoints (`/api/me`, `/api/signout`, `/api/status`,
    /// `/api/experimental/*`), and every path the layer does not know:
    /// admin keys only.
    Admin,
}

impl Scope {
    /// The scope of `method path`.
    ///
    /// Open to every key: the paths the layer translates; `/v1` and below
    /// (OpenAI- and Anthropic-shaped, generation and model lists); and of
    /// Ollama's native API `/`, `/api/version`, `/api/tags`, `/api/ps`,
    /// `/api/show`, `/api/chat`, `/api/generate`, `/api/embed` and
    /// `/api/embeddings`. Everything else is [`Scope::Admin`], also a path
    /// passed through with percent-escapes, `//`, or `.` or `..` segments
    /// (Ollama's router would read it as another path).
    ///
    /// ```
    /// use http::Method;
    /// use ollama_translate::access::Scope;
    ///
    /// assert_eq!(Scope::of(&Method::POST, "/api/chat"), Scope::Use);
    /// assert_eq!(Scope::of(&Method::GET, "/v1/models"), Scope::Use);
    /// assert_eq!(Scope::of(&Method::DELETE, "/api/delete"), Scope::Admin);
    /// assert_eq!(Scope::of(&Method::POST, "/api/experimental/web_search"), Scope::Admin);
    /// assert_eq!(Scope::of(&Method::POST, "/api/%64elete"), Scope::Admin);
    /// ```
    pub fn of(method: &Method, path: &str) -> Scope {
        if crate::dialect::route(method, path).is_some() {
            return Scope::Use;
        }
        if !clean(path) {
            return Scope::Admin;
        }
        let p = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        if p == "/v1" || p.starts_with("/v1/") {
            return Scope::Use;
        }
        match p {
            "/" | "/api/version" | "/api/tags" | "/api/ps" | "/api/show" | "/api/chat"
            | "/api/generate" | "/api/embed" | "/api/embeddings" => Scope::Use,
            _ => Scope::Admin,
        }
    }
}

/// A path Ollama's router reads as it is written: no escapes, no empty,
/// `.` or `..` segments (but a trailing `/`).
fn clean(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('%') || path.contains('\\') {
        return false;
    }
    let inner = path.strip_suffix('/').unwrap_or(path);
    inner
        .split('/')
        .skip(1)
        .all(|s| !s.is_empty() && s != "." && s != "..")
        || path == "/"
}

/// The key that let a request in, in the request's extensions (the inner
/// service may read it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    name: Arc<str>,
    admin: bool,
}

impl Caller {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is an admin key.
    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

/// One key as the layer holds it: the key and its requests in flight.
struct Entry {
    key: Key,
    in_flight: Arc<AtomicUsize>,
}

type Table = HashMap<KeyDigest, Entry>;

struct Shared {
    /// Whether a request must carry a known key.
    required: bool,
    /// Without keys, whether the admin paths are open to everyone.
    open_admin: bool,
    /// Whether paths the layer passes through are checked too.
    passthrough: bool,
    table: RwLock<Arc<Table>>,
}

/// Who may do what: the keys in force, shared by every clone (of it and of
/// the layer) and swapped at run time with [`Access::replace`].
///
/// Two modes:
/// * [`Access::new`]: every request must carry one of the keys
///   (`Authorization: Bearer <key>` or `x-api-key: <key>`), or it gets a
///   401 in its path's error shape, even when there are no keys (an empty
///   set lets nobody in).
/// * [`Access::open`]: no key is needed; anyone may use the
///   [`Scope::Use`] paths, and the admin paths are refused to everyone
///   unless [`Access::open_admin_paths`] opens them. A known key sent
///   anyway still counts as itself (its name, its rights, its limit).
///
/// Its `Debug` output shows the key names, never their digests.
#[derive(Clone)]
pub struct Access {
    shared: Arc<Shared>,
}

impl Access {
    /// Every request must carry one of `keys`.
    pub fn new(keys: Keys) -> Access {
        Access::build(true, false, keys)
    }

    /// No key is needed; the admin paths are closed (see
    /// [`Access::open_admin_paths`]).
    pub fn open() -> Access {
        Access::build(false, false, Keys::new())
    }

    /// With [`Access::open`], opens the admin paths to everyone (default:
    /// closed). With [`Access::new`] it changes nothing: admin paths always
    /// need an admin key then.
    pub fn open_admin_paths(self, open: bool) -> Access {
        let keys = self.current();
        let shared = Shared {
            open_admin: open && !self.shared.required,
            table: RwLock::new(keys),
            ..*self.shared
        };
        Access {
            shared: Arc::new(shared),
        }
    }

    /// Whether requests the layer does not translate (Ollama's native API,
    /// anything passed through to the wrapped service) are checked too
    /// (default: yes). An application that authenticates its own routes
    /// turns it off: those requests then reach the wrapped service as they
    /// came, credentials and all, with no key, scope or limit applied. The
    /// wrapped service must then guard Ollama's admin paths itself.
    ///
    /// ```
    /// use ollama_translate::access::{Access, Key, KeyDigest, Keys};
    ///
    /// let mut keys = Keys::new();
    /// keys.insert(Key::new("alice", KeyDigest::of("sk-alice"))?)?;
    /// let access = Access::new(keys).guard_passthrough(false);
    /// assert!(!access.guards_passthrough());
    /// # Ok::<(), ollama_translate::ConfigError>(())
    /// ```
    pub fn guard_passthrough(self, guard: bool) -> Access {
        let shared = Shared {
            passthrough: guard,
            table: RwLock::new(self.current()),
            ..*self.shared
        };
        Access {
            shared: Arc::new(shared),
        }
    }

    /// Whether requests the layer passes through are checked
    /// ([`Access::guard_passthrough`]).
    pub fn guards_passthrough(&self) -> bool {
        self.shared.passthrough
    }

    fn build(required: bool, open_admin: bool, keys: Keys) -> Access {
        let access = Access {
            shared: Arc::new(Shared {
                required,
                open_admin,
                passthrough: true,
                table: RwLock::new(Arc::default()),
            }),
        };
        access.replace(keys);
        access
    }

    /// Puts `keys` in force for every request from now on. A key kept from
    /// before keeps its count of requests in flight; requests of a revoked
    /// key already under way run to their end.
    pub fn replace(&self, keys: Keys) {
        let old = self.current();
        let table: Table = keys
            .keys
            .into_iter()
            .map(|key| {
                let in_flight = old
                    .get(&key.digest)
                    .map_or_else(Arc::default, |e| e.in_flight.clone());
                (key.digest, Entry { key, in_flight })
            })
            .collect();
        let table = Arc::new(table);
        match self.shared.table.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    fn current(&self) -> Arc<Table> {
        match self.shared.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// The names of the keys in force, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .current()
            .values()
            .map(|e| e.key.name().to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// Whether no key is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether requests must carry a key ([`Access::new`]).
    pub fn requires_key(&self) -> bool {
        self.shared.required
    }

    /// Whether the admin paths are open to everyone (an [`Access::open`]
    /// with [`Access::open_admin_paths`]).
    pub fn admin_paths_open(&self) -> bool {
        self.shared.open_admin
    }

    /// The key in force that `headers` carry, if any.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let table = self.current();
        let found = find(&table, headers)?;
        Some(found.0.caller())
    }

    /// Lets a request in, or says why not: a 401 (no known key where one
    /// is needed), a 403 (an admin path), a 429 (the key's requests in
    /// flight are at its limit).
    pub(crate) fn admit(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Admission, Refusal> {
        let table = self.current();
        let found = find(&table, headers);
        let scope = Scope::of(method, path);
        let Some((entry, carried)) = found else {
            if self.shared.required {
                return Err(Refusal::new(None, ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid API key: send Authorization: Bearer <key> or x-api-key: <key>",
                )));
            }
            if scope == Scope::Admin && !self.shared.open_admin {
                let message = format!(
                    "{method} {} is closed on this proxy: model management, blobs and Ollama's \
                     account and cloud endpoints need an admin key, and none is configured",
                    path.escape_debug()
                );
                return Err(Refusal::new(
                    None,
                    ApiError::new(StatusCode::FORBIDDEN, message),
                ));
            }
            return Ok(Admission::default());
        };
        let caller = entry.caller();
        if scope == Scope::Admin && !entry.key.admin && !self.shared.open_admin {
            let message = format!(
                "the key {:?} may not use {method} {}: model management, blobs and Ollama's \
                 account and cloud endpoints need an admin key",
                caller.name(),
                path.escape_debug()
            );
            return Err(Refusal::new(
                Some(caller),
                ApiError::new(StatusCode::FORBIDDEN, message),
            ));
        }
        let permit = match entry.key.max_in_flight {
            None => None,
            Some(limit) => match InFlight::acquire(&entry.in_flight, limit) {
                Some(p) => Some(p),
                None => {
                    let message = format!(
                        "the key {:?} has {limit} requests in flight, its limit; retry when one ends",
                        caller.name()
                    );
                    let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message);
                    return Err(Refusal::new(Some(caller), err));
                }
            },
        };
        Ok(Admission {
            caller: Some(caller),
            owner: Some(entry.key.digest),
            carried: Some(carried),
            permit,
        })
    }
}

impl Entry {
    fn caller(&self) -> Caller {
        Caller {
            name: self.key.name.clone(),
            admin: self.key.admin,
        }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("requires_key", &self.shared.required)
            .field("admin_paths_open", &self.shared.open_admin)
            .field("keys", &self.names())
            .finish()
    }
}

/// Where a request carried its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Carried {
    /// `Authorization: Bearer <key>`.
    pub(crate) bearer: bool,
    /// `x-api-key: <key>`.
    pub(crate) x_api_key: bool,
}

/// The header besides `Authorization` that may carry a key.
pub(crate) const X_API_KEY: &str = "x-api-key";

/// The known key `headers` carry (`Authorization: Bearer` first, then
/// `x-api-key`), and where. Each candidate is hashed and looked up by its
/// digest: the time taken depends on the digest, not on the key.
fn find<'t>(table: &'t Table, headers: &HeaderMap) -> Option<(&'t Entry, Carried)> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(|k| table.get(&KeyDigest::of(k)));
    let x_api_key = headers
        .get(X_API_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|k| table.get(&KeyDigest::of(k)));
    let entry = bearer.or(x_api_key)?;
    let same = |e: Option<&Entry>| e.is_some_and(|e| std::ptr::eq(e, entry));
    Some((
        entry,
        Carried {
            bearer: same(bearer),
            x_api_key: same(x_api_key),
        },
    ))
}

/// A request let in: who, whose responses it may continue, where its key
/// was, and its place among its key's requests in flight.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) caller: Option<Caller>,
    pub(crate) owner: Option<KeyDigest>,
    pub(crate) carried: Option<Carried>,
    pub(crate) permit: Option<InFlight>,
}

/// A request refused, and by whom when the key was known.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) caller: Option<Caller>,
    pub(crate) error: ApiError,
}

impl Refusal {
    fn new(caller: Option<Caller>, error: ApiError) -> Refusal {
        Refusal { caller, error }
    }
}

/// One request in flight for a key with a limit; the count goes down when
/// it is dropped (with the response body that holds it).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// A place if fewer than `limit` are taken.
    fn acquire(count: &Arc<AtomicUsize>, limit: usize) -> Option<InFlight> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(count.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn keys() -> Keys {
        let mut k = Keys::new();
        k.insert(Key::new("ops", KeyDigest::of("k-ops")).unwrap().admin(true))
            .unwrap();
        k.insert(
            Key::new("alice", KeyDigest::of("k-alice"))
                .unwrap()
                .max_in_flight(2),
        )
        .unwrap();
        k
    }

    #[test]
    fn digests_parse_and_print() {
        let d = KeyDigest::of("k");
        let hex = d.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<KeyDigest>().unwrap(), d);
        assert_eq!(hex.to_ascii_uppercase().parse::<KeyDigest>().unwrap(), d);
        assert!("abc".parse::<KeyDigest>().is_err());
        assert!("g".repeat(64).parse::<KeyDigest>().is_err());
        assert!(format!("{hex}0").parse::<KeyDigest>().is_err());
        let debug = format!("{d:?}");
        assert!(!debug.contains(&hex), "{debug}");
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(Key::new("alice.b-c_d@x", KeyDigest::of("k")).is_ok());
        for bad in ["", "a b", "a\"b", "ключ", &"x".repeat(65)] {
            assert!(Key::new(bad, KeyDigest::of("k")).is_err(), "{bad:?}");
        }
        assert!(Key::new(&"x".repeat(64), KeyDigest::of("k")).is_ok());
    }

    #[test]
    fn keys_refuse_a_second_name_or_digest() {
        let mut k = keys();
        let err = k
            .insert(Key::new("ops", KeyDigest::of("other")).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("two keys are named"), "{err}");
        let err = k
            .insert(Key::new("bob", KeyDigest::of("k-alice")).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("same digest"), "{err}");
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn scopes_of_native_and_client_paths() {
        let use_ = [
            (Method::POST, "/api/chat"),
            (Method::POST, "/api/generate"),
            (Method::POST, "/api/embed"),
            (Method::POST, "/api/embeddings"),
            (Method::POST, "/api/show"),
            (Method::GET, "/api/tags"),
            (Method::HEAD, "/api/tags"),
            (Method::GET, "/api/ps"),
            (Method::GET, "/api/version"),
            (Method::GET, "/"),
            (Method::POST, "/v1/chat/completions"),
            (Method::GET, "/v1/models/qwen3%3A8b"),
            (Method::POST, "/v1/images/generations"),
            (Method::GET, "/api/tags/"),
        ];
        for (m, p) in use_ {
            assert_eq!(Scope::of(&m, p), Scope::Use, "{m} {p}");
        }
        let admin = [
            (Method::DELETE, "/api/delete"),
            (Method::POST, "/api/pull"),
            (Method::POST, "/api/push"),
            (Method::POST, "/api/create"),
            (Method::POST, "/api/copy"),
            (Method::POST, "/api/blobs/sha256:abc"),
            (Method::HEAD, "/api/blobs/sha256:abc"),
            (Method::POST, "/api/me"),
            (Method::POST, "/api/signout"),
            (Method::DELETE, "/api/user/keys/abc"),
            (Method::GET, "/api/status"),
            (Method::POST, "/api/experimental/web_search"),
            (Method::POST, "/api/experimental/web_fetch"),
            (Method::GET, "/debug/pprof/"),
            (Method::POST, "/api/%64elete"),
            (Method::POST, "/v1/../api/delete"),
            (Method::POST, "/v1/./x"),
            (Method::POST, "/v1//x"),
            (Method::POST, "/api/chat/../delete"),
            (Method::POST, "/v1/messages/%2e%2e/x"),
            (Method::POST, "/api/unknown"),
        ];
        for (m, p) in admin {
            assert_eq!(Scope::of(&m, p), Scope::Admin, "{m} {p}");
        }
    }

    #[test]
    fn keys_are_required_and_scoped() {
        let a = Access::new(keys());
        let chat = (Method::POST, "/v1/chat/completions");
        let err = a.admit(&chat.0, chat.1, &HeaderMap::new()).unwrap_err();
        assert_eq!(err.error.status, StatusCode::UNAUTHORIZED);
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            a.admit(&chat.0, chat.1, &wrong).unwrap_err().error.status,
            StatusCode::UNAUTHORIZED
        );
        let alice = headers(&[("x-api-key", " k-alice ")]);
        let ok = a.admit(&chat.0, chat.1, &alice).unwrap();
        assert_eq!(ok.caller.as_ref().unwrap().name(), "alice");
        assert_eq!(ok.owner, Some(KeyDigest::of("k-alice")));
        assert_eq!(
            ok.carried,
            Some(Carried {
                bearer: false,
                x_api_key: true
            })
        );
        let refused = a.admit(&Method::DELETE, "/api/delete", &alice).unwrap_err();
        assert_eq!(refused.error.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.caller.unwrap().name(), "alice");
        let ops = headers(&[("authorization", "bearer k-ops")]);
        let ok = a.admit(&Method::DELETE, "/api/delete", &ops).unwrap();
        assert!(ok.caller.unwrap().is_admin());
        assert!(ok.permit.is_none(), "no limit, no count");
    }

    #[test]
    fn a_bearer_of_another_kind_does_not_hide_the_x_api_key() {
        let a = Access::new(keys());
        let h = headers(&[("authorization", "Basic abc"), ("x-api-key", "k-ops")]);
        let ok = a.admit(&Method::GET, "/api/tags", &h).unwrap();
        assert_eq!(
            ok.carried,
            Some(Carried {
                bearer: false,
                x_api_key: true
            })
        );
    }

    #[test]
    fn in_flight_is_limited_per_key_and_freed_on_drop() {
        let a = Access::new(keys());
        let alice = headers(&[("authorization", "Bearer k-alice")]);
        let m = Method::POST;
        let one = a.admit(&m, "/api/chat", &alice).unwrap();
        let two = a.admit(&m, "/api/chat", &alice).unwrap();
        let third = a.admit(&m, "/api/chat", &alice).unwrap_err();
        assert_eq!(third.error.status, StatusCode::TOO_MANY_REQUESTS);
        // Another key is not affected.
        let ops = headers(&[("authorization", "Bearer k-ops")]);
        assert!(a.admit(&m, "/api/chat", &ops).is_ok());
        // A reload keeps the count of a key kept.
        a.replace(keys());
        assert!(a.admit(&m, "/api/chat", &alice).is_err());
        drop(one);
        let three = a.admit(&m, "/api/chat", &alice).unwrap();
        drop((two, three));
        assert!(a.admit(&m, "/api/chat", &alice).is_ok());
    }

    #[test]
    fn replaced_keys_count_from_the_next_request() {
        let a = Access::new(keys());
        let clone = a.clone();
        let alice = headers(&[("authorization", "Bearer k-alice")]);
        assert!(a.admit(&Method::POST, "/api/chat", &alice).is_ok());
        let mut only_ops = Keys::new();
        only_ops
            .insert(Key::new("ops", KeyDigest::of("k-ops")).unwrap().admin(true))
            .unwrap();
        clone.replace(only_ops);
        let err = a.admit(&Method::POST, "/api/chat", &alice).unwrap_err();
        assert_eq!(err.error.status, StatusCode::UNAUTHORIZED);
        // An empty set lets nobody in.
        a.replace(Keys::new());
        let ops = headers(&[("authorization", "Bearer k-ops")]);
        assert!(a.admit(&Method::GET, "/api/tags", &ops).is_err());
        assert!(a
            .admit(&Method::GET, "/api/tags", &HeaderMap::new())
            .is_err());
    }

    #[test]
    fn open_access_closes_admin_paths_unless_opened() {
        let a = Access::open();
        let none = HeaderMap::new();
        assert!(a.admit(&Method::POST, "/api/chat", &none).is_ok());
        let err = a.admit(&Method::DELETE, "/api/delete", &none).unwrap_err();
        assert_eq!(err.error.status, StatusCode::FORBIDDEN);
        assert!(err.caller.is_none());
        let opened = Access::open().open_admin_paths(true);
        assert!(opened.admin_paths_open());
        assert!(opened.admit(&Method::DELETE, "/api/delete", &none).is_ok());
        // Keys required: opening changes nothing.
        let keyed = Access::new(keys()).open_admin_paths(true);
        assert!(!keyed.admin_paths_open());
        assert_eq!(keyed.len(), 2, "the keys stay");
    }

    #[test]
    fn debug_names_keys_but_not_digests() {
        let a = Access::new(keys());
        let d = format!("{a:?}");
        assert!(d.contains("alice") && d.contains("ops"), "{d}");
        assert!(!d.contains(&KeyDigest::of("k-ops").to_string()[..8]), "{d}");
    }
}
