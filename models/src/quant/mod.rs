//! Quantized matrix products for the 32-value block types of GGUF files (Q4_0, Q4_1,
//! Q8_0): the projections of the checkpoints edge devices run, done the way llama.cpp
//! does them on a CPU.
//!
//! Terms and shapes:
//! - a weight `W` is `n × k` (`n` output rows, `k` inputs), kept as the file's own blocks:
//!   each row is `k / 32` blocks of 32 values with an f16 scale `d` (and, for Q4_1, an f16
//!   minimum `m`); nothing is repacked or dequantized;
//! - an activation `x` is `m × k` f32 (`m` tokens); each row is quantized once per call to
//!   8-bit blocks ([`ActBlock`]: `d`, 32 × i8, and `s = d · Σq` for Q4_1's minimum term), as
//!   llama.cpp's `quantize_row_q8_1` does, so the dot products are exact integer sums;
//! - `y = x Wᵀ` is `m × n`; output rows are split across the thread pool.
//!
//! The per-block integer dot products use AVX2 where the CPU has it ([`simd`]), and a
//! portable loop otherwise ([`scalar`]); both give the same integers, so results differ
//! only in the order of the f32 sums.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod simd;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;
use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// Values per block.
pub(crate) const QK: usize = 32;

/// Tokens a weight row meets at once (each weight block is unpacked once per tile;
/// eight accumulators still fit the 16 AVX2 registers).
pub(crate) const TILE: usize = 8;

/// The block types this module multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `d · (q − 8)`, q a nibble.
    Q4_0,
    /// `d · q + m`, q a nibble.
    Q4_1,
    /// `d · q`, q an i8.
    Q8_0,
}

impl Kind {
    fn of(dtype: GgmlDType) -> Option<Kind> {
        match dtype {
            GgmlDType::Q4_0 => Some(Kind::Q4_0),
            GgmlDType::Q4_1 => Some(Kind::Q4_1),
            GgmlDType::Q8_0 => Some(Kind::Q8_0),
            _ => None,
        }
    }

    /// Bytes of one block in the file's layout.
    pub(crate) const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 2 + QK / 2,
            Kind::Q4_1 => 4 + QK / 2,
            Kind::Q8_0 => 2 + QK,
        }
    }
}

/// One quantized block of an activation row.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub(crate) struct ActBlock {
    /// The 32 values, `round(x / d)`.
    pub(crate) q: [i8; QK],
    /// Scale, rounded through f16 as llama.cpp stores it.
    pub(crate) d: f32,
    /// `d · Σq`, rounded through f16 (Q4_1's minimum term).
    pub(crate) s: f32,
}

/// Rounds half to even (as `_mm256_round_ps` does in llama.cpp) without a libm call:
/// adding and taking away 1.5·2²³ leaves the nearest integer for |x| < 2²², and
/// |x| ≤ 127 here.
#[inline]
fn round_even(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((x + MAGIC) - MAGIC) as i32
}

/// Quantizes one activation row (`k` a multiple of 32) into blocks.
pub(crate) fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.q.iter_mut().zip(xs) {
            let r = round_even(v * id);
            *q = r as i8;
            sum += r;
        }
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// A weight matrix in one of the block types, as the file stores it.
#[derive(Debug, Clone)]
pub(crate) struct QMatrix {
    kind: Kind,
    rows: usize,
    cols: usize,
    /// `rows × cols / 32` blocks, row by row.
    data: Vec<u8>,
}

impl QMatrix {
    /// The weight of `t` (`n × k`), if its type is one this module multiplies.
    pub(crate) fn from_qtensor(t: &QTensor) -> Result<Option<QMatrix>> {
        let Some(kind) = Kind::of(t.dtype()) else {
            return Ok(None);
        };
        let (rows, cols) = t.shape().dims2()?;
        if !cols.is_multiple_of(QK) || !matches!(t.device(), Device::Cpu) {
            return Ok(None);
        }
        let data = t.data()?.into_owned();
        if data.len() != rows * cols / QK * kind.block_bytes() {
            return Err(ModelError::Unsupported(format!(
                "a {kind:?} tensor of {rows}×{cols} holds {} bytes",
                data.len()
            )));
        }
        Ok(Some(QMatrix {
            kind,
            rows,
            cols,
            data,
        }))
    }

    /// Stacks matrices of one kind and width row-wise (q, k and v; gate and up), so one
    /// call quantizes the input once and runs them together. `None` if they differ.
    pub(crate) fn stack(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.kind != first.kind || p.cols != first.cols)
        {
            return None;
        }
        Some(QMatrix {
            kind: first.kind,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
        })
    }

    /// Output rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    fn row(&self, r: usize) -> &[u8] {
        let len = self.cols / QK * self.kind.block_bytes();
        &self.data[r * len..(r + 1) * len]
    }

    /// `x Wᵀ` for `x` of shape `m × k`: an `m × n` tensor.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            return Err(ModelError::Unsupported(format!(
                "input of width {k} for a {}×{} weight",
                self.rows, self.cols
            )));
        }
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let blocks = k / QK;
        let mut act = vec![
            ActBlock {
                q: [0; QK],
                d: 0.0,
                s: 0.0
            };
            m * blocks
        ];
        for (row, out) in xs.chunks_exact(k).zip(act.chunks_exact_mut(blocks)) {
            quantize_row(row, out);
        }
        let n = self.rows;
        // Rows of W split evenly over the threads (few, large tasks: a decode step runs
        // ~120 of these products, and each extra task costs a hand-off), at least 16
        // rows each.
        let chunk = n.div_ceil(rayon::current_num_threads()).max(16);
        let mut yt = vec![0f32; n * m];
        let kernel = row_fn(self.kind);
        let tokens: Vec<&[ActBlock]> = act.chunks_exact(blocks).collect();
        yt.par_chunks_mut(chunk * m)
            .enumerate()
            .for_each(|(c, out)| {
                for (i, o) in out.chunks_exact_mut(m).enumerate() {
                    let w = self.row(c * chunk + i);
                    for (xs, y) in tokens.chunks(TILE).zip(o.chunks_mut(TILE)) {
                        kernel(w, xs, y);
                    }
                }
            });
        // yt is n × m; the caller wants m × n.
        let mut y = vec![0f32; m * n];
        for (j, col) in yt.chunks_exact(m).enumerate() {
            for (t, v) in col.iter().enumerate() {
                y[t * n + j] = *v;
            }
        }
        Ok(Tensor::from_vec(y, (m, n), x.device())?)
    }
}

/// One weight row against up to [`TILE`] tokens' activations: `out[t] = w · x_t`.
type RowFn = fn(&[u8], &[&[ActBlock]], &mut [f32]);

fn row_fn(kind: Kind) -> RowFn {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = simd::row_fn(kind) {
        return f;
    }
    match kind {
        Kind::Q4_0 => scalar::row_q4_0,
        Kind::Q4_1 => scalar::row_q4_1,
        Kind::Q8_0 => scalar::row_q8_0,
    }
}

#[cfg(test)]
mod tests;
