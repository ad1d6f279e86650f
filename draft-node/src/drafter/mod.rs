//! The draft model and its cache, kept in step with whatever sequence it drafts after.
//!
//! The drafter remembers which tokens its cache holds. Before drafting after a sequence
//! it keeps the longest common prefix of the two and runs only the rest, so a rollback
//! after a verdict, a pipelined guess that did not come true, or a resync after fallback
//! all come down to one rule: cache = longest common prefix, then catch up. A token
//! tree ([`tree`]) is drafted with a tree forward per depth behind the cached sequence,
//! and the cache is cut back to the sequence after each.

use std::time::Duration;

mod tree;

use tandem_decoding::{Distribution, SamplingParams, SessionRng, sampling::argmax};
use tandem_models::{LanguageModel, Logits, Positions, SessionCache};

use crate::DraftError;
use crate::pace::DevicePace;
use crate::propose::{Drafted, Propose, TreePlan, Vocabulary};

/// Tokens the draft proposed, with the distributions they were drawn from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    /// Drafted tokens.
    pub tokens: Vec<u32>,
    /// The draft's distribution at each token (stochastic sampling), else empty. A
    /// tree node's is its parent row's, the distribution it was drawn from.
    pub q: Vec<Distribution>,
    /// A token tree's parent rows (0: the context, `j`: token `j − 1`); empty: a chain.
    pub parents: Vec<u32>,
}

impl Block {
    /// A token tree's first path (from the context, each node's first child: the
    /// draft's own choice at every depth), as a chain; a chain as it is.
    pub fn first_path(self) -> Block {
        if self.parents.is_empty() {
            return self;
        }
        let mut path = Block::default();
        let mut row = 0;
        while let Some(node) = self.parents.iter().position(|&p| p == row) {
            path.tokens.push(self.tokens[node]);
            path.q.extend(self.q.get(node).cloned());
            row = node as u32 + 1;
        }
        path
    }
}

/// Draft model, its cache and its random stream.
pub struct Drafter<'m, M: LanguageModel> {
    model: &'m M,
    cache: M::Cache,
    cached: Vec<u32>,
    sampling: SamplingParams,
    rng: SessionRng,
    pace: Option<DevicePace>,
}

impl<M: LanguageModel> std::fmt::Debug for Drafter<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Drafter({} cached tokens)", self.cached.len())
    }
}

/// Runs a CPU-heavy closure without stalling the other tasks of a multi-threaded
/// runtime (the link emulation and the transport keep running meanwhile).
pub(crate) fn compute<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl<'m, M: LanguageModel> Drafter<'m, M> {
    /// A drafter with an empty cache, sampling with `sampling` from `rng`.
    pub fn new(model: &'m M, sampling: SamplingParams, rng: SessionRng) -> Self {
        Self {
            model,
            cache: model.new_cache(),
            cached: Vec::new(),
            sampling,
            rng,
            pace: None,
        }
    }

    /// Drafts at the pace of an emulated device: [`Propose::propose`] then reports the
    /// extra time the device would have taken.
    pub fn with_pace(mut self, pace: Option<DevicePace>) -> Self {
        self.pace = pace;
        self
    }

    /// Drafts up to `n` tokens after `seq`, at this machine's speed. `keep(position,
    /// top1)` may stop early (it is asked before each token after the first).
    pub fn draft(
        &mut self,
        seq: &[u32],
        n: usize,
        keep: impl FnMut(usize, f32) -> bool,
    ) -> Result<Block, DraftError> {
        self.draft_here(seq, n, keep)
    }

    fn draft_here(
        &mut self,
        seq: &[u32],
        n: usize,
        mut keep: impl FnMut(usize, f32) -> bool,
    ) -> Result<Block, DraftError> {
        let mut block = Block::default();
        if n == 0 {
            return Ok(block);
        }
        let mut logits = self.catch_up(seq)?;
        for i in 0..n {
            if i > 0 {
                let last = block.tokens[i - 1];
                logits = compute(|| {
                    self.model
                        .forward(&mut self.cache, &[last], Positions::Last)
                })?;
                self.cached.push(last);
            }
            let row = logits.last();
            if i > 0 && !keep(i, top1_prob(row)) {
                break;
            }
            let token = if self.sampling.is_greedy() {
                argmax(row)
            } else {
                let q = self.sampling.distribution(row);
                let t = q.sample(&mut self.rng);
                block.q.push(q);
                t
            };
            block.tokens.push(token);
        }
        Ok(block)
    }

    /// Brings the cache to `seq` (keeping the longest common prefix, running the rest)
    /// and returns the logits after its last token.
    fn catch_up(&mut self, seq: &[u32]) -> Result<Logits, DraftError> {
        let common = self
            .cached
            .iter()
            .zip(seq)
            .take_while(|(a, b)| a == b)
            .count()
            .min(seq.len() - 1);
        self.cache.truncate(common)?;
        self.cached.truncate(common);
        let pending = &seq[common..];
        let logits = compute(|| {
            self.model
                .forward(&mut self.cache, pending, Positions::Last)
        })?;
        self.cached.extend_from_slice(pending);
        Ok(logits)
    }

    /// Room left for drafting after `seq`: the model's context, or the emulated
    /// device's memory.
    fn room(&self, seq: &[u32]) -> Result<usize, DraftError> {
        let info = self.model.info();
        crate::pace::room(
            self.pace.as_ref(),
            seq.len(),
            info.max_context,
            info.kv_bytes_per_token as u64,
        )
        .map_err(DraftError::DraftStopped)
    }

    /// Runs `f` and reports the extra time the emulated device would have taken.
    fn paced(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Block, DraftError>,
    ) -> Result<Drafted, DraftError> {
        let t0 = std::time::Instant::now();
        let block = f(self)?;
        let extra = self
            .pace
            .as_ref()
            .map_or(Duration::ZERO, |p| p.charge(t0.elapsed()));
        Ok(Drafted { block, extra })
    }
}

impl<M: LanguageModel> Propose for Drafter<'_, M> {
    fn vocabulary(&self) -> Vocabulary {
        let info = self.model.info();
        Vocabulary {
            fingerprint: info.tokenizer_fingerprint.clone(),
            eos_token_ids: info.eos_token_ids.clone(),
        }
    }

    fn propose(
        &mut self,
        seq: &[u32],
        n: usize,
        keep: &mut dyn FnMut(usize, f32) -> bool,
    ) -> Result<Drafted, DraftError> {
        let room = self.room(seq)?;
        self.paced(|d| d.draft_here(seq, n.min(room), keep))
    }

    fn propose_tree(&mut self, seq: &[u32], plan: TreePlan) -> Result<Drafted, DraftError> {
        let room = self.room(seq)?;
        // Near the end of the room a tree would not fit: draft the chain that does.
        let plan = match plan.nodes() <= room {
            true => plan,
            false => TreePlan::chain(room.min(plan.depth())),
        };
        self.paced(|d| d.draft_tree(seq, plan))
    }
}

/// Probability of the most likely token under softmax(row).
fn top1_prob(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = row.iter().map(|&l| (l - max).exp()).sum();
    1.0 / z
}
