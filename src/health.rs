//! [`Health`]: a server's own paths before its service (feature `health`).
//!
//! * `/livez` (and its older name `/healthz`): 200 while the process
//!   serves; no key needed, never asks Ollama.
//! * `/readyz`: 200 while the [`Readiness`] says so (Ollama answered the
//!   last probe, see [`Readiness::probe_ollama`] and
//!   [`Readiness::probe_pool`]), 503 with the reason otherwise, and 503
//!   from the moment a shutdown starts ([`Readiness::drain`]); no key.
//! * `GET /metrics`: Prometheus' text format ([`prometheus`]); with an
//!   [`Access`] that requires keys, only to requests carrying an admin key.
//! * On a connection past [`server::serve`](crate::server::serve)'s cap
//!   (a [`Reserved`] request), every other path is a 503 with `Retry-After`.
//!
//! Everything else goes to the inner service.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use ollama_translate::health::{Health, Readiness};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ollama_translate::BoxError> {
//! let app = tower::service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, ollama_translate::BoxError>(Response::new(Full::new(Bytes::from("app"))))
//! });
//! let readiness = Readiness::new(false); // no probe: ready until a shutdown
//! let svc = Health::new(app, readiness.clone());
//! let res = svc.clone().oneshot(Request::get("/readyz").body(Full::default())?).await?;
//! assert_eq!(res.status(), 200);
//! readiness.drain();
//! let res = svc.oneshot(Request::get("/readyz").body(Full::default())?).await?;
//! assert_eq!(res.status(), 503);
//! # Ok(())
//! # }
//! ```

use crate::access::Access;
use crate::client::{base_display, OllamaClient};
use crate::server::Reserved;
use crate::BoxError;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// The response body of [`Health`].
pub type HealthBody = UnsyncBoxBody<Bytes, BoxError>;

/// What `/readyz` answers: whether Ollama answered the last probe, and
/// whether a shutdown has begun. Cheap to clone (one `Arc`).
///
/// See the [module docs](crate::health) for more details.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<State>);

#[derive(Debug)]
struct State {
    ollama_ok: AtomicBool,
    draining: AtomicBool,
    /// Why the last probe failed.
    reason: Mutex<String>,
}

impl Readiness {
    /// Not ready until the first probe succeeds when `probing`; without a
    /// probe there is nothing to wait for: ready until a shutdown.
    pub fn new(probing: bool) -> Readiness {
        Readiness(Arc::new(State {
            ollama_ok: AtomicBool::new(!probing),
            draining: AtomicBool::new(false),
            reason: Mutex::new("Ollama has not been probed yet".into()),
        }))
    }

    fn set(&self, probe: &Result<(), String>) {
        match probe {
            Ok(()) => self.0.ollama_ok.store(true, Ordering::SeqCst),
            Err(why) => {
                *self.0.reason.lock().unwrap_or_else(|p| p.into_inner()) = why.clone();
                self.0.ollama_ok.store(false, Ordering::SeqCst);
            }
        }
    }

    /// A shutdown has begun: not ready from now on.
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn state(&self) -> Result<(), String> {
        if self.0.draining.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if self.0.ollama_ok.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(self
            .0
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    fn response(&self) -> Response<HealthBody> {
        match self.state() {
            Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#.into()),
            Err(reason) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "not ready", "reason": reason}).to_string(),
            ),
        }
    }

    /// Asks `ollama` for `GET /api/version` every `every` (each probe waits
    /// no longer), records the result, and logs when it changes: a warning
    /// when Ollama is not reachable (at start, or later), a line when it is
    /// again. Runs until dropped; spawn it.
    pub async fn probe_ollama(self, ollama: OllamaClient<Empty<Bytes>>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shown = base_display(ollama.base());
        let mut was_ok: Option<bool> = None;
        loop {
            ticks.tick().await;
            let probe = probe(&ollama, every).await;
            match (&probe, was_ok) {
                (Err((why, hint)), None | Some(true)) => tracing::warn!("{why}. {hint}"),
                (Ok(()), Some(false)) => tracing::info!("Ollama is reachable at {shown}"),
                (Ok(()), None) => tracing::debug!("Ollama is reachable at {shown}"),
                _ => {}
            }
            was_ok = Some(probe.is_ok());
            self.set(&probe.map_err(|(why, _)| why));
        }
    }

    /// With several hosts: ready while at least one answers the pool's
    /// questions; the reason names each host that does not. Reads
    /// [`Pool::hosts`](crate::Pool::hosts) every `every`; runs until
    /// dropped.
    #[cfg(feature = "pool")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
    pub async fn probe_pool<S>(self, pool: crate::Pool<S>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let hosts = pool.hosts();
            let probe = if hosts.iter().any(|h| h.healthy) {
                Ok(())
            } else {
                let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                Err(format!("no Ollama host answers: {}", names.join(", ")))
            };
            self.set(&probe);
        }
    }
}

