//! An existing axum app gains the OpenAI and Anthropic APIs: its own routes
//! stay as they are, and every path it does not route (the client APIs,
//! translated; Ollama's native `/api/*`, untouched) goes to Ollama through
//! the layer.
//!
//! ```text
//! OLLAMA_BASE_URL=http://localhost:11434 cargo run --example axum
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
use http::{header, HeaderValue, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ollama_translate::{OllamaTranslateLayer, RequestBody};
use serde_json::{json, Value};
use tower::ServiceBuilder;

/// Sends a request to Ollama: absolute URI, Ollama's own `Host`, HTTP/1.1.
fn to_ollama(base: &Uri, mut req: Request<RequestBody<Body>>) -> Request<RequestBody<Body>> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = format!("{}{}", base.to_string().trim_end_matches('/'), pq).parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_11;
    if let Some(a) = base
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, a);
    }
    req
}

/// The app's own routes: a greeting and a small JSON API.
pub fn own_routes() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .route(
            "/api/v2/echo",
            post(|Json(v): Json<Value>| async move { Json(json!({"echo": v})) }),
        )
}

/// The app with the client APIs added: Ollama, behind the layer, is the
/// fallback service.
pub fn app(ollama_base: Uri, layer: OllamaTranslateLayer) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http::<RequestBody<Body>>();
    let ollama = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(
            |e: hyper_util::client::legacy::Error| async move {
                (
                    StatusCode::BAD_GATEWAY,
                    format!("could not reach Ollama: {e}"),
                )
            },
        ))
        .layer(layer)
        .map_request(move |req: Request<RequestBody<Body>>| to_ollama(&ollama_base, req))
        .service(client);
    own_routes().fallback_service(ollama)
}

#[allow(dead_code)] // tests/axum.rs includes this file for `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base: Uri = std::env::var("OLLAMA_BASE_URL")
        .unwrap_or_else(|_| "http://localhost:11434".into())
        .parse()?;
    let layer = OllamaTranslateLayer::new()
        .timer(|d| Box::pin(tokio::time::sleep(d)))
        .upstream_idle_timeout(std::time::Duration::from_secs(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4001").await?;
    println!(
        "axum example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app(base, layer)).await?;
    Ok(())
}
