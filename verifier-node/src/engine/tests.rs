//! The engine's admission rules against the real tiny target, held mid-pass by a gate
//! so that what is queued is decided by the test, not by timing.

use std::sync::Arc;

use tandem_decoding::SamplingParams;
use tandem_models::{LanguageModel, Llama, LoadOptions, ModelSpec};
use tandem_protocol::limits::OpenRequest;

use super::{EngineConfig, EngineHandle, KvBudget};
use crate::testing::{Gate, Gated};

fn tiny() -> Llama {
    "builtin:tiny-target"
        .parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
        .model
}

fn request(prompt_len: usize, max_new: u32) -> OpenRequest {
    OpenRequest {
        prompt: (2..2 + prompt_len as u32).collect(),
        sampling: SamplingParams::greedy(),
        seed: 0,
        stochastic: false,
        max_new_tokens: max_new,
        generate: false,
        ignore_eos: false,
    }
}

fn gated(config: EngineConfig) -> (EngineHandle, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let model = Gated {
        inner: tiny(),
        gate: gate.clone(),
    };
    (EngineHandle::start(model, config), gate)
}

async fn until(what: impl Fn() -> bool) {
    while !what() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_loses_nothing_queued() {
    let config = EngineConfig {
        max_queued: 3,
        ..EngineConfig::new("gated")
    };
    let (engine, gate) = gated(config);
    // A is in a pass (held at the gate); B and C wait behind it.
    let a = tokio::spawn({
        let e = engine.clone();
        async move { e.open(request(4, 8), None).await }
    });
    until(|| gate.entered() == 1).await;
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let e = engine.clone();
            tokio::spawn(async move { e.open(request(4, 8), None).await })
        })
        .collect();
    until(|| engine.queued() == 3).await;
    let refused = engine.open(request(4, 8), None).await.unwrap_err();
    assert_eq!(refused.code, tonic::Code::ResourceExhausted, "{refused}");
    assert!(refused.message.contains("queue is full"), "{refused}");
    assert_eq!(engine.metrics().queued_requests.get(), 3);

    gate.open();
    let mut ids = vec![a.await.unwrap().unwrap().session_id];
    for w in waiting {
        ids.push(w.await.unwrap().unwrap().session_id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every queued open was answered once");
    assert_eq!(engine.queued(), 0);
    assert!(engine.open(request(4, 8), None).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_budgets_refuse_what_does_not_fit_and_free_on_close() {
    let per_token = tiny().info().kv_bytes_per_token as u64;
    // A session asking for 10 prompt + 20 new tokens reserves 30 + one block (a chain
    // or a tree's nodes) and the target's token.
    let session_tokens = 30 + EngineConfig::new("").limits.block_room() as u64;
    let config = EngineConfig {
        kv: KvBudget {
            total_bytes: 2 * session_tokens * per_token,
            session_bytes: session_tokens * per_token,
        },
        ..EngineConfig::new("budgeted")
    };
    let (engine, gate) = gated(config);
    gate.open();

    let too_long = engine.open(request(11, 20), None).await.unwrap_err();
    assert_eq!(too_long.code, tonic::Code::ResourceExhausted);
    assert!(
        too_long.message.contains("per-session budget"),
        "{too_long}"
    );

    let first = engine.open(request(10, 20), None).await.unwrap();
    let _second = engine.open(request(10, 20), None).await.unwrap();
    let full = engine.open(request(10, 20), None).await.unwrap_err();
    assert_eq!(full.code, tonic::Code::ResourceExhausted);
    assert!(full.message.contains("budget"), "{full}");
    let reserved = 2 * session_tokens * per_token;
    until(|| engine.metrics().kv_reserved_bytes.get() as u64 == reserved).await;
    assert!(engine.metrics().kv_cache_bytes.get() as u64 <= reserved);

    // Closing one frees its reservation for the next.
    engine.close(first.session_id);
    until(|| engine.metrics().kv_reserved_bytes.get() as u64 == session_tokens * per_token).await;
    assert!(engine.open(request(10, 20), None).await.is_ok());
}
