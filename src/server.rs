//! [`serve`]: a tower service on a caller's `TcpListener` (feature `server`).
//!
//! Like `axum::serve`, with the bounds a proxy in front of a slow upstream
//! needs:
//!
//! * **Connections at once**: past [`Serve::max_connections`], a reserve of
//!   [`RESERVED_CONNECTIONS`] more is served, each request carrying the
//!   [`Reserved`] extension (a [`Health`](crate::health::Health) answers
//!   its health endpoints and refuses the rest with a 503); past those, a
//!   connection is closed as soon as it is accepted.
//! * **Timeouts** ([`Serve::client_timeout`]): the first byte of a
//!   connection, each HTTP/1 request head, and a connection (HTTP/1 or
//!   HTTP/2) that has had nothing in flight that long.
//! * **Graceful shutdown** ([`Serve::run`]): when the signal resolves,
//!   [`Serve::drain`] more accepting (a readiness check can report it:
//!   [`Serve::on_shutdown`]), then no new connections; idle ones close at
//!   once, the others after their requests, for up to [`Serve::grace`].
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge) are both served, by hyper-util's
//! `auto::Builder` with tokio's timer.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ollama_translate::BoxError> {
//! let svc = tower::service_fn(|_req: Request<hyper::body::Incoming>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hi"))))
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! ollama_translate::server::serve(listener, svc)
//!     .max_connections(512)
//!     .client_timeout(Duration::from_secs(30))
//!     .grace(Duration::from_secs(30))
//!     .run(async { /* e.g. tokio::signal::ctrl_c() */ })
//!     .await?;
//! # Ok(())
//! # }
//! ```

use crate::BoxError;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

/// Connections past [`Serve::max_connections`] that are still served, for
/// what answers [`Reserved`] requests (health endpoints): so that an
/// orchestrator can tell a busy server from a dead one.
pub const RESERVED_CONNECTIONS: usize = 16;

/// How long a connection of the reserve may take to send its first byte,
/// and may then sit with nothing in flight.
pub const RESERVED_FOR: Duration = Duration::from_secs(2);

/// How long a connection asked to close (HTTP/2's GOAWAY exchange) may
/// take once it has nothing in flight, before it is dropped.
const LINGER: Duration = Duration::from_millis(200);

/// The extension of every request on a connection past
/// [`Serve::max_connections`]: the cap. Such a connection serves one
/// request, then closes.
///
/// See the [module docs](crate::server) for more details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The cap that was reached.
    pub max_connections: usize,
}

/// A server being set up; [`Serve::run`] serves.
///
/// See the [module docs](crate::server) for more details.
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    max_connections: usize,
    client_timeout: Duration,
    drain: Duration,
    grace: Duration,
    on_shutdown: Option<Box<dyn FnOnce() + Send>>,
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("max_connections", &self.max_connections)
            .field("client_timeout", &self.client_timeout)
            .field("drain", &self.drain)
            .field("grace", &self.grace)
            .finish()
    }
}

/// Serves `service` on `listener` (each connection a clone of it).
///
/// See the [module docs](crate::server) for more details.
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        max_connections: 512,
        client_timeout: Duration::from_secs(30),
        drain: Duration::ZERO,
        grace: Duration::from_secs(30),
        on_shutdown: None,
    }
}

impl<S> Serve<S> {
    /// Client connections served at once (default 512; at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a connection may take to send its first byte and each
    /// request head, and may sit with nothing in flight (default 30 s;
    /// zero: no limit).
    pub fn client_timeout(mut self, d: Duration) -> Self {
        self.client_timeout = d;
        self
    }

    /// Once the shutdown signal resolves, how long new connections are
    /// still accepted (default: none).
    pub fn drain(mut self, d: Duration) -> Self {
        self.drain = d;
        self
    }

    /// Once accepting has stopped, how long requests in flight may take to
    /// finish before their connections are dropped (default 30 s).
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// Called once, when the shutdown signal resolves (before the drain):
    /// say, to make a readiness check fail.
    pub fn on_shutdown(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_shutdown = Some(Box::new(f));
        self
    }
}

