//! Command-line settings shared by `verifier-node serve`, `verifier-node bench` and
//! `tandem generate`.

use std::path::PathBuf;

use tandem_models::{DeviceChoice, Placement, Precision};
use tandem_protocol::Limits;

use crate::bounds::ClientBounds;
use crate::engine::budget::parse_bytes;
use crate::engine::{BatchPolicy, DEFAULT_MAX_QUEUED, KvBudget};

/// Where the target runs (`serve` and `bench`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PlacementArgs {
    /// Where the target runs: cpu, or cuda / cuda:N in a build with the `cuda` feature
    /// (tools/build-cuda.sh).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda[:N]")]
    pub device: DeviceChoice,
    /// The target's precision (activations, dense weights, KV cache). Default: f32 on
    /// the CPU, bf16 on a GPU. A GGUF file's quantized weights stay quantized at f32 and
    /// are dequantized at bf16 or f16.
    #[arg(long, value_name = "f32|bf16|f16")]
    pub dtype: Option<Precision>,
}

impl PlacementArgs {
    /// The placement.
    pub fn placement(&self) -> Placement {
        Placement {
            device: self.device,
            precision: self.dtype,
        }
    }
}

/// The limits a verifier enforces (see `Limits` in the protocol).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most tokens in one draft block.
    #[arg(long, default_value_t = Limits::default().max_draft_tokens, value_name = "N")]
    pub max_draft_tokens: u32,
    /// Most tokens in a prompt.
    #[arg(long, default_value_t = Limits::default().max_prompt_tokens, value_name = "N")]
    pub max_prompt_tokens: u32,
    /// Most sessions open at once.
    #[arg(long, default_value_t = Limits::default().max_sessions, value_name = "N")]
    pub max_sessions: u32,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_bytes, value_name = "BYTES")]
    pub max_message_bytes: u32,
    /// Most new tokens one session may ask for.
    #[arg(long, default_value_t = Limits::default().max_new_tokens, value_name = "N")]
    pub max_new_tokens: u32,
    /// Most nodes in one token tree (a Draft with parents).
    #[arg(long, default_value_t = Limits::default().max_tree_nodes, value_name = "N")]
    pub max_tree_nodes: u32,
    /// Deepest path in one token tree.
    #[arg(long, default_value_t = Limits::default().max_tree_depth, value_name = "N")]
    pub max_tree_depth: u32,
}

/// How the verifier forms its batched passes.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    /// Most sessions verified in one forward pass (1 turns batching off).
    #[arg(long, default_value_t = BatchPolicy::default().max_sessions, value_name = "N")]
    pub max_batch_sessions: usize,
    /// Most tokens in one forward pass.
    #[arg(long, default_value_t = BatchPolicy::default().max_tokens, value_name = "N")]
    pub max_batch_tokens: usize,
    /// How long to wait for more sessions' blocks before a pass, microseconds (a pass
    /// starts sooner when the budget is full or every session's block is in).
    #[arg(long, default_value_t = BatchPolicy::default().max_wait.as_micros() as u64, value_name = "US")]
    pub max_wait_us: u64,
    /// Longest piece of a prompt prefilled in one pass.
    #[arg(long, default_value_t = BatchPolicy::default().prefill_chunk, value_name = "N")]
    pub prefill_chunk: usize,
}

/// What the verifier admits: KV-cache memory and queued requests.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionArgs {
    /// KV-cache memory all sessions together may reserve (e.g. 8GiB; "none" for no
    /// limit). A session reserves its prompt + new tokens + one block up front; one
    /// that does not fit is refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value = "none", value_parser = parse_budget, value_name = "SIZE")]
    pub kv_budget: u64,
    /// KV-cache memory one session may reserve (e.g. 64MiB; "none" for no limit
    /// beyond the model's context).
    #[arg(long, default_value = "none", value_parser = parse_budget, value_name = "SIZE")]
    pub session_kv_budget: u64,
    /// Most requests (opens and blocks) waiting for the engine; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUED, value_name = "N")]
    pub max_queue: usize,
}

