//! [`OllamaTranslateLayer`]: the configuration and the `tower::Layer`.

use crate::config::{model_key, Config, ModelDefaults, ReasoningMode};
use crate::service::OllamaTranslate;
use crate::shared::Shared;
use crate::timer::Timer;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Serves OpenAI and Anthropic APIs from a service that speaks Ollama's
/// native API.
///
/// Defaults: no think-models, thinking forwarded when the client asks for it
/// ([`ReasoningMode::Auto`]), no
/// per-model options or aliases, requests up to 32 MiB.
///
/// Its `Debug` output shows the configuration but not the API keys (their
/// names only) or the thinking key (`<redacted>`).
///
/// ```
/// use ollama_translate::{ModelDefaults, OllamaTranslateLayer, ReasoningMode};
///
/// let layer = OllamaTranslateLayer::new()
///     .think_models(["glm-5:cloud"])
///     .reasoning(ReasoningMode::Forward)
///     .default_options(ModelDefaults::new().num_ctx(32768).keep_alive("30m"))
///     .model_alias("gpt-4o", "qwen3:8b");
/// # let _ = layer;
/// ```
///
/// # In axum
///
/// The layer goes around the service that reaches Ollama, and that service
/// into the router as its fallback, so the app's own routes stay its own
/// and everything else (the client APIs, Ollama's native API) goes through
/// the layer. Its error is always a [`BoxError`](crate::BoxError), which
/// axum wants handled:
///
/// ```
/// use axum::{error_handling::HandleErrorLayer, routing::get, Router};
/// use ollama_translate::client::{bad_gateway, OllamaClient};
/// use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody, TokioTimer};
/// use tower::ServiceBuilder;
///
/// let ollama = OllamaClient::<RequestBody<axum::body::Body>>::new("http://127.0.0.1:11434".parse()?)?;
/// let translated = ServiceBuilder::new()
///     .layer(HandleErrorLayer::new(|e: BoxError| async move { bad_gateway(&*e) }))
///     .layer(OllamaTranslateLayer::new().timer(TokioTimer))
///     .service(ollama);
/// let app: Router = Router::new()
///     .route("/hello", get(|| async { "hello from the app" }))
///     .fallback_service(translated);
/// # Ok::<(), BoxError>(())
/// ```
///
/// `Router::layer` would put the layer around the app's own routes: a
/// translated request would reach the app's fallback, never Ollama. It
/// does not compile (axum's `Router::layer` needs an error that converts
/// into `Infallible`):
///
/// ```compile_fail
/// use axum::{routing::get, Router};
/// use ollama_translate::OllamaTranslateLayer;
///
/// let app: Router = Router::new()
///     .route("/hello", get(|| async { "hello from the app" }))
///     .layer(OllamaTranslateLayer::new());
/// ```
///
/// See the [crate docs](crate) for more details.
#[derive(Clone, Debug, Default)]
pub struct OllamaTranslateLayer {
    pub(crate) config: Arc<Config>,
    /// What its services keep at run time; clones of the layer share it.
    pub(crate) shared: Arc<Shared>,
}

impl OllamaTranslateLayer {
    /// A layer with the defaults above.
    pub fn new() -> Self {
        Self::default()
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Models that get `think: true` when the client says nothing about
    /// thinking (default: none). Only list models that can think: Ollama
    /// answers 400 to `think` on a model that cannot.
    pub fn think_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let c = self.config_mut();
        for m in models {
            let key = model_key(m.as_ref());
            if !key.is_empty() {
                c.think_models.insert(key);
            }
        }
        self
    }

    /// What to do with thinking text for every model (default: [`ReasoningMode::Auto`]).
    pub fn reasoning(mut self, mode: ReasoningMode) -> Self {
        self.config_mut().reasoning = mode;
        self
    }

    /// What to do with thinking text for one model, overriding [`Self::reasoning`].
    pub fn model_reasoning(mut self, model: impl AsRef<str>, mode: ReasoningMode) -> Self {
        self.config_mut()
            .model_reasoning
            .insert(model_key(model.as_ref()), mode);
        self
    }

