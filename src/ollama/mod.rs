//! What Ollama streams, decoded once for every dialect.
//!
//! Each NDJSON line of `/api/chat` (or `/api/generate`) becomes zero or more
//! [`Event`]s in a fixed order: thinking, text, tool calls, then `Done` when
//! the line is the final one. An `{"error":…}` line, a line that is not
//! JSON, a stream that ends without its final line, or a dropped connection
//! all become [`Event::Error`]. Dialect encoders only ever see events.

use crate::error::{ApiError, BoxError, Failure, StreamError};
use crate::search::{SearchErrorCode, SearchHit};
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

mod error;
mod fast;
pub(crate) mod model;
pub(crate) mod request;
pub(crate) mod routing;
pub(crate) mod tags;

pub(crate) use self::error::{ErrorKind, UpstreamError};

/// One thing Ollama said.
#[derive(Debug, PartialEq)]
pub(crate) enum Event<'a> {
    /// A line arrived that carries nothing to forward (a dropped thinking
    /// delta, an empty content string). Lets encoders start early or keep an
    /// idle client alive.
    Heartbeat,
    /// A piece of the model's reasoning.
    Thinking(&'a str),
    /// A piece of the answer.
    Text(&'a str),
    /// One whole tool call.
    ToolCall(ToolCall<'a>),
    /// The final line.
    Done(Done<'a>),
    /// The stream failed; nothing follows.
    Error(&'a str),
}

/// A complete tool call as Ollama reports it.
#[derive(Debug, PartialEq)]
pub(crate) struct ToolCall<'a> {
    /// Ollama's id (`call_xxxxxxxx`), when it sent one.
    pub(crate) id: Option<&'a str>,
    pub(crate) name: &'a str,
    /// The arguments as the JSON text of one object, always; see
    /// [`tool_arguments`] for how other shapes Ollama sends are normalized.
    pub(crate) arguments: &'a str,
}

/// The final line's reason and counts.
#[derive(Debug, PartialEq, Clone, Copy)]
pub(crate) struct Done<'a> {
    /// Why the answer ended, or `None` when Ollama gave no reason.
    pub(crate) reason: Option<Reason<'a>>,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

/// Why Ollama's answer ended: its `done_reason`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Reason<'a> {
    /// The model finished (`stop`).
    Stop,
    /// The token limit cut the answer (`length`).
    Length,
    /// The request only loaded the model (`load`).
    Load,
    /// The request unloaded the model (`unload`).
    Unload,
    /// A reason this crate does not know, as Ollama wrote it.
    Other(&'a str),
}

impl<'a> Reason<'a> {
    /// The reason `done_reason` names.
    pub(crate) fn parse(reason: &'a str) -> Self {
        match reason {
            "stop" => Reason::Stop,
            "length" => Reason::Length,
            "load" => Reason::Load,
            "unload" => Reason::Unload,
            other => Reason::Other(other),
        }
    }

    /// As Ollama writes it.
    pub(crate) fn as_str(self) -> &'a str {
        match self {
            Reason::Stop => "stop",
            Reason::Length => "length",
            Reason::Load => "load",
            Reason::Unload => "unload",
            Reason::Other(other) => other,
        }
    }
}

/// Turns events into a client dialect.
pub(crate) trait Encoder: Send + Sync {
    /// Writes whatever `event` means in this dialect to `out`.
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut);
    /// Nothing has arrived from upstream for a while; write a keep-alive if
    /// the dialect has one. Default: nothing.
    fn idle(&mut self, _out: &mut BytesMut) {}
    /// The layer runs a server tool the model called (a web search). Only
    /// dialects that offer server tools get it. Default: nothing.
    fn server_call(&mut self, _call: &ServerCall<'_>, _out: &mut BytesMut) {}
    /// What that server tool gave. Default: nothing.
    fn server_result(&mut self, _result: &ServerResult<'_>, _out: &mut BytesMut) {}
}

/// A server tool call the layer runs for the model (see [`crate::search`]).
#[derive(Debug)]
pub(crate) struct ServerCall<'a> {
    /// Random, unique in the answer; dialects prefix it (`srvtoolu_`, `ws_`).
    pub(crate) id: &'a str,
    /// The query, or what the model sent when it is not one.
    pub(crate) query: &'a str,
}

/// What a server tool call gave.
#[derive(Debug)]
pub(crate) struct ServerResult<'a> {
    /// The [`ServerCall::id`].
    pub(crate) id: &'a str,
    pub(crate) query: &'a str,
    /// The hits the model was given, or why there are none.
    pub(crate) outcome: Result<&'a [SearchHit], SearchErrorCode>,
}

/// A round of the model that called server tools, taken from the decoder
/// when its stream ended: what the follow-up request needs.
#[derive(Debug, Default)]
pub(crate) struct RoundEnd {
    /// The round's text and thinking (for the assistant message).
    pub(crate) text: String,
    pub(crate) thinking: String,
    /// The server tool calls, in order: name and arguments (an object's JSON).
    pub(crate) calls: Vec<(String, String)>,
    /// The model also called client tools: the turn ends after the search.
    pub(crate) client_calls: bool,
}

/// What a [`Decoder`] keeps when the layer runs server tools: the names of
/// the functions it runs, the round being taken down, and the usage of the
/// rounds so far.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    names: Vec<&'static str>,
    round: RoundEnd,
    /// The most bytes of text and thinking kept per round.
    cap: usize,
    /// The round ended with server calls: its reason, until the turn ends.
    held: Option<Option<String>>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Rounds {
    /// Rounds whose calls to `names` the layer runs; at most `cap` bytes
    /// of a round's text are kept for the follow-up.
    pub(crate) fn new(names: Vec<&'static str>, cap: usize) -> Self {
        Rounds {
            names,
            cap,
            ..Rounds::default()
        }
    }

    fn capture(&mut self, thinking: Option<&str>, content: Option<&str>) {
        let room = |s: &String, add: &str| s.len() + add.len() <= self.cap;
        if let Some(t) = thinking.filter(|t| room(&self.round.thinking, t)) {
            self.round.thinking.push_str(t);
        }
        if let Some(c) = content.filter(|c| room(&self.round.text, c)) {
            self.round.text.push_str(c);
        }
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    message: Option<LineMessage<'a>>,
    /// `/api/generate` puts the text here.
    #[serde(borrow, default)]
    response: Option<Cow<'a, str>>,
    /// `/api/generate` puts thinking at the top level.
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default)]
    done: bool,
    #[serde(borrow, default)]
    done_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct LineMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<WireToolCall<'a>>>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: WireFunction<'a>,
}

