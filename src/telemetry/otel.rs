//! OTLP export, compiled only with the `otel` cargo feature: started with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/gRPC (to
//! a collector such as the OpenTelemetry Collector or Cloud Trace's), and a
//! request that arrived with a `traceparent` continues the caller's trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;

use super::BoxedLayer;
use crate::trace::TraceContext;

/// Flushes the spans not yet exported when dropped.
pub(super) struct Export(SdkTracerProvider);

impl Drop for Export {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown() {
            eprintln!("wordcount: flushing spans failed: {err}");
        }
    }
}

/// The layer that exports spans in batches, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set (the exporter reads the standard `OTEL_*` variables itself).
pub(super) fn layer() -> Option<(BoxedLayer, Export)> {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("wordcount: OTLP export disabled: {err}");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("wordcount").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    Some((tracing_opentelemetry::layer().with_tracer(provider.tracer("wordcount")).boxed(), Export(provider)))
}

/// Makes `span` a child of the caller's span, so exported spans join the
/// trace the `traceparent` header named.
pub fn continue_trace(span: &tracing::Span, trace: &TraceContext) {
    let Some(parent) = &trace.parent_span_id else { return };
    let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(trace.trace_id.as_str()), SpanId::from_hex(parent.as_str()))
    else {
        return;
    };
    let flags = if trace.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}
