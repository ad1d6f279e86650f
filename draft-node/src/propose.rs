//! What drafts: the seam between the draft loop and a draft model. The loop asks for a
//! block after a sequence; a [`Propose`] answers with the tokens and how much longer
//! than the call itself the edge device would have needed (an emulated device's
//! slowdown, or a simulated model's whole drafting time). The loop waits that extra on
//! its clock, so a simulated draft costs virtual time and a real one wall time.

use std::time::Duration;

use tandem_decoding::tree_shape::{EXPAND_WIDTH, node_depths, tree_depth};

use crate::DraftError;
use crate::drafter::Block;

/// A drafted block and the device time the call did not itself take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drafted {
    /// The tokens (and their distributions when sampling).
    pub block: Block,
    /// Extra time the device needs beyond the call's own (slept on the loop's clock).
    pub extra: Duration,
}

/// The tokenizer facts the verifier must share with the draft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocabulary {
    /// Identifies the tokenizer; the verifier's must be the same.
    pub fingerprint: String,
    /// Tokens that end a sequence.
    pub eos_token_ids: Vec<u32>,
}

/// The token tree to draft in one round (`auto` is resolved to a shape by the loop
/// before it asks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreePlan {
    /// This shape: its parent rows (0: the context, `j`: node `j − 1`), as a static
    /// [`tandem_decoding::Branching::parents`] or a grown tree gives them.
    Shape(Vec<u32>),
    /// EAGLE-2's dynamic tree: `nodes` nodes at most `depth` deep, each depth
    /// expanding the `width` likeliest nodes of the newest level into their `width`
    /// likeliest tokens (greedy).
    Dynamic {
        /// Nodes sent.
        nodes: usize,
        /// Deepest path.
        depth: usize,
        /// Nodes expanded per depth, and children per expanded node.
        width: usize,
    },
}

impl TreePlan {
    /// The chain of `k` tokens.
    pub fn chain(k: usize) -> Self {
        Self::Shape((0..k as u32).collect())
    }

    /// `dynamic:N:DEPTH`: EAGLE-2's tree, [`EXPAND_WIDTH`] wide.
    pub fn dynamic(nodes: usize, depth: usize) -> Self {
        Self::Dynamic {
            nodes,
            depth,
            width: EXPAND_WIDTH,
        }
    }

    /// The dynamic tree the size of `shape` (level-ordered parent rows): as many nodes,
    /// as deep, as wide as its widest level (at most [`EXPAND_WIDTH`]). The draft's
    /// probabilities pick the nodes where `shape` fixes them by rank; a chain stays a
    /// chain.
    pub fn dynamic_like(shape: &[u32]) -> Self {
        let depths = node_depths(shape);
        let depth = depths.iter().copied().max().unwrap_or(0);
        let mut per_level = vec![0usize; depth + 1];
        for d in depths {
            per_level[d] += 1;
        }
        let widest = per_level.into_iter().max().unwrap_or(1);
        Self::Dynamic {
            nodes: shape.len(),
            depth,
            width: widest.clamp(1, EXPAND_WIDTH),
        }
    }

    /// Nodes it drafts (at most).
    pub fn nodes(&self) -> usize {
        match self {
            Self::Shape(parents) => parents.len(),
            Self::Dynamic { nodes, .. } => *nodes,
        }
    }

    /// Its deepest path.
    pub fn depth(&self) -> usize {
        match self {
            Self::Shape(parents) => tree_depth(parents),
            Self::Dynamic { depth, nodes, .. } => (*depth).min(*nodes),
        }
    }
}

/// A draft model as the draft loop uses it.
pub trait Propose: Send {
    /// The tokenizer it drafts in.
    fn vocabulary(&self) -> Vocabulary;

    /// Drafts up to `n` tokens after `seq`. `keep(position, top1_prob)` is asked before
    /// each token after the first and may stop the block early.
    fn propose(
        &mut self,
        seq: &[u32],
        n: usize,
        keep: &mut dyn FnMut(usize, f32) -> bool,
    ) -> Result<Drafted, DraftError>;

    /// Drafts a token tree after `seq`: the block's `parents` name each token's parent
    /// row, and `q` (sampling) each node's distribution.
    fn propose_tree(&mut self, seq: &[u32], plan: TreePlan) -> Result<Drafted, DraftError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_tree_takes_a_shapes_size() {
        // A chain stays a chain.
        assert_eq!(
            TreePlan::dynamic_like(&[0, 1, 2]),
            TreePlan::Dynamic {
                nodes: 3,
                depth: 3,
                width: 1
            }
        );
        // 0 → {1, 2, 3}; 1 → {4, 5}; 4 → {6}: 6 nodes, 3 deep, 3 wide.
        assert_eq!(
            TreePlan::dynamic_like(&[0, 0, 0, 1, 1, 4]),
            TreePlan::Dynamic {
                nodes: 6,
                depth: 3,
                width: 3
            }
        );
        // Wider than EAGLE-2 expands: its width.
        let bush: Vec<u32> = vec![0; 9];
        assert_eq!(TreePlan::dynamic_like(&bush), TreePlan::dynamic(9, 1));
    }
}
