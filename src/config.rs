//! Configuration shared by the layer, the service and every dialect.

use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// What the layer does with the model's thinking text.
///
/// ```
/// use ollama_translate::ReasoningMode;
///
/// assert_eq!("forward".parse::<ReasoningMode>(), Ok(ReasoningMode::Forward));
/// assert_eq!(ReasoningMode::default(), ReasoningMode::Auto);
/// assert!("loud".parse::<ReasoningMode>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReasoningMode {
    /// Forward it when the client asked for reasoning, in the form its
    /// dialect carries safely; drop it otherwise. The default:
    /// * Messages: signed `thinking` blocks when the request enables
    ///   thinking (`enabled`, or Claude Code's `adaptive`);
    /// * Responses: reasoning items when `include` asks for
    ///   `reasoning.encrypted_content` or a `reasoning.summary` is requested;
    /// * Chat Completions: never (LiteLLM's chat bridge turns
    ///   `reasoning_content` into unsigned thinking).
    #[default]
    Auto,
    /// Drop it: the client sees only the answer.
    Drop,
    /// Forward it in the dialect's own field, asked for or not:
    /// `reasoning_content` for Chat Completions, thinking blocks for
    /// Messages, reasoning items for Responses.
    Forward,
}

impl ReasoningMode {
    /// Whether thinking goes to a client that did (or did not) ask for it.
    pub(crate) fn forwards(self, asked: bool) -> bool {
        match self {
            ReasoningMode::Auto => asked,
            ReasoningMode::Drop => false,
            ReasoningMode::Forward => true,
        }
    }
}

impl std::str::FromStr for ReasoningMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ReasoningMode::Auto),
            "drop" | "suppress" | "off" => Ok(ReasoningMode::Drop),
            "forward" | "on" => Ok(ReasoningMode::Forward),
            other => Err(ConfigError(format!(
                "unknown reasoning mode {other:?} (expected \"auto\", \"drop\" or \"forward\")"
            ))),
        }
    }
}

/// Default request settings for a model, applied *under* whatever the client
/// sends: a client value always wins.
///
/// ```
/// use ollama_translate::ModelDefaults;
///
/// let d = ModelDefaults::new().num_ctx(32768).keep_alive("30m");
/// let parsed: ModelDefaults = "num_ctx=32768,keep_alive=30m".parse().unwrap();
/// assert_eq!(d, parsed);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelDefaults {
    pub(crate) options: Map<String, Value>,
    pub(crate) keep_alive: Option<Value>,
}

impl ModelDefaults {
    /// No defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Context window (`options.num_ctx`). Ollama's own default is small and
    /// it silently drops the oldest messages when a prompt does not fit.
    pub fn num_ctx(mut self, tokens: u64) -> Self {
        self.options.insert("num_ctx".into(), Value::from(tokens));
        self
    }

    /// How long Ollama keeps the model loaded (`keep_alive`), e.g. `"30m"`,
    /// `"-1"` (forever) or `"0"` (unload after the request).
    pub fn keep_alive(mut self, value: impl Into<String>) -> Self {
        self.keep_alive = Some(parse_scalar(&value.into()));
        self
    }

    /// Any other Ollama option (`temperature`, `top_k`, `num_predict`, …),
    /// given as text and typed the way JSON would read it (`0.6` is a number,
    /// `true` a boolean, anything else a string).
    pub fn option(mut self, key: impl Into<String>, value: &str) -> Self {
        let key = key.into();
        if key == "keep_alive" {
            self.keep_alive = Some(parse_scalar(value));
        } else {
            self.options.insert(key, parse_scalar(value));
        }
        self
    }

    /// The configured `num_ctx`, if any.
    pub fn get_num_ctx(&self) -> Option<u64> {
        self.options.get("num_ctx").and_then(Value::as_u64)
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.options.is_empty() && self.keep_alive.is_none()
    }

    fn merge_from(&mut self, other: &ModelDefaults) {
        for (k, v) in &other.options {
            self.options.insert(k.clone(), v.clone());
        }
        if other.keep_alive.is_some() {
            self.keep_alive.clone_from(&other.keep_alive);
        }
    }
}

