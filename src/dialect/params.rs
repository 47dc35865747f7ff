//! Reading request fields with errors that name the field, shared by every
//! dialect's request translator.

use crate::error::ApiError;
use serde_json::{json, Map, Value};

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
