//! One try at one host ([`Attempt`]), and when to try another
//! ([`Failover`], a [`tower::retry::Policy`]).

use super::body::PoolBody;
use super::route::Kind;
use super::state::{Choice, Want};
use super::{ollama_error, Shared};
use crate::body::RequestBody;
use crate::telemetry;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower::load::completion::TrackCompletionFuture;
use tower_service::Service;

/// What the pool learnt of a request, carried in its extensions from one
/// attempt to the next.
#[derive(Clone, Debug)]
pub(crate) struct Routing(Arc<RoutingInner>);

#[derive(Debug)]
struct RoutingInner {
    kind: Kind,
    want: Want,
    /// A bit per host already tried.
    tried: AtomicU64,
}

impl Routing {
    pub(crate) fn new(kind: Kind, want: Want) -> Routing {
        Routing(Arc::new(RoutingInner {
            kind,
            want,
            tried: AtomicU64::new(0),
        }))
    }

    fn tried(&self) -> u64 {
        self.0.tried.load(Ordering::Acquire)
    }
}

/// Marks a host's answer that another host may do better with.
#[derive(Clone, Copy, Debug)]
struct Retryable;

/// One try at the best host for a request (see [`Pool`](super::Pool)).
/// It appears in [`PoolFuture`](super::PoolFuture)'s type; the pool builds
/// it.
pub struct Attempt<S> {
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
            .get::<Routing>()
            .cloned()
            .unwrap_or_else(|| Routing::new(Kind::Any, Want::default()));
        let state = match self.shared.pick(&routing.0.want, routing.tried()) {
            Choice::Host(host) => {
                routing.0.tried.fetch_or(1 << host, Ordering::AcqRel);
                AttemptState::Calling {
                    req: Some(req),
                    host,
                }
            }
            Choice::NoModel => {
                // Maybe it was pulled since the last look: look again soon.
                self.shared.wake.wake();
                let model = routing.0.want.model.as_deref().unwrap_or_default();
                let message = format!("model \"{model}\" not found, try pulling it first");
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
            state,
        }
    }
}

pin_project! {
    /// [`Attempt`]'s response future.
    pub struct AttemptFuture<S, B, R>
    where
        S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    {
        shared: Arc<Shared<S>>,
        routing: Routing,
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
                    let result = ready!(fut.poll(cx));
                    return Poll::Ready(classify(this.shared, this.routing, host, result));
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
    routing: &Routing,
    host: usize,
    result: Result<Response<PoolBody<R>>, E>,
) -> Result<Response<PoolBody<R>>, E> {
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            shared.failed(host, "unreachable");
            return Err(e);
        }
    };
    let want = &routing.0.want;
    let status = res.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        shared.busy(host);
        res.extensions_mut().insert(Retryable);
    } else if status == StatusCode::NOT_FOUND && routing.0.kind.reads_body() {
        if let Some(model) = &want.model {
            // It listed the model (or its list is not known yet): it is
            // gone from there; ask again what it has.
            shared.lacks(host, model);
            res.extensions_mut().insert(Retryable);
        }
    } else if routing.0.kind == Kind::Search
        && matches!(status.as_u16(), 401 | 403 | 404 | 500 | 502)
    {
        // This host cannot search (too old, not signed in, cloud off, or
        // ollama.com failed it): another may.
        res.extensions_mut().insert(Retryable);
    } else if status.is_success() {
        let loaded = match (routing.0.kind, &want.model) {
            (Kind::Generate, Some(model)) => Some(model.as_str()),
            _ => None,
        };
        shared.answered(host, loaded);
    }
    Ok(res)
}

/// Tries the next host for an answer that another host may do better
/// with: no connection, a 503 (the host's queue is full), a 404 for a model
/// the host listed. Only before the first byte: a response that reached
/// the client is never retried, and a body that is not held in memory
/// cannot be sent twice.
pub struct Failover<S> {
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
        let again = match result {
            Err(_) => true,
            Ok(res) => res.extensions().get::<Retryable>().is_some(),
        };
        if !again || self.left == 0 {
            return None;
        }
        let routing = req.extensions().get::<Routing>()?;
        if !self.shared.can_pick(&routing.0.want, routing.tried()) {
            return None;
        }
        self.left -= 1;
        let reason = match result {
            Err(_) => "unreachable",
            Ok(res) if res.status() == StatusCode::SERVICE_UNAVAILABLE => "busy",
            Ok(_) if routing.0.kind == Kind::Search => "search_unavailable",
            Ok(_) => "model_missing",
        };
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
