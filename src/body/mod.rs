//! The response body that translates Ollama's stream as it flows, and the
//! request body handed to the inner service.
//!
//! [`TranslateBody`] is here; a translated one drives a [`Transcode`];
//! `translate` splits and translates the upstream lines (`Translator`),
//! `gather` coalesces writes (`Gather`, and `Held` for bodies passed
//! through), and `request` is the body the inner service receives.

mod gather;
mod request;
mod translate;

#[cfg(test)]
mod tests;

pub use self::request::RequestBody;

use self::gather::{Gather, Held, GATHER_BYTES};
use self::request::poll_as_bytes;
use self::translate::Translator;
use crate::agent::Rounds;
use crate::error::BoxError;
use crate::telemetry::Meter;
use crate::timer::Deadlines;
use crate::transcode::Transcode;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
use sync_wrapper::SyncWrapper;

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
    /// A layer told not to
    /// [coalesce bodies passed through](crate::OllamaTranslateLayer::coalesce_passthrough)
    /// hands those out frame for frame, as the inner body cut them.
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
    /// It is `Send` and `Sync` when the inner body is, so it boxes as
    /// [`BoxBody`](http_body_util::combinators::BoxBody) as well as
    /// `UnsyncBoxBody`, whatever the [`Timer`](crate::Timer)'s sleeps and a
    /// web search's futures are.
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
        // Passed through frame for frame, as the inner body cuts them.
        Untouched { #[pin] body: B },
        Translate { #[pin] body: B, state: Box<Translator>, agent: Option<SyncWrapper<Box<dyn Rounds<B>>>> },
        Full { data: Option<Bytes> },
    }
}

impl<B> TranslateBody<B> {
    /// A body passed through: its chunks that come together leave in one
    /// frame when `coalesce`, else frame for frame.
    pub(crate) fn passthrough(body: B, coalesce: bool) -> Self {
        let inner = if coalesce {
            Inner::Passthrough {
                body,
                held: Held::default(),
            }
        } else {
            Inner::Untouched { body }
        };
        TranslateBody {
            inner,
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
                agent: agent.map(SyncWrapper::new),
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
        !matches!(
            self.inner,
            Inner::Passthrough { .. } | Inner::Untouched { .. }
        )
    }
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
            InnerProj::Untouched { body } => poll_as_bytes(body, cx),
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Translate {
                mut body,
                state,
                agent,
            } => loop {
                if state.gather.yield_after_first(cx) {
                    return Poll::Pending;
                }
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
                let polled = match agent.as_mut().map(|a| &mut **a.get_mut()) {
                    Some(agent) if state.between_rounds => {
                        state.poll_agent(body.as_mut(), agent, cx)
                    }
                    _ => state.poll_upstream(body.as_mut(), cx),
                };
                match polled {
                    // The first frame leaves with the first chunk that gave
                    // it anything (streams; see `Gather`).
                    Poll::Ready(())
                        if state.gather.first
                            && !state.out.is_empty()
                            && state.total_limit.is_none() =>
                    {
                        state.gather.flush = true;
                        return Poll::Ready(Some(Ok(state.frame())));
                    }
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
            Inner::Untouched { body } => body.is_end_stream(),
            Inner::Full { data } => data.is_none(),
            Inner::Translate { state, .. } => state.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Passthrough { body, held } if held.is_empty() => body.size_hint(),
            Inner::Passthrough { .. } => SizeHint::default(),
            Inner::Untouched { body } => body.size_hint(),
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
            Inner::Untouched { .. } => "Untouched",
            Inner::Translate { .. } => "Translate",
            Inner::Full { .. } => "Full",
        };
        f.debug_struct("TranslateBody")
            .field("kind", &kind)
            .finish()
    }
}
