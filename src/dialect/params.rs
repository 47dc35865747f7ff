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

/// How a dialect words a 400 about one field. Clients match on these
/// messages, so each dialect keeps the wording it has always had.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Wording {
    /// The field first: `stream must be a boolean, got a string`,
    /// `messages is required` (the OpenAI dialects).
    Named,
    /// Without the field, which Anthropic's error body puts in front:
    /// `must be a boolean, got a string`, `Field required`.
    Bare,
    /// The field first, no type: `stream must be a boolean` (legacy
    /// completions).
    Terse,
}

impl Wording {
    /// `text` (e.g. "must be at least 1") about `key`, in this wording.
    pub(crate) fn say(self, key: &str, text: &str) -> String {
        match self {
            Wording::Named | Wording::Terse => format!("{key} {text}"),
            Wording::Bare => text.to_string(),
        }
    }

    /// A 400 naming `key`: it must be `what` (e.g. "a boolean") but is `got`.
    pub(crate) fn wrong_type(self, key: &str, what: &str, got: &Value) -> ApiError {
        let text = match self {
            Wording::Terse => format!("must be {what}"),
            Wording::Named | Wording::Bare => format!("must be {what}, got {}", type_name(got)),
        };
        ApiError::invalid(key, self.say(key, &text))
    }

    /// A 400 naming `key`: it is missing.
    pub(crate) fn required(self, key: &str) -> ApiError {
        match self {
            Wording::Bare => ApiError::invalid(key, "Field required"),
            Wording::Named | Wording::Terse => ApiError::invalid(key, format!("{key} is required")),
        }
    }
}

/// The required `model` string.
pub(crate) fn model_name(root: &Map<String, Value>, wording: Wording) -> Result<String, ApiError> {
    match root.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        Some(v) if !v.is_null() && !v.is_string() => {
            Err(wording.wrong_type("model", "a string", v))
        }
        _ => Err(wording.required("model")),
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

/// An optional field that `read` accepts; `what` names what it must be.
fn expect<'a, T>(
    root: &'a Map<String, Value>,
    key: &str,
    what: &str,
    wording: Wording,
    read: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match get(root, key) {
        None => Ok(None),
        Some(v) => read(v)
            .map(Some)
            .ok_or_else(|| wording.wrong_type(key, what, v)),
    }
}

/// An optional number field.
pub(crate) fn expect_number(
    root: &Map<String, Value>,
    key: &str,
    wording: Wording,
) -> Result<Option<Value>, ApiError> {
    expect(root, key, "a number", wording, |v| {
        v.is_number().then(|| v.clone())
    })
}

/// An optional integer field (`3.0` counts as an integer).
pub(crate) fn expect_integer(
    root: &Map<String, Value>,
    key: &str,
    wording: Wording,
) -> Result<Option<i64>, ApiError> {
    expect(root, key, "an integer", wording, |v| {
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
    })
}

/// An optional boolean field.
pub(crate) fn expect_bool(
    root: &Map<String, Value>,
    key: &str,
    wording: Wording,
) -> Result<Option<bool>, ApiError> {
    expect(root, key, "a boolean", wording, Value::as_bool)
}

/// An optional string field.
pub(crate) fn expect_str<'a>(
    root: &'a Map<String, Value>,
    key: &str,
    wording: Wording,
) -> Result<Option<&'a str>, ApiError> {
    expect(root, key, "a string", wording, Value::as_str)
}

/// An optional object field.
pub(crate) fn expect_object<'a>(
    root: &'a Map<String, Value>,
    key: &str,
    wording: Wording,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    expect(root, key, "an object", wording, Value::as_object)
}

/// `stream`: a boolean, `false` when absent.
pub(crate) fn stream(root: &Map<String, Value>, wording: Wording) -> Result<bool, ApiError> {
    Ok(expect_bool(root, "stream", wording)?.unwrap_or(false))
}

