//! Writing GGUF files that llama.cpp loads: quantized weights under llama.cpp's tensor
//! names (q/k rows permuted for interleaved RoPE), the hyper-parameters under
//! `{arch}.*`, and the tokenizer under `tokenizer.ggml.*` as llama.cpp's converter writes
//! it, so the file needs nothing beside it.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;

use super::gguf::gguf_name;
use super::{LoadOptions, ModelSpec};
use crate::error::{ModelError, Result};
use crate::llama::Rope;
use crate::tokenizer::Tokenizer;

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

/// Whether [`write_gguf`] may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse when the output exists.
    #[default]
    Never,
    /// Replace it (`--force`).
    Replace,
}

/// Writes `model` (an HF directory or a built-in) as one self-contained GGUF file with
/// `quant`. The file appears complete or not at all (written beside and renamed), and an
/// existing file is only replaced with [`Overwrite::Replace`]. Returns the number of
/// tensors written.
pub fn write_gguf(
    model: &ModelSpec,
    quant: GgufQuant,
    out: &Path,
    overwrite: Overwrite,
) -> Result<usize> {
    if overwrite == Overwrite::Never && out.exists() {
        return Err(ModelError::config(
            out,
            "already exists; pass --force to replace it",
        ));
    }
    let raw = match model {
        ModelSpec::HfDir(dir) => super::hf::read_dir(dir, &Device::Cpu)?,
        ModelSpec::Builtin(b) => super::builtin::raw(*b)?,
        ModelSpec::Gguf(_) | ModelSpec::Packaged(_) => {
            return Err(ModelError::Unsupported(format!(
                "{model} is already GGUF; convert from an HF directory"
            )));
        }
        ModelSpec::Random(_) => {
            return Err(ModelError::Unsupported(format!(
                "{model} is random weights for timing; convert a real checkpoint"
            )));
        }
    };
    let cfg = &raw.cfg;
    // Build once to check every tensor's presence and shape before writing anything.
    super::hf::build(
        super::hf::RawCheckpoint {
            cfg: cfg.clone(),
            tensors: raw.tensors.clone(),
            tokenizer: raw.tokenizer.clone(),
            name: raw.name.clone(),
        },
        &LoadOptions::default(),
    )?;
    let a = cfg.arch.model_type();
    let permute = !cfg.arch.gguf_rope_is_half();
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
    // Rope scaling (Llama 3.1's, linear) as llama.cpp's converter stores it: a divisor
    // per frequency pair.
    if let Some(factors) = Rope::freq_factors(cfg) {
        let n = factors.len();
        let t = Tensor::from_vec(factors, n, &Device::Cpu)?;
        qtensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(raw.name.clone())),
    ];
    // The hyper-parameters under `{arch}.*`, in the order llama.cpp's converter writes them.
    let sizes = [
        ("context_length", cfg.max_position_embeddings),
        ("embedding_length", cfg.hidden_size),
        ("feed_forward_length", cfg.intermediate_size),
        ("block_count", cfg.num_layers),
        ("attention.head_count", cfg.num_heads),
        ("attention.head_count_kv", cfg.num_kv_heads),
        ("rope.dimension_count", cfg.head_dim),
        ("attention.key_length", cfg.head_dim),
        ("attention.value_length", cfg.head_dim),
        ("vocab_size", cfg.vocab_size),
    ];
    md.extend(sizes.map(|(k, v)| (format!("{a}.{k}"), Value::U32(v as u32))));
    md.push((
        format!("{a}.rope.freq_base"),
        Value::F32(cfg.rope_theta as f32),
    ));
    md.push((
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(cfg.rms_norm_eps as f32),
    ));
    md.extend(tokenizer_metadata(&raw.tokenizer)?);
    let tmp = out.with_extension("gguf.partial");
    let write = || -> Result<()> {
        let mut f = File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &md_refs, &t_refs)?;
        f.sync_all().map_err(|e| ModelError::io(&tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(qtensors.len())
}

/// The `tokenizer.ggml.*` keys for a byte-level BPE `tokenizer.json`, as llama.cpp's
/// converter writes them (`gpt2` model, the pre-tokenizer's llama.cpp name, tokens,
/// token types, merges, special ids, BOS/EOS policy and chat template).
fn tokenizer_metadata(tok: &Tokenizer) -> Result<Vec<(String, Value)>> {
    let unsupported =
        |why: &str| ModelError::Unsupported(format!("writing this tokenizer to GGUF: {why}"));
    let doc =
        serde_json::to_value(tok.inner()).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    let model = &doc["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(unsupported("only byte-level BPE tokenizers are written"));
    }
    let pre = pre_tokenizer_name(&doc["pre_tokenizer"])
        .ok_or_else(|| unsupported("its pre-tokenizer has no llama.cpp counterpart"))?;
    let size = tok.vocab_size();
    let mut tokens = vec![String::new(); size];
    let mut types = vec![0i32; size];
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| unsupported("no vocab"))?;
    let mut place = |id: Option<u64>, text: &str, ty: i32| -> Result<()> {
        let id = id
            .filter(|&i| (i as usize) < size)
            .ok_or_else(|| unsupported("an id is out of range"))? as usize;
        tokens[id] = text.to_string();
        types[id] = ty;
        Ok(())
    };
    for (text, id) in vocab {
        place(id.as_u64(), text, 1)?;
    }
    for added in doc["added_tokens"].as_array().into_iter().flatten() {
        let ty = if added["special"] == true { 3 } else { 4 };
        place(
            added["id"].as_u64(),
            added["content"].as_str().unwrap_or_default(),
            ty,
        )?;
    }
    if let Some(hole) = types.iter().position(|&t| t == 0) {
        return Err(unsupported(&format!("id {hole} has no token")));
    }
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Json::String(s) => Value::String(s.clone()),
            Json::Array(pair) => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap_or_default(),
                pair.get(1).and_then(Json::as_str).unwrap_or_default()
            )),
            _ => Value::String(String::new()),
        })
        .collect();
    let special = tok.special();
    let mut md = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(special.add_bos),
        ),
        (
            "tokenizer.ggml.add_eos_token".into(),
            Value::Bool(special.add_eos),
        ),
    ];
    if let Some(b) = special.bos {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(e) = special.eos {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    if let Some(chat) = tok.chat_template() {
        md.push((
            "tokenizer.chat_template".into(),
            Value::String(chat.source().into()),
        ));
    }
    Ok(md)
}

/// llama.cpp's name for a `tokenizer.json` pre-tokenizer, where it has one.
fn pre_tokenizer_name(pre: &Json) -> Option<&'static str> {
    let byte_level = |p: &Json| p["type"] == "ByteLevel";
    match pre["type"].as_str()? {
        "ByteLevel" if pre["use_regex"] != false => Some("gpt-2"),
        "Sequence" => {
            let steps = pre["pretokenizers"].as_array()?;
            match steps.as_slice() {
                [d, b]
                    if d["type"] == "Digits" && d["individual_digits"] == true && byte_level(b) =>
                {
                    Some("smollm")
                }
                [s, b] if s["type"] == "Split" && byte_level(b) && b["use_regex"] == false => {
                    let re = s["pattern"]["Regex"].as_str()?;
                    if re.contains(r"\p{N}{1,3}") {
                        Some("llama-bpe")
                    } else if re.contains(r"|\p{N}|") {
                        Some("qwen2")
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}