#[derive(Deserialize)]
struct WireFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// Drives an [`Encoder`] from Ollama's NDJSON lines.
pub(crate) struct Decoder<E> {
    encoder: E,
    forward_thinking: bool,
    /// What the request asked for, to detect a prompt that filled the window.
    num_ctx: Option<u64>,
    model: String,
    finished: bool,
    /// Why the stream failed, for answers that are buffered whole.
    failure: Option<ApiError>,
    /// The final line's counts and reason, once it came.
    usage: Option<(u64, u64, Option<String>)>,
    /// Decoded text of escaped token strings (the fast path), reused.
    content_buf: String,
    thinking_buf: String,
    /// Tool-call arguments that had to be rewritten into an object, reused.
    arguments_buf: String,
    /// Server tools the layer runs, when the request offers any.
    rounds: Option<Box<Rounds>>,
}

impl<E: Encoder> Decoder<E> {
    pub(crate) fn new(encoder: E, forward_thinking: bool) -> Self {
        Decoder {
            encoder,
            forward_thinking,
            num_ctx: None,
            model: String::new(),
            finished: false,
            failure: None,
            usage: None,
            content_buf: String::new(),
            thinking_buf: String::new(),
            arguments_buf: String::new(),
            rounds: None,
        }
    }

    /// Calls to these server tools are not the client's: they end the
    /// round, and the layer runs them (see [`Decoder::take_round`]).
    pub(crate) fn server_tools(mut self, rounds: Rounds) -> Self {
        self.rounds = Some(Box::new(rounds));
        self
    }

    /// Warn when `prompt_eval_count` shows the prompt filled `num_ctx`.
    pub(crate) fn watch_context(mut self, model: &str, num_ctx: Option<u64>) -> Self {
        self.model = model.to_string();
        self.num_ctx = num_ctx;
        self
    }

    #[cfg(test)]
    pub(crate) fn encoder(&self) -> &E {
        &self.encoder
    }

    fn fail(&mut self, failure: Failure, message: &str, out: &mut BytesMut) {
        if !self.finished {
            self.finished = true;
            self.failure = Some(ApiError::new(failure.status(), message).with_code(failure.code()));
            self.encoder.event(Event::Error(message), out);
        }
    }

