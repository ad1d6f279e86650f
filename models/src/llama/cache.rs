//! A session's KV cache: per layer, keys and values in buffers that grow by doubling,
//! with a length that truncation simply lowers.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::model::SessionCache;

/// Smallest buffer a layer allocates, in tokens.
const MIN_CAPACITY: usize = 64;

/// One session's keys and values for every layer of a [`super::Llama`].
///
/// Buffers are `kv_heads × capacity × head_dim` so that the live prefix of a head is
/// a plain strided view the attention matmul reads without a copy.
#[derive(Debug)]
pub struct LlamaCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    capacity: usize,
    max_len: usize,
    shape: (usize, usize),
    dtype: DType,
    device: Device,
}

impl LlamaCache {
    pub(crate) fn new(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_len: usize,
        dtype: DType,
        device: Device,
    ) -> Self {
        LlamaCache {
            layers: vec![None; num_layers],
            len: 0,
            capacity: 0,
            max_len,
            shape: (kv_heads, head_dim),
            dtype,
            device,
        }
    }

    /// Makes room for `extra` more tokens in every layer (copying the live prefix into
    /// larger buffers when needed). Called once per forward, before any layer writes.
    pub(crate) fn reserve(&mut self, extra: usize) -> Result<()> {
        let needed = self.len + extra;
        if needed > self.max_len {
            return Err(ModelError::ContextOverflow {
                needed,
                max: self.max_len,
            });
        }
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed
            .max(self.capacity * 2)
            .max(MIN_CAPACITY)
            .min(self.max_len);
        let (kv_heads, head_dim) = self.shape;
        for slot in &mut self.layers {
            let k = Tensor::zeros((kv_heads, capacity, head_dim), self.dtype, &self.device)?;
            let v = Tensor::zeros((kv_heads, capacity, head_dim), self.dtype, &self.device)?;
            if let Some((old_k, old_v)) = slot.take()
                && self.len > 0
            {
                k.slice_set(&old_k.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                v.slice_set(&old_v.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            *slot = Some((k, v));
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`, `v` (`kv_heads × n × head_dim`) at `offset` of `layer` and returns the
    /// views of the first `offset + n` positions.
    pub(crate) fn write(
        &self,
        layer: usize,
        offset: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (kb, vb) = self.layers[layer]
            .as_ref()
            .expect("reserve() allocates every layer before a write");
        kb.slice_set(k, 1, offset)?;
        vb.slice_set(v, 1, offset)?;
        let n = offset + k.dim(1)?;
        Ok((kb.narrow(1, 0, n)?, vb.narrow(1, 0, n)?))
    }

    /// Sets the length after a successful forward.
    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        self.len = len;
    }
}

impl SessionCache for LlamaCache {
    fn len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(ModelError::BadTruncate {
                len: self.len,
                requested: len,
            });
        }
        self.len = len;
        Ok(())
    }

    fn bytes(&self) -> usize {
        let (kv_heads, head_dim) = self.shape;
        2 * self.layers.len() * kv_heads * head_dim * self.capacity * self.dtype.size_in_bytes()
    }
}