/// The 400 for a required list (`messages`) that is missing, empty or not
/// an array; `noun` is what it holds ("message").
pub(crate) fn list_error(v: Option<&Value>, key: &str, noun: &str, wording: Wording) -> ApiError {
    match v {
        None | Some(Value::Null) => wording.required(key),
        Some(Value::Array(_)) => ApiError::invalid(
            key,
            wording.say(key, &format!("must contain at least one {noun}")),
        ),
        Some(v) => wording.wrong_type(key, "an array", v),
    }
}

/// An optional array field (`tools`): empty when absent or null.
pub(crate) fn optional_array<'a>(
    v: Option<&'a Value>,
    key: &str,
    wording: Wording,
) -> Result<&'a [Value], ApiError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(wording.wrong_type(key, "an array", v)),
    }
}

/// `{"type":"function","function":…}` around a native function.
pub(crate) fn as_tool(function: impl Into<Value>) -> Value {
    json!({"type": "function", "function": function.into()})
}

/// A native function tool named `name`. `description` is kept when it is a
/// string; absent or null `parameters` become an empty object schema, and
/// any other non-object is refused with the 400 `bad_parameters` makes.
pub(crate) fn function_tool(
    name: impl Into<String>,
    description: Option<Value>,
    parameters: Option<Value>,
    bad_parameters: impl FnOnce(&Value) -> ApiError,
) -> Result<Value, ApiError> {
    let parameters = match parameters {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p,
        Some(v) => return Err(bad_parameters(&v)),
    };
    let mut function = Map::with_capacity(3);
    function.insert("name".into(), Value::String(name.into()));
    if let Some(d @ Value::String(_)) = description {
        function.insert("description".into(), d);
    }
    function.insert("parameters".into(), parameters);
    Ok(as_tool(function))
}

/// The most of a tool's description [`tool_loaded_text`] quotes, in
/// characters.
const LOADED_DESCRIPTION_CHARS: usize = 200;

/// What the model reads where a client's tool search loaded a tool (an
/// Anthropic `tool_reference`, a Responses `tool_search_output`):
/// `Tool "NAME" is now available: <description>`. Only the description's
/// first line, at most 200 characters, is quoted: the tool's whole schema is
/// in the request's tools from now on, and this text stays in the
/// conversation on every later turn, so it stays short.
pub(crate) fn tool_loaded_text(name: &str, description: Option<&str>) -> String {
    let line = description
        .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("");
    if line.is_empty() {
        return format!("Tool \"{name}\" is now available.");
    }
    let mut short: String = line.chars().take(LOADED_DESCRIPTION_CHARS).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    format!("Tool \"{name}\" is now available: {short}")
}

