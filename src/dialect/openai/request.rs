//! Request fields the OpenAI dialects share: sampling options, thinking,
//! structured output and usage reporting.

use crate::dialect::native;
use crate::dialect::params::{
    expect_integer, expect_number, expect_object, get, type_name, Wording,
};
use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// `stream_options.include_usage`, which only counts when streaming. Its
/// types are checked either way, as OpenAI does: `stream_options` must be an
/// object and `include_usage` a boolean (null is absent).
pub(crate) fn include_usage(
    root: &Map<String, Value>,
    stream: bool,
    wording: Wording,
) -> Result<bool, ApiError> {
    let Some(options) = expect_object(root, "stream_options", wording)? else {
        return Ok(false);
    };
    let include = match get(options, "include_usage") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(wording.wrong_type("stream_options.include_usage", "a boolean", v));
        }
    };
    Ok(stream && include)
}

/// The sampling fields an OpenAI dialect reads into Ollama's `options`.
pub(crate) struct Sampling {
    /// Spellings of the output-token limit (`num_predict`); the first one
    /// present wins.
    max_tokens: &'static [&'static str],
    /// Number fields copied as they are.
    numbers: &'static [&'static str],
    /// Integer fields copied as they are.
    integers: &'static [&'static str],
    /// Whether `stop` (a string or an array of strings) is read.
    stop: bool,
}

impl Sampling {
    /// Chat Completions and legacy completions: the standard fields and
    /// Ollama's native extras (`top_k`, `num_ctx`, …).
    pub(crate) const CHAT: Sampling = Sampling {
        max_tokens: &["max_completion_tokens", "max_tokens"],
        numbers: &[
            "temperature",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "min_p",
            "repeat_penalty",
            "typical_p",
        ],
        integers: &["seed", "top_k", "num_ctx", "repeat_last_n", "num_keep"],
        stop: true,
    };

    /// Responses: fewer standard fields, a few native extras.
    pub(crate) const RESPONSES: Sampling = Sampling {
        max_tokens: &["max_output_tokens"],
        numbers: &["temperature", "top_p"],
        integers: &["top_k", "num_ctx", "seed"],
        stop: false,
    };

    /// Ollama's `options` and `keep_alive` for a request: the client's
    /// `options` object first, then the standard fields on top (they are the
    /// more specific spelling).
    pub(crate) fn read(
        &self,
        root: &Map<String, Value>,
    ) -> Result<(Map<String, Value>, Option<Value>), ApiError> {
        let named = Wording::Named;
        let mut options = expect_object(root, "options", named)?
            .cloned()
            .unwrap_or_default();
        if let Some((n, key)) = self.max_tokens(root)? {
            if n < 1 {
                return Err(ApiError::invalid(key, named.say(key, "must be at least 1")));
            }
            options.insert("num_predict".into(), Value::from(n));
        }
        for &key in self.numbers {
            if let Some(v) = expect_number(root, key, named)? {
                options.insert(key.into(), v);
            }
        }
        for &key in self.integers {
            if let Some(v) = expect_integer(root, key, named)? {
                options.insert(key.into(), Value::from(v));
            }
        }
        if self.stop {
            if let Some(stop) = stop(root)? {
                options.insert("stop".into(), stop);
            }
        }
        Ok((options, keep_alive(root)?))
    }

    /// The first output-token limit present, with the key it came from.
    fn max_tokens(
        &self,
        root: &Map<String, Value>,
    ) -> Result<Option<(i64, &'static str)>, ApiError> {
        for &key in self.max_tokens {
            if let Some(n) = expect_integer(root, key, Wording::Named)? {
                return Ok(Some((n, key)));
            }
        }
        Ok(None)
    }
}

/// `stop`: a string or an array of strings (an empty one is no stop).
fn stop(root: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match get(root, "stop") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            Ok((!a.is_empty()).then(|| Value::Array(a.clone())))
        }
        Some(v) => Err(Wording::Terse.wrong_type("stop", "a string or an array of strings", v)),
    }
}

/// Ollama's `keep_alive`: a duration string or a number of seconds.
fn keep_alive(root: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match get(root, "keep_alive") {
        None => Ok(None),
        Some(v @ (Value::String(_) | Value::Number(_))) => Ok(Some(v.clone())),
        Some(v) => Err(Wording::Named.wrong_type(
            "keep_alive",
            "a duration string or a number of seconds",
            v,
        )),
    }
}

