//! OpenAI embeddings: `POST /v1/embeddings` → `/api/embed`.

use super::params::{json_object, model_name, Wording};
use super::{openai, Render, Upstream, WholeBody};
use crate::config::Config;
use crate::error::ApiError;
use crate::ollama::request::Endpoint;
use crate::transcode::Usage;
use crate::util::base64_encode;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The embeddings dialect.
pub(crate) struct Embeddings;

dialect!(
    Embeddings,
    "embeddings",
    prepare_embeddings,
    openai::error_body
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`Embeddings`].
fn prepare_embeddings(config: &Config, _parts: &Parts, body: &[u8]) -> Result<Upstream, ApiError> {
    let root = json_object(body)?;
    let client_model = model_name(&root, Wording::Named)?;
    let model = config.resolve_model(&client_model).to_string();
    let input = match root.get("input") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::invalid("input", "input must not be empty"))
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Value::Array(a.clone()),
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "input",
                "input must be a string or an array of strings; token arrays are not supported by Ollama",
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                "input",
                "input is required (a string or an array of strings)",
            ))
        }
    };
    let base64 = match root.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("encoding_format must be \"float\" or \"base64\", got {other:?}"),
            ))
        }
    };
    let mut native = json!({"model": model, "input": input});
    match root.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(d) => match d.as_u64().filter(|d| *d > 0) {
            Some(d) => native["dimensions"] = Value::from(d),
            None => {
                return Err(ApiError::invalid(
                    "dimensions",
                    "dimensions must be a positive integer",
                ))
            }
        },
    }
    let defaults = config.defaults_for(&model);
    let mut options: Map<String, Value> = match root.get("options") {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    for (k, v) in defaults.options {
        options.entry(k).or_insert(v);
    }
    if !options.is_empty() {
        native["options"] = Value::Object(options);
    }
    if let Some(k) = root.get("keep_alive").cloned().or(defaults.keep_alive) {
        native["keep_alive"] = k;
    }
    if let Some(t) = root.get("truncate").and_then(Value::as_bool) {
        native["truncate"] = Value::Bool(t);
    }
    let up = Upstream::document(
        Endpoint::Embed,
        Bytes::from(native.to_string()),
        WholeBody::boxed(EmbedTranscoder {
            model: client_model.clone(),
            base64,
            input_tokens: None,
        }),
    );
    Ok(up.requested_as(&client_model))
}

#[derive(Deserialize)]
struct Embed {
    // Required: an answer without it is not an embedding response.
    embeddings: Vec<Vec<f64>>,
    #[serde(default)]
    prompt_eval_count: u64,
}

struct EmbedTranscoder {
    model: String,
    base64: bool,
    /// Ollama's `prompt_eval_count`, once rendered.
    input_tokens: Option<u64>,
}

impl Render for EmbedTranscoder {
    fn render(&mut self, line: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        let embed = openai::read_answer::<Embed>(line, "embedding response")?;
        self.input_tokens = Some(embed.prompt_eval_count);
        let data: Vec<Value> = embed
            .embeddings
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let embedding = if self.base64 {
                    // Little-endian f32, as OpenAI encodes it.
                    let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
                    Value::String(base64_encode(&bytes))
                } else {
                    json!(v)
                };
                json!({"object": "embedding", "embedding": embedding, "index": i})
            })
            .collect();
        let v = json!({
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": embed.prompt_eval_count, "total_tokens": embed.prompt_eval_count},
        });
        out.extend_from_slice(v.to_string().as_bytes());
        Ok(())
    }

    fn usage(&self) -> Option<Usage<'_>> {
        self.input_tokens.map(|n| Usage {
            input: Some(n),
            output: None,
            finish_reason: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::params::{assert_refused, prepare_json};
    use crate::dialect::Transcode;

    #[test]
    fn maps_the_request() {
        let up = prepare_json(
            &Embeddings,
            json!({"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 4}),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            v,
            json!({"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 4})
        );
        assert_refused(
            &Embeddings,
            [
                (json!({"input": "a"}), "model"),
                (json!({"model": "m", "input": [1, 2]}), "input"),
                (json!({"model": "m", "input": []}), "input"),
                (
                    json!({"model": "m", "input": "a", "encoding_format": "hex"}),
                    "encoding_format",
                ),
                (
                    json!({"model": "m", "input": "a", "dimensions": 0}),
                    "dimensions",
                ),
            ],
        );
    }

    #[test]
    fn encodes_vectors() {
        let mut t = WholeBody::new(EmbedTranscoder {
            model: "e".into(),
            base64: true,
            input_tokens: None,
        });
        let mut out = BytesMut::new();
        t.line(
            br#"{"embeddings":[[1.0,-2.5]],"prompt_eval_count":3}"#,
            &mut out,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        let expected: Vec<u8> = [1.0f32, -2.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(v["data"][0]["embedding"], base64_encode(&expected));
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["model"], "e");
    }

    #[test]
    fn an_answer_that_is_not_an_embedding_is_a_502() {
        for body in [&b"<html>busy</html>"[..], b"{}", b"{\"embeddings\":\"x\"}"] {
            let mut t = WholeBody::new(EmbedTranscoder {
                model: "e".into(),
                base64: false,
                input_tokens: None,
            });
            let mut out = BytesMut::new();
            t.line(body, &mut out);
            assert!(t.finish(&mut out).is_err());
            let e = t
                .failure()
                .expect("a failure the client's status comes from");
            assert_eq!(e.status, 502);
            assert!(e.message.contains("embedding response"), "{}", e.message);
        }
    }
}
