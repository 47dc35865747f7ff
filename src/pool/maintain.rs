//! [`Maintain`]: asks every host what it has, over and over.

use super::state::{Entry, Health};
use super::{lock, Pool, Shared};
use crate::body::RequestBody;
use crate::error::BoxError;
use crate::ollama::model::model_key;
use crate::ollama::tags::ModelList;
use crate::telemetry;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// The most a host's `/api/tags` or `/api/ps` answer may weigh.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The least time between two rounds of questions.
const MIN_GAP: Duration = Duration::from_millis(250);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Keeps a [`Pool`]'s view of its hosts fresh: every
/// [`refresh_every`](super::PoolBuilder::refresh_every), and soon after a
/// host fails or loses a model, it asks each host `GET /api/tags` and
/// `GET /api/ps` (concurrently, each within the probe timeout). A host that
/// answers is up; one that does not is down until it answers again. A probe
/// does not end an ejection (a host that lists its models may still fail
/// every generation): its cool-down does.
///
/// It never ends: spawn it, and drop it (abort the task) to stop it.
#[must_use = "a Maintain does nothing unless spawned or polled"]
pub struct Maintain {
    run: BoxFuture<()>,
}

impl std::fmt::Debug for Maintain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintain").finish_non_exhaustive()
    }
}

impl Future for Maintain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.run.as_mut().poll(cx)
    }
}

impl<S> Pool<S> {
    /// The future that keeps this pool's view of its hosts fresh (see
    /// [`Maintain`]). `B` is the request body type the hosts take:
    /// `pool.maintain::<Incoming, _>()`.
    pub fn maintain<B, R>(&self) -> Maintain
    where
        S: Service<Request<RequestBody<B>>, Response = Response<R>> + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        B: Send + 'static,
        R: Body + Send + 'static,
        R::Data: Send,
        R::Error: Into<BoxError>,
    {
        let probe = |shared: Arc<Shared<S>>, host: usize| -> BoxFuture<()> {
            Box::pin(probe::<S, B, R>(shared, host))
        };
        Maintain {
            run: Box::pin(run(self.shared.clone(), probe)),
        }
    }
}

/// Rounds of `probe` on every host, as often as the settings say.
async fn run<S>(shared: Arc<Shared<S>>, probe: impl Fn(Arc<Shared<S>>, usize) -> BoxFuture<()>) {
    loop {
        shared.wake.asked.store(false, Ordering::Release);
        let round: Vec<BoxFuture<()>> = (0..shared.names.len())
            .map(|host| probe(shared.clone(), host))
            .collect();
        JoinAll(round.into_iter().map(Some).collect()).await;
        let timer = &shared.timer;
        timer.sleep_until(timer.now() + MIN_GAP).await;
        let next = timer.sleep_until(timer.now() + shared.settings.refresh.saturating_sub(MIN_GAP));
        Woken {
            sleep: next,
            shared: &shared,
        }
        .await;
    }
}

/// Asks `host` for its models and running models; records what it said.
async fn probe<S, B, R>(shared: Arc<Shared<S>>, host: usize)
where
    S: Service<Request<RequestBody<B>>, Response = Response<R>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    R: Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<BoxError>,
{
    let tags = match ask::<S, B, R>(&shared, host, "/api/tags").await {
        Ok(body) => entries(&body),
        Err(e) => Err(e),
    };
    let models = match tags {
        Ok(models) => models,
        Err(e) => {
            let was = lock(&shared.fleet).hosts.get(host).map(|h| h.health);
            if was != Some(Health::Down) {
                tracing::warn!(host = %shared.names[host], error = %e, "Ollama host does not answer GET /api/tags");
            }
            shared.update(host, |h| h.health = Health::Down);
            telemetry::pool_host_up(&shared.names[host], false);
            return;
        }
    };
    // A host that lists its models but not what runs is still up.
    let running = match ask::<S, B, R>(&shared, host, "/api/ps").await {
        Ok(body) => entries(&body).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut came_back = false;
    let mut healthy = true;
    let now = shared.timer.now();
    shared.update(host, |h| {
        if matches!(h.health, Health::Down | Health::Unknown) {
            came_back = h.health == Health::Down;
            h.health = Health::Up;
        }
        h.loaded = running.iter().map(|(name, _)| name.clone()).collect();
        h.models = Some(models);
        h.running = running;
        // A host ejected for failing requests stays out until its
        // cool-down ends, whatever it lists.
        healthy = !h.outlier.ejected(now);
    });
    if came_back {
        tracing::info!(host = %shared.names[host], "Ollama host answers again");
    }
    telemetry::pool_host_up(&shared.names[host], healthy);
}

/// `GET path` on `host`, its body read whole, within the probe timeout.
async fn ask<S, B, R>(
    shared: &Shared<S>,
    host: usize,
    path: &'static str,
) -> Result<Bytes, BoxError>
where
    S: Service<Request<RequestBody<B>>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    R: Body,
    R::Error: Into<BoxError>,
{
    let timer = &shared.timer;
    let deadline = timer.sleep_until(timer.now() + shared.settings.probe_timeout);
    let mut req = Some(Request::get(path).body(RequestBody::rewritten(Bytes::new()))?);
    let get = async {
        let fut = std::future::poll_fn(|cx| shared.call(host, cx, &mut req)).await;
        let res = fut
            .map_err(Into::<BoxError>::into)?
            .await
            .map_err(Into::<BoxError>::into)?;
        if !res.status().is_success() {
            return Err(format!("GET {path} answered {}", res.status()).into());
        }
        let body = Limited::new(res.into_body(), MAX_LIST_BYTES)
            .collect()
            .await?;
        Ok(body.to_bytes())
    };
    let get = std::pin::pin!(get);
    Deadline { fut: get, deadline }
        .await
        .unwrap_or_else(|| Err(format!("GET {path} took longer than the probe timeout").into()))
}

/// The entries of a `{"models":[…]}` answer, with their keys.
fn entries(body: &[u8]) -> Result<Vec<Entry>, BoxError> {
    let list = ModelList::parse(body)?;
    Ok(list
        .models
        .into_iter()
        .map(|m| (model_key(&m.name), m.raw))
        .collect())
}

/// Polls `fut` until `deadline`; `None` if the deadline came first.
struct Deadline<F> {
    fut: F,
    deadline: crate::timer::Sleep,
}

impl<F: Future + Unpin> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = Pin::new(&mut self.fut).poll(cx) {
            return Poll::Ready(Some(out));
        }
        self.deadline.as_mut().poll(cx).map(|()| None)
    }
}

/// Runs every future to its end, concurrently.
struct JoinAll(Vec<Option<BoxFuture<()>>>);

impl Future for JoinAll {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut pending = false;
        for slot in self.0.iter_mut() {
            if let Some(fut) = slot {
                if fut.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// Sleeps until the next round, or until a request asks for one sooner.
struct Woken<'a, S> {
    sleep: crate::timer::Sleep,
    shared: &'a Shared<S>,
}

impl<S> Future for Woken<'_, S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *lock(&self.shared.wake.waker) = Some(cx.waker().clone());
        if self.shared.wake.asked.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.sleep.as_mut().poll(cx)
    }
}
