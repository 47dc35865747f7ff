//! What a request asks of the pool: which kind of request it is, the model
//! it names and the conversation it continues.

use super::state::{canonical, Want};
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

/// How the pool treats a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `GET /api/tags`: answered with every healthy host's models.
    Tags,
    /// `GET /api/ps`: answered with every healthy host's running models.
    Running,
    /// `POST /api/chat`, `/api/generate`: a generation, maybe part of a
    /// conversation. The body is read to find the model.
    Generate,
    /// `POST /api/embed`, `/api/embeddings`, `/api/show`: needs a host with
    /// the model. The body is read to find it.
    Model,
    /// `POST /api/experimental/web_search` (the layer's web searches): any
    /// healthy host; one that cannot search (an older Ollama, not signed in
    /// to ollama.com, cloud features off) sends it to the next.
    Search,
    /// Anything else: any healthy host, the body passed on as it comes.
    Any,
}

impl Kind {
    pub(crate) fn of(method: &Method, path: &str) -> Kind {
        let read = method == Method::GET || method == Method::HEAD;
        match path {
            "/api/tags" if read => Kind::Tags,
            "/api/ps" if read => Kind::Running,
            "/api/chat" | "/api/generate" if method == Method::POST => Kind::Generate,
            "/api/embed" | "/api/embeddings" | "/api/show" if method == Method::POST => Kind::Model,
            "/api/experimental/web_search" if method == Method::POST => Kind::Search,
            _ => Kind::Any,
        }
    }

    /// Whether the body has to be read before a host is chosen.
    pub(crate) fn reads_body(self) -> bool {
        matches!(self, Kind::Generate | Kind::Model)
    }

    /// Whether the pool judges a host's health by its answers to this kind
    /// of request: those that name a model. Not searches (whose failures
    /// are ollama.com's), nor the rest (whose failures may be the
    /// request's, as a pull of a model that does not exist).
    pub(crate) fn judged(self) -> bool {
        matches!(self, Kind::Generate | Kind::Model)
    }
}

/// Headers that name a conversation: Claude Code's, Codex's, and a
/// generic one, in that order.
pub(crate) const SESSION_HEADERS: [&str; 3] =
    ["x-claude-code-session-id", "session_id", "x-session-id"];

/// The fields of a native request that route it. Strings stay raw: only
/// their hash is needed.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    /// `/api/show`'s deprecated spelling of `model`.
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// How much of a `/api/generate` prompt names its conversation.
const PROMPT_PREFIX: usize = 1024;

/// What `body` (a native request of `kind`) and `headers` ask for. A body
/// that is not JSON, or names no model, wants any host: Ollama answers it.
pub(crate) fn want(kind: Kind, headers: &HeaderMap, body: &[u8]) -> Want {
    let Ok(peek) = serde_json::from_slice::<Peek<'_>>(body) else {
        return Want::default();
    };
    let Some(model) = peek
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(peek.name.as_deref())
        .filter(|m| !m.is_empty())
    else {
        return Want::default();
    };
    let model = canonical(model);
    let session = match kind {
        Kind::Generate => session(&model, headers, &peek),
        _ => None,
    };
    Want {
        model: Some(model),
        session,
    }
}

/// The conversation's key: the model and a session header, or else the
/// model, the first system message and the first user message (for
/// `/api/generate`, the system prompt and the prompt's beginning).
fn session(model: &str, headers: &HeaderMap, peek: &Peek<'_>) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut h);
    if let Some(id) = SESSION_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .filter(|v| !v.is_empty())
    {
        "header".hash(&mut h);
        id.as_bytes().hash(&mut h);
        return Some(h.finish());
    }
    if let Some(messages) = &peek.messages {
        let first = |role: &str| {
            messages
                .iter()
                .find(|m| m.role.as_deref() == Some(role))
                .and_then(|m| m.content)
                .map(RawValue::get)
        };
        let user = first("user")?;
        "chat".hash(&mut h);
        first("system").unwrap_or("").hash(&mut h);
        user.hash(&mut h);
        return Some(h.finish());
    }
    let prompt = peek.prompt.map(RawValue::get)?;
    let mut end = prompt.len().min(PROMPT_PREFIX);
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    "generate".hash(&mut h);
    peek.system.map_or("", RawValue::get).hash(&mut h);
    prompt[..end].hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Want {
        want(Kind::Generate, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn kinds_follow_method_and_path() {
        assert_eq!(Kind::of(&Method::GET, "/api/tags"), Kind::Tags);
        assert_eq!(Kind::of(&Method::POST, "/api/tags"), Kind::Any);
        assert_eq!(Kind::of(&Method::GET, "/api/ps"), Kind::Running);
        assert_eq!(Kind::of(&Method::POST, "/api/chat"), Kind::Generate);
        assert_eq!(Kind::of(&Method::POST, "/api/show"), Kind::Model);
        assert_eq!(Kind::of(&Method::POST, "/api/pull"), Kind::Any);
        assert_eq!(
            Kind::of(&Method::POST, "/api/experimental/web_search"),
            Kind::Search
        );
        assert!(!Kind::Any.reads_body());
    }

    #[test]
    fn later_turns_of_a_conversation_share_its_key() {
        let first = chat(
            r#"{"model":"Qwen3","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}"#,
        );
        let later = chat(
            r#"{"model":"qwen3:latest","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"More"}]}"#,
        );
        let other = chat(
            r#"{"model":"qwen3","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Bye"}]}"#,
        );
        assert_eq!(first.model.as_deref(), Some("qwen3:latest"));
        assert!(first.session.is_some());
        assert_eq!(first.session, later.session);
        assert_ne!(first.session, other.session);
    }

    #[test]
    fn a_session_header_names_the_conversation() {
        let mut headers = HeaderMap::new();
        headers.insert("x-claude-code-session-id", "abc".parse().unwrap());
        let body = |user: &str| {
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{user}"}}]}}"#)
        };
        let a = want(Kind::Generate, &headers, body("one").as_bytes());
        let b = want(Kind::Generate, &headers, body("two").as_bytes());
        assert_eq!(a.session, b.session);
        headers.insert("x-claude-code-session-id", "xyz".parse().unwrap());
        let c = want(Kind::Generate, &headers, body("one").as_bytes());
        assert_ne!(a.session, c.session);
    }

    #[test]
    fn only_generations_have_sessions_and_garbage_wants_any_host() {
        let show = want(Kind::Model, &HeaderMap::new(), br#"{"name":"llava"}"#);
        assert_eq!(show.model.as_deref(), Some("llava:latest"));
        assert_eq!(show.session, None);
        assert_eq!(chat("not json").model, None);
        assert_eq!(chat(r#"{"model":""}"#).model, None);
        let generate = |prompt: &str| {
            want(
                Kind::Generate,
                &HeaderMap::new(),
                format!(r#"{{"model":"m","prompt":"{prompt}"}}"#).as_bytes(),
            )
        };
        let long = "é".repeat(800);
        assert_eq!(
            generate(&format!("{long}a")).session,
            generate(&format!("{long}b")).session
        );
        assert_ne!(generate("a").session, generate("b").session);
    }
}
