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