/// What the model reads where a tool search named a tool the request does
/// not carry (never an error: the search result stays readable).
pub(crate) fn tool_missing_text(name: &str) -> String {
    format!("Tool \"{name}\" was found by the search but is not available in this request.")
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
            "image_url" | "input_image" => images.push(image_part(part, &pp)?),
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

/// An `image_url` / `input_image` part's base64 data.
fn image_part(part: &Value, pp: &str) -> Result<String, ApiError> {
    let url = match part.get("image_url") {
        Some(Value::String(u)) => Some(u.as_str()),
        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
        _ => None,
    };
    match url {
        Some(url) => native::image_from_url(url, &format!("{pp}.image_url")),
        None if part.get("file_id").is_some_and(|f| !f.is_null()) => Err(ApiError::invalid(
            format!("{pp}.file_id"),
            "file ids are not supported: this proxy stores no files; send the image inline as a base64 data URL",
        )),
        None => Err(ApiError::invalid(
            format!("{pp}.image_url"),
            "an image part needs an image_url (a base64 data URL)",
        )),
    }
}

/// `dialect.prepare` for a JSON body, with the default config and empty
/// request parts: the usual first step of a dialect's tests.
#[cfg(test)]
pub(crate) fn prepare_json(
    dialect: &dyn super::Dialect,
    body: Value,
) -> Result<super::Upstream, ApiError> {
    let (parts, _) = http::Request::new(()).into_parts();
    dialect.prepare(
        &crate::config::Config::default(),
        &crate::shared::Shared::default(),
        &parts,
        body.to_string().as_bytes(),
    )
}

/// Asserts that `dialect` refuses each body with an error naming its param.
#[cfg(test)]
pub(crate) fn assert_refused<'a>(
    dialect: &dyn super::Dialect,
    cases: impl IntoIterator<Item = (Value, &'a str)>,
) {
    for (body, param) in cases {
        let e = prepare_json(dialect, body).err().unwrap();
        assert_eq!(e.param.as_deref(), Some(param));
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
        let named = Wording::Named;
        assert_eq!(expect_integer(&root, "a", named).unwrap(), Some(1));
        assert_eq!(expect_integer(&root, "b", named).unwrap(), Some(2));
        assert_eq!(expect_integer(&root, "d", named).unwrap(), None);
        assert_eq!(expect_integer(&root, "missing", named).unwrap(), None);
        let e = expect_integer(&root, "e", named).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("e"));
        assert_eq!(e.message, "e must be an integer, got a number");
        let e = expect_number(&root, "c", named).unwrap_err();
        assert_eq!(e.message, "c must be a number, got a string");
        let e = expect_number(&root, "c", Wording::Bare).unwrap_err();
        assert_eq!(e.message, "must be a number, got a string");
        assert_eq!(e.param.as_deref(), Some("c"));
        let e = expect_bool(&root, "c", Wording::Terse).unwrap_err();
        assert_eq!(e.message, "c must be a boolean");
    }

    #[test]
    fn wordings_of_missing_fields_and_lists() {
        let root: Map<String, Value> = serde_json::from_value(json!({"model": 3})).unwrap();
        let e = model_name(&root, Wording::Named).unwrap_err();
        assert_eq!(e.message, "model must be a string, got a number");
        let e = model_name(&Map::new(), Wording::Bare).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.message.as_str()),
            (Some("model"), "Field required")
        );
        let e = list_error(Some(&json!([])), "messages", "message", Wording::Named);
        assert_eq!(e.message, "messages must contain at least one message");
        let e = list_error(None, "messages", "message", Wording::Named);
        assert_eq!(e.message, "messages is required");
        let e = list_error(Some(&json!("x")), "messages", "message", Wording::Bare);
        assert_eq!(e.message, "must be an array, got a string");
    }

    #[test]
    fn function_tools_have_one_shape() {
        let t = function_tool("f", Some(json!(3)), None, |_| unreachable!()).unwrap();
        assert_eq!(
            t,
            json!({"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {}}}})
        );
        let t = function_tool(
            "f",
            Some(json!("d")),
            Some(json!({"type": "object"})),
            |_| unreachable!(),
        )
        .unwrap();
        assert_eq!(t["function"]["description"], "d");
        let e = function_tool("f", None, Some(json!([])), |v| {
            Wording::Bare.wrong_type("tools.0.input_schema", "an object", v)
        })
        .unwrap_err();
        assert_eq!(e.message, "must be an object, got an array");
        let e = optional_array(Some(&json!({})), "tools", Wording::Named).unwrap_err();
        assert_eq!(e.message, "tools must be an array, got an object");
        assert!(optional_array(None, "tools", Wording::Named)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn loaded_tools_are_named_in_one_short_line() {
        assert_eq!(
            tool_loaded_text("WebSearch", Some("\n  Search the web.\n\nUsage notes: …")),
            "Tool \"WebSearch\" is now available: Search the web."
        );
        assert_eq!(
            tool_loaded_text("CronList", None),
            "Tool \"CronList\" is now available."
        );
        assert_eq!(
            tool_loaded_text("x", Some("  ")),
            "Tool \"x\" is now available."
        );
        let long = "é".repeat(300);
        let text = tool_loaded_text("x", Some(&long));
        assert!(text.ends_with('…'), "{text}");
        assert_eq!(text.chars().filter(|&c| c == 'é').count(), 200);
        assert!(tool_missing_text("Nope").contains("\"Nope\""));
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
