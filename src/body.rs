//! The response body that translates Ollama's stream as it flows, and the
//! request body handed to the inner service.

use crate::agent::{Rounds, Step};
use crate::error::{error_chain, ApiError, BoxError, Failure, StreamError};
use crate::ollama::{RoundEnd, ServerCall, ServerResult};
use crate::telemetry::{Meter, Usage};
use crate::timer::{Deadlines, Due, Pace, PACE_BYTES};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Turns an upstream response body into the client's, piece by piece: the
/// body's plug-in point. Dialects implement it (usually through
/// [`Decoder`](crate::ollama::Decoder) and an encoder of their own).
pub(crate) trait Transcode: Send {
    /// One complete line of the upstream body, without its `\n` (or, when
    /// [`Transcode::whole_body`] is true, the whole body at its end).
    fn line(&mut self, line: &[u8], out: &mut BytesMut);
    /// The upstream body ended. An error means the stream ended in a way
    /// that must not look like a clean finish to the client.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError>;
    /// The upstream body failed (connection dropped, idle timeout); write an
    /// in-band error if the dialect has one.
    fn abort(&mut self, failure: Failure, message: &str, out: &mut BytesMut);
    /// Nothing has been written to the client for the keep-alive period;
    /// write the dialect's keep-alive (an SSE comment, an Anthropic `ping`),
    /// if it has one and the answer is still going. Default: nothing.
    fn idle(&mut self, _out: &mut BytesMut) {}
    /// Whether what [`Transcode::abort`] wrote is a complete answer of its
    /// own (an error document with the status already sent): the body then
    /// ends cleanly after it instead of with an error. Default: false.
    fn abort_completes(&self) -> bool {
        false
    }
    /// Whether to get the whole body at once instead of line by line.
    fn whole_body(&self) -> bool {
        false
    }
    /// Why the stream failed, if it did: an answer collected whole for a
    /// non-streaming client is then replaced by this error (its status and
    /// message in the client's dialect).
    fn failure(&self) -> Option<ApiError> {
        None
    }
    /// What Ollama said the request used, once the answer is complete.
    fn usage(&self) -> Option<Usage<'_>> {
        None
    }
    /// The upstream body ended after a round of the model that called
    /// server tools the layer runs (see [`crate::agent`]): that round.
    /// Default: none (the answer is complete).
    fn take_round(&mut self) -> Option<RoundEnd> {
        None
    }
    /// The layer runs a server tool call of the round.
    fn server_call(&mut self, _call: &ServerCall<'_>, _out: &mut BytesMut) {}
    /// What it gave.
    fn server_result(&mut self, _result: &ServerResult<'_>, _out: &mut BytesMut) {}
    /// The answer ends with the round that called server tools.
    fn end_turn(&mut self, _out: &mut BytesMut) {}
    /// The follow-up's body begins.
    fn next_round(&mut self) {}
}

/// How much of Ollama's answer a translated body keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The longest line, or whole document.
    pub(crate) line: usize,
    /// The most bytes of the whole answer, when it is collected.
    pub(crate) total: Option<usize>,
}

impl Limits {
    /// Lines (or documents) up to `line` bytes, any number of them.
    pub(crate) fn line(line: usize) -> Self {
        Limits { line, total: None }
    }
}

/// Ollama's error bodies are read whole up to this; past it the answer is
/// a failure of its own.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

