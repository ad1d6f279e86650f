//! The hyper-parameters of a Llama-family decoder, read from an HF `config.json`.
//!
//! Both forms transformers writes are accepted: the transformers 4 form (top-level
//! `rope_theta`, `rope_scaling`, `torch_dtype`) and the transformers 5 form
//! (`rope_parameters`, `dtype`). Structural fields (sizes, head counts, `rms_norm_eps`,
//! `vocab_size`) are required; a missing optional field takes the value transformers' own
//! config class gives it for that architecture, never a Tandem choice.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{ModelError, Result};

/// The architectures Tandem runs. They differ only in defaults and biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM` (Llama 2/3, TinyLlama, SmolLM).
    Llama,
    /// `MistralForCausalLM` (no sliding window is applied; see [`LlamaConfig`]).
    Mistral,
    /// `Qwen2ForCausalLM` (bias on the q, k and v projections).
    Qwen2,
    /// `Qwen3ForCausalLM` (RMSNorm on each query and key head before RoPE, no bias,
    /// `head_dim` set apart from `hidden_size / heads`).
    Qwen3,
}

impl Arch {
    /// Parses an HF `model_type` or GGUF `general.architecture`.
    pub fn from_model_type(s: &str) -> Result<Self> {
        match s {
            "llama" => Ok(Arch::Llama),
            "mistral" => Ok(Arch::Mistral),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            other => Err(ModelError::UnknownArchitecture {
                found: other.to_string(),
            }),
        }
    }

    fn from_class(s: &str) -> Result<Self> {
        match s {
            "LlamaForCausalLM" => Ok(Arch::Llama),
            "MistralForCausalLM" => Ok(Arch::Mistral),
            "Qwen2ForCausalLM" => Ok(Arch::Qwen2),
            "Qwen3ForCausalLM" => Ok(Arch::Qwen3),
            other => Err(ModelError::UnknownArchitecture {
                found: other.to_string(),
            }),
        }
    }

    /// The `model_type` string transformers uses.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// Whether queries and keys are RMS-normalised per head (Qwen3).
    pub fn has_qk_norm(self) -> bool {
        self == Arch::Qwen3
    }

    /// Whether llama.cpp runs it with rotate-half (NeoX) RoPE, so its GGUF q/k rows are
    /// not permuted.
    pub fn gguf_rope_is_half(self) -> bool {
        matches!(self, Arch::Qwen2 | Arch::Qwen3)
    }

    /// transformers' default `max_position_embeddings` for the architecture.
    fn default_max_positions(self) -> usize {
        match self {
            Arch::Llama => 2048,
            Arch::Mistral => 4096 * 32,
            Arch::Qwen2 => 32768,
            Arch::Qwen3 => 40960,
        }
    }
}

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (transformers `rope_type = "linear"`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling (`rope_type = "llama3"`).
    Llama3 {
        /// Scale for low frequencies.
        factor: f64,
        /// Wavelength bound (in units of the original context) below which frequencies
        /// are scaled fully.
        low_freq_factor: f64,
        /// Wavelength bound above which frequencies are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
}

/// How the two halves of a rotated head are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// HF's rotate-half: dimension `i` pairs with `i + d/2`.
    Half,
    /// GGUF/llama.cpp: dimension `2i` pairs with `2i + 1` (q/k weights are permuted on
    /// conversion to match).
    Interleaved,
}

