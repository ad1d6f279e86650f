//! The `draft-node` binary as a user runs it, against a verifier served in this test.

use std::process::{Command, Output};

use tandem_models::{LoadOptions, ModelSpec};
use tandem_protocol::Limits;
use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig, Running};

const PROMPT: &str = "Once upon a time, there was a kind owl named";

fn draft_node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_draft-node"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The tiny target served on loopback over gRPC and QUIC under `limits` (the runtime
/// and the certificate folder live as long as the server).
fn serve(limits: Limits) -> (tokio::runtime::Runtime, tempfile::TempDir, Running) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let target = "builtin:tiny-target".parse::<ModelSpec>().unwrap();
    let model = target.load(&LoadOptions::default()).unwrap().model;
    let config = EngineConfig {
        limits,
        ..EngineConfig::new(target.to_string())
    };
    let running = rt
        .block_on(tandem_verifier::serve(
            EngineHandle::start(model, config),
            ListenConfig::loopback(certs.path()),
        ))
        .unwrap();
    (rt, certs, running)
}

#[test]
fn generate_streams_text_or_prints_json_over_both_transports() {
    let (rt, _certs, running) = serve(Limits::default());
    let grpc = format!("grpc://{}", running.grpc_addr.unwrap());
    let quic = format!("quic://{}", running.quic_addr.unwrap());
    let ca = running.cert_path.clone().unwrap();
    let ca = ca.to_str().unwrap();
    let common = [
        "generate",
        "--draft",
        "builtin:tiny-draft",
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        "30",
        "--ca",
        ca,
    ];
    let run = |extra: &[&str]| {
        let mut args = common.to_vec();
        args.extend_from_slice(extra);
        let out = draft_node(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["--verifier", &quic, "--json"]).stdout).unwrap();
    let text = json["text"].as_str().unwrap();
    assert!(!text.is_empty());
    // Streaming prints the same text (then a newline), and the summary on stderr.
    let streamed = run(&["--verifier", &grpc, "--strategy", "pipelined"]);
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout),
        format!("{text}\n")
    );
    let summary = stderr(&streamed);
    assert!(summary.contains("[pipelined(k=4)] 30 tokens"), "{summary}");
    assert!(summary.contains("acceptance"), "{summary}");
    // Token trees: the same greedy text, a tree a round.
    for shape in ["3,2,1", "dynamic:8", "auto"] {
        let trees = run(&["--verifier", &grpc, "--strategy", "tree", "--tree", shape]);
        assert_eq!(
            String::from_utf8_lossy(&trees.stdout),
            format!("{text}\n"),
            "{shape}"
        );
        assert!(stderr(&trees).contains("[tree("), "{}", stderr(&trees));
    }
    // Edge-only needs no verifier; its tokens are all unverified.
    let alone: serde_json::Value =
        serde_json::from_slice(&run(&["--strategy", "edge_only", "--json"]).stdout).unwrap();
    assert_eq!(
        alone["unverified"].as_array().unwrap().len(),
        alone["output_ids"].as_array().unwrap().len()
    );
    // Routed on the edge: a private prompt stays here (no byte sent, nothing verified);
    // a public one takes the default tier, speculative(k=4), through the verifier.
    let private: serde_json::Value = serde_json::from_slice(
        &run(&[
            "--verifier",
            &quic,
            "--strategy",
            "routed",
            "--tag",
            "private",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(private["strategy"], "edge_only", "{private}");
    assert_eq!(private["summary"]["bytes_up"], 0, "{private}");
    let public = run(&["--verifier", &quic, "--strategy", "routed"]);
    let summary = stderr(&public);
    assert!(
        summary.contains("routed to speculative(k=4) (default)"),
        "{summary}"
    );
    assert!(
        summary.contains("[speculative(k=4)] 30 tokens"),
        "{summary}"
    );
    // Rules from a file, checked: a long-prompt limit sends this prompt to the cloud.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("route.toml");
    std::fs::write(&rules, "long_prompt_tokens = 4\nlong = \"cloud_only\"\n").unwrap();
    let routed = [
        "--verifier",
        &grpc,
        "--strategy",
        "routed",
        "--route",
        rules.to_str().unwrap(),
    ];
    let long = run(&routed);
    assert!(
        stderr(&long).contains("routed to cloud_only (long prompt)"),
        "{}",
        stderr(&long)
    );
    std::fs::write(&rules, "default = \"speculative:99\"\n").unwrap();
    let bad = draft_node(&[&common[..], &routed[..]].concat());
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("--route: default: k in tier"),
        "{}",
        stderr(&bad)
    );
    rt.block_on(running.stop());
}

#[test]
fn generate_explains_what_is_missing_or_wrong() {
    let cases: [(&[&str], &str); 8] = [
        (
            &[
                "generate",
                "--draft",
                "builtin:tiny-draft",
                "--verifier",
                "grpc://127.0.0.1:1",
                "--prompt",
                "x",
                "--tree",
                "3,2",
            ],
            "--tree is for --strategy tree",
        ),
        (
            &[
                "generate",
                "--strategy",
                "tree",
                "--tree",
                "eagle",
                "--prompt",
                "x",
            ],
            "unknown tree 'eagle'",
        ),
        (
            &[
                "generate",
                "--strategy",
                "edge_only",
                "--draft",
                "builtin:tiny-draft",
                "--chat",
                "--prompt",
                "x",
            ],
            "no chat template",
        ),
        (
            &[
                "generate",
                "--strategy",
                "edge_only",
                "--draft",
                "builtin:tiny-draft",
                "--draft-layers",
                "0-5",
                "--prompt",
                "x",
            ],
            "layer 2 does not exist",
        ),
        (
            &["generate", "--draft", "builtin:tiny-draft", "--prompt", "x"],
            "needs --verifier",
        ),
        (
            &["generate", "--verifier", "http://x:1", "--prompt", "x"],
            "bad verifier address",
        ),
        (
            &[
                "generate",
                "--verifier",
                "grpc://127.0.0.1:1",
                "--prompt",
                "x",
                "--strategy",
                "speculative",
            ],
            "needs --draft",
        ),
        (
            &[
                "generate",
                "--verifier",
                "grpc://127.0.0.1:1",
                "--draft",
                "builtin:tiny-draft",
                "--prompt",
                "x",
                "--no-fallback",
                "--deadline-ms",
                "2000",
            ],
            "connection to grpc://127.0.0.1:1 failed",
        ),
    ];
    for (args, needle) in cases {
        let out = draft_node(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

/// A draft node that exits closes its QUIC connection first: a verifier that serves one
/// session at a time takes the next run at once. Before, over an emulated link (whose
/// delay holds the last `Close` back), the process exited with it unsent, the session
/// held the only slot until the connection's idle timeout, and the next run was refused.
#[test]
fn a_finished_run_frees_its_session_at_once() {
    let (rt, _certs, running) = serve(Limits {
        max_sessions: 1,
        ..Limits::default()
    });
    let quic = format!("quic://{}", running.quic_addr.unwrap());
    let ca = running.cert_path.clone().unwrap();
    for run in 0..3 {
        let out = draft_node(&[
            "generate",
            "--draft",
            "builtin:tiny-draft",
            "--prompt",
            PROMPT,
            "--max-new-tokens",
            "8",
            "--verifier",
            &quic,
            "--ca",
            ca.to_str().unwrap(),
            "--link",
            "lan",
            "--no-fallback",
            "--json",
        ]);
        assert!(out.status.success(), "run {run}: {}", stderr(&out));
    }
    rt.block_on(running.stop());
}