pin_project! {
    /// Response body of [`OllamaTranslate`](crate::OllamaTranslate).
    ///
    /// For requests the layer translated, it turns Ollama's NDJSON (or JSON)
    /// into the client's dialect as frames arrive: every complete line is
    /// translated as it comes, a line split across frames is held until its
    /// end arrives, and memory stays constant however long the stream is.
    /// For everything else it passes the inner body's bytes through
    /// untouched.
    ///
    /// Either way, lines (or chunks) that arrive together leave together: when
    /// the inner body has nothing more right now, a stream may wait a few
    /// turns of the executor (never a timer) for the next chunk before it
    /// hands out what it has, so that a burst costs one write instead of one
    /// per token. The first frame never waits, and a stream whose waits gain
    /// nothing (tokens really coming one at a time) backs off.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Request, Response};
    /// use http_body_util::{BodyExt, Full};
    /// use ollama_translate::{OllamaTranslateLayer, RequestBody};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ollama_translate::BoxError> {
    /// let ollama = service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("Ollama is running"))))
    /// });
    /// let res = OllamaTranslateLayer::new()
    ///     .layer(ollama)
    ///     .oneshot(Request::get("/").body(Full::new(Bytes::new()))?)
    ///     .await?;
    /// assert!(!res.body().is_translated(), "`/` is not an API the layer translates");
    /// let text = res.into_body().collect().await?.to_bytes();
    /// assert_eq!(text, "Ollama is running");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// See the [crate docs](crate) for more details.
    pub struct TranslateBody<B> {
        #[pin]
        inner: Inner<B>,
        // A request in flight for its key, until the body is dropped.
        permit: Option<crate::access::InFlight>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Passthrough { #[pin] body: B, held: Held },
        Translate { #[pin] body: B, state: Box<Translator>, agent: Option<Box<dyn Rounds<B>>> },
        Full { data: Option<Bytes> },
    }
}

struct Translator {
    transcoder: Box<dyn Transcode>,
    deadlines: Option<Deadlines>,
    /// The longest line (or whole body) kept; past it the stream fails.
    limit: usize,
    /// For answers collected whole: the most upstream bytes read at all
    /// (the encoder collects what they say).
    total_limit: Option<usize>,
    /// Upstream bytes read so far.
    fed: usize,
    /// Measures the request, for generating and embedding calls.
    meter: Option<Meter>,
    /// An incomplete line (or the whole body, in whole-body mode).
    partial: BytesMut,
    out: BytesMut,
    /// The inner body has ended or failed.
    upstream_done: bool,
    /// An error to return once `out` has been sent.
    error: Option<BoxError>,
    /// Yielded once before returning `error`, so the server flushes the
    /// in-band error already sent (hyper drops unflushed data on a body error).
    yielded_before_error: bool,
    ended: bool,
    /// When to wait a turn for more before handing out what is ready.
    gather: Gather,
    /// The layer runs server tools for this answer (an [`Agent`] is there).
    looping: bool,
    /// A round that called server tools ended: for the agent to take.
    round: Option<RoundEnd>,
    /// The agent is running a round's tools; the inner body has ended.
    between_rounds: bool,
}

/// Frames are handed out at most this big when more is ready at once.
const GATHER_BYTES: usize = 16 * 1024;

/// Empty turns a stream waits, in a row, for its next chunk before handing
/// out what it has.
const GATHER_TURNS: u8 = 4;

/// The most frames a stream sends without waiting after rounds in which
/// waiting gained nothing (doubling from 1).
const GATHER_BACKOFF: u16 = 64;

/// Whether a stream waits a few turns of the executor for its next chunk
/// before handing out what is ready.
///
/// A server writes (one system call) whenever the response body has
/// nothing more right now. Tokens often arrive in bursts — several lines
/// in one read from Ollama — but a client connection hands them over one
/// chunk per turn of its task, so the body would find nothing more after
/// every token and each token would cost a write of its own. Waking itself
/// and returning `Pending` lets that task run; when the next chunk comes,
/// the tokens leave together. No timer is involved: a wait is a turn of the
/// executor (microseconds), and only [`GATHER_TURNS`] in a row.
///
/// When tokens really come one at a time (a model generating), waiting
/// gains nothing: after such a round the stream sends 1, 2, 4 … up to
/// [`GATHER_BACKOFF`] frames without waiting before it tries again, so a
/// paced token is almost never held back, and a stream that turns bursty
/// is caught within that many frames. The first frame never waits, so the
/// time to the first token is what it would be without gathering.
#[derive(Debug)]
struct Gather {
    /// Empty turns in a row in this round.
    turns: u8,
    /// This round has waited at least once.
    waited: bool,
    /// Waiting brought data this round.
    gained: bool,
    /// Frames left to send without waiting.
    skip: u16,
    /// The last backoff.
    backoff: u16,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            turns: 0,
            waited: false,
            gained: false,
            // The first frame goes at once.
            skip: 1,
            backoff: 0,
        }
    }
}

impl Gather {
    /// The upstream has nothing right now and `ready` bytes are waiting to
    /// go out: true to wait one more turn.
    fn wait(&mut self, ready: usize) -> bool {
        if self.skip > 0 || ready >= GATHER_BYTES || self.turns >= GATHER_TURNS {
            return false;
        }
        self.turns += 1;
        self.waited = true;
        true
    }

    /// Data came from the upstream.
    fn arrived(&mut self) {
        if self.turns > 0 {
            self.gained = true;
            self.turns = 0;
        }
    }

    /// A frame goes out: the round ends.
    fn sent(&mut self) {
        if self.skip > 0 {
            self.skip -= 1;
        } else if self.gained {
            self.backoff = 0;
        } else if self.waited {
            self.backoff = (self.backoff.saturating_mul(2) + 1).min(GATHER_BACKOFF);
            self.skip = self.backoff;
        }
        self.turns = 0;
        self.waited = false;
        self.gained = false;
    }
}

