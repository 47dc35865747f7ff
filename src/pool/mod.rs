//! [`Pool`]: several Ollama hosts behind one service that speaks Ollama's
//! native API (the `pool` cargo feature).
//!
//! What an embedder names: [`Pool`] and its [`PoolBuilder`], [`HostStatus`]
//! (what [`Pool::hosts`] reports), [`Maintain`] (the future that keeps the
//! pool's view of its hosts fresh, to spawn), and, in bounds only, the
//! response body [`PoolBody`] and the response future [`PoolFuture`]
//! (both opaque). Behind a [`OllamaTranslateLayer`](crate::OllamaTranslateLayer)
//! the pool takes the model and the conversation from the request's
//! [`Routing`](crate::Routing) extension instead of reading its body.

mod attempt;
mod body;
mod maintain;
mod route;
mod state;

pub use self::body::PoolBody;
pub use self::maintain::Maintain;

use self::attempt::{Attempt, Failover, Tries};
use self::body::{InFlight, UntilEos};
use self::state::{choose, Choice, Health, HostState, Sessions, Want};
use crate::body::RequestBody;
use crate::error::BoxError;
use crate::limits::{Budget, Hold, ReadBody};
use crate::ollama::request::Endpoint;
use crate::telemetry;
use crate::timer::{Sleep, Timer};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tower::load::completion::TrackCompletionFuture;
use tower::load::Load;
use tower::retry::Retry;
use tower_service::Service;

/// The most hosts a pool holds (a bit each in a `u64`).
pub(crate) const MAX_HOSTS: usize = 64;

