//! [`Agent`]: the server tools the layer runs for a model, between the
//! rounds of one translated answer.
//!
//! When a round of the model ends with calls to a server tool (a web
//! search), the body's decoder holds the round's end and hands the round to
//! the agent. The agent runs each search (bounded: a deadline, the hits,
//! the text per hit, the request's searches), tells the client of each call
//! and its result through the transcoder, and then either ends the turn
//! (the model also called a client tool, or the rounds are spent) or asks
//! Ollama for the follow-up: the conversation so far, the round's assistant
//! message with its calls, and one tool message per search. The follow-up's
//! body then replaces the round's in the same [`TranslateBody`](crate::TranslateBody),
//! so the client sees one answer, streamed throughout.
//!
//! The agent knows neither dialects nor Ollama's sockets: it calls Ollama
//! through the boxed [`Call`] the future gave it (the wrapped service, with
//! the request's template), and searches through the configured backend.

use crate::config::Config;
use crate::error::{error_chain, BoxError, Failure};
use crate::ollama::request::{ChatRequest, Endpoint, Message, ToolCall, ToolFunction};
use crate::ollama::{RoundEnd, ServerCall, ServerResult, UpstreamError};
use crate::search::http::{read_bounded, MAX_ANSWER};
use crate::search::{
    self, Backend, SearchError, SearchErrorCode, SearchFormat, SearchFuture, SearchHit,
    SearchRequest, SearchTool, WebSearchConfig,
};
use crate::shared::NoThink;
use crate::timer::{Sleep, Timer};
use crate::transcode::Transcode;
use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

/// A call to Ollama: the response head, or why there is none.
pub(crate) type UpstreamFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

/// Calls the wrapped service with a native request (endpoint and JSON body).
pub(crate) type Call<B> = Box<dyn FnMut(Endpoint, Bytes) -> UpstreamFuture<B> + Send>;

/// What the body does next.
pub(crate) enum Step<B> {
    /// The follow-up's body: read it as the next round.
    Continue(B),
    /// No follow-up: the answer ends with the round that called the tools.
    EndTurn,
    /// The follow-up failed: an in-band error.
    Fail(Failure, String),
}

/// The server-tool loop of one answer.
pub(crate) struct Agent<B> {
    call: Call<B>,
    /// The native request, growing by a round at each follow-up.
    native: ChatRequest,
    /// The models that turned out not to think.
    no_think: Arc<NoThink>,
    config: WebSearchConfig,
    tool: SearchTool,
    timer: Option<Arc<dyn Timer>>,
    /// Searches this request may still run.
    uses_left: u32,
    /// Follow-ups this request may still make.
    rounds_left: u32,
    state: State<B>,
}

enum State<B> {
    Idle,
    Searching(Box<Searching>),
    Calling(UpstreamFuture<B>),
    Refused {
        status: StatusCode,
        body: Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>,
    },
}

/// The searches of one round.
struct Searching {
    round: RoundEnd,
    /// The next call of the round to run.
    next: usize,
    /// The round's calls as the follow-up's assistant message takes them.
    calls: Vec<ToolCall>,
    /// One tool message per call.
    results: Vec<Message>,
    running: Option<Running>,
}

struct Running {
    id: String,
    query: String,
    search: SearchRequest,
    fut: SearchFuture,
    deadline: Option<Sleep>,
    started: Instant,
}

/// What the body needs of an [`Agent`], without its bounds on `B`.
pub(crate) trait Rounds<B>: Send {
    /// A round ended with server calls: run them.
    fn begin(&mut self, round: RoundEnd);
    /// Runs the round's searches, then the follow-up's call; what it tells
    /// the client goes to `out` through `transcoder`.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        transcoder: &mut dyn Transcode,
        out: &mut BytesMut,
    ) -> Poll<Step<B>>;
    /// Whether it waits for Ollama (the follow-up's head), which the
    /// upstream idle timeout bounds; a search has its own deadline.
    fn waits_on_ollama(&self) -> bool;
}

