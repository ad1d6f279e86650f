//! The `verifier-node` binary as a user starts it: it loads the model, makes its
//! certificate, prints where it listens, serves both transports, and stops on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tandem_decoding::SamplingParams;
use tandem_draft::{Edge, GenerateConfig, Strategy, VerifierTarget};
use tandem_protocol::client::{ConnectOptions, Endpoint};

#[test]
fn serve_prints_its_addresses_serves_both_transports_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verifier-node"))
        .args([
            "serve",
            "--model",
            "builtin:tiny-target",
            "--grpc",
            "127.0.0.1:0",
        ])
        .args(["--quic", "127.0.0.1:0", "--ca-dir"])
        .arg(&certs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut cert = None;
    while endpoints.len() < 2 || cert.is_none() {
        let line = lines
            .next()
            .expect("the verifier printed too little")
            .unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            endpoints.push(url.parse().unwrap());
        } else if line.starts_with("QUIC certificate: ") {
            cert = Some(certs.join("cert.pem"));
        }
    }
    assert!(certs.join("cert.pem").exists() && certs.join("key.pem").exists());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let draft = "builtin:tiny-draft"
        .parse::<tandem_models::ModelSpec>()
        .unwrap()
        .load(&Default::default())
        .unwrap();
    let prompt = vec![0, 481, 479, 361, 480, 677, 27, 677, 673];
    let mut outputs = Vec::new();
    for endpoint in endpoints {
        for strategy in [Strategy::Speculative { k: 3 }, Strategy::CloudOnly] {
            let edge = Edge {
                device: None,
                draft: Some(&draft.model),
                verifier: Some(VerifierTarget {
                    replicas: Vec::new(),
                    endpoint: endpoint.clone(),
                    options: ConnectOptions {
                        ca: cert.clone(),
                        ..Default::default()
                    },
                }),
            };
            let cfg = GenerateConfig {
                strategy,
                prompt: prompt.clone(),
                max_new_tokens: 20,
                sampling: SamplingParams::greedy(),
                seed: 0,
                ignore_eos: true,
                deadline: std::time::Duration::from_secs(20),
                fallback: false,
                retry: std::time::Duration::from_secs(1),
            };
            let report = rt
                .block_on(tandem_draft::generate(&edge, &cfg, &mut |_, _| {}))
                .unwrap();
            outputs.push(report.output_ids);
        }
    }
    assert_eq!(outputs.len(), 4);
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{outputs:?}");

    // Ctrl-C: the process exits cleanly.
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_a_bad_address_a_bad_size_and_a_missing_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_verifier-node"))
        .args([
            "serve",
            "--model",
            "builtin:tiny-target",
            "--grpc",
            "localhost",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--grpc localhost"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_verifier-node"))
        .args(["serve", "--model", "/nonexistent/model"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_verifier-node"))
        .args([
            "serve",
            "--model",
            "builtin:tiny-target",
            "--kv-budget",
            "3 parsecs",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--kv-budget") && err.contains("unknown size unit"),
        "{err}"
    );
}

/// `bench` prints its table, a row a session count (each client checks that what the
/// verifier commits is the target's own greedy output); a device this build lacks and
/// an empty session list are refused, saying why.
#[test]
fn bench_prints_a_row_per_session_count_and_refuses_what_it_cannot_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_verifier-node"))
        .args(["bench", "--model", "builtin:tiny-target"])
        .args([
            "--sessions",
            "1,3",
            "--new-tokens",
            "12",
            "--bandwidth-gbs",
            "10",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("builtin:tiny-target on cpu f32 (f32,"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| sessions"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (row, sessions) in rows.iter().zip(["1", "3"]) {
        assert_eq!(row[1], sessions, "{text}");
        // Dense f32 weights and a bandwidth: the memory-bound column is filled.
        assert!(row[11].ends_with(" ms"), "{text}");
    }
    for (args, why) in [
        (&["--device", "cuda"][..], "--features cuda"),
        (&["--sessions", "0"][..], "--sessions"),
        (&["--dtype", "f64"][..], "unknown dtype"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_verifier-node"))
            .args(["bench", "--model", "builtin:tiny-target"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}
