//! One try at one host ([`Attempt`]), and when to try another
//! ([`Failover`], a [`tower::retry::Policy`]).

use super::body::{PoolBody, Watch};
use super::route;
use super::state::{Choice, Want};
use super::{ollama_error, Core, Shared};
use crate::body::RequestBody;
use crate::ollama::request::Endpoint;
use crate::telemetry;
use crate::timer::Sleep;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tower::load::completion::TrackCompletionFuture;
use tower_service::Service;

/// What the pool learnt of a request, carried in its extensions from one
/// attempt to the next.
#[derive(Clone, Debug)]
pub(crate) struct Tries(Arc<TriesInner>);

#[derive(Debug)]
struct TriesInner {
    /// What it is for (`None`: another of Ollama's endpoints).
    endpoint: Option<Endpoint>,
    want: Want,
    /// A bit per host already tried.
    tried: AtomicU64,
    /// A bit for the host that answered Ollama's own 5xx, not yet counted
    /// against it: if another host answers the request, it was the host's
    /// failure; if another answers a 5xx too, the request's.
    suspect: AtomicU64,
}

impl Tries {
    pub(crate) fn new(endpoint: Option<Endpoint>, want: Want) -> Tries {
        Tries(Arc::new(TriesInner {
            endpoint,
            want,
            tried: AtomicU64::new(0),
            suspect: AtomicU64::new(0),
        }))
    }

    fn tried(&self) -> u64 {
        self.0.tried.load(Ordering::Acquire)
    }

