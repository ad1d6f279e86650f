//! Greedy verification: the committed tokens are exactly the target's greedy tokens.

use super::{Verdict, check_rows, check_tokens};
use crate::sampling::argmax;
use crate::{DecodingError, LogitRows, TokenId};

/// Verifies a greedy draft block against the target's logits.
///
/// `target` holds `draft.len() + 1` rows: row `i` is the target's logits for the token at
/// draft position `i` (given the committed prefix and `draft[..i]`). The longest prefix
/// with `draft[i] == argmax(row i)` is accepted; the next token is the argmax of the
/// first mismatching row, or of the last row after a full accept. Rows after the first
/// mismatch are never read.
pub fn verify_greedy(draft: &[TokenId], target: LogitRows<'_>) -> Result<Verdict, DecodingError> {
    check_rows(draft.len(), target.rows())?;
    check_tokens(draft, target.vocab_size())?;
    for (i, &token) in draft.iter().enumerate() {
        let best = argmax(target.row(i));
        if best != token {
            return Ok(Verdict {
                drafted: draft.len(),
                accepted: i,
                next_token: best,
            });
        }
    }
    let bonus = argmax(target.row(draft.len()));
    Ok(Verdict {
        drafted: draft.len(),
        accepted: draft.len(),
        next_token: bonus,
    })
}
