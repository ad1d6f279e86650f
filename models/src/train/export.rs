//! Writing a trained model as an HF directory that transformers loads as it is.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::json;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| ModelError::io(path, e))
}

/// Writes `config.json`, `generation_config.json`, `model.safetensors`,
/// `tokenizer.json` and `tokenizer_config.json` (prompts start with BOS, as the pair was
/// trained) into `dir` (created if needed).
pub(crate) fn write_hf_dir(
    dir: &Path,
    cfg: &LlamaConfig,
    tensors: &HashMap<String, Tensor>,
    tokenizer: &Tokenizer,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut config = cfg.to_hf_json();
    config["transformers_version"] = json!("4.46.0");
    let pretty = |v: &serde_json::Value| {
        let mut s = serde_json::to_string_pretty(v).expect("JSON values serialise");
        s.push('\n');
        s
    };
    write(&dir.join("config.json"), pretty(&config).as_bytes())?;
    let generation = json!({
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_ids.first(),
        "do_sample": false,
        "transformers_version": "4.46.0",
    });
    write(
        &dir.join("generation_config.json"),
        pretty(&generation).as_bytes(),
    )?;
    // The safetensors writer orders tensors itself, so the bytes do not depend on the
    // map's iteration order.
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(tensors, &path)?;
    let json = tokenizer
        .inner()
        .to_string(true)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    write(&dir.join("tokenizer.json"), json.as_bytes())?;
    let text = |id: Option<u32>| id.and_then(|i| tokenizer.inner().id_to_token(i));
    let tokenizer_config = json!({
        "add_bos_token": cfg.bos_token_id.is_some(),
        "add_eos_token": false,
        "bos_token": text(cfg.bos_token_id),
        "eos_token": text(cfg.eos_token_ids.first().copied()),
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    write(
        &dir.join("tokenizer_config.json"),
        pretty(&tokenizer_config).as_bytes(),
    )
}
