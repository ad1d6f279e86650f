//! `random:llama-1b` and `random:llama-8b`: random weights with the shapes of Llama 3.2
//! 1B and Llama 3.1 8B, made on the device they are loaded to, for timing a verifier
//! (GPU throughput, memory-bandwidth rooflines) without the checkpoint. Their output is
//! noise; only their speed means anything. They take the tiny pair's tokenizer, whose
//! ids are a subset of the shapes' vocabulary.

use candle_core::{DType, Device, Tensor};

use super::{LoadOptions, Loaded};
use crate::config::{Arch, LlamaConfig, RopeLayout, RopeScaling};
use crate::error::{ModelError, Result};
use crate::llama::weights::WeightSource;
use crate::llama::{Identity, Llama};

/// A shape random weights are drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomShape {
    /// Llama 3.2 1B: 16 layers of width 2048, MLP 8192, 32 query and 8 key/value heads
    /// of 64, vocabulary 128 256, tied embeddings.
    Llama1B,
    /// Llama 3.1 8B: 32 layers of width 4096, MLP 14 336, 32 query and 8 key/value heads
    /// of 128, vocabulary 128 256.
    Llama8B,
}

impl RandomShape {
    /// Every shape, with its name after `random:`.
    pub const ALL: [(RandomShape, &'static str); 2] = [
        (RandomShape::Llama1B, "llama-1b"),
        (RandomShape::Llama8B, "llama-8b"),
    ];

    /// The name after `random:`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, n)| *n)
            .unwrap_or_default()
    }

    /// The shape named `name` (after `random:`).
    pub fn by_name(name: &str) -> Option<RandomShape> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }

    fn config(self) -> LlamaConfig {
        let (hidden, inter, layers, head_dim, tied) = match self {
            RandomShape::Llama1B => (2048, 8192, 16, 64, true),
            RandomShape::Llama8B => (4096, 14336, 32, 128, false),
        };
        LlamaConfig {
            arch: Arch::Llama,
            vocab_size: 128_256,
            hidden_size: hidden,
            intermediate_size: inter,
            num_layers: layers,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::None,
            rope_layout: RopeLayout::Half,
            max_position_embeddings: 8192,
            tie_word_embeddings: tied,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            checkpoint_dtype: None,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }
}

/// Normal weights (σ = 0.02, as Llama's initialisation), norms of one.
struct RandomSource {
    device: Device,
}

impl WeightSource for RandomSource {
    fn tensor(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = if name.ends_with("norm.weight") {
            Tensor::ones(shape, dtype, &self.device)?
        } else {
            Tensor::randn(0f32, 0.02, shape, &self.device)?.to_dtype(dtype)?
        };
        Ok(t)
    }
}

/// Draws the model on `opts.device` in `opts.dtype`.
pub(crate) fn load(shape: RandomShape, opts: &LoadOptions) -> Result<Loaded> {
    let tiny = super::builtin::raw(super::Builtin::TinyTarget)?;
    let mut cfg = shape.config();
    cfg.bos_token_id = tiny.cfg.bos_token_id;
    cfg.eos_token_ids = Vec::new(); // noise never ends
    let identity = Identity {
        name: format!("random:{}", shape.name()),
        tokenizer_fingerprint: tiny.tokenizer.fingerprint().to_string(),
    };
    let src = RandomSource {
        device: opts.device.clone(),
    };
    let model = Llama::from_source(cfg, &src, opts.dtype, &opts.device, identity)?;
    Ok(Loaded {
        model,
        tokenizer: tiny.tokenizer,
    })
}

/// The error for an unknown `random:` name.
pub(crate) fn unknown(s: &str) -> ModelError {
    let known: Vec<String> = RandomShape::ALL
        .iter()
        .map(|(_, n)| format!("random:{n}"))
        .collect();
    ModelError::Unsupported(format!(
        "unknown random shape {s:?} (known: {})",
        known.join(", ")
    ))
}