impl<S, B> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Serves until `shutdown` resolves, then shuts down gracefully (see
    /// the [module docs](crate::server)). An error only if the listener's
    /// address cannot be read; failed accepts are logged and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let Serve {
            listener,
            service,
            max_connections,
            client_timeout,
            drain,
            grace,
            mut on_shutdown,
        } = self;
        listener.local_addr()?;
        let timeout = Some(client_timeout).filter(|d| !d.is_zero());
        let builder = builder(timeout);
        // Past the cap: one request a connection.
        let mut limited_builder = builder.clone();
        limited_builder.http1().keep_alive(false);
        let capacity = Capacity::new(max_connections);
        let (phase, phase_rx) = watch::channel(Phase::Serving);
        // Every connection task holds a sender: when all are gone, all ended.
        let (alive, all_ended) = tokio::sync::mpsc::channel::<()>(1);
        let mut full = false;
        tokio::pin!(shutdown);
        let drained = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(drained);
        let mut draining = false;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some(place) = capacity.take() else {
                        tracing::debug!("connection closed: the maximum and the reserve are taken");
                        continue;
                    };
                    if place.reserved.is_some() && !full {
                        tracing::warn!(max = max_connections, "the maximum of connections is reached: \
                            new ones are served as `Reserved` (health endpoints only)");
                    }
                    full = place.reserved.is_some();
                    let conn = Connection {
                        stream,
                        builder: if full { limited_builder.clone() } else { builder.clone() },
                        timeout: if full { Some(RESERVED_FOR) } else { timeout },
                        phases: phase_rx.clone(),
                    };
                    let (svc, alive) = (service.clone(), alive.clone());
                    tokio::spawn(async move {
                        let reserved = place.reserved;
                        let _held = (place, alive);
                        conn.serve(svc, reserved).await;
                    });
                }
                () = &mut shutdown, if !draining => {
                    if let Some(f) = on_shutdown.take() {
                        f();
                    }
                    if drain.is_zero() {
                        break;
                    }
                    tracing::info!(secs = drain.as_secs(), "shutting down: still accepting for the drain period");
                    draining = true;
                    drained.as_mut().reset(tokio::time::Instant::now() + drain);
                }
                () = &mut drained, if draining => break,
            }
        }
        drop((listener, alive));
        stop(phase, all_ended, grace).await;
        Ok(())
    }
}

