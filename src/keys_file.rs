//! The keys file format: named keys stored as SHA-256 digests, for an
//! [`Access`](crate::access::Access).
//!
//! One key per line, `NAME:SHA256[:admin][:MAX_IN_FLIGHT]`; blank lines and
//! lines starting with `#` are skipped:
//!
//! ```text
//! # NAME:SHA256-OF-THE-KEY[:admin][:MAX_IN_FLIGHT]
//! ops:021311f6e96612fdd20ba8dca53dc2b56d973a72ef97cf78c54c562ad402d30a:admin
//! alice:d48fce52832c460238fb82e9f6c57be593ad27ea6ddb5e15d74d1fb4245a76cd:4
//! ```
//!
//! This module parses text; reading a file (and watching it) is the
//! caller's.
//!
//! # Example
//!
//! ```
//! use ollama_translate::access::{Access, KeyDigest};
//! use ollama_translate::keys_file;
//!
//! let text = format!("# the team\nops:{}:admin\n", KeyDigest::of("sk-ops"));
//! let keys = keys_file::parse(&text)?;
//! assert_eq!(keys.len(), 1);
//! let access = Access::new(keys);
//! # assert!(access.requires_key());
//! # Ok::<(), keys_file::ParseError>(())
//! ```

use crate::access::{Key, KeyDigest, Keys};
use std::fmt;

/// Why a keys file's text is not valid: the line, and what is wrong with
/// it. Never the line's content: a key pasted by mistake stays out of the
/// log.
///
/// See the [module docs](crate::keys_file) for more details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    line: usize,
    message: String,
}

impl ParseError {
    fn new(line: usize, message: impl fmt::Display) -> ParseError {
        ParseError {
            line,
            message: message.to_string(),
        }
    }

    /// The line, counted from 1.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The keys of a keys file's text.
///
/// See the [module docs](crate::keys_file) for more details.
pub fn parse(text: &str) -> Result<Keys, ParseError> {
    let mut keys = Keys::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse_line(line).map_err(|m| ParseError::new(i + 1, m))?;
        keys.insert(key).map_err(|e| ParseError::new(i + 1, e))?;
    }
    Ok(keys)
}

/// One line that is not blank or a comment.
fn parse_line(line: &str) -> Result<Key, String> {
    let mut fields = line.split(':').map(str::trim);
    let name = fields.next().unwrap_or_default();
    let Some(digest) = fields.next() else {
        return Err("expected NAME:SHA256[:admin][:MAX_IN_FLIGHT]".into());
    };
    let digest: KeyDigest = digest
        .parse()
        .map_err(|e| format!("{e} (`ollama-translate --hash-key` makes one)"))?;
    let mut key = Key::new(name, digest).map_err(|e| e.to_string())?;
    let (mut admin, mut limit) = (false, false);
    for field in fields {
        if field == "admin" && !admin {
            admin = true;
            key = key.admin(true);
            continue;
        }
        match field.parse::<usize>() {
            Ok(0) => {
                return Err(
                    "at least 1 request in flight (leave the field out for no limit)".into(),
                )
            }
            Ok(max) if !limit => {
                limit = true;
                key = key.max_in_flight(max);
            }
            _ => {
                return Err(format!(
                    "unexpected field {:?} (expected `admin` or a number of requests in \
                     flight, each at most once)",
                    field.chars().take(16).collect::<String>()
                ))
            }
        }
    }
    Ok(key)
}

/// The digest to put in a keys file for the key on the first line of
/// `input` (surrounding whitespace is not part of it); `None` when there
/// is no key.
///
/// ```
/// use ollama_translate::access::KeyDigest;
/// let digest = ollama_translate::keys_file::hash_key("sk-ops\n");
/// assert_eq!(digest, Some(KeyDigest::of("sk-ops")));
/// assert_eq!(ollama_translate::keys_file::hash_key(" \n"), None);
/// ```
pub fn hash_key(input: &str) -> Option<KeyDigest> {
    let key = input.lines().next().unwrap_or_default().trim();
    (!key.is_empty()).then(|| KeyDigest::of(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_flags_and_limits() {
        let d = KeyDigest::of("a");
        let keys = parse(&format!(
            "# c\n\n a : {d} : admin \r\nb:{}:4\n",
            KeyDigest::of("b")
        ))
        .unwrap();
        let got: Vec<_> = keys
            .iter()
            .map(|k| (k.name(), k.is_admin(), k.in_flight_limit()))
            .collect();
        assert_eq!(got, [("a", true, None), ("b", false, Some(4))]);
    }

    #[test]
    fn errors_name_the_line_not_the_key() {
        let d = KeyDigest::of("a");
        for (text, says) in [
            ("ops".to_string(), "line 1: expected NAME:SHA256"),
            (format!("\nops:{d}:0"), "line 2: at least 1"),
            (format!("ops:{d}:3:4"), "line 1: unexpected field \"4\""),
            (format!("ops:{d}\nops:{d}"), "line 2: "),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.to_string().starts_with(says), "{text:?}: {err}");
            assert!(!err.to_string().contains(&d.to_string()));
        }
    }
}
