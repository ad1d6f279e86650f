//! Helpers shared by the models crate's integration tests.
#![allow(dead_code)]

pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tandem_models::{LanguageModel, Loaded, Positions, SessionCache};

/// The source directory of a shipped model.
pub fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// Copies every file of `from` into a new temporary directory.
pub fn copy_dir(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Logits of every position of `ids` from a fresh session.
pub fn logits(m: &Loaded, ids: &[u32]) -> Vec<f32> {
    let model = &m.model;
    model
        .forward(&mut model.new_cache(), ids, Positions::All)
        .unwrap()
        .as_slice()
        .to_vec()
}

/// Plain greedy decoding, one token at a time, stopping after an EOS.
pub fn greedy(m: &Loaded, prompt: &[u32], max_new: usize) -> Vec<u32> {
    let model = &m.model;
    let mut cache = model.new_cache();
    let mut last = model.prefill(&mut cache, prompt).unwrap();
    let mut out: Vec<u32> = Vec::new();
    loop {
        let next = tandem_decoding::sampling::argmax(last.last());
        out.push(next);
        if out.len() == max_new || model.info().eos_token_ids.contains(&next) {
            break;
        }
        last = model.forward(&mut cache, &[next], Positions::Last).unwrap();
    }
    // Every committed token but the last went through the model once.
    assert_eq!(cache.len(), prompt.len() + out.len() - 1);
    out
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// ‖a − b‖ / ‖b‖.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Writes a random Llama checkpoint (HF layout, transformers 4 config) using the tiny
/// pair's tokenizer, for shapes the shipped models do not cover.
pub fn random_checkpoint(dir: &Path, hidden: usize, inter: usize, layers: usize, seed: u64) {
    let tok = asset("tiny-target").join("tokenizer.json");
    std::fs::copy(&tok, dir.join("tokenizer.json")).unwrap();
    let vocab = tandem_models::Tokenizer::from_file(&tok)
        .unwrap()
        .vocab_size();
    let (heads, kv) = (4, 2);
    let hd = hidden / heads;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "tie_word_embeddings": false,
        "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut rng = tandem_decoding::SessionRng::new(seed);
    let mut rand = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| scale * (rng.uniform() as f32 * 2.0 - 1.0))
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    };
    let mut t = HashMap::new();
    t.insert(
        "model.embed_tokens.weight".to_string(),
        rand(&[vocab, hidden], 1.0),
    );
    t.insert("lm_head.weight".to_string(), rand(&[vocab, hidden], 0.1));
    t.insert(
        "model.norm.weight".to_string(),
        (rand(&[hidden], 0.1) + 1.0).unwrap(),
    );
    let s = 1.0 / (hidden as f32).sqrt();
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape, scale) in [
            ("input_layernorm.weight", vec![hidden], 0.0),
            ("post_attention_layernorm.weight", vec![hidden], 0.0),
            ("self_attn.q_proj.weight", vec![heads * hd, hidden], s),
            ("self_attn.k_proj.weight", vec![kv * hd, hidden], s),
            ("self_attn.v_proj.weight", vec![kv * hd, hidden], s),
            ("self_attn.o_proj.weight", vec![hidden, heads * hd], s),
            ("mlp.gate_proj.weight", vec![inter, hidden], s),
            ("mlp.up_proj.weight", vec![inter, hidden], s),
            (
                "mlp.down_proj.weight",
                vec![hidden, inter],
                1.0 / (inter as f32).sqrt(),
            ),
        ] {
            let tensor = if scale == 0.0 {
                (rand(&shape, 0.1) + 1.0).unwrap()
            } else {
                rand(&shape, scale * 1.7)
            };
            t.insert(format!("{p}.{name}"), tensor);
        }
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
}
