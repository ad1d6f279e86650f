//! A Llama-family decoder (Llama 2/3, TinyLlama, SmolLM, Mistral, Qwen2) written for
//! speculative decoding: per-session rollback-able caches, logits for every position of
//! a block, and ragged batches across sessions.
//!
//! Layer by layer it is HF's `LlamaDecoderLayer`: RMSNorm → attention with RoPE and
//! grouped-query heads → residual → RMSNorm → SwiGLU MLP → residual; then a final
//! RMSNorm and the LM head (tied to the embedding or not).
//!
//! A batched forward concatenates every session's block into one `tokens × hidden`
//! matrix, so each projection is one matmul over the whole batch. Attention runs per
//! group of similarly shaped sessions, padded, against the sessions' own caches (see
//! [`packing`] and [`attention`]).

mod attention;
mod cache;
mod layers;
mod packing;
mod rope;
mod rowwise;
#[cfg(test)]
mod tests;
pub(crate) mod train;
#[cfg(test)]
mod tree_tests;
pub(crate) mod weights;

use candle_core::{DType, Device, Tensor};

pub use cache::LlamaCache;
pub use layers::LayerSelection;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::model::{BatchEntry, Exits, LanguageModel, Logits, ModelInfo, Positions, SessionCache};
use packing::{Group, Span};
pub(crate) use rope::Rope;
use weights::{Fused, Linear, WeightSource};

/// One decoder layer's weights.
#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Tensor,
    /// q, k and v.
    qkv: Fused,
    /// Per-head RMSNorm weights of q and k (Qwen3), `head_dim` each.
    qk_norm: Option<(Tensor, Tensor)>,
    o: Linear,
    mlp_norm: Tensor,
    /// gate and up.
    gate_up: Fused,
    down: Linear,
}

/// A loaded Llama-family model. Immutable and shareable; sessions own their
/// [`LlamaCache`]s.
#[derive(Debug, Clone)]
pub struct Llama {
    cfg: LlamaConfig,
    info: ModelInfo,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    rope: Rope,
    dtype: DType,
    device: Device,
}

/// What to call a model and which tokenizer it speaks, for [`ModelInfo`].
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) tokenizer_fingerprint: String,
}

