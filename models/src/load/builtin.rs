//! The shipped tiny pair, `builtin:tiny-target` and `builtin:tiny-draft`: made by
//! `tandem train-tiny`, committed under `models/assets/`, and compiled into the binary
//! so that Tandem runs out of the box with nothing to download or locate.

use candle_core::Device;

use super::hf::{RawCheckpoint, build};
use super::{Builtin, LoadOptions, Loaded, ModelSpec};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

/// The five files of an HF-layout directory, embedded.
struct Files {
    config: &'static [u8],
    generation_config: &'static [u8],
    tokenizer_config: &'static [u8],
    weights: &'static [u8],
    tokenizer: &'static [u8],
}

macro_rules! embed {
    ($dir:literal) => {
        Files {
            config: include_bytes!(concat!("../../assets/", $dir, "/config.json")),
            generation_config: include_bytes!(concat!(
                "../../assets/",
                $dir,
                "/generation_config.json"
            )),
            tokenizer_config: include_bytes!(concat!(
                "../../assets/",
                $dir,
                "/tokenizer_config.json"
            )),
            weights: include_bytes!(concat!("../../assets/", $dir, "/model.safetensors")),
            tokenizer: include_bytes!(concat!("../../assets/", $dir, "/tokenizer.json")),
        }
    };
}

const TINY_TARGET: Files = embed!("tiny-target");
const TINY_DRAFT: Files = embed!("tiny-draft");

pub(crate) fn raw(b: Builtin) -> Result<RawCheckpoint> {
    let files = match b {
        Builtin::TinyTarget => &TINY_TARGET,
        Builtin::TinyDraft => &TINY_DRAFT,
    };
    let name = ModelSpec::Builtin(b).to_string();
    let config = serde_json::from_slice(files.config)
        .map_err(|e| ModelError::config(&name, format!("embedded config.json: {e}")))?;
    let cfg = LlamaConfig::from_json(&config)?;
    let tokenizer = super::hf_tokenizer::finish(
        Tokenizer::from_bytes(files.tokenizer)?,
        &cfg,
        &super::hf_tokenizer::TokenizerFiles::embedded(
            files.generation_config,
            files.tokenizer_config,
            &name,
        )?,
    )?;
    Ok(RawCheckpoint {
        cfg,
        tensors: candle_core::safetensors::load_buffer(files.weights, &Device::Cpu)?,
        tokenizer,
        name,
    })
}

pub(crate) fn load(b: Builtin, opts: &LoadOptions) -> Result<Loaded> {
    let mut raw = raw(b)?;
    if !matches!(opts.device, Device::Cpu) {
        for t in raw.tensors.values_mut() {
            *t = t.to_device(&opts.device)?;
        }
    }
    build(raw, opts)
}
