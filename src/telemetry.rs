//! OpenTelemetry traces, built with `--features otel`.
//!
//! Nothing is exported unless the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the exporter speaks OTLP over HTTP with protobuf
//! and reads the other `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variables itself. Spans are the
//! `tracing` spans the controller already has: one `reconcile` span per object and pass, carrying
//! the object, its appId and, once SAE answered, the RequestId and ChangeOrderId. The same
//! `RUST_LOG` filter applies to logs and traces.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The tracing layer that exports spans, and the provider to shut down (flush) at exit; None when
/// no collector is configured.
pub fn otlp_layer<S>()
-> anyhow::Result<Option<(OpenTelemetryLayer<S, SdkTracer>, SdkTracerProvider)>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !ENDPOINT_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over the default name.
    let resource = match std::env::var_os("OTEL_SERVICE_NAME") {
        Some(_) => Resource::builder().build(),
        None => Resource::builder()
            .with_service_name("sae-controller")
            .build(),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("sae-controller");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        provider,
    )))
}
