//! A session's KV cache: per layer, keys and values in buffers that grow by doubling,
//! with a length that truncation simply lowers.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::model::SessionCache;

/// Smallest buffer a layer allocates, in tokens.
const MIN_CAPACITY: usize = 64;

/// One session's keys and values for every layer of a [`super::Llama`].
///
/// Buffers are token-major, `capacity × kv_heads × head_dim`: a block's keys are written
/// with one contiguous copy, and the live prefix is a contiguous view that batched
/// attention stacks with other sessions' in one copy.
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
            // Zeros, not uninitialised memory: attention reads padding positions (masked
            // to weight 0) and 0 · NaN would poison a row.
            let k = Tensor::zeros((capacity, kv_heads, head_dim), self.dtype, &self.device)?;
            let v = Tensor::zeros((capacity, kv_heads, head_dim), self.dtype, &self.device)?;
            if let Some((old_k, old_v)) = slot.take()
                && self.len > 0
            {
                k.slice_set(&old_k.narrow(0, 0, self.len)?, 0, 0)?;
                v.slice_set(&old_v.narrow(0, 0, self.len)?, 0, 0)?;
            }
            *slot = Some((k, v));
        }
        self.capacity = capacity;
        Ok(())
    }

    /// The most tokens this cache may hold.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Grows capacity toward `total` positions, as far as this cache's limit allows
    /// (best effort: [`Self::view`] pads what is missing).
    pub(crate) fn grow_toward(&mut self, total: usize) -> Result<()> {
        let target = total.min(self.max_len);
        if target > self.capacity {
            self.reserve(target - self.len)?;
        }
        Ok(())
    }

    /// Writes `k`, `v` (`n × kv_heads × head_dim`, contiguous) at `offset` of `layer`.
    pub(crate) fn write(&self, layer: usize, offset: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (kb, vb) = self.buffers(layer);
        kb.slice_set(k, 0, offset)?;
        vb.slice_set(v, 0, offset)?;
        Ok(())
    }

    /// The first `len` positions of `layer` (`len × kv_heads × head_dim`): views when
    /// the buffers are that long, else copies padded with zeros. Positions past the
    /// cache's length read as stale or zero values; callers mask them.
    pub(crate) fn view(&self, layer: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let (kb, vb) = self.buffers(layer);
        if len <= self.capacity {
            return Ok((kb.narrow(0, 0, len)?, vb.narrow(0, 0, len)?));
        }
        let (kv_heads, head_dim) = self.shape;
        let pad = Tensor::zeros(
            (len - self.capacity, kv_heads, head_dim),
            self.dtype,
            &self.device,
        )?;
        Ok((Tensor::cat(&[kb, &pad], 0)?, Tensor::cat(&[vb, &pad], 0)?))
    }

    /// The key and value buffers of `layer` (`capacity × kv_heads × head_dim`).
    pub(super) fn buffers_of(&self, layer: usize) -> &(Tensor, Tensor) {
        self.buffers(layer)
    }

    fn buffers(&self, layer: usize) -> &(Tensor, Tensor) {
        self.layers[layer]
            .as_ref()
            .expect("reserve() allocates every layer before a write")
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

    fn keep_rows(&mut self, start: usize, keep: &[usize]) -> Result<()> {
        let len = self.len.saturating_sub(start);
        let increasing = keep.windows(2).all(|w| w[0] < w[1]);
        if start > self.len || !increasing || keep.last().is_some_and(|&r| r >= len) {
            return Err(ModelError::BadKeep {
                start,
                keep: keep.to_vec(),
                len,
                cached: self.len,
            });
        }
        // Rows already in place (a prefix kept, a chain) need no copy.
        let moved = keep.iter().enumerate().position(|(i, &r)| r != i);
        if let Some(from) = moved {
            let rows: Vec<u32> = keep[from..].iter().map(|&r| (start + r) as u32).collect();
            let n = rows.len();
            let index = Tensor::from_vec(rows, n, &self.device)?;
            for (k, v) in self.layers.iter().flatten() {
                // Gathered first (a copy), then written over the rows they move to.
                let (kr, vr) = (k.index_select(&index, 0)?, v.index_select(&index, 0)?);
                k.slice_set(&kr, 0, start + from)?;
                v.slice_set(&vr, 0, start + from)?;
            }
        }
        self.len = start + keep.len();
        Ok(())
    }
}
