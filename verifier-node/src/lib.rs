//! # tandem-verifier
//!
//! The cloud side of Tandem: the service that runs the target model and verifies draft
//! blocks from many edge sessions.
//!
//! - [`engine`]: one thread that owns the target and every session's KV cache; it
//!   gathers the commands waiting for it into one ragged batched forward pass, applies
//!   each session's acceptance rule from `tandem-decoding`, and rolls caches back.
//! - [`service`]: one session's conversation, shared by both transports.
//! - [`grpc`] and [`quic`]: the transports; [`server`] starts and stops them, and
//!   [`lifecycle`] lets a graceful shutdown finish what is in flight.
//! - [`metrics`]: Prometheus metrics (vLLM's spec-decode names) on their own port.
//! - [`testing`]: a gate that holds forward passes, for tests that decide what is queued.
//! - [`throughput`]: the throughput bench (`verifier-node bench`): committed tokens per
//!   second against concurrent sessions, batched and not, beside the raw pass.
//! - The `verifier-node` binary.

pub mod bounds;
pub mod cli;
pub mod engine;
pub mod grpc;
pub mod lifecycle;
pub mod metrics;
pub mod quic;
pub mod server;
pub mod service;
pub mod testing;
pub mod throughput;

pub use engine::{
    BatchPolicy, DEFAULT_IDLE_TIMEOUT, EngineConfig, EngineHandle, KvBudget, PassPace,
};
pub use server::{ListenConfig, Running, ServeError, serve};