/// Asks Ollama `GET /api/version` once, within `timeout`; why not and a
/// hint otherwise.
async fn probe(
    ollama: &OllamaClient<Empty<Bytes>>,
    timeout: Duration,
) -> Result<(), (String, String)> {
    let shown = base_display(ollama.base());
    let setting = ollama.setting.as_deref().unwrap_or("its address");
    let start = format!("Start it with `ollama serve`, or point {setting} at it.");
    let check =
        format!("Check {setting} (and the API key if Ollama sits behind an authenticating proxy).");
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = Uri::from_static("/api/version");
    let ask = async {
        let mut client = ollama.clone();
        let res = client.call(req).await.map_err(|e| {
            let chain = crate::error::error_chain(&e);
            (
                format!("Ollama is not reachable at {shown}: {chain}"),
                start,
            )
        })?;
        let status = res.status();
        // Read the (small) answer, so the connection can be used again.
        let _ = Limited::new(res.into_body(), 64 * 1024).collect().await;
        if status.is_success() {
            return Ok(());
        }
        let why = format!("Ollama at {shown} answered {status} to GET /api/version");
        Err((why, check.clone()))
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(r) => r,
        Err(_) => Err((
            format!(
                "Ollama at {shown} did not answer GET /api/version within {} s",
                timeout.as_secs()
            ),
            check,
        )),
    }
}

/// The process's Prometheus recorder, installed once, with the OpenTelemetry
/// GenAI conventions' bucket boundaries ([`telemetry`](crate::telemetry)):
/// without them histograms would come out as summaries. `None` when another
/// recorder was installed first.
///
/// ```
/// let handle = ollama_translate::health::prometheus();
/// let text = handle.map(|h| h.render()).unwrap_or_default();
/// # let _ = text;
/// ```
pub fn prometheus() -> Option<PrometheusHandle> {
    use crate::telemetry as t;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new().with_recommended_naming(true);
            for (name, buckets) in [
                (t::TOKEN_USAGE, t::TOKEN_BUCKETS),
                (t::OPERATION_DURATION, t::DURATION_BUCKETS),
                (t::TIME_TO_FIRST_CHUNK, t::DURATION_BUCKETS),
                (t::TIME_PER_OUTPUT_CHUNK, t::DURATION_BUCKETS),
                (t::WEB_SEARCH_DURATION, t::DURATION_BUCKETS),
            ] {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                    .ok()?;
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed: /metrics is off");
                    None
                }
            }
        })
        .clone()
}

/// Answers a server's own paths itself; everything else goes on.
///
/// See the [module docs](crate::health) for more details.
#[derive(Clone, Debug)]
pub struct Health<S> {
    inner: S,
    readiness: Readiness,
    metrics: Option<PrometheusHandle>,
    key: Option<Access>,
}

impl<S> Health<S> {
    /// `inner` behind the health paths; `/metrics` is not served (see
    /// [`Health::metrics`]).
    pub fn new(inner: S, readiness: Readiness) -> Health<S> {
        Health {
            inner,
            readiness,
            metrics: None,
            key: None,
        }
    }

    /// Serves `GET /metrics` from `handle` ([`prometheus`]; `None`: a 404
    /// saying why); when `access` requires keys, only to admin keys.
    pub fn metrics(mut self, handle: Option<PrometheusHandle>, access: Option<Access>) -> Self {
        self.metrics = handle;
        self.key = access.filter(Access::requires_key);
        self
    }

