//! The request Ollama's native `/api/chat` takes, and the rules every
//! dialect applies when building one (defaults, think-models, images).

use crate::config::Config;
use crate::error::ApiError;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

/// A native `/api/chat` request.
#[derive(Serialize, Debug, Default)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub(crate) options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keep_alive: Option<Value>,
    pub(crate) stream: bool,
}

/// A native chat message.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) role: &'static str,
    pub(crate) content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) images: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_call_id: Option<String>,
}

impl Message {
    pub(crate) fn new(role: &'static str, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            ..Message::default()
        }
    }
}

/// A native tool call: arguments are a JSON object.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) function: ToolFunction,
}

/// The function part of a native tool call.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct ToolFunction {
    pub(crate) name: String,
    pub(crate) arguments: Value,
}

/// The outcome of [`ChatRequest::finish`].
pub(crate) struct Finished {
    pub(crate) body: Bytes,
    /// The `num_ctx` that was sent, if any.
    pub(crate) num_ctx: Option<u64>,
}

impl ChatRequest {
    pub(crate) fn new(model: impl Into<String>, stream: bool) -> Self {
        ChatRequest {
            model: model.into(),
            stream,
            ..ChatRequest::default()
        }
    }

    /// Applies the layer's per-model defaults *under* what the client sent,
    /// injects `think: true` for configured think-models when the client
    /// said nothing about thinking, and serializes.
    pub(crate) fn finish(mut self, config: &Config) -> Result<Finished, ApiError> {
        apply_defaults(config, &self.model, &mut self.options, &mut self.keep_alive);
        if config.cannot_think(&self.model) {
            // Ollama answers 400 to `think` on a model that cannot think;
            // it is known not to, so thinking stays off whatever was asked.
            if self.think.as_ref().is_some_and(think_is_on) {
                tracing::debug!(model = %self.model, "not sending think to a model that cannot think");
                self.think = None;
            }
        } else if self.think.is_none() && config.is_think_model(&self.model) {
            self.think = Some(Value::Bool(true));
        }
        encode(&self, &self.options)
    }
}

/// A native `/api/generate` request.
#[derive(Serialize, Debug, Default)]
pub(crate) struct GenerateRequest {
    pub(crate) model: String,
    pub(crate) prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub(crate) options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keep_alive: Option<Value>,
    pub(crate) stream: bool,
}

impl GenerateRequest {
    /// Applies per-model defaults under the client's values and serializes.
    /// Thinking is not part of the legacy completions API: a model that
    /// thinks by default is asked not to unless the client said otherwise.
    pub(crate) fn finish(mut self, config: &Config) -> Result<Finished, ApiError> {
        apply_defaults(config, &self.model, &mut self.options, &mut self.keep_alive);
        if config.cannot_think(&self.model) {
            self.think = None;
        }
        encode(&self, &self.options)
    }
}

/// The layer's per-model defaults, *under* what the client sent.
fn apply_defaults(
    config: &Config,
    model: &str,
    options: &mut Map<String, Value>,
    keep_alive: &mut Option<Value>,
) {
    let defaults = config.defaults_for(model);
    for (k, v) in defaults.options {
        options.entry(k).or_insert(v);
    }
    if keep_alive.is_none() {
        *keep_alive = defaults.keep_alive;
    }
}

/// Serializes a native request, noting the `num_ctx` it carries.
fn encode<T: Serialize>(req: &T, options: &Map<String, Value>) -> Result<Finished, ApiError> {
    let num_ctx = options.get("num_ctx").and_then(Value::as_u64);
    let body = serde_json::to_vec(req).map_err(|e| {
        ApiError::new(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the request for Ollama: {e}"),
        )
    })?;
    Ok(Finished {
        body: Bytes::from(body),
        num_ctx,
    })
}

/// Whether a `think` value asks for thinking.
pub(crate) fn think_is_on(v: &Value) -> bool {
    !matches!(v, Value::Bool(false) | Value::Null)
}

/// A native request body with `think` removed, when it asked for thinking:
/// what to send again after Ollama answered that the model cannot think.
pub(crate) fn without_think(body: &[u8]) -> Option<(String, Bytes)> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        model: String,
        #[serde(default)]
        think: Option<Value>,
    }
    // Cheap check first: most requests carry no `think` at all.
    if !body.windows(8).any(|w| w == b"\"think\":") {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    if !probe.think.as_ref().is_some_and(think_is_on) {
        return None;
    }
    let mut v: Map<String, Value> = serde_json::from_slice(body).ok()?;
    v.remove("think");
    let bytes = serde_json::to_vec(&v).ok()?;
    Some((probe.model, Bytes::from(bytes)))
}

/// Maps an OpenAI-style reasoning effort to Ollama's `think`, the way
/// Ollama's own layer does (`minimal` ⇒ `low`, `xhigh` ⇒ `max`).
pub(crate) fn think_from_effort(effort: &str) -> Option<Value> {
    Some(match effort.trim().to_ascii_lowercase().as_str() {
        "none" | "disable" | "disabled" | "off" => Value::Bool(false),
        "minimal" | "low" => Value::from("low"),
        "medium" => Value::from("medium"),
        "high" => Value::from("high"),
        "xhigh" | "max" | "ultra" => Value::from("max"),
        _ => return None,
    })
}

/// Validates a client's own `think` value (`true`, `false`, or a level).
pub(crate) fn think_from_value(v: &Value) -> Option<Value> {
    match v {
        Value::Bool(_) => Some(v.clone()),
        Value::String(s) => think_from_effort(s),
        _ => None,
    }
}

