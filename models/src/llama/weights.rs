//! Where a model's tensors come from: a source that hands out dense tensors and linear
//! layers by their HF names, checked against the shapes the config implies.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor};

use crate::error::{ModelError, Result};

/// A projection `y = x Wᵀ (+ b)`, dense or quantized.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// `out × in` weight in the model's dtype.
    Dense { w: Tensor, b: Option<Tensor> },
    /// GGUF-quantized weight; activations stay f32.
    Quantized { w: QMatMul, b: Option<Tensor> },
}

impl Linear {
    /// `x` is `tokens × in`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, b) = match self {
            Linear::Dense { w, b } => (x.matmul(&w.t()?)?, b),
            Linear::Quantized { w, b } => (w.forward(x)?, b),
        };
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    pub(crate) fn with_bias(self, bias: Option<Tensor>) -> Self {
        match self {
            Linear::Dense { w, .. } => Linear::Dense { w, b: bias },
            Linear::Quantized { w, .. } => Linear::Quantized { w, b: bias },
        }
    }
}

/// A checkpoint's tensors, addressed by HF names (`model.layers.0.self_attn.q_proj.weight`).
pub(crate) trait WeightSource {
    /// A dense tensor in `dtype`, its shape checked.
    fn tensor(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor>;

    /// A linear layer's weight (`out × in`), quantized where the source is.
    fn linear(&self, name: &str, out: usize, inp: usize, dtype: DType) -> Result<Linear> {
        Ok(Linear::Dense {
            w: self.tensor(name, &[out, inp], dtype)?,
            b: None,
        })
    }

    /// How the weights are stored, for [`crate::ModelInfo::weights`].
    fn storage(&self, dtype: DType) -> String {
        dtype_name(dtype).to_string()
    }
}

/// Fails unless `found` equals `expected`.
pub(crate) fn check_shape(name: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected != found {
        return Err(ModelError::TensorShape {
            name: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

/// Short name of a dtype.
pub(crate) fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "other",
    }
}

/// Tensors held in memory by name (from safetensors files, or the trainer's variables).
pub(crate) struct TensorMap {
    pub(crate) tensors: std::collections::HashMap<String, Tensor>,
    pub(crate) description: String,
}

impl WeightSource for TensorMap {
    fn tensor(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                source_desc: self.description.clone(),
            })?;
        check_shape(name, shape, t.dims())?;
        Ok(if t.dtype() == dtype {
            t.clone()
        } else {
            t.to_dtype(dtype)?
        })
    }
}
