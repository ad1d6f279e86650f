//! The tokenizer stored in a GGUF file's metadata, as llama.cpp's converter writes it.
//!
//! Two vocabularies are understood, chosen by `tokenizer.ggml.model`:
//! - `gpt2`: byte-level BPE (`tokens`, `merges`), split first by the regexes llama.cpp
//!   selects with `tokenizer.ggml.pre` ([`PreTokenizer`]);
//! - `llama`: SentencePiece BPE (`tokens`, `scores`, byte tokens `<0xNN>` for fallback),
//!   whose merges are the pairs of pieces that form another piece, ranked by that piece's
//!   score — the rule llama.cpp's SPM tokenizer and transformers' converter both apply.
//!
//! Either is turned into a `tokenizer.json` document in memory and handed to the
//! `tokenizers` crate, so one encoder serves HF directories and GGUF files alike.
//! Control (type 3) and user-defined (type 4) tokens become added tokens, matched before
//! the model runs; control tokens are skipped when decoding, as llama.cpp renders them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::{Map, json};

use crate::error::{ModelError, Result};
use crate::tokenizer::{ChatTemplate, END_OF_TURN_TEXTS, SpecialTokens, Tokenizer};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// The pre-tokenizer regexes of llama.cpp's `llama-vocab.cpp`, by `tokenizer.ggml.pre`.
/// Each regex splits the pieces the previous one left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// `default`: llama.cpp's fallback list.
    Default,
    /// `gpt-2` (and `mpt`, `olmo`): GPT-2's regex.
    Gpt2,
    /// `llama-bpe` (Llama 3): numbers in runs of up to three digits.
    Llama3,
    /// `qwen2`: Llama 3's regex with single digits.
    Qwen2,
    /// `smollm` (and `starcoder`, `refact`): single digits, then GPT-2's regex.
    Smollm,
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl PreTokenizer {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "default" => PreTokenizer::Default,
            "gpt-2" | "gpt2" | "mpt" | "olmo" => PreTokenizer::Gpt2,
            "llama-bpe" | "llama3" | "llama-v3" => PreTokenizer::Llama3,
            "qwen2" | "deepseek-r1-qwen" => PreTokenizer::Qwen2,
            "smollm" | "starcoder" | "refact" => PreTokenizer::Smollm,
            _ => return None,
        })
    }

    fn regexes(self) -> &'static [&'static str] {
        match self {
            PreTokenizer::Default => &[
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2_RE,
                r"\p{N}+",
                r"[0-9][0-9][0-9]",
            ],
            PreTokenizer::Gpt2 => &[GPT2_RE],
            PreTokenizer::Llama3 => &[LLAMA3_RE],
            PreTokenizer::Qwen2 => &[QWEN2_RE],
            PreTokenizer::Smollm => &[r"\p{N}", GPT2_RE],
        }
    }

    /// Llama 3's BPE takes a word that is itself a token whole, without merging.
    fn ignore_merges(self) -> bool {
        self == PreTokenizer::Llama3
    }
}

/// Reads GGUF metadata keys, naming the file and key in every error.
pub(crate) struct Meta<'a> {
    pub(crate) md: &'a HashMap<String, Value>,
    pub(crate) path: &'a Path,
}

