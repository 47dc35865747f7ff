//! What Ollama's error answers mean: [`UpstreamError`], read from the
//! status and the body (`{"error":"…"}`, plain text, or nothing).

use crate::error::said;
use http::StatusCode;

/// What an error answer of Ollama's is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The model cannot think: a request without `think` would be served
    /// (a 400 saying the model "does not support thinking").
    NoThinking,
    /// Ollama does not have the model (a 404 saying it is "not found").
    ModelNotFound,
    /// Anything else: the message is all there is.
    Other,
}

/// An error answer of Ollama's: what it is about, and its message (Ollama's
/// own, or one of ours when it said nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UpstreamError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl UpstreamError {
    /// Reads an error answer: its `status` and as much of its `body` as was
    /// read.
    pub(crate) fn read(status: StatusCode, body: &[u8]) -> Self {
        let text = said(body);
        let kind =
            if status == StatusCode::BAD_REQUEST && text.contains("does not support thinking") {
                ErrorKind::NoThinking
            } else if status == StatusCode::NOT_FOUND && text.contains("not found") {
                ErrorKind::ModelNotFound
            } else {
                ErrorKind::Other
            };
        let message = if text.is_empty() {
            silent(status)
        } else {
            text
        };
        UpstreamError { kind, message }
    }
}

/// What an error answer with an empty body means.
fn silent(status: StatusCode) -> String {
    match status {
        StatusCode::FORBIDDEN => "Ollama refused the request (403 with an empty body); it rejects Host headers that are not local".into(),
        s => format!(
            "Ollama answered {} {}",
            s.as_u16(),
            s.canonical_reason().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_an_error_is_about() {
        let e = UpstreamError::read(
            StatusCode::BAD_REQUEST,
            br#"{"error":"\"gemma3\" does not support thinking"}"#,
        );
        assert_eq!(e.kind, ErrorKind::NoThinking);
        assert_eq!(e.message, "\"gemma3\" does not support thinking");
        let e = UpstreamError::read(
            StatusCode::NOT_FOUND,
            br#"{"error":"model \"x\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.kind, ErrorKind::ModelNotFound);
        let e = UpstreamError::read(
            StatusCode::BAD_REQUEST,
            br#"{"error":"think value \"max\" is not supported"}"#,
        );
        assert_eq!(e.kind, ErrorKind::Other);
        let e = UpstreamError::read(StatusCode::FORBIDDEN, b"");
        assert!(e.message.contains("Host headers"), "{}", e.message);
        let e = UpstreamError::read(StatusCode::BAD_GATEWAY, b"  ");
        assert_eq!(e.message, "Ollama answered 502 Bad Gateway");
        let e = UpstreamError::read(StatusCode::INTERNAL_SERVER_ERROR, br#"{"error":{"x":1}}"#);
        assert_eq!(e.message, r#"{"x":1}"#);
    }
}
