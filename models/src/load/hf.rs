//! HF-layout directories: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), `tokenizer.json`, `generation_config.json`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;

use super::hf_tokenizer::{TokenizerFiles, finish};
use super::{LoadOptions, Loaded, read};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::llama::weights::TensorMap;
use crate::llama::{Identity, Llama};
use crate::tokenizer::Tokenizer;

/// A checkpoint's parts before a model is built from them.
pub(crate) struct RawCheckpoint {
    pub(crate) cfg: LlamaConfig,
    pub(crate) tensors: HashMap<String, Tensor>,
    /// With its special tokens and chat template attached.
    pub(crate) tokenizer: Tokenizer,
    pub(crate) name: String,
}

/// Loads an HF directory.
pub(crate) fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Loaded> {
    build(read_dir(dir, &opts.device)?, opts)
}

/// Reads an HF directory's files.
pub(crate) fn read_dir(dir: &Path, device: &Device) -> Result<RawCheckpoint> {
    if !dir.is_dir() {
        return Err(ModelError::MissingFile {
            what: "model directory",
            path: dir.to_path_buf(),
        });
    }
    let cfg = LlamaConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let tokenizer = finish(tokenizer, &cfg, &TokenizerFiles::read(dir)?)?;
    let tensors = load_safetensors(dir, device)?;
    Ok(RawCheckpoint {
        cfg,
        tensors,
        tokenizer,
        name: dir.display().to_string(),
    })
}

/// Builds a model from a checkpoint's parts.
pub(crate) fn build(raw: RawCheckpoint, opts: &LoadOptions) -> Result<Loaded> {
    let special = raw.tokenizer.special().clone();
    let identity = Identity {
        name: raw.name.clone(),
        tokenizer_fingerprint: raw.tokenizer.fingerprint().to_string(),
    };
    let weights = TensorMap {
        tensors: raw.tensors,
        description: raw.name,
    };
    let mut model = Llama::from_source(raw.cfg, &weights, opts.dtype, &opts.device, identity)?;
    model.set_special_tokens(&special);
    Ok(Loaded {
        model,
        tokenizer: raw.tokenizer,
    })
}

/// Every tensor of the checkpoint, from one file or from the shards the index lists.
fn load_safetensors(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return load_file(&single, device);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        return Err(ModelError::MissingFile {
            what: "model.safetensors or model.safetensors.index.json",
            path: single,
        });
    }
    let index: Value = serde_json::from_slice(&read(&index_path, "safetensors index")?)
        .map_err(|e| ModelError::config(&index_path, format!("not valid JSON: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| ModelError::config(&index_path, "missing object `weight_map`"))?;
    let mut files: Vec<&str> = map.values().filter_map(Value::as_str).collect();
    files.sort_unstable();
    files.dedup();
    let mut tensors = HashMap::new();
    for file in files {
        tensors.extend(load_file(&dir.join(file), device)?);
    }
    for name in map.keys() {
        if !tensors.contains_key(name) {
            return Err(ModelError::MissingTensor {
                name: name.clone(),
                source_desc: format!("the shard {} names", map[name]),
            });
        }
    }
    Ok(tensors)
}

fn load_file(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = read(path, "safetensors shard")?;
    candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| ModelError::config(path, format!("not a safetensors file: {e}")))
}
