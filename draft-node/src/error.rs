//! The draft node's one error type.

use tandem_protocol::{ProtocolError, WireError};

/// What can stop a generation.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// The draft model failed.
    #[error("draft model: {0}")]
    Model(#[from] tandem_models::ModelError),
    /// The verifier could not be reached, and fallback is off or impossible.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The verifier refused a request; this is not a network fault, so no fallback.
    #[error("the verifier refused: {0}")]
    Refused(WireError),
    /// The verifier answered something the protocol does not allow here.
    #[error("protocol violation by the verifier: {0}")]
    Violation(String),
    /// The draft model cannot go on, and there is no verifier to go on with.
    #[error("the draft model cannot go on ({0}) and no verifier is configured to take over")]
    DraftStopped(crate::record::DraftStop),
    /// Settings that cannot work together.
    #[error("{0}")]
    Usage(String),
}