impl<B> Rounds<B> for Agent<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn begin(&mut self, round: RoundEnd) {
        Agent::begin(self, round);
    }
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        transcoder: &mut dyn Transcode,
        out: &mut BytesMut,
    ) -> Poll<Step<B>> {
        Agent::poll(self, cx, transcoder, out)
    }
    fn waits_on_ollama(&self) -> bool {
        matches!(self.state, State::Calling(_) | State::Refused { .. })
    }
}

impl<B> Agent<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The loop for `native` (as first sent, asking Ollama to stream),
    /// whose web-search tool asks for `tool`.
    pub(crate) fn new(
        call: Call<B>,
        native: ChatRequest,
        layer: &Config,
        no_think: Arc<NoThink>,
        tool: SearchTool,
    ) -> Self {
        let config = layer.web_search.clone();
        let uses = config.uses(tool.max_uses);
        Agent {
            call,
            native,
            timer: layer.timing.timer.clone(),
            no_think,
            config,
            tool,
            uses_left: uses,
            // One more than the searches: the model answers after the last.
            rounds_left: uses + 1,
            state: State::Idle,
        }
    }

    /// A round ended with server calls: run them.
    pub(crate) fn begin(&mut self, round: RoundEnd) {
        self.state = State::Searching(Box::new(Searching {
            round,
            next: 0,
            calls: Vec::new(),
            results: Vec::new(),
            running: None,
        }));
    }

    /// Runs the round's searches, then the follow-up's call; what it tells
    /// the client goes to `out` through `transcoder`.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        transcoder: &mut dyn Transcode,
        out: &mut BytesMut,
    ) -> Poll<Step<B>> {
        loop {
            let step = match &mut self.state {
                State::Idle => Some(Step::EndTurn),
                State::Searching(_) => ready!(self.poll_searching(cx, transcoder, out)),
                State::Calling(_) | State::Refused { .. } => Some(ready!(self.poll_follow_up(cx))),
            };
            if let Some(step) = step {
                return Poll::Ready(step);
            }
        }
    }

    /// One step of the round's searches: a search started, one finished,
    /// or the follow-up called (`None`: go on), or the turn's end.
    fn poll_searching(
        &mut self,
        cx: &mut Context<'_>,
        transcoder: &mut dyn Transcode,
        out: &mut BytesMut,
    ) -> Poll<Option<Step<B>>> {
        let State::Searching(s) = &mut self.state else {
            return Poll::Ready(None);
        };
        let Some(running) = s.running.as_mut() else {
            if s.next == s.round.calls.len() {
                let State::Searching(s) = std::mem::replace(&mut self.state, State::Idle) else {
                    return Poll::Ready(Some(Step::EndTurn));
                };
                return Poll::Ready(self.follow_up(*s));
            }
            let (name, arguments) = s.round.calls[s.next].clone();
            let started = self.start(&name, &arguments, transcoder, out);
            if let State::Searching(s) = &mut self.state {
                match started {
                    Ok(running) => s.running = Some(running),
                    Err((id, query, e)) => finish(s, transcoder, out, &id, &query, Err(e)),
                }
            }
            return Poll::Ready(None);
        };
        let outcome = ready!(poll_search(running, cx));
        let Some(running) = s.running.take() else {
            return Poll::Ready(None);
        };
        let elapsed = self
            .timer
            .as_ref()
            .map_or_else(Instant::now, |t| t.now())
            .saturating_duration_since(running.started);
        let outcome =
            outcome.map(|hits| search::bound_hits(hits, &running.search, self.config.result_bytes));
        log_search(self.config.backend_name(), &outcome, elapsed);
        let outcome = outcome.map_err(|e| e.code);
        let hits = outcome.as_ref().map(Vec::as_slice).map_err(|c| *c);
        finish(s, transcoder, out, &running.id, &running.query, hits);
        Poll::Ready(None)
    }

    /// The follow-up's head (or, refused, its error body).
    fn poll_follow_up(&mut self, cx: &mut Context<'_>) -> Poll<Step<B>> {
        loop {
            match &mut self.state {
                State::Calling(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Err(e) => {
                        self.state = State::Idle;
                        let message = format!(
                            "could not reach Ollama for the answer after a web search: {}",
                            error_chain(&*e)
                        );
                        return Poll::Ready(Step::Fail(Failure::UpstreamLost, message));
                    }
                    Ok(res) if res.status().is_success() => {
                        self.state = State::Idle;
                        return Poll::Ready(Step::Continue(res.into_body()));
                    }
                    Ok(res) => {
                        let status = res.status();
                        let body = Box::pin(read_bounded(res.into_body(), 64 * 1024));
                        self.state = State::Refused { status, body };
                    }
                },
                State::Refused { status, body } => {
                    let status = *status;
                    let read = ready!(body.as_mut().poll(cx));
                    self.state = State::Idle;
                    let said =
                        UpstreamError::read(status, read.as_deref().unwrap_or_default()).message;
                    tracing::warn!(status = status.as_u16(), error = %said, "Ollama refused the answer after a web search");
                    return Poll::Ready(Step::Fail(Failure::OllamaError, said));
                }
                _ => return Poll::Ready(Step::EndTurn),
            }
        }
    }

    /// Starts one call of the round: the client hears of it, and the search
    /// runs unless the call is refused (its error then).
    fn start(
        &mut self,
        name: &str,
        arguments: &str,
        transcoder: &mut dyn Transcode,
        out: &mut BytesMut,
    ) -> Result<Running, (String, String, SearchErrorCode)> {
        let id = crate::util::random_id("", 24, true);
        let checked = if name == search::FUNCTION {
            search::query_of(arguments)
        } else {
            Err(SearchError::new(
                SearchErrorCode::InvalidInput,
                format!("no server tool {name:?}"),
            ))
        };
        let query = match &checked {
            Ok(q) => q.clone(),
            // What the model sent, when it is a string at all.
            Err(_) => serde_json::from_str::<serde_json::Value>(arguments)
                .ok()
                .and_then(|v| v.get("query")?.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        transcoder.server_call(
            &ServerCall {
                id: &id,
                query: &query,
            },
            out,
        );
        let backend = self.config.backend_name();
        let query = match checked {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(error = %e, "a web search call was refused");
                crate::telemetry::web_search(backend, e.code.as_str(), None);
                return Err((id, query, e.code));
            }
        };
        if self.uses_left == 0 {
            crate::telemetry::web_search(backend, SearchErrorCode::MaxUsesExceeded.as_str(), None);
            return Err((id, query, SearchErrorCode::MaxUsesExceeded));
        }
        self.uses_left -= 1;
        let request = SearchRequest {
            query: query.clone(),
            max_results: self.config.max_results,
            allowed_domains: self.tool.allowed_domains.clone(),
            blocked_domains: self.tool.blocked_domains.clone(),
        };
        let fut = match &self.config.backend {
            Backend::Custom(b) => b.search(request.clone()),
            Backend::Inner | Backend::Off => inner_search((self.call)(
                Endpoint::WebSearch,
                SearchFormat::OllamaLocal.body(&request),
            )),
        };
        let started = self.timer.as_ref().map_or_else(Instant::now, |t| t.now());
        let deadline = self
            .timer
            .as_ref()
            .map(|t| t.sleep_until(started + self.config.timeout));
        Ok(Running {
            id,
            query,
            search: request,
            fut,
            deadline,
            started,
        })
    }

    /// The round's searches are done: the follow-up, or the end of the turn
    /// (`None` once the follow-up is called).
    fn follow_up(&mut self, s: Searching) -> Option<Step<B>> {
        if s.round.client_calls || self.rounds_left == 0 {
            return Some(Step::EndTurn);
        }
        self.rounds_left -= 1;
        let mut assistant = Message::new("assistant", s.round.text);
        assistant.thinking = Some(s.round.thinking).filter(|t| !t.is_empty());
        assistant.tool_calls = s.calls;
        self.native.messages.push(assistant);
        self.native.messages.extend(s.results);
        if self.no_think.holds(&self.native.model) {
            self.native.think = None;
        }
        if self.uses_left == 0 || self.rounds_left == 0 {
            // Spent: the model must answer now, and cannot call it again.
            drop_function(&mut self.native);
        }
        let body = match serde_json::to_vec(&self.native) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return Some(Step::Fail(
                    Failure::UpstreamGarbage,
                    format!("could not encode the follow-up request: {e}"),
                ))
            }
        };
        tracing::debug!(
            bytes = body.len(),
            messages = self.native.messages.len(),
            "→ Ollama (after a web search)"
        );
        self.state = State::Calling((self.call)(Endpoint::Chat, body));
        None
    }
}

