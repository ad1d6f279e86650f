//! The simulated models. Each request has a hidden "true" continuation, the tokens
//! the target would produce at each position ([`truth`], from the request's seed). The
//! simulated draft proposes the true token at block position `i` with probability
//! `acceptance[i]` and a wrong one otherwise; the simulated verifier accepts the
//! longest prefix of true tokens and adds the true token after it. So the acceptance
//! of each position is exactly the configured one, and everything the real loop does
//! with tokens (pipelined guesses, stale blocks, resync) works as with real models.
//!
//! Worked example, acceptance 0.8 at every position, k = 4: the draft draws four
//! uniforms, say 0.3, 0.6, 0.9, 0.1; the first two are below 0.8, so positions 0 and 1
//! are true and position 2 is wrong. The verifier accepts 2 and sends the true token
//! of position 2: the round commits 3 tokens, as a real round with that outcome would.
//!
//! A token tree ([`SimDraft::propose_tree`], static shapes): at each row the candidates
//! are tried in rank order; rank 0 is the true token with its depth's acceptance, rank
//! `r ≥ 1` with `siblings[r − 1]` given the earlier ones missed; once one is true the
//! rest are wrong (distinct) tokens, and below a wrong node every token is wrong. The
//! verifier follows the true child at each row, so a tree's accepted length has
//! exactly the law [`tandem_decoding::analytic::tree::expected_tree_accepted`] takes.
//! A dynamic tree is drafted as the static shape a calibrated draft would grow on
//! average (`SimDraft::dynamic_shape`); one a level wide (`auto`'s pick of a chain)
//! is that chain.
//!
//! Re-simulating a greedy run, the draft replays the run's own outcome at each position
//! where a verified block tested it ([`super::matches_by_prompt`]) and draws the rest.

use std::time::Duration;

use tandem_decoding::SessionRng;
use tandem_draft::drafter::Block;
use tandem_draft::propose::TreePlan;
use tandem_draft::{DevicePace, DraftError, Drafted, Propose, Vocabulary};

/// Vocabulary of the simulated models.
pub const VOCAB: u32 = 32_000;
/// Their tokenizer's fingerprint.
pub const FINGERPRINT: &str = "simulated";

/// The target's token at `position` of the request seeded `seed`.
pub fn truth(seed: u64, position: usize) -> u32 {
    // splitmix64 of (seed, position): cheap, and every position independent.
    let mut z = seed ^ (position as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % u64::from(VOCAB)) as u32
}

/// A draft token that is not the true one.
fn wrong(seed: u64, position: usize) -> u32 {
    wrong_nth(seed, position, 0)
}

/// The `n`-th of distinct draft tokens that are not the true one.
fn wrong_nth(seed: u64, position: usize, n: usize) -> u32 {
    ((u64::from(truth(seed, position)) + 1 + n as u64) % u64::from(VOCAB)) as u32
}

/// The simulated draft of one request.
pub struct SimDraft {
    /// The request's seed (its true continuation).
    pub seed: u64,
    /// Acceptance probability by block position (the last repeats).
    pub acceptance: Vec<f64>,
    /// Token trees: acceptance of a row's rank-1, 2, … candidate given its earlier
    /// siblings missed (the last repeats; empty: 0).
    pub siblings: Vec<f64>,
    /// Outcomes by position of the continuation, replayed where known instead of
    /// drawn (a greedy run's, [`super::matches_by_prompt`]).
    pub matches: Option<super::Matches>,
    /// Tokens of the prompt (positions of the continuation count from its end).
    pub prompt_len: usize,
    /// One draft step on this machine's reference device, ms.
    pub ms_per_token: f64,
    /// The edge device, when one is emulated.
    pub pace: Option<DevicePace>,
    /// Its context, tokens (`usize::MAX`: unbounded).
    pub context: usize,
    /// Its KV cache per token, bytes.
    pub kv_bytes_per_token: u64,
    /// Its random stream.
    pub rng: SessionRng,
    /// Where the last block it drafted ends, and its last token (none yet: `None`).
    pub last_block: Option<(usize, u32)>,
}

impl SimDraft {
    fn accept_at(&self, i: usize) -> f64 {
        let a = &self.acceptance;
        a.get(i).or(a.last()).copied().unwrap_or(0.0)
    }

