//! # tandem-verifier
//!
//! The cloud side of Tandem: the service that runs the target model and verifies draft
//! blocks from many edge sessions.
//!
//! This crate will own:
//! - sessions and their KV caches, with admission, budgets and idle eviction;
//! - the scheduler actor that gathers blocks into ragged batches under a token budget and
//!   a maximum wait, runs one batched forward pass and applies each session's acceptance
//!   rule from `tandem-decoding`;
//! - cloud-only generation through the same service, Prometheus metrics, graceful
//!   shutdown;
//! - the `verifier-node` binary.
