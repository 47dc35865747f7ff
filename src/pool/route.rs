//! What a request asks of the pool: the model it names and the
//! conversation it continues. The layer says so in the request's
//! [`Routing`] extension; a request without one (a native client's) has
//! its body read for them.

use super::state::Want;
use crate::ollama::model::model_key;
use crate::ollama::request::Endpoint;
use crate::ollama::routing::{self, Routing, SESSION_HEADERS};
use http::{Extensions, HeaderMap};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Whether the pool judges a host's health by its answers to requests for
/// `endpoint`: those that name a model. Not searches (whose failures are
/// ollama.com's), nor the rest (whose failures may be the request's, as a
/// pull of a model that does not exist).
pub(crate) fn judged(endpoint: Option<Endpoint>) -> bool {
    endpoint.is_some_and(Endpoint::names_model)
}

/// What the layer's [`Routing`] in `extensions` says a request for
/// `endpoint` wants; `None` without one.
pub(crate) fn routed(endpoint: Endpoint, extensions: &Extensions) -> Option<Want> {
    let routing = extensions.get::<Routing>()?;
    let model = model_key(&routing.model);
    if model.is_empty() {
        return Some(Want::default());
    }
    Some(Want {
        model: Some(model),
        session: routing.conversation.filter(|_| endpoint.generates()),
    })
}

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

/// What `body` (a native request for `endpoint`) and `headers` ask for,
/// read from the body. A body that is not JSON, or names no model, wants
/// any host: Ollama answers it.
///
/// Its conversation's key is the model and a session header (one of the
/// layer's defaults), or else the model, the first system message and the
/// first user message (for `/api/generate`, the system prompt and the
/// prompt's beginning), hashed as written in JSON: not the key the layer
/// gives the same conversation, which it never needs to be.
pub(crate) fn want(endpoint: Endpoint, headers: &HeaderMap, body: &[u8]) -> Want {
    let Ok(peek) = serde_json::from_slice::<Peek<'_>>(body) else {
        return Want::default();
    };
    let Some(model) = peek
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(peek.name.as_deref())
        .map(model_key)
        .filter(|m| !m.is_empty())
    else {
        return Want::default();
    };
    let session = if endpoint.generates() {
        session(&model, headers, &peek)
    } else {
        None
    };
    Want {
        model: Some(model),
        session,
    }
}

/// The conversation's key (see [`want`]).
fn session(model: &str, headers: &HeaderMap, peek: &Peek<'_>) -> Option<u64> {
    if let Some(id) = SESSION_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .filter(|v| !v.is_empty())
    {
        return Some(routing::by_session(model, id.as_bytes()));
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
        return Some(routing::by_messages(
            model,
            first("system").unwrap_or(""),
            user,
        ));
    }
    let prompt = peek.prompt.map(RawValue::get)?;
    let system = peek.system.map_or("", RawValue::get);
    Some(routing::by_prompt(model, system, prompt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Want {
        want(Endpoint::Chat, &HeaderMap::new(), body.as_bytes())
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
        let a = want(Endpoint::Chat, &headers, body("one").as_bytes());
        let b = want(Endpoint::Chat, &headers, body("two").as_bytes());
        assert_eq!(a.session, b.session);
        headers.insert("x-claude-code-session-id", "xyz".parse().unwrap());
        let c = want(Endpoint::Chat, &headers, body("one").as_bytes());
        assert_ne!(a.session, c.session);
        // The layer keys a session header's conversation the same way.
        let routing = routing::Seed::chat("M:latest", None, None).routing(Some(b"xyz"));
        assert_eq!(routing.conversation, c.session);
    }

    #[test]
    fn only_generations_have_sessions_and_garbage_wants_any_host() {
        let show = want(Endpoint::Show, &HeaderMap::new(), br#"{"name":"llava"}"#);
        assert_eq!(show.model.as_deref(), Some("llava:latest"));
        assert_eq!(show.session, None);
        let library = chat(r#"{"model":"library/llava"}"#);
        assert_eq!(library.model, show.model);
        assert_eq!(chat("not json").model, None);
        assert_eq!(chat(r#"{"model":""}"#).model, None);
        let generate = |prompt: &str| {
            want(
                Endpoint::Generate,
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

    #[test]
    fn the_layer_s_routing_is_taken_as_it_is() {
        let mut ext = Extensions::new();
        assert!(routed(Endpoint::Chat, &ext).is_none());
        ext.insert(Routing::new("Qwen3", Some(42)));
        let chat = routed(Endpoint::Chat, &ext).unwrap();
        assert_eq!(chat.model.as_deref(), Some("qwen3:latest"));
        assert_eq!(chat.session, Some(42));
        let embed = routed(Endpoint::Embed, &ext).unwrap();
        assert_eq!(embed.session, None);
        ext.insert(Routing::new("", Some(42)));
        assert_eq!(routed(Endpoint::Chat, &ext).unwrap().model, None);
    }
}