/// The hyper-parameters of one Llama-family checkpoint.
///
/// Mistral's `sliding_window` is not applied: sequences longer than the window would
/// differ from the reference. Tandem's sessions are far shorter than any shipped window.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Architecture family.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE rescaling.
    pub rope_scaling: RopeScaling,
    /// RoPE pairing layout.
    pub rope_layout: RopeLayout,
    /// Context length.
    pub max_position_embeddings: usize,
    /// Whether the LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Bias on the MLP projections.
    pub mlp_bias: bool,
    /// The dtype the checkpoint was saved in (`torch_dtype` / `dtype`), if stated.
    pub checkpoint_dtype: Option<String>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (HF allows a list).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ModelError::open("config.json", path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, format!("not valid JSON: {e}")))?;
        Self::from_json(&value).map_err(|e| match e {
            ModelError::BadConfig { message, .. } => ModelError::config(path, message),
            other => other,
        })
    }

    /// Parses a config from JSON. Errors name the offending field.
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| bad("config.json must be a JSON object"))?;
        let arch = match obj.get("architectures").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                Arch::from_class(list[0].as_str().ok_or_else(|| bad("architectures[0]"))?)?
            }
            _ => Arch::from_model_type(
                obj.get("model_type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("neither `architectures` nor `model_type` is set"))?,
            )?,
        };
        if let Some(act) = obj.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(ModelError::Unsupported(format!(
                "hidden_act {act:?} (only \"silu\")"
            )));
        }
        let hidden_size = req_usize(obj, "hidden_size")?;
        let num_heads = req_usize(obj, "num_attention_heads")?;
        let num_kv_heads = opt_usize(obj, "num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match opt_usize(obj, "head_dim")? {
            Some(d) => d,
            None if num_heads > 0 && hidden_size.is_multiple_of(num_heads) => {
                hidden_size / num_heads
            }
            None => return Err(bad("hidden_size is not a multiple of num_attention_heads")),
        };
        if num_heads == 0 || num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(bad(format!(
                "num_attention_heads ({num_heads}) must be a positive multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        if !head_dim.is_multiple_of(2) {
            return Err(bad(format!("head_dim {head_dim} must be even for RoPE")));
        }
        // transformers 5 moved rope_theta and rope_scaling into rope_parameters.
        let rope_params = obj.get("rope_parameters").and_then(Value::as_object);
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad("rope_parameters.rope_theta"))?,
            None => opt_f64(obj, "rope_theta")?.unwrap_or(10_000.0),
        };
        let scaling_obj = match rope_params {
            Some(p) => Some(p),
            None => obj.get("rope_scaling").and_then(Value::as_object),
        };
        let rope_scaling = parse_rope_scaling(scaling_obj)?;
        let attention_bias = opt_bool(obj, "attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias) = match arch {
            Arch::Qwen2 => (true, false),
            _ => (attention_bias, attention_bias),
        };
        let config = LlamaConfig {
            arch,
            vocab_size: req_usize(obj, "vocab_size")?,
            hidden_size,
            intermediate_size: req_usize(obj, "intermediate_size")?,
            num_layers: req_usize(obj, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: opt_f64(obj, "rms_norm_eps")?
                .ok_or_else(|| bad("missing field `rms_norm_eps`"))?,
            rope_theta,
            rope_scaling,
            rope_layout: RopeLayout::Half,
            max_position_embeddings: opt_usize(obj, "max_position_embeddings")?
                .unwrap_or(arch.default_max_positions()),
            tie_word_embeddings: opt_bool(obj, "tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: opt_bool(obj, "mlp_bias")?.unwrap_or(false),
            checkpoint_dtype: obj
                .get("dtype")
                .or_else(|| obj.get("torch_dtype"))
                .and_then(Value::as_str)
                .map(str::to_string),
            bos_token_id: opt_usize(obj, "bos_token_id")?.map(|v| v as u32),
            eos_token_ids: token_list(obj.get("eos_token_id"))?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants the model code relies on.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} must be positive")));
            }
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.rms_norm_eps) || !positive(self.rope_theta) {
            return Err(bad("rms_norm_eps and rope_theta must be positive"));
        }
        Ok(())
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Number of parameters (weights and biases).
    pub fn num_parameters(&self) -> usize {
        let (h, i, hd) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = self.num_heads * hd;
        let kv = self.num_kv_heads * hd;
        let mut layer = h * (q + 2 * kv) + q * h + 3 * h * i + 2 * h;
        if self.arch.has_qk_norm() {
            layer += 2 * hd;
        }
        if self.qkv_bias {
            layer += q + 2 * kv;
        }
        if self.o_bias {
            layer += h;
        }
        if self.mlp_bias {
            layer += 2 * i + h;
        }
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_layers * layer + h + head
    }

    /// The transformers 4 form of this config, as the trainer writes it.
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [match self.arch {
                Arch::Llama => "LlamaForCausalLM",
                Arch::Mistral => "MistralForCausalLM",
                Arch::Qwen2 => "Qwen2ForCausalLM",
                Arch::Qwen3 => "Qwen3ForCausalLM",
            }],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.qkv_bias,
            "attention_dropout": 0.0,
            "mlp_bias": self.mlp_bias,
            "initializer_range": 0.02,
            "use_cache": true,
            "torch_dtype": self.checkpoint_dtype.clone().unwrap_or_else(|| "float32".into()),
        });
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = json!(b);
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => v["eos_token_id"] = json!(one),
            many => v["eos_token_id"] = json!(many),
        }
        v
    }
}