/// Where an OpenAI dialect reads how hard the model should think, besides
/// Ollama's own `think` (which always wins).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ThinkFields {
    /// Chat Completions: `reasoning_effort` (a string, or an object with
    /// `effort`), unless a Responses-style `reasoning.effort` is set, which
    /// wins as in Ollama's own layer.
    Chat,
    /// Responses: `reasoning.effort`; `reasoning` must be an object.
    Responses,
    /// Legacy completions: `think` only, with a shorter message.
    ThinkOnly,
}

/// Ollama's `think` for a request.
pub(crate) fn think(
    root: &Map<String, Value>,
    fields: ThinkFields,
) -> Result<Option<Value>, ApiError> {
    if let Some(v) = get(root, "think") {
        let message = match fields {
            ThinkFields::ThinkOnly => "think must be true, false, or a level",
            ThinkFields::Chat | ThinkFields::Responses => {
                "think must be true, false, or one of \"low\", \"medium\", \"high\", \"max\""
            }
        };
        return native::think_from_value(v)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("think", message));
    }
    match fields {
        ThinkFields::Chat => {
            // `reasoning: {"effort"}` (Responses style, sent by some clients)
            // wins over `reasoning_effort`, as in Ollama's own layer.
            let (param, effort) = match (root.get("reasoning"), root.get("reasoning_effort")) {
                (Some(Value::Object(r)), _) if r.get("effort").is_some_and(|e| !e.is_null()) => {
                    ("reasoning.effort", r.get("effort"))
                }
                (_, Some(Value::Object(r))) => ("reasoning_effort.effort", r.get("effort")),
                (_, e) => ("reasoning_effort", e),
            };
            think_from_effort(effort, param, "reasoning effort")
        }
        ThinkFields::Responses => {
            let reasoning = expect_object(root, "reasoning", Wording::Named)?;
            let effort = reasoning.and_then(|r| r.get("effort"));
            think_from_effort(effort, "reasoning.effort", "reasoning.effort")
        }
        ThinkFields::ThinkOnly => Ok(None),
    }
}

/// A reasoning effort (`"low"`, `"none"`, …) as Ollama's `think`; `param`
/// names it in a 400, `label` in the message about a wrong type.
fn think_from_effort(
    effort: Option<&Value>,
    param: &str,
    label: &str,
) -> Result<Option<Value>, ApiError> {
    match effort {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => native::think_from_effort(s).map(Some).ok_or_else(|| {
            ApiError::invalid(
                param,
                format!("unknown reasoning effort {s:?} (expected none, minimal, low, medium, high, xhigh or max)"),
            )
        }),
        Some(v) => Err(ApiError::invalid(
            param,
            format!("{label} must be a string, got {}", type_name(v)),
        )),
    }
}

/// Where an OpenAI dialect asks for structured output, and how its errors
/// name it.
pub(crate) struct FormatField {
    /// The field, for `<param>.type` in errors.
    param: &'static str,
    /// JSON pointer to the schema of a `json_schema` format.
    schema_at: &'static str,
    /// The param of a missing schema.
    schema_param: &'static str,
    /// The message for a missing schema.
    no_schema: &'static str,
    /// What an unknown `type` is called in its message.
    kind: &'static str,
}

impl FormatField {
    /// Chat Completions' `response_format`.
    pub(crate) const CHAT: FormatField = FormatField {
        param: "response_format",
        schema_at: "/json_schema/schema",
        schema_param: "response_format.json_schema.schema",
        no_schema: "response_format json_schema needs a schema object",
        kind: "response_format type",
    };

    /// Responses' `text.format`.
    pub(crate) const RESPONSES: FormatField = FormatField {
        param: "text.format",
        schema_at: "/schema",
        schema_param: "text.format.schema",
        no_schema: "a json_schema text format needs a schema object",
        kind: "text format",
    };

