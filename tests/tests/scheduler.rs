//! The scheduler's choices never change a token: with a tiny token budget and prompts
//! prefilled 7 tokens at a time between other sessions' blocks, every session's output
//! is still exactly the target's greedy output; and with batching off the same holds.

mod common;

use std::time::Duration;

use common::*;
use tandem_draft::Strategy;
use tandem_protocol::client::Transport;
use tandem_verifier::BatchPolicy;

/// Runs 12 sessions (some cloud-only if `cloud`); returns the largest pass seen, in
/// sessions and in tokens.
async fn all_exact(batch: BatchPolicy, cloud: bool) -> (u32, u32) {
    let v = start_verifier(VerifierOptions {
        batch,
        ..VerifierOptions::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        // Long prompts: a story prompt repeated, so prefill takes several chunks.
        let text = PROMPTS[i % PROMPTS.len()].repeat(1 + i % 3);
        let prompt = prompt_ids(&text);
        let want = greedy_reference(&prompt, 24, false);
        let strategy = if cloud && i % 4 == 3 {
            Strategy::CloudOnly
        } else {
            Strategy::Speculative { k: 1 + i % 4 }
        };
        let cfg = config(strategy, prompt, 24);
        let target = v.target(Transport::Grpc, None);
        tasks.push(tokio::spawn(async move {
            (run(Some(target), &cfg).await, want)
        }));
    }
    let mut biggest = (0, 0);
    for t in tasks {
        let (report, want) = t.await.unwrap();
        assert_eq!(report.output_ids, want);
        for r in &report.rounds {
            biggest = (biggest.0.max(r.batch_size), biggest.1.max(r.batch_tokens));
        }
    }
    v.running.stop().await;
    biggest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_prefill_under_a_small_budget_is_exact() {
    let (sessions, tokens) = all_exact(
        BatchPolicy {
            max_sessions: 64,
            max_tokens: 24,
            max_wait: Duration::from_millis(1),
            prefill_chunk: 7,
        },
        true,
    )
    .await;
    assert!(tokens <= 24, "a pass of {tokens} tokens");
    assert!(sessions > 1, "nothing was batched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_off_is_exact() {
    let (sessions, _) = all_exact(
        BatchPolicy {
            max_sessions: 1,
            max_wait: Duration::ZERO,
            ..BatchPolicy::default()
        },
        false,
    )
    .await;
    assert_eq!(sessions, 1, "a pass served more than one session");
}
