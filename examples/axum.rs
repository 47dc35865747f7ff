//! An existing axum app gains the OpenAI and Anthropic APIs: its own routes
//! stay as they are, and every path it does not route (the client APIs,
//! translated; Ollama's native `/api/*`, untouched) goes to Ollama through
//! the layer.
//!
//! ```text
//! OLLAMA_BASE_URL=http://localhost:11434 LISTEN_ADDR=127.0.0.1:4001 cargo run --example axum
//! curl localhost:4001/hello
//! curl localhost:4001/v1/chat/completions -d '{"model":"qwen3","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! # Why a fallback service, not `Router::layer`
//!
//! axum routes *before* its layers run. With
//! `Router::new().route(…).layer(OllamaTranslateLayer::new())` a request for
//! `/v1/chat/completions` matches no route, lands in the app's fallback (a
//! 404), and the layer, wrapping that fallback, rewrites it to `/api/chat`
//! for a service that is not Ollama. The layer must wrap the service that
//! *is* Ollama, and that service goes where unrouted requests go:
//! `fallback_service`. `nest_service("/v1", …)` does not work either: axum
//! strips the prefix, and the layer then sees `/chat/completions`.
//! `route_service("/v1/chat/completions", …)` per path works, but then each
//! client API (and Ollama's own `/api/*`) must be listed by hand.
//! `tests/axum.rs` drives both the right and the wrong composition.

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::Uri;
use ollama_translate::client::{bad_gateway, OllamaClient};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody, TokioTimer};
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceBuilder;

/// The app's own routes: a greeting and a small JSON API.
pub fn own_routes() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .route(
            "/api/v2/echo",
            post(|Json(v): Json<Value>| async move { Json(json!({"echo": v})) }),
        )
}

/// The app with the client APIs added: Ollama (the library's
/// `OllamaClient`, which points each request at `ollama_base`), behind the
/// layer, is the fallback service.
pub fn app(
    ollama_base: Uri,
    layer: OllamaTranslateLayer,
) -> Result<Router, Box<dyn std::error::Error>> {
    let client = OllamaClient::<RequestBody<Body>>::new(ollama_base)?;
    let ollama = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: BoxError| async move {
            bad_gateway(&*e)
        }))
        .layer(layer)
        .service(client);
    Ok(own_routes().fallback_service(ollama))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.into());
    let base: Uri = var("OLLAMA_BASE_URL", "http://localhost:11434").parse()?;
    let layer = OllamaTranslateLayer::new()
        .timer(TokioTimer)
        .upstream_idle_timeout(Duration::from_secs(300));
    let listener = tokio::net::TcpListener::bind(var("LISTEN_ADDR", "127.0.0.1:4001")).await?;
    println!(
        "axum example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app(base, layer)?).await?;
    Ok(())
}