    fn decode(&mut self, line: &[u8], out: &mut BytesMut) {
        // Checking UTF-8 once per line is cheaper than serde_json checking
        // every string it borrows; a line that is not UTF-8 takes the byte
        // path, which reports it exactly as before.
        let parsed: Result<Line<'_>, _> = match std::str::from_utf8(line) {
            Ok(text) => {
                if let Some((content, thinking)) =
                    fast::token_line(text, &mut self.content_buf, &mut self.thinking_buf)
                {
                    if let Some(r) = self.rounds.as_mut() {
                        r.capture(thinking, Some(content));
                    }
                    // The same events, in the same order, as below.
                    if !emit_deltas(
                        &mut self.encoder,
                        self.forward_thinking,
                        thinking,
                        Some(content),
                        out,
                    ) {
                        self.encoder.event(Event::Heartbeat, out);
                    }
                    return;
                }
                serde_json::from_str(text)
            }
            Err(_) => serde_json::from_slice(line),
        };
        match parsed {
            Ok(parsed) => self.chunk(parsed, out),
            Err(e) => {
                tracing::warn!(error = %e, bytes = line.len(), "Ollama sent a line that is not a chat chunk");
                let message = format!("Ollama sent an invalid stream line: {e}");
                self.fail(Failure::UpstreamGarbage, &message, out);
            }
        }
    }

    /// One parsed line: an error, or deltas, tool calls and the end.
    fn chunk(&mut self, parsed: Line<'_>, out: &mut BytesMut) {
        if let Some(err) = parsed.error {
            let message: Cow<'_, str> = match serde_json::from_str::<Cow<'_, str>>(err.get()) {
                Ok(s) => s,
                Err(_) => Cow::Borrowed(err.get()),
            };
            tracing::warn!(error = %message, "Ollama reported an error mid-stream");
            self.fail(Failure::OllamaError, &message, out);
            return;
        }
        let (content, thinking, calls) = match parsed.message {
            Some(m) => (m.content, m.thinking, m.tool_calls),
            None => (parsed.response, parsed.thinking, None),
        };
        if let Some(r) = self.rounds.as_mut() {
            r.capture(thinking.as_deref(), content.as_deref());
        }
        let mut emitted = emit_deltas(
            &mut self.encoder,
            self.forward_thinking,
            thinking.as_deref(),
            content.as_deref(),
            out,
        );
        for call in calls.iter().flatten() {
            let arguments = tool_arguments(call.function.arguments, &mut self.arguments_buf);
            emitted = true;
            if let Some(r) = self.rounds.as_mut() {
                if r.names.contains(&&*call.function.name) {
                    r.round
                        .calls
                        .push((call.function.name.to_string(), arguments.to_string()));
                    continue;
                }
                r.round.client_calls = true;
            }
            let call = ToolCall {
                id: call.id.as_deref().filter(|id| !id.is_empty()),
                name: &call.function.name,
                arguments,
            };
            self.encoder.event(Event::ToolCall(call), out);
        }
        if parsed.done {
            let mut done = Done {
                reason: parsed
                    .done_reason
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map(Reason::parse),
                prompt_tokens: parsed.prompt_eval_count.unwrap_or(0),
                completion_tokens: parsed.eval_count.unwrap_or(0),
            };
            self.check_context(&done);
            self.finished = true;
            if let Some(r) = self.rounds.as_mut() {
                // Every round's tokens count; the answer reports their sum.
                r.prompt_tokens += done.prompt_tokens;
                r.completion_tokens += done.completion_tokens;
                done.prompt_tokens = r.prompt_tokens;
                done.completion_tokens = r.completion_tokens;
                if !r.round.calls.is_empty() {
                    r.held = Some(done.reason.map(|r| r.as_str().to_string()));
                    self.usage = Some((done.prompt_tokens, done.completion_tokens, None));
                    return;
                }
            }
            self.usage = Some((
                done.prompt_tokens,
                done.completion_tokens,
                done.reason.map(|r| r.as_str().to_string()),
            ));
            self.encoder.event(Event::Done(done), out);
        } else if !emitted {
            self.encoder.event(Event::Heartbeat, out);
        }
    }

    /// Warns when the prompt filled the context window.
    fn check_context(&self, done: &Done<'_>) {
        let Some(num_ctx) = self.num_ctx else {
            return;
        };
        if done.prompt_tokens >= num_ctx {
            tracing::warn!(
                model = ?self.model,
                prompt_eval_count = done.prompt_tokens,
                num_ctx,
                "the prompt filled the context window; Ollama silently dropped the oldest messages (raise num_ctx)"
            );
        }
    }
}

