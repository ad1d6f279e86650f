//! Prometheus metrics, and the `/metrics` endpoint on its own port.
//!
//! Speculative-decoding counters keep vLLM's names and definitions
//! (`spec_decode_num_drafts`, `spec_decode_num_draft_tokens`,
//! `spec_decode_num_accepted_tokens`, `spec_decode_num_accepted_tokens_per_pos`), with
//! the prefix `tandem_` instead of `vllm:`; counters carry OpenMetrics' `_total`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Labels = Vec<(String, String)>;

/// Every metric the verifier keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Draft blocks verified.
    pub drafts: Counter,
    /// Tokens in those blocks.
    pub draft_tokens: Counter,
    /// Of those, accepted.
    pub accepted_tokens: Counter,
    accepted_per_pos: Family<Labels, Counter>,
    /// Tokens committed by the verifier (accepted + its own tokens, and cloud-only).
    pub generation_tokens: Counter,
    /// Prompt tokens prefilled.
    pub prompt_tokens: Counter,
    /// Sessions opened.
    pub sessions_opened: Counter,
    /// Sessions evicted for idleness.
    pub sessions_evicted: Counter,
    /// Sessions per forward pass.
    pub batch_size: Histogram,
    /// Tokens per forward pass.
    pub batch_tokens: Histogram,
    /// Time from arrival to the start of the pass, seconds.
    pub queue_seconds: Histogram,
    /// Forward pass time, seconds.
    pub forward_seconds: Histogram,
    /// Sessions open now.
    pub active_sessions: Gauge,
    /// KV cache bytes held by open sessions.
    pub kv_cache_bytes: Gauge,
    /// KV cache bytes promised to open sessions (what the budget counts).
    pub kv_reserved_bytes: Gauge,
    /// Requests sent to the engine and not yet answered.
    pub queued_requests: Gauge,
    errors: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tandem");
        let m = Self {
            drafts: Counter::default(),
            draft_tokens: Counter::default(),
            accepted_tokens: Counter::default(),
            accepted_per_pos: Family::default(),
            generation_tokens: Counter::default(),
            prompt_tokens: Counter::default(),
            sessions_opened: Counter::default(),
            sessions_evicted: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            batch_tokens: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            queue_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 20)),
            forward_seconds: Histogram::new(exponential_buckets(1e-4, 2.0, 16)),
            active_sessions: Gauge::default(),
            kv_cache_bytes: Gauge::default(),
            kv_reserved_bytes: Gauge::default(),
            queued_requests: Gauge::default(),
            errors: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "spec_decode_num_drafts",
            "Draft blocks verified",
            m.drafts.clone(),
        );
        r.register(
            "spec_decode_num_draft_tokens",
            "Tokens in verified draft blocks",
            m.draft_tokens.clone(),
        );
        r.register(
            "spec_decode_num_accepted_tokens",
            "Draft tokens accepted",
            m.accepted_tokens.clone(),
        );
        r.register(
            "spec_decode_num_accepted_tokens_per_pos",
            "Draft tokens accepted, by position in the block (0-based)",
            m.accepted_per_pos.clone(),
        );
        r.register(
            "generation_tokens",
            "Tokens committed by the verifier",
            m.generation_tokens.clone(),
        );
        r.register(
            "prompt_tokens",
            "Prompt tokens prefilled",
            m.prompt_tokens.clone(),
        );
        r.register(
            "sessions_opened",
            "Sessions opened",
            m.sessions_opened.clone(),
        );
        r.register(
            "sessions_evicted",
            "Sessions evicted after the idle timeout",
            m.sessions_evicted.clone(),
        );
        r.register(
            "batch_size",
            "Sessions per forward pass",
            m.batch_size.clone(),
        );
        r.register(
            "batch_tokens",
            "Tokens per forward pass",
            m.batch_tokens.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Time from arrival to the start of the forward pass",
            m.queue_seconds.clone(),
        );
        r.register(
            "forward_seconds",
            "Forward pass time",
            m.forward_seconds.clone(),
        );
        r.register(
            "active_sessions",
            "Sessions open now",
            m.active_sessions.clone(),
        );
        r.register(
            "kv_cache_bytes",
            "KV cache bytes held by open sessions",
            m.kv_cache_bytes.clone(),
        );
        r.register(
            "kv_reserved_bytes",
            "KV cache bytes promised to open sessions, as the KV budget counts them",
            m.kv_reserved_bytes.clone(),
        );
        r.register(
            "queued_requests",
            "Opens and draft blocks sent to the engine and not yet answered",
            m.queued_requests.clone(),
        );
        r.register(
            "errors",
            "Requests refused, by gRPC status code",
            m.errors.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts one verified block: `drafted` tokens, the first `accepted` kept.
    pub fn verified(&self, drafted: usize, accepted: usize) {
        self.drafts.inc();
        self.draft_tokens.inc_by(drafted as u64);
        self.accepted_tokens.inc_by(accepted as u64);
        self.generation_tokens.inc_by(accepted as u64 + 1);
        for pos in 0..accepted {
            self.accepted_per_pos
                .get_or_create(&vec![("position".into(), pos.to_string())])
                .inc();
        }
    }

    /// Counts a refusal with its code.
    pub fn error(&self, code: tonic::Code) {
        self.errors
            .get_or_create(&vec![("code".into(), format!("{code:?}"))])
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            while len < buf.len() {
                match sock.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let response = if request.starts_with("GET ")
                && (path == "/metrics" || path.starts_with("/metrics?"))
            {
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = "only GET /metrics is served here\n";
                format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Binds the metrics port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
