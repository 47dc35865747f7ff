//! The request body handed to the inner service.

use crate::error::{BoxError, StreamError};
use crate::timer::{Pace, PACE_BYTES};
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A frame of `body` as it is, its data as [`Bytes`] and its error boxed.
pub(super) fn poll_as_bytes<B>(
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
