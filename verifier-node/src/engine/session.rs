//! One session as the verifier holds it: committed tokens, KV cache, sampling, random
//! stream, and (for cloud-only generation) where its tokens go.
//!
//! Invariant between passes: the cache holds every committed token but the newest,
//! `cache.len() == committed.len() - 1`. So each pass feeds the newest committed token
//! first, then the block:
//!
//! ```text
//! committed: [p0 p1 p2 | t3]          cache: p0 p1 p2
//! draft block: d4 d5 d6               input: t3 d4 d5 d6   → 4 rows of logits
//! row i predicts position 4 + i: row 0 checks d4, row 1 d5, row 2 d6, row 3 is the bonus
//! verdict: accepted 1, next x  →  committed: p0 p1 p2 t3 d4 x,  cache truncated to 5
//! ```

use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::rng::stream;
use tandem_decoding::{SamplingParams, SessionRng, Verdict, verify_greedy, verify_stochastic};
use tandem_models::{Logits, SessionCache};
use tandem_protocol::WireError;
use tandem_protocol::limits::{DraftBlock, OpenRequest};
use tokio::sync::mpsc;

use super::GenEvent;

/// Cloud-only generation state.
pub(super) struct Generation {
    pub events: mpsc::UnboundedSender<GenEvent>,
    pub remaining: u32,
    pub ignore_eos: bool,
}

pub(super) struct Session<C> {
    pub id: u64,
    pub cache: C,
    pub committed: Vec<u32>,
    pub sampling: SamplingParams,
    pub stochastic: bool,
    pub rng: SessionRng,
    /// Longest committed length this session may reach.
    pub max_len: usize,
    pub generation: Option<Generation>,
}

impl<C: SessionCache> Session<C> {
    pub fn new(id: u64, cache: C, req: &OpenRequest, max_len: usize) -> Self {
        let stream_id = if req.generate {
            stream::GENERATE
        } else {
            stream::VERIFY
        };
        Self {
            id,
            cache,
            committed: req.prompt.clone(),
            sampling: req.sampling,
            stochastic: req.stochastic,
            rng: SessionRng::for_stream(req.seed, stream_id),
            max_len,
            generation: None,
        }
    }

    /// The target's token from one row of logits, by the session's sampling.
    pub fn pick(&mut self, row: &[f32]) -> u32 {
        if self.sampling.is_greedy() {
            tandem_decoding::sampling::argmax(row)
        } else {
            self.sampling.distribution(row).sample(&mut self.rng)
        }
    }

    /// Appends a token the target produced from a pass whose input ended at the newest
    /// committed token.
    pub fn push(&mut self, token: u32) {
        self.committed.push(token);
    }

    /// Checks that `block` extends exactly what this session has committed.
    pub fn check_block(&self, block: &DraftBlock) -> Result<(), WireError> {
        if self.generation.is_some() {
            return Err(WireError::precondition(
                "this session generates alone (Open.generate); it takes no drafts",
            ));
        }
        let len = self.committed.len();
        let last = *self.committed.last().expect("never empty");
        if block.base_len as usize != len || block.anchor != last {
            return Err(WireError::precondition(format!(
                "stale draft: it extends length {} ending in {}, the session has length {len} ending in {last}",
                block.base_len, block.anchor
            )));
        }
        let after = len + block.tokens.len() + 1;
        if after > self.max_len {
            return Err(WireError::invalid(format!(
                "a block of {} tokens would grow the sequence to {after} tokens, past this session's limit of {} (context or max_new_tokens + max_draft_tokens)",
                block.tokens.len(),
                self.max_len
            )));
        }
        Ok(())
    }

    /// The pass input for a block: the newest committed token, then the block.
    pub fn verify_input(&self, block: &DraftBlock) -> Vec<u32> {
        let mut v = Vec::with_capacity(block.tokens.len() + 1);
        v.push(*self.committed.last().expect("never empty"));
        v.extend_from_slice(&block.tokens);
        v
    }

    /// Applies the acceptance rule to the block's `k + 1` rows, commits, and rolls the
    /// cache back to the committed length.
    pub fn accept(&mut self, block: &DraftBlock, rows: &Logits) -> Result<Verdict, WireError> {
        let verdict = if self.stochastic {
            let mut target = FromLogits::new(rows.rows(), self.sampling);
            verify_stochastic(&block.tokens, &block.q, &mut target, &mut self.rng)
        } else {
            verify_greedy(&block.tokens, rows.rows())
        };
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                // Undo the pass: the cache goes back to the committed tokens.
                self.cache
                    .truncate(self.committed.len() - 1)
                    .map_err(|e| WireError::internal(e.to_string()))?;
                return Err(WireError::invalid(e.to_string()));
            }
        };
        self.committed
            .extend_from_slice(&block.tokens[..verdict.accepted]);
        self.committed.push(verdict.next_token);
        self.cache
            .truncate(self.committed.len() - 1)
            .map_err(|e| WireError::internal(e.to_string()))?;
        Ok(verdict)
    }
}
