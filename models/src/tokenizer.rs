//! The tokenizer a model was trained with, its fingerprint, and streaming detokenisation.

use std::path::Path;

pub use crate::chat::{ChatTemplate, Message};
use crate::error::{ModelError, Result};

/// Token texts that end a turn in the chat formats researchers use; a checkpoint that
/// has one of them as a special token stops on it as well as on EOS (llama.cpp and
/// transformers' chat pipelines do the same).
pub(crate) const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
];

/// The special tokens a checkpoint declares and whether prompts get them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Every id that ends a generation: EOS, end-of-turn and end-of-message tokens.
    pub stop: Vec<u32>,
    /// Whether a prompt starts with BOS (`add_bos_token`, or the post-processor's template).
    pub add_bos: bool,
    /// Whether a prompt ends with EOS (`add_eos_token`).
    pub add_eos: bool,
}

/// A loaded tokenizer with the special tokens a node needs and the checkpoint's chat
/// template, if it has one.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    fingerprint: String,
    special: SpecialTokens,
    chat: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(ModelError::MissingFile {
                what: "tokenizer.json",
                path: path.to_path_buf(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::config(path, format!("not a tokenizer: {e}")))?;
        Ok(Self::from_inner(inner))
    }

    /// Parses `tokenizer.json` from memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(Self::from_inner(inner))
    }

    /// Wraps a tokenizer built in memory (the trainer's).
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Self {
        let fingerprint = fingerprint(&inner);
        Tokenizer {
            inner,
            fingerprint,
            special: SpecialTokens::default(),
            chat: None,
        }
    }

    /// Sets the checkpoint's special tokens and chat template.
    pub fn with_special(mut self, special: SpecialTokens, chat: Option<ChatTemplate>) -> Self {
        self.special = special;
        self.chat = chat;
        self
    }

    /// The checkpoint's special tokens.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// The checkpoint's chat template, if it ships one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// Ids of the added special tokens whose text marks the end of a turn.
    pub(crate) fn end_of_turn_ids(&self) -> Vec<u32> {
        END_OF_TURN_TEXTS
            .iter()
            .filter_map(|t| self.inner.token_to_id(t))
            .collect()
    }

    /// Encodes a conversation the way the checkpoint's chat template lays it out, with
    /// the assistant's turn opened (the template places any BOS itself). A checkpoint
    /// without a template is an error that says where one would come from.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let template = self.chat.as_ref().ok_or_else(|| {
            ModelError::Unsupported(
                "the model has no chat template (tokenizer.chat_template in GGUF, \
                 chat_template in tokenizer_config.json, or chat_template.jinja)"
                    .into(),
            )
        })?;
        self.encode(&template.render(messages, true)?)
    }

    /// Encodes a prompt the way the checkpoint expects: BOS and EOS added where its
    /// tokenizer adds them, special-token texts (`<|im_start|>`) matched as tokens.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.special.add_bos
            && let Some(b) = self.special.bos
        {
            ids.push(b);
        }
        ids.extend(self.encode(text)?);
        if self.special.add_eos
            && let Some(e) = self.special.eos
        {
            ids.push(e);
        }
        Ok(ids)
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A stable hash of the id → token table and the merge-relevant model type, written
    /// as `"tok1-<16 hex digits>"`. Two nodes whose fingerprints agree map every id to
    /// the same token; the JSON formatting of the file does not enter it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encodes text without adding special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// A streaming decoder for one generation.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }
}

/// FNV-1a, 64 bits: stable across platforms and versions, enough to tell tokenizers apart.
fn fingerprint(tok: &tokenizers::Tokenizer) -> String {
    let mut vocab: Vec<(u32, String)> = tok
        .get_vocab(true)
        .into_iter()
        .map(|(s, id)| (id, s))
        .collect();
    vocab.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (id, s) in &vocab {
        eat(&id.to_le_bytes());
        eat(s.as_bytes());
        eat(&[0xff]);
    }
    format!("tok1-{h:016x}")
}

/// Turns a stream of ids into text increments without ever splitting a multi-byte
/// character.
///
/// Byte-level BPE tokens can end in the middle of a UTF-8 sequence; decoding such a
/// prefix yields U+FFFD. The decoder keeps a small window of ids (from `prefix_offset`)
/// and only emits the new text once it no longer ends in an incomplete character:
///
/// ```text
/// ids      [.. "caf", "\xc3", "\xa9 au"]
/// push(\xc3)  window decodes to "caf\u{FFFD}" → ends in U+FFFD → emit nothing
/// push(\xa9 au) window decodes to "café au"   → emit "é au"
/// ```
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl StreamDecoder<'_> {
    /// Adds one id and returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..])?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// Text held back at the end of the stream (an incomplete character, rendered with
    /// U+FFFD as the tokenizer decodes it).
    pub fn finish(&mut self) -> Result<String> {
        let prefix = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(full.get(prefix.len()..).unwrap_or_default().to_string())
    }
}
