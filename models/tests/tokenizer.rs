//! The tokenizer wrapper: fingerprints and streaming detokenisation.

mod common;

use common::asset;
use tandem_models::Tokenizer;

fn tiny() -> Tokenizer {
    Tokenizer::from_file(&asset("tiny-target").join("tokenizer.json")).unwrap()
}

#[test]
fn fingerprint_ignores_formatting_and_sees_vocabulary() {
    let a = tiny();
    let pretty = serde_json::to_vec_pretty(
        &serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(asset("tiny-target").join("tokenizer.json")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let b = Tokenizer::from_bytes(&pretty).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(
        a.fingerprint(),
        Tokenizer::from_file(&asset("tiny-draft").join("tokenizer.json"))
            .unwrap()
            .fingerprint()
    );
    assert!(a.fingerprint().starts_with("tok1-") && a.fingerprint().len() == 21);
}

#[test]
fn streaming_never_splits_a_character() {
    let tok = tiny();
    // Byte-level BPE: characters outside the corpus become single-byte tokens, so these
    // multi-byte characters arrive in pieces.
    let text = "Mia found a café ☕ and a 🦊 named Zoë. Ünïcödé ends here.";
    let ids = tok.encode(text).unwrap();
    assert!(ids.len() > text.chars().count() / 2);
    let mut stream = tok.stream();
    let mut out = String::new();
    let mut pieces = 0;
    for &id in &ids {
        let piece = stream.push(id).unwrap();
        assert!(
            !piece.contains('\u{FFFD}'),
            "split character emitted at {id}: {piece:?}"
        );
        if !piece.is_empty() {
            pieces += 1;
        }
        out.push_str(&piece);
    }
    out.push_str(&stream.finish().unwrap());
    assert_eq!(out, text);
    assert_eq!(out, tok.decode(&ids).unwrap());
    // Held back while incomplete: fewer non-empty pieces than tokens.
    assert!(pieces < ids.len());
}

#[test]
fn finish_returns_an_incomplete_tail() {
    let tok = tiny();
    let ids = tok.encode("ok 🦊").unwrap();
    let mut stream = tok.stream();
    let mut out = String::new();
    for &id in &ids[..ids.len() - 1] {
        out.push_str(&stream.push(id).unwrap());
    }
    assert_eq!(out, "ok ");
    let tail = stream.finish().unwrap();
    assert!(tail.contains('\u{FFFD}'), "{tail:?}");
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model = llama`: scores, byte fallback,
/// space prefix) read from a GGUF file tokenizes as llama.cpp does. The vocabulary-only
/// file and llama.cpp's ids are written by `tools/spm_vocab_reference.py`.
#[test]
fn sentencepiece_gguf_vocab_tokenizes_as_llama_cpp() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm-vocab");
    let tok = tandem_models::load::gguf_tokenizer(&dir.join("spm-vocab.gguf")).unwrap();
    let f: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("llamacpp-reference.json")).unwrap())
            .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    for case in f["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
    }
    // add_bos_token = true: a prompt starts with <s>.
    assert_eq!(
        tok.encode_prompt("Hello world").unwrap(),
        ids(&f["with_bos"])
    );
    // Byte fallback round-trips text outside the vocabulary.
    let text = "Ünïcödé café 日本 🙂";
    assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
}