impl Meta<'_> {
    fn err(&self, msg: String) -> ModelError {
        ModelError::config(self.path, msg)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.md.get(key)
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| self.err(format!("missing GGUF metadata `{key}`")))
    }

    fn string(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| {
                v.to_string()
                    .map(String::as_str)
                    .map_err(|_| self.err(format!("GGUF metadata `{key}` is not a string")))
            })
            .transpose()
    }

    fn u32(&self, key: &str) -> Result<Option<u32>> {
        self.get(key)
            .map(|v| {
                v.to_u32()
                    .or_else(|_| v.to_i32().map(|n| n as u32))
                    .or_else(|_| v.to_u64().map(|n| n as u32))
                    .map_err(|_| self.err(format!("GGUF metadata `{key}` is not an integer")))
            })
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                v.to_bool()
                    .map_err(|_| self.err(format!("GGUF metadata `{key}` is not a boolean")))
            })
            .transpose()
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.required(key)?
            .to_vec()
            .map_err(|_| self.err(format!("GGUF metadata `{key}` is not an array")))
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.array(key)?
            .iter()
            .map(|v| v.to_string().map(String::as_str))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.err(format!("GGUF metadata `{key}` is not an array of strings")))
    }

    fn i32s(&self, key: &str, len: usize) -> Result<Vec<i32>> {
        if self.get(key).is_none() {
            return Ok(vec![1; len]);
        }
        let v: Vec<i32> = self
            .array(key)?
            .iter()
            .map(|v| v.to_i32().or_else(|_| v.to_u32().map(|n| n as i32)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.err(format!("GGUF metadata `{key}` is not an array of integers")))?;
        self.check_len(key, v.len(), len)?;
        Ok(v)
    }

    fn f32s(&self, key: &str, len: usize) -> Result<Vec<f32>> {
        let v: Vec<f32> = self
            .array(key)?
            .iter()
            .map(|v| v.to_f32())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.err(format!("GGUF metadata `{key}` is not an array of floats")))?;
        self.check_len(key, v.len(), len)?;
        Ok(v)
    }

    fn check_len(&self, key: &str, found: usize, want: usize) -> Result<()> {
        if found != want {
            return Err(self.err(format!(
                "GGUF metadata `{key}` has {found} entries for {want} tokens"
            )));
        }
        Ok(())
    }
}

/// The tokenizer in a GGUF file's metadata, with its special tokens and chat template.
pub(crate) fn tokenizer(meta: &Meta<'_>) -> Result<Tokenizer> {
    let model = meta
        .string("tokenizer.ggml.model")?
        .ok_or_else(|| meta.err("missing GGUF metadata `tokenizer.ggml.model` (no tokenizer in the file; put a tokenizer.json beside it)".into()))?;
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let types = meta.i32s("tokenizer.ggml.token_type", tokens.len())?;
    let doc = match model {
        "gpt2" => {
            let pre_name = meta.string("tokenizer.ggml.pre")?.unwrap_or("default");
            let pre = PreTokenizer::from_name(pre_name).ok_or_else(|| {
                meta.err(format!(
                    "GGUF metadata `tokenizer.ggml.pre` = {pre_name:?} is not supported \
                     (default, gpt-2, llama-bpe, qwen2, smollm)"
                ))
            })?;
            let merges = meta.strings("tokenizer.ggml.merges")?;
            byte_level_bpe(&tokens, &types, &merges, pre)
        }
        "llama" => {
            let scores = meta.f32s("tokenizer.ggml.scores", tokens.len())?;
            let add_space_prefix = meta
                .bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let unk = meta.u32("tokenizer.ggml.unknown_token_id")?;
            sentencepiece_bpe(&tokens, &types, &scores, unk, add_space_prefix)
        }
        other => {
            return Err(meta.err(format!(
                "GGUF metadata `tokenizer.ggml.model` = {other:?} is not supported (gpt2, llama)"
            )));
        }
    };
    let bytes = serde_json::to_vec(&doc).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    let inner = tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| meta.err(format!("the GGUF tokenizer does not build: {e}")))?;
    let special = special_tokens(meta, &tokens, &types, model)?;
    let chat = meta
        .string("tokenizer.chat_template")?
        .map(|source| ChatTemplate::new(source, &special, &tokens));
    Ok(Tokenizer::from_inner(inner).with_special(special, chat))
}

/// BOS, EOS and end-of-turn ids, and whether BOS/EOS are added, as llama.cpp reads them.
fn special_tokens(
    meta: &Meta<'_>,
    tokens: &[&str],
    types: &[i32],
    model: &str,
) -> Result<SpecialTokens> {
    let id = |key: &str| -> Result<Option<u32>> {
        Ok(meta
            .u32(&format!("tokenizer.ggml.{key}"))?
            .filter(|&i| (i as usize) < tokens.len()))
    };
    let bos = id("bos_token_id")?;
    let eos = id("eos_token_id")?;
    let mut eog: Vec<u32> = Vec::new();
    for key in ["eos_token_id", "eot_token_id", "eom_token_id"] {
        if let Some(i) = id(key)? {
            eog.push(i);
        }
    }
    for (i, (text, ty)) in tokens.iter().zip(types).enumerate() {
        if *ty == TYPE_CONTROL && END_OF_TURN_TEXTS.contains(text) {
            eog.push(i as u32);
        }
    }
    eog.sort_unstable();
    eog.dedup();
    // llama.cpp adds BOS by default for SentencePiece vocabularies, not for BPE ones.
    let add_bos = meta
        .bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(model == "llama");
    let add_eos = meta.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    Ok(SpecialTokens {
        bos,
        eos,
        stop: eog,
        add_bos: add_bos && bos.is_some(),
        add_eos: add_eos && eos.is_some(),
    })
}

