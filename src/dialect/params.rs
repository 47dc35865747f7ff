//! Reading request fields with errors that name the field, shared by every
//! dialect's request translator.

use super::native;
use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// A request body that must be a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("request body is not valid JSON: {e}")))?;
    match root {
        Value::Object(root) => Ok(root),
        _ => Err(ApiError::invalid(
            "body",
            "request body must be a JSON object",
        )),
    }
}

/// The required `model` string.
pub(crate) fn model_name(root: &Map<String, Value>) -> Result<String, ApiError> {
    match root.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        Some(v) if !v.is_null() && !v.is_string() => Err(ApiError::invalid(
            "model",
            format!("model must be a string, got {}", type_name(v)),
        )),
        _ => Err(ApiError::invalid("model", "model is required")),
    }
}

/// "a string", "an array", … for error messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `root[key]`, treating `null` as absent.
pub(crate) fn get<'a>(root: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    root.get(key).filter(|v| !v.is_null())
}

/// An optional number field.
pub(crate) fn expect_number(
    root: &Map<String, Value>,
    key: &str,
) -> Result<Option<Value>, ApiError> {
    match get(root, key) {
        None => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(v) => Err(ApiError::invalid(
            key,
            format!("{key} must be a number, got {}", type_name(v)),
        )),
    }
}

/// An optional integer field (`3.0` counts as an integer).
pub(crate) fn expect_integer(
    root: &Map<String, Value>,
    key: &str,
) -> Result<Option<i64>, ApiError> {
    let Some(v) = get(root, key) else {
        return Ok(None);
    };
    let int = v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    });
    int.map(Some).ok_or_else(|| {
        ApiError::invalid(
            key,
            format!("{key} must be an integer, got {}", type_name(v)),
        )
    })
}

/// Tool-call arguments as OpenAI clients send them back: a JSON string that
/// encodes an object (`""` is `{}`), or already an object. Ollama needs the
/// object.
pub(crate) fn parse_arguments(args: Option<&Value>, param: &str) -> Result<Value, ApiError> {
    match args {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(v) => Err(ApiError::invalid(
                param,
                format!(
                    "tool call arguments must encode a JSON object, got {}",
                    type_name(&v)
                ),
            )),
            Err(e) => Err(ApiError::invalid(
                param,
                format!("tool call arguments are not valid JSON: {e}"),
            )),
        },
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(v) => Err(ApiError::invalid(
            param,
            format!(
                "tool call arguments must be a JSON string, got {}",
                type_name(v)
            ),
        )),
    }
}

/// What to do with a content part of a type we do not know.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnknownParts {
    /// A 400 naming it (Chat Completions: clients send few kinds).
    Reject,
    /// Drop it with a debug log (Responses: new kinds keep appearing).
    Drop,
}

/// Text of a `content` that is a string, null, or an array of parts (joined
/// with `\n`), for the OpenAI dialects. Images (`image_url`, `input_image`,
/// audio data) go to `images` as Ollama's raw base64; remote URLs and file
/// ids are refused with a 400 naming the part.
pub(crate) fn parse_content(
    content: Option<&Value>,
    param: &str,
    images: &mut Vec<String>,
    unknown: UnknownParts,
) -> Result<String, ApiError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(v) => {
            return Err(ApiError::invalid(
                param,
                format!(
                    "content must be a string or an array of parts, got {}",
                    type_name(v)
                ),
            ))
        }
    };
    let mut texts: Vec<&str> = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{param}[{j}]");
        if let Value::String(s) = part {
            texts.push(s);
            continue;
        }
        match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" | "input_text" | "output_text" => match part.get("text") {
                Some(Value::String(t)) => texts.push(t),
                _ => {
                    return Err(ApiError::invalid(
                        format!("{pp}.text"),
                        "a text part needs a text string",
                    ))
                }
            },
            "refusal" => {
                if let Some(t) = part.get("refusal").and_then(Value::as_str) {
                    texts.push(t);
                }
            }
            "image_url" | "input_image" => {
                let url = match part.get("image_url") {
                    Some(Value::String(u)) => Some(u.as_str()),
                    Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
                    _ => None,
                };
                match url {
                    Some(url) => images.push(native::image_from_url(url, &format!("{pp}.image_url"))?),
                    None if part.get("file_id").is_some_and(|f| !f.is_null()) => {
                        return Err(ApiError::invalid(
                            format!("{pp}.file_id"),
                            "file ids are not supported: this proxy stores no files; send the image inline as a base64 data URL",
                        ))
                    }
                    None => {
                        return Err(ApiError::invalid(
                            format!("{pp}.image_url"),
                            "an image part needs an image_url (a base64 data URL)",
                        ))
                    }
                }
            }
            "input_audio" => {
                let data = part
                    .get("input_audio")
                    .and_then(|a| a.get("data"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                images.push(native::image_from_base64(
                    data,
                    &format!("{pp}.input_audio.data"),
                )?);
            }
            "input_file" | "file" => {
                return Err(ApiError::invalid(
                    pp,
                    "file parts are not supported by Ollama: send the file's text as a text part",
                ))
            }
            other if unknown == UnknownParts::Reject => {
                return Err(ApiError::invalid(
                    format!("{pp}.type"),
                    format!("unsupported content part type {other:?}"),
                ))
            }
            other => tracing::debug!(kind = other, "dropping a content part Ollama cannot use"),
        }
    }
    Ok(texts.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_name_themselves() {
        let root: Map<String, Value> =
            serde_json::from_value(json!({"a": 1, "b": 2.0, "c": "x", "d": null, "e": 2.5}))
                .unwrap();
        assert_eq!(expect_integer(&root, "a").unwrap(), Some(1));
        assert_eq!(expect_integer(&root, "b").unwrap(), Some(2));
        assert_eq!(expect_integer(&root, "d").unwrap(), None);
        assert_eq!(expect_integer(&root, "missing").unwrap(), None);
        let e = expect_integer(&root, "e").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("e"));
        let e = expect_number(&root, "c").unwrap_err();
        assert_eq!(e.message, "c must be a number, got a string");
    }

    #[test]
    fn arguments_become_objects() {
        assert_eq!(parse_arguments(None, "p").unwrap(), json!({}));
        assert_eq!(parse_arguments(Some(&json!("")), "p").unwrap(), json!({}));
        assert_eq!(
            parse_arguments(Some(&json!("{\"a\":1}")), "p").unwrap(),
            json!({"a": 1})
        );
        assert!(parse_arguments(Some(&json!("[1]")), "p").is_err());
        assert!(parse_arguments(Some(&json!("{oops")), "p").is_err());
        assert!(parse_arguments(Some(&json!(3)), "p").is_err());
    }
}