impl std::str::FromStr for ModelDefaults {
    type Err = ConfigError;

    /// Parses `key=value,key=value`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut d = ModelDefaults::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("expected key=value, got {pair:?}")))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(ConfigError(format!("empty option name in {pair:?}")));
            }
            d = d.option(k, v.trim());
        }
        Ok(d)
    }
}

fn parse_scalar(v: &str) -> Value {
    let v = v.trim();
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() {
            return Value::from(f);
        }
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}

/// A configuration value that could not be parsed.
///
/// ```
/// use ollama_translate::ModelDefaults;
///
/// let err = "num_ctx".parse::<ModelDefaults>().unwrap_err();
/// assert!(err.to_string().contains("expected key=value"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) use crate::ollama::model::model_key;

/// The layer's configuration, shared behind an `Arc`: what it was built
/// with, nothing learned or held at run time (that is
/// [`Shared`](crate::shared::Shared)). Its `Debug` hides the secrets
/// (`thinking_key`, the keys of `access`).
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) think_models: HashSet<String>,
    pub(crate) reasoning: ReasoningMode,
    pub(crate) model_reasoning: HashMap<String, ReasoningMode>,
    pub(crate) defaults: ModelDefaults,
    pub(crate) model_defaults: HashMap<String, ModelDefaults>,
    pub(crate) aliases: HashMap<String, String>,
    /// Ollama model for `claude*` names that have no alias (Messages dialect).
    pub(crate) default_model: Option<String>,
    pub(crate) max_request_bytes: usize,
    /// Longest line of Ollama's stream, and largest answer collected whole.
    pub(crate) max_answer_bytes: usize,
    /// Ollama's address, for metrics and traces (`server.address`).
    pub(crate) server_address: Option<String>,
    /// Whether the chunks of a body passed through that come together
    /// leave in one frame (see [`TranslateBody`](crate::TranslateBody)).
    pub(crate) coalesce_passthrough: bool,
    /// Signs thinking text handed to clients; see `signing`.
    pub(crate) thinking_key: crate::signing::Key,
    /// The timer, keep-alives and the upstream idle timeout.
    pub(crate) timing: crate::timer::Timing,
    /// Who may do what (keys, scopes, limits per key); `None`: no checks.
    pub(crate) access: Option<crate::access::Access>,
    /// Where web searches run, and their bounds.
    pub(crate) web_search: crate::search::WebSearchConfig,
    /// Client headers that name a conversation, the first found wins.
    pub(crate) session_headers: Vec<http::HeaderName>,
}

/// Default cap on one line of Ollama's stream and on an answer collected
/// whole: 32 MiB, room for a long non-streamed answer.
pub(crate) const DEFAULT_MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Stands for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field as the derive would print it, but the two secrets.
        let Config {
            think_models,
            reasoning,
            model_reasoning,
            defaults,
            model_defaults,
            aliases,
            default_model,
            max_request_bytes,
            max_answer_bytes,
            server_address,
            coalesce_passthrough,
            thinking_key: _,
            timing,
            access,
            web_search,
            session_headers,
        } = self;
        f.debug_struct("Config")
            .field("think_models", think_models)
            .field("reasoning", reasoning)
            .field("model_reasoning", model_reasoning)
            .field("defaults", defaults)
            .field("model_defaults", model_defaults)
            .field("aliases", aliases)
            .field("default_model", default_model)
            .field("max_request_bytes", max_request_bytes)
            .field("max_answer_bytes", max_answer_bytes)
            .field("server_address", server_address)
            .field("coalesce_passthrough", coalesce_passthrough)
            .field("thinking_key", &Redacted)
            .field("timing", timing)
            .field(
                "api_key",
                &access
                    .as_ref()
                    .filter(|a| a.requires_key())
                    .map(|_| Redacted),
            )
            .field("access", access)
            .field("web_search", web_search)
            .field("session_headers", session_headers)
            .finish()
    }
}

