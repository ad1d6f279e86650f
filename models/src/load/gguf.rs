//! Reading GGUF files (llama.cpp's format) with quantized weights.
//!
//! Reading maps llama.cpp's tensor names to HF names and keeps 2-D weights quantized
//! ([`QMatMul`]); norms and the embedding rows are dequantized. llama.cpp's converter
//! permutes the q/k rows of Llama and Mistral so that RoPE pairs adjacent dimensions;
//! such files run with [`RopeLayout::Interleaved`]. The tokenizer comes from the
//! metadata ([`super::gguf_vocab`]); writing is [`super::gguf_write`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};

use super::{LoadOptions, Loaded};
use crate::config::{Arch, LlamaConfig, RopeLayout, RopeScaling};
use crate::error::{ModelError, Result};
use crate::llama::weights::{Linear, WeightSource, check_shape, dense_linear, dtype_name};
use crate::llama::{Identity, Llama};
use crate::quant::QMatrix;
use crate::tokenizer::Tokenizer;

/// HF name → llama.cpp name.
pub(crate) fn gguf_name(hf: &str) -> String {
    const LAYER_PARTS: &[(&str, &str)] = &[
        ("input_layernorm", "attn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
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

    fn linear(&self, name: &str, out: usize, inp: usize, dtype: DType) -> Result<Linear> {
        if dtype != DType::F32 {
            // bf16/f16 (a GPU's precision): the weights dequantized once, dense.
            return dense_linear(self, name, out, inp, dtype);
        }
        let t = self.get(name, &[out, inp])?;
        if let Some(w) = QMatrix::from_qtensor(t)? {
            return Ok(Linear::Blocks { w, b: None });
        }
        Ok(Linear::Quantized {
            w: QMatMul::from_arc(t.clone())?,
            b: None,
        })
    }

    fn storage(&self, dtype: DType) -> String {
        match dtype {
            DType::F32 => self.quant.clone(),
            _ => format!("{} dequantized to {}", self.quant, dtype_name(dtype)),
        }
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

/// Loads a GGUF file with the tokenizer in its metadata (or a `tokenizer.json` beside it).
pub(crate) fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let (content, mut reader) = open(path)?;
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
    // A head's width: `attention.key_length` where llama.cpp's converter wrote it (Qwen3
    // and others whose heads are not hidden/heads wide), else the rotated width.
    let head_dim = [
        format!("{a}.attention.key_length"),
        format!("{a}.rope.dimension_count"),
    ]
    .iter()
    .find(|k| md.contains_key(k.as_str()))
    .map(|k| meta_usize(md, k, path))
    .transpose()?
    .unwrap_or(hidden_size / num_heads.max(1));
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
        // Qwen2 and Qwen3 use NeoX-style (rotate-half) RoPE in llama.cpp and are not
        // permuted.
        rope_layout: if arch.gguf_rope_is_half() {
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
        // Set from the tokenizer's special tokens below.
        bos_token_id: None,
        eos_token_ids: Vec::new(),
    };
    let tokenizer = tokenizer_for(path, &super::gguf_vocab::Meta { md, path })?;
    let special = tokenizer.special().clone();
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
    let mut model = Llama::from_source(cfg, &source, opts.dtype, &opts.device, identity)?;
    model.set_special_tokens(&special);
    // Llama 3.1-style rope scaling, as llama.cpp's converter stores it.
    if let Some(f) = source.tensors.get("rope_freqs.weight") {
        let factors: Vec<f32> = f.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        model.set_rope_freq_factors(&factors)?;
    }
    Ok(Loaded { model, tokenizer })
}

/// A GGUF file's header and metadata, and the reader positioned for its tensors.
fn open(path: &Path) -> Result<(gguf_file::Content, BufReader<File>)> {
    let file = File::open(path).map_err(|e| ModelError::open("GGUF file", path, e))?;
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| ModelError::config(path, format!("not a GGUF file: {e}")))?;
    Ok((content, reader))
}

/// The tokenizer of a GGUF file (weights are not read): for tokenizing without a model,
/// and for vocabulary-only files such as llama.cpp's `ggml-vocab-*.gguf`.
pub fn tokenizer_of(path: &Path) -> Result<Tokenizer> {
    let (content, _) = open(path)?;
    tokenizer_for(
        path,
        &super::gguf_vocab::Meta {
            md: &content.metadata,
            path,
        },
    )
}

/// The tokenizer of a GGUF file: a `tokenizer.json` beside it wins (taking the file's
/// special tokens and chat template when its own has none); otherwise the one in the
/// file's metadata.
fn tokenizer_for(path: &Path, meta: &super::gguf_vocab::Meta<'_>) -> Result<Tokenizer> {
    let beside = path.with_file_name("tokenizer.json");
    if !beside.exists() {
        return super::gguf_vocab::tokenizer(meta);
    }
    let tok = Tokenizer::from_file(&beside)?;
    match super::gguf_vocab::tokenizer(meta) {
        Ok(embedded) => {
            let special = embedded.special().clone();
            let chat = embedded.chat_template().cloned();
            Ok(tok.with_special(special, chat))
        }
        Err(_) => Ok(tok),
    }
}
