//! The trainer is deterministic in its seed and writes a loadable HF directory.

use tandem_models::train::{TrainReport, TrainSpec, train_tiny};
use tandem_models::{LanguageModel, LoadOptions, ModelSpec};

const FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

fn run(seed: u64) -> (tempfile::TempDir, TrainReport) {
    let dir = tempfile::tempdir().unwrap();
    let report = train_tiny(&TrainSpec::smoke(seed), dir.path(), &mut |_| {}).unwrap();
    (dir, report)
}

#[test]
fn same_seed_same_bytes_other_seed_other_model() {
    let (a, ra) = run(11);
    let (b, rb) = run(11);
    let (c, _) = run(12);
    for model in ["tiny-target", "tiny-draft"] {
        for file in FILES {
            let x = std::fs::read(a.path().join(model).join(file)).unwrap();
            let y = std::fs::read(b.path().join(model).join(file)).unwrap();
            assert!(
                x == y,
                "{model}/{file} differs between two runs with one seed"
            );
        }
        let x = std::fs::read(a.path().join(model).join("model.safetensors")).unwrap();
        let z = std::fs::read(c.path().join(model).join("model.safetensors")).unwrap();
        assert_ne!(x, z, "{model}: another seed gave the same weights");
    }
    let without_time = |r: &TrainReport| TrainReport {
        seconds: [0.0; 3],
        ..r.clone()
    };
    assert_eq!(without_time(&ra), without_time(&rb));
    // The written directories load as a draft/target pair.
    let (d, t) = tandem_models::load_pair(
        &ModelSpec::HfDir(a.path().join("tiny-draft")),
        &ModelSpec::HfDir(a.path().join("tiny-target")),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(d.model.info().vocab_size, t.tokenizer.vocab_size());
    assert!(ra.target_parameters > ra.draft_parameters);
}
