//! Pieces shared by the OpenAI dialects (Chat Completions, Responses, legacy
//! completions, embeddings, models): the error shape and its taxonomy here,
//! request fields in [`request`], answer pieces in [`reply`].

pub(crate) mod reply;
pub(crate) mod request;

use crate::error::ApiError;
use crate::json::write_str;
use bytes::{Bytes, BytesMut};
use http::StatusCode;

/// OpenAI's `error.type` for a status.
pub(crate) fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// `{"error":{"message","type","param","code"}}`.
pub(crate) fn error_body(err: &ApiError) -> Bytes {
    let mut out = BytesMut::with_capacity(err.message.len() + 96);
    write_error_object(err, &mut out);
    out.freeze()
}

/// Writes `{"error":{…}}` without a trailing newline.
pub(crate) fn write_error_object(err: &ApiError, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"error\":{\"message\":");
    write_str(out, &err.message);
    out.extend_from_slice(b",\"type\":");
    write_str(out, error_type(err.status));
    out.extend_from_slice(b",\"param\":");
    match &err.param {
        Some(p) => write_str(out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"code\":");
    match err.code {
        Some(c) => write_str(out, c),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}}");
}

/// The error Ollama reported mid-answer, as OpenAI clients get it in band:
/// a 500 coded `ollama_error`.
fn upstream_failure(message: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).with_code("ollama_error")
}

/// Writes Ollama's mid-answer error as the whole (non-streamed) answer.
pub(crate) fn write_upstream_error(message: &str, out: &mut BytesMut) {
    write_error_object(&upstream_failure(message), out);
}

/// Writes Ollama's mid-answer error as a `data:` event; the stream then
/// ends without `[DONE]`.
pub(crate) fn write_upstream_error_event(message: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"data: ");
    write_upstream_error(message, out);
    out.extend_from_slice(b"\n\n");
}

/// Ollama's whole answer as a `T`; when it is not one, writes a 502 naming
/// `what` (e.g. "embedding response") as the whole answer instead.
pub(crate) fn read_answer<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let failure = crate::error::Failure::UpstreamGarbage;
        ApiError::new(
            failure.status(),
            format!("Ollama sent an unexpected {what}: {e}"),
        )
        .with_code(failure.code())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_errors() {
        let e = ApiError::invalid("messages", "messages is required");
        let v: serde_json::Value = serde_json::from_slice(&error_body(&e)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"messages is required","type":"invalid_request_error","param":"messages","code":null}})
        );
        let e = ApiError::new(StatusCode::NOT_FOUND, "model 'x' not found")
            .with_code("model_not_found");
        let v: serde_json::Value = serde_json::from_slice(&error_body(&e)).unwrap();
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["code"], "model_not_found");
    }

    #[test]
    fn error_types_follow_the_status() {
        for (status, ty) in [
            (400, "invalid_request_error"),
            (413, "invalid_request_error"),
            (422, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "api_error"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(error_type(status), ty, "{status}");
        }
    }

    #[test]
    fn upstream_errors_are_500s_coded_ollama_error() {
        let mut out = BytesMut::new();
        write_upstream_error_event("boom", &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"boom","type":"api_error","param":null,"code":"ollama_error"}})
        );
    }
}
