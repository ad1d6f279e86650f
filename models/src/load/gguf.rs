//! GGUF files (llama.cpp's format) with quantized weights, for edge drafts.
//!
//! Reading maps llama.cpp's tensor names to HF names and keeps 2-D weights quantized
//! ([`QMatMul`]); norms and the embedding rows are dequantized. llama.cpp's converter
//! permutes the q/k rows of Llama and Mistral so that RoPE pairs adjacent dimensions;
//! such files run with [`RopeLayout::Interleaved`]. [`write_gguf`] does the same
//! permutation, so a file it writes loads in llama.cpp too.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};

use super::{LoadOptions, Loaded, ModelSpec};
use crate::config::{Arch, LlamaConfig, RopeLayout, RopeScaling};
use crate::error::{ModelError, Result};
use crate::llama::weights::{Linear, WeightSource, check_shape};
use crate::llama::{Identity, Llama};
use crate::tokenizer::Tokenizer;

/// HF name → llama.cpp name.
fn gguf_name(hf: &str) -> String {
    const LAYER_PARTS: &[(&str, &str)] = &[
        ("input_layernorm", "attn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("post_attention_layernorm", "ffn_norm"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    if let Some(rest) = hf.strip_prefix("model.layers.")
        && let Some((layer, part)) = rest.split_once('.')
    {
        for (from, to) in LAYER_PARTS {
            if let Some(suffix) = part.strip_prefix(from) {
                return format!("blk.{layer}.{to}{suffix}");
            }
        }
    }
    hf.to_string()
}

struct GgufSource {
    tensors: HashMap<String, Arc<QTensor>>,
    description: String,
    quant: String,
}

impl GgufSource {
    fn get(&self, name: &str, shape: &[usize]) -> Result<&Arc<QTensor>> {
        let t = self
            .tensors
            .get(&gguf_name(name))
            .ok_or_else(|| ModelError::MissingTensor {
                name: format!("{name} ({})", gguf_name(name)),
                source_desc: self.description.clone(),
            })?;
        check_shape(name, shape, t.shape().dims())?;
        Ok(t)
    }
}

impl WeightSource for GgufSource {
    fn tensor(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.get(name, shape)?;
        Ok(t.dequantize(&t.device())?.to_dtype(dtype)?)
    }

    fn linear(&self, name: &str, out: usize, inp: usize, _dtype: DType) -> Result<Linear> {
        let t = self.get(name, &[out, inp])?;
        Ok(Linear::Quantized {
            w: QMatMul::from_arc(t.clone())?,
            b: None,
        })
    }

    fn storage(&self, _dtype: DType) -> String {
        self.quant.clone()
    }
}

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str, path: &Path) -> Result<&'a Value> {
    md.get(key)
        .ok_or_else(|| ModelError::config(path, format!("missing GGUF metadata `{key}`")))
}

fn meta_usize(md: &HashMap<String, Value>, key: &str, path: &Path) -> Result<usize> {
    let v = meta(md, key, path)?;
    v.to_u64()
        .or_else(|_| v.to_u32().map(u64::from))
        .map(|n| n as usize)
        .map_err(|_| ModelError::config(path, format!("GGUF metadata `{key}` is not an integer")))
}

fn meta_f64(md: &HashMap<String, Value>, key: &str, path: &Path) -> Result<Option<f64>> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => v
            .to_f32()
            .map(f64::from)
            .or_else(|_| v.to_f64())
            .map(Some)
            .map_err(|_| ModelError::config(path, format!("GGUF metadata `{key}` is not a float"))),
    }
}

