//! A differentiable full-sequence forward for training. It computes exactly what the
//! cached inference path computes, with ops that have a backward pass (the fused RMSNorm,
//! RoPE and softmax kernels have none); a test checks the two agree.

use candle_core::{D, Tensor};

use super::Llama;
use crate::error::Result;

impl Llama {
    /// Logits (`batch × seq × vocab`) for every position of `ids` (`batch × seq`, u32),
    /// each sequence starting at position 0.
    pub(crate) fn forward_train(&self, ids: &Tensor) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, s) = ids.dims2()?;
        let (heads, kv_heads, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let group = heads / kv_heads;
        let positions: Vec<usize> = (0..s).collect();
        let (cos, sin) = self.rope.cos_sin(&positions, self.dtype, &self.device)?;
        let cos = Tensor::cat(&[&cos, &cos], 1)?;
        let sin = Tensor::cat(&[&sin, &sin], 1)?;
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (s, s), &self.device)?.to_dtype(self.dtype)?;
        let rotate = |x: &Tensor| -> Result<Tensor> {
            let x1 = x.narrow(D::Minus1, 0, d / 2)?;
            let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
        };
        let eps = cfg.rms_norm_eps;
        let norm = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)?)
        };
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?;
        for layer in &self.layers {
            let h = norm(&x, &layer.attn_norm)?;
            let split = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((b, s, n, d))?.transpose(1, 2)?.contiguous()?)
            };
            let [q, k, v] = super::attention::qkv(layer, &h)?;
            let q = rotate(&split(q, heads)?)?;
            let k = rotate(&split(k, kv_heads)?)?;
            let v = split(v, kv_heads)?;
            let repeat = |t: Tensor| -> Result<Tensor> {
                if group == 1 {
                    return Ok(t);
                }
                Ok(t.unsqueeze(2)?
                    .broadcast_as((b, kv_heads, group, s, d))?
                    .reshape((b, heads, s, d))?)
            };
            let (k, v) = (repeat(k)?, repeat(v)?);
            let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(&mask)?;
            let attn = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
            let attn = attn.transpose(1, 2)?.reshape((b * s, heads * d))?;
            x = (x + layer.o.forward(&attn)?)?;
            let h = norm(&x, &layer.mlp_norm)?;
            let [gate, up] = super::gate_up(layer, &h)?;
            let act = (candle_nn::ops::silu(&gate)? * up)?;
            x = (x + layer.down.forward(&act)?)?;
        }
        let x = norm(&x, &self.norm)?;
        Ok(self.lm_head.forward(&x)?.reshape((b, s, cfg.vocab_size))?)
    }
}
