//! Service metrics in the Prometheus text format (OpenMetrics), served over plain HTTP by
//! `hefun serve --metrics ADDR` at `/metrics`.

use std::time::Duration;

use client_core::wire::ErrorCode;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type CodeLabel = [(&'static str, String); 1];

/// Counters of one server process.
pub struct Metrics {
    registry: Registry,
    /// Sessions open now.
    pub sessions_active: Gauge,
    /// Sessions accepted.
    pub sessions: Counter,
    /// Inferences completed.
    pub inferences: Counter,
    /// Key uploads accepted.
    pub key_uploads: Counter,
    errors: Family<CodeLabel, Counter>,
    latency: Histogram,
    /// Bytes received from clients.
    pub bytes_received: Counter,
    /// Bytes sent to clients.
    pub bytes_sent: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Zeroed metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hefun");
        let m = Self {
            sessions_active: Gauge::default(),
            sessions: Counter::default(),
            inferences: Counter::default(),
            key_uploads: Counter::default(),
            errors: Family::default(),
            // 10 ms … ~80 s: a healthy inference is a few hundred ms, a slow client far more.
            latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sessions_active",
            "Sessions open now",
            m.sessions_active.clone(),
        );
        registry.register("sessions", "Sessions accepted", m.sessions.clone());
        registry.register("inferences", "Inferences completed", m.inferences.clone());
        registry.register("key_uploads", "Key uploads accepted", m.key_uploads.clone());
        registry.register(
            "errors",
            "Sessions ended with an error frame, by code",
            m.errors.clone(),
        );
        registry.register(
            "inference_latency_seconds",
            "From the complete input to the output sent, client rounds included",
            m.latency.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes received from clients",
            m.bytes_received.clone(),
        );
        registry.register("sent_bytes", "Bytes sent to clients", m.bytes_sent.clone());
        Self { registry, ..m }
    }

    /// Counts an error frame.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&[("code", format!("{code:?}"))])
            .inc();
    }

    /// Records one inference's latency.
    pub fn observe_latency(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Answers `GET /metrics` on `listener` until the process ends (one request per connection).
pub async fn serve_metrics(metrics: &'static Metrics, listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut req)).await
            else {
                return;
            };
            let (status, body) = if req[..n].starts_with(b"GET /metrics") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}