    /// Ollama's `format` for the client's format object `v`.
    pub(crate) fn read(&self, v: Option<&Value>) -> Result<Option<Value>, ApiError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => Ok(None),
            "json_object" => Ok(Some(Value::from("json"))),
            "json_schema" => match v.pointer(self.schema_at) {
                Some(schema @ Value::Object(_)) => Ok(Some(schema.clone())),
                _ => Err(ApiError::invalid(self.schema_param, self.no_schema)),
            },
            other => Err(ApiError::invalid(
                format!("{}.type", self.param),
                format!(
                    "unsupported {} {other:?} (expected text, json_object or json_schema)",
                    self.kind
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn responses_read_fewer_sampling_fields() {
        let root = object(json!({"max_output_tokens": 5, "max_tokens": 9, "stop": "x",
            "presence_penalty": 1, "options": {"seed": 3}, "seed": 4, "keep_alive": 0}));
        let (options, keep_alive) = Sampling::RESPONSES.read(&root).unwrap();
        assert_eq!(Value::Object(options), json!({"num_predict": 5, "seed": 4}));
        assert_eq!(keep_alive, Some(json!(0)));
        let (options, _) = Sampling::CHAT.read(&root).unwrap();
        assert_eq!(options["num_predict"], 9);
        assert_eq!(options["stop"], json!(["x"]));
    }

    #[test]
    fn sampling_errors_keep_their_wording() {
        for (body, param, message) in [
            (
                json!({"stop": 3}),
                "stop",
                "stop must be a string or an array of strings",
            ),
            (
                json!({"max_tokens": 0}),
                "max_tokens",
                "max_tokens must be at least 1",
            ),
            (
                json!({"options": []}),
                "options",
                "options must be an object, got an array",
            ),
            (
                json!({"keep_alive": true}),
                "keep_alive",
                "keep_alive must be a duration string or a number of seconds, got a boolean",
            ),
        ] {
            let e = Sampling::CHAT.read(&object(body)).unwrap_err();
            assert_eq!(
                (e.param.as_deref(), e.message.as_str()),
                (Some(param), message)
            );
        }
    }

    #[test]
    fn stream_options_are_typed() {
        let usage = |v: Value, stream| include_usage(&object(v), stream, Wording::Named);
        assert!(usage(json!({"stream_options": {"include_usage": true}}), true).unwrap());
        assert!(!usage(json!({"stream_options": {"include_usage": true}}), false).unwrap());
        assert!(!usage(json!({"stream_options": {"include_usage": null}}), true).unwrap());
        assert!(!usage(json!({"stream_options": null}), true).unwrap());
        assert!(!usage(
            json!({"stream_options": {"include_obfuscation": false}}),
            true
        )
        .unwrap());
        assert!(!usage(json!({}), true).unwrap());
        for (body, param, message) in [
            (
                json!({"stream_options": "x"}),
                "stream_options",
                "stream_options must be an object, got a string",
            ),
            (
                json!({"stream_options": {"include_usage": "yes"}}),
                "stream_options.include_usage",
                "stream_options.include_usage must be a boolean, got a string",
            ),
        ] {
            // Checked whether or not the client streams.
            for stream in [true, false] {
                let e = usage(body.clone(), stream).unwrap_err();
                assert_eq!(
                    (e.param.as_deref(), e.message.as_str()),
                    (Some(param), message)
                );
            }
        }
        let e =
            include_usage(&object(json!({"stream_options": 1})), true, Wording::Terse).unwrap_err();
        assert_eq!(e.message, "stream_options must be an object");
    }

    #[test]
    fn think_fields_per_dialect() {
        let root = object(json!({"reasoning": {"effort": "high"}, "reasoning_effort": "low"}));
        assert_eq!(
            think(&root, ThinkFields::Chat).unwrap(),
            Some(json!("high"))
        );
        assert_eq!(
            think(&root, ThinkFields::Responses).unwrap(),
            Some(json!("high"))
        );
        assert_eq!(think(&root, ThinkFields::ThinkOnly).unwrap(), None);
        let root = object(json!({"reasoning": "high"}));
        let e = think(&root, ThinkFields::Responses).unwrap_err();
        assert_eq!(e.message, "reasoning must be an object, got a string");
        assert_eq!(think(&root, ThinkFields::Chat).unwrap(), None);
        let root = object(json!({"reasoning_effort": 1}));
        let e = think(&root, ThinkFields::Chat).unwrap_err();
        assert_eq!(e.message, "reasoning effort must be a string, got a number");
        let e = think(&object(json!({"think": "loud"})), ThinkFields::ThinkOnly).unwrap_err();
        assert_eq!(e.message, "think must be true, false, or a level");
    }

    #[test]
    fn formats_name_their_own_fields() {
        let schema = json!({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}});
        assert_eq!(
            FormatField::CHAT.read(Some(&schema)).unwrap(),
            Some(json!({"type": "object"}))
        );
        let e = FormatField::RESPONSES.read(Some(&schema)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("text.format.schema"));
        let e = FormatField::RESPONSES
            .read(Some(&json!({"type": "xml"})))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("text.format.type"));
        assert_eq!(
            e.message,
            "unsupported text format \"xml\" (expected text, json_object or json_schema)"
        );
    }
}