    /// `host` answered Ollama's 5xx: whether it is the first host to, and
    /// so worth another try. A second one clears the first: two hosts
    /// failing a request the same way say more about the request.
    fn suspect(&self, host: usize) -> bool {
        let bit = 1u64.checked_shl(host as u32).unwrap_or(0);
        let first = self
            .0
            .suspect
            .compare_exchange(0, bit, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !first {
            self.0.suspect.store(0, Ordering::Release);
        }
        first
    }

    /// The request's answer is final: a host still suspected failed it.
    fn settle(&self, core: &Core) {
        let suspect = self.0.suspect.swap(0, Ordering::AcqRel);
        if suspect != 0 {
            core.failure(suspect.trailing_zeros() as usize, "answered 5xx");
        }
    }
}

/// Marks a host's answer that another host may do better with, and why
/// (the `reason` of the failover metric).
#[derive(Clone, Copy, Debug)]
struct Retryable(&'static str);

/// One try at the best host for a request (see [`Pool`](super::Pool)).
pub(crate) struct Attempt<S> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S> Clone for Attempt<S> {
    fn clone(&self) -> Self {
        Attempt {
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Attempt<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt").finish_non_exhaustive()
    }
}

impl<S, B, R> Service<Request<RequestBody<B>>> for Attempt<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    R: Body,
{
    type Response = Response<PoolBody<R>>;
    type Error = S::Error;
    type Future = AttemptFuture<S, B, R>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The host is chosen in `call`; its readiness is awaited there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody<B>>) -> Self::Future {
        let routing = req
            .extensions()
            .get::<Tries>()
            .cloned()
            .unwrap_or_else(|| Tries::new(None, Want::default()));
        let mut deadline = None;
        let state = match self.shared.pick(&routing.0.want, routing.tried()) {
            Choice::Host(host) => {
                routing.0.tried.fetch_or(1 << host, Ordering::AcqRel);
                // From the call into the pool, so that it comes before the
                // layer's own deadline for the same head.
                deadline = self.shared.first_byte_deadline(routing.0.endpoint);
                AttemptState::Calling {
                    req: Some(req),
                    host,
                }
            }
            Choice::NoModel { unasked } => {
                // Maybe it was pulled since the last look: look again soon.
                self.shared.wake.wake();
                let model = routing.0.want.model.as_deref().unwrap_or_default();
                let mut message = format!("model \"{model}\" not found, try pulling it first");
                let unasked: Vec<_> = (0..64)
                    .filter(|i| unasked & (1 << i) != 0)
                    .map(|i| self.shared.name(i))
                    .collect();
                if !unasked.is_empty() {
                    message.push_str(&format!(
                        " (not asked: {}, which could not be reached)",
                        unasked.join(", ")
                    ));
                }
                AttemptState::Done {
                    res: Some(ollama_error(StatusCode::NOT_FOUND, &message)),
                }
            }
            Choice::NoHost => {
                let message = match routing.0.want.model.as_deref() {
                    Some(model) => {
                        format!("no Ollama host that has model \"{model}\" is reachable")
                    }
                    None => "no Ollama host is reachable".to_string(),
                };
                AttemptState::Done {
                    res: Some(ollama_error(StatusCode::SERVICE_UNAVAILABLE, &message)),
                }
            }
        };
        AttemptFuture {
            shared: self.shared.clone(),
            routing,
            deadline,
            state,
        }
    }
}

pin_project! {
    /// [`Attempt`]'s response future.
    pub(crate) struct AttemptFuture<S, B, R>
    where
        S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    {
        shared: Arc<Shared<S>>,
        routing: Tries,
        // Until the host's head: the deadline, and the timeout it came from.
        deadline: Option<(Sleep, Duration)>,
        #[pin]
        state: AttemptState<S, B, R>,
    }
}

pin_project! {
    #[project = AttemptProj]
    enum AttemptState<S, B, R>
    where
        S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    {
        Calling { req: Option<Request<RequestBody<B>>>, host: usize },
        Waiting { #[pin] fut: TrackCompletionFuture<S::Future, super::body::UntilEos, super::body::InFlight>, host: usize },
        Done { res: Option<Response<PoolBody<R>>> },
    }
}

impl<S, B, R> Future for AttemptFuture<S, B, R>
where
    S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    R: Body,
{
    type Output = Result<Response<PoolBody<R>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                AttemptProj::Calling { req, host } => {
                    let host = *host;
                    let called = this.shared.call(host, cx, req);
                    match ready!(called) {
                        Ok(fut) => this.state.set(AttemptState::Waiting { fut, host }),
                        Err(e) => {
                            this.shared.failed(host, "unreachable");
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                AttemptProj::Waiting { fut, host } => {
                    let host = *host;
                    if let Poll::Ready(result) = fut.poll(cx) {
                        return Poll::Ready(classify(this.shared, this.routing, host, result));
                    }
                    let Some((sleep, after)) = this.deadline else {
                        return Poll::Pending;
                    };
                    ready!(sleep.as_mut().poll(cx));
                    let after = *after;
                    // Give up on it: its call is dropped, and Ollama stops.
                    this.state.set(AttemptState::Done { res: None });
                    this.shared.failure(host, "no answer in time");
                    let message = format!(
                        "Ollama host {} sent no answer within {} s",
                        this.shared.name(host),
                        after.as_secs_f64()
                    );
                    let mut res = ollama_error(StatusCode::GATEWAY_TIMEOUT, &message);
                    res.extensions_mut().insert(Retryable("timeout"));
                    return Poll::Ready(Ok(res));
                }
                AttemptProj::Done { res } => {
                    return match res.take() {
                        Some(res) => Poll::Ready(Ok(res)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// Learns from a host's answer, and marks the answers worth another try.
fn classify<S, R, E>(
    shared: &Shared<S>,
    routing: &Tries,
    host: usize,
    result: Result<Response<PoolBody<R>>, E>,
) -> Result<Response<PoolBody<R>>, E>
where
    R: Body,
{
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            shared.failed(host, "unreachable");
            return Err(e);
        }
    };
    let endpoint = routing.0.endpoint;
    let judged = route::judged(endpoint);
    let want = &routing.0.want;
    let status = res.status();
    let json = json_content(&res);
    let retry = if status == StatusCode::SERVICE_UNAVAILABLE {
        shared.busy(host);
        Some("busy")
    } else if status == StatusCode::NOT_FOUND && judged && want.model.is_some() {
        // It listed the model (or its list is not known yet): it is gone
        // from there; ask again what it has.
        if let Some(model) = &want.model {
            shared.lacks(host, model);
        }
        Some("model_missing")
    } else if endpoint == Some(Endpoint::WebSearch)
        && matches!(status.as_u16(), 401 | 403 | 404 | 500 | 502)
    {
        // This host cannot search (too old, not signed in, cloud off, or
        // ollama.com failed it): another may.
        Some("search_unavailable")
    } else if judged && status.is_server_error() {
        if json != Some(true) {
            // Not Ollama's error (a proxy in front of it, say): the host's.
            shared.failure(host, "answered a 5xx that is not Ollama's");
            Some("server_error")
        } else {
            // Ollama's own: whose fault it is shows on the next host.
            routing.suspect(host).then_some("server_error")
        }
    } else if judged && status.is_success() && json == Some(false) {
        shared.failure(host, "answered something that is not Ollama's");
        Some("server_error")
    } else {
        if status.is_success() {
            let loaded = match (endpoint, &want.model) {
                (Some(e), Some(model)) if e.generates() => Some(model.as_str()),
                _ => None,
            };
            shared.answered(host, loaded);
        }
        if judged {
            let first_byte = shared.first_byte_deadline(endpoint);
            let watch = Watch::new(shared.core.clone(), host, first_byte);
            res.body_mut().watch(watch);
        }
        None
    };
    if let Some(reason) = retry {
        res.extensions_mut().insert(Retryable(reason));
    }
    Ok(res)
}

/// Whether the answer says it is JSON (or NDJSON); `None` if it says
/// nothing.
fn json_content<B>(res: &Response<B>) -> Option<bool> {
    let value = res.headers().get(CONTENT_TYPE)?.as_bytes();
    Some(value.windows(4).any(|w| w.eq_ignore_ascii_case(b"json")))
}

/// Tries the next host for an answer that another host may do better
/// with: no connection, a 503 (the host's queue is full), a 404 for a model
/// the host listed, a 5xx or an answer that is not Ollama's, no head within
/// the first-byte timeout. Only before the first byte: a response that
/// reached the client is never retried, and a body that is not held in
/// memory cannot be sent twice.
pub(crate) struct Failover<S> {
    pub(crate) shared: Arc<Shared<S>>,
    /// Tries left after this one.
    pub(crate) left: usize,
}

impl<S> Clone for Failover<S> {
    fn clone(&self) -> Self {
        Failover {
            shared: self.shared.clone(),
            left: self.left,
        }
    }
}

impl<S> std::fmt::Debug for Failover<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl<S, B, R, E> tower::retry::Policy<Request<RequestBody<B>>, Response<PoolBody<R>>, E>
    for Failover<S>
{
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        req: &mut Request<RequestBody<B>>,
        result: &mut Result<Response<PoolBody<R>>, E>,
    ) -> Option<Self::Future> {
        let routing = req.extensions().get::<Tries>()?;
        let reason = match result {
            Err(_) => Some("unreachable"),
            Ok(res) => res.extensions().get::<Retryable>().map(|r| r.0),
        };
        let again = reason
            .filter(|_| self.left > 0 && self.shared.can_pick(&routing.0.want, routing.tried()));
        let Some(reason) = again else {
            routing.settle(&self.shared);
            return None;
        };
        self.left -= 1;
        telemetry::pool_failover(reason);
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Request<RequestBody<B>>) -> Option<Request<RequestBody<B>>> {
        let body = req.body().whole()?;
        let mut clone = Request::new(RequestBody::rewritten(body));
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}