/// A tool call's arguments as the JSON text of one object, which every
/// dialect needs (OpenAI's `arguments` string must encode an object,
/// Anthropic's `input` must be one).
///
/// * An object (what Ollama normally sends) is used as it is, uncopied.
/// * Absent, `null`, or a string that is empty or only whitespace: `{}`.
/// * A JSON string whose content is an object (some models and Ollama
///   versions send `"{\"city\":\"Tokyo\"}"`): that object, decoded once, so
///   OpenAI clients do not get it double-encoded.
/// * Anything else (a number, an array, a string that is not an object's
///   JSON, such as `"Tokyo"` or `"[1]"`): wrapped as `{"value":<as sent>}`.
///   Clients get the object they parse, and the model's words are kept where
///   the tool (and the next turn's history) can see them, instead of the call
///   silently running with no arguments as `{}` would make it.
///
/// Rewritten text goes to `buf`, which is reused.
fn tool_arguments<'b>(raw: Option<&'b RawValue>, buf: &'b mut String) -> &'b str {
    let Some(raw) = raw else {
        return "{}";
    };
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => return text,
        Some(b'n') => return "{}", // null: the only value starting with n
        _ => {}
    }
    if text.starts_with('"') {
        if let Ok(content) = serde_json::from_str::<Cow<'_, str>>(text) {
            let content = content.trim();
            if content.is_empty() {
                return "{}";
            }
            if content.starts_with('{') && serde_json::from_str::<&RawValue>(content).is_ok() {
                buf.clear();
                buf.push_str(content);
                return buf;
            }
        }
    }
    // The arguments are the model's words: their size is logged, not them.
    tracing::debug!(
        bytes = text.len(),
        "tool call arguments are not an object; wrapped as {{\"value\":…}}"
    );
    buf.clear();
    buf.push_str("{\"value\":");
    buf.push_str(text);
    buf.push('}');
    buf
}

/// Thinking (when forwarded), then text; whether anything was emitted.
#[inline]
fn emit_deltas<E: Encoder>(
    encoder: &mut E,
    forward_thinking: bool,
    thinking: Option<&str>,
    content: Option<&str>,
    out: &mut BytesMut,
) -> bool {
    let mut emitted = false;
    if let Some(t) = thinking.filter(|t| !t.is_empty() && forward_thinking) {
        encoder.event(Event::Thinking(t), out);
        emitted = true;
    }
    if let Some(c) = content.filter(|c| !c.is_empty()) {
        encoder.event(Event::Text(c), out);
        emitted = true;
    }
    emitted
}