/// A search is done: the client hears of it, and its tool message is kept
/// for the follow-up.
fn finish(
    s: &mut Searching,
    transcoder: &mut dyn Transcode,
    out: &mut BytesMut,
    id: &str,
    query: &str,
    outcome: Result<&[SearchHit], SearchErrorCode>,
) {
    transcoder.server_result(&ServerResult { id, query, outcome }, out);
    s.calls.push(ToolCall {
        id: Some(id.to_string()),
        function: ToolFunction {
            name: search::FUNCTION.to_string(),
            arguments: serde_json::json!({ "query": query }),
        },
    });
    let mut tool = Message::new("tool", search::model_text(query, outcome));
    tool.tool_name = Some(search::FUNCTION.to_string());
    tool.tool_call_id = Some(id.to_string());
    s.results.push(tool);
    s.next += 1;
}

/// Polls a running search against its deadline.
fn poll_search(
    running: &mut Running,
    cx: &mut Context<'_>,
) -> Poll<Result<Vec<SearchHit>, SearchError>> {
    if let Poll::Ready(outcome) = running.fut.as_mut().poll(cx) {
        return Poll::Ready(outcome);
    }
    let late = running
        .deadline
        .as_mut()
        .is_some_and(|d| d.as_mut().poll(cx).is_ready());
    if late {
        return Poll::Ready(Err(SearchError::new(
            SearchErrorCode::Unavailable,
            "the search took longer than its deadline",
        )));
    }
    Poll::Pending
}