fn parse_rope_scaling(obj: Option<&Map<String, Value>>) -> Result<RopeScaling> {
    let Some(obj) = obj else {
        return Ok(RopeScaling::None);
    };
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let f = |key: &str| -> Result<f64> {
        obj.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("rope scaling {kind:?} needs a numeric `{key}`")))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: f("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: f("factor")?,
            low_freq_factor: f("low_freq_factor")?,
            high_freq_factor: f("high_freq_factor")?,
            original_max_position_embeddings: f("original_max_position_embeddings")? as usize,
        }),
        other => Err(ModelError::Unsupported(format!(
            "rope scaling {other:?} (supported: default, linear, llama3)"
        ))),
    }
}

fn bad(message: impl Into<String>) -> ModelError {
    ModelError::config("config.json", message)
}

fn req_usize(obj: &Map<String, Value>, key: &str) -> Result<usize> {
    opt_usize(obj, key)?.ok_or_else(|| bad(format!("missing field `{key}`")))
}

fn opt_usize(obj: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            bad(format!(
                "field `{key}` must be a non-negative integer, got {v}"
            ))
        }),
    }
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(format!("field `{key}` must be a number, got {v}"))),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(format!("field `{key}` must be true or false, got {v}"))),
    }
}

/// An HF token id field: absent, one id, or a list of ids.
pub(crate) fn token_list(v: Option<&Value>) -> Result<Vec<u32>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_u64()
                    .map(|n| n as u32)
                    .ok_or_else(|| bad(format!("token id list has a non-integer {i}")))
            })
            .collect(),
        Some(v) => v
            .as_u64()
            .map(|n| vec![n as u32])
            .ok_or_else(|| bad(format!("token id must be an integer, got {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "torch_dtype": "bfloat16",
            "eos_token_id": [1, 2]
        })
    }

    #[test]
    fn transformers4_form() {
        let c = LlamaConfig::from_json(&base()).unwrap();
        assert_eq!((c.head_dim, c.num_kv_heads, c.group_size()), (8, 2, 2));
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.checkpoint_dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert!(!c.tie_word_embeddings);
    }

    #[test]
    fn transformers5_form_with_llama3_scaling() {
        let mut v = base();
        let o = v.as_object_mut().unwrap();
        o.remove("rope_theta");
        o.remove("torch_dtype");
        o.insert("dtype".into(), json!("float32"));
        o.insert(
            "rope_parameters".into(),
            json!({"rope_type": "llama3", "rope_theta": 250000.0, "factor": 8.0,
                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}),
        );
        let c = LlamaConfig::from_json(&v).unwrap();
        assert_eq!(c.rope_theta, 250000.0);
        assert_eq!(c.checkpoint_dtype.as_deref(), Some("float32"));
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn missing_eps_is_named() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("rms_norm_eps");
        let err = LlamaConfig::from_json(&v).unwrap_err().to_string();
        assert!(err.contains("rms_norm_eps"), "{err}");
    }

    #[test]
    fn unknown_architecture() {
        let mut v = base();
        v["architectures"] = json!(["GPT2LMHeadModel"]);
        assert!(matches!(
            LlamaConfig::from_json(&v),
            Err(ModelError::UnknownArchitecture { found }) if found == "GPT2LMHeadModel"
        ));
    }

    #[test]
    fn qwen2_has_qkv_bias_and_round_trips() {
        let mut v = base();
        v["architectures"] = json!(["Qwen2ForCausalLM"]);
        let c = LlamaConfig::from_json(&v).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        let back = LlamaConfig::from_json(&LlamaConfig::from_json(&base()).unwrap().to_hf_json());
        assert_eq!(back.unwrap(), LlamaConfig::from_json(&base()).unwrap());
    }
}