/// Lets the connections finish what is in flight (up to `grace`), then
/// drops them: every connection task holds a sender of `all_ended`.
async fn stop(
    phase: watch::Sender<Phase>,
    mut all_ended: tokio::sync::mpsc::Receiver<()>,
    grace: Duration,
) {
    tracing::info!("shutting down; waiting for in-flight requests");
    phase.send_replace(Phase::Stopping);
    tokio::select! {
        _ = all_ended.recv() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over; dropping remaining connections");
            phase.send_replace(Phase::Stopped);
            let _ = tokio::time::timeout(Duration::from_secs(1), all_ended.recv()).await;
        }
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there are signals (what
/// `docker stop` and Kubernetes send): a shutdown signal for [`Serve::run`].
///
/// ```no_run
/// # async fn f(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// # let svc = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// # });
/// use ollama_translate::server::{serve, shutdown_signal};
/// serve(listener, svc).run(shutdown_signal()).await
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => drop(s.recv().await),
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The connection settings: tokio's timer (without one hyper's timeouts do
/// nothing); HTTP/1 request heads bounded by `timeout`; HTTP/2 connections
/// pinged to find dead peers. hyper has no idle timeout for HTTP/2 (a peer
/// that answers PINGs stays): [`Connection::serve`] closes a connection of
/// either kind that has had nothing in flight for `timeout`.
fn builder(timeout: Option<Duration>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// How many connections may be open at once, and the reserve past that.
struct Capacity {
    max: usize,
    main: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
}

/// A connection's place: `reserved` when it was taken from the reserve.
struct Place {
    reserved: Option<Reserved>,
    _permit: OwnedSemaphorePermit,
}

impl Capacity {
    fn new(max: usize) -> Capacity {
        Capacity {
            max,
            main: Arc::new(Semaphore::new(max)),
            reserve: Arc::new(Semaphore::new(RESERVED_CONNECTIONS)),
        }
    }

    /// A place for a new connection: a full one while there is one, else
    /// one of the reserve, else none (the connection is to be closed).
    fn take(&self) -> Option<Place> {
        if let Ok(permit) = self.main.clone().try_acquire_owned() {
            return Some(Place {
                reserved: None,
                _permit: permit,
            });
        }
        let permit = self.reserve.clone().try_acquire_owned().ok()?;
        Some(Place {
            reserved: Some(Reserved {
                max_connections: self.max,
            }),
            _permit: permit,
        })
    }
}

/// Where the server is in its life, as its connections see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Connections with nothing in flight close at once, the others once
    /// their requests are answered.
    Stopping,
    /// The grace period is over: every connection is dropped.
    Stopped,
}

/// Resolves once `rx` says `phase` (or later), or its sender is gone.
async fn reached(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    let _ = rx.wait_for(|p| *p >= phase).await;
}

/// One accepted connection and how it is to be served.
struct Connection {
    stream: TcpStream,
    builder: auto::Builder<TokioExecutor>,
    /// First byte and idle time.
    timeout: Option<Duration>,
    phases: watch::Receiver<Phase>,
}

impl Connection {
    /// Serves the connection: closed when nothing has been sent on it in
    /// time, when nothing has been in flight on it for the timeout, at once
    /// when a shutdown starts and nothing is in flight (else once what is
    /// in flight is answered), and dropped when the grace period is over.
    async fn serve<S, B>(self, svc: S, reserved: Option<Reserved>)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Connection {
            stream,
            builder,
            timeout,
            phases,
        } = self;
        let _ = stream.set_nodelay(true);
        let (mut stopping, mut stopped) = (phases.clone(), phases);
        // The first bytes say the protocol. A peer that sends nothing is
        // dropped at the deadline (hyper-util's own sniffing has no timer).
        let mut first = [0u8; H2_PREFACE.len()];
        let peek = async {
            match timeout {
                Some(d) => tokio::time::timeout(d, stream.peek(&mut first)).await.ok(),
                None => Some(stream.peek(&mut first).await),
            }
        };
        let peeked = tokio::select! {
            peeked = peek => peeked,
            () = reached(&mut stopping, Phase::Stopping) => return,
        };
        let builder = match peeked {
            Some(Ok(n)) if n > 0 => protocol(builder, &first[..n]),
            _ => {
                tracing::debug!("connection closed: nothing sent in time");
                return;
            }
        };
        let (counter, mut in_flight) = watch::channel(0usize);
        let svc = Counting {
            inner: svc,
            in_flight: Arc::new(counter),
            reserved,
        };
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        // Asked to close (HTTP/1: after the response in flight; HTTP/2: a
        // GOAWAY); dropped if it has not within `LINGER` of going idle.
        let mut closing = false;
        loop {
            let wait = if closing { Some(LINGER) } else { timeout };
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = idle_for(&mut in_flight, wait) => {
                    if closing {
                        return;
                    }
                    tracing::debug!("closing a connection idle for the client timeout");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = reached(&mut stopping, Phase::Stopping), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = reached(&mut stopped, Phase::Stopped) => return,
            }
        }
    }
}

/// What an HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The builder for a connection whose first bytes are `first`: HTTP/1 or
/// HTTP/2 only when they say which, else hyper-util's own sniffing (a
/// preface cut short). Sniffing hands hyper its first 24 bytes as a read of
/// their own, after which hyper's HTTP/1 read buffer doubles to 16 KiB for
/// the connection's life: deciding here keeps it at 8 KiB.
fn protocol(builder: auto::Builder<TokioExecutor>, first: &[u8]) -> auto::Builder<TokioExecutor> {
    if !H2_PREFACE.starts_with(first) {
        builder.http1_only()
    } else if first.len() == H2_PREFACE.len() {
        builder.http2_only()
    } else {
        builder
    }
}

/// Resolves once the connection has had nothing in flight for `after`
/// (never, with `None`): a request that starts meanwhile starts the wait
/// over.
async fn idle_for(rx: &mut watch::Receiver<usize>, after: Option<Duration>) {
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

/// A connection's service: counts its requests in flight (from the call to
/// the end of the response body) and marks reserved ones.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    in_flight: Arc<watch::Sender<usize>>,
    reserved: Option<Reserved>,
}

impl<S, B> Service<Request<Incoming>> for Counting<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<Counted<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(r) = self.reserved {
            req.extensions_mut().insert(r);
        }
        self.in_flight.send_modify(|n| *n += 1);
        let guard = Guard(self.in_flight.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await.map_err(Into::into)?;
            Ok(res.map(|body| Counted {
                body: Box::pin(body),
                _guard: guard,
            }))
        })
    }
}

