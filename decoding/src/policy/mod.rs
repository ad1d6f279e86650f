//! How many tokens to draft next.
//!
//! A [`DraftLengthPolicy`] is asked two things by the draft loop: the most tokens to
//! draft in the next block ([`DraftLengthPolicy::next_k`]), and, as each candidate is
//! drafted, whether to keep it ([`DraftLengthPolicy::keep_drafting`], for confidence
//! stops). After the verdict it is told what happened ([`DraftLengthPolicy::observe`]).
//!
//! - [`Fixed`]: always `k`.
//! - [`PlusTwoMinusOne`]: transformers' heuristic schedule.
//! - [`Confidence`]: llama.cpp's `p_min` stop.
//! - [`Goodput`]: the `k` that maximises expected committed tokens per second.
//! - [`TreeSizer`]: a token tree's shape by the same logic, sized by the link.
//!
//! [`PolicySpec`] parses the names used on command lines and in configs.

mod goodput;
mod simple;
mod spec;
mod tree;

pub use goodput::Goodput;
pub use simple::{Confidence, Fixed, PlusTwoMinusOne};
pub use spec::PolicySpec;
pub use tree::{TreeObservation, TreeSizer};

/// What the draft node learned from one verified round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundObservation {
    /// Tokens drafted in the block.
    pub drafted: usize,
    /// Tokens of the block the verifier accepted.
    pub accepted: usize,
    /// Time spent drafting the block, seconds.
    pub draft_s: f64,
    /// Time from sending the block to receiving its verdict, seconds (network, queue,
    /// verification).
    pub remote_s: f64,
}

/// Chooses the draft length, round by round.
pub trait DraftLengthPolicy: Send + std::fmt::Debug {
    /// The most tokens to draft in the next block.
    fn next_k(&self) -> usize;

    /// Whether to keep the candidate drafted at `position` (0-based) of the current
    /// block, given the draft's top-1 probability there. Drafting stops at the first
    /// `false`. By default: keep while `position < next_k()`.
    fn keep_drafting(&self, position: usize, _top1_prob: f32) -> bool {
        position < self.next_k()
    }

    /// Feeds back the outcome of a verified round.
    fn observe(&mut self, round: &RoundObservation);
}
