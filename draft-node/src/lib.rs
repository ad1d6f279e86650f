//! # tandem-draft
//!
//! The edge side of Tandem: a draft model that proposes tokens and a client of the verifier.
//!
//! This crate will own:
//! - the draft loop: extend the committed sequence by up to `k` tokens, keep `q` for
//!   stochastic verification, roll back to the verifier's committed length;
//! - the strategies: `cloud_only`, `edge_only`, `speculative{k}`, `adaptive{policy}`,
//!   `pipelined`, and fallback when the verifier is unreachable or too slow;
//! - per-round records (draft time, bytes, network, queue and forward time, accepted);
//! - the `draft-node` binary.
