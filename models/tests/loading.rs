//! Loading checkpoints: both config forms, tied and untied heads, sharded safetensors,
//! GGUF (Q8_0, Q4_K_M), and a precise error for every way a checkpoint can be wrong.

mod common;

use std::collections::HashMap;

use candle_core::Device;
use common::*;
use serde_json::{Value, json};
use tandem_models::load::{GgufQuant, Overwrite, write_gguf};
use tandem_models::{LanguageModel, LoadOptions, ModelError, ModelSpec, load_pair};

const IDS: &[u32] = &[
    0, 348, 351, 260, 352, 13, 336, 349, 260, 577, 506, 357, 400, 15,
];

fn load(dir: &std::path::Path) -> Result<tandem_models::Loaded, ModelError> {
    ModelSpec::HfDir(dir.to_path_buf()).load(&LoadOptions::default())
}

fn builtin(name: &str) -> tandem_models::Loaded {
    name.parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

fn edit_config(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn builtin_pair_loads_tied_and_untied_with_hyper_parameters_from_config() {
    let (draft, target) = load_pair(
        &"builtin:tiny-draft".parse().unwrap(),
        &"builtin:tiny-target".parse().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let (t, d) = (target.model.config(), draft.model.config());
    assert!(!t.tie_word_embeddings && d.tie_word_embeddings);
    assert!(
        t.num_kv_heads < t.num_heads,
        "the target exercises grouped-query attention"
    );
    let info = target.model.info();
    assert_eq!(info.name, "builtin:tiny-target");
    assert_eq!(info.vocab_size, target.tokenizer.vocab_size());
    assert_eq!(info.eos_token_ids, vec![1]);
    assert_eq!(info.bos_token_id, Some(0));
    assert!((800_000..1_300_000).contains(&info.num_parameters));
    assert!((100_000..200_000).contains(&draft.model.info().num_parameters));
}

#[test]
fn hyper_parameters_are_read_not_assumed() {
    // Change rms_norm_eps and rope_theta: the logits must change with them.
    let base = logits(&builtin("builtin:tiny-target"), IDS);
    for (key, value) in [("rope_theta", json!(500.0)), ("rms_norm_eps", json!(0.5))] {
        let dir = copy_dir(&asset("tiny-target"));
        edit_config(dir.path(), |c| {
            c.insert(key.into(), value.clone());
        });
        let m = load(dir.path()).unwrap();
        assert!(
            max_abs_diff(&logits(&m, IDS), &base) > 1e-2,
            "{key} ignored"
        );
    }
}

#[test]
fn transformers5_config_form_loads_the_same_model() {
    let dir = copy_dir(&asset("tiny-target"));
    edit_config(dir.path(), |c| {
        let theta = c.remove("rope_theta").unwrap();
        c.remove("rope_scaling");
        let dtype = c.remove("torch_dtype").unwrap();
        c.insert("dtype".into(), dtype);
        c.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": theta}),
        );
    });
    let v5 = load(dir.path()).unwrap();
    let v4 = builtin("builtin:tiny-target");
    assert_eq!(v5.model.config().rope_theta, v4.model.config().rope_theta);
    assert_eq!(logits(&v5, IDS), logits(&v4, IDS));
}

#[test]
fn sharded_checkpoint_loads_the_same_model() {
    let dir = copy_dir(&asset("tiny-target"));
    let all =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let mut map = serde_json::Map::new();
    let mut shards = [HashMap::new(), HashMap::new()];
    for (i, name) in names.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        shards[i % 2].insert((*name).clone(), all[*name].clone());
        map.insert((*name).clone(), json!(file));
    }
    for (i, shard) in shards.iter().enumerate() {
        let path = dir
            .path()
            .join(format!("model-0000{}-of-00002.safetensors", i + 1));
        candle_core::safetensors::save(shard, path).unwrap();
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = load(dir.path()).unwrap();
    assert_eq!(
        logits(&sharded, IDS),
        logits(&builtin("builtin:tiny-target"), IDS)
    );

    // A shard that lacks a tensor the index promises is named in the error.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
}

#[test]
fn missing_files_are_named() {
    for (file, what) in [
        ("config.json", "config.json"),
        ("tokenizer.json", "tokenizer.json"),
        (
            "model.safetensors",
            "model.safetensors or model.safetensors.index.json",
        ),
    ] {
        let dir = copy_dir(&asset("tiny-draft"));
        std::fs::remove_file(dir.path().join(file)).unwrap();
        match load(dir.path()) {
            Err(ModelError::MissingFile { what: w, path }) => {
                assert_eq!(w, what);
                assert!(path.starts_with(dir.path()));
            }
            other => panic!("removing {file}: {other:?}"),
        }
    }
    let err = load(std::path::Path::new("/nonexistent/model")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");
}

#[test]
fn unknown_architecture_is_refused() {
    let dir = copy_dir(&asset("tiny-draft"));
    edit_config(dir.path(), |c| {
        c.insert("architectures".into(), json!(["GPTNeoXForCausalLM"]));
    });
    match load(dir.path()) {
        Err(ModelError::UnknownArchitecture { found }) => assert_eq!(found, "GPTNeoXForCausalLM"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tensor_of_wrong_shape_is_named_with_both_shapes() {
    let dir = copy_dir(&asset("tiny-draft"));
    // The config says a wider MLP than the weights have.
    let inter = builtin("builtin:tiny-draft")
        .model
        .config()
        .intermediate_size;
    edit_config(dir.path(), |c| {
        c.insert("intermediate_size".into(), json!(inter + 8));
    });
    match load(dir.path()) {
        Err(ModelError::TensorShape {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!(expected[0], inter + 8);
            assert_eq!(found[0], inter);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_dir(&asset("tiny-target"));
    let mut all =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    all.remove("lm_head.weight");
    candle_core::safetensors::save(&all, dir.path().join("model.safetensors")).unwrap();
    match load(dir.path()) {
        Err(ModelError::MissingTensor { name, .. }) => assert_eq!(name, "lm_head.weight"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn draft_with_another_tokenizer_is_refused() {
    let dir = copy_dir(&asset("tiny-draft"));
    // Same vocabulary size, two ids swapped: a different tokenizer.
    let path = dir.path().join("tokenizer.json");
    let mut tok: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    let key_of = |id: u64| {
        vocab
            .iter()
            .find(|(_, v)| v.as_u64() == Some(id))
            .unwrap()
            .0
            .clone()
    };
    let (a, b) = (key_of(300), key_of(301));
    vocab.insert(a, json!(301));
    vocab.insert(b, json!(300));
    std::fs::write(&path, tok.to_string()).unwrap();
    let err = load_pair(
        &ModelSpec::HfDir(dir.path().to_path_buf()),
        &"builtin:tiny-target".parse().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::VocabMismatch { .. }), "{err}");
}

#[test]
fn unknown_builtin_is_refused_with_the_list() {
    let err = "builtin:llama-70b".parse::<ModelSpec>().unwrap_err();
    assert!(err.to_string().contains("builtin:tiny-target"), "{err}");
}

/// The shipped draft as a self-contained Q8_0 GGUF file in a new directory.
fn q8_0_draft() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("draft-q8_0.gguf");
    write_gguf(
        &"builtin:tiny-draft".parse().unwrap(),
        GgufQuant::Q8_0,
        &path,
        Overwrite::Never,
    )
    .unwrap();
    (dir, path)
}

#[test]
fn gguf_q8_0_draft_matches_the_f32_model() {
    let (_dir, path) = q8_0_draft();
    let spec: ModelSpec = path.to_str().unwrap().parse().unwrap();
    let q = spec.load(&LoadOptions::default()).unwrap();
    let f = builtin("builtin:tiny-draft");
    assert_eq!(q.model.info().weights, "q8_0");
    assert_eq!(q.tokenizer.fingerprint(), f.tokenizer.fingerprint());
    // The GGUF model runs interleaved RoPE on permuted q/k rows; a wrong permutation
    // would scramble the logits far beyond Q8_0's rounding.
    let err = relative_error(&logits(&q, IDS), &logits(&f, IDS));
    assert!(err < 0.02, "relative logit error {err}");
    assert_eq!(greedy(&q, IDS, 12), greedy(&f, IDS, 12));
}

#[test]
fn gguf_q4_k_m_loads_with_k_quants() {
    let src = tempfile::tempdir().unwrap();
    random_checkpoint(src.path(), 256, 512, 2, 5);
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("m.gguf");
    write_gguf(
        &ModelSpec::HfDir(src.path().to_path_buf()),
        GgufQuant::Q4KM,
        &path,
        Overwrite::Never,
    )
    .unwrap();
    let q = ModelSpec::Gguf(path).load(&LoadOptions::default()).unwrap();
    assert_eq!(q.model.info().weights, "q4k");
    let f = load(src.path()).unwrap();
    let err = relative_error(&logits(&q, IDS), &logits(&f, IDS));
    assert!(err < 0.15, "relative logit error {err}");
}

#[test]
fn gguf_is_self_contained_and_never_overwritten() {
    let (dir, path) = q8_0_draft();
    // Nothing beside the file: the tokenizer, its special tokens and BOS policy are in it.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let q = ModelSpec::Gguf(path.clone())
        .load(&LoadOptions::default())
        .unwrap();
    let f = builtin("builtin:tiny-draft");
    assert_eq!(q.tokenizer.fingerprint(), f.tokenizer.fingerprint());
    assert_eq!(q.tokenizer.special(), f.tokenizer.special());
    assert_eq!(q.model.info().bos_token_id, f.model.info().bos_token_id);
    assert_eq!(q.model.info().eos_token_ids, f.model.info().eos_token_ids);
    let text = "The cat sat, 12 times: on the mat!";
    assert_eq!(
        q.tokenizer.encode_prompt(text).unwrap(),
        f.tokenizer.encode_prompt(text).unwrap()
    );
    // An existing file is refused without --force and left as it was.
    let before = std::fs::read(&path).unwrap();
    let err = write_gguf(
        &"builtin:tiny-target".parse().unwrap(),
        GgufQuant::Q8_0,
        &path,
        Overwrite::Never,
    )
    .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    write_gguf(
        &"builtin:tiny-target".parse().unwrap(),
        GgufQuant::Q8_0,
        &path,
        Overwrite::Replace,
    )
    .unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn missing_gguf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = ModelSpec::Gguf(dir.path().join("none.gguf"))
        .load(&LoadOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::MissingFile {
                what: "GGUF file",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn half_precision_runs_close_to_f32() {
    let f = builtin("builtin:tiny-target");
    for dtype in [candle_core::DType::BF16, candle_core::DType::F16] {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let h = "builtin:tiny-target"
            .parse::<ModelSpec>()
            .unwrap()
            .load(&opts)
            .unwrap();
        assert_eq!(h.model.dtype(), dtype);
        // bf16 keeps 8 bits of mantissa: logits within a few percent.
        let err = relative_error(&logits(&h, IDS), &logits(&f, IDS));
        assert!(err < 0.05, "{dtype:?}: relative logit error {err}");
    }
}

/// A GPU's precision on a GGUF file: at bf16 or f16 its blocks are dequantized to dense
/// weights of that dtype (what `--device cuda` runs by default), and the model says so.
#[test]
fn gguf_at_half_precision_runs_dequantized() {
    let (_dir, path) = q8_0_draft();
    let spec: ModelSpec = path.to_str().unwrap().parse().unwrap();
    let q = spec.load(&LoadOptions::default()).unwrap();
    for (dtype, name) in [
        (candle_core::DType::BF16, "q8_0 dequantized to bf16"),
        (candle_core::DType::F16, "q8_0 dequantized to f16"),
    ] {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let h = spec.load(&opts).unwrap();
        assert_eq!(
            (h.model.dtype(), h.model.info().weights.as_str()),
            (dtype, name)
        );
        let err = relative_error(&logits(&h, IDS), &logits(&q, IDS));
        assert!(err < 0.05, "{dtype:?}: relative logit error {err}");
    }
}

/// Every family written to GGUF and read back: transformers' own checkpoints (Llama 3
/// with Llama 3.1 rope scaling, stored as llama.cpp's `rope_freqs.weight`, and q/k
/// biases permuted with their rows; Qwen2; Qwen3) give the HF model's logits.
#[test]
fn transformers_checkpoints_round_trip_through_gguf() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in ["hf-llama3", "hf-qwen2", "hf-qwen3"] {
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("m.gguf");
        let spec = ModelSpec::HfDir(fixtures.join(name));
        write_gguf(&spec, GgufQuant::F32, &path, Overwrite::Never).unwrap();
        let g = ModelSpec::Gguf(path).load(&LoadOptions::default()).unwrap();
        let h = spec.load(&LoadOptions::default()).unwrap();
        assert_eq!(g.model.config().arch, h.model.config().arch);
        assert_eq!(g.model.config().head_dim, h.model.config().head_dim);
        let ids = [0, 17, 200, 5, 99, 31, 250, 8];
        let err = relative_error(&logits(&g, &ids), &logits(&h, &ids));
        assert!(err < 1e-5, "{name}: relative logit error {err}");
    }
}

#[test]
fn random_shapes_are_named_and_never_converted() {
    for name in ["random:llama-1b", "random:llama-8b"] {
        let spec: ModelSpec = name.parse().unwrap();
        assert_eq!(spec.to_string(), name);
    }
    let e = "random:llama-2b"
        .parse::<ModelSpec>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("random:llama-1b, random:llama-8b"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = write_gguf(
        &"random:llama-1b".parse().unwrap(),
        GgufQuant::Q8_0,
        &dir.path().join("r.gguf"),
        Overwrite::Never,
    )
    .unwrap_err();
    assert!(e.to_string().contains("random weights"), "{e}");
    assert!(!dir.path().join("r.gguf").exists());
}
