//! Serve OpenAI and Anthropic client APIs from Ollama's native API.
//!
//! [`OllamaTranslateLayer`] is a [`tower_layer::Layer`] that wraps any
//! service speaking Ollama's native HTTP API (the `client` feature's
//! [`OllamaClient`](crate::client::OllamaClient) pointed at Ollama, any
//! other HTTP client, or a test double). It rewrites matching client requests into
//! native `/api/chat` requests and wraps the response body in a
//! [`TranslateBody`] that turns Ollama's NDJSON stream into the client's
//! dialect as it arrives. Every other request passes through untouched to
//! the same inner service, so Ollama's native API keeps working beside the
//! translated ones.
//!
//! | client API | path | native |
//! |---|---|---|
//! | OpenAI Chat Completions | `POST /v1/chat/completions` | `POST /api/chat` |
//! | Anthropic Messages | `POST /v1/messages`, `POST /v1/messages/count_tokens` | `POST /api/chat` |
//! | OpenAI Responses | `POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}` | `POST /api/chat` (a kept response: none) |
//! | OpenAI legacy completions | `POST /v1/completions` | `POST /api/generate` |
//! | OpenAI embeddings | `POST /v1/embeddings` | `POST /api/embed` |
//! | OpenAI models | `GET /v1/models`, `GET /v1/models/{id}` | `GET /api/tags`, `POST /api/show` |
//!
//! Unlike Ollama's own `/v1` layer it honours `think`/`reasoning_effort`,
//! never forces `temperature`/`top_p`, reports mid-stream errors in-band,
//! numbers tool calls itself, and can set `num_ctx` and `keep_alive` per
//! model.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use ollama_translate::{OllamaTranslateLayer, RequestBody};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ollama_translate::BoxError> {
//! // A stand-in for Ollama: one NDJSON stream for every request.
//! let ollama = service_fn(|req: Request<RequestBody<Full<Bytes>>>| async move {
//!     assert_eq!(req.uri().path(), "/api/chat");
//!     let ndjson = concat!(
//!         r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#, "\n",
//!         r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}"#, "\n",
//!     );
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(ndjson))))
//! });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(OllamaTranslateLayer::new())
//!     .service(ollama);
//!
//! let req = Request::post("/v1/chat/completions").body(Full::new(Bytes::from(
//!     r#"{"model":"llama3.2","messages":[{"role":"user","content":"Hello"}]}"#,
//! )))?;
//! let res = svc.oneshot(req).await?;
//! let body = res.into_body().collect().await?.to_bytes();
//! let completion: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(completion["choices"][0]["message"]["content"], "Hi");
//! assert_eq!(completion["usage"]["total_tokens"], 4);
//! # Ok(())
//! # }
//! ```
//!
//! # Where the layer goes
//!
//! The layer wraps **the service that is Ollama** (a client that sends
//! requests to Ollama's base URL), never a whole app: what it does not
//! translate it hands to that service unchanged.
//!
//! * **A hyper server** (the standalone proxy, `examples/proxy`):
//!   `ServiceBuilder::new().layer(OllamaTranslateLayer::new()).map_request(rebase).service(client)`
//!   served by hyper-util's `auto::Builder`, with the crate's own HTTP/1.1
//!   client and a `rebase` that points each request at Ollama's base URL
//!   (and its `Host`).
//! * **axum**: the layered Ollama client is the router's *fallback
//!   service*, so the app's own routes stay its own; the layer's error (a
//!   [`BoxError`]) is handled with axum's `HandleErrorLayer`.
//!   `Router::layer` does not compile: axum routes before its layers run,
//!   so a client API request would land in the app's fallback, never in
//!   Ollama ([`OllamaTranslateLayer`]'s docs show both);
//!   `nest_service("/v1", …)` strips the prefix the layer routes on.
//!   `examples/axum.rs` and `tests/axum.rs`.
//! * **tonic**: `examples/tonic.rs` serves gRPC and the client APIs on one
//!   port; see its module docs for the composition and why.
//!
//! # Several Ollama hosts
//!
//! With the `pool` feature, `ollama_translate::pool::Pool` is one service
//! over several hosts' clients: the layer wraps it exactly as it wraps one.
//! It sends each request to a host that has the model, preferring the
//! conversation's host, then one with the model loaded, then the least
//! busy, and tries the next host on a refused connection, a 503 or a 404
//! before anything reaches the client. Its `maintain` future (spawn it)
//! keeps what it knows of the hosts fresh. The layer tells it what it
//! already parsed (the model, the conversation) in a [`Routing`] request
//! extension, which a pool of one's own can read too.
//!
//! # Web search
//!
//! Claude Code's `WebSearch` and Codex's `web_search` use a tool the API
//! runs. The layer runs it: the model is offered a `web_search` function,
//! and when it calls it the layer searches, streams the call and its
//! results in the client's shape and streams the model's follow-up, all in
//! one answer. By default the search goes through the wrapped service's
//! own `POST /api/experimental/web_search` (an Ollama signed in to
//! ollama.com); [`OllamaTranslateLayer::web_search`] sets another backend
//! ([`search::WebSearch`], [`search::HttpSearch`] for SearXNG or Ollama's
//! public API), the bounds, or turns it off. See [`search`].
//!
//! Follow-up calls are made from inside the response body, so the wrapped
//! service must be `Clone + Send + 'static` with `Send` futures and bodies,
//! as every hyper, axum and tonic stack already requires.
//!
//! # Who may do what
//!
//! [`OllamaTranslateLayer::access`] takes an [`access::Access`]: named keys
//! (stored as digests), which paths need an admin key (model management,
//! blobs, Ollama's account and cloud endpoints: [`access::Scope`]), and a
//! limit of requests in flight per key. The keys can be swapped while the
//! layer serves ([`access::Access::replace`]); the key's name labels the
//! metrics and the span. [`OllamaTranslateLayer::require_api_key`] is one
//! admin key. Without either, the layer checks nothing. See [`access`].
//!
//! # Time, limits and features
//!
//! Keep-alives, the idle timeout and the request body deadline need a clock,
//! a [`Timer`] given to [`OllamaTranslateLayer::timer`] (without one, the
//! layer says once, at `warn`, which deadlines do nothing).
//! Every buffer has a bound ([`OllamaTranslateLayer::max_request_bytes`],
//! [`OllamaTranslateLayer::max_answer_bytes`],
//! [`OllamaTranslateLayer::request_memory`]). Everything above is always
//! built, and it starts no runtime.
//!
//! # Feature flags
//!
//! None but `compression` is on by default. The serving pieces read no
//! environment variable and open no listener:
//!
//! | feature | gives |
//! |---|---|
//! | `compression` (default) | gzip and zstd request bodies |
//! | `pool` | `pool::Pool`: several Ollama hosts as one service (tower's `load` and `retry`) |
//! | `tokio` | `TokioTimer`: the [`Timer`] over tokio's clock |
//! | `client` | `client::OllamaClient`: an HTTP/1.1 client that is one Ollama |
//! | `tls` | `client::https_client`: `http://` and `https://` (rustls, the Mozilla roots built in) |
//! | `server` | `server::serve`: a service on a caller's `TcpListener`, with connection limits, timeouts and a graceful shutdown |
//! | `health` | `health::Health`: `/livez`, `/readyz`, `/metrics` before a service |
//! | `proxy` | all of the above but `compression` (what `examples/proxy` uses) |
//! | `otlp` | only for `examples/proxy`: OTLP/HTTP export of its spans |
//!
//! [`keys_file`] (the keys file format) is always built.
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

pub mod access;
mod agent;
mod body;
#[cfg(feature = "client")]
pub mod client;
mod config;
mod dialect;
mod error;
mod future;
#[cfg(feature = "health")]
pub mod health;
mod json;
pub mod keys_file;
mod layer;
mod limits;
mod ollama;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub mod pool;
#[cfg(feature = "tokio")]
mod rt;
pub mod search;
#[cfg(feature = "server")]
pub mod server;
mod service;
mod shared;
mod signing;
mod store;
pub mod telemetry;
mod timer;
mod transcode;
mod util;

#[cfg(feature = "tokio")]
#[doc(inline)]
pub use self::rt::TokioTimer;
#[doc(inline)]
pub use self::{
    body::{RequestBody, TranslateBody},
    config::{ConfigError, ModelDefaults, ReasoningMode},
    error::{error_chain, BoxError},
    future::ResponseFuture,
    layer::OllamaTranslateLayer,
    ollama::routing::Routing,
    service::OllamaTranslate,
    timer::{Sleep, Timer},
};

#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
#[doc(inline)]
pub use self::pool::Pool;