/// What a body passed through holds back: the data of chunks that came
/// together (the first kept as it came, the rest copied after it), and
/// what follows them (trailers, an error, the end). The stream's bytes are
/// unchanged; only how they are cut into frames is (see [`Gather`]).
#[derive(Debug, Default)]
struct Held {
    first: Option<Bytes>,
    more: BytesMut,
    /// Trailers or an error, to hand out after the data.
    next: Option<Result<Frame<Bytes>, BoxError>>,
    /// The inner body has ended or failed.
    done: bool,
    /// Yielded once before an error, so the server flushes the data
    /// before it (hyper drops unflushed data on a body error).
    yielded: bool,
    gather: Gather,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.len() == 0 && self.next.is_none()
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.more.len()
    }

    fn keep(&mut self, data: Bytes) {
        match &self.first {
            None if self.more.is_empty() => self.first = Some(data),
            _ => {
                if let Some(first) = self.first.take() {
                    self.more.extend_from_slice(&first);
                }
                self.more.extend_from_slice(&data);
            }
        }
    }

    fn frame(&mut self) -> Option<Frame<Bytes>> {
        self.gather.sent();
        if !self.more.is_empty() {
            return Some(Frame::data(self.more.split().freeze()));
        }
        self.first.take().map(Frame::data)
    }

    fn poll<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        loop {
            let len = self.len();
            if len > 0 && (self.done || self.next.is_some() || len >= GATHER_BYTES) {
                return Poll::Ready(self.frame().map(Ok));
            }
            if let Some(next) = self.next.take() {
                if next.is_err() && !self.yielded {
                    self.yielded = true;
                    self.next = Some(next);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(Some(next));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        self.keep(data.copy_to_bytes(data.remaining()));
                        self.gather.arrived();
                    }
                    Err(frame) => {
                        self.next = Some(Ok(
                            frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
                        ));
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    self.next = Some(Err(e.into()));
                    self.done = true;
                }
                Poll::Ready(None) => self.done = true,
                Poll::Pending if len == 0 => return Poll::Pending,
                Poll::Pending => {
                    if self.gather.wait(len) {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    return Poll::Ready(self.frame().map(Ok));
                }
            }
        }
    }
}

impl<B> TranslateBody<B> {
    pub(crate) fn passthrough(body: B) -> Self {
        TranslateBody {
            inner: Inner::Passthrough {
                body,
                held: Held::default(),
            },
            permit: None,
        }
    }

    pub(crate) fn translate(
        body: B,
        transcoder: Box<dyn Transcode>,
        deadlines: Option<Deadlines>,
        limits: Limits,
        meter: Option<Meter>,
    ) -> Self {
        Self::translate_with(body, transcoder, deadlines, limits, meter, None)
    }

    /// [`Self::translate`], with the agent that runs the answer's server
    /// tools between rounds.
    pub(crate) fn translate_with(
        body: B,
        transcoder: Box<dyn Transcode>,
        deadlines: Option<Deadlines>,
        limits: Limits,
        meter: Option<Meter>,
        agent: Option<Box<dyn Rounds<B>>>,
    ) -> Self {
        TranslateBody {
            inner: Inner::Translate {
                body,
                state: Box::new(Translator {
                    looping: agent.is_some(),
                    round: None,
                    between_rounds: false,
                    transcoder,
                    deadlines,
                    limit: limits.line,
                    total_limit: limits.total,
                    fed: 0,
                    meter,
                    partial: BytesMut::new(),
                    out: BytesMut::new(),
                    upstream_done: false,
                    error: None,
                    yielded_before_error: false,
                    ended: false,
                    gather: Gather::default(),
                }),
                agent,
            },
            permit: None,
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        TranslateBody {
            inner: Inner::Full { data: Some(data) },
            permit: None,
        }
    }

    /// Holds the request's place among its key's requests in flight until
    /// the body is dropped (hyper drops it once sent, or when the client
    /// goes away).
    pub(crate) fn holding(mut self, permit: Option<crate::access::InFlight>) -> Self {
        if permit.is_some() {
            self.permit = permit;
        }
        self
    }

    /// Why a translated stream failed, once it has (see `Transcode::failure`).
    pub(crate) fn failure(&self) -> Option<crate::error::ApiError> {
        match &self.inner {
            Inner::Translate { state, .. } => state.transcoder.failure(),
            _ => None,
        }
    }

    /// True when the layer translates this body (false for pass-through).
    pub fn is_translated(&self) -> bool {
        !matches!(self.inner, Inner::Passthrough { .. })
    }
}

impl Translator {
    /// Feeds one upstream data chunk, translating every complete line.
    fn feed(&mut self, mut data: impl Buf) {
        while data.has_remaining() && !self.upstream_done {
            let chunk = data.chunk();
            let n = chunk.len();
            self.fed = self.fed.saturating_add(n);
            if self.total_limit.is_some_and(|total| self.fed > total) {
                let msg = format!(
                    "Ollama's answer is larger than the limit of {} bytes",
                    self.total_limit.unwrap_or_default()
                );
                self.fail(Failure::UpstreamGarbage, Box::new(StreamError(msg)));
                return;
            }
            if self.transcoder.whole_body() {
                if self.partial.len() + n > self.limit {
                    self.too_long("an answer");
                    return;
                }
                self.partial.extend_from_slice(chunk);
            } else {
                self.lines(chunk);
            }
            data.advance(n);
        }
    }

