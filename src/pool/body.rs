//! The pool's response body: a host's, holding the host's in-flight count
//! until it ends and telling the host's state how it ended, or one the pool
//! wrote itself.

use super::Core;
use crate::error::BoxError;
use crate::timer::Sleep;
use bytes::{Buf, Bytes};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::load::completion::TrackCompletion;

pin_project! {
    /// The body of a [`Pool`](super::Pool)'s response: opaque, named only
    /// in bounds (a [`Body`] of [`Bytes`] whose error is a
    /// [`BoxError`]).
    ///
    /// A host's body counts as a request in flight on that host until it
    /// ends, fails or is dropped, so a streamed answer weighs on the host
    /// for as long as it streams, not only until its headers. The answer to
    /// a request that names a model also tells the pool how it ended: to
    /// its end (a success), broken off (a failure of the host), silent past
    /// the pool's [first-byte timeout](super::PoolBuilder::first_byte_timeout)
    /// (a failure, and this body ends with an error), or dropped by its
    /// reader (neither).
    pub struct PoolBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Host { #[pin] body: B, handle: Option<InFlight>, watch: Option<Watch> },
        Full { data: Option<Bytes> },
    }
}

/// Who to tell how a host's answer ends, and how long its first byte may
/// take.
pub(crate) struct Watch {
    core: Arc<Core>,
    host: usize,
    /// Until the first byte: the deadline, and the timeout it came from.
    first_byte: Option<(Sleep, Duration)>,
}

impl Watch {
    pub(crate) fn new(core: Arc<Core>, host: usize, first_byte: Option<(Sleep, Duration)>) -> Self {
        Watch {
            core,
            host,
            first_byte,
        }
    }
}

/// What one poll of a host's body saw.
enum Seen {
    /// Nothing new (or an empty frame).
    Nothing,
    /// Some bytes.
    Byte,
    /// Its end.
    End,
    /// An error: the host's stream broke off.
    Broken,
    /// Nothing, past the first-byte timeout (how long that is).
    Silent(Duration),
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

