//! Serve OpenAI and Anthropic client APIs from Ollama's native API.
//!
//! [`OllamaTranslateLayer`] is a [`tower_layer::Layer`] that wraps any
//! service speaking Ollama's native HTTP API (a hyper-util client pointed at
//! Ollama, or a test double). It rewrites matching client requests into
//! native `/api/chat` requests and wraps the response body in a
//! [`TranslateBody`] that turns Ollama's NDJSON stream into the client's
//! dialect as it arrives. Every other request passes through untouched, so
//! the layer can sit in front of a whole axum or tonic app.
//!
//! | client API | path | native |
//! |---|---|---|
//! | OpenAI Chat Completions | `POST /v1/chat/completions` | `POST /api/chat` |
//! | Anthropic Messages | `POST /v1/messages`, `POST /v1/messages/count_tokens` | `POST /api/chat` |
//! | OpenAI Responses (stateless) | `POST /v1/responses` | `POST /api/chat` |
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
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

mod body;
mod config;
mod dialect;
mod error;
mod future;
mod json;
mod layer;
mod ollama;
mod service;
mod signing;
mod timer;
mod util;

#[doc(inline)]
pub use self::{
    body::{RequestBody, TranslateBody},
    config::{ConfigError, ModelDefaults, ReasoningMode},
    error::BoxError,
    future::ResponseFuture,
    layer::OllamaTranslateLayer,
    service::OllamaTranslate,
    timer::{Sleep, Timer},
};
