//! The `tandem` binary, run as a user runs it.

use std::process::Command;

fn tandem(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .expect("run tandem")
}

#[test]
fn predict_with_the_paper_defaults_finds_cloud_only_faster() {
    // arXiv 2505.21594's round (288 ms drafting + 620 ms verification + 120 ms network)
    // is far slower than a cloud decoding step: no k can win.
    let out = tandem(&["predict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cloud-only wins here"), "{text}");
    assert!(
        text.contains("never"),
        "no k should have a break-even RTT: {text}"
    );
}

#[test]
fn predict_on_a_fast_link_finds_speculation_faster() {
    let out = tandem(&[
        "predict",
        "--alpha",
        "0.85",
        "--draft-ms",
        "4",
        "--target-ms",
        "40",
        "--verify-ms",
        "42",
        "--rtt-ms",
        "10",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("faster per token than cloud-only"), "{text}");
}

#[test]
fn bad_input_exits_non_zero_and_names_the_flag() {
    let out = tandem(&["predict", "--alpha", "1.5"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--alpha must be in [0, 1], got 1.5"), "{err}");

    let out = tandem(&["predict", "--k", "two"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("--k"));
}

#[test]
fn quantize_writes_a_gguf_draft_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("draft.gguf");
    let out = tandem(&["quantize", "builtin:tiny-draft", out_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some(out_path.to_str().unwrap())
    );
    let spec: tandem_models::ModelSpec = out_path.to_str().unwrap().parse().unwrap();
    let loaded = spec.load(&Default::default()).unwrap();
    assert_eq!(loaded.model.config().num_layers, 2);
    assert!(!dir.path().join("draft.gguf.partial").exists());
}

#[test]
fn quantize_refuses_an_unknown_scheme_and_a_missing_model() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.gguf");
    let out = tandem(&[
        "quantize",
        "builtin:tiny-draft",
        out_path.to_str().unwrap(),
        "--quant",
        "q3",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("q8_0, q4_k_m"));
    let out = tandem(&["quantize", "/no/such/model", out_path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/model"));
    assert!(!out_path.exists());
}

#[test]
fn train_tiny_smoke_writes_a_loadable_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = tandem(&[
        "train-tiny",
        "--smoke",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("greedy agreement"), "{stdout}");
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some(dir.path().to_str().unwrap())
    );
    tandem_models::load_pair(
        &tandem_models::ModelSpec::HfDir(dir.path().join("tiny-draft")),
        &tandem_models::ModelSpec::HfDir(dir.path().join("tiny-target")),
        &Default::default(),
    )
    .unwrap();
}