    /// The answer to `GET /metrics`.
    fn render(&self, headers: &http::HeaderMap) -> Response<HealthBody> {
        let authorized = match &self.key {
            None => true,
            Some(access) => access.caller(headers).is_some_and(|c| c.is_admin()),
        };
        if !authorized {
            let body = serde_json::json!({"error": "missing or invalid API key"});
            return json(StatusCode::UNAUTHORIZED, body.to_string());
        }
        let Some(handle) = &self.metrics else {
            let body =
                serde_json::json!({"error": "metrics are off: another recorder is installed"});
            return json(StatusCode::NOT_FOUND, body.to_string());
        };
        let mut res = json(StatusCode::OK, handle.render());
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        res
    }

    /// The answer to a request for one of the own paths, if it is one.
    fn own<T>(&self, req: &Request<T>) -> Option<Response<HealthBody>> {
        match req.uri().path() {
            "/livez" | "/healthz" => Some(json(StatusCode::OK, r#"{"status":"ok"}"#.into())),
            "/readyz" => Some(self.readiness.response()),
            _ => {
                if let Some(r) = req.extensions().get::<Reserved>() {
                    let max = r.max_connections;
                    let body = serde_json::json!({"error": format!(
                        "the server is serving its maximum of {max} connections; retry shortly"
                    )});
                    let mut res = json(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return Some(res);
                }
                (req.uri().path() == "/metrics" && req.method() == http::Method::GET)
                    .then(|| self.render(req.headers()))
            }
        }
    }
}

impl<S, T, B> Service<Request<T>> for Health<S>
where
    S: Service<Request<T>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<HealthBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<HealthBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<T>) -> Self::Future {
        if let Some(res) = self.own(&req) {
            return Box::pin(std::future::ready(Ok(res)));
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await.map_err(Into::into)?;
            Ok(res.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }
}

/// A JSON response (or text, once its content type is changed).
fn json(status: StatusCode, body: String) -> Response<HealthBody> {
    let mut res = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Key, KeyDigest, Keys};
    use tower::ServiceExt;

    fn app() -> Health<
        impl Service<
                Request<Full<Bytes>>,
                Response = Response<Full<Bytes>>,
                Error = BoxError,
                Future = impl Send + 'static,
            > + Clone,
    > {
        let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::from("app"))))
        });
        Health::new(inner, Readiness::new(true))
    }

    async fn status(
        svc: impl Service<Request<Full<Bytes>>, Response = Response<HealthBody>, Error = BoxError>,
        req: Request<Full<Bytes>>,
    ) -> u16 {
        svc.oneshot(req).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn answers_its_paths_and_passes_the_rest() {
        let get = |p: &str| Request::get(p).body(Full::default()).unwrap();
        assert_eq!(status(app(), get("/livez")).await, 200);
        assert_eq!(status(app(), get("/healthz")).await, 200);
        assert_eq!(status(app(), get("/readyz")).await, 503, "not probed yet");
        assert_eq!(status(app(), get("/metrics")).await, 404, "no recorder");
        assert_eq!(status(app(), get("/v1/models")).await, 200);
        let mut reserved = get("/v1/models");
        reserved
            .extensions_mut()
            .insert(Reserved { max_connections: 3 });
        assert_eq!(status(app(), reserved).await, 503);
    }

    #[tokio::test]
    async fn metrics_need_an_admin_key_when_keys_are_required() {
        let mut keys = Keys::new();
        keys.insert(
            Key::new("ops", KeyDigest::of("sk-ops"))
                .unwrap()
                .admin(true),
        )
        .unwrap();
        keys.insert(Key::new("bob", KeyDigest::of("sk-bob")).unwrap())
            .unwrap();
        let svc = app().metrics(prometheus(), Some(Access::new(keys)));
        let get = |key: &str| {
            Request::get("/metrics")
                .header("authorization", format!("Bearer {key}"))
                .body(Full::default())
                .unwrap()
        };
        assert_eq!(status(svc.clone(), get("sk-bob")).await, 401);
        assert_eq!(status(svc.clone(), get("nope")).await, 401);
        assert_eq!(status(svc, get("sk-ops")).await, 200);
    }
}