    /// Options applied under every request (default: none), e.g. a larger
    /// `num_ctx` than Ollama's small default.
    pub fn default_options(mut self, defaults: ModelDefaults) -> Self {
        self.config_mut().defaults = defaults;
        self
    }

    /// Options applied under requests for one model, over [`Self::default_options`].
    pub fn model_options(mut self, model: impl AsRef<str>, defaults: ModelDefaults) -> Self {
        self.config_mut()
            .model_defaults
            .insert(model_key(model.as_ref()), defaults);
        self
    }

    /// Sends requests for the client model `from` to the Ollama model `to`
    /// (default: none). Responses still name `from`.
    pub fn model_alias(mut self, from: impl AsRef<str>, to: impl Into<String>) -> Self {
        self.config_mut()
            .aliases
            .insert(model_key(from.as_ref()), to.into());
        self
    }

    /// The Ollama model for Anthropic Messages requests that name a Claude
    /// model (`claude-…`, any case) with no alias of its own (default: none,
    /// such names go to Ollama unchanged and usually get a 404). Claude Code
    /// sends several Claude names (main model, a small fast one, subagents);
    /// this catches the ones [`Self::model_alias`] does not map. Responses
    /// still name the model the client asked for.
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        let model = model.into();
        let model = model.trim();
        self.config_mut().default_model = (!model.is_empty()).then(|| model.to_string());
        self
    }

    /// Secret used to sign thinking text handed to clients, so that it can be
    /// verified when they send it back (default: a random key per process,
    /// so signatures do not survive a restart). Any length; it is hashed.
    pub fn thinking_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config_mut().thinking_key = crate::signing::derive_key(secret.as_ref());
        self
    }

    /// Gives the layer a [`Timer`]: its clock and sleeps (default: none,
    /// and then no keep-alives, no idle timeout and no body deadline; the
    /// layer says so once, at `warn`, when it wraps a service). With the
    /// `tokio` feature, [`TokioTimer`](crate::TokioTimer); any runtime's
    /// sleep as a function also works. [`Self::keepalive`],
    /// [`Self::upstream_idle_timeout`] and [`Self::request_body_timeout`]
    /// may be set before or after it.
    ///
    /// ```
    /// use ollama_translate::{OllamaTranslateLayer, Sleep, TokioTimer};
    /// use std::time::Duration;
    ///
    /// let layer = OllamaTranslateLayer::new()
    ///     .timer(TokioTimer)
    ///     .keepalive(Duration::from_secs(15))
    ///     .upstream_idle_timeout(Duration::from_secs(300));
    /// // The same with a sleep function:
    /// let other = OllamaTranslateLayer::new()
    ///     .timer(|d: Duration| -> Sleep { Box::pin(tokio::time::sleep(d)) });
    /// # let _ = (layer, other);
    /// ```
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.config_mut().timing.timer = Some(Arc::new(timer));
        self
    }

    /// The same as [`Self::timer`] (its former spelling for a [`Timer`]).
    #[deprecated(since = "0.2.0", note = "use `timer`, which takes any `Timer`")]
    pub fn with_timer(self, timer: impl Timer) -> Self {
        self.timer(timer)
    }

    /// Silence towards the client after which a translated stream gets a
    /// keep-alive in its dialect: an SSE comment for OpenAI dialects, a
    /// `ping` event for Anthropic (default: 10 s; zero disables). Counted
    /// from the last byte the client was sent, so a model that thinks
    /// silently (its thinking dropped) still gets keep-alives. Needs
    /// [`Self::timer`].
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.config_mut().timing.keepalive = Some(every).filter(|d| !d.is_zero());
        self
    }

    /// Silence from Ollama after which a translated stream fails with an
    /// error in its dialect, and after which a request still waiting for
    /// Ollama's headers gets a 504 (default: none; zero disables). Needs
    /// [`Self::timer`].
    pub fn upstream_idle_timeout(mut self, after: Duration) -> Self {
        self.config_mut().timing.idle_timeout = Some(after).filter(|d| !d.is_zero());
        self
    }

    /// Requires every request (translated or passed through) to carry
    /// `Authorization: Bearer KEY` or `x-api-key: KEY` (default: no key).
    /// Others get a 401 in their dialect's error shape. The key is looked
    /// up by its SHA-256 digest. An empty key disables the check.
    /// The key does not travel on: accepted requests reach the inner service
    /// without `x-api-key`, and without `Authorization` when it carried the key.
    ///
    /// The same as [`Self::access`] with one admin key named `default`
    /// and no limit; it replaces an access set before.
    pub fn require_api_key(mut self, key: impl AsRef<str>) -> Self {
        let key = key.as_ref().trim();
        self.config_mut().access = (!key.is_empty())
            .then(|| crate::access::Key::new("default", crate::access::KeyDigest::of(key)).ok())
            .flatten()
            .map(|k| {
                let mut keys = crate::access::Keys::new();
                // One key cannot collide with itself.
                let _ = keys.insert(k.admin(true));
                crate::access::Access::new(keys)
            });
        self
    }

    /// Who may do what (default: no checks; everything is open). With an
    /// [`Access`](crate::access::Access), requests need one of its keys
    /// (or none, with [`Access::open`](crate::access::Access::open)); the
    /// admin paths (model management, blobs, Ollama's account and cloud
    /// endpoints, paths the layer does not know) need an admin key, and are
    /// a 403 in the path's error shape otherwise; a key at its limit of
    /// requests in flight gets a 429 with `Retry-After`. The key's name
    /// labels the request's metrics and span, and the key does not travel
    /// on (as with [`Self::require_api_key`]). Swap the keys at run time
    /// with [`Access::replace`](crate::access::Access::replace) on a clone.
    /// The layer's own calls to the wrapped service (web searches, the
    /// follow-ups of an answer) are not checked: they belong to the
    /// request that was let in.
    pub fn access(mut self, access: crate::access::Access) -> Self {
        self.config_mut().access = Some(access);
        self
    }

    /// Largest translated request body accepted (default: 32 MiB); larger
    /// ones get a 413 in the client's dialect.
    pub fn max_request_bytes(mut self, limit: usize) -> Self {
        self.config_mut().max_request_bytes = limit;
        self
    }
}