/// The base64 payload of a `data:` URL, ready for Ollama's `images`.
///
/// Remote URLs are refused: the proxy never fetches anything a request
/// names, so it cannot be used to reach other hosts.
pub(crate) fn image_from_url(url: &str, param: &str) -> Result<String, ApiError> {
    let url = url.trim();
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https:/") {
        return Err(ApiError::invalid(
            param,
            "image URLs are not supported: send the image inline as a base64 data URL (data:image/png;base64,…); the proxy never fetches URLs",
        ));
    }
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(ApiError::invalid(
            param,
            "images must be base64 data URLs (data:image/png;base64,…)",
        ));
    };
    let Some((meta, data)) = rest.split_once(',') else {
        return Err(ApiError::invalid(param, "malformed data URL: no ',' found"));
    };
    if !meta.to_ascii_lowercase().ends_with(";base64") {
        return Err(ApiError::invalid(
            param,
            "data URLs must be base64-encoded (data:<type>;base64,…)",
        ));
    }
    image_from_base64(data, param)
}

/// Checks a bare base64 payload and normalizes it to the standard alphabet.
pub(crate) fn image_from_base64(data: &str, param: &str) -> Result<String, ApiError> {
    let mut clean = String::with_capacity(data.len());
    for c in data.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '/' | '=' => clean.push(c),
            '-' => clean.push('+'),
            '_' => clean.push('/'),
            c if c.is_ascii_whitespace() => {}
            _ => {
                return Err(ApiError::invalid(
                    param,
                    format!("image data is not valid base64 (found {c:?})"),
                ))
            }
        }
    }
    if clean.is_empty() {
        return Err(ApiError::invalid(param, "image data is empty"));
    }
    while clean.len() % 4 != 0 {
        clean.push('=');
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_go_under_client_values_and_think_models_get_think() {
        let mut config = Config {
            defaults: "num_ctx=8192,keep_alive=30m,temperature=0.2"
                .parse()
                .unwrap(),
            ..Config::default()
        };
        config.think_models.insert("glm-5:cloud".into());
        let mut req = ChatRequest::new("glm-5:cloud", true);
        req.options.insert("temperature".into(), Value::from(0.9));
        let f = req.finish(&config).unwrap();
        let v: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(v["options"]["temperature"], 0.9);
        assert_eq!(v["options"]["num_ctx"], 8192);
        assert_eq!(v["keep_alive"], "30m");
        assert_eq!(v["think"], true);
        assert_eq!(v["stream"], true);
        assert_eq!(f.num_ctx, Some(8192));

        let mut req = ChatRequest::new("glm-5:cloud", false);
        req.think = Some(Value::Bool(false));
        let v: Value = serde_json::from_slice(&req.finish(&config).unwrap().body).unwrap();
        assert_eq!(v["think"], false, "the client's choice wins");
        assert_eq!(v["stream"], false, "stream is always explicit");

        let v: Value = serde_json::from_slice(
            &ChatRequest::new("llama3.2", true)
                .finish(&config)
                .unwrap()
                .body,
        )
        .unwrap();
        assert!(v.get("think").is_none(), "no think for other models");
    }

    #[test]
    fn learned_non_thinking_models_never_get_think() {
        let mut config = Config::default();
        config.think_models.insert("llama3.2".into());
        config.learn_cannot_think("llama3.2:latest");
        let mut req = ChatRequest::new("llama3.2", true);
        req.think = Some(Value::from("high"));
        let v: Value = serde_json::from_slice(&req.finish(&config).unwrap().body).unwrap();
        assert!(v.get("think").is_none());
        let v: Value = serde_json::from_slice(
            &ChatRequest::new("llama3.2", true)
                .finish(&config)
                .unwrap()
                .body,
        )
        .unwrap();
        assert!(v.get("think").is_none(), "no injection either");
    }

    #[test]
    fn strips_think_for_a_retry() {
        let (model, body) =
            without_think(br#"{"model":"m","think":"high","stream":true}"#).unwrap();
        assert_eq!(model, "m");
        assert_eq!(&body[..], br#"{"model":"m","stream":true}"#);
        assert!(without_think(br#"{"model":"m","think":false}"#).is_none());
        assert!(without_think(br#"{"model":"m"}"#).is_none());
    }

    #[test]
    fn efforts_map_to_think_levels() {
        assert_eq!(think_from_effort("none"), Some(Value::Bool(false)));
        assert_eq!(think_from_effort("minimal"), Some(Value::from("low")));
        assert_eq!(think_from_effort("HIGH"), Some(Value::from("high")));
        assert_eq!(think_from_effort("xhigh"), Some(Value::from("max")));
        assert_eq!(think_from_effort("lots"), None);
    }

    #[test]
    fn images_from_data_urls_only() {
        assert_eq!(
            image_from_url("data:image/png;base64,iVBORw0KGgo=", "p").unwrap(),
            "iVBORw0KGgo="
        );
        assert_eq!(image_from_url("data:;base64,YWJj", "p").unwrap(), "YWJj");
        assert_eq!(image_from_base64("YWJjZA", "p").unwrap(), "YWJjZA==");
        let e =
            image_from_url("https://example.com/cat.png", "messages[0].content[1]").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("messages[0].content[1]"));
        assert!(e.message.contains("never fetches"));
        assert!(image_from_url("data:image/png,rawbytes", "p").is_err());
        assert!(image_from_url("data:image/png;base64,@@@", "p").is_err());
    }
}
