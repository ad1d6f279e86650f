//! The seam both nodes run models through.
//!
//! A [`LanguageModel`] is loaded once and shared; each generation owns a
//! [`SessionCache`] made by [`LanguageModel::new_cache`]. Every call names the cache it
//! extends, so one model serves any number of sessions, and the verifier can run blocks
//! from many sessions in one [`LanguageModel::forward_batch`].

use tandem_decoding::LogitRows;

use crate::error::{ModelError, Result};

/// Which positions of a block the caller wants logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Every position (verification of a draft block).
    All,
    /// Only the last position (prefill, plain decoding).
    Last,
}

/// Logits for some positions of one block, row-major `rows × vocab`, in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    data: Vec<f32>,
    vocab: usize,
}

impl Logits {
    /// Wraps `rows × vocab` values.
    pub fn new(data: Vec<f32>, vocab: usize) -> Self {
        debug_assert!(vocab > 0 && data.len().is_multiple_of(vocab));
        Logits { data, vocab }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.data.len() / self.vocab
    }

    /// Width of a row.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// The last row.
    pub fn last(&self) -> &[f32] {
        self.row(self.num_rows() - 1)
    }

    /// The rows as `tandem-decoding` takes them.
    pub fn rows(&self) -> LogitRows<'_> {
        LogitRows::new(&self.data, self.vocab).expect("Logits holds whole non-empty rows")
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// A session's model state (the KV cache, for a transformer).
pub trait SessionCache: Send {
    /// Number of tokens the cache holds.
    fn len(&self) -> usize;

    /// Whether the cache is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything past `len` tokens, in O(1): rollback after a partial accept.
    fn truncate(&mut self, len: usize) -> Result<()>;

    /// Bytes of memory the cache holds now (its capacity, not its length).
    fn bytes(&self) -> usize;

    /// Keeps, of the block run last from position `start` (a token tree), only its rows
    /// `keep` (block offsets, increasing: the accepted path), moved to `start ..
    /// start + keep.len()`; the cache then holds them as if decoded one by one. Errors
    /// leave the cache as it was.
    fn keep_rows(&mut self, start: usize, keep: &[usize]) -> Result<()>;
}

/// One session's block in a batched forward pass.
pub struct BatchEntry<'a, C> {
    /// The session's cache; the block is appended to it.
    pub cache: &'a mut C,
    /// The tokens to run.
    pub tokens: &'a [u32],
    /// Which positions to return logits for.
    pub positions: Positions,
    /// The block is a token tree: each token's parent row (0: the cached context, `j`:
    /// the block's token `j − 1`), as [`tandem_decoding::DraftTree`] takes them. Each
    /// token then attends to the context and its ancestors only, at the position of its
    /// depth. `None`: a chain (parents `0, 1, 2, …`).
    pub tree: Option<&'a [u32]>,
}

/// What a node needs to know about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// A human name: the path or `builtin:` name it was loaded from.
    pub name: String,
    /// Width of a logit row.
    pub vocab_size: usize,
    /// Longest sequence a session may reach.
    pub max_context: usize,
    /// The tokenizer's fingerprint (see [`crate::Tokenizer::fingerprint`]).
    pub tokenizer_fingerprint: String,
    /// The beginning-of-sequence token every prompt starts with; `None` when the
    /// checkpoint's tokenizer does not add one (`add_bos_token = false`).
    pub bos_token_id: Option<u32>,
    /// Tokens that end a generation: EOS and the end-of-turn tokens (`<|im_end|>`,
    /// `<|eot_id|>`).
    pub eos_token_ids: Vec<u32>,
    /// Number of parameters.
    pub num_parameters: usize,
    /// How weights are held ("f32", "bf16", "q8_0", ...).
    pub weights: String,
    /// Bytes of KV cache one token of context takes (keys and values, every layer).
    pub kv_bytes_per_token: usize,
    /// Decoder layers (the early exits a pass can take lie between them).
    pub num_layers: usize,
}

impl ModelInfo {
    /// Checks that a draft model can propose tokens for this target: same logit width and
    /// same tokenizer.
    pub fn check_draft(&self, draft: &ModelInfo) -> Result<()> {
        if draft.vocab_size != self.vocab_size
            || draft.tokenizer_fingerprint != self.tokenizer_fingerprint
        {
            return Err(ModelError::VocabMismatch {
                draft_vocab: draft.vocab_size,
                draft_fingerprint: draft.tokenizer_fingerprint.clone(),
                target_vocab: self.vocab_size,
                target_fingerprint: self.tokenizer_fingerprint.clone(),
            });
        }
        Ok(())
    }
}

/// Early exits of one pass: after which decoder layers (0-based, increasing, each below
/// the last layer) to read the batch's logits off the hidden states so far, and who
/// hears them. The exit logits go through the model's final norm and LM head, for the
/// same rows [`LanguageModel::forward_batch`] returns, one [`Logits`] per entry; `on_exit`
/// gets them while the rest of the pass is still to run (LayerSkip's and arXiv
/// 2505.21594's early exit, without a trained exit head).
pub struct Exits<'a> {
    /// The layers to exit after.
    pub after: &'a [usize],
    /// Which entries want exit logits (one flag per entry; empty: all). The others get
    /// no rows, and cost nothing at the exit.
    pub want: &'a [bool],
    /// Called once per exit, in layer order, with the layer and its logits.
    pub on_exit: &'a mut (dyn FnMut(usize, Vec<Logits>) + Send),
}

/// A causal language model that runs blocks of tokens against per-session caches.
///
/// Errors leave every cache passed in exactly as it was.
pub trait LanguageModel: Send + Sync {
    /// The per-session state.
    type Cache: SessionCache;

    /// Facts about the model.
    fn info(&self) -> &ModelInfo;

    /// A fresh, empty cache for a session that will never hold more than `max_len`
    /// tokens (capped at the model's context), so it never allocates for more.
    fn new_cache_for(&self, max_len: usize) -> Self::Cache;

    /// A fresh, empty cache that may grow to the model's whole context.
    fn new_cache(&self) -> Self::Cache {
        self.new_cache_for(self.info().max_context)
    }

    /// Runs each entry's block after its cache's contents, appends the block to the cache
    /// and returns the requested logits, one [`Logits`] per entry in order. The result is
    /// the same (within floating-point reassociation) as running each entry alone.
    fn forward_batch(&self, entries: &mut [BatchEntry<'_, Self::Cache>]) -> Result<Vec<Logits>>;

    /// [`LanguageModel::forward_batch`], also handing `exits` the logits of each
    /// intermediate layer it names as soon as that layer is done. The final logits are
    /// exactly those of `forward_batch`. A model without layers to exit from ignores
    /// `exits`.
    fn forward_batch_exits(
        &self,
        entries: &mut [BatchEntry<'_, Self::Cache>],
        exits: Exits<'_>,
    ) -> Result<Vec<Logits>> {
        let _ = exits;
        self.forward_batch(entries)
    }

    /// Runs one block for one session.
    fn forward(
        &self,
        cache: &mut Self::Cache,
        tokens: &[u32],
        positions: Positions,
    ) -> Result<Logits> {
        let mut entries = [BatchEntry {
            cache,
            tokens,
            positions,
            tree: None,
        }];
        Ok(self
            .forward_batch(&mut entries)?
            .pop()
            .expect("one entry in, one out"))
    }

    /// Prefills a prompt and returns the logits of its last position.
    fn prefill(&self, cache: &mut Self::Cache, prompt: &[u32]) -> Result<Logits> {
        self.forward(cache, prompt, Positions::Last)
    }
}