    /// Translates every complete line of `chunk`, keeping the rest.
    fn lines(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = find_newline(rest) {
            let (line, tail) = rest.split_at(pos);
            if self.partial.len() + line.len() > self.limit {
                return self.too_long("a line");
            } else if self.partial.is_empty() {
                // The common case: a whole line inside one frame, no copy.
                self.transcoder.line(trim_cr(line), &mut self.out);
            } else {
                self.partial.extend_from_slice(line);
                let whole = self.partial.split();
                self.transcoder.line(trim_cr(&whole), &mut self.out);
            }
            rest = &tail[1..];
        }
        if self.partial.len() + rest.len() > self.limit {
            return self.too_long("a line");
        }
        self.partial.extend_from_slice(rest);
    }

    /// Ollama sent more than the limit in one line (or one document).
    fn too_long(&mut self, what: &str) {
        let msg = format!(
            "Ollama sent {what} longer than the limit of {} bytes",
            self.limit
        );
        self.fail(Failure::UpstreamGarbage, Box::new(StreamError(msg)));
    }

    /// The inner body ended: flush the last line and let the transcoder
    /// finish, unless the round called server tools the agent runs.
    fn eof(&mut self) {
        if !self.partial.is_empty() {
            let last = self.partial.split();
            self.transcoder.line(trim_cr(&last), &mut self.out);
        }
        if self.looping {
            if let Some(round) = self.transcoder.take_round() {
                self.round = Some(round);
                self.between_rounds = true;
                return;
            }
        }
        self.finish();
    }

    /// The answer is over.
    fn finish(&mut self) {
        self.upstream_done = true;
        if let Err(e) = self.transcoder.finish(&mut self.out) {
            self.error = Some(e);
        }
        self.measure();
    }

    /// What the agent did between rounds; `Pending` when it waits and no
    /// deadline fell due.
    fn poll_agent<B>(
        &mut self,
        mut body: Pin<&mut B>,
        agent: &mut dyn Rounds<B>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if let Some(round) = self.round.take() {
            agent.begin(round);
        }
        let before = self.out.len();
        let step = agent.poll(cx, &mut *self.transcoder, &mut self.out);
        if let Some(d) = self.deadlines.as_mut() {
            if self.out.len() != before {
                d.sent();
            }
        }
        match step {
            Poll::Ready(Step::Continue(next)) => {
                body.set(next);
                self.between_rounds = false;
                self.transcoder.next_round();
                if let Some(d) = self.deadlines.as_mut() {
                    d.received(true, false);
                }
            }
            Poll::Ready(Step::EndTurn) => {
                self.between_rounds = false;
                self.transcoder.end_turn(&mut self.out);
                self.finish();
            }
            Poll::Ready(Step::Fail(failure, message)) => {
                self.between_rounds = false;
                // The held round is over: the failure is the answer's end.
                self.transcoder.next_round();
                self.fail(failure, Box::new(StreamError(message)));
            }
            Poll::Pending if self.out.len() != before => {}
            Poll::Pending => {
                if !agent.waits_on_ollama() {
                    // Ollama owes nothing while a search runs.
                    if let Some(d) = self.deadlines.as_mut() {
                        d.received(true, false);
                    }
                }
                return self.poll_deadlines(cx);
            }
        }
        Poll::Ready(())
    }

    /// The answer is over: what it used and how it ended, for the meter.
    fn measure(&mut self) {
        let failure = self.transcoder.failure();
        let error = failure.as_ref().map(|f| f.code.unwrap_or("upstream_error"));
        if let Some(e) = error {
            crate::telemetry::upstream_error(e);
        }
        if let Some(meter) = self.meter.as_mut() {
            meter.finish(self.transcoder.usage(), error);
        }
    }

