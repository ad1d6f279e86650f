//! Attention for a ragged batch: the projections ran over every token of every session
//! at once; here each session's queries meet that session's own keys and values.
//!
//! Worked example, one session with 3 cached tokens and a block of 2, 4 query heads
//! sharing 2 key/value heads (group size 2):
//!
//! ```text
//! q        2 tokens × 4 heads × d  → 2 kv-groups × (2 heads · 2 tokens) × d
//! k, v     written at cache positions 3..5 → cache view 2 × 5 × d
//! scores   2 × 4 × 5, masked so block token t sees positions ≤ 3 + t
//! out      softmax(scores) · v → 2 × 4 × d → 2 tokens × (4 · d)
//! ```

use candle_core::Tensor;

use super::cache::LlamaCache;
use super::{Layer, Llama, Span};
use crate::config::RopeLayout;
use crate::error::Result;

/// A layer's queries, keys and values for the whole batch (`tokens × heads ×
/// head_dim`), RoPE applied.
pub(super) struct Rotated<'m> {
    model: &'m Llama,
    q: Tensor,
    k: Tensor,
    v: Tensor,
}

impl<'m> Rotated<'m> {
    /// Projects `h` (`tokens × hidden`) and rotates q and k by each token's position.
    /// `cos`, `sin` are `tokens × 1 × head_dim/2`.
    pub(super) fn new(
        model: &'m Llama,
        layer: &Layer,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Self> {
        let cfg = &model.cfg;
        let t = h.dim(0)?;
        let rot = |x: Tensor, heads: usize| -> Result<Tensor> {
            // Each token is its own "batch" so that every row gets its own position.
            let x = x.reshape((t, heads, 1, cfg.head_dim))?;
            let y = match cfg.rope_layout {
                RopeLayout::Half => candle_nn::rotary_emb::rope(&x, cos, sin)?,
                RopeLayout::Interleaved => candle_nn::rotary_emb::rope_i(&x, cos, sin)?,
            };
            Ok(y.reshape((t, heads, cfg.head_dim))?)
        };
        let q = rot(layer.q.forward(h)?, cfg.num_heads)?;
        let k = rot(layer.k.forward(h)?, cfg.num_kv_heads)?;
        let v = layer
            .v
            .forward(h)?
            .reshape((t, cfg.num_kv_heads, cfg.head_dim))?;
        Ok(Rotated { model, q, k, v })
    }

    /// Attention output (`n × heads·head_dim`) for the `n` tokens at `start` of the
    /// batch, which follow `past` tokens already in `cache`; writes their keys and
    /// values into the cache. `mask` is the session's causal mask (`n × (past + n)`,
    /// 0 or −∞), absent when `n == 1`.
    pub(super) fn attend(
        &self,
        cache: &LlamaCache,
        layer: usize,
        Span {
            start,
            len: n,
            past,
        }: Span,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let cfg = &self.model.cfg;
        let (heads, kv_heads, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let group = heads / kv_heads;
        let head_major = |x: &Tensor| -> Result<Tensor> {
            Ok(x.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?)
        };
        let (keys, values) =
            cache.write(layer, past, &head_major(&self.k)?, &head_major(&self.v)?)?;
        let total = past + n;
        let q = head_major(&self.q)?.reshape((kv_heads, group * n, d))?;
        let q = (q * (1.0 / (d as f64).sqrt()))?;
        let mut scores = q.matmul(&keys.t()?)?;
        if let Some(mask) = mask {
            scores = scores
                .reshape((kv_heads, group, n, total))?
                .broadcast_add(mask)?
                .reshape((kv_heads, group * n, total))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        Ok(probs
            .matmul(&values)?
            .reshape((heads, n, d))?
            .transpose(0, 1)?
            .reshape((n, heads * d))?)
    }
}

/// The causal mask of a block of `n` tokens after `past` cached ones: block token `i`
/// sees positions `0..=past + i`.
pub(super) fn causal_mask(n: usize, past: usize, like: &Tensor) -> Result<Tensor> {
    let total = past + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (n, total), like.device())?.to_dtype(like.dtype())?)
}
