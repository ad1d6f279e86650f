//! The candle model against HF transformers: logits and greedy continuation of the
//! shipped target, from the fixture `tools/parity.sh` wrote with transformers + torch.

mod common;

use common::*;
use serde_json::Value;
use tandem_models::{LanguageModel, LoadOptions, ModelSpec, Positions};

#[test]
fn tiny_target_matches_transformers() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/tiny-target-reference.json"))
        .expect("fixture parses");
    let m = "builtin:tiny-target"
        .parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap();
    assert_eq!(
        fixture["vocab_size"].as_u64().unwrap() as usize,
        m.model.info().vocab_size
    );
    let cases = fixture["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let ids: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        // Same tokenizer, same ids (the fixture's first id is BOS).
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(m.tokenizer.encode(prompt).unwrap(), ids[1..]);
        let ours = m
            .model
            .forward(&mut m.model.new_cache(), &ids, Positions::All)
            .unwrap();
        let from = case["logits_from"].as_u64().unwrap() as usize;
        let reference: Vec<Vec<f32>> = serde_json::from_value(case["logits"].clone()).unwrap();
        assert!(!reference.is_empty());
        let mut worst = 0.0f32;
        for (i, row) in reference.iter().enumerate() {
            worst = worst.max(max_abs_diff(ours.row(from + i), row));
        }
        eprintln!("{prompt:?}: max |Δlogit| = {worst:e}");
        assert!(worst <= 1e-4, "{prompt:?}: max |Δlogit| = {worst}");
        let want: Vec<u32> = serde_json::from_value(case["greedy_ids"].clone()).unwrap();
        assert_eq!(greedy(&m, &ids, want.len()), want, "{prompt:?}");
    }
}

/// Checkpoints that transformers itself wrote (`save_pretrained`: transformers 5 config
/// form, bf16, three shards) with hyper-parameters far from any default.
#[test]
fn transformers_written_checkpoints_load_with_their_own_hyper_parameters() {
    use tandem_models::config::{Arch, RopeScaling};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in ["hf-llama3", "hf-qwen2", "hf-qwen3"] {
        let dir = fixtures.join(name);
        let m = ModelSpec::HfDir(dir.clone())
            .load(&LoadOptions::default())
            .unwrap();
        let c = m.model.config();
        match name {
            "hf-llama3" => {
                assert_eq!(c.arch, Arch::Llama);
                assert_eq!((c.head_dim, c.num_heads, c.num_kv_heads), (24, 4, 2));
                assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-6, 500000.0));
                assert!(
                    matches!(c.rope_scaling, RopeScaling::Llama3 { factor, original_max_position_embeddings: 64, .. } if factor == 8.0)
                );
                assert!(c.qkv_bias && c.o_bias && !c.tie_word_embeddings);
                assert_eq!(c.checkpoint_dtype.as_deref(), Some("bfloat16"));
            }
            "hf-qwen3" => {
                assert_eq!(c.arch, Arch::Qwen3);
                // head_dim 32 with hidden 64 and 4 heads: read, not derived.
                assert_eq!((c.head_dim, c.num_heads, c.num_kv_heads), (32, 4, 2));
                assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-6, 1_000_000.0));
                assert!(!c.qkv_bias && !c.o_bias && !c.tie_word_embeddings);
            }
            _ => {
                assert_eq!(c.arch, Arch::Qwen2);
                assert_eq!(c.rope_theta, 1_000_000.0);
                assert!(c.qkv_bias && !c.o_bias && c.tie_word_embeddings);
            }
        }
        let reference: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let ids: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
        let rows: Vec<Vec<f32>> = serde_json::from_value(reference["logits"].clone()).unwrap();
        let ours = m
            .model
            .forward(&mut m.model.new_cache(), &ids, Positions::All)
            .unwrap();
        let worst = rows
            .iter()
            .enumerate()
            .map(|(i, r)| max_abs_diff(ours.row(i), r))
            .fold(0.0, f32::max);
        eprintln!("{name}: max |Δlogit| = {worst:e}");
        assert!(worst <= 1e-4, "{name}: max |Δlogit| = {worst}");
    }
}
