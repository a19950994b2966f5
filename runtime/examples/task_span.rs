//! The monitoring guide's custom-span example, as working code: how to add your own spans
//! around a unit of work in the runtime (or in an embedding application).
//! `cargo run -p caxton-runtime --example task_span` runs two tasks and prints the spans they
//! left; `cargo test` runs the check below (`test = true` in runtime/Cargo.toml).
//!
//! ```text
//! agent.execute_task            (tracing span, via #[tracing::instrument])
//! └── task.processing           (OpenTelemetry span: task.type, task.priority, status)
//! ```
//!
//! `agent.execute_task` is an ordinary `tracing` span, so it joins whatever trace is current
//! (a request's server span, an `agent.execute`). `task.processing` is started with the
//! OpenTelemetry API directly, as a child of that span's context, and ends with status Ok, or
//! Error carrying the error's text. The test below checks exactly that against the SDK's
//! in-memory exporter.

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Status, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use thiserror::Error;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// A unit of work with a type and a priority (the guide's `Task`).
#[derive(Debug, Clone)]
pub struct Task {
    pub task_type: String,
    pub priority: u8,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    pub output: serde_json::Value,
}

#[derive(Debug, Error, PartialEq)]
pub enum TaskError {
    #[error("task type `{0}` is not supported")]
    Unsupported(String),
}

/// Runs `task` inside `agent.execute_task` / `task.processing`, recording the outcome on the
/// span. `tracer` is the runtime's (the runtime's own tracer provider) or
/// any other.
#[tracing::instrument(name = "agent.execute_task", skip_all)]
pub async fn execute_task<T>(tracer: &T, task: Task) -> Result<TaskResult, TaskError>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let parent = tracing::Span::current().context();
    let mut span = tracer.start_with_context("task.processing", &parent);
    span.set_attribute(KeyValue::new("task.type", task.task_type.clone()));
    span.set_attribute(KeyValue::new("task.priority", i64::from(task.priority)));

    let result = process_task_internal(task).await;

    match &result {
        Ok(_) => span.set_status(Status::Ok),
        Err(e) => span.set_status(Status::error(e.to_string())),
    }
    span.end();
    result
}

async fn process_task_internal(task: Task) -> Result<TaskResult, TaskError> {
    match task.task_type.as_str() {
        "echo" => Ok(TaskResult {
            output: task.payload,
        }),
        other => Err(TaskError::Unsupported(other.to_owned())),
    }
}

/// Two tasks (one succeeds, one fails) under a tracer that keeps its spans in memory, and
/// what they left: the finished spans.
async fn run_two_tasks() -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("task-span-example");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    let _default = tracing::subscriber::set_default(subscriber);

    let ok = Task {
        task_type: "echo".into(),
        priority: 3,
        payload: serde_json::json!({"x": 1}),
    };
    let bad = Task {
        task_type: "teleport".into(),
        priority: 9,
        payload: serde_json::Value::Null,
    };
    assert_eq!(
        execute_task(&tracer, ok)
            .await
            .map(|r| r.output["x"].clone()),
        Ok(serde_json::json!(1))
    );
    assert_eq!(
        execute_task(&tracer, bad).await,
        Err(TaskError::Unsupported("teleport".into()))
    );
    provider.force_flush().expect("the in-memory export");
    exporter.get_finished_spans().expect("the in-memory spans")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for span in run_two_tasks().await {
        println!(
            "{} span={} parent={} status={:?}",
            span.name,
            span.span_context.span_id(),
            span.parent_span_id,
            span.status
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::SpanKind;

    fn attr(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    #[tokio::test]
    async fn task_span_has_attributes_parent_and_status() {
        let spans = run_two_tasks().await;
        let processing: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "task.processing")
            .collect();
        let outer: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "agent.execute_task")
            .collect();
        assert_eq!((processing.len(), outer.len()), (2, 2), "{spans:#?}");
        for (p, o) in processing.iter().zip(&outer) {
            assert_eq!(p.parent_span_id, o.span_context.span_id());
            assert_eq!(p.span_context.trace_id(), o.span_context.trace_id());
            assert_eq!(p.span_kind, SpanKind::Internal);
        }
        assert_eq!(attr(processing[0], "task.type"), Some("echo".into()));
        assert_eq!(attr(processing[0], "task.priority"), Some(3i64.into()));
        assert_eq!(processing[0].status, Status::Ok);
        assert_eq!(attr(processing[1], "task.priority"), Some(9i64.into()));
        assert_eq!(
            processing[1].status,
            Status::error("task type `teleport` is not supported")
        );
    }
}
