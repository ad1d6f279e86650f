//! # tandem-draft
//!
//! The edge side of Tandem: a draft model that proposes tokens and a client of the
//! verifier.
//!
//! - [`drafter`]: the draft model and its cache, synchronised by longest common prefix.
//! - [`strategy`]: `cloud_only`, `edge_only`, `speculative{k}`, `adaptive{policy}`,
//!   `pipelined{k}`.
//! - [`generate`]: one request under a strategy, with fallback to the draft alone when
//!   the verifier is lost, and resync when it is back.
//! - [`record`]: per-round records and the request summary.
//! - [`cli`]: the options of `draft-node generate` and `tandem generate`.

pub mod cli;
pub mod drafter;
mod error;
pub mod generate;
pub mod pace;
pub mod record;
mod remote;
pub mod strategy;

pub use error::DraftError;
pub use generate::{Edge, GenerateConfig, generate};
pub use pace::DevicePace;
pub use record::{Report, RoundRecord, Summary};
pub use remote::{Lost, VerifierTarget};
pub use strategy::Strategy;
