//! Attention for a ragged batch. The projections ran over every token of every session
//! at once; here each session's block is written into its own cache, and then each
//! group of similarly shaped sessions (see [`super::packing`]) attends in one padded
//! call.
//!
//! Worked example, two sessions with 3 and 5 cached tokens, blocks of 2, 4 query heads
//! sharing 2 key/value heads (group size 2):
//!
//! ```text
//! q          4 rows × 4 heads × d  → 2 sessions × 2 kv-groups × (2 heads · 2 rows) × d
//! k, v       stacked cache prefixes → 2 sessions × 2 kv-groups × 7 positions × d
//! scores     2 × 2 × 4 × 7, masked so session s row t sees positions ≤ past_s + t
//! out        softmax(scores) · v → back to 4 rows × (4 · d)
//! ```

use candle_core::Tensor;

use super::cache::LlamaCache;
use super::packing::{Gather, Group, Span};
use super::{Layer, Llama};
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
        let rot = |x: Tensor, heads: usize, norm: Option<&Tensor>| -> Result<Tensor> {
            // Each token is its own "batch" so that every row gets its own position.
            let mut x = x.reshape((t, heads, 1, cfg.head_dim))?;
            if let Some(w) = norm {
                x = candle_nn::ops::rms_norm(&x, w, cfg.rms_norm_eps as f32)?;
            }
            let y = match cfg.rope_layout {
                RopeLayout::Half => candle_nn::rotary_emb::rope(&x, cos, sin)?,
                RopeLayout::Interleaved => candle_nn::rotary_emb::rope_i(&x, cos, sin)?,
            };
            Ok(y.reshape((t, heads, cfg.head_dim))?)
        };
        let [q, k, v] = qkv(layer, h)?;
        let norms = layer.qk_norm.as_ref();
        let q = rot(q.contiguous()?, cfg.num_heads, norms.map(|n| &n.0))?;
        let k = rot(k.contiguous()?, cfg.num_kv_heads, norms.map(|n| &n.1))?;
        let v = v
            .contiguous()?
            .reshape((t, cfg.num_kv_heads, cfg.head_dim))?;
        Ok(Rotated { model, q, k, v })
    }

    /// The rotated queries, `tokens × heads × head_dim`.
    pub(super) fn queries(&self) -> &Tensor {
        &self.q
    }

    /// Writes the block of `span` into its session's cache at `layer`.
    pub(super) fn store(&self, cache: &LlamaCache, layer: usize, span: Span) -> Result<()> {
        let k = self.k.narrow(0, span.start, span.len)?;
        let v = self.v.narrow(0, span.start, span.len)?;
        cache.write(layer, span.past, &k, &v)
    }

    /// Attention output of one group (`Σ len × heads·head_dim`, rows in member order).
    /// Every member's block must already be stored, and every member's cache must hold
    /// `group.max_total` positions of capacity.
    pub(super) fn attend(
        &self,
        caches: &[&LlamaCache],
        layer: usize,
        group: &Group,
    ) -> Result<Tensor> {
        let cfg = &self.model.cfg;
        let (heads, kv_heads, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (b, n, t) = (group.members.len(), group.max_len, group.max_total);
        let g = heads / kv_heads;
        let q = match &group.gather {
            Gather::Rows(start) => self.q.narrow(0, *start, b * n)?,
            Gather::Index(rows) => self.q.index_select(rows, 0)?,
        };
        // b × n × kv × g × d → b × kv × (g · n) × d
        let q = q
            .reshape((b, n, kv_heads, g, d))?
            .permute((0, 2, 3, 1, 4))?
            .contiguous()?
            .reshape((b, kv_heads, g * n, d))?;
        let q = (q * (1.0 / (d as f64).sqrt()))?;
        let (keys, values) = stack(caches, layer, t)?;
        let mut scores = q.matmul(&keys.t()?)?;
        if let Some(mask) = &group.mask {
            scores = scores
                .reshape((b, kv_heads, g, n, t))?
                .broadcast_add(mask)?
                .reshape((b, kv_heads, g * n, t))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        // b × kv × (g · n) × d → b × n × kv × g × d = (b · n) × heads·d
        let out = probs
            .matmul(&values)?
            .reshape((b, kv_heads, g, n, d))?
            .permute((0, 3, 1, 2, 4))?
            .contiguous()?
            .reshape((b * n, heads * d))?;
        Ok(match &group.scatter {
            Some(rows) => out.index_select(rows, 0)?,
            None => out,
        })
    }
}

/// A layer's q, k and v projections of `h`.
pub(super) fn qkv(layer: &Layer, h: &Tensor) -> Result<[Tensor; 3]> {
    let parts = layer.qkv.forward(h)?;
    Ok(<[Tensor; 3]>::try_from(parts).expect("qkv has three parts"))
}

/// The first `len` keys and values of each cache, stacked head-major:
/// `caches × kv_heads × len × head_dim`.
fn stack(caches: &[&LlamaCache], layer: usize, len: usize) -> Result<(Tensor, Tensor)> {
    let (mut ks, mut vs) = (
        Vec::with_capacity(caches.len()),
        Vec::with_capacity(caches.len()),
    );
    for c in caches {
        let (k, v) = c.view(layer, len)?;
        ks.push(k);
        vs.push(v);
    }
    let head_major = |xs: Vec<Tensor>| -> Result<Tensor> {
        let x = match xs.len() {
            1 => xs[0].unsqueeze(0)?,
            _ => Tensor::stack(&xs, 0)?,
        };
        Ok(x.transpose(1, 2)?.contiguous()?)
    };
    Ok((head_major(ks)?, head_major(vs)?))
}