/// Default cap on a translated request body: 32 MiB, room for several images.
pub(crate) const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            think_models: HashSet::new(),
            reasoning: ReasoningMode::Auto,
            model_reasoning: HashMap::new(),
            defaults: ModelDefaults::new(),
            model_defaults: HashMap::new(),
            aliases: HashMap::new(),
            default_model: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            server_address: None,
            coalesce_passthrough: true,
            thinking_key: crate::signing::random_key(),
            timing: crate::timer::Timing {
                timer: None,
                keepalive: Some(std::time::Duration::from_secs(10)),
                idle_timeout: None,
                body_timeout: Some(std::time::Duration::from_secs(60)),
            },
            access: None,
            web_search: crate::search::WebSearchConfig::new(),
            session_headers: crate::ollama::routing::SESSION_HEADERS
                .map(http::HeaderName::from_static)
                .into(),
        }
    }
}

impl Config {
    /// The Ollama model a client's model name maps to.
    /// Now, by the layer's timer (for the response store's time to live).
    pub(crate) fn now(&self) -> std::time::Instant {
        self.timing
            .timer
            .as_ref()
            .map_or_else(std::time::Instant::now, |t| t.now())
    }

    /// Whether the configuration names `model` (an alias or its target,
    /// the default model, a model with options or a reasoning mode of its
    /// own, a think-model): a name the operator chose, fit for a metric
    /// label before Ollama has answered for it.
    pub(crate) fn names_model(&self, model: &str) -> bool {
        let key = model_key(model);
        self.aliases.contains_key(&key)
            || self.aliases.values().any(|t| model_key(t) == key)
            || self
                .default_model
                .as_deref()
                .is_some_and(|d| model_key(d) == key)
            || self.model_defaults.contains_key(&key)
            || self.model_reasoning.contains_key(&key)
            || self.think_models.contains(&key)
    }

    pub(crate) fn resolve_model<'a>(&'a self, requested: &'a str) -> &'a str {
        match self.aliases.get(&model_key(requested)) {
            Some(target) => target.as_str(),
            None => requested,
        }
    }

    pub(crate) fn is_think_model(&self, model: &str) -> bool {
        self.think_models.contains(&model_key(model))
    }

    pub(crate) fn reasoning_for(&self, model: &str) -> ReasoningMode {
        self.model_reasoning
            .get(&model_key(model))
            .copied()
            .unwrap_or(self.reasoning)
    }

    /// Global defaults overlaid with the model's own.
    pub(crate) fn defaults_for(&self, model: &str) -> ModelDefaults {
        let mut d = self.defaults.clone();
        if let Some(m) = self.model_defaults.get(&model_key(model)) {
            d.merge_from(m);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_with_types() {
        let d: ModelDefaults = "num_ctx=32768, keep_alive=30m,temperature=0.5,x=true"
            .parse()
            .unwrap();
        assert_eq!(d.options["num_ctx"], Value::from(32768));
        assert_eq!(d.options["temperature"], Value::from(0.5));
        assert_eq!(d.options["x"], Value::Bool(true));
        assert_eq!(d.keep_alive, Some(Value::from("30m")));
        assert!("num_ctx".parse::<ModelDefaults>().is_err());
    }

    #[test]
    fn model_keys_ignore_latest_and_case() {
        assert_eq!(model_key("Qwen3:latest"), model_key("qwen3"));
        assert_eq!(model_key("glm-5:cloud"), "glm-5:cloud");
    }

    #[test]
    fn per_model_defaults_overlay_global() {
        let mut c = Config {
            defaults: "num_ctx=8192,keep_alive=30m".parse().unwrap(),
            ..Config::default()
        };
        c.model_defaults
            .insert(model_key("qwen3"), "num_ctx=65536".parse().unwrap());
        let d = c.defaults_for("qwen3:latest");
        assert_eq!(d.get_num_ctx(), Some(65536));
        assert_eq!(d.keep_alive, Some(Value::from("30m")));
        assert_eq!(c.defaults_for("llama3.2").get_num_ctx(), Some(8192));
    }
}
