//! OpenTelemetry export of the tracing spans over OTLP/HTTP (the `otel` feature): a batch
//! exporter on its own thread, so the call tasks never wait on the collector.

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;

/// The provider whose batch exporter [`shutdown`] flushes.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// The tracing layer that exports spans to `endpoint`; `None` without an endpoint.
///
/// Built on a plain thread: the blocking HTTP client must not be created (or dropped) on the
/// async runtime.
pub fn layer<S>(
    endpoint: Option<url::Url>,
    service_name: &str,
) -> Result<Option<impl tracing_subscriber::Layer<S>>, TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let service_name = service_name.to_owned();
    let provider = std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.as_str())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok::<_, TelemetryError>(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service_name).build())
                .build(),
        )
    })
    .join()
    .map_err(|_| TelemetryError::Exporter("exporter setup panicked".into()))??;
    let tracer = provider.tracer("switchboard");
    *PROVIDER.lock().unwrap_or_else(|p| p.into_inner()) = Some(provider);
    Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
}

/// Exports the spans that ended and are still buffered, now (blocking: call it off the async
/// runtime); a no-op when no exporter runs.
pub fn force_flush() {
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    on_own_thread(provider, |p| {
        let _ = p.force_flush();
    });
}

/// Flushes and stops the exporter, off the async runtime; a no-op when none runs.
pub fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).take();
    on_own_thread(provider, |p| {
        let _ = p.shutdown();
    });
}

/// Runs `f` on `provider` on a plain thread and waits for it: the exporter's blocking HTTP
/// client must not run on the async runtime.
fn on_own_thread(
    provider: Option<SdkTracerProvider>,
    f: impl FnOnce(&SdkTracerProvider) + Send + 'static,
) {
    if let Some(provider) = provider {
        let _ = std::thread::spawn(move || f(&provider)).join();
    }
}
