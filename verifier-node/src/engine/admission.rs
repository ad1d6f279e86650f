//! Admission of a new session: the session limit, then the KV budget. A refused open
//! is answered at once and costs nothing; an admitted one reserves its whole length.

use tandem_models::ModelInfo;
use tandem_protocol::limits::OpenRequest;
use tandem_protocol::{Limits, WireError};

use super::KvBudget;

/// What the engine holds when an open arrives.
#[derive(Debug, Clone, Copy)]
pub(super) struct Holding {
    /// Sessions open or prefilling.
    pub sessions: usize,
    /// KV bytes promised to them.
    pub kv_reserved: u64,
}

/// Admits `req`, returning the longest committed length its session may reach, or the
/// `RESOURCE_EXHAUSTED` saying which limit it hit.
pub(super) fn admit(
    req: &OpenRequest,
    limits: &Limits,
    kv: &KvBudget,
    model: &ModelInfo,
    holding: Holding,
) -> Result<usize, WireError> {
    if holding.sessions >= limits.max_sessions as usize {
        return Err(WireError::exhausted(format!(
            "the verifier already serves {} sessions, its limit (Limits.max_sessions)",
            holding.sessions
        )));
    }
    // A drafting session may hold one block (a chain or a tree's nodes) past its new
    // tokens until the verdict.
    let block_room = if req.generate { 0 } else { limits.block_room() };
    let max_len =
        (req.prompt.len() + req.max_new_tokens as usize + block_room).min(model.max_context);
    kv.admit(max_len, model.kv_bytes_per_token, holding.kv_reserved)?;
    Ok(max_len)
}
