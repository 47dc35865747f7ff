//! The keys file (`KEYS_FILE`): named keys stored as SHA-256 digests,
//! reloaded on SIGHUP and when the file changes; `--hash-key`.
//!
//! ```text
//! # NAME:SHA256-OF-THE-KEY[:admin][:MAX_IN_FLIGHT]
//! ops:021311f6e96612fdd20ba8dca53dc2b56d973a72ef97cf78c54c562ad402d30a:admin
//! alice:d48fce52832c460238fb82e9f6c57be593ad27ea6ddb5e15d74d1fb4245a76cd:4
//! ```

use super::{AbortOnDrop, Settings};
use ollama_translate::access::{Access, Key, KeyDigest, Keys};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name of `PROXY_API_KEY`'s key (an admin key, no limit).
pub const DEFAULT_NAME: &str = "default";

/// The largest keys file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The keys of a keys file's text: one key per line,
/// `NAME:SHA256[:admin][:MAX_IN_FLIGHT]`; blank lines and lines starting
/// with `#` are skipped. Errors name the line, never its content (a key
/// pasted by mistake stays out of the log).
pub fn parse(text: &str) -> Result<Keys, String> {
    let mut keys = Keys::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':').map(str::trim);
        let name = fields.next().unwrap_or_default();
        let Some(digest) = fields.next() else {
            return Err(format!(
                "line {n}: expected NAME:SHA256[:admin][:MAX_IN_FLIGHT]"
            ));
        };
        let digest: KeyDigest = digest
            .parse()
            .map_err(|e| format!("line {n}: {e} (`ollama-translate --hash-key` makes one)"))?;
        let mut key = Key::new(name, digest).map_err(|e| format!("line {n}: {e}"))?;
        let (mut admin, mut limit) = (false, false);
        for field in fields {
            if field == "admin" && !admin {
                admin = true;
                key = key.admin(true);
                continue;
            }
            match field.parse::<usize>() {
                Ok(0) => {
                    return Err(format!(
                        "line {n}: at least 1 request in flight (leave the field out for no limit)"
                    ))
                }
                Ok(max) if !limit => {
                    limit = true;
                    key = key.max_in_flight(max);
                }
                _ => {
                    return Err(format!(
                        "line {n}: unexpected field {:?} (expected `admin` or a number of \
                         requests in flight, each at most once)",
                        field.chars().take(16).collect::<String>()
                    ))
                }
            }
        }
        keys.insert(key).map_err(|e| format!("line {n}: {e}"))?;
    }
    Ok(keys)
}

/// The keys of a file's text and `PROXY_API_KEY`'s key.
fn with_default(text: &str, default: Option<&Key>) -> Result<Keys, String> {
    let mut keys = parse(text)?;
    if let Some(d) = default {
        if keys.iter().any(|k| k.name() == DEFAULT_NAME) {
            return Err(format!(
                "the name {DEFAULT_NAME:?} is PROXY_API_KEY's; name the file's key otherwise"
            ));
        }
        keys.insert(d.clone())
            .map_err(|_| "PROXY_API_KEY is also in the file; keep it in one place".to_string())?;
    }
    Ok(keys)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(text)
}

fn keys_of(bytes: &[u8], default: Option<&Key>) -> Result<Keys, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    with_default(text, default)
}

/// `KEYS_FILE`: where the keys come from, and the [`Access`] that holds
/// them for the layer.
#[derive(Clone)]
pub struct KeysFile {
    pub path: PathBuf,
    /// How often the file is read to see whether it changed (0: only on
    /// SIGHUP).
    pub poll: Duration,
    default: Option<Key>,
    access: Access,
    /// The file's content now in force.
    loaded: Arc<Mutex<Vec<u8>>>,
}

impl KeysFile {
    /// Reads the file: its keys (and `default`, `PROXY_API_KEY`'s) are in
    /// force for [`KeysFile::access`] from now on.
    pub fn open(path: &str, default: Option<Key>, poll: Duration) -> Result<KeysFile, String> {
        let path = PathBuf::from(path);
        let shown = path.display();
        let bytes = read(&path).map_err(|e| format!("KEYS_FILE {shown}: {e}"))?;
        let keys =
            keys_of(&bytes, default.as_ref()).map_err(|e| format!("KEYS_FILE {shown}: {e}"))?;
        Ok(KeysFile {
            access: Access::new(keys),
            path,
            poll,
            default,
            loaded: Arc::new(Mutex::new(bytes)),
        })
    }

    /// The keys in force, for the layer and `/metrics`.
    pub fn access(&self) -> Access {
        self.access.clone()
    }