    fn fail(&mut self, failure: Failure, err: BoxError) {
        self.upstream_done = true;
        let message = error_chain(&*err);
        tracing::warn!(error = %message, "the upstream body failed mid-stream");
        self.partial.clear();
        self.transcoder.abort(failure, &message, &mut self.out);
        if !self.transcoder.abort_completes() {
            self.error = Some(err);
        }
        self.measure();
    }

    /// What is ready, as one frame for the client.
    fn frame(&mut self) -> Frame<Bytes> {
        if let Some(meter) = self.meter.as_mut() {
            meter.chunk();
        }
        self.gather.sent();
        Frame::data(self.out.split().freeze())
    }

    /// Handles one poll of the inner body; `Pending` when it has nothing
    /// and no deadline fell due.
    fn poll_upstream<B>(&mut self, body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<()>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let polled = match body.poll_frame(cx) {
            Poll::Ready(p) => p,
            Poll::Pending => return self.poll_deadlines(cx),
        };
        let before = self.out.len();
        // Whitespace alone (an upstream that sends only blank lines) is not
        // progress: the idle timeout still falls due.
        let mut progress = true;
        match polled {
            // Trailers from Ollama carry nothing a client dialect can use.
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    progress = !blank(&data);
                    self.feed(data);
                }
            }
            Some(Err(e)) => self.fail(Failure::UpstreamLost, e.into()),
            None => self.eof(),
        }
        if let Some(d) = self.deadlines.as_mut() {
            d.received(progress, self.out.len() != before);
        }
        Poll::Ready(())
    }

    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadlines) = self.deadlines.as_mut() else {
            return Poll::Pending;
        };
        match ready!(deadlines.poll_due(cx)) {
            Due::KeepAlive => {
                self.transcoder.idle(&mut self.out);
                deadlines.sent();
            }
            Due::IdleTimeout(after) => {
                let msg = format!(
                    "no data from Ollama for {} s (upstream idle timeout)",
                    after.as_secs()
                );
                self.fail(Failure::UpstreamTimeout, Box::new(StreamError(msg)));
            }
        }
        Poll::Ready(())
    }
}

/// Index of the first `\n` in `s`, eight bytes at a time (a byte-by-byte
/// scan was a fifth of the streaming cost per line).
fn find_newline(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        // Bytes equal to `\n` become zero; the lowest flagged byte is the
        // first zero (a borrow only ever flags bytes above a real zero).
        let w = u64::from_le_bytes(word) ^ NL;
        let zero = w.wrapping_sub(LO) & !w & HI;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| at + p)
}

/// Whether `data` holds nothing but whitespace (looking at its first chunk;
/// data in several chunks counts as something).
fn blank(data: &impl Buf) -> bool {
    let chunk = data.chunk();
    chunk.len() == data.remaining() && chunk.iter().all(u8::is_ascii_whitespace)
}