impl OllamaTranslateLayer {
    /// Longest line of Ollama's stream, and largest answer collected whole
    /// for a non-streaming client or a one-document endpoint (default:
    /// 32 MiB). Past it the answer fails with an error in the client's
    /// dialect (a 502, or an in-band error once streaming), so memory per
    /// request stays bounded whatever Ollama sends.
    pub fn max_answer_bytes(mut self, limit: usize) -> Self {
        self.config_mut().max_answer_bytes = limit;
        self
    }

    /// Memory that translated requests being read and parsed may hold
    /// together (default: 256 MiB), counting a parsed JSON value at 64
    /// bytes; past it a request gets a 503 with `Retry-After`, which the
    /// OpenAI and Anthropic SDKs retry. A body of more than a million JSON
    /// values gets a 413 before it is parsed. Clones of the layer share it.
    pub fn request_memory(mut self, bytes: usize) -> Self {
        self.shared_mut().budget = crate::limits::Budget::new(bytes);
        self
    }

    /// Whether the chunks of a response passed through (`/api/*`, anything
    /// not translated) that come together leave in one frame, one write
    /// instead of one per chunk (default: true). The bytes are the same
    /// either way; with `false` the frames are the inner body's own, as it
    /// cut them, for an embedder that relies on that.
    ///
    /// ```
    /// use ollama_translate::OllamaTranslateLayer;
    ///
    /// let layer = OllamaTranslateLayer::new().coalesce_passthrough(false);
    /// # let _ = layer;
    /// ```
    pub fn coalesce_passthrough(mut self, coalesce: bool) -> Self {
        self.config_mut().coalesce_passthrough = coalesce;
        self
    }