impl AdmissionArgs {
    /// The KV budget these settings give.
    pub fn kv(&self) -> KvBudget {
        KvBudget {
            total_bytes: self.kv_budget,
            session_bytes: self.session_kv_budget,
        }
    }
}

fn parse_budget(s: &str) -> Result<u64, String> {
    match s.trim() {
        "none" | "off" | "0" => Ok(0),
        other => parse_bytes(other),
    }
}

impl BatchArgs {
    /// The policy these settings give.
    pub fn policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_sessions: self.max_batch_sessions.max(1),
            max_tokens: self.max_batch_tokens.max(1),
            max_wait: std::time::Duration::from_micros(self.max_wait_us),
            prefill_chunk: self.prefill_chunk.max(1),
        }
    }
}

impl LimitArgs {
    /// The limits these settings give.
    pub fn limits(&self) -> Limits {
        Limits {
            max_draft_tokens: self.max_draft_tokens,
            max_prompt_tokens: self.max_prompt_tokens,
            max_sessions: self.max_sessions,
            max_message_bytes: self.max_message_bytes,
            max_new_tokens: self.max_new_tokens,
            max_tree_nodes: self.max_tree_nodes,
            max_tree_depth: self.max_tree_depth,
        }
    }
}

/// What one client may hold, and for how long (advertised in `Info.connections`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Most connections kept per listener; more wait in the accept backlog (QUIC:
    /// refused) until one closes.
    #[arg(long, default_value_t = ClientBounds::default().max_connections, value_name = "N")]
    pub max_connections: usize,
    /// Most streams, all connections together, that have not sent their first message;
    /// when one more comes, the one that has waited longest ends with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = ClientBounds::default().max_pending_streams, value_name = "N")]
    pub max_pending_streams: usize,
    /// Most streams of one connection that have not sent their first message; more
    /// are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = ClientBounds::default().max_pending_per_connection, value_name = "N")]
    pub max_pending_per_connection: usize,
    /// Most bytes, all streams together, held for messages not yet complete (e.g.
    /// 256MiB); a message that would pass it is refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes, value_name = "SIZE")]
    pub max_buffered_bytes: u64,
    /// A stream's first message (and a TCP connection's HTTP/2 preface) must arrive
    /// within this, ms; otherwise DEADLINE_EXCEEDED (the connection is closed).
    #[arg(long, default_value_t = ms(ClientBounds::default().first_message_timeout), value_name = "MS")]
    pub first_message_timeout_ms: u64,
    /// A message, once begun, must be complete within this, ms; otherwise
    /// DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = ms(ClientBounds::default().message_timeout), value_name = "MS")]
    pub message_timeout_ms: u64,
    /// Send a keep-alive (QUIC and HTTP/2 PING) this often, ms.
    #[arg(long, default_value_t = ms(ClientBounds::default().keep_alive), value_name = "MS")]
    pub keep_alive_ms: u64,
    /// Close a connection that hears nothing from its peer for this long, ms, and free
    /// its sessions (QUIC idle timeout; an HTTP/2 PING unanswered this long).
    #[arg(long, default_value_t = ms(ClientBounds::default().idle_timeout), value_name = "MS")]
    pub idle_timeout_ms: u64,
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

impl ConnectionArgs {
    /// The bounds these settings give.
    pub fn bounds(&self) -> ClientBounds {
        let ms = std::time::Duration::from_millis;
        ClientBounds {
            max_connections: self.max_connections.max(1),
            max_pending_streams: self.max_pending_streams.max(1),
            max_pending_per_connection: self.max_pending_per_connection.max(1),
            max_buffered_bytes: self.max_buffered_bytes,
            first_message_timeout: ms(self.first_message_timeout_ms.max(1)),
            message_timeout: ms(self.message_timeout_ms.max(1)),
            keep_alive: ms(self.keep_alive_ms.max(1)),
            idle_timeout: ms(self.idle_timeout_ms.max(1)),
        }
    }
}

/// Reads a bearer token from a file (first line, trimmed); an empty file is an error.
pub fn read_token(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the auth token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("the auth token file {} is empty", path.display()));
    }
    Ok(token)
}
