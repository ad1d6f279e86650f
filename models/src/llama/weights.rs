//! Where a model's tensors come from: a source that hands out dense tensors and linear
//! layers by their HF names, checked against the shapes the config implies.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor};

use crate::error::{ModelError, Result};
use crate::quant::QMatrix;

/// A projection `y = x Wᵀ (+ b)`, dense or quantized.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// The weight transposed once at load, `in × out` and contiguous, in the model's
    /// dtype: the matmul then streams it row by row instead of through strides.
    Dense { wt: Tensor, b: Option<Tensor> },
    /// GGUF-quantized weight in a type candle multiplies (the k-quants); activations stay
    /// f32.
    Quantized { w: QMatMul, b: Option<Tensor> },
    /// GGUF weight in a 32-value block type (Q4_0, Q4_1, Q8_0), multiplied by
    /// [`crate::quant`]'s kernels.
    Blocks { w: QMatrix, b: Option<Tensor> },
}

impl Linear {
    /// `x` is `tokens × in`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, b) = match self {
            Linear::Dense { wt, b } => (x.matmul(wt)?, b),
            Linear::Quantized { w, b } => (w.forward(x)?, b),
            Linear::Blocks { w, b } => (w.forward(x)?, b),
        };
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    fn bias(&self) -> Option<&Tensor> {
        match self {
            Linear::Dense { b, .. } | Linear::Quantized { b, .. } | Linear::Blocks { b, .. } => {
                b.as_ref()
            }
        }
    }

    pub(crate) fn with_bias(self, bias: Option<Tensor>) -> Self {
        match self {
            Linear::Dense { wt, .. } => Linear::Dense { wt, b: bias },
            Linear::Quantized { w, .. } => Linear::Quantized { w, b: bias },
            Linear::Blocks { w, .. } => Linear::Blocks { w, b: bias },
        }
    }
}

/// Several projections of the same input (q, k, v; gate, up). When all are dense their
/// weights are concatenated at load, so the pass runs one wider matmul instead of
/// several narrow ones.
#[derive(Debug, Clone)]
pub(crate) enum Fused {
    /// One weight for all parts (dense `in × Σ out`, or block rows stacked);
    /// `widths` are the parts' output widths.
    One { lin: Linear, widths: Vec<usize> },
    /// Kept apart (quantized parts, or biases on some parts only).
    Many(Vec<Linear>),
}

impl Fused {
    pub(crate) fn new(parts: Vec<Linear>) -> Result<Self> {
        let dense: Option<Vec<&Tensor>> = parts
            .iter()
            .map(|p| match p {
                Linear::Dense { wt, .. } => Some(wt),
                _ => None,
            })
            .collect();
        let blocks: Option<Vec<&QMatrix>> = parts
            .iter()
            .map(|p| match p {
                Linear::Blocks { w, .. } => Some(w),
                _ => None,
            })
            .collect();
        if dense.is_none() && blocks.is_none() {
            return Ok(Fused::Many(parts));
        }
        let Some(b) = joint_bias(&parts)? else {
            return Ok(Fused::Many(parts));
        };
        if let Some(wts) = dense {
            let widths = wts
                .iter()
                .map(|wt| wt.dim(1))
                .collect::<candle_core::Result<_>>()?;
            let wt = Tensor::cat(&wts, 1)?;
            return Ok(Fused::One {
                lin: Linear::Dense { wt, b },
                widths,
            });
        }
        let ws = blocks.unwrap_or_default();
        match QMatrix::stack(&ws) {
            Some(w) => Ok(Fused::One {
                widths: ws.iter().map(|w| w.rows()).collect(),
                lin: Linear::Blocks { w, b },
            }),
            None => Ok(Fused::Many(parts)),
        }
    }

    /// Each part's output for `x` (`tokens × in`), in order.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Fused::One { lin, widths } => {
                let y = lin.forward(x)?;
                let mut at = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(1, at, w)?;
                        at += w;
                        Ok(part)
                    })
                    .collect()
            }
            Fused::Many(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}

/// The parts' biases concatenated (`Some(None)` when no part has one); `None` when only
/// some have one, so the parts cannot be joined.
fn joint_bias(parts: &[Linear]) -> Result<Option<Option<Tensor>>> {
    let bs: Vec<&Tensor> = parts.iter().filter_map(Linear::bias).collect();
    Ok(match bs.len() {
        0 => Some(None),
        n if n == parts.len() => Some(Some(Tensor::cat(&bs, 0)?)),
        _ => None,
    })
}

/// A checkpoint's tensors, addressed by HF names (`model.layers.0.self_attn.q_proj.weight`).
pub(crate) trait WeightSource {
    /// A dense tensor in `dtype`, its shape checked.
    fn tensor(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor>;

    /// A linear layer's weight (`out × in`), quantized where the source is.
    fn linear(&self, name: &str, out: usize, inp: usize, dtype: DType) -> Result<Linear> {
        dense_linear(self, name, out, inp, dtype)
    }

    /// How the weights are stored, for [`crate::ModelInfo::weights`].
    fn storage(&self, dtype: DType) -> String {
        dtype_name(dtype).to_string()
    }
}

/// A linear layer's weight (`out × in`) from `src` as a dense tensor in `dtype`,
/// transposed once (see [`Linear::Dense`]).
pub(crate) fn dense_linear(
    src: &(impl WeightSource + ?Sized),
    name: &str,
    out: usize,
    inp: usize,
    dtype: DType,
) -> Result<Linear> {
    Ok(Linear::Dense {
        wt: src.tensor(name, &[out, inp], dtype)?.t()?.contiguous()?,
        b: None,
    })
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