    /// Reads the file again; when its content changed, puts its keys in
    /// force and says what changed. An unreadable or invalid file changes
    /// nothing (the keys in force stay).
    pub fn reload(&self) -> Result<Option<String>, String> {
        let bytes = read(&self.path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == bytes {
            return Ok(None);
        }
        let keys = keys_of(&bytes, self.default.as_ref())?;
        let before = self.access.names();
        let after: Vec<String> = keys.iter().map(|k| k.name().to_string()).collect();
        let count = keys.len();
        self.access.replace(keys);
        *loaded = bytes;
        let added: Vec<&str> = after
            .iter()
            .filter(|n| !before.contains(n))
            .map(String::as_str)
            .collect();
        let revoked: Vec<&str> = before
            .iter()
            .filter(|n| !after.contains(n))
            .map(String::as_str)
            .collect();
        Ok(Some(format!(
            "{count} keys; added: [{}]; revoked: [{}]",
            added.join(", "),
            revoked.join(", ")
        )))
    }

    /// Reloads the file on SIGHUP (once `hangup` listens) and every
    /// `poll`, for as long as it runs.
    pub async fn watch(self, mut hangup: Option<Hangup>) {
        let mut tick = (!self.poll.is_zero()).then(|| {
            let mut t =
                tokio::time::interval_at(tokio::time::Instant::now() + self.poll, self.poll);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut last_error: Option<String> = None;
        loop {
            let hup = async {
                match hangup.as_mut() {
                    #[cfg(unix)]
                    Some(h) => {
                        h.recv().await;
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            let timed = async {
                match tick.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                () = hup => "SIGHUP",
                () = timed => "a change",
            };
            let path = self.path.display();
            match self.reload() {
                Ok(Some(what)) => {
                    last_error = None;
                    tracing::info!("KEYS_FILE {path} reloaded on {why}: {what}");
                }
                Ok(None) => {
                    last_error = None;
                    if why == "SIGHUP" {
                        tracing::info!("KEYS_FILE {path} unchanged on SIGHUP");
                    }
                }
                // Once per distinct error, not every poll.
                Err(e) if last_error.as_deref() != Some(e.as_str()) => {
                    tracing::error!("KEYS_FILE {path}: {e}; the keys in force are kept");
                    last_error = Some(e);
                }
                Err(_) => {}
            }
        }
    }
}

/// SIGHUP, listened to (where there are signals).
#[cfg(unix)]
pub type Hangup = tokio::signal::unix::Signal;
/// SIGHUP, listened to (where there are signals).
#[cfg(not(unix))]
pub type Hangup = std::convert::Infallible;

/// Says at start who may do what, and starts reloading the keys file when
/// there is one (until the guard is dropped). SIGHUP is listened to before
/// the line saying so is logged: from then on it reloads instead of ending
/// the process.
pub(super) fn start(settings: &Settings) -> Option<AbortOnDrop> {
    let access = &settings.access;
    #[cfg(unix)]
    let hangup = settings.keys_file.as_ref().and_then(|_| {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!("KEYS_FILE: cannot listen to SIGHUP ({e}); polling only"))
            .ok()
    });
    #[cfg(not(unix))]
    let hangup: Option<Hangup> = None;
    match &settings.keys_file {
        Some(f) => {
            let reload = if f.poll.is_zero() {
                "on SIGHUP".to_string()
            } else {
                format!(
                    "on SIGHUP and when it changes (checked every {}s)",
                    f.poll.as_secs()
                )
            };
            tracing::info!(
                "access: {} keys from KEYS_FILE {}, reloaded {reload}; model management, blobs \
                 and Ollama's account and cloud endpoints need an admin key",
                access.len(),
                f.path.display()
            );
        }
        None if access.requires_key() => tracing::info!(
            "access: PROXY_API_KEY (one admin key, named {DEFAULT_NAME:?}); requests without it \
             get a 401"
        ),
        None if access.admin_paths_open() => tracing::warn!(
            "access: no key is configured and OPEN_ADMIN_PATHS is set: anyone who reaches the \
             port may use the models, and also manage them (pull, push, create, copy, delete), \
             upload blobs and use Ollama's account and cloud endpoints"
        ),
        None => tracing::info!(
            "access: no key is configured: anyone who reaches the port may use generation and \
             read-only paths; model management, blobs and Ollama's account and cloud endpoints \
             are refused (403) to everyone (OPEN_ADMIN_PATHS=1 opens them; KEYS_FILE or \
             PROXY_API_KEY sets keys)"
        ),
    }
    settings
        .keys_file
        .clone()
        .map(|f| AbortOnDrop(tokio::spawn(f.watch(hangup))))
}

/// `--hash-key`: the digest to put in a keys file for the key on the first
/// line of `input` (surrounding whitespace is not part of it).
pub fn hash_key(input: &str) -> Result<String, String> {
    let key = input.lines().next().unwrap_or_default().trim();
    if key.is_empty() {
        return Err("--hash-key reads a key on standard input; it got none".into());
    }
    Ok(KeyDigest::of(key).to_string())
}

/// `OPEN_ADMIN_PATHS` and other yes/no settings.
pub fn flag(name: &str, value: Option<String>) -> Result<bool, String> {
    match value
        .as_deref()
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(_) => Err(format!("{name} must be 1 or 0 (true/false, yes/no)")),
    }
}
