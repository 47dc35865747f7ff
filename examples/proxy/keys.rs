//! `KEYS_FILE`: read, and reloaded on SIGHUP and when it changes. The
//! format is the library's (`ollama_translate::keys_file`).

use crate::settings::DEFAULT_KEY;
use ollama_translate::access::{Access, Key, Keys};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest keys file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The keys of a file's bytes, with `PROXY_API_KEY`'s key.
fn keys_of(bytes: &[u8], default: Option<&Key>) -> Result<Keys, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut keys = ollama_translate::keys_file::parse(text).map_err(|e| e.to_string())?;
    if let Some(d) = default {
        if keys.iter().any(|k| k.name() == DEFAULT_KEY) {
            return Err(format!(
                "the name {DEFAULT_KEY:?} is PROXY_API_KEY's; name the file's key otherwise"
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

/// The keys file, and the [`Access`] that holds its keys for the layer.
#[derive(Clone)]
pub struct KeysFile {
    pub path: PathBuf,
    /// How often the file is read to see whether it changed (0: only on SIGHUP).
    pub poll: Duration,
    default: Option<Key>,
    access: Access,
    /// The file's content now in force.
    loaded: Arc<Mutex<Vec<u8>>>,
}

impl KeysFile {
    /// Reads the file: its keys (and `default`, `PROXY_API_KEY`'s) are in force.
    pub fn open(path: &Path, default: Option<Key>, poll: Duration) -> Result<KeysFile, String> {
        let shown = path.display();
        let bytes = read(path).map_err(|e| format!("KEYS_FILE {shown}: {e}"))?;
        let keys =
            keys_of(&bytes, default.as_ref()).map_err(|e| format!("KEYS_FILE {shown}: {e}"))?;
        Ok(KeysFile {
            access: Access::new(keys),
            path: path.to_path_buf(),
            poll,
            default,
            loaded: Arc::new(Mutex::new(bytes)),
        })
    }

    pub fn access(&self) -> Access {
        self.access.clone()
    }

    /// Reads the file again; when its content changed, puts its keys in
    /// force and says what changed. An unreadable or invalid file changes
    /// nothing.
    fn reload(&self) -> Result<Option<String>, String> {
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
        let not_in = |a: &[String], b: &[String]| -> String {
            let v: Vec<&str> = a
                .iter()
                .filter(|n| !b.contains(n))
                .map(|s| s.as_str())
                .collect();
            v.join(", ")
        };
        let (added, revoked) = (not_in(&after, &before), not_in(&before, &after));
        Ok(Some(format!(
            "{count} keys; added: [{added}]; revoked: [{revoked}]"
        )))
    }

    /// Reloads the file on SIGHUP (when `hangup` listens) and every `poll`.
    pub async fn watch(self, mut hangup: Option<Hangup>) {
        let start = tokio::time::Instant::now() + self.poll;
        let mut tick = (!self.poll.is_zero()).then(|| tokio::time::interval_at(start, self.poll));
        let mut last_error: Option<String> = None;
        loop {
            let hup = async {
                match hangup.as_mut() {
                    #[cfg(unix)]
                    Some(h) => drop(h.recv().await),
                    _ => std::future::pending::<()>().await,
                }
            };
            let timed = async {
                match tick.as_mut() {
                    Some(t) => drop(t.tick().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                () = hup => "SIGHUP",
                () = timed => "a change",
            };
            let path = self.path.display();
            match self.reload() {
                Ok(Some(what)) => tracing::info!("KEYS_FILE {path} reloaded on {why}: {what}"),
                Ok(None) if why == "SIGHUP" => {
                    tracing::info!("KEYS_FILE {path} unchanged on SIGHUP")
                }
                Ok(None) => {}
                // Once per distinct error, not every poll.
                Err(e) if last_error.as_deref() != Some(e.as_str()) => {
                    tracing::error!("KEYS_FILE {path}: {e}; the keys in force are kept");
                    last_error = Some(e);
                    continue;
                }
                Err(_) => continue,
            }
            last_error = None;
        }
    }
}

/// SIGHUP, listened to (where there are signals).
#[cfg(unix)]
pub type Hangup = tokio::signal::unix::Signal;
/// SIGHUP, listened to (where there are signals).
#[cfg(not(unix))]
pub type Hangup = std::convert::Infallible;

/// Says at start who may do what, and reloads the keys file when there is
/// one (spawned; it ends with the runtime). SIGHUP is listened to before
/// the line saying so is logged.
pub fn start(access: &Access, file: Option<&KeysFile>) {
    let Some(f) = file else {
        let line = if access.requires_key() {
            "PROXY_API_KEY (one admin key, named \"default\"); requests without it get a 401"
        } else if access.admin_paths_open() {
            return tracing::warn!(
                "access: no key is configured and OPEN_ADMIN_PATHS is set: anyone who reaches \
                 the port may use the models, and also manage them (pull, push, create, copy, \
                 delete), upload blobs and use Ollama's account and cloud endpoints"
            );
        } else {
            "no key is configured: anyone who reaches the port may use generation and \
             read-only paths; model management, blobs and Ollama's account and cloud \
             endpoints are refused (403) to everyone (OPEN_ADMIN_PATHS=1 opens them; \
             KEYS_FILE or PROXY_API_KEY sets keys)"
        };
        return tracing::info!("access: {line}");
    };
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!("KEYS_FILE: cannot listen to SIGHUP ({e}); polling only"))
        .ok();
    #[cfg(not(unix))]
    let hangup: Option<Hangup> = None;
    let reload = match f.poll.as_secs() {
        0 => "on SIGHUP".to_string(),
        s => format!("on SIGHUP and when it changes (checked every {s}s)"),
    };
    tracing::info!(
        "access: {} keys from KEYS_FILE {}, reloaded {reload}; model management, blobs and \
         Ollama's account and cloud endpoints need an admin key",
        access.len(),
        f.path.display()
    );
    tokio::spawn(f.clone().watch(hangup));
}