    /// Ollama's address (`host:port`), recorded as `server.address` on
    /// metrics and traces (default: none). The layer cannot see it: the
    /// inner service decides where requests go.
    pub fn server_address(mut self, address: impl Into<String>) -> Self {
        self.config_mut().server_address = Some(address.into());
        self
    }

    /// The longest a client may take to send a translated request's body
    /// (default: 60 s; zero disables); past it, a 408 in its dialect. A
    /// body passed through (`/api/*`) may take any time in all, but each
    /// 64 KiB of it (or its rest) must arrive within this long of the wait
    /// for them starting; a stalled or trickled one is a 408 too.
    /// Needs [`Self::timer`].
    pub fn request_body_timeout(mut self, after: Duration) -> Self {
        self.config_mut().timing.body_timeout = Some(after).filter(|d| !d.is_zero());
        self
    }

    /// Where the web searches of server tools run (Anthropic's
    /// `web_search_*` tools, the Responses `web_search` tool), and their
    /// bounds (default: [`WebSearchConfig::new`](crate::search::WebSearchConfig::new),
    /// through the wrapped Ollama's own `/api/experimental/web_search`).
    /// [`WebSearchConfig::off`](crate::search::WebSearchConfig::off) drops
    /// the server tools instead. See [`search`](crate::search).
    pub fn web_search(mut self, config: crate::search::WebSearchConfig) -> Self {
        self.config_mut().web_search = config;
        self
    }

    /// How many answered Responses responses are kept for
    /// `previous_response_id` and `GET`/`DELETE /v1/responses/{id}`, and for
    /// how long (default: 1024 entries, 64 MiB, 30 minutes; `0` entries
    /// keeps none). Entries are keyed by the response id and a digest of
    /// the client's credential, so one key never continues another's
    /// conversation; the least recently used go first. Responses sent with
    /// `store: false`, failed ones and cut ones are never kept. Clones of
    /// the layer share the store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ollama_translate::OllamaTranslateLayer;
    ///
    /// let layer = OllamaTranslateLayer::new().response_store(256, 16 << 20, Duration::from_secs(600));
    /// # let _ = layer;
    /// ```
    pub fn response_store(mut self, entries: usize, bytes: usize, ttl: Duration) -> Self {
        self.shared_mut().responses = crate::store::ResponseStore::new(crate::store::StoreLimits {
            entries,
            bytes,
            ttl,
        });
        self
    }

    /// Client headers that name a conversation, the first one present
    /// wins (default: `x-claude-code-session-id` (Claude Code),
    /// `session_id` (Codex), `x-session-id`). The one found goes on to
    /// Ollama's request, and keys the conversation of the request's
    /// [`Routing`](crate::Routing) extension, so a pool keeps the
    /// conversation's turns on one host (else the first system and user
    /// messages key it). No names: no header is read. Names that are not
    /// header names are left out.
    ///
    /// ```
    /// use ollama_translate::OllamaTranslateLayer;
    ///
    /// let layer = OllamaTranslateLayer::new().session_headers(["x-conversation", "x-session-id"]);
    /// # let _ = layer;
    /// ```
    pub fn session_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.config_mut().session_headers = names
            .into_iter()
            .filter_map(|n| http::HeaderName::from_bytes(n.as_ref().trim().as_bytes()).ok())
            .collect();
        self
    }
}

