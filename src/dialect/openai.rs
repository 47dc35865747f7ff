//! Pieces shared by the OpenAI dialects (Chat Completions, Responses, …).

use crate::error::ApiError;
use crate::json::write_str;
use bytes::{Bytes, BytesMut};

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
    write_str(out, err.openai_type());
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

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
}
