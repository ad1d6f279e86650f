//! Lossless acceptance of a draft block.
//!
//! Given `k` drafted tokens and the target's view of the `k + 1` positions they occupy
//! (one row per drafted token, plus one after the last), decide how many drafted tokens
//! are kept and which token the target adds. Both rules are lossless: the committed text
//! has exactly the distribution (greedy: exactly the tokens) of plain target decoding.
//!
//! - [`verify_greedy`]: keep the longest prefix equal to the target's argmax.
//! - [`verify_stochastic`]: Leviathan et al. 2023 / Chen et al. 2023 rejection sampling.
//! - [`verify_tree_greedy`], [`verify_tree_stochastic`]: the same for a tree of
//!   candidates (SpecInfer's multi-step speculative sampling; recursive rejection
//!   sampling for candidates drawn without replacement).

mod greedy;
mod stochastic;
mod tree;

pub use greedy::verify_greedy;
pub use stochastic::{FromLogits, TargetProbs, verify_stochastic};
pub use tree::{Candidates, DraftTree, TreeVerdict, verify_tree_greedy, verify_tree_stochastic};

use crate::{DecodingError, TokenId};

/// The outcome of verifying one draft block.
///
/// Positions `0..accepted` were accepted; if the block was not fully accepted, position
/// `accepted` was tested and rejected. `next_token` is the target's own token: the
/// correction at the first rejection, or the bonus after a full accept. So one round
/// commits `accepted + 1` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Number of drafted tokens in the block.
    pub drafted: usize,
    /// Length of the accepted prefix.
    pub accepted: usize,
    /// The token the target appends after the accepted prefix.
    pub next_token: TokenId,
}

impl Verdict {
    /// Drafted tokens that were tested: the accepted ones plus the first rejected one
    /// (llama.cpp's denominator for its acceptance rate).
    pub fn tested(&self) -> usize {
        (self.accepted + 1).min(self.drafted)
    }

    /// Tokens this round commits: the accepted prefix and the target's token.
    pub fn committed(&self) -> usize {
        self.accepted + 1
    }

    /// Whether every drafted token was accepted (the target's token is then a bonus).
    pub fn fully_accepted(&self) -> bool {
        self.accepted == self.drafted
    }
}

/// Rejects any drafted token that is not below `vocab`, naming the first one.
fn check_tokens(draft: &[TokenId], vocab: usize) -> Result<(), DecodingError> {
    match draft.iter().position(|&t| t as usize >= vocab) {
        Some(position) => Err(DecodingError::TokenOutOfRange {
            position,
            token: draft[position],
            vocab,
        }),
        None => Ok(()),
    }
}

fn check_rows(drafted: usize, rows: usize) -> Result<(), DecodingError> {
    if rows == drafted + 1 {
        Ok(())
    } else {
        Err(DecodingError::TargetRowsMismatch { drafted, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_counts() {
        let partial = Verdict {
            drafted: 4,
            accepted: 2,
            next_token: 9,
        };
        assert_eq!((partial.tested(), partial.committed()), (3, 3));
        assert!(!partial.fully_accepted());
        let full = Verdict {
            drafted: 4,
            accepted: 4,
            next_token: 9,
        };
        assert_eq!((full.tested(), full.committed()), (4, 5));
        assert!(full.fully_accepted());
        let empty = Verdict {
            drafted: 0,
            accepted: 0,
            next_token: 9,
        };
        assert_eq!((empty.tested(), empty.committed()), (0, 1));
    }
}
