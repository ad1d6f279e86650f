//! The shipped tiny pair, `builtin:tiny-target` and `builtin:tiny-draft`, made by
//! `tandem train-tiny` and committed under `models/assets/`.

use std::path::PathBuf;

use candle_core::Device;

use super::hf::{RawCheckpoint, build, read_dir};
use super::{Builtin, LoadOptions, Loaded};
use crate::error::Result;

/// Where the assets of a built-in model live in the source tree.
pub fn asset_dir(b: Builtin) -> PathBuf {
    let name = match b {
        Builtin::TinyTarget => "tiny-target",
        Builtin::TinyDraft => "tiny-draft",
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets").join(name)
}

pub(crate) fn raw(b: Builtin) -> Result<RawCheckpoint> {
    let mut raw = read_dir(&asset_dir(b), &Device::Cpu)?;
    raw.name = super::ModelSpec::Builtin(b).to_string();
    Ok(raw)
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
