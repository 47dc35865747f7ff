//! Errors a dialect reports to its client, and the crate's boxed error type.

use http::StatusCode;
use std::fmt;

/// A boxed error, as used by [`TranslateBody`](crate::TranslateBody) and
/// [`RequestBody`](crate::RequestBody).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error to be reported to the client in its own dialect.
///
/// Dialects render it: OpenAI as `{"error":{"message","type","param","code"}}`,
/// Anthropic as `{"type":"error","error":{"type","message"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400 naming the offending parameter.
    pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

/// The upstream stream ended in a way that must not look like a clean finish.
#[derive(Debug)]
pub(crate) struct StreamError(pub(crate) String);

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamError {}

/// The text of an error body: the `error` of `{"error":…}` (a string, or
/// the JSON of anything else), else the body as text; trimmed, and empty
/// when the body says nothing.
pub(crate) fn said(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: serde_json::Value,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: serde_json::Value::String(s),
        }) => s,
        Ok(ErrorBody { error }) => error.to_string(),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// The message of an error and of its sources, joined with `: ` (for a
/// log line or an error answer).
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::Other, "refused");
/// let e: ollama_translate::BoxError = Box::new(io);
/// assert_eq!(ollama_translate::error_chain(&*e), "refused");
/// ```
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        source = s.source();
    }
    msg
}

/// How a call to Ollama failed; the status a client is given follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Ollama could not be reached, or the connection dropped: 502.
    UpstreamLost,
    /// Ollama sent something that is not its protocol: 502.
    UpstreamGarbage,
    /// Ollama was silent past the idle timeout: 504.
    UpstreamTimeout,
    /// Ollama reported an error (an `{"error":…}` line): 500, as Ollama
    /// answers a failed non-streaming request.
    OllamaError,
}

impl Failure {
    /// The HTTP status for a client that has not been sent a status yet.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Failure::UpstreamLost | Failure::UpstreamGarbage => StatusCode::BAD_GATEWAY,
            Failure::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::OllamaError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `code` OpenAI-style errors carry.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Failure::UpstreamLost => "upstream_unreachable",
            Failure::UpstreamGarbage => "upstream_invalid",
            Failure::UpstreamTimeout => "upstream_timeout",
            Failure::OllamaError => "ollama_error",
        }
    }
}
