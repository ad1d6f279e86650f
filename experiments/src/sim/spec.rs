//! The `[simulation]` table: run the grid on a simulated backend instead of models.

use serde::{Deserialize, Serialize};

/// A simulated draft and target: acceptance from a probability, times from a latency
/// profile. With it, `tandem run` loads no model and opens no socket; every cell runs
/// on a virtual clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Probability that the target accepts each drafted token (i.i.d. per position).
    pub acceptance: f64,
    /// Edge: time of one draft step, ms.
    pub draft_ms_per_token: f64,
    /// Cloud: fixed time of any forward pass, ms (a decode step of one session costs
    /// `pass_ms + per_session_ms + per_token_ms`).
    pub pass_ms: f64,
    /// Cloud: extra time of a pass that verifies at least one draft block, ms.
    #[serde(default)]
    pub verify_extra_ms: f64,
    /// Cloud: time per session in a pass, ms.
    #[serde(default)]
    pub per_session_ms: f64,
    /// Cloud: time per token in a pass, ms.
    #[serde(default)]
    pub per_token_ms: f64,
    /// Prompt length of every request, tokens.
    #[serde(default = "prompt_tokens")]
    pub prompt_tokens: usize,
    /// Most sessions in one pass.
    #[serde(default = "max_batch")]
    pub max_batch_sessions: usize,
}

fn prompt_tokens() -> usize {
    32
}

fn max_batch() -> usize {
    256
}

impl SimSpec {
    /// Forward time of a pass of `sessions` sessions and `tokens` tokens, ns.
    pub fn pass_ns(&self, sessions: usize, tokens: usize, verifies: bool) -> u64 {
        let ms = self.pass_ms
            + if verifies { self.verify_extra_ms } else { 0.0 }
            + self.per_session_ms * sessions as f64
            + self.per_token_ms * tokens as f64;
        (ms * 1e6).round() as u64
    }

    /// Checks the numbers; an error names the key (within `[simulation]`).
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.acceptance) {
            return Err((
                "acceptance".into(),
                format!("must be in [0, 1], got {}", self.acceptance),
            ));
        }
        for (k, v) in [
            ("draft_ms_per_token", self.draft_ms_per_token),
            ("pass_ms", self.pass_ms),
            ("verify_extra_ms", self.verify_extra_ms),
            ("per_session_ms", self.per_session_ms),
            ("per_token_ms", self.per_token_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((k.into(), format!("must be a number ≥ 0, got {v}")));
            }
        }
        if self.max_batch_sessions == 0 {
            return Err(("max_batch_sessions".into(), "must be ≥ 1".into()));
        }
        Ok(())
    }
}
