//! The proxy's client connections: how many it serves at once, when one
//! that has nothing in flight is closed (idle for `CLIENT_TIMEOUT_SECS`,
//! HTTP/2 too, or at once when a shutdown starts), and what a connection
//! past the cap may still ask (`/livez`, `/healthz`, `/readyz`).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Connections past `MAX_CONNECTIONS` that are still served, for the health
/// endpoints only (every other request is a 503): so that an orchestrator
/// can tell a busy proxy from a dead one. Past these too, a connection is
/// closed as soon as it is accepted.
pub const RESERVED_CONNECTIONS: usize = 16;

/// How long a connection of the reserve may take to send its first byte,
/// and may then sit with nothing in flight.
pub const RESERVED_FOR: Duration = Duration::from_secs(2);

/// How long a connection with nothing in flight is given to close by
/// itself (HTTP/2's GOAWAY exchange) once it was asked to, before it is
/// dropped.
pub const LINGER: Duration = Duration::from_millis(200);

/// How many connections may be open at once, and the reserve past that.
#[derive(Clone, Debug)]
pub struct Capacity {
    max: usize,
    main: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
}

/// A connection's place: `limited` when it was taken from the reserve.
pub struct Place {
    pub limited: bool,
    _permit: OwnedSemaphorePermit,
}

impl Capacity {
    pub fn new(max: usize) -> Capacity {
        Capacity {
            max,
            main: Arc::new(Semaphore::new(max)),
            reserve: Arc::new(Semaphore::new(RESERVED_CONNECTIONS)),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for a new connection: a full one while there is one, else
    /// one of the reserve, else none (the connection is to be closed).
    pub fn take(&self) -> Option<Place> {
        if let Ok(permit) = self.main.clone().try_acquire_owned() {
            return Some(Place {
                limited: false,
                _permit: permit,
            });
        }
        let permit = self.reserve.clone().try_acquire_owned().ok()?;
        Some(Place {
            limited: true,
            _permit: permit,
        })
    }
}

/// How many requests one connection has in flight: counted from the
/// service's call to the end (or drop) of the response body.
#[derive(Clone, Debug)]
pub struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    /// A counter at zero, and the receiver its connection task watches.
    pub fn new() -> (InFlight, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (InFlight(Arc::new(tx)), rx)
    }

    /// One more request in flight, until the guard is dropped.
    pub fn begin(&self) -> Guard {
        self.0.send_modify(|n| *n += 1);
        Guard(self.0.clone())
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct Guard(Arc<watch::Sender<usize>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in flight until it
/// has been sent (or dropped).
pub struct Counted<B> {
    body: B,
    _guard: Guard,
}

impl<B> Counted<B> {
    pub fn new(body: B, guard: Guard) -> Self {
        Counted {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once the connection has had nothing in flight for `after`
/// (never, with `None`): a request that starts meanwhile starts the wait
/// over.
pub async fn idle_for(rx: &mut watch::Receiver<usize>, after: Option<Duration>) {
    let Some(after) = after else {
        return std::future::pending().await;
    };
    loop {
        if rx.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        match tokio::time::timeout(after, rx.changed()).await {
            Err(_) => return,
            Ok(Ok(())) => {}
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// Where the server is in its life, as its connections see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Shutting down: connections with nothing in flight close at once,
    /// the others once their requests are answered.
    Stopping,
    /// The grace period is over: every connection is dropped.
    Stopped,
}

/// Resolves once `rx` says `phase` (or later), or its sender is gone.
pub async fn reached(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    let _ = rx.wait_for(|p| *p >= phase).await;
}
