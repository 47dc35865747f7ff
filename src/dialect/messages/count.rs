//! `count_tokens`: the prompt's token count, read from a one-token
//! generation.

use super::*;

/// Reads `prompt_eval_count` from Ollama's whole answer.
#[derive(Default)]
pub(super) struct TokenCounter {
    pub(super) done: bool,
    pub(super) failed: Option<ApiError>,
}

impl TokenCounter {
    pub(super) fn fail(&mut self, failure: Failure, message: String, out: &mut BytesMut) {
        tracing::warn!(error = %message, "could not count tokens");
        let err = ApiError::new(failure.status(), message);
        write_error_object(&err, out);
        self.failed = Some(err);
    }
}

impl Transcode for TokenCounter {
    fn line(&mut self, body: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.done = true;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            prompt_eval_count: Option<u64>,
            #[serde(default)]
            error: Option<Value>,
        }
        match serde_json::from_slice::<Answer>(body) {
            Ok(Answer {
                prompt_eval_count: Some(n),
                error: None,
            }) => {
                out.extend_from_slice(b"{\"input_tokens\":");
                write_u64(out, n);
                out.extend_from_slice(b"}");
            }
            Ok(Answer { error: Some(e), .. }) => {
                let message = match e {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                self.fail(Failure::OllamaError, message, out);
            }
            Ok(_) => self.fail(
                Failure::UpstreamGarbage,
                "Ollama's answer has no prompt_eval_count to count tokens with".into(),
                out,
            ),
            Err(e) => self.fail(
                Failure::UpstreamGarbage,
                format!("Ollama sent an answer that is not JSON: {e}"),
                out,
            ),
        }
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        if !self.done {
            self.line(b"", out);
        }
        match &self.failed {
            Some(e) => Err(Box::new(StreamError(e.message.clone()))),
            None => Ok(()),
        }
    }

    fn abort(&mut self, failure: Failure, error: &str, out: &mut BytesMut) {
        if !self.done {
            self.done = true;
            self.fail(failure, format!("connection to Ollama lost: {error}"), out);
        }
    }

    fn failure(&self) -> Option<ApiError> {
        self.failed.clone()
    }

    fn whole_body(&self) -> bool {
        true
    }
}
