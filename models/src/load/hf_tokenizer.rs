//! An HF checkpoint's tokenizer as transformers sees it: `tokenizer.json`, the BOS/EOS
//! policy of `tokenizer_config.json` and the post-processor, the stop tokens of
//! `generation_config.json`, and the chat template (`tokenizer_config.json`'s
//! `chat_template` or `chat_template.jinja`).

use std::path::Path;

use serde_json::Value;

use crate::config::{LlamaConfig, token_list};
use crate::error::{ModelError, Result};
use crate::tokenizer::{ChatTemplate, SpecialTokens, Tokenizer};

/// The optional JSON files beside `tokenizer.json`, parsed.
#[derive(Default)]
pub(crate) struct TokenizerFiles {
    /// `generation_config.json`.
    pub(crate) generation_config: Option<Value>,
    /// `tokenizer_config.json`.
    pub(crate) tokenizer_config: Option<Value>,
    /// `chat_template.jinja`.
    pub(crate) chat_template: Option<String>,
}

impl TokenizerFiles {
    /// Reads whichever of the files `dir` has.
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let text = |name: &str| -> Result<Option<String>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ModelError::io(path, e)),
            }
        };
        let json = |name: &str| -> Result<Option<Value>> {
            text(name)?
                .map(|s| {
                    serde_json::from_str(&s).map_err(|e| {
                        ModelError::config(dir.join(name), format!("not valid JSON: {e}"))
                    })
                })
                .transpose()
        };
        Ok(TokenizerFiles {
            generation_config: json("generation_config.json")?,
            tokenizer_config: json("tokenizer_config.json")?,
            chat_template: text("chat_template.jinja")?,
        })
    }

    /// Parses embedded `generation_config.json` and `tokenizer_config.json`.
    pub(crate) fn embedded(generation: &[u8], tokenizer: &[u8], name: &str) -> Result<Self> {
        let parse = |bytes: &[u8], file: &str| -> Result<Value> {
            serde_json::from_slice(bytes)
                .map_err(|e| ModelError::config(name, format!("{file}: {e}")))
        };
        Ok(TokenizerFiles {
            generation_config: Some(parse(generation, "generation_config.json")?),
            tokenizer_config: Some(parse(tokenizer, "tokenizer_config.json")?),
            chat_template: None,
        })
    }
}

/// Attaches the checkpoint's special tokens and chat template to `tok`.
pub(crate) fn finish(
    tok: Tokenizer,
    cfg: &LlamaConfig,
    files: &TokenizerFiles,
) -> Result<Tokenizer> {
    let special = special_tokens(cfg, files, &tok)?;
    let chat = chat_template(files).map(|src| {
        let text = |id: Option<u32>| {
            id.and_then(|i| tok.inner().id_to_token(i))
                .unwrap_or_default()
        };
        ChatTemplate::with_tokens(&src, &text(special.bos), &text(special.eos))
    });
    Ok(tok.with_special(special, chat))
}

/// BOS and EOS from `config.json`, overridden by `generation_config.json`; stop tokens
/// are EOS plus the end-of-turn tokens the vocabulary has; BOS is added where
/// `tokenizer_config.json` says so or the post-processor's template starts with it.
fn special_tokens(
    cfg: &LlamaConfig,
    files: &TokenizerFiles,
    tok: &Tokenizer,
) -> Result<SpecialTokens> {
    let (mut bos, mut eos) = (cfg.bos_token_id, cfg.eos_token_ids.clone());
    if let Some(g) = &files.generation_config {
        if let Some(b) = g.get("bos_token_id").and_then(Value::as_u64) {
            bos = Some(b as u32);
        }
        if g.get("eos_token_id").is_some() {
            eos = token_list(g.get("eos_token_id"))?;
        }
    }
    let mut stop = eos.clone();
    stop.extend(tok.end_of_turn_ids());
    stop.sort_unstable();
    stop.dedup();
    let flag = |key: &str| {
        files
            .tokenizer_config
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
    };
    let add_bos = flag("add_bos_token").unwrap_or_else(|| post_processor_adds_bos(tok, bos));
    Ok(SpecialTokens {
        bos,
        eos: eos.first().copied(),
        stop,
        add_bos: add_bos && bos.is_some(),
        add_eos: flag("add_eos_token").unwrap_or(false) && !eos.is_empty(),
    })
}

/// Whether `tokenizer.json`'s post-processor puts BOS first (a template that starts with
/// the BOS token); with no post-processor at all, whether the config names a BOS.
fn post_processor_adds_bos(tok: &Tokenizer, bos: Option<u32>) -> bool {
    let Some(post) = tok.inner().get_post_processor() else {
        return bos.is_some();
    };
    let Ok(post) = serde_json::to_value(post) else {
        return false;
    };
    let template_first = |p: &Value| -> Option<String> {
        let first = p.get("single")?.as_array()?.first()?;
        Some(first.get("SpecialToken")?.get("id")?.as_str()?.to_string())
    };
    let processors: Vec<&Value> = match post["type"].as_str() {
        Some("Sequence") => post["processors"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![&post],
    };
    processors.iter().any(|p| {
        p["type"] == "TemplateProcessing"
            && template_first(p)
                .and_then(|t| tok.token_id(&t))
                .is_some_and(|id| Some(id) == bos)
    })
}

/// `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template` (a string, or a
/// list of named templates of which `default` is taken).
fn chat_template(files: &TokenizerFiles) -> Option<String> {
    if let Some(t) = &files.chat_template {
        return Some(t.clone());
    }
    match files.tokenizer_config.as_ref()?.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| named.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}