impl Llama {
    /// Builds the model from a weight source. `dtype` is the activation dtype (f32 for
    /// quantized sources).
    pub(crate) fn from_source(
        cfg: LlamaConfig,
        src: &dyn WeightSource,
        dtype: DType,
        device: &Device,
        identity: Identity,
    ) -> Result<Self> {
        cfg.validate()?;
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (qd, kvd) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let bias = |name: &str, on: bool, len: usize| -> Result<Option<Tensor>> {
            if on {
                Ok(Some(src.tensor(name, &[len], dtype)?))
            } else {
                Ok(None)
            }
        };
        let embed = src.tensor("model.embed_tokens.weight", &[cfg.vocab_size, h], dtype)?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            let lin = |name: &str, out: usize, inp: usize, has_bias: bool| -> Result<Linear> {
                let w = src.linear(&format!("{p}.{name}.weight"), out, inp, dtype)?;
                Ok(w.with_bias(bias(&format!("{p}.{name}.bias"), has_bias, out)?))
            };
            layers.push(Layer {
                attn_norm: src.tensor(&format!("{p}.input_layernorm.weight"), &[h], dtype)?,
                qkv: Fused::new(vec![
                    lin("self_attn.q_proj", qd, h, cfg.qkv_bias)?,
                    lin("self_attn.k_proj", kvd, h, cfg.qkv_bias)?,
                    lin("self_attn.v_proj", kvd, h, cfg.qkv_bias)?,
                ])?,
                qk_norm: match cfg.arch.has_qk_norm() {
                    true => Some((
                        src.tensor(&format!("{p}.self_attn.q_norm.weight"), &[hd], dtype)?,
                        src.tensor(&format!("{p}.self_attn.k_norm.weight"), &[hd], dtype)?,
                    )),
                    false => None,
                },
                o: lin("self_attn.o_proj", h, qd, cfg.o_bias)?,
                mlp_norm: src.tensor(
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[h],
                    dtype,
                )?,
                gate_up: Fused::new(vec![
                    lin("mlp.gate_proj", i, h, cfg.mlp_bias)?,
                    lin("mlp.up_proj", i, h, cfg.mlp_bias)?,
                ])?,
                down: lin("mlp.down_proj", h, i, cfg.mlp_bias)?,
            });
        }
        let norm = src.tensor("model.norm.weight", &[h], dtype)?;
        let lm_head = if cfg.tie_word_embeddings {
            src.linear("model.embed_tokens.weight", cfg.vocab_size, h, dtype)?
        } else {
            src.linear("lm_head.weight", cfg.vocab_size, h, dtype)?
        };
        let info = ModelInfo {
            name: identity.name,
            vocab_size: cfg.vocab_size,
            max_context: cfg.max_position_embeddings,
            tokenizer_fingerprint: identity.tokenizer_fingerprint,
            bos_token_id: cfg.bos_token_id,
            eos_token_ids: cfg.eos_token_ids.clone(),
            num_parameters: cfg.num_parameters(),
            weights: src.storage(dtype),
            kv_bytes_per_token: 2 * cfg.num_layers * kvd * dtype.size_in_bytes(),
            num_layers: cfg.num_layers,
        };
        Ok(Llama {
            rope: Rope::new(&cfg),
            cfg,
            info,
            embed,
            layers,
            norm,
            lm_head,
            dtype,
            device: device.clone(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The activation dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Applies llama.cpp's per-pair RoPE frequency divisors (`rope_freqs.weight`).
    pub(crate) fn set_rope_freq_factors(&mut self, factors: &[f32]) -> Result<()> {
        self.rope.divide_by(factors)
    }

    /// Takes the checkpoint's special tokens: BOS only where prompts get it, and every
    /// stop token.
    pub(crate) fn set_special_tokens(&mut self, special: &crate::tokenizer::SpecialTokens) {
        self.info.bos_token_id = special.bos.filter(|_| special.add_bos);
        self.info.eos_token_ids = special.stop.clone();
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            x,
            w,
            self.cfg.rms_norm_eps as f32,
        )?)
    }

    fn validate(&self, entries: &[BatchEntry<'_, LlamaCache>]) -> Result<()> {
        for e in entries {
            if e.tokens.is_empty() {
                return Err(ModelError::EmptyBlock);
            }
            if let Some((position, &token)) = e
                .tokens
                .iter()
                .enumerate()
                .find(|&(_, &t)| t as usize >= self.cfg.vocab_size)
            {
                return Err(ModelError::TokenOutOfRange {
                    position,
                    token,
                    vocab: self.cfg.vocab_size,
                });
            }
            if let Some(parents) = e.tree {
                tandem_decoding::DraftTree::new(e.tokens, parents).map_err(ModelError::BadTree)?;
            }
            let needed = e.cache.len() + e.tokens.len();
            if needed > e.cache.max_len() {
                return Err(ModelError::ContextOverflow {
                    needed,
                    max: e.cache.max_len(),
                });
            }
        }
        Ok(())
    }
}

impl LanguageModel for Llama {
    type Cache = LlamaCache;

    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn new_cache_for(&self, max_len: usize) -> LlamaCache {
        LlamaCache::new(
            self.cfg.num_layers,
            self.cfg.num_kv_heads,
            self.cfg.head_dim,
            max_len.min(self.cfg.max_position_embeddings),
            self.dtype,
            self.device.clone(),
        )
    }

    fn forward_batch(&self, entries: &mut [BatchEntry<'_, LlamaCache>]) -> Result<Vec<Logits>> {
        self.validate(entries)?;
        // On the CPU this runs the pass on candle's thread pool, so the many short
        // parallel sections of a small model do not each hand work to another thread.
        self.device.with_context(|| self.run_batch(entries, None))
    }

    fn forward_batch_exits(
        &self,
        entries: &mut [BatchEntry<'_, LlamaCache>],
        exits: Exits<'_>,
    ) -> Result<Vec<Logits>> {
        self.validate(entries)?;
        let last = self.layers.len() - 1;
        if let Some(&bad) = exits.after.iter().find(|&&l| l >= last) {
            return Err(ModelError::Unsupported(format!(
                "an early exit after layer {bad}: {} has layers 0-{last}, and an exit must come before the last",
                self.info.name
            )));
        }
        self.device
            .with_context(|| self.run_batch(entries, Some(exits)))
    }
}

/// A layer's gate and up projections of `h`.
fn gate_up(layer: &Layer, h: &Tensor) -> Result<[Tensor; 2]> {
    let parts = layer.gate_up.forward(h)?;
    Ok(<[Tensor; 2]>::try_from(parts).expect("gate_up has two parts"))
}

/// What every layer of one batched pass shares: the spans, the rotary rows of every
/// token, the attention groups, and the permutation from group order to batch order.
struct Layout {
    spans: Vec<Span>,
    /// What each token tree's rows see ([`Span::tree`] indexes it).
    trees: Vec<packing::TreeRows>,
    total: usize,
    cos: Tensor,
    sin: Tensor,
    groups: Vec<Group>,
    restore: Option<Tensor>,
    /// Attention row by row ([`rowwise`]): f32 on the CPU. The groups are then unused.
    rowwise: bool,
}

impl Llama {
    fn run_batch(
        &self,
        entries: &mut [BatchEntry<'_, LlamaCache>],
        mut exits: Option<Exits<'_>>,
    ) -> Result<Vec<Logits>> {
        let layout = self.layout(entries)?;
        for e in entries.iter_mut() {
            e.cache.reserve(e.tokens.len())?;
        }
        // Batched attention reads every member's cache up to its group's longest
        // context: room there saves padding each layer.
        for g in &layout.groups {
            for &i in &g.members {
                entries[i].cache.grow_toward(g.max_total)?;
            }
        }
        let ids: Vec<u32> = entries
            .iter()
            .flat_map(|e| e.tokens.iter().copied())
            .collect();
        let ids = Tensor::from_vec(ids, layout.total, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        for (l, layer) in self.layers.iter().enumerate() {
            x = self.layer(l, layer, &x, &layout, entries)?;
            if let Some(exits) = exits.as_mut().filter(|e| e.after.contains(&l)) {
                let logits = self.head(&x, &layout, entries, exits.want)?;
                (exits.on_exit)(l, logits);
            }
        }
        let logits = self.head(&x, &layout, entries, &[])?;
        for (e, span) in entries.iter_mut().zip(&layout.spans) {
            e.cache.set_len(span.past + span.len);
        }
        Ok(logits)
    }

    fn layout(&self, entries: &[BatchEntry<'_, LlamaCache>]) -> Result<Layout> {
        let mut spans = Vec::with_capacity(entries.len());
        let mut trees = Vec::new();
        let mut positions = Vec::new();
        for e in entries {
            let past = e.cache.len();
            let len = e.tokens.len();
            let tree = e.tree.map(|parents| {
                trees.push(packing::tree_rows(parents));
                trees.len() - 1
            });
            spans.push(Span {
                start: positions.len(),
                len,
                past,
                tree,
            });
            match tree {
                // A tree's token sits at the position of its depth: its ancestors are
                // the tokens before it.
                Some(t) => positions.extend(trees[t].iter().map(|seen| past + seen.len() - 1)),
                None => positions.extend(past..past + len),
            }
        }
        let (cos, sin) = self.rope.cos_sin(&positions, self.dtype, &self.device)?;
        let rowwise = self.device.is_cpu() && self.dtype == DType::F32;
        // Groups, masks and row indices depend only on the shapes: built once per pass.
        let (groups, restore) = if rowwise {
            (Vec::new(), None)
        } else {
            let groups = packing::plan(&spans)
                .into_iter()
                .map(|members| Group::new(&spans, &trees, members, &self.embed))
                .collect::<Result<Vec<_>>>()?;
            let restore = packing::restore(&spans, &groups, &self.device)?;
            (groups, restore)
        };
        Ok(Layout {
            spans,
            trees,
            total: positions.len(),
            cos: cos.unsqueeze(1)?,
            sin: sin.unsqueeze(1)?,
            groups,
            restore,
            rowwise,
        })
    }

    /// One decoder layer over the whole batch; attention per group.
    fn layer(
        &self,
        l: usize,
        layer: &Layer,
        x: &Tensor,
        layout: &Layout,
        entries: &[BatchEntry<'_, LlamaCache>],
    ) -> Result<Tensor> {
        let h = self.rms_norm(x, &layer.attn_norm)?;
        let ctx = attention::Rotated::new(self, layer, &h, &layout.cos, &layout.sin)?;
        for (e, span) in entries.iter().zip(&layout.spans) {
            ctx.store(e.cache, l, *span)?;
        }
        let attn = if layout.rowwise {
            let caches: Vec<&LlamaCache> = entries.iter().map(|e| &*e.cache).collect();
            let shape = rowwise::Shape {
                spans: &layout.spans,
                trees: &layout.trees,
            };
            rowwise::attend(&self.cfg, ctx.queries(), shape, &caches, l)?
        } else {
            self.attend_groups(&ctx, l, layout, entries)?
        };
        let x = (x + layer.o.forward(&attn)?)?;
        let h = self.rms_norm(&x, &layer.mlp_norm)?;
        let [gate, up] = gate_up(layer, &h)?;
        let act = (candle_nn::ops::silu(&gate)? * up)?;
        Ok((x + layer.down.forward(&act)?)?)
    }

    /// Attention by padded groups of similar sessions (GPU, half precision).
    fn attend_groups(
        &self,
        ctx: &attention::Rotated<'_>,
        l: usize,
        layout: &Layout,
        entries: &[BatchEntry<'_, LlamaCache>],
    ) -> Result<Tensor> {
        let mut outs = Vec::with_capacity(layout.groups.len());
        for g in &layout.groups {
            let caches: Vec<&LlamaCache> = g.members.iter().map(|&i| &*entries[i].cache).collect();
            outs.push(ctx.attend(&caches, l, g)?);
        }
        let attn = match outs.len() {
            1 => outs.pop().expect("one output"),
            _ => Tensor::cat(&outs, 0)?,
        };
        Ok(match &layout.restore {
            Some(rows) => attn.index_select(rows, 0)?,
            None => attn,
        })
    }

    /// Final norm and LM head, only on the rows someone asked for (of the entries
    /// `want` flags; empty: all); split per entry.
    fn head(
        &self,
        x: &Tensor,
        layout: &Layout,
        entries: &[BatchEntry<'_, LlamaCache>],
        want: &[bool],
    ) -> Result<Vec<Logits>> {
        let mut rows = Vec::new();
        let mut counts = Vec::with_capacity(entries.len());
        for (i, (e, s)) in entries.iter().zip(&layout.spans).enumerate() {
            let n = match e.positions {
                _ if !want.get(i).copied().unwrap_or(true) => 0,
                Positions::All => s.len,
                Positions::Last => 1,
            };
            rows.extend((s.start + s.len - n..s.start + s.len).map(|r| r as u32));
            counts.push(n);
        }
        if rows.is_empty() {
            let vocab = self.cfg.vocab_size;
            return Ok(counts
                .iter()
                .map(|_| Logits::new(Vec::new(), vocab))
                .collect());
        }
        let x = if rows.len() == layout.total {
            x.clone()
        } else {
            let n = rows.len();
            x.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?
        };
        let x = self.rms_norm(&x, &self.norm)?;
        let logits = self
            .lm_head
            .forward(&x)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let vocab = self.cfg.vocab_size;
        let mut at = 0;
        Ok(counts
            .into_iter()
            .map(|n| {
                let l = Logits::new(logits[at * vocab..(at + n) * vocab].to_vec(), vocab);
                at += n;
                l
            })
            .collect())
    }
}
