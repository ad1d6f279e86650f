//! Attention on the CPU, one query row at a time, in a fixed order of operations.
//!
//! Every row's result depends only on that row's query and its session's cached keys
//! and values — not on how many tokens its block has, nor on which other sessions share
//! the pass — so a token's logits are bit-for-bit the same whether it is decoded alone,
//! verified inside a k-token block, or batched with 63 other sessions. Greedy
//! speculative decoding then reproduces plain greedy decoding exactly, even on a
//! quantized model whose top two logits are a hair apart. (The padded, batched path in
//! [`super::attention`] sums in an order that depends on the batch's shape.)
//!
//! For row `i` of a session with `past` cached tokens (position `p = past + i`) and
//! query head `h` (key/value head `h / g`):
//!
//! ```text
//! s_j = (q_h · k_j) / √d          j = 0 ..= p   (8-lane partial sums, fixed order)
//! a_j = exp(s_j − max s) / Σ exp  (sums in j order)
//! o_h = Σ_j a_j v_j               (j order)
//! ```

use candle_core::{Storage, Tensor};
use rayon::prelude::*;

use super::cache::LlamaCache;
use super::packing::{Span, TreeRows};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

/// Dot product with eight running partial sums, added up in a fixed order at the end.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let (x, y): (&[f32; 8], &[f32; 8]) = (x.try_into().expect("8"), y.try_into().expect("8"));
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Where each session's block sits in the pass, and what its trees' rows see.
#[derive(Clone, Copy)]
pub(super) struct Shape<'a> {
    pub(super) spans: &'a [Span],
    pub(super) trees: &'a [TreeRows],
}

/// Attention for every row of the pass. `q` is `tokens × heads × head_dim` (RoPE
/// applied), f32 and contiguous; every session's block is already in its cache. Returns
/// `tokens × heads·head_dim`. A token tree's row attends to the cached context and its
/// ancestors, in position order: the same keys, in the same order, as the same token at
/// the end of its path decoded as a chain, so its logits are the chain's bit for bit.
pub(super) fn attend(
    cfg: &LlamaConfig,
    q: &Tensor,
    shape: Shape<'_>,
    caches: &[&LlamaCache],
    layer: usize,
) -> Result<Tensor> {
    let spans = shape.spans;
    let (heads, kv_heads, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let g = heads / kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let qs: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let total = qs.len() / (heads * d);
    let mut out = vec![0f32; total * heads * d];
    // (row, session) for every row of the pass, in row order.
    let mut owner = vec![0usize; total];
    for (s, span) in spans.iter().enumerate() {
        owner[span.start..span.start + span.len].fill(s);
    }
    // Each session's key and value buffers, read in place (the storage guards are held
    // for the whole call; the slices are shared by every row of that session).
    let guards: Vec<_> = caches
        .iter()
        .map(|c| {
            let (k, v) = c.buffers_of(layer);
            (k.storage_and_layout(), v.storage_and_layout())
        })
        .collect();
    let kv = guards
        .iter()
        .map(|((ks, kl), (vs, vl))| match (&**ks, &**vs) {
            (Storage::Cpu(kc), Storage::Cpu(vc)) => Ok((
                &kc.as_slice::<f32>()?[kl.start_offset()..],
                &vc.as_slice::<f32>()?[vl.start_offset()..],
            )),
            _ => Err(ModelError::Unsupported(
                "row-wise attention runs on the CPU".into(),
            )),
        })
        .collect::<Result<Vec<(&[f32], &[f32])>>>()?;
    let row_width = kv_heads * d;
    // One unit of work per (row, head): a decode step still spreads over the threads.
    out.par_chunks_mut(d).enumerate().for_each(|(unit, oh)| {
        let (row, h) = (unit / heads, unit % heads);
        let s = owner[row];
        let span = spans[s];
        let i = row - span.start;
        // The key positions this row sees, in order: the context, then its own rows.
        let own: &[u32] = match span.tree {
            Some(t) => &shape.trees[t][i],
            None => &[],
        };
        let seen = span.past
            + if span.tree.is_some() {
                own.len()
            } else {
                i + 1
            };
        let key = |n: usize| match n.checked_sub(span.past) {
            Some(a) if span.tree.is_some() => span.past + own[a] as usize,
            _ => n,
        };
        let (k, v) = kv[s];
        let at = (h / g) * d;
        let qh = &qs[(row * heads + h) * d..(row * heads + h + 1) * d];
        let mut scores = vec![0f32; seen];
        let mut max = f32::NEG_INFINITY;
        for (n, sj) in scores.iter_mut().enumerate() {
            let j = key(n);
            *sj = dot(qh, &k[j * row_width + at..j * row_width + at + d]) * scale;
            max = max.max(*sj);
        }
        let mut sum = 0f32;
        for sj in scores.iter_mut() {
            *sj = (*sj - max).exp();
            sum += *sj;
        }
        oh.fill(0.0);
        for (n, sj) in scores.iter().enumerate() {
            let j = key(n);
            let a = sj / sum;
            let vj = &v[j * row_width + at..j * row_width + at + d];
            for (x, y) in oh.iter_mut().zip(vj) {
                *x += a * y;
            }
        }
    });
    Ok(Tensor::from_vec(out, (total, heads * d), q.device())?)
}