/// Loads a GGUF file; its tokenizer is the `tokenizer.json` in the same directory.
pub(crate) fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let file = File::open(path).map_err(|e| ModelError::open("GGUF file", path, e))?;
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| ModelError::config(path, format!("not a GGUF file: {e}")))?;
    let md = &content.metadata;
    let arch_name = meta(md, "general.architecture", path)?
        .to_string()
        .map_err(|_| ModelError::config(path, "general.architecture is not a string"))?
        .clone();
    let arch = Arch::from_model_type(&arch_name)?;
    let a = arch_name.as_str();
    let mut tensors = HashMap::new();
    let mut quant_counts: HashMap<String, usize> = HashMap::new();
    for name in content.tensor_infos.keys() {
        let t = content.tensor(&mut reader, name, &opts.device)?;
        *quant_counts
            .entry(format!("{:?}", t.dtype()).to_lowercase())
            .or_default() += 1;
        tensors.insert(name.clone(), Arc::new(t));
    }
    let vocab_size = tensors
        .get("token_embd.weight")
        .map(|t| t.shape().dims()[0])
        .ok_or_else(|| ModelError::MissingTensor {
            name: "token_embd.weight".into(),
            source_desc: path.display().to_string(),
        })?;
    let hidden_size = meta_usize(md, &format!("{a}.embedding_length"), path)?;
    let num_heads = meta_usize(md, &format!("{a}.attention.head_count"), path)?;
    let head_dim = match md.get(&format!("{a}.rope.dimension_count")) {
        Some(_) => meta_usize(md, &format!("{a}.rope.dimension_count"), path)?,
        None => hidden_size / num_heads.max(1),
    };
    let cfg = LlamaConfig {
        arch,
        vocab_size,
        hidden_size,
        intermediate_size: meta_usize(md, &format!("{a}.feed_forward_length"), path)?,
        num_layers: meta_usize(md, &format!("{a}.block_count"), path)?,
        num_heads,
        num_kv_heads: match md.get(&format!("{a}.attention.head_count_kv")) {
            Some(_) => meta_usize(md, &format!("{a}.attention.head_count_kv"), path)?,
            None => num_heads,
        },
        head_dim,
        rms_norm_eps: meta_f64(md, &format!("{a}.attention.layer_norm_rms_epsilon"), path)?
            .ok_or_else(|| {
                ModelError::config(
                    path,
                    format!("missing GGUF metadata `{a}.attention.layer_norm_rms_epsilon`"),
                )
            })?,
        rope_theta: meta_f64(md, &format!("{a}.rope.freq_base"), path)?.unwrap_or(10_000.0),
        rope_scaling: RopeScaling::None,
        // Qwen2 uses NeoX-style (rotate-half) RoPE in llama.cpp and is not permuted.
        rope_layout: if arch == Arch::Qwen2 {
            RopeLayout::Half
        } else {
            RopeLayout::Interleaved
        },
        max_position_embeddings: meta_usize(md, &format!("{a}.context_length"), path)?,
        tie_word_embeddings: !tensors.contains_key("output.weight"),
        qkv_bias: tensors.contains_key("blk.0.attn_q.bias"),
        o_bias: tensors.contains_key("blk.0.attn_output.bias"),
        mlp_bias: tensors.contains_key("blk.0.ffn_up.bias"),
        checkpoint_dtype: None,
        bos_token_id: md
            .get("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.to_u32().ok()),
        eos_token_ids: md
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
            .into_iter()
            .collect(),
    };
    let tok_path = path.with_file_name("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tok_path)?;
    let mut quants: Vec<_> = quant_counts.into_iter().collect();
    quants.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let source = GgufSource {
        tensors,
        description: path.display().to_string(),
        quant: quants.first().map(|q| q.0.clone()).unwrap_or_default(),
    };
    let identity = Identity {
        name: path.display().to_string(),
        tokenizer_fingerprint: tokenizer.fingerprint().to_string(),
    };
    let model = Llama::from_source(cfg, &source, DType::F32, &opts.device, identity)?;
    Ok(Loaded { model, tokenizer })
}

/// Quantization schemes [`write_gguf`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufQuant {
    /// 8-bit blocks of 32 for every matrix.
    Q8_0,
    /// A Q4_K_M-style mix: Q4_K, with Q6_K for the LM head and for `attn_v` and
    /// `ffn_down` in the first half of the layers (llama.cpp also spends Q6_K on about
    /// half of those two).
    Q4KM,
    /// No quantization (f32), for reference.
    F32,
}

impl std::str::FromStr for GgufQuant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(GgufQuant::Q8_0),
            "q4_k_m" => Ok(GgufQuant::Q4KM),
            "f32" => Ok(GgufQuant::F32),
            _ => Err(format!("unknown quantization {s:?} (q8_0, q4_k_m, f32)")),
        }
    }
}

