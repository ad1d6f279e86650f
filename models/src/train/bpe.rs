//! The byte-level BPE tokenizer of the tiny pair, trained with the tokenizers crate.

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

/// Id of `<s>`, which starts every document.
pub const BOS: u32 = 0;
/// Id of `</s>`, which ends every document.
pub const EOS: u32 = 1;

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// Trains a byte-level BPE with `<s>` = 0 and `</s>` = 1 on `docs`.
pub fn train_tokenizer(docs: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(vec![
            AddedToken::from("<s>", true),
            AddedToken::from("</s>", true),
        ])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    // No prefix space: a continuation encodes the same wherever it is cut.
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok = TokenizerBuilder::<
        BPE,
        tokenizers::NormalizerWrapper,
        ByteLevel,
        ByteLevel,
        ByteLevel,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(byte_level))
    .with_post_processor(Some(byte_level))
    .with_decoder(Some(byte_level))
    .build()
    .map_err(tok_err)?;
    tok.train(&mut trainer, docs.iter()).map_err(tok_err)?;
    let json = tok.to_string(false).map_err(tok_err)?;
    Tokenizer::from_bytes(json.as_bytes())
}

/// `<s> doc </s>` as ids.
pub(crate) fn encode_document(tok: &Tokenizer, doc: &str) -> Result<Vec<u32>> {
    let mut ids = vec![BOS];
    ids.extend(tok.encode(doc)?);
    ids.push(EOS);
    Ok(ids)
}

/// Every document, each wrapped in `<s> … </s>`, concatenated.
pub(crate) fn encode_stream(tok: &Tokenizer, docs: &[String]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for d in docs {
        out.extend(encode_document(tok, d)?);
    }
    Ok(out)
}
