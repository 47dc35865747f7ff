//! OTLP/HTTP export of the proxy's spans (`--features otlp`): the layer's
//! `gen_ai` spans go, through `tracing-opentelemetry` and a batch
//! exporter, to `{OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces`.
//!
//! The SDK reads the rest of the standard variables itself:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Value;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::OTLP_ENDPOINT as ENDPOINT;

/// The `service.name` unless `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
const SERVICE_NAME: &str = "ollama-translate";

/// Spans at `info` and above, whatever `RUST_LOG` lets into the log: the
/// `gen_ai` spans are `info`, tower-http's request spans `debug`.
const LEVEL: LevelFilter = LevelFilter::INFO;

/// The exporting layer and its provider (to shut down at exit), when
/// `endpoint` (the value of `OTEL_EXPORTER_OTLP_ENDPOINT`) is set and not empty.
pub fn layer<S>(
    endpoint: Option<&str>,
) -> Result<Option<(impl Layer<S>, SdkTracerProvider)>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(endpoint) = endpoint.filter(|e| !e.trim().is_empty()) else {
        return Ok(None);
    };
    // No explicit endpoint: the SDK reads the variable itself, appends
    // `/v1/traces`, and prefers OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| format!("{ENDPOINT} {endpoint:?}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // The `gen_ai` span is never entered (it lives with the answer's
        // body): busy/idle times and the creating thread say nothing.
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(LEVEL);
    Ok(Some((layer, provider)))
}

/// The SDK's resource (its detectors read `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`), named `ollama-translate` when they name
/// nothing.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let unnamed = match detected.get(&opentelemetry::Key::from_static_str("service.name")) {
        Some(Value::String(s)) => s.as_str().starts_with("unknown_service"),
        _ => true,
    };
    if unnamed {
        Resource::builder().with_service_name(SERVICE_NAME).build()
    } else {
        detected
    }
}

/// Exports what is still queued and stops the exporter (at most 5 s).
pub async fn shutdown(provider: SdkTracerProvider) {
    // The batch processor's own thread does the sending; waiting for it
    // blocks, so not on a runtime worker.
    let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("ollama-translate: exporting the last spans failed: {e}"),
        Err(e) => eprintln!("ollama-translate: exporting the last spans failed: {e}"),
    }
}
