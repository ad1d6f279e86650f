//! The one error type of the decoding crate.

use crate::TokenId;

/// Everything that can be wrong with the input of a decoding routine.
///
/// Each variant names the offending position or value so that a verifier can pass the
/// message straight back to the client that sent it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodingError {
    /// A token id is not below the vocabulary size.
    #[error(
        "token {token} at draft position {position} is out of range for vocabulary size {vocab}"
    )]
    TokenOutOfRange {
        /// Position in the draft block (0-based).
        position: usize,
        /// The offending id.
        token: TokenId,
        /// The vocabulary size it was checked against.
        vocab: usize,
    },
    /// A drafted token has zero probability under the draft distribution sent with it:
    /// the draft could not have sampled it, so `p/q` is undefined.
    #[error("draft token {token} at position {position} has probability 0 under its own q")]
    ZeroDraftProbability {
        /// Position in the draft block (0-based).
        position: usize,
        /// The drafted token.
        token: TokenId,
    },
    /// The number of draft distributions does not match the number of drafted tokens.
    #[error("{tokens} drafted tokens but {dists} draft distributions")]
    DraftLengthMismatch {
        /// Drafted tokens.
        tokens: usize,
        /// Draft distributions (`q`) sent with them.
        dists: usize,
    },
    /// The target supplied a number of rows other than drafted tokens + 1.
    #[error("verification of {drafted} drafted tokens needs {} target rows, got {rows}", drafted + 1)]
    TargetRowsMismatch {
        /// Drafted tokens.
        drafted: usize,
        /// Target rows supplied.
        rows: usize,
    },
    /// A tree node whose parent is not an earlier row: rows are 0 for the committed
    /// context and `j` for node `j − 1`, so node `i`'s parent must be at most `i` (an
    /// index past that is out of order, out of range, or part of a cycle).
    #[error(
        "tree node {node} names parent row {parent}; it must be an earlier row (0: the context, j: node j-1, so at most {node})"
    )]
    TreeParent {
        /// The node (0-based, in the order sent).
        node: usize,
        /// The parent row it named.
        parent: usize,
    },
    /// The number of parents does not match the number of tree nodes.
    #[error("{tokens} tree nodes but {parents} parent indices")]
    TreeShapeMismatch {
        /// Tokens (nodes) sent.
        tokens: usize,
        /// Parent indices sent.
        parents: usize,
    },
    /// Siblings said to be drawn without replacement repeat a token.
    #[error(
        "tree node {node} repeats token {token} of an earlier sibling, drawn without replacement"
    )]
    RepeatedCandidate {
        /// The node (0-based).
        node: usize,
        /// The repeated token.
        token: TokenId,
    },
    /// A logit buffer whose length is not a whole number of rows, or an empty vocabulary.
    #[error(
        "logit buffer of {len} values is not a whole number of rows of vocabulary size {vocab}"
    )]
    BadLogitShape {
        /// Length of the buffer.
        len: usize,
        /// The vocabulary size (row length).
        vocab: usize,
    },
    /// A probability vector that is empty, negative, not finite, or sums to zero.
    #[error("invalid probability distribution: {0}")]
    InvalidDistribution(String),
    /// Sampling parameters out of their domain.
    #[error("invalid sampling parameter: {0}")]
    InvalidSamplingParams(String),
}
