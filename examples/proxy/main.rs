//! The standalone proxy: OpenAI (and, as they land, Anthropic) APIs on
//! `LISTEN_ADDR`, Ollama's native API behind it.
//!
//! ```text
//! cargo run --release --example proxy
//! ```
//!
//! Configuration comes from the environment; see `README.md`.

mod app;

#[tokio::main]
async fn main() {
    // For container health checks: asks the running proxy's `/healthz`.
    if std::env::args().skip(1).any(|a| a == "--healthcheck") {
        let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:4000".into());
        std::process::exit(match app::healthcheck(&listen).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ollama-translate: unhealthy: {e}");
                1
            }
        });
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let settings = match app::Settings::from_env(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ollama-translate: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "ollama-translate: cannot listen on {}: {e}",
                settings.listen
            );
            std::process::exit(1);
        }
    };
    if let Err(e) = app::serve(listener, settings, app::shutdown_signal()).await {
        eprintln!("ollama-translate: {e}");
        std::process::exit(1);
    }
}