impl<S> Layer<S> for OllamaTranslateLayer {
    type Service = OllamaTranslate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.config.timing.warn_once();
        OllamaTranslate {
            inner,
            config: self.config.clone(),
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_without_a_timer_are_named() {
        let l = OllamaTranslateLayer::new();
        assert_eq!(
            l.config.timing.idle_without_timer(),
            ["keepalive", "request_body_timeout"]
        );
        let l = l
            .upstream_idle_timeout(Duration::from_secs(5))
            .keepalive(Duration::ZERO);
        assert_eq!(
            l.config.timing.idle_without_timer(),
            ["upstream_idle_timeout", "request_body_timeout"]
        );
        let l = l.timer(crate::TokioTimer);
        assert!(l.config.timing.idle_without_timer().is_empty());
    }

    #[test]
    fn builders_configure_the_layer() {
        let l = OllamaTranslateLayer::new()
            .think_models(["GLM-5:cloud", "qwen3:latest", ""])
            .reasoning(ReasoningMode::Forward)
            .model_reasoning("glm-5:cloud", ReasoningMode::Drop)
            .default_options(ModelDefaults::new().num_ctx(4096))
            .model_options(
                "qwen3",
                ModelDefaults::new().num_ctx(65536).keep_alive("1h"),
            )
            .model_alias("gpt-4o", "qwen3:8b");
        let c = &l.config;
        assert!(c.is_think_model("glm-5:cloud"));
        assert!(c.is_think_model("qwen3"));
        assert_eq!(c.reasoning_for("qwen3"), ReasoningMode::Forward);
        assert_eq!(c.reasoning_for("glm-5:cloud"), ReasoningMode::Drop);
        assert_eq!(c.defaults_for("qwen3:latest").get_num_ctx(), Some(65536));
        assert_eq!(c.defaults_for("other").get_num_ctx(), Some(4096));
        assert_eq!(c.resolve_model("GPT-4o"), "qwen3:8b");
        assert_eq!(c.resolve_model("unknown"), "unknown");
    }

    #[test]
    fn timing_setters_do_not_depend_on_their_order() {
        let sleep = |_: Duration| -> crate::Sleep { Box::pin(std::future::ready(())) };
        let before = OllamaTranslateLayer::new()
            .keepalive(Duration::from_secs(3))
            .upstream_idle_timeout(Duration::from_secs(7))
            .timer(sleep);
        let after = OllamaTranslateLayer::new()
            .timer(sleep)
            .keepalive(Duration::from_secs(3))
            .upstream_idle_timeout(Duration::from_secs(7));
        for l in [before, after] {
            let t = &l.config.timing;
            assert!(t.timer.is_some());
            assert_eq!(t.keepalive, Some(Duration::from_secs(3)));
            assert_eq!(t.idle_timeout, Some(Duration::from_secs(7)));
        }
        let off = OllamaTranslateLayer::new().keepalive(Duration::ZERO);
        assert_eq!(off.config.timing.keepalive, None);
        assert_eq!(
            OllamaTranslateLayer::new().config.timing.keepalive,
            Some(Duration::from_secs(10)),
            "the documented default"
        );
    }

    /// Three chunks, all ready at once: a body passed through.
    struct Chunks(std::collections::VecDeque<bytes::Bytes>);

    impl http_body::Body for Chunks {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(http_body::Frame::data(c))))
        }
    }

    /// The frames of `/api/tags` passed through a layer built by `layer`.
    async fn passed_through(layer: OllamaTranslateLayer) -> Vec<bytes::Bytes> {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let ollama = tower::service_fn(|_req: http::Request<crate::RequestBody<Chunks>>| async {
            let chunks = ["{\"models\":", "[]", "}"].map(bytes::Bytes::from);
            Ok::<_, std::convert::Infallible>(http::Response::new(Chunks(chunks.into())))
        });
        let req = http::Request::get("/api/tags")
            .body(Chunks(Default::default()))
            .unwrap();
        let mut body = layer.layer(ollama).oneshot(req).await.unwrap().into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        frames
    }

    #[tokio::test]
    async fn passed_through_bodies_coalesce_unless_told_not_to() {
        let coalesced = passed_through(OllamaTranslateLayer::new()).await;
        assert_eq!(coalesced, ["{\"models\":[]}"], "the default: one frame");
        let untouched =
            passed_through(OllamaTranslateLayer::new().coalesce_passthrough(false)).await;
        assert_eq!(
            untouched,
            ["{\"models\":", "[]", "}"],
            "the inner body's frames"
        );
    }
}
