//! Fallback from the edge to the cloud: when the draft model cannot go on (its context
//! is full, its device shut down, its KV cache past the device's memory), the request goes on as cloud-only from everything
//! committed, without losing or repeating a token: the output is still the target's
//! greedy output, every token verified. Without a verifier to take over, the request
//! fails saying why.

mod common;

use std::time::Duration;

use common::*;
use tandem_draft::{DevicePace, DraftError, DraftStop, Edge, RoundKind, Strategy};
use tandem_models::{LanguageModel, LoadOptions, ModelSpec};
use tandem_protocol::client::Transport;

const NEW: usize = 64;

/// The shipped draft with its context cut to `context` tokens (an edge model with a
/// shorter context than the target's).
fn short_context_draft(context: usize) -> (tempfile::TempDir, tandem_models::Loaded) {
    let dir = tempfile::tempdir().unwrap();
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/assets/tiny-draft");
    for entry in std::fs::read_dir(assets).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let patched = text.replace(
        "\"max_position_embeddings\": 1024",
        &format!("\"max_position_embeddings\": {context}"),
    );
    assert_ne!(text, patched, "the tiny draft's config names its context");
    std::fs::write(&config, patched).unwrap();
    let spec: ModelSpec = dir.path().to_str().unwrap().parse().unwrap();
    let loaded = spec.load(&LoadOptions::default()).unwrap();
    (dir, loaded)
}

fn speculative(prompt: Vec<u32>) -> tandem_draft::GenerateConfig {
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt, NEW);
    cfg.ignore_eos = true;
    cfg
}

/// Generates `cfg` with `draft` on `device` against `target`.
async fn generate(
    draft: &tandem_models::Llama,
    target: Option<tandem_draft::VerifierTarget>,
    device: Option<DevicePace>,
    cfg: &tandem_draft::GenerateConfig,
) -> Result<tandem_draft::Report, DraftError> {
    let edge = Edge {
        draft: Some(draft),
        verifier: target,
        device,
    };
    tandem_draft::generate(&edge, cfg, &mut |_, _| {}).await
}

/// The rounds after the switch are the cloud's, and every token is the target's.
fn assert_taken_over(report: &tandem_draft::Report, prompt: &[u32], why: DraftStop) {
    let s = &report.summary;
    assert_eq!((s.to_cloud, s.draft_stop), (1, Some(why)));
    assert!(s.to_cloud_at_ms > 0.0);
    assert_eq!(report.output_ids, greedy_reference(prompt, NEW, true));
    assert!(report.unverified.is_empty(), "every token verified");
    let first_cloud = report
        .rounds
        .iter()
        .position(|r| r.kind == RoundKind::Cloud)
        .expect("cloud rounds after the switch");
    assert!(first_cloud > 0, "the draft ran first");
    assert!(
        report.rounds[first_cloud..]
            .iter()
            .all(|r| r.kind == RoundKind::Cloud)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_draft_context_hands_the_request_to_the_cloud() {
    let v = start_verifier(VerifierOptions::default()).await;
    let prompt = prompt_ids(PROMPTS[0]);
    // Room for the prompt and a few blocks, not for 64 new tokens.
    let (_dir, draft) = short_context_draft(prompt.len() + 20);
    for transport in [Transport::Grpc, Transport::Quic] {
        let target = Some(v.target(transport, None));
        let report = generate(&draft.model, target, None, &speculative(prompt.clone()))
            .await
            .unwrap();
        assert_taken_over(&report, &prompt, DraftStop::ContextFull);
    }
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thermal_shutdown_hands_the_request_to_the_cloud() {
    let v = start_verifier(VerifierOptions::default()).await;
    let prompt = prompt_ids(PROMPTS[2]);
    for strategy in [Strategy::Speculative { k: 4 }, Strategy::Pipelined { k: 3 }] {
        // A slow device that shuts down after a few blocks' drafting.
        let pace = DevicePace::new(50.0).with_shutdown(Duration::from_millis(20));
        let mut cfg = speculative(prompt.clone());
        cfg.strategy = strategy;
        let target = Some(v.target(Transport::Quic, None));
        let report = generate(&draft().model, target, Some(pace.clone()), &cfg)
            .await
            .unwrap();
        assert!(pace.is_shut_down());
        assert_taken_over(&report, &prompt, DraftStop::ThermalShutdown);
    }
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_out_of_device_memory_hands_the_request_to_the_cloud() {
    let v = start_verifier(VerifierOptions::default()).await;
    let prompt = prompt_ids(PROMPTS[1]);
    // Memory for the prompt's cache and 16 more tokens.
    let per_token = draft().model.info().kv_bytes_per_token as u64;
    let pace = DevicePace::new(1.0).with_kv_budget(per_token * (prompt.len() as u64 + 16));
    let target = Some(v.target(Transport::Grpc, None));
    let report = generate(
        &draft().model,
        target,
        Some(pace),
        &speculative(prompt.clone()),
    )
    .await
    .unwrap();
    assert_taken_over(&report, &prompt, DraftStop::OutOfMemory);
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_verifier_a_stopped_draft_fails_the_request_saying_why() {
    let pace = DevicePace::new(1.0).with_shutdown(Duration::ZERO);
    let mut cfg = speculative(prompt_ids(PROMPTS[0]));
    cfg.strategy = Strategy::EdgeOnly;
    let err = generate(&draft().model, None, Some(pace), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DraftError::DraftStopped(DraftStop::ThermalShutdown)),
        "{err}"
    );
    assert!(err.to_string().contains("thermal shutdown"), "{err}");
}
