//! The pool's response body: a host's, holding the host's in-flight count
//! until it ends, or one the pool wrote itself.

use crate::error::BoxError;
use bytes::{Buf, Bytes};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::load::completion::TrackCompletion;

pin_project! {
    /// The body of a [`Pool`](super::Pool)'s response.
    ///
    /// A host's body counts as a request in flight on that host until it
    /// ends, fails or is dropped, so a streamed answer weighs on the host
    /// for as long as it streams, not only until its headers.
    pub struct PoolBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Host { #[pin] body: B, handle: Option<InFlight> },
        Full { data: Option<Bytes> },
    }
}

impl<B> PoolBody<B> {
    /// A body the pool wrote itself.
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        PoolBody {
            inner: Inner::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B> Body for PoolBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Host { mut body, handle } => {
                let polled = body.as_mut().poll_frame(cx);
                let done = match &polled {
                    Poll::Ready(None | Some(Err(_))) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    Poll::Pending => false,
                };
                if done {
                    handle.take();
                }
                polled.map(|frame| {
                    frame.map(|r| {
                        r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                            .map_err(Into::into)
                    })
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Host { body, .. } => body.is_end_stream(),
            Inner::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Host { body, .. } => body.size_hint(),
            Inner::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for PoolBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Host { handle, .. } if handle.is_some() => "Host (in flight)",
            Inner::Host { .. } => "Host",
            Inner::Full { .. } => "Full",
        };
        f.debug_struct("PoolBody").field("kind", &kind).finish()
    }
}

/// One request in flight on a host: counted from the call until it is
/// dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(crate) fn start(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Moves a request's [`InFlight`] into its response's body, so that a
/// stream counts until it ends, not until its headers (tower's
/// `CompleteOnResponse` would drop it there).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UntilEos;

impl<B: Body> TrackCompletion<InFlight, Response<B>> for UntilEos {
    type Output = Response<PoolBody<B>>;

    fn track_completion(&self, handle: InFlight, res: Response<B>) -> Self::Output {
        res.map(|body| {
            let handle = (!body.is_end_stream()).then_some(handle);
            PoolBody {
                inner: Inner::Host { body, handle },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::load::completion::TrackCompletionFuture;

    /// A body fed through a channel.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    fn counted<B: Body>(
        count: &Arc<AtomicUsize>,
        res: Response<B>,
    ) -> TrackCompletionFuture<std::future::Ready<Result<Response<B>, BoxError>>, UntilEos, InFlight>
    {
        TrackCompletionFuture::new(
            UntilEos,
            InFlight::start(count),
            std::future::ready(Ok(res)),
        )
    }

    #[tokio::test]
    async fn a_stream_is_in_flight_until_its_body_ends() {
        let count = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let fut = counted(&count, Response::new(Fed(rx)));
        assert_eq!(count.load(Ordering::Acquire), 1, "called");
        let res = fut.await.unwrap();
        assert_eq!(
            count.load(Ordering::Acquire),
            1,
            "headers are in, the body is not"
        );
        let mut body = res.into_body();
        tx.send(Bytes::from("a")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        assert_eq!(count.load(Ordering::Acquire), 1);
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(count.load(Ordering::Acquire), 0, "the body ended");
    }

    #[tokio::test]
    async fn a_dropped_body_or_future_is_no_longer_in_flight() {
        let count = Arc::new(AtomicUsize::new(0));
        let full = || Response::new(http_body_util::Full::new(Bytes::from("x")));
        let res = counted(&count, full()).await.unwrap();
        assert_eq!(count.load(Ordering::Acquire), 1);
        drop(res);
        assert_eq!(count.load(Ordering::Acquire), 0);
        drop(counted(&count, full()));
        assert_eq!(count.load(Ordering::Acquire), 0);
        // An empty body is done at its headers.
        let empty = Response::new(http_body_util::Empty::<Bytes>::new());
        let res = counted(&count, empty).await.unwrap();
        assert_eq!(count.load(Ordering::Acquire), 0);
        drop(res);
    }
}
