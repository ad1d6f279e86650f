//! Early exits (arXiv 2505.21594): mid-pass, the engine reads the batch's logits off an
//! intermediate layer, applies each block's acceptance rule to them, and tells the
//! block's edge what the verdict will likely be (a `ProvisionalVerdict`), so that it can
//! draft its next block while the rest of the pass runs.
//!
//! Nothing here commits: a [`Predictor`] is a copy of what the rule needs (the block,
//! the sampling, a clone of the session's random stream), taken before the pass, and
//! the session itself is only touched by the final verdict. So the output stays exactly
//! the target's: lossless whatever the exits predict.
//!
//! The stochastic rule draws from a clone of the stream the final rule will draw from,
//! so a provisional verdict agrees with the final one whenever the exit's logits lead
//! the same way.

use std::time::Instant;

use tandem_decoding::{SamplingParams, SessionRng};
use tandem_models::Logits;
use tandem_protocol::limits::DraftBlock;
use tandem_protocol::pb;
use tokio::sync::mpsc;

use super::job::Job;
use super::session::judge;

/// How an exit reads its prediction, as `Info` says it: the target's own final norm and
/// LM head on the layer's hidden states (no trained exit head).
pub const HEAD: &str = "final-norm-lm-head";

/// Where a session's provisional verdicts go.
pub type ProvisionalTx = mpsc::UnboundedSender<pb::ProvisionalVerdict>;

/// The exits to take, sorted and without repeats, or why they cannot be taken: each must
/// name a decoder layer before the last of a model with `num_layers`.
pub fn check_layers(layers: &[usize], num_layers: usize) -> Result<Vec<usize>, String> {
    let mut out = layers.to_vec();
    out.sort_unstable();
    out.dedup();
    match out.last() {
        Some(&l) if l + 1 >= num_layers => Err(format!(
            "an exit after layer {l}: the model has layers 0-{}, and an exit must come before the last (the last is the verdict itself)",
            num_layers.saturating_sub(1)
        )),
        _ => Ok(out),
    }
}

/// What one block's provisional verdict needs, copied out of its job before the pass.
pub(super) struct Predictor {
    block: DraftBlock,
    stochastic: bool,
    sampling: SamplingParams,
    rng: SessionRng,
    tx: ProvisionalTx,
}

impl Predictor {
    /// For a block whose edge asked for provisional verdicts; `None` for anything else.
    pub fn of<C>(job: &Job<C>) -> Option<Self> {
        let Job::Verify(s, v, _) = job else {
            return None;
        };
        let tx = v.provisional.clone()?;
        Some(Self {
            block: v.block.clone(),
            stochastic: s.stochastic,
            sampling: s.sampling,
            rng: s.rng.clone(),
            tx,
        })
    }

    /// The verdict the rule gives on `rows`, as a provisional verdict from `layer`.
    fn predict(
        &self,
        layer: usize,
        rows: &Logits,
        elapsed_ns: u64,
    ) -> Option<pb::ProvisionalVerdict> {
        let mut rng = self.rng.clone();
        let v = judge(self.stochastic, self.sampling, &self.block, rows, &mut rng).ok()?;
        Some(pb::ProvisionalVerdict {
            seq: self.block.seq,
            layer: layer as u32,
            accepted: v.accepted() as u32,
            next_token: v.next_token,
            committed_len: self.block.base_len + v.accepted() as u32 + 1,
            elapsed_ns,
            path: v.wire_path(&self.block),
        })
    }
}

/// The pass's exit after `layer`: each predictor's provisional verdict from its job's
/// rows of `logits` (one [`Logits`] per job, in job order), sent to its edge.
pub(super) fn announce(
    predictors: &[Option<Predictor>],
    layer: usize,
    logits: Vec<Logits>,
    start: Instant,
) {
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    for (p, rows) in predictors.iter().zip(&logits) {
        if let Some(p) = p
            && let Some(v) = p.predict(layer, rows, elapsed_ns)
        {
            // An edge gone before its verdict loses nothing by missing this.
            let _ = p.tx.send(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_must_come_before_the_last_layer() {
        assert_eq!(check_layers(&[9, 3, 3], 30).unwrap(), [3, 9]);
        assert_eq!(check_layers(&[], 30).unwrap(), Vec::<usize>::new());
        assert_eq!(check_layers(&[28], 30).unwrap(), [28]);
        let e = check_layers(&[3, 29], 30).unwrap_err();
        assert!(e.contains("layers 0-29"), "{e}");
    }
}