    /// Tokens it may still draft after `seq` (its context, its device's memory).
    fn room(&self, seq: &[u32]) -> Result<usize, DraftError> {
        tandem_draft::pace::room(
            self.pace.as_ref(),
            seq.len(),
            self.context,
            self.kv_bytes_per_token,
        )
        .map_err(DraftError::DraftStopped)
    }

    fn sibling_at(&self, rank: usize) -> f64 {
        let s = &self.siblings;
        s.get(rank - 1).or(s.last()).copied().unwrap_or(0.0)
    }

    /// EAGLE-2's dynamic tree of `nodes` nodes at most `depth` deep, as a calibrated
    /// draft grows it on average: its confidence in a node is the node's chance of
    /// being on the accepted path, so the tree keeps the `nodes` likeliest —
    /// [`tandem_decoding::analytic::best_tree::grow_tree`] for the first position's
    /// acceptance and the later siblings'. One shape every round: a real dynamic tree
    /// also follows how sure the draft is of each context.
    fn dynamic_shape(&self, nodes: usize, depth: usize) -> Vec<u32> {
        use tandem_decoding::analytic::best_tree::{grow_tree, level_order};
        let a: Vec<f64> = std::iter::once(self.accept_at(0))
            .chain((1..=self.siblings.len().max(1)).map(|r| self.sibling_at(r)))
            .collect();
        let grown: Vec<u32> = grow_tree(&a, nodes, depth)
            .iter()
            .map(|g| g.parent)
            .collect();
        level_order(&grown)
    }

    /// The replayed outcome at sequence position `position`, if known.
    fn known(&self, position: usize) -> Option<bool> {
        let t = position.checked_sub(self.prompt_len)?;
        self.matches.as_ref()?.get(t).copied().flatten()
    }
}

impl Propose for SimDraft {
    fn vocabulary(&self) -> Vocabulary {
        Vocabulary {
            fingerprint: FINGERPRINT.into(),
            eos_token_ids: Vec::new(),
        }
    }

    fn propose(
        &mut self,
        seq: &[u32],
        n: usize,
        keep: &mut dyn FnMut(usize, f32) -> bool,
    ) -> Result<Drafted, DraftError> {
        let room = self.room(seq)?;
        // A call that goes on from the draft's own last block (pipelined drafting ahead
        // of the verdict) opens with a guess at the verifier's token; the block after
        // the guess starts afresh, as the block after a fully accepted one would (a
        // real draft's ahead blocks accept their first token at the first-token rate).
        let ahead = self.last_block == seq.last().map(|&t| (seq.len(), t));
        let mut block = Block::default();
        for i in 0..n.min(room) {
            let p = self.accept_at(if ahead { i.saturating_sub(1) } else { i });
            // The draft's confidence is its acceptance: a calibrated draft.
            if i > 0 && !keep(i, p as f32) {
                break;
            }
            let position = seq.len() + i;
            let hit = match self.known(position) {
                Some(hit) => hit,
                None => self.rng.uniform() < p,
            };
            block.tokens.push(if hit {
                truth(self.seed, position)
            } else {
                wrong(self.seed, position)
            });
        }
        if let Some(&last) = block.tokens.last() {
            self.last_block = Some((seq.len() + block.tokens.len(), last));
        }
        let took = Duration::from_secs_f64(self.ms_per_token * block.tokens.len() as f64 / 1e3);
        let extra = took
            + self
                .pace
                .as_ref()
                .map_or(Duration::ZERO, |p| p.charge(took));
        Ok(Drafted { block, extra })
    }

