//! A fast path for the line Ollama sends for nearly every token:
//!
//! ```text
//! {"model":"…","created_at":"…","message":{"role":"assistant","content":"…"},"done":false}
//! {"model":"…","created_at":"…","message":{"role":"assistant","content":"…","thinking":"…"},"done":false}
//! ```
//!
//! serde_json spends ~3 000 instructions on such a line (keys, ignored
//! values, struct machinery); matching the fixed shape costs a few hundred.
//! Anything else — other keys or another order, a done line, an error line,
//! raw control characters, `\u` surrogates, trailing whitespace — returns
//! `None` and goes through serde_json as before, so what a line means never
//! depends on which path read it.

use crate::json::needs_escape;

const HEAD: &str = "{\"model\":\"";
const CREATED: &str = ",\"created_at\":\"";
const MESSAGE: &str = ",\"message\":{\"role\":\"assistant\",\"content\":\"";
const THINKING: &str = ",\"thinking\":\"";
const TAIL: &str = "},\"done\":false}";

/// `(content, thinking)` of a token line, or `None` for any other line.
/// Escaped strings are decoded into `content_buf` / `thinking_buf`.
pub(super) fn token_line<'a>(
    line: &'a str,
    content_buf: &'a mut String,
    thinking_buf: &'a mut String,
) -> Option<(&'a str, Option<&'a str>)> {
    let rest = line.strip_prefix(HEAD)?;
    let (_, rest) = plain_string(rest)?;
    let rest = rest.strip_prefix(CREATED)?;
    let (_, rest) = plain_string(rest)?;
    let rest = rest.strip_prefix(MESSAGE)?;
    let (content, rest) = string(rest, content_buf)?;
    let (thinking, rest) = match rest.strip_prefix(THINKING) {
        Some(r) => {
            let (t, r) = string(r, thinking_buf)?;
            (Some(t), r)
        }
        None => (None, rest),
    };
    (rest == TAIL).then_some((content, thinking))
}

/// Length of the run of `s` that is neither `"`, `\` nor a control character.
fn plain_run(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(block) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        if needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// A string without escapes (the body of it) and what follows its quote.
fn plain_string(s: &str) -> Option<(&str, &str)> {
    let n = plain_run(s.as_bytes());
    match s.as_bytes().get(n) {
        // `n` is at an ASCII quote, so both slices are on char boundaries.
        Some(b'"') => Some((s.get(..n)?, s.get(n + 1..)?)),
        _ => None,
    }
}

/// A string body up to its closing quote, decoded (into `buf` when it has
/// escapes), and what follows the quote.
fn string<'a>(s: &'a str, buf: &'a mut String) -> Option<(&'a str, &'a str)> {
    let n = plain_run(s.as_bytes());
    match s.as_bytes().get(n) {
        Some(b'"') => return Some((s.get(..n)?, s.get(n + 1..)?)),
        Some(b'\\') => {}
        _ => return None,
    }
    buf.clear();
    let mut rest = s;
    loop {
        let n = plain_run(rest.as_bytes());
        buf.push_str(rest.get(..n)?);
        let after = rest.get(n + 1..)?;
        match rest.as_bytes().get(n)? {
            b'"' => return Some((buf.as_str(), after)),
            b'\\' => {
                let (c, next) = unescape(after)?;
                buf.push(c);
                rest = next;
            }
            _ => return None,
        }
    }
}

/// One escape (after its backslash); `None` for surrogates and anything
/// serde_json would refuse.
fn unescape(s: &str) -> Option<(char, &str)> {
    let c = match s.as_bytes().first()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hex = s.get(1..5)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let code = u32::from_str_radix(hex, 16).ok()?;
            // Surrogates (pairs or not) are left to serde_json.
            return char::from_u32(code).map(|c| (c, s.get(5..).unwrap_or("")));
        }
        _ => return None,
    };
    Some((c, s.get(1..)?))
}

#[cfg(test)]
mod tests {
    use super::super::Line;
    use super::*;
    use proptest::prelude::*;

    /// What serde_json makes of `line`: `(content, thinking)` when it is a
    /// plain token line.
    fn by_serde(line: &str) -> Option<(String, Option<String>)> {
        let l: Line<'_> = serde_json::from_str(line).ok()?;
        if l.done || l.error.is_some() || l.response.is_some() || l.thinking.is_some() {
            return None;
        }
        let m = l.message?;
        if m.tool_calls.is_some() {
            return None;
        }
        Some((m.content?.into_owned(), m.thinking.map(|t| t.into_owned())))
    }

    fn fast(line: &str) -> Option<(String, Option<String>)> {
        let (mut a, mut b) = (String::new(), String::new());
        token_line(line, &mut a, &mut b).map(|(c, t)| (c.to_string(), t.map(str::to_string)))
    }

    fn token(content: &str, thinking: Option<&str>) -> String {
        let mut s = format!(
            "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:00.1Z\",\"message\":{{\"role\":\"assistant\",\"content\":{}",
            serde_json::to_string(content).unwrap()
        );
        if let Some(t) = thinking {
            s.push_str(",\"thinking\":");
            s.push_str(&serde_json::to_string(t).unwrap());
        }
        s.push_str("},\"done\":false}");
        s
    }

    #[test]
    fn reads_token_lines_and_leaves_the_rest() {
        assert_eq!(fast(&token(" hi", None)), Some((" hi".into(), None)));
        assert_eq!(
            fast(&token("", Some("hm \"x\"\n"))),
            Some(("".into(), Some("hm \"x\"\n".into())))
        );
        // Go escapes <, > and & as \u00XX.
        let go = token("a<b", None).replace('<', "\\u003c");
        assert_eq!(fast(&go), Some(("a<b".into(), None)));
        for other in [
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}"#,
            r#"{"error":"boom"}"#,
            r#"{"model":"m","created_at":"t","response":"x","done":false}"#,
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"\ud83d\ude00"},"done":false}"#,
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"x","tool_calls":[]},"done":false}"#,
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"x"},"done":false} "#,
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"x\q"},"done":false}"#,
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"x\u00"},"done":false}"#,
            "{\"model\":\"m\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"a\tb\"},\"done\":false}",
        ] {
            assert_eq!(fast(other), None, "{other}");
        }
    }

    proptest! {
        /// Whatever the fast path accepts, serde_json reads the same way.
        #[test]
        fn agrees_with_serde(
            content in "[a-z <>&\"\\\\/\\x00-\\x1f\\x7fé✓😀]{0,24}",
            thinking in proptest::option::of("[a-z \"\\\\\\n]{0,12}"),
            go_escapes in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut line = token(&content, thinking.as_deref());
            if go_escapes {
                line = line.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
            }
            let expected = (content.clone(), thinking.clone());
            prop_assert_eq!(fast(&line), Some(expected));
            prop_assert_eq!(by_serde(&line), fast(&line));
            // Damaged lines: the fast path either agrees or steps aside.
            let mut end = cut.index(line.len());
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            let short = &line[..end];
            if let Some(got) = fast(short) {
                prop_assert_eq!(by_serde(short), Some(got));
            }
            let mut bytes = line.clone().into_bytes();
            let at = flip.0.index(bytes.len());
            bytes[at] = flip.1;
            if let Ok(changed) = std::str::from_utf8(&bytes) {
                if let Some(got) = fast(changed) {
                    prop_assert_eq!(by_serde(changed), Some(got));
                }
            }
        }
    }
}
