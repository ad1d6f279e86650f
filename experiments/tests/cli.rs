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

fn generate_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "generate",
        "--target",
        "builtin:tiny-target",
        "--prompt",
        "Count by 3 from 12: 12 15",
        "--max-new-tokens",
        "24",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = tandem(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn generate_speculative_and_cloud_only_agree_token_for_token() {
    let spec = generate_json(&[
        "--draft",
        "builtin:tiny-draft",
        "--strategy",
        "speculative",
        "--k",
        "3",
    ]);
    let cloud = generate_json(&["--strategy", "cloud_only", "--transport", "quic"]);
    assert_eq!(spec["output_ids"], cloud["output_ids"]);
    assert_eq!(spec["text"], cloud["text"]);
    assert!(
        spec["text"].as_str().unwrap().contains("18 21"),
        "{}",
        spec["text"]
    );
    assert_eq!(spec["prompt_ids"][0], 0, "BOS first");
    let tokens = spec["output_ids"].as_array().unwrap().len();
    assert_eq!(spec["summary"]["tokens"], tokens);
    let rounds = spec["rounds"].as_array().unwrap();
    let drafted: u64 = rounds.iter().map(|r| r["drafted"].as_u64().unwrap()).sum();
    let accepted: u64 = rounds.iter().map(|r| r["accepted"].as_u64().unwrap()).sum();
    assert!(drafted > 0 && accepted <= drafted);
    assert_eq!(spec["summary"]["drafted"], drafted);
    assert!(
        rounds
            .iter()
            .all(|r| r["wait_ns"].is_u64() && r["forward_ns"].is_u64())
    );
}

#[test]
fn generate_says_what_a_strategy_is_missing() {
    let out = tandem(&[
        "generate",
        "--target",
        "builtin:tiny-target",
        "--prompt",
        "hi",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --draft"), "{err}");
    let out = tandem(&[
        "generate",
        "--target",
        "builtin:tiny-target",
        "--prompt",
        "hi",
        "--strategy",
        "eagle",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown strategy 'eagle'"), "{err}");
    let out = tandem(&[
        "generate",
        "--target",
        "builtin:tiny-target",
        "--prompt",
        "hi",
        "--link",
        "mars",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown link profile 'mars'"), "{err}");
}

#[test]
fn run_names_the_bad_key_and_line_and_dry_run_lists_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/quickstart.toml");
    let text = std::fs::read_to_string(quickstart)
        .unwrap()
        .replace("requests = 16", "requests = 16\nrequest = 9");
    std::fs::write(&bad, &text).unwrap();
    let out = tandem(&["run", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text[..text.find("request = 9").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert!(err.contains(&format!("bad.toml:{line}")), "{err}");
    assert!(err.contains("request"), "{err}");

    let out = tandem(&["run", "--dry-run", quickstart]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("10 cells × 16 requests"), "{text}");
}

#[test]
fn report_redraws_a_results_folder_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(
        &config,
        r#"
name = "tiny"
[models]
draft = "builtin:tiny-draft"
target = "builtin:tiny-target"
[workload]
prompts = "builtin:copying"
requests = 2
max_new_tokens = 6
[[network]]
name = "lan"
[[network]]
name = "wifi"
[[strategy]]
kind = "cloud_only"
[[strategy]]
kind = "speculative"
k = 3
"#,
    )
    .unwrap();
    let out_root = dir.path().join("results");
    let out = tandem(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        out_root.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let run_dir = std::path::PathBuf::from(stdout.lines().last().unwrap());
    assert!(run_dir.starts_with(out_root.join("tiny")), "{stdout}");
    // Two networks: the RTT figure is drawn too.
    assert!(run_dir.join("plots/latency_vs_rtt.svg").is_file());

    std::fs::remove_dir_all(run_dir.join("plots")).unwrap();
    std::fs::remove_file(run_dir.join("report.md")).unwrap();
    let out = tandem(&["report", run_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run_dir.join("plots/tpot.png").is_file());
    assert!(run_dir.join("report.md").is_file());

    std::fs::remove_file(run_dir.join("rounds.parquet")).unwrap();
    let out = tandem(&["report", run_dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rounds.parquet"), "{err}");
}