    fn propose_tree(&mut self, seq: &[u32], plan: TreePlan) -> Result<Drafted, DraftError> {
        let parents = match plan {
            TreePlan::Shape(parents) => parents,
            TreePlan::Dynamic {
                nodes,
                depth,
                width: 1,
            } => (0..nodes.min(depth) as u32).collect(),
            TreePlan::Dynamic { nodes, depth, .. } => self.dynamic_shape(nodes, depth),
        };
        let room = self.room(seq)?;
        let depth_asked = tandem_decoding::tree_shape::tree_depth(&parents);
        let parents = match parents.len() <= room {
            true => parents,
            false => (0..room.min(depth_asked) as u32).collect(),
        };
        // Whether each row is on the true path (row 0, the sequence, is).
        let mut on_truth = vec![false; parents.len() + 1];
        on_truth[0] = true;
        let mut block = Block {
            parents,
            ..Block::default()
        };
        // Each row's depth (the sequence's is 0; a child of it sits at position 0).
        let mut depth = vec![0usize; block.parents.len() + 1];
        let (mut row, mut rank, mut hit_in_row) = (0u32, 0usize, false);
        for node in 0..block.parents.len() {
            let parent = block.parents[node];
            depth[node + 1] = depth[parent as usize] + 1;
            if parent != row {
                (row, rank, hit_in_row) = (parent, 0, false);
            }
            let depth = depth[parent as usize];
            let position = seq.len() + depth;
            let p = match rank {
                0 => self.accept_at(depth),
                r => self.sibling_at(r),
            };
            let hit = on_truth[row as usize]
                && !hit_in_row
                && match (rank, self.known(position)) {
                    (0, Some(known)) => known,
                    _ => self.rng.uniform() < p,
                };
            on_truth[node + 1] = hit;
            hit_in_row |= hit;
            block.tokens.push(match hit {
                true => truth(self.seed, position),
                false => wrong_nth(self.seed, position, rank),
            });
            rank += 1;
        }
        // A tree forward per depth, each a draft step.
        let levels = tandem_decoding::tree_shape::tree_depth(&block.parents);
        let took = Duration::from_secs_f64(self.ms_per_token * levels as f64 / 1e3);
        let extra = took
            + self
                .pace
                .as_ref()
                .map_or(Duration::ZERO, |p| p.charge(took));
        self.last_block = None;
        Ok(Drafted { block, extra })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_hit_the_truth_at_the_configured_rate_per_position() {
        let mut d = SimDraft {
            siblings: Vec::new(),
            seed: 9,
            acceptance: vec![0.9, 0.5, 0.1],
            matches: None,
            prompt_len: 1,
            ms_per_token: 2.0,
            pace: Some(DevicePace::new(3.0)),
            context: usize::MAX,
            kv_bytes_per_token: 1,
            last_block: None,
            rng: SessionRng::new(1),
        };
        let n = 20_000;
        let mut hits = [0u32; 4];
        let seq = [0u32; 10];
        for _ in 0..n {
            let got = d.propose(&seq, 4, &mut |_, _| true).unwrap();
            assert_eq!(got.extra, Duration::from_millis(24), "4 steps × 2 ms × 3");
            for (i, t) in got.block.tokens.iter().enumerate() {
                hits[i] += u32::from(*t == truth(9, 10 + i));
            }
        }
        for (i, want) in [0.9, 0.5, 0.1, 0.1].into_iter().enumerate() {
            let got = f64::from(hits[i]) / f64::from(n);
            let sd = (want * (1.0 - want) / f64::from(n)).sqrt();
            assert!(
                (got - want).abs() < 4.0 * sd,
                "position {i}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn known_outcomes_are_replayed_and_the_rest_drawn() {
        let matches: super::super::Matches = vec![Some(true), Some(false), None].into();
        let mut d = SimDraft {
            siblings: Vec::new(),
            seed: 9,
            acceptance: vec![0.5],
            matches: Some(matches),
            prompt_len: 10,
            ms_per_token: 1.0,
            pace: None,
            context: usize::MAX,
            kv_bytes_per_token: 1,
            last_block: None,
            rng: SessionRng::new(1),
        };
        let seq = [0u32; 10];
        let mut third = 0;
        let n = 2_000;
        for _ in 0..n {
            let got = d.propose(&seq, 3, &mut |_, _| true).unwrap().block.tokens;
            assert_eq!(
                got[0],
                truth(9, 10),
                "position 0 of the continuation: a hit"
            );
            assert_ne!(got[1], truth(9, 11), "position 1: a miss");
            third += u32::from(got[2] == truth(9, 12));
        }
        // Position 2 is unknown: drawn at 0.5 (4 standard deviations).
        assert!((f64::from(third) / f64::from(n) - 0.5).abs() < 4.0 * (0.25 / f64::from(n)).sqrt());
    }
}