/// Added tokens: control tokens (special, skipped when decoding) and user-defined ones.
fn added_tokens(tokens: &[&str], types: &[i32]) -> Vec<serde_json::Value> {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| matches!(**ty, TYPE_CONTROL | TYPE_USER_DEFINED))
        .map(|(id, (text, ty))| {
            json!({
                "id": id, "content": text, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": *ty == TYPE_CONTROL,
            })
        })
        .collect()
}

fn vocab_map(tokens: &[&str]) -> Map<String, serde_json::Value> {
    let mut vocab = Map::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        // A duplicated text keeps its first id, as llama.cpp's text → id map does.
        vocab.entry(t.to_string()).or_insert(json!(id));
    }
    vocab
}

fn byte_level_bpe(
    tokens: &[&str],
    types: &[i32],
    merges: &[&str],
    pre: PreTokenizer,
) -> serde_json::Value {
    let mut steps: Vec<serde_json::Value> = pre
        .regexes()
        .iter()
        .map(|re| {
            json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false})
        })
        .collect();
    steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}));
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": steps},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": pre.ignore_merges(),
            "vocab": vocab_map(tokens),
            "merges": merges,
        }
    })
}

/// SentencePiece's pieces as BPE: every split of a normal piece into two normal pieces
/// is a merge, ranked by the merged piece's score (highest first).
fn spm_merges(tokens: &[&str], types: &[i32], scores: &[f32]) -> Vec<[String; 2]> {
    let normal: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == 1)
        .map(|(i, t)| (*t, i))
        .collect();
    let mut merges: Vec<(f32, usize, usize, [String; 2])> = Vec::new();
    for (&piece, &id) in &normal {
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (normal.get(l), normal.get(r)) {
                merges.push((scores[id], li, ri, [l.to_string(), r.to_string()]));
            }
        }
    }
    // Highest score first; ties broken by the parts' ids, as transformers' converter does.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|m| m.3).collect()
}

fn sentencepiece_bpe(
    tokens: &[&str],
    types: &[i32],
    scores: &[f32],
    unk: Option<u32>,
    add_space_prefix: bool,
) -> serde_json::Value {
    let unk_token = unk
        .or_else(|| {
            types
                .iter()
                .position(|&t| t == TYPE_UNKNOWN)
                .map(|i| i as u32)
        })
        .map(|i| tokens[i as usize]);
    let has_bytes = types.contains(&TYPE_BYTE);
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk_token,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": has_bytes, "ignore_merges": false,
            "vocab": vocab_map(tokens),
            "merges": spm_merges(tokens, types, scores),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spm_merges_rank_by_merged_score() {
        let tokens = ["<unk>", "a", "b", "c", "ab", "bc", "abc"];
        let types = [2, 1, 1, 1, 1, 1, 1];
        let scores = [0.0, -1.0, -1.0, -1.0, -3.0, -2.0, -4.0];
        let m = spm_merges(&tokens, &types, &scores);
        let m: Vec<String> = m.iter().map(|p| p.join(" ")).collect();
        assert_eq!(m, ["b c", "a b", "a bc", "ab c"]);
    }

    #[test]
    fn every_pre_tokenizer_regex_compiles() {
        for p in [
            PreTokenizer::Default,
            PreTokenizer::Gpt2,
            PreTokenizer::Llama3,
            PreTokenizer::Qwen2,
            PreTokenizer::Smollm,
        ] {
            let tokens = ["a", "b", "ab", "Ġ"];
            let doc = byte_level_bpe(&tokens, &[1, 1, 1, 1], &["a b"], p);
            let bytes = serde_json::to_vec(&doc).unwrap();
            let t = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
            assert_eq!(t.encode("ab", false).unwrap().get_ids(), &[2], "{p:?}");
        }
    }
}
