//! What routes a native request to one of several Ollama hosts: the model
//! it names and the conversation it continues. The layer knows both once
//! it has built the request and hands them on in a [`Routing`] extension;
//! a pool that gets a request without one reads them from its body.

use super::model::model_key;
use std::hash::{Hash, Hasher};

/// The model a native request names and the conversation it continues, as
/// the layer knew them when it built the request: an extension of every
/// generating request ([`/api/chat`, `/api/generate`]) it sends to the
/// wrapped service (and of the web searches and follow-ups it makes for
/// one), so a pool in front of several Ollama hosts (the crate's own, with
/// the `pool` feature, or one of the embedder's) can route it without
/// reading and parsing its body again. Requests the layer passes through
/// untouched (a native client's) carry none.
///
/// [`/api/chat`, `/api/generate`]: https://github.com/ollama/ollama/blob/main/docs/api.md
///
/// ```
/// use http::Request;
/// use ollama_translate::Routing;
///
/// // What a pool of one's own reads from a request the layer sent.
/// fn host_for<B>(req: &Request<B>, hosts: usize) -> usize {
///     match req.extensions().get::<Routing>().and_then(|r| r.conversation) {
///         Some(key) => (key % hosts as u64) as usize,
///         None => 0,
///     }
/// }
///
/// let mut req = Request::post("/api/chat").body(()).unwrap();
/// req.extensions_mut().insert(Routing::new("qwen3:8b", Some(7)));
/// assert_eq!(host_for(&req, 4), 3);
/// assert_eq!(req.extensions().get::<Routing>().unwrap().model, "qwen3:8b");
/// ```
///
/// See the [crate docs](crate) for more details.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Routing {
    /// The Ollama model the request names, as sent (after the layer's
    /// aliases).
    pub model: String,
    /// A key the turns of one conversation share, and other conversations
    /// do not (a hash: equal keys mean the same conversation, almost
    /// surely). It is the model and the client's session header (see
    /// [`session_headers`](crate::OllamaTranslateLayer::session_headers)),
    /// or a kept Responses conversation's first id, or else the model, the
    /// first system message and the first user message (for
    /// `/api/generate`, the prompt's beginning). `None` for a request that
    /// names no conversation (no user message).
    pub conversation: Option<u64>,
}

impl Routing {
    /// The routing of a request for `model`, in `conversation`.
    pub fn new(model: impl Into<String>, conversation: Option<u64>) -> Self {
        Routing {
            model: model.into(),
            conversation,
        }
    }
}

/// What the layer keeps of a generation to route it: its model and what
/// keys its conversation when no session header does, hashed only then
/// (a long system prompt takes microseconds to hash).
#[derive(Debug)]
pub(crate) struct Seed {
    model: String,
    start: Start,
}

/// What a conversation starts with.
#[derive(Debug)]
enum Start {
    /// A chat's first system message (or none) and first user message.
    Chat { system: String, user: String },
    /// A generation's prompt, its first [`PROMPT_PREFIX`] bytes.
    Prompt(String),
    /// Nothing that names a conversation (no user message).
    Nothing,
}

impl Seed {
    /// A chat for `model`, with its first system and user messages.
    pub(crate) fn chat(model: &str, system: Option<&str>, user: Option<&str>) -> Seed {
        let start = match user {
            Some(user) => Start::Chat {
                system: system.unwrap_or_default().to_string(),
                user: user.to_string(),
            },
            None => Start::Nothing,
        };
        Seed {
            model: model.to_string(),
            start,
        }
    }

    /// A generation for `model` from `prompt`.
    pub(crate) fn prompt(model: &str, prompt: &str) -> Seed {
        let mut end = prompt.len().min(PROMPT_PREFIX);
        while !prompt.is_char_boundary(end) {
            end -= 1;
        }
        Seed {
            model: model.to_string(),
            start: Start::Prompt(prompt.get(..end).unwrap_or_default().to_string()),
        }
    }

    /// The routing: the conversation keyed by `session` (a session
    /// header's value) when there is one, else by how it starts.
    pub(crate) fn routing(self, session: Option<&[u8]>) -> Routing {
        let key = model_key(&self.model);
        let conversation = match (session, &self.start) {
            (Some(value), _) => Some(by_session(&key, value)),
            (None, Start::Chat { system, user }) => Some(by_messages(&key, system, user)),
            (None, Start::Prompt(prompt)) => Some(by_prompt(&key, "", prompt)),
            (None, Start::Nothing) => None,
        };
        Routing::new(self.model, conversation)
    }
}

/// Client headers that name a conversation, by default: Claude Code's,
/// Codex's, and a generic one, in that order.
pub(crate) const SESSION_HEADERS: [&str; 3] =
    ["x-claude-code-session-id", "session_id", "x-session-id"];

/// How much of a `/api/generate` prompt names its conversation.
pub(crate) const PROMPT_PREFIX: usize = 1024;

/// The conversation `value` (a session header) names, for `model` (its
/// [`model_key`]).
pub(crate) fn by_session(model: &str, value: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut h);
    "header".hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// The conversation of a chat for `model` (its [`model_key`]) whose first
/// system message is `system` and first user message `user`.
pub(crate) fn by_messages(model: &str, system: &str, user: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut h);
    "chat".hash(&mut h);
    system.hash(&mut h);
    user.hash(&mut h);
    h.finish()
}

/// The conversation of a generation for `model` (its [`model_key`]) with
/// `system` and `prompt`: its first [`PROMPT_PREFIX`] bytes.
pub(crate) fn by_prompt(model: &str, system: &str, prompt: &str) -> u64 {
    let mut end = prompt.len().min(PROMPT_PREFIX);
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut h);
    "generate".hash(&mut h);
    system.hash(&mut h);
    prompt.get(..end).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_beats_the_messages_and_names_the_model_too() {
        let r = Seed::chat("Qwen3", None, Some("hi")).routing(Some(b"abc"));
        assert_eq!(r.conversation, Some(by_session("qwen3:latest", b"abc")));
        let other = Seed::chat("qwen3:latest", None, Some("bye")).routing(Some(b"abc"));
        assert_eq!(r.conversation, other.conversation);
        let llama = Seed::chat("llama3", None, Some("hi")).routing(Some(b"abc"));
        assert_ne!(r.conversation, llama.conversation);
    }

    #[test]
    fn seeds_hash_only_without_a_session() {
        let chat = || Seed::chat("Qwen3", Some("Be brief."), Some("Hi"));
        let routing = chat().routing(None);
        assert_eq!(routing.model, "Qwen3");
        assert_eq!(
            routing.conversation,
            Some(by_messages("qwen3:latest", "Be brief.", "Hi"))
        );
        assert_eq!(
            chat().routing(Some(b"abc")).conversation,
            Some(by_session("qwen3:latest", b"abc"))
        );
        assert_eq!(
            Seed::chat("m", Some("s"), None).routing(None).conversation,
            None
        );
        let long = "é".repeat(800);
        assert_eq!(
            Seed::prompt("m", &format!("{long}a")).routing(None),
            Seed::prompt("m", &format!("{long}b")).routing(None)
        );
    }

    #[test]
    fn prompts_are_keyed_by_their_beginning() {
        let long = "é".repeat(800);
        assert_eq!(
            by_prompt("m", "", &format!("{long}a")),
            by_prompt("m", "", &format!("{long}b"))
        );
        assert_ne!(by_prompt("m", "", "a"), by_prompt("m", "", "b"));
        assert_ne!(by_prompt("m", "", "a"), by_messages("m", "", "a"));
    }
}
