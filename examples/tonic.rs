//! A tonic gRPC server that also serves the OpenAI and Anthropic APIs,
//! translated to an Ollama, on the same port.
//!
//! ```text
//! OLLAMA_BASE_URL=http://localhost:11434 LISTEN_ADDR=127.0.0.1:50051 cargo run --example tonic
//! grpc_health_probe -addr=127.0.0.1:50051        # gRPC (HTTP/2): grpc.health.v1.Health
//! curl 127.0.0.1:50051/v1/chat/completions -d '{"model":"qwen3","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! Both variables are optional; the defaults are `http://localhost:11434`
//! and the loopback address `127.0.0.1:50051`.
//!
//! **Composition.** The gRPC services stay tonic [`Routes`]; `/v1/{*path}` is
//! added to the axum `Router` underneath them
//! (`Routes::into_axum_router().route_service(..)`, then back into `Routes`),
//! pointing at `OllamaTranslateLayer` over a hyper-util client. Unknown gRPC
//! methods keep tonic's `Unimplemented` fallback, and Ollama's native `/api/*`
//! is not exposed. (`nest_service("/v1", ..)` would strip the `/v1` the layer
//! matches on; a `fallback_service` would send unknown gRPC calls to Ollama.)
//!
//! **Serving.** gRPC needs HTTP/2, the OpenAI and Anthropic SDKs speak
//! HTTP/1.1. This example keeps tonic's own `Server` and turns on
//! `accept_http1(true)`, so one port speaks both (h2c with prior knowledge for
//! gRPC) and tonic's transport settings — HTTP/2 keep-alive, HTTP/1
//! header-read timeout, `Server::layer`, concurrency limits — apply to the
//! HTTP routes too. Mind that they do: a `Server::timeout` bounds the response
//! head, which for a non-streaming client is the whole generation, and
//! `Server::layer` middleware sees the HTTP requests. The alternative is
//! tonic's "axum-share-tcp-port" shape, `axum::serve(listener,
//! routes(base).into_axum_router())`: hyper-util's `auto::Builder` serves both
//! versions as well (enable axum's `http2` feature), but none of tonic's
//! server settings apply.
//!
//! Requests reach Ollama through the library's `OllamaClient` (feature
//! `client`): HTTP/1.1 (an HTTP/2 client of ours is still welcome), with
//! Ollama's own `Host` (Ollama refuses foreign hosts), without hop-by-hop
//! headers or client credentials. `examples/proxy` additionally answers
//! `/livez` and `/readyz`, and shuts down gracefully.

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use http::Uri;
use ollama_translate::client::{bad_gateway, OllamaClient};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody, TokioTimer};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower::ServiceBuilder;

/// The gRPC health service, and `/v1/*` translated to the Ollama at `ollama`.
pub fn routes(ollama: Uri) -> Result<Routes, Box<dyn std::error::Error>> {
    // Keep the reporter to report per-service health; "" (the whole server)
    // starts out SERVING.
    let (_reporter, health) = tonic_health::server::health_reporter();

    let translated = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: BoxError| async move {
            bad_gateway(&*e)
        }))
        // A timer gives streams keep-alives and an upstream idle timeout.
        .layer(OllamaTranslateLayer::new().timer(TokioTimer))
        .service(OllamaClient::<RequestBody<Body>>::new(ollama)?);

    Ok(Routes::new(health)
        .into_axum_router()
        .route_service("/v1/{*path}", translated)
        .into())
}

/// Serves gRPC (HTTP/2) and the translated APIs (HTTP/1.1 or HTTP/2) on `listener`.
pub async fn serve(listener: TcpListener, ollama: Uri) -> Result<(), Box<dyn std::error::Error>> {
    Server::builder()
        .accept_http1(true)
        .add_routes(routes(ollama)?)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.into());
    let ollama: Uri = var("OLLAMA_BASE_URL", "http://localhost:11434").parse()?;
    let listener = TcpListener::bind(var("LISTEN_ADDR", "127.0.0.1:50051")).await?;
    println!(
        "gRPC + OpenAI/Anthropic on http://{} (Ollama at {ollama})",
        listener.local_addr()?
    );
    serve(listener, ollama).await
}
