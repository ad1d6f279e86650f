//! Prometheus metrics, and the `/metrics` endpoint on its own port (hyper's HTTP/1.1
//! server, with a header timeout, a connection timeout and a bound on connections).
//!
//! Speculative-decoding counters keep vLLM's names and definitions
//! (`spec_decode_num_drafts`, `spec_decode_num_draft_tokens`,
//! `spec_decode_num_accepted_tokens`, `spec_decode_num_accepted_tokens_per_pos`), with
//! the prefix `tandem_` instead of `vllm:`; counters carry OpenMetrics' `_total`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::bounds::listener::Acceptor;

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
    accept_errors: Family<Labels, Counter>,
    provisional: Family<Labels, Counter>,
    provisional_agreed: Family<Labels, Counter>,
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
            accept_errors: Family::default(),
            provisional: Family::default(),
            provisional_agreed: Family::default(),
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
        r.register(
            "accept_errors",
            "Failed accepts (out of file descriptors, say), by listener; each is followed by a back-off",
            m.accept_errors.clone(),
        );
        r.register(
            "provisional_verdicts",
            "Provisional verdicts sent from an early exit, by layer",
            m.provisional.clone(),
        );
        r.register(
            "provisional_verdicts_agreed",
            "Provisional verdicts the final verdict agreed with (accepted length and next token), by layer",
            m.provisional_agreed.clone(),
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

    /// Counts a provisional verdict from the exit after `layer`, and whether the final
    /// verdict agreed with it.
    pub fn provisional(&self, layer: u32, agreed: bool) {
        let labels = vec![("layer".into(), layer.to_string())];
        self.provisional.get_or_create(&labels).inc();
        if agreed {
            self.provisional_agreed.get_or_create(&labels).inc();
        }
    }

    /// Counts a refusal with its code.
    pub fn error(&self, code: tonic::Code) {
        self.errors
            .get_or_create(&vec![("code".into(), format!("{code:?}"))])
            .inc();
    }

    /// The counter of failed accepts on `listener`.
    pub fn accept_errors(&self, listener: &str) -> Counter {
        self.accept_errors
            .get_or_create(&vec![("listener".into(), listener.into())])
            .clone()
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// How long a scraper may take to send its request's headers before the connection is
/// closed (a client that connects and says nothing holds nothing for long).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole metrics connection may last.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Metrics connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` on `listener` (HTTP/1.1, one request per connection) until the
/// task is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    let errors = metrics.accept_errors("metrics");
    let mut acceptor = Acceptor::new(listener, MAX_CONNECTIONS, "metrics", errors);
    loop {
        let (sock, slot) = acceptor.next().await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let page = respond(&metrics, &req);
                async move { Ok::<_, Infallible>(page) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(sock), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

/// The answer to one request: the exposition for `GET /metrics`, 404 otherwise.
fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, kind, body) = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "only GET /metrics is served here\n".to_string(),
        )
    };
    let mut page = Response::new(Full::new(Bytes::from(body)));
    *page.status_mut() = status;
    page.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    page
}

/// Binds the metrics port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