/// Several Ollama hosts as one service that speaks Ollama's native API.
///
/// Wrap it in [`OllamaTranslateLayer`](crate::OllamaTranslateLayer) exactly
/// as one host's client. Each host is a service the caller supplies (a
/// hyper-util client pointed at that host, say); the pool opens no sockets
/// and reads no environment. For each request that needs a model
/// (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`,
/// `/api/show`) it takes the model and the conversation from the request's
/// [`Routing`](crate::Routing) extension, which the layer adds to the
/// generations it sends, or else reads the body (up to
/// [`max_body_bytes`](PoolBuilder::max_body_bytes)) for them, and chooses,
/// in order:
///
/// 1. hosts that have the model (their `/api/tags`); a model no host has
///    is Ollama's 404, naming it (and the hosts that are down and never
///    listed their models, which could not be asked);
/// 2. hosts that are up, before those cooling down after a 503, those
///    ejected after failures (below) and those whose connection failed;
/// 3. the host that served the conversation's earlier turns (a session
///    header, or the model, system prompt and first user message), so
///    Ollama's prompt cache is hit;
/// 4. hosts where the model is loaded (their `/api/ps`, and every model they
///    answered since) and that have a free slot
///    ([`warm_slots`](PoolBuilder::warm_slots));
/// 5. the fewest requests in flight through this pool (a stream counts
///    until its body ends), ties taken in turns.
///
/// A refused or dropped connection, a 503, a 404 for a model the host
/// listed, a 5xx, an answer that is not Ollama's and no head within the
/// [first-byte timeout](PoolBuilder::first_byte_timeout) are tried again on
/// the next host, before anything reaches the client (a
/// [`tower::retry::Policy`]). `GET /api/tags` and `GET /api/ps` list every
/// reachable host's models once. Every other request goes to the least
/// busy host, its body passed on as it comes.
///
/// Passive health, as Envoy's outlier detection keeps it: a host fails a
/// request that names a model when it answers a 5xx other than 503, when
/// its answer is not Ollama's (a 5xx that is not JSON, a success whose
/// content type says neither JSON nor NDJSON), when it is silent past the
/// first-byte timeout (before its head or after), and when its stream
/// breaks off (counted at once, and the host probed at once). Ollama's own
/// 5xx is judged by the next host: when it too answers the request with a
/// 5xx, the request is at fault (an option of the wrong type, say) and
/// neither host is blamed; otherwise, or with no host left to try, the
/// first host failed. Three failures in a
/// row eject the host for 2 s; back, one more failure ejects it again for
/// twice as long (up to a minute), and an answer read to its end forgets
/// them all. An ejected host is a last resort, its conversations move, and
/// [`Pool::hosts`] reports it unhealthy (a probe does not end an ejection:
/// its cool-down does).
///
/// The pool learns what the hosts have from [`Pool::maintain`], a future
/// the caller spawns.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use ollama_translate::{Pool, RequestBody, Sleep};
/// use std::time::Duration;
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ollama_translate::BoxError> {
/// // Two stand-ins for Ollama hosts, each with one model.
/// let host = |model: &'static str| {
///     service_fn(move |req: Request<RequestBody<Full<Bytes>>>| async move {
///         let body = match req.uri().path() {
///             "/api/tags" => format!(r#"{{"models":[{{"name":"{model}"}}]}}"#),
///             "/api/ps" => r#"{"models":[]}"#.to_string(),
///             _ => format!(r#"{{"answered_by":"{model} host"}}"#),
///         };
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
///     })
/// };
/// let timer = |d: Duration| -> Sleep { Box::pin(tokio::time::sleep(d)) };
/// let pool = Pool::builder(timer).build([("a", host("qwen3:latest")), ("b", host("llama3:latest"))])?;
/// tokio::spawn(pool.maintain::<Full<Bytes>, _>());
/// # while pool.hosts().iter().any(|h| !h.healthy) { tokio::task::yield_now().await; }
///
/// let chat = Request::post("/api/chat").body(RequestBody::original(Full::new(Bytes::from(
///     r#"{"model":"llama3","messages":[{"role":"user","content":"Hi"}]}"#,
/// ))))?;
/// let res = pool.clone().oneshot(chat).await?;
/// let body = res.into_body().collect().await?.to_bytes();
/// assert_eq!(body, r#"{"answered_by":"llama3:latest host"}"#);
///
/// let tags = Request::get("/api/tags").body(RequestBody::original(Full::new(Bytes::new())))?;
/// let res = pool.oneshot(tags).await?;
/// let body = res.into_body().collect().await?.to_bytes();
/// assert_eq!(body, r#"{"models":[{"name":"qwen3:latest"},{"name":"llama3:latest"}]}"#);
/// # Ok(())
/// # }
/// ```
///
/// See the [crate docs](crate) for more details.
pub struct Pool<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("hosts", &self.shared.names)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Pool`]; [`Pool::builder`] makes one.
pub struct PoolBuilder {
    timer: Arc<dyn Timer>,
    settings: Settings,
    budget: Arc<Budget>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    refresh: Duration,
    probe_timeout: Duration,
    busy_cooldown: Duration,
    sessions: usize,
    session_ttl: Duration,
    warm_slots: usize,
    max_body_bytes: usize,
    body_timeout: Duration,
    first_byte_timeout: Option<Duration>,
}

impl PoolBuilder {
    /// How often [`Pool::maintain`] asks every host for its models (default
    /// 10 s). It also asks at once after a host fails or loses a model, at
    /// most four times a second.
    pub fn refresh_every(mut self, period: Duration) -> Self {
        self.settings.refresh = period;
        self
    }

    /// How long a host may take to answer one of those questions before it
    /// counts as down (default 5 s).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.settings.probe_timeout = timeout;
        self
    }

    /// How long a host that answered 503 (its queue is full) is avoided
    /// while other hosts can serve (default 2 s).
    pub fn busy_cooldown(mut self, cooldown: Duration) -> Self {
        self.settings.busy_cooldown = cooldown;
        self
    }

    /// How many conversations are remembered (default 10 000, the least
    /// recently used forgotten first; 0 turns stickiness off), and for how
    /// long after their last turn (default 10 minutes).
    pub fn sessions(mut self, capacity: usize, ttl: Duration) -> Self {
        self.settings.sessions = capacity;
        self.settings.session_ttl = ttl;
        self
    }

    /// How many requests in flight a host with the model loaded takes
    /// before it is no better than a host without (default 1: Ollama's
    /// `OLLAMA_NUM_PARALLEL`, whose default is 1; past it requests queue).
    /// A new conversation then goes to an idle host and pays for a load,
    /// instead of queueing behind a busy one.
    pub fn warm_slots(mut self, slots: usize) -> Self {
        self.settings.warm_slots = slots;
        self
    }

    /// The largest request body read to find its model (default 32 MiB);
    /// a larger one is a 413.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.settings.max_body_bytes = limit;
        self
    }

    /// How much memory the bodies being read may hold together (default
    /// 256 MiB); past it, a 503 (with `Retry-After: 1`).
    pub fn read_memory(mut self, bytes: usize) -> Self {
        self.budget = Budget::new(bytes);
        self
    }

    /// How long reading that body may take (default 30 s); past it, a 408.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.settings.body_timeout = timeout;
        self
    }

    /// How long a host may take to start answering a request that names a
    /// model: first its response head, then the first bytes of its body
    /// (default: no limit; zero means none). Past it the host has failed
    /// the request (see [`Pool`]): before its head, the request goes to the
    /// next host when one is left (else a 504); after it, the body ends
    /// with an error. Allow for model loads and long prompts, which Ollama
    /// answers only once they are done. In front of
    /// [`OllamaTranslateLayer`](crate::OllamaTranslateLayer), make it no
    /// longer than the layer's
    /// [`upstream_idle_timeout`](crate::OllamaTranslateLayer::upstream_idle_timeout),
    /// which otherwise gives up first, unseen by the pool.
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.settings.first_byte_timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// The pool of `hosts`, each a name (for logs and metrics, say its base
    /// URL) and the service that reaches it. At least one host, at most
    /// 64: more is an error.
    pub fn build<S, N>(self, hosts: impl IntoIterator<Item = (N, S)>) -> Result<Pool<S>, BoxError>
    where
        N: Into<String>,
    {
        let (names, services): (Vec<Arc<str>>, Vec<_>) = hosts
            .into_iter()
            .map(|(name, svc)| {
                let name: String = name.into();
                let host = Host {
                    service: Mutex::new(svc),
                    in_flight: Arc::new(AtomicUsize::new(0)),
                };
                (name.into(), host)
            })
            .unzip();
        if names.is_empty() || names.len() > MAX_HOSTS {
            return Err(format!("a pool needs 1 to {MAX_HOSTS} hosts, not {}", names.len()).into());
        }
        let hosts = names.iter().map(|_| HostState::new()).collect();
        let fleet = Fleet {
            hosts,
            sessions: Sessions::new(self.settings.sessions, self.settings.session_ttl),
        };
        Ok(Pool {
            shared: Arc::new(Shared {
                services: services.into(),
                core: Arc::new(Core {
                    names: names.into(),
                    fleet: Mutex::new(fleet),
                    turn: AtomicUsize::new(0),
                    settings: self.settings,
                    budget: self.budget,
                    timer: self.timer,
                    wake: Wake::default(),
                }),
            }),
        })
    }
}

/// One host as [`Pool::hosts`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStatus {
    /// The name it was given.
    pub name: String,
    /// Whether it answered its last probe or request (and is not cooling
    /// down after a 503, nor ejected after failures).
    pub healthy: bool,
    /// Its models, once it has listed them: each name lower case, with its
    /// tag (`qwen3:latest`), without the default registry and namespace.
    pub models: Option<Vec<String>>,
    /// The models it has loaded, as far as the pool knows.
    pub loaded: Vec<String>,
}

impl Pool<()> {
    /// A builder; `timer` gives the pool its clock and sleeps.
    pub fn builder(timer: impl Timer) -> PoolBuilder {
        PoolBuilder {
            timer: Arc::new(timer),
            settings: Settings {
                refresh: Duration::from_secs(10),
                probe_timeout: Duration::from_secs(5),
                busy_cooldown: Duration::from_secs(2),
                sessions: 10_000,
                session_ttl: Duration::from_secs(600),
                warm_slots: 1,
                max_body_bytes: 32 * 1024 * 1024,
                body_timeout: Duration::from_secs(30),
                first_byte_timeout: None,
            },
            budget: Budget::new(256 * 1024 * 1024),
        }
    }
}

impl<S> Pool<S> {
    /// Each host's state, in the order given.
    pub fn hosts(&self) -> Vec<HostStatus> {
        let now = self.shared.timer.now();
        let fleet = self.shared.lock_fleet();
        fleet
            .hosts
            .iter()
            .zip(self.shared.names.iter())
            .map(|(h, name)| {
                let mut loaded: Vec<String> = h.loaded.iter().cloned().collect();
                loaded.sort();
                HostStatus {
                    name: name.to_string(),
                    healthy: h.healthy(now),
                    models: h
                        .models
                        .as_ref()
                        .map(|list| list.iter().map(|(n, _)| n.clone()).collect()),
                    loaded,
                }
            })
            .collect()
    }
}

/// The hosts' state and the conversations, behind one lock.
struct Fleet {
    hosts: Vec<HostState>,
    sessions: Sessions,
}

/// One host's service, and how many of its answers are still coming.
pub(crate) struct Host<S> {
    service: Mutex<S>,
    in_flight: Arc<AtomicUsize>,
}

impl<S> Load for Host<S> {
    type Metric = usize;

    /// Requests in flight: from the call until the response's body ends.
    fn load(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// What every clone of a pool shares: the hosts' services, and the rest
/// ([`Core`], which the bodies of the hosts' answers hold too).
pub(crate) struct Shared<S> {
    /// Each host's service and its requests in flight.
    services: Box<[Host<S>]>,
    core: Arc<Core>,
}

impl<S> std::ops::Deref for Shared<S> {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// What a pool knows and how it is set, apart from its hosts' services.
pub(crate) struct Core {
    names: Box<[Arc<str>]>,
    /// Locked before a service, never while one is held.
    fleet: Mutex<Fleet>,
    /// Where ties start.
    turn: AtomicUsize,
    settings: Settings,
    /// Shared by the bodies being read.
    budget: Arc<Budget>,
    timer: Arc<dyn Timer>,
    /// Asks [`Pool::maintain`] to look again.
    wake: Wake,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> Shared<S> {
    /// Chooses a host for `want` among those not `tried`, and pins the
    /// conversation to it.
    fn pick(&self, want: &Want, tried: u64) -> Choice {
        let now = self.timer.now();
        let mut fleet = self.lock_fleet();
        let pinned = want.session.and_then(|k| fleet.sessions.get(k, now));
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let warm = self.settings.warm_slots;
        let loads = self.services.iter().map(Load::load);
        let choice = choose(&fleet.hosts, want, tried, now, pinned, turn, warm, loads);
        if let Choice::Host(i) = choice {
            if let Some(key) = want.session {
                fleet.sessions.set(key, i, now);
            }
            let affinity = match pinned {
                None if want.session.is_none() => "none",
                None => "new",
                Some(p) if p == i => "kept",
                Some(_) => "moved",
            };
            telemetry::pool_routed(&self.names[i], affinity);
        }
        choice
    }

    /// Calls `host` once it is ready.
    #[allow(clippy::type_complexity)]
    fn call<B, R>(
        &self,
        host: usize,
        cx: &mut Context<'_>,
        req: &mut Option<Request<RequestBody<B>>>,
    ) -> Poll<
        Result<
            tower::load::completion::TrackCompletionFuture<S::Future, UntilEos, InFlight>,
            S::Error,
        >,
    >
    where
        S: Service<Request<RequestBody<B>>, Response = Response<R>>,
        R: Body,
    {
        let Some(host) = self.services.get(host) else {
            return Poll::Pending;
        };
        let mut svc = lock(&host.service);
        ready!(svc.poll_ready(cx))?;
        match req.take() {
            Some(req) => {
                let counted = InFlight::start(&host.in_flight);
                Poll::Ready(Ok(TrackCompletionFuture::new(
                    UntilEos,
                    counted,
                    svc.call(req),
                )))
            }
            None => Poll::Pending,
        }
    }
}

impl Core {
    fn lock_fleet(&self) -> MutexGuard<'_, Fleet> {
        lock(&self.fleet)
    }

    /// A deadline for a host's first byte, for a request for `endpoint`.
    pub(crate) fn first_byte_deadline(
        &self,
        endpoint: Option<Endpoint>,
    ) -> Option<(Sleep, Duration)> {
        let after = self.settings.first_byte_timeout?;
        if !route::judged(endpoint) {
            return None;
        }
        Some((self.timer.sleep_until(self.timer.now() + after), after))
    }

    /// `host`'s name, as given.
    pub(crate) fn name(&self, host: usize) -> Arc<str> {
        self.names.get(host).cloned().unwrap_or_else(|| "?".into())
    }

    /// Whether another host is left to try.
    fn can_pick(&self, want: &Want, tried: u64) -> bool {
        let now = self.timer.now();
        let fleet = self.lock_fleet();
        matches!(
            choose(
                &fleet.hosts,
                want,
                tried,
                now,
                None,
                0,
                0,
                std::iter::repeat(0)
            ),
            Choice::Host(_)
        )
    }

    fn update(&self, host: usize, f: impl FnOnce(&mut HostState)) {
        let mut fleet = self.lock_fleet();
        if let Some(h) = fleet.hosts.get_mut(host) {
            f(h);
        }
    }

    /// `host` could not be reached.
    fn failed(&self, host: usize, why: &'static str) {
        tracing::warn!(host = %self.names[host], why, "Ollama host failed; avoiding it until it answers a probe");
        self.update(host, |h| h.health = Health::Down);
        telemetry::pool_host_up(&self.names[host], false);
        self.wake.wake();
    }

    /// `host` answered 503: its queue is full.
    fn busy(&self, host: usize) {
        let until = self.timer.now() + self.settings.busy_cooldown;
        tracing::debug!(host = %self.names[host], "Ollama host is busy (503)");
        self.update(host, |h| h.health = Health::Busy { until });
    }

    /// `host` answered 404 for `model`.
    fn lacks(&self, host: usize, model: &str) {
        tracing::debug!(host = %self.names[host], model, "Ollama host does not have the model");
        self.update(host, |h| h.forget(model));
        self.wake.wake();
    }

    /// `host` failed a request (`why`: a 5xx, an answer that is not
    /// Ollama's, silence, a stream that died): one more failure in a row,
    /// which may eject it.
    pub(crate) fn failure(&self, host: usize, why: &'static str) {
        let now = self.timer.now();
        let mut ejected = None;
        self.update(host, |h| ejected = h.outlier.fail(now));
        let name = &self.names[host];
        match ejected {
            Some(cooldown) => {
                tracing::warn!(host = %name, why, cooldown_secs = cooldown.as_secs(), "Ollama host keeps failing; avoiding it for a while");
                telemetry::pool_host_up(name, false);
            }
            None => tracing::debug!(host = %name, why, "Ollama host failed a request"),
        }
    }

    /// A stream from `host` broke off: a failure, and a probe at once to
    /// see whether the host is still there.
    pub(crate) fn stream_died(&self, host: usize) {
        self.failure(host, "its stream broke off");
        self.wake.wake();
    }

    /// `host` answered a request to its end: its failures are forgotten.
    pub(crate) fn success(&self, host: usize) {
        let now = self.timer.now();
        let mut back = None;
        self.update(host, |h| {
            if h.outlier.succeed() {
                back = Some(h.healthy(now));
            }
        });
        if let Some(healthy) = back {
            tracing::info!(host = %self.names[host], "Ollama host answers well again");
            telemetry::pool_host_up(&self.names[host], healthy);
        }
    }

    /// `host` answered, and has `loaded` loaded now.
    fn answered(&self, host: usize, loaded: Option<&str>) {
        self.update(host, |h| {
            if matches!(h.health, Health::Down | Health::Unknown) {
                h.health = Health::Up;
            }
            if let Some(model) = loaded {
                if !h.loaded.contains(model) {
                    h.loaded.insert(model.to_string());
                }
            }
        });
    }

    /// `GET /api/tags` or `GET /api/ps` for every host that is not down and
    /// has listed its models, each model once (the first host's entry);
    /// `None` before any host has.
    fn union(&self, endpoint: Endpoint) -> Option<Bytes> {
        let fleet = self.lock_fleet();
        let mut seen = HashSet::new();
        let mut out = String::from(r#"{"models":["#);
        let mut any = false;
        for h in &fleet.hosts {
            let Some(models) = &h.models else { continue };
            if h.health == Health::Down {
                continue;
            }
            any = true;
            let entries = if endpoint == Endpoint::Tags {
                models
            } else {
                &h.running
            };
            for (name, raw) in entries {
                if seen.insert(name.as_str()) {
                    if seen.len() > 1 {
                        out.push(',');
                    }
                    out.push_str(raw.get());
                }
            }
        }
        out.push_str("]}");
        any.then(|| Bytes::from(out))
    }
}

/// A JSON error in Ollama's shape, `{"error": message}`.
pub(crate) fn ollama_error<R>(status: StatusCode, message: &str) -> Response<PoolBody<R>> {
    let body = serde_json::json!({ "error": message }).to_string();
    json(status, Bytes::from(body))
}

fn json<R>(status: StatusCode, body: Bytes) -> Response<PoolBody<R>> {
    let mut res = Response::new(PoolBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// A flag and a waker: wakes [`Pool::maintain`] early.
#[derive(Default)]
struct Wake {
    asked: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Wake {
    fn wake(&self) {
        self.asked.store(true, Ordering::Release);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }
}

type Req<B> = Request<RequestBody<B>>;

impl<S, B, R> Service<Req<B>> for Pool<S>
where
    S: Service<Req<B>, Response = Response<R>>,
    B: Body,
    B::Error: Into<BoxError>,
    R: Body,
{
    type Response = Response<PoolBody<R>>;
    type Error = S::Error;
    type Future = PoolFuture<S, B, R>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Hosts are chosen per request; each attempt waits for its host.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req<B>) -> Self::Future {
        let endpoint = Endpoint::of(req.method(), req.uri().path());
        if let Some(list @ (Endpoint::Tags | Endpoint::Ps)) = endpoint {
            if let Some(all) = self.shared.union(list) {
                return PoolFuture::done(json(StatusCode::OK, all));
            }
        }
        let Some(kind) = endpoint.filter(|e| e.names_model()) else {
            let (parts, body) = req.into_parts();
            // An empty body can be sent again: the request can fail over.
            let body = if body.is_end_stream() {
                RequestBody::rewritten(Bytes::new())
            } else {
                body
            };
            let req = Request::from_parts(parts, body);
            return self.dispatch(req, endpoint, Want::default());
        };
        // The layer said what the request wants: its body is not parsed.
        let routed = route::routed(kind, req.extensions());
        if let Some(whole) = req.body().whole() {
            let want = routed.unwrap_or_else(|| route::want(kind, req.headers(), &whole));
            return self.dispatch(req, endpoint, want);
        }
        let (parts, body) = req.into_parts();
        let settings = &self.shared.settings;
        let timer = &self.shared.timer;
        let deadline = (
            timer.sleep_until(timer.now() + settings.body_timeout),
            settings.body_timeout,
        );
        let hold = Hold::new(self.shared.budget.clone());
        PoolFuture {
            state: State::Reading {
                read: ReadBody::new(body, settings.max_body_bytes, hold, Some(deadline)),
                parts: Some(parts),
                kind,
                routed,
                pool: self.clone(),
            },
        }
    }
}

impl<S> Pool<S> {
    fn dispatch<B, R>(
        &self,
        mut req: Req<B>,
        endpoint: Option<Endpoint>,
        want: Want,
    ) -> PoolFuture<S, B, R>
    where
        S: Service<Req<B>, Response = Response<R>>,
        B: Body,
        B::Error: Into<BoxError>,
        R: Body,
    {
        req.extensions_mut().insert(Tries::new(endpoint, want));
        let policy = Failover {
            shared: self.shared.clone(),
            left: self.shared.names.len() - 1,
        };
        let mut retry = Retry::new(
            policy,
            Attempt {
                shared: self.shared.clone(),
            },
        );
        PoolFuture {
            state: State::Calling {
                fut: retry.call(req),
            },
        }
    }
}

pin_project! {
    /// [`Pool`]'s response future: opaque, named only in bounds.
    pub struct PoolFuture<S, B, R>
    where
        S: Service<Req<B>, Response = Response<R>>,
        B: Body,
        B::Error: Into<BoxError>,
        R: Body,
    {
        #[pin]
        state: State<S, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, R>
    where
        S: Service<Req<B>, Response = Response<R>>,
        B: Body,
        B::Error: Into<BoxError>,
        R: Body,
    {
        Reading {
            #[pin]
            read: ReadBody<RequestBody<B>>,
            parts: Option<http::request::Parts>,
            // A request that names a model.
            kind: Endpoint,
            // What the layer said it wants, if it did.
            routed: Option<Want>,
            pool: Pool<S>,
        },
        Calling {
            #[pin]
            fut: tower::retry::future::ResponseFuture<Failover<S>, Attempt<S>, Req<B>>,
        },
        Done { res: Option<Response<PoolBody<R>>> },
    }
}

impl<S, B, R> PoolFuture<S, B, R>
where
    S: Service<Req<B>, Response = Response<R>>,
    B: Body,
    B::Error: Into<BoxError>,
    R: Body,
{
    fn done(res: Response<PoolBody<R>>) -> Self {
        PoolFuture {
            state: State::Done { res: Some(res) },
        }
    }
}

impl<S, B, R> Future for PoolFuture<S, B, R>
where
    S: Service<Req<B>, Response = Response<R>>,
    B: Body,
    B::Error: Into<BoxError>,
    R: Body,
{
    type Output = Result<Response<PoolBody<R>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading {
                    read,
                    parts,
                    kind,
                    routed,
                    pool,
                } => {
                    let next = match (ready!(read.poll(cx)), parts.take()) {
                        (Ok((whole, hold)), Some(parts)) => {
                            let want = routed
                                .take()
                                .unwrap_or_else(|| route::want(*kind, &parts.headers, &whole));
                            drop(hold);
                            let req = Request::from_parts(parts, RequestBody::rewritten(whole));
                            pool.dispatch(req, Some(*kind), want).state
                        }
                        (Err(e), _) => {
                            let mut res = ollama_error(e.status, &e.message);
                            if e.status == StatusCode::SERVICE_UNAVAILABLE {
                                res.headers_mut()
                                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                            }
                            State::Done { res: Some(res) }
                        }
                        (Ok(_), None) => State::Done { res: None },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { fut } => return fut.poll(cx),
                StateProj::Done { res } => {
                    return match res.take() {
                        Some(res) => Poll::Ready(Ok(res)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
