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
//! - The loop's three seams, so a simulator runs the same strategy code on a virtual
//!   clock: [`propose`] (what drafts), [`remote`] (how the verifier is reached) and
//!   [`clock`] (time and waiting).
//! - [`record`]: per-round records and the request summary.
//! - [`route`]: the `routed` strategy's rules, applied on the edge.
//! - [`cli`]: the options of `draft-node generate` and `tandem generate`.

pub mod cli;
pub mod clock;
pub mod drafter;
mod error;
pub mod generate;
pub mod pace;
pub mod propose;
pub mod record;
pub mod remote;
pub mod route;
pub mod strategy;

pub use clock::{Clock, SystemClock};
pub use error::DraftError;
pub use generate::{Edge, GenerateConfig, Parts, generate, generate_with};
pub use pace::DevicePace;
pub use propose::{Drafted, Propose, Vocabulary};
pub use record::{DraftStop, Report, RoundKind, RoundRecord, StopReason, Summary};
pub use remote::{Conn, Dial, Lost, VerifierTarget};
pub use strategy::Strategy;