/// A frame of `body` as it is, its data as [`Bytes`] and its error boxed.
fn poll_as_bytes<B>(
    body: Pin<&mut B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    Poll::Ready(match ready!(body.poll_frame(cx)) {
        Some(Ok(frame)) => Some(Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
        Some(Err(e)) => Some(Err(e.into())),
        None => None,
    })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<B> Body for TranslateBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            InnerProj::Passthrough { body, held } => held.poll(body, cx),
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Translate {
                mut body,
                state,
                agent,
            } => loop {
                let full = state.out.len() >= GATHER_BYTES;
                if !state.out.is_empty() && (state.upstream_done || full) {
                    return Poll::Ready(Some(Ok(state.frame())));
                }
                if state.upstream_done {
                    if state.ended {
                        return Poll::Ready(None);
                    }
                    if state.error.is_some() && !state.yielded_before_error {
                        state.yielded_before_error = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    state.ended = true;
                    return Poll::Ready(state.error.take().map(Err));
                }
                let polled = match agent.as_deref_mut() {
                    Some(agent) if state.between_rounds => {
                        state.poll_agent(body.as_mut(), agent, cx)
                    }
                    _ => state.poll_upstream(body.as_mut(), cx),
                };
                match polled {
                    Poll::Ready(()) => state.gather.arrived(),
                    Poll::Pending if state.out.is_empty() => return Poll::Pending,
                    Poll::Pending => {
                        // Streams only: an answer read whole gains nothing.
                        if state.total_limit.is_none() && state.gather.wait(state.out.len()) {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        return Poll::Ready(Some(Ok(state.frame())));
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Passthrough { body, held } => {
                held.is_empty() && (held.done || body.is_end_stream())
            }
            Inner::Full { data } => data.is_none(),
            Inner::Translate { state, .. } => state.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Passthrough { body, held } if held.is_empty() => body.size_hint(),
            Inner::Passthrough { .. } => SizeHint::default(),
            Inner::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Translate { .. } => SizeHint::default(),
        }
    }
}

impl<B> std::fmt::Debug for TranslateBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Passthrough { .. } => "Passthrough",
            Inner::Translate { .. } => "Translate",
            Inner::Full { .. } => "Full",
        };
        f.debug_struct("TranslateBody")
            .field("kind", &kind)
            .finish()
    }
}

pin_project! {
    /// Request body handed to the inner service: the client's own body for
    /// requests passed through, or the rewritten JSON for translated ones.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use ollama_translate::RequestBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ollama_translate::BoxError> {
    /// let rewritten: RequestBody<Full<Bytes>> =
    ///     RequestBody::rewritten(Bytes::from(r#"{"model":"qwen3"}"#));
    /// assert_eq!(rewritten.collect().await?.to_bytes(), r#"{"model":"qwen3"}"#);
    /// let original = RequestBody::original(Full::new(Bytes::from("as sent")));
    /// assert_eq!(original.collect().await?.to_bytes(), "as sent");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// See the [crate docs](crate) for more details.
    pub struct RequestBody<B> {
        #[pin]
        inner: ReqInner<B>,
    }
}

pin_project! {
    #[project = ReqInnerProj]
    enum ReqInner<B> {
        Original { #[pin] body: B },
        // Passed through, at the pace the body timeout asks.
        Paced { #[pin] body: B, pace: Pace },
        Rewritten { data: Option<Bytes> },
    }
}

impl<B> RequestBody<B> {
    /// Wraps a body unchanged.
    pub fn original(body: B) -> Self {
        RequestBody {
            inner: ReqInner::Original { body },
        }
    }

    /// Wraps a body passed through: with a body timeout, it fails once it
    /// falls behind the pace that asks (see [`Pace`]), and the flag it
    /// comes with says so.
    pub(crate) fn passed_through(
        body: B,
        timing: &crate::timer::Timing,
    ) -> (Self, Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) {
        match timing.pace() {
            Some(pace) => {
                let late = pace.late();
                let inner = ReqInner::Paced { body, pace };
                (RequestBody { inner }, Some(late))
            }
            None => (Self::original(body), None),
        }
    }

    /// A complete body.
    pub fn rewritten(data: Bytes) -> Self {
        RequestBody {
            inner: ReqInner::Rewritten {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// The whole body, when it is held in memory and not yet read.
    #[cfg(feature = "pool")]
    pub(crate) fn whole(&self) -> Option<Bytes> {
        match &self.inner {
            ReqInner::Rewritten { data } => Some(data.clone().unwrap_or_default()),
            ReqInner::Original { .. } | ReqInner::Paced { .. } => None,
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            ReqInnerProj::Original { body } => poll_as_bytes(body, cx),
            ReqInnerProj::Paced { body, pace } => match poll_as_bytes(body, cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    pace.arrived(frame.data_ref().map_or(0, Bytes::len), false);
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(end) => {
                    pace.arrived(0, true);
                    Poll::Ready(end)
                }
                Poll::Pending => {
                    ready!(pace.poll_late(cx));
                    let message = format!(
                        "the request body did not arrive within {} s (it stalled: less than {} KiB came in that time)",
                        pace.after().as_secs(),
                        PACE_BYTES / 1024
                    );
                    Poll::Ready(Some(Err(StreamError(message).into())))
                }
            },
            ReqInnerProj::Rewritten { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            ReqInner::Original { body } | ReqInner::Paced { body, .. } => body.is_end_stream(),
            ReqInner::Rewritten { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            ReqInner::Original { body } | ReqInner::Paced { body, .. } => body.size_hint(),
            ReqInner::Rewritten { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            ReqInner::Original { .. } => "Original",
            ReqInner::Paced { .. } => "Paced",
            ReqInner::Rewritten { .. } => "Rewritten",
        };
        f.debug_struct("RequestBody").field("kind", &kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// Counts lines and keeps the longest; whole-body when asked.
    struct Lines {
        whole: bool,
        longest: usize,
        aborted: bool,
    }

    impl Transcode for Lines {
        fn line(&mut self, line: &[u8], _out: &mut BytesMut) {
            self.longest = self.longest.max(line.len());
        }
        fn finish(&mut self, _out: &mut BytesMut) -> Result<(), BoxError> {
            Ok(())
        }
        fn abort(&mut self, _failure: Failure, _message: &str, _out: &mut BytesMut) {
            self.aborted = true;
        }
        fn whole_body(&self) -> bool {
            self.whole
        }
    }

    fn translator(whole: bool, limits: Limits) -> Translator {
        Translator {
            transcoder: Box::new(Lines {
                whole,
                longest: 0,
                aborted: false,
            }),
            deadlines: None,
            limit: limits.line,
            total_limit: limits.total,
            fed: 0,
            meter: None,
            partial: BytesMut::new(),
            out: BytesMut::new(),
            upstream_done: false,
            error: None,
            yielded_before_error: false,
            ended: false,
            gather: Gather::default(),
            looping: false,
            round: None,
            between_rounds: false,
        }
    }

    /// Echoes each line, newline included.
    struct Echo;

    impl Transcode for Echo {
        fn line(&mut self, line: &[u8], out: &mut BytesMut) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\n");
        }
        fn finish(&mut self, _out: &mut BytesMut) -> Result<(), BoxError> {
            Ok(())
        }
        fn abort(&mut self, _failure: Failure, _message: &str, _out: &mut BytesMut) {}
    }

    /// Hands over one line per poll, and between lines says `Pending`:
    /// with `burst`, after waking its waker at once (the next line is
    /// already in the connection's buffer and comes a turn later, as
    /// hyper's client hands chunks over); without, the next line comes when
    /// the test sets `ready` (a model generating).
    struct HandOver {
        lines: VecDeque<Bytes>,
        ready: bool,
        burst: bool,
        polls: usize,
    }

    impl Body for HandOver {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.polls += 1;
            if !self.ready {
                if self.burst {
                    self.ready = true;
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            self.ready = false;
            Poll::Ready(self.lines.pop_front().map(|l| Ok(Frame::data(l))))
        }
    }

    fn lines(n: usize) -> VecDeque<Bytes> {
        (0..n)
            .map(|i| Bytes::from(format!("token {i}\n")))
            .collect()
    }

    fn echo(body: HandOver) -> TranslateBody<HandOver> {
        let limits = Limits {
            line: 1024,
            total: None,
        };
        TranslateBody::translate(body, Box::new(Echo), None, limits, None)
    }

    struct Noop;

    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    fn poll_once(body: &mut TranslateBody<HandOver>) -> Poll<Option<Bytes>> {
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        Pin::new(body)
            .poll_frame(&mut cx)
            .map(|f| f.map(|f| f.unwrap().into_data().unwrap()))
    }

    #[test]
    fn tokens_handed_over_one_per_turn_leave_together() {
        let mut body = echo(HandOver {
            lines: lines(200),
            ready: true,
            burst: true,
            polls: 0,
        });
        let (mut frames, mut text) = (0, Vec::new());
        for _ in 0..10_000 {
            match poll_once(&mut body) {
                Poll::Ready(Some(data)) => {
                    frames += 1;
                    text.extend_from_slice(&data);
                }
                Poll::Ready(None) => break,
                Poll::Pending => {}
            }
        }
        let want: Vec<u8> = lines(200).iter().flat_map(|l| l.to_vec()).collect();
        assert_eq!(text, want, "every token, in order");
        assert!(frames <= 2, "{frames} frames for 200 tokens");
    }

    #[test]
    fn paced_tokens_are_not_held_back() {
        let mut body = echo(HandOver {
            lines: lines(100),
            ready: false,
            burst: false,
            polls: 0,
        });
        let mut frames = 0;
        for i in 0..100 {
            // The next token arrives; until it leaves, the server polls.
            let Inner::Translate { body: inner, .. } = &mut body.inner else {
                unreachable!()
            };
            inner.ready = true;
            let before = inner.polls;
            let mut polls = 0;
            let data = loop {
                polls += 1;
                match poll_once(&mut body) {
                    Poll::Ready(Some(data)) => break data,
                    Poll::Ready(None) => panic!("ended early"),
                    Poll::Pending => assert!(polls <= 1 + GATHER_TURNS as usize),
                }
            };
            assert_eq!(data, format!("token {i}\n"), "each token on its own");
            frames += 1;
            let Inner::Translate { body: inner, .. } = &body.inner else {
                unreachable!()
            };
            assert!(inner.polls - before <= 2 + GATHER_TURNS as usize);
        }
        assert_eq!(frames, 100);
        // Waiting gained nothing, so it is tried less and less: over 100
        // tokens only a handful of rounds waited at all.
        let Inner::Translate { body: inner, .. } = &body.inner else {
            unreachable!()
        };
        assert!(
            inner.polls < 100 * 2 + 8 * GATHER_TURNS as usize,
            "{} polls",
            inner.polls
        );
    }

    /// Polls until the end: the frames' data, and the error if any.
    fn drain(body: &mut TranslateBody<HandOver>) -> (Vec<Bytes>, Option<BoxError>) {
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut frames = Vec::new();
        for _ in 0..100_000 {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => frames.push(f.into_data().unwrap()),
                Poll::Ready(Some(Err(e))) => return (frames, Some(e)),
                Poll::Ready(None) => return (frames, None),
                Poll::Pending => {}
            }
        }
        panic!("no end");
    }

    #[test]
    fn passed_through_bursts_leave_together_and_unchanged() {
        let inner = HandOver {
            lines: lines(300),
            ready: true,
            burst: true,
            polls: 0,
        };
        let mut body = TranslateBody::passthrough(inner);
        let (frames, err) = drain(&mut body);
        assert!(err.is_none());
        let all: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let want: Vec<u8> = lines(300).iter().flat_map(|l| l.to_vec()).collect();
        assert_eq!(all, want);
        assert!(frames.len() <= 2, "{} frames for 300 chunks", frames.len());
        assert!(body.is_end_stream());
    }

    /// Two chunks, then an error.
    struct Breaks(u8);

    impl Body for Breaks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0 += 1;
            Poll::Ready(Some(match self.0 {
                1 => Ok(Frame::data(Bytes::from("a"))),
                2 => Ok(Frame::data(Bytes::from("b"))),
                _ => Err("cut".into()),
            }))
        }
    }

    #[test]
    fn a_passed_through_error_comes_after_the_data_and_a_flush() {
        let mut body = TranslateBody::passthrough(Breaks(0));
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut poll = || Pin::new(&mut body).poll_frame(&mut cx);
        match poll() {
            Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().unwrap(), "ab"),
            other => panic!("{other:?}"),
        }
        assert!(poll().is_pending(), "a yield, so the data is written first");
        match poll() {
            Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "cut"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waiting_backs_off_while_it_gains_nothing_and_resumes_when_it_does() {
        let mut g = Gather::default();
        let mut waits = 0;
        for _ in 0..200 {
            while g.wait(10) {
                waits += 1;
            }
            g.sent();
        }
        // 1 + 2 + 4 + … + 64, then every 65 frames: a few rounds waited.
        assert!(waits <= 8 * GATHER_TURNS as usize, "{waits}");
        // A burst: waiting pays off, so the next round waits again at once.
        while g.skip > 0 {
            g.sent();
        }
        assert!(g.wait(10));
        g.arrived();
        g.sent();
        assert!(g.wait(10), "no backoff after a round that gained");
        assert!(!g.wait(GATHER_BYTES), "never past the frame size");
    }

    #[test]
    fn finds_the_first_newline() {
        assert_eq!(find_newline(b""), None);
        assert_eq!(find_newline(b"abc"), None);
        assert_eq!(find_newline(b"\n"), Some(0));
        assert_eq!(find_newline(b"0123456\n89\n"), Some(7));
        assert_eq!(find_newline(b"01234567\n"), Some(8));
        assert_eq!(find_newline("é\u{10a}\x0b\x09\n".as_bytes()), Some(6));
    }

    proptest! {
        /// Whatever Ollama sends, split anywhere: no panic, and what is
        /// held never passes the bound; a line over it ends the stream.
        #[test]
        fn upstream_bytes_never_grow_memory_past_the_bound(
            frames in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![1 => Just(b'\n'), 1 => Just(b'{'), 30 => any::<u8>()], 0..200),
                0..40,
            ),
            whole in any::<bool>(),
            collected in any::<bool>(),
        ) {
            const LIMIT: usize = 64;
            let limits = Limits { line: LIMIT, total: collected.then_some(4 * LIMIT) };
            let mut t = translator(whole, limits);
            let mut fed = 0;
            for f in &frames {
                if t.upstream_done {
                    break;
                }
                fed += f.len();
                t.feed(Bytes::copy_from_slice(f));
                prop_assert!(t.partial.len() <= LIMIT, "held {} bytes", t.partial.len());
            }
            if !t.upstream_done {
                t.eof();
            }
            let too_much = collected && fed > 4 * LIMIT;
            if !whole && !too_much {
                // Only a line over the limit fails the stream.
                let longest = frames.concat().split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
                prop_assert_eq!(t.error.is_some(), longest > LIMIT);
            }
        }

        #[test]
        fn agrees_with_a_byte_scan(s in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0x0b), Just(0x8a), any::<u8>()], 0..64)) {
            prop_assert_eq!(find_newline(&s), s.iter().position(|&b| b == b'\n'));
        }
    }
}
