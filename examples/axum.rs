//! The layer inside an axum app: the app's own routes first, everything else
//! (OpenAI/Anthropic APIs translated, native `/api/*` untouched) to Ollama.
//!
//! ```text
//! OLLAMA_BASE_URL=http://localhost:11434 cargo run --example axum
//! curl localhost:4001/hello
//! curl localhost:4001/v1/chat/completions -d '{"model":"qwen3","messages":[{"role":"user","content":"hi"}]}'
//! ```

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ollama_translate::{OllamaTranslateLayer, RequestBody};
use tower::ServiceBuilder;

/// Sends a request to Ollama: absolute URI and Ollama's own Host header.
fn to_ollama(base: &Uri, mut req: Request<RequestBody<Body>>) -> Request<RequestBody<Body>> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = format!("{}{}", base.to_string().trim_end_matches('/'), pq).parse() {
        *req.uri_mut() = uri;
    }
    if let Some(a) = base
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, a);
    }
    req
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base: Uri = std::env::var("OLLAMA_BASE_URL")
        .unwrap_or_else(|_| "http://localhost:11434".into())
        .parse()?;
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
        .layer(OllamaTranslateLayer::new().think_models(["glm-5:cloud"]))
        .map_request(move |req: Request<RequestBody<Body>>| to_ollama(&base, req))
        .service(client);

    let app = Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .fallback_service(ollama);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:4001").await?;
    println!(
        "axum example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