/// One request in flight.
struct Guard(Arc<watch::Sender<usize>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in flight until it
/// has been sent (or dropped).
struct Counted<B> {
    body: Pin<Box<B>>,
    _guard: Guard,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.body.as_mut().poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;

    #[test]
    fn the_first_bytes_pick_the_protocol() {
        let b = || builder(None);
        let h1 = protocol(b(), b"POST /v1/messages HTTP/1.1\r\n");
        assert!(h1.is_http1_available() && !h1.is_http2_available());
        let h2 = protocol(b(), H2_PREFACE);
        assert!(h2.is_http2_available() && !h2.is_http1_available());
        // A preface cut short: hyper-util reads on and decides.
        let either = protocol(b(), b"PRI * HTTP/2");
        assert!(either.is_http1_available() && either.is_http2_available());
        // "P" could start either (POST, PRI).
        let either = protocol(b(), b"P");
        assert!(either.is_http1_available() && either.is_http2_available());
    }

    async fn started(
        max: usize,
    ) -> (
        String,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let svc = tower::service_fn(|req: Request<Incoming>| async move {
            let body = match req.extensions().get::<Reserved>() {
                Some(r) => format!("reserved {}", r.max_connections),
                None => "served".into(),
            };
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, svc)
                .max_connections(max)
                .grace(Duration::from_secs(1))
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        (url, stop, task)
    }

    async fn get(url: &str) -> String {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let res = client.get(url.parse().unwrap()).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_and_shuts_down() {
        let (url, stop, task) = started(4).await;
        assert_eq!(get(&url).await, "served");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_shutdown_is_announced_then_drains_then_stops_accepting() {
        let svc = tower::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let announced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = announced.clone();
        let task = tokio::spawn(
            serve(listener, svc)
                .drain(Duration::from_millis(300))
                .on_shutdown(move || seen.store(true, std::sync::atomic::Ordering::SeqCst))
                .run(async {}),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(announced.load(std::sync::atomic::Ordering::SeqCst));
        // Still accepting during the drain…
        assert_eq!(get(&format!("http://{addr}")).await, "ok");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // …and not after.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_the_client_timeout() {
        use tokio::io::AsyncReadExt;
        let svc = tower::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _task = tokio::spawn(
            serve(listener, svc)
                .client_timeout(Duration::from_millis(200))
                .run(std::future::pending()),
        );
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    }

    #[tokio::test]
    async fn past_the_cap_requests_are_marked_reserved() {
        let (url, _stop, _task) = started(1).await;
        let addr = url.trim_start_matches("http://");
        // An open connection takes the one place.
        let held = TcpStream::connect(addr).await.unwrap();
        held.writable().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(get(&url).await, "reserved 1");
        drop(held);
    }
}