/// One log line and the metrics for a search.
fn log_search(
    backend: &'static str,
    outcome: &Result<Vec<SearchHit>, SearchError>,
    elapsed: std::time::Duration,
) {
    let span = tracing::info_span!(
        "web_search",
        backend,
        outcome = tracing::field::Empty,
        hits = tracing::field::Empty,
        duration_ms = elapsed.as_millis() as u64,
    );
    let _entered = span.enter();
    match outcome {
        Ok(hits) => {
            span.record("outcome", "ok");
            span.record("hits", hits.len());
            crate::telemetry::web_search(backend, "ok", Some(elapsed));
            tracing::debug!(hits = hits.len(), "web search done");
        }
        Err(e) => {
            span.record("outcome", e.code.as_str());
            crate::telemetry::web_search(backend, e.code.as_str(), Some(elapsed));
            tracing::warn!(backend, code = e.code.as_str(), error = %e.message, "web search failed");
        }
    }
}

/// A search through the wrapped service's `/api/experimental/web_search`.
fn inner_search<B>(call: UpstreamFuture<B>) -> SearchFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Box::pin(async move {
        let res = call.await.map_err(|e| {
            SearchError::new(
                SearchErrorCode::Unavailable,
                format!("could not reach Ollama's web search: {}", error_chain(&*e)),
            )
        })?;
        let status = res.status();
        let body = read_bounded(res.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| {
                SearchError::new(
                    SearchErrorCode::Unavailable,
                    format!("reading Ollama's web search answer failed: {e}"),
                )
            })?;
        SearchFormat::OllamaLocal.parse(status, &body)
    })
}

/// Removes the web-search function from the tools offered.
fn drop_function(native: &mut ChatRequest) {
    if let Some(tools) = native.tools.as_mut() {
        tools.retain(|t| {
            t.get("function")
                .and_then(|f| f.get("name"))
                .and_then(serde_json::Value::as_str)
                != Some(search::FUNCTION)
        });
        if tools.is_empty() {
            native.tools = None;
        }
    }
}
