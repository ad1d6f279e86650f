//! Greedy speculative generation over real sockets is lossless: for several prompts,
//! every verifier-using strategy, over gRPC and QUIC, with and without an emulated
//! lossy link, outputs exactly the target's plain greedy decoding.

mod common;

use common::*;
use tandem_decoding::policy::PolicySpec;
use tandem_draft::Strategy;
use tandem_protocol::client::Transport;

const NEW: usize = 40;
/// A short, lossy link: every loss costs a probe timeout, so this exercises delay,
/// jitter, queueing behind bandwidth, and retransmission waits.
const LOSSY: &str = "delay=0.5,jitter=0.5,up=20,down=20,loss=0.05";

fn strategies() -> Vec<Strategy> {
    let mut s: Vec<Strategy> = [1, 2, 4, 8]
        .into_iter()
        .map(|k| Strategy::Speculative { k })
        .collect();
    s.push(Strategy::Adaptive {
        policy: PolicySpec::PlusTwoMinusOne { max_k: 8 },
    });
    s.push(Strategy::Adaptive {
        policy: PolicySpec::Confidence {
            p_min: 0.6,
            max_k: 8,
        },
    });
    s.push(Strategy::Pipelined { k: 3 });
    s.push(Strategy::CloudOnly);
    s
}

async fn check(transport: Transport, link: Option<&str>) {
    let v = start_verifier(VerifierOptions::default()).await;
    let mut drafted = 0;
    let mut accepted = 0;
    for text in PROMPTS {
        let prompt = prompt_ids(text);
        let want = greedy_reference(&prompt, NEW, false);
        for strategy in strategies() {
            let cfg = config(strategy, prompt.clone(), NEW);
            let report = run(Some(v.target(transport, link)), &cfg).await;
            assert_eq!(
                report.output_ids, want,
                "{strategy} over {transport:?} (link {link:?}) differs from greedy for {text:?}"
            );
            assert!(report.unverified.is_empty());
            drafted += report.summary.drafted;
            accepted += report.summary.accepted;
        }
    }
    // Both full accepts and rejections happened, so rollback ran on both sides.
    assert!(accepted > 0 && accepted < drafted, "{accepted}/{drafted}");
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_over_grpc_is_target_greedy() {
    check(Transport::Grpc, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_over_quic_is_target_greedy() {
    check(Transport::Quic, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_over_lossy_grpc_link_is_target_greedy() {
    check(Transport::Grpc, Some(LOSSY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_over_lossy_quic_link_is_target_greedy() {
    check(Transport::Quic, Some(LOSSY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_keeps_confirmed_blocks_and_drops_stale_ones() {
    let v = start_verifier(VerifierOptions::default()).await;
    let mut kinds = std::collections::HashMap::new();
    for text in PROMPTS {
        let prompt = prompt_ids(text);
        let cfg = config(Strategy::Pipelined { k: 2 }, prompt.clone(), NEW);
        let report = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
        assert_eq!(report.output_ids, greedy_reference(&prompt, NEW, false));
        for r in &report.rounds {
            *kinds.entry((r.kind.as_str(), r.ahead)).or_insert(0) += 1;
        }
    }
    // Some blocks drafted ahead were verified (their guess came true) and some were
    // dropped as stale.
    assert!(
        kinds.get(&("verified", true)).copied().unwrap_or(0) > 0,
        "{kinds:?}"
    );
    assert!(
        kinds.get(&("stale", true)).copied().unwrap_or(0) > 0,
        "{kinds:?}"
    );
    v.running.stop().await;
}