/// The body's side of a decoder: what the dialects' `Transcode` calls.
impl<E: Encoder> Decoder<E> {
    /// One complete NDJSON line.
    pub(crate) fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        if self.finished || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.decode(line, out);
    }

    /// The stream ended: an error unless the final line came.
    pub(crate) fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        if self.finished {
            return Ok(());
        }
        let msg = "Ollama closed the stream before it finished";
        self.fail(Failure::UpstreamLost, msg, out);
        Err(Box::new(StreamError(msg.into())))
    }

    /// The connection failed or went silent.
    pub(crate) fn abort(&mut self, failure: Failure, error: &str, out: &mut BytesMut) {
        let message = match failure {
            Failure::UpstreamLost | Failure::UpstreamTimeout => {
                format!("connection to Ollama lost: {error}")
            }
            Failure::UpstreamGarbage | Failure::OllamaError => error.to_string(),
        };
        self.fail(failure, &message, out);
    }

    /// Why the stream failed, if it did.
    pub(crate) fn failure(&self) -> Option<ApiError> {
        self.failure.clone()
    }

    /// The prompt and completion tokens and the reason of the final line:
    /// `(input, output, finish reason)`.
    pub(crate) fn usage(&self) -> Option<(u64, u64, Option<&str>)> {
        self.usage.as_ref().map(|(i, o, r)| (*i, *o, r.as_deref()))
    }

    /// A keep-alive is due: the encoder's, while the answer is going
    /// (also while the layer runs a round's server tools).
    pub(crate) fn idle(&mut self, out: &mut BytesMut) {
        let between_rounds = self.rounds.as_ref().is_some_and(|r| r.held.is_some());
        if (!self.finished || between_rounds) && self.failure.is_none() {
            self.encoder.idle(out);
        }
    }

    /// The round that just ended called server tools: what the layer must
    /// run and continue from. `None` when the answer is complete.
    pub(crate) fn take_round(&mut self) -> Option<RoundEnd> {
        let r = self.rounds.as_mut()?;
        if r.held.is_none() || r.round.calls.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut r.round))
    }

    /// The layer ran a server tool call: the client hears of it.
    pub(crate) fn server_call(&mut self, call: &ServerCall<'_>, out: &mut BytesMut) {
        self.encoder.server_call(call, out);
    }

    /// What the server tool gave.
    pub(crate) fn server_result(&mut self, result: &ServerResult<'_>, out: &mut BytesMut) {
        self.encoder.server_result(result, out);
    }

    /// The turn ends after a round with server calls (the model also called
    /// a client tool, or the rounds are spent): the held end, with every
    /// round's tokens.
    pub(crate) fn end_turn(&mut self, out: &mut BytesMut) {
        let Some(r) = self.rounds.as_mut() else {
            return;
        };
        let Some(reason) = r.held.take() else {
            return;
        };
        let done = Done {
            reason: reason.as_deref().map(Reason::parse),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        };
        self.usage = Some((done.prompt_tokens, done.completion_tokens, reason.clone()));
        self.encoder.event(Event::Done(done), out);
    }

    /// The follow-up's stream begins.
    pub(crate) fn next_round(&mut self) {
        if let Some(r) = self.rounds.as_mut() {
            r.held = None;
            r.round = RoundEnd::default();
        }
        self.finished = false;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records events as text, for assertions.
    #[derive(Default)]
    pub(crate) struct Recorder(pub(crate) Vec<String>);

    impl Encoder for Recorder {
        fn event(&mut self, event: Event<'_>, _out: &mut BytesMut) {
            self.0.push(match event {
                Event::Heartbeat => "beat".into(),
                Event::Thinking(t) => format!("think:{t}"),
                Event::Text(t) => format!("text:{t}"),
                Event::ToolCall(c) => format!("call:{:?}:{}:{}", c.id, c.name, c.arguments),
                Event::Done(d) => format!(
                    "done:{:?}:{}:{}",
                    d.reason.map(Reason::as_str),
                    d.prompt_tokens,
                    d.completion_tokens
                ),
                Event::Error(e) => format!("error:{e}"),
            });
        }
    }

    fn run(lines: &[&str], forward: bool) -> (Vec<String>, bool) {
        let mut d = Decoder::new(Recorder::default(), forward);
        let mut out = BytesMut::new();
        for l in lines {
            d.line(l.as_bytes(), &mut out);
        }
        let ok = d.finish(&mut out).is_ok();
        (d.encoder.0, ok)
    }

    #[test]
    fn decodes_thinking_text_tools_and_done() {
        let (ev, ok) = run(
            &[
                r#"{"model":"q","message":{"role":"assistant","content":"","thinking":"hm"},"done":false}"#,
                r#"{"model":"q","message":{"role":"assistant","content":"Hi \"you\""},"done":false}"#,
                r#"{"model":"q","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"f","arguments":{"a":1}}},{"function":{"index":1,"name":"g","arguments":{}}}]},"done":false}"#,
                r#"{"model":"q","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":7}"#,
            ],
            true,
        );
        assert!(ok);
        assert_eq!(
            ev,
            vec![
                "think:hm",
                "text:Hi \"you\"",
                r#"call:Some("call_1"):f:{"a":1}"#,
                "call:None:g:{}",
                r#"done:Some("stop"):5:7"#,
            ]
        );
    }

    #[test]
    fn drops_thinking_as_heartbeat() {
        let (ev, _) = run(
            &[r#"{"message":{"content":"","thinking":"secret"},"done":false}"#],
            false,
        );
        assert_eq!(ev[0], "beat");
        assert!(!ev.iter().any(|e| e.contains("secret")));
    }

    #[test]
    fn tool_calls_on_the_done_line_come_before_done() {
        let (ev, ok) = run(
            &[
                r#"{"message":{"content":"","tool_calls":[{"id":"call_x","function":{"index":0,"name":"w","arguments":{"city":"Tokyo"}}}]},"done":true,"done_reason":"stop"}"#,
            ],
            false,
        );
        assert!(ok);
        assert_eq!(
            ev,
            vec![
                r#"call:Some("call_x"):w:{"city":"Tokyo"}"#,
                "done:Some(\"stop\"):0:0"
            ]
        );
    }

    #[test]
    fn tool_call_arguments_are_always_one_object() {
        let line = |args: &str| {
            format!(
                r#"{{"message":{{"content":"","tool_calls":[{{"function":{{"name":"w","arguments":{args}}}}}]}},"done":false}}"#
            )
        };
        let cases = [
            // What Ollama normally sends, passed through as it is.
            (r#"{"city":"Tokyo"}"#, r#"{"city":"Tokyo"}"#),
            (r#"{ "city" : "Tokyo" }"#, r#"{ "city" : "Tokyo" }"#),
            // An object's JSON sent as a string: decoded once.
            (r#""{\"city\":\"Tokyo\"}""#, r#"{"city":"Tokyo"}"#),
            (
                r#"" {\"a\":[1,{\"b\":\"\\u00e9\"}]} ""#,
                r#"{"a":[1,{"b":"\u00e9"}]}"#,
            ),
            // Nothing to say.
            ("null", "{}"),
            (r#""""#, "{}"),
            (r#""  ""#, "{}"),
            // Not an object: kept, wrapped.
            (r#""Tokyo""#, r#"{"value":"Tokyo"}"#),
            (r#""[1,2]""#, r#"{"value":"[1,2]"}"#),
            (r#""{oops""#, r#"{"value":"{oops"}"#),
            ("[1,2]", r#"{"value":[1,2]}"#),
            ("42", r#"{"value":42}"#),
            ("true", r#"{"value":true}"#),
        ];
        for (sent, want) in cases {
            let (ev, _) = run(&[&line(sent)], false);
            assert_eq!(ev[0], format!("call:None:w:{want}"), "arguments {sent}");
            let got = &ev[0]["call:None:w:".len()..];
            assert!(
                serde_json::from_str::<serde_json::Value>(got).is_ok_and(|v| v.is_object()),
                "{got} is an object"
            );
        }
        // Absent arguments, and two rewritten calls on one line (the buffer
        // is reused between them).
        let (ev, _) = run(
            &[
                r#"{"message":{"content":"","tool_calls":[{"function":{"name":"a"}},{"function":{"name":"b","arguments":"{\"x\":1}"}},{"function":{"name":"c","arguments":"{\"y\":2}"}}]},"done":false}"#,
            ],
            false,
        );
        assert_eq!(
            ev[..3],
            [
                "call:None:a:{}",
                r#"call:None:b:{"x":1}"#,
                r#"call:None:c:{"y":2}"#
            ]
        );
    }

    #[test]
    fn huge_counts_pass_through_unchanged() {
        let (ev, ok) = run(
            &[
                r#"{"message":{"content":""},"done":true,"done_reason":"stop","prompt_eval_count":18446744073709551615,"eval_count":5}"#,
            ],
            false,
        );
        assert!(ok);
        assert_eq!(ev, vec![format!("done:Some(\"stop\"):{}:5", u64::MAX)]);
    }

    #[test]
    fn error_line_ends_the_stream() {
        let (ev, ok) = run(
            &[
                r#"{"message":{"content":"a"},"done":false}"#,
                r#"{"error":"runner \"died\""}"#,
                r#"{"message":{"content":"ignored"},"done":false}"#,
            ],
            false,
        );
        assert!(ok, "an error line is a proper end, reported in-band");
        assert_eq!(ev, vec!["text:a", "error:runner \"died\""]);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let (ev, _) = run(&["this is not json"], false);
        assert!(ev[0].starts_with("error:Ollama sent an invalid stream line"));
        let (ev, ok) = run(&[r#"{"message":{"content":"a"},"done":false}"#], false);
        assert!(!ok);
        assert_eq!(ev[1], "error:Ollama closed the stream before it finished");
    }

    #[test]
    fn generate_lines_decode_too() {
        let (ev, ok) = run(
            &[
                r#"{"model":"m","response":"Hel","done":false}"#,
                r#"{"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":3,"eval_count":2}"#,
            ],
            false,
        );
        assert!(ok);
        assert_eq!(ev, vec!["text:Hel", "done:Some(\"length\"):3:2"]);
    }
}