    /// Tells `watch` how this host's body ends (at once if it has ended).
    pub(crate) fn watch(&mut self, watch: Watch)
    where
        B: Body,
    {
        if let Inner::Host { body, watch: w, .. } = &mut self.inner {
            if body.is_end_stream() {
                watch.core.success(watch.host);
            } else {
                *w = Some(watch);
            }
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
        let mut inner = self.project().inner;
        let (polled, silent) = match inner.as_mut().project() {
            InnerProj::Full { data } => {
                return Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            InnerProj::Host {
                mut body,
                handle,
                watch,
            } => {
                let polled = body.as_mut().poll_frame(cx);
                let seen = match &polled {
                    Poll::Ready(None) => Seen::End,
                    Poll::Ready(Some(Err(_))) => Seen::Broken,
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => Seen::End,
                    Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                        Some(d) if d.has_remaining() => Seen::Byte,
                        _ => Seen::Nothing,
                    },
                    Poll::Pending => match watch.as_mut().and_then(|w| w.first_byte.as_mut()) {
                        Some((sleep, after)) => match sleep.as_mut().poll(cx) {
                            Poll::Ready(()) => Seen::Silent(*after),
                            Poll::Pending => Seen::Nothing,
                        },
                        None => Seen::Nothing,
                    },
                };
                if !matches!(seen, Seen::Nothing | Seen::Byte) {
                    handle.take();
                }
                let mut silent = None;
                match (seen, watch) {
                    (Seen::Nothing, _) | (_, None) => {}
                    (Seen::Byte, Some(w)) => w.first_byte = None,
                    (Seen::End, w) => w.take().into_iter().for_each(|w| w.core.success(w.host)),
                    (Seen::Broken, w) => w
                        .take()
                        .into_iter()
                        .for_each(|w| w.core.stream_died(w.host)),
                    (Seen::Silent(after), w) => {
                        if let Some(w) = w.take() {
                            w.core.failure(w.host, "silent after its head");
                            silent = Some(format!(
                                "Ollama host {} sent nothing within {} s of its response head",
                                w.core.name(w.host),
                                after.as_secs_f64()
                            ));
                        }
                    }
                }
                (polled, silent)
            }
        };
        if let Some(message) = silent {
            // Drop the host's body: its connection closes and Ollama stops.
            inner.set(Inner::Full { data: None });
            return Poll::Ready(Some(Err(message.into())));
        }
        polled.map(|frame| {
            frame.map(|r| {
                r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                    .map_err(Into::into)
            })
        })
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
                inner: Inner::Host {
                    body,
                    handle,
                    watch: None,
                },
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

    /// A body fed through a channel, errors included.
    struct Fallible(tokio::sync::mpsc::Receiver<Result<Bytes, &'static str>>);

    impl Body for Fallible {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|d| d.map(|d| d.map(Frame::data).map_err(Into::into)))
        }
    }

    /// The core of a pool of one host that is up.
    fn core() -> Arc<Core> {
        let timer = |d: Duration| -> Sleep { Box::pin(tokio::time::sleep(d)) };
        let pool = super::super::Pool::builder(timer)
            .build([("http://h", ())])
            .unwrap();
        let core = pool.shared.core.clone();
        core.update(0, |h| h.health = super::super::state::Health::Up);
        core
    }

    fn healthy(core: &Core) -> bool {
        core.lock_fleet().hosts[0].healthy(core.timer.now())
    }

    /// A watched body of host 0, and what feeds it.
    fn watched(
        core: &Arc<Core>,
        count: &Arc<AtomicUsize>,
        first_byte: Option<Duration>,
    ) -> (
        PoolBody<Fallible>,
        tokio::sync::mpsc::Sender<Result<Bytes, &'static str>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let res = UntilEos.track_completion(InFlight::start(count), Response::new(Fallible(rx)));
        let mut body = res.into_body();
        let first_byte =
            first_byte.map(|after| (core.timer.sleep_until(core.timer.now() + after), after));
        body.watch(Watch::new(core.clone(), 0, first_byte));
        (body, tx)
    }

    #[tokio::test]
    async fn streams_that_break_off_in_a_row_eject_their_host() {
        let core = core();
        let count = Arc::new(AtomicUsize::new(0));
        let broken = || async {
            let (mut body, tx) = watched(&core, &count, None);
            tx.send(Ok(Bytes::from("{}\n"))).await.unwrap();
            tx.send(Err("connection reset")).await.unwrap();
            assert!(body.frame().await.unwrap().is_ok());
            assert!(body.frame().await.unwrap().is_err());
        };
        broken().await;
        broken().await;
        assert!(healthy(&core), "two failures do not eject");
        assert!(
            core.wake.asked.load(Ordering::Acquire),
            "a probe is asked for"
        );
        // A stream to its end forgets them.
        let (mut body, tx) = watched(&core, &count, None);
        tx.send(Ok(Bytes::from("{}\n"))).await.unwrap();
        drop(tx);
        while body.frame().await.is_some() {}
        broken().await;
        broken().await;
        assert!(healthy(&core));
        // A body dropped half-way (its reader went away) counts for nothing.
        let (mut body, tx) = watched(&core, &count, None);
        tx.send(Ok(Bytes::from("{}\n"))).await.unwrap();
        assert!(body.frame().await.is_some());
        drop(body);
        assert!(healthy(&core));
        broken().await;
        assert!(!healthy(&core), "the third in a row ejects it");
        assert_eq!(count.load(Ordering::Acquire), 0, "none is in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_silent_after_its_head_fails_the_body_at_the_first_byte_timeout() {
        let core = core();
        let count = Arc::new(AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        let (mut body, tx) = watched(&core, &count, Some(Duration::from_secs(5)));
        assert_eq!(count.load(Ordering::Acquire), 1);
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(
            err.to_string()
                .contains("http://h sent nothing within 5 s of its response head"),
            "{err}"
        );
        assert!(body.frame().await.is_none(), "then it ends");
        assert!(tx.is_closed(), "the host's body is dropped");
        assert_eq!(count.load(Ordering::Acquire), 0);
        // A first byte in time disarms it.
        let (mut body, tx) = watched(&core, &count, Some(Duration::from_secs(5)));
        tx.send(Ok(Bytes::from("{"))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let slow = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            tx.send(Ok(Bytes::from("}\n"))).await.unwrap();
        });
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "}\n"
        );
        slow.await.unwrap();
        // Two more silences: ejected.
        for _ in 0..2 {
            let (mut body, _tx) = watched(&core, &count, Some(Duration::from_secs(5)));
            assert!(body.frame().await.unwrap().is_err());
        }
        assert!(!healthy(&core));
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