impl GgufQuant {
    /// The block type for one HF tensor; k-quants need rows that are a multiple of 256
    /// and fall back to Q8_0 (then f32) as llama.cpp does.
    fn dtype_for(self, hf: &str, shape: &[usize], num_layers: usize) -> GgmlDType {
        if shape.len() != 2 || hf.ends_with("norm.weight") {
            return GgmlDType::F32;
        }
        let wanted = match self {
            GgufQuant::F32 => GgmlDType::F32,
            GgufQuant::Q8_0 => GgmlDType::Q8_0,
            GgufQuant::Q4KM => {
                let layer: Option<usize> = hf
                    .strip_prefix("model.layers.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|n| n.parse().ok());
                let sensitive = hf.contains("v_proj") || hf.contains("down_proj");
                if hf == "lm_head.weight"
                    || (sensitive && layer.is_some_and(|l| l < num_layers.div_ceil(2)))
                {
                    GgmlDType::Q6K
                } else {
                    GgmlDType::Q4K
                }
            }
        };
        let row = shape[1];
        if row.is_multiple_of(wanted.block_size()) {
            wanted
        } else if row.is_multiple_of(GgmlDType::Q8_0.block_size()) {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        }
    }
}

/// llama.cpp's q/k row permutation: rotate-half pairs (i, i+d/2) become adjacent.
fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: usize = dims[1..].iter().product();
    let half = rows / heads / 2;
    Ok(w.reshape((heads, 2, half, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// Writes `model` (an HF directory or a built-in) as a GGUF file with `quant`, and its
/// `tokenizer.json` beside it. Returns the number of tensors written.
pub fn write_gguf(model: &ModelSpec, quant: GgufQuant, out: &Path) -> Result<usize> {
    let raw = match model {
        ModelSpec::HfDir(dir) => super::hf::read_dir(dir, &Device::Cpu)?,
        ModelSpec::Builtin(b) => super::builtin::raw(*b)?,
        ModelSpec::Gguf(p) => {
            return Err(ModelError::Unsupported(format!(
                "{} is already GGUF; convert from an HF directory",
                p.display()
            )));
        }
    };
    let cfg = &raw.cfg;
    let (bos, eos) = super::hf::special_tokens(cfg, raw.generation_config.as_deref())?;
    // Build once to check every tensor's presence and shape before writing anything.
    super::hf::build(
        super::hf::RawCheckpoint {
            cfg: cfg.clone(),
            tensors: raw.tensors.clone(),
            tokenizer: raw.tokenizer.clone(),
            generation_config: raw.generation_config.clone(),
            name: raw.name.clone(),
        },
        &LoadOptions::default(),
    )?;
    let a = cfg.arch.model_type();
    let permute = cfg.arch != Arch::Qwen2;
    let mut names: Vec<&String> = raw.tensors.keys().collect();
    names.sort();
    let mut qtensors = Vec::with_capacity(names.len());
    for name in names {
        if name == "lm_head.weight" && cfg.tie_word_embeddings {
            continue;
        }
        let mut t = raw.tensors[name].to_dtype(DType::F32)?;
        if permute && name.contains("self_attn.q_proj") {
            t = permute_rows(&t, cfg.num_heads)?;
        } else if permute && name.contains("self_attn.k_proj") {
            t = permute_rows(&t, cfg.num_kv_heads)?;
        }
        let dtype = quant.dtype_for(name, t.dims(), cfg.num_layers);
        qtensors.push((gguf_name(name), QTensor::quantize(&t, dtype)?));
    }
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(raw.name.clone())),
        (
            format!("{a}.context_length"),
            Value::U32(cfg.max_position_embeddings as u32),
        ),
        (
            format!("{a}.embedding_length"),
            Value::U32(cfg.hidden_size as u32),
        ),
        (
            format!("{a}.feed_forward_length"),
            Value::U32(cfg.intermediate_size as u32),
        ),
        (
            format!("{a}.block_count"),
            Value::U32(cfg.num_layers as u32),
        ),
        (
            format!("{a}.attention.head_count"),
            Value::U32(cfg.num_heads as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(cfg.num_kv_heads as u32),
        ),
        (
            format!("{a}.rope.dimension_count"),
            Value::U32(cfg.head_dim as u32),
        ),
        (
            format!("{a}.rope.freq_base"),
            Value::F32(cfg.rope_theta as f32),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
    ];
    if cfg.rope_scaling != RopeScaling::None {
        return Err(ModelError::Unsupported(
            "writing GGUF for a model with rope scaling".into(),
        ));
    }
    if let Some(b) = bos {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(&e) = eos.first() {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    let tmp = out.with_extension("gguf.partial");
    let write = || -> Result<()> {
        let mut f = File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &md_refs, &t_refs)?;
        f.sync_all().map_err(|e| ModelError::io(&tmp, e))?;
        let tok = serde_json::to_vec(raw.tokenizer.inner())
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let tok_path = out.with_file_name("tokenizer.json");
        std::fs::write(&tok_path, tok).map_err(|e| ModelError::io(&tok_path, e))?;
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(qtensors.len())
}
