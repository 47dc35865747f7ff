//! The pool's response body: a host's, holding the host's in-flight count
//! until it ends, or one the pool wrote itself.

use crate::error::BoxError;
use bytes::{Buf, Bytes};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
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
        Host { #[pin] body: B, handle: Option<tower::load::pending_requests::Handle> },
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

/// Moves a request's in-flight handle into its response's body
/// ([`tower::load::PendingRequests`] would otherwise count it done at the
/// headers).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UntilEos;

impl<B: Body> TrackCompletion<tower::load::pending_requests::Handle, Response<B>> for UntilEos {
    type Output = Response<PoolBody<B>>;

    fn track_completion(
        &self,
        handle: tower::load::pending_requests::Handle,
        res: Response<B>,
    ) -> Self::Output {
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
    use tower::load::{Load, PendingRequests};
    use tower::{service_fn, Service, ServiceExt};

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

    fn counts(n: usize) -> tower::load::pending_requests::Count {
        // `Count` shows no number; compare with a service holding `n`.
        let mut idle = PendingRequests::new(
            service_fn(|_: ()| async { Ok::<_, BoxError>(()) }),
            tower::load::CompleteOnResponse::default(),
        );
        let held: Vec<_> = (0..n).map(|_| idle.call(())).collect();
        let load = idle.load();
        drop(held);
        load
    }

    #[tokio::test]
    async fn a_stream_is_in_flight_until_its_body_ends() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let rx = std::sync::Mutex::new(Some(rx));
        let host = service_fn(move |_req: ()| {
            let rx = rx.lock().unwrap().take().unwrap();
            async move { Ok::<_, BoxError>(Response::new(Fed(rx))) }
        });
        let mut counted = PendingRequests::new(host, UntilEos);
        let res = counted.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(counted.load(), counts(1), "headers are in, the body is not");
        let mut body = res.into_body();
        tx.send(Bytes::from("a")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        assert_eq!(counted.load(), counts(1));
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(counted.load(), counts(0), "the body ended");
    }

    #[tokio::test]
    async fn a_dropped_body_is_no_longer_in_flight() {
        let host = service_fn(|_req: ()| async {
            Ok::<_, BoxError>(Response::new(http_body_util::Full::new(Bytes::from("x"))))
        });
        let mut counted = PendingRequests::new(host, UntilEos);
        let res = counted.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(counted.load(), counts(1));
        drop(res);
        assert_eq!(counted.load(), counts(0));
    }
}
