//! # tandem-models
//!
//! The `LanguageModel` seam that both the draft node and the verifier run models through.
//!
//! This crate will own:
//! - the `LanguageModel` trait: prefill, block forward returning logits for every position,
//!   O(1) truncation of a session's KV cache (rollback after a partial accept), vocab size
//!   and tokenizer fingerprint; caches belong to sessions, not to models;
//! - a candle Llama-family decoder (Llama 2/3, TinyLlama, SmolLM, Mistral, Qwen2) with
//!   ragged batched verification across sessions;
//! - loaders for HF directories and GGUF files from local paths, and the simulated model
//!   used for experiments at scale;
//! - the trainer of the shipped tiny target/draft pair under `assets/`
//!   (`builtin:tiny-target`, `builtin:tiny-draft`).
//!
//! Sampling and acceptance live below it, in `tandem-decoding`.
