//! # tandem-decoding
//!
//! The pure algorithms of speculative decoding, on probability and logit slices: no I/O,
//! no tensors, no async. Both nodes and the simulator call into this crate, so the rule
//! that decides which tokens are committed is written exactly once.
//!
//! - [`rng`]: a seeded, per-session random stream that never changes across versions.
//! - [`sampling`]: temperature, top-k, top-p and min-p turn logits into a
//!   [`Distribution`] (dense, or sparse when truncated); greedy is argmax.
//! - [`acceptance`]: the lossless acceptance rules, greedy and stochastic
//!   (Leviathan et al. 2023, Chen et al. 2023), returning a [`Verdict`]; for token
//!   trees, a [`TreeVerdict`].
//! - [`stats`]: vLLM's and llama.cpp's acceptance metrics accumulated from verdicts.
//! - [`policy`]: how many tokens to draft next (fixed, +2/−1, confidence stop, goodput),
//!   and a token tree's shape by the link ([`policy::TreeSizer`]).
//! - [`tree_shape`]: the trees an edge drafts (`3,2,1`, `dynamic:N`, `auto`).
//! - [`analytic`]: expected tokens per round, speedup, network-aware round time, and
//!   the cloud-only baseline.

pub mod acceptance;
pub mod analytic;
mod distribution;
mod error;
pub mod policy;
pub mod rng;
pub mod sampling;
pub mod stats;
pub mod tree_shape;

pub use acceptance::{
    Candidates, DraftTree, TargetProbs, TreeVerdict, Verdict, verify_greedy, verify_stochastic,
    verify_tree_greedy, verify_tree_stochastic,
};
pub use distribution::{Distribution, LogitRows};
pub use error::DecodingError;
pub use rng::SessionRng;
pub use sampling::SamplingParams;
pub use tree_shape::{Branching, TreeShape};

/// A token id. Vocabularies up to 2³² entries.
pub type TokenId = u32;
