//! Building native requests: Ollama's wire types, re-exported for the
//! dialects, and the rules every dialect applies to them (the layer's
//! per-model defaults, think-models, images, reasoning efforts).

use crate::config::Config;
use crate::error::ApiError;
pub(crate) use crate::ollama::request::{
    ChatRequest, GenerateRequest, GenerationRequest, Message, ToolCall, ToolFunction,
};
use crate::shared::NoThink;
use serde_json::Value;

/// Applies the layer's rules to a generating request: per-model defaults
/// *under* what the client sent; `think: true` for configured think-models
/// when a chat client said nothing about thinking; no `think` at all for a
/// model Ollama has shown cannot think (it answers 400 to it). Legacy
/// completions carry no thinking of their own: only the last rule applies.
pub(crate) fn apply_rules(config: &Config, no_think: &NoThink, req: &mut GenerationRequest) {
    let model = req.model().to_string();
    let is_chat = matches!(req, GenerationRequest::Chat(_));
    let thinks = req.thinks();
    let settings = req.settings_mut();
    let defaults = config.defaults_for(&model);
    for (k, v) in defaults.options {
        settings.options.entry(k).or_insert(v);
    }
    if settings.keep_alive.is_none() {
        *settings.keep_alive = defaults.keep_alive;
    }
    if no_think.holds(&model) {
        if thinks || !is_chat {
            tracing::debug!(model = ?model, "not sending think to a model that cannot think");
            *settings.think = None;
        }
    } else if is_chat && settings.think.is_none() && config.is_think_model(&model) {
        *settings.think = Some(Value::Bool(true));
    }
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

/// A parsed chat request with the layer's rules applied, as JSON: what the
/// dialects' tests look at (the client's own `stream` flag kept).
#[cfg(test)]
pub(crate) fn finished(config: &Config, req: ChatRequest) -> Value {
    finished_with(config, &NoThink::default(), req)
}

/// [`finished`], with what the layer has learned of models that cannot think.
#[cfg(test)]
pub(crate) fn finished_with(config: &Config, no_think: &NoThink, req: ChatRequest) -> Value {
    let mut req = GenerationRequest::Chat(req);
    apply_rules(config, no_think, &mut req);
    serde_json::from_slice(&req.to_bytes().unwrap()).unwrap()
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
        let mut g = GenerationRequest::Chat(req);
        apply_rules(&config, &NoThink::default(), &mut g);
        assert_eq!(g.num_ctx(), Some(8192));
        let v: Value = serde_json::from_slice(&g.to_bytes().unwrap()).unwrap();
        assert_eq!(v["options"]["temperature"], 0.9);
        assert_eq!(v["options"]["num_ctx"], 8192);
        assert_eq!(v["keep_alive"], "30m");
        assert_eq!(v["think"], true);
        assert_eq!(v["stream"], true);

        let mut req = ChatRequest::new("glm-5:cloud", false);
        req.think = Some(Value::Bool(false));
        let v = finished(&config, req);
        assert_eq!(v["think"], false, "the client's choice wins");
        assert_eq!(v["stream"], false, "stream is always explicit");

        let v = finished(&config, ChatRequest::new("llama3.2", true));
        assert!(v.get("think").is_none(), "no think for other models");
    }

    #[test]
    fn learned_non_thinking_models_never_get_think() {
        let mut config = Config::default();
        config
            .think_models
            .insert(crate::config::model_key("llama3.2"));
        let no_think = NoThink::default();
        no_think.learn("llama3.2:latest");
        let mut req = ChatRequest::new("llama3.2", true);
        req.think = Some(Value::from("high"));
        assert!(finished_with(&config, &no_think, req)
            .get("think")
            .is_none());
        let v = finished_with(&config, &no_think, ChatRequest::new("llama3.2", true));
        assert!(v.get("think").is_none(), "no injection either");
        let mut g = GenerationRequest::Generate(GenerateRequest {
            model: "llama3.2".into(),
            think: Some(Value::Bool(false)),
            ..GenerateRequest::default()
        });
        apply_rules(&config, &no_think, &mut g);
        assert!(!g.to_bytes().unwrap().windows(7).any(|w| w == b"\"think\""));
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
