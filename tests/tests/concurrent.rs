//! Many sessions at once against one verifier, half over gRPC and half over QUIC: every
//! output is exactly the target's greedy output (no token lost or duplicated) and the
//! engine batched them.
//!
//! 256 synchronous sessions (the default session limit) also check that the verifier's
//! Prometheus counters add up to what the clients saw. Pipelined sessions run apart:
//! a block drafted ahead may be verified after its client has finished and dropped
//! it, which the verifier rightly counts and the client never sees.

mod common;

use common::scrape::{scrape, until_zero, value};
use common::*;
use tandem_decoding::policy::PolicySpec;
use tandem_draft::{Report, RoundKind, Strategy};
use tandem_protocol::client::Transport;

const SESSIONS: usize = 256;
const NEW: usize = 24;

/// Runs `n` sessions at once, session `i` with `strategy(i)`, alternating transports;
/// checks each is exact and that some pass served more than one; returns the reports.
async fn run_many(v: &Verifier, n: usize, strategy: impl Fn(usize) -> Strategy) -> Vec<Report> {
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt_ids(p)).collect();
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| greedy_reference(p, NEW, false))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..n {
        let transport = if i % 2 == 0 {
            Transport::Grpc
        } else {
            Transport::Quic
        };
        let cfg = config(strategy(i), prompts[i % prompts.len()].clone(), NEW);
        let target = v.target(transport, None);
        tasks.push(tokio::spawn(
            async move { (i, run(Some(target), &cfg).await) },
        ));
    }
    let mut reports = Vec::new();
    for t in tasks {
        let (i, report) = t.await.unwrap();
        assert_eq!(report.output_ids, want[i % want.len()], "session {i}");
        assert!(report.unverified.is_empty(), "session {i}");
        reports.push(report);
    }
    let max_batch = reports
        .iter()
        .flat_map(|r| r.rounds.iter().map(|r| r.batch_size))
        .max();
    assert!(max_batch > Some(1), "no pass ever served two sessions");
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_sessions_over_both_transports_are_exact_and_counted() {
    let v = start_verifier(VerifierOptions::default()).await;
    let reports = run_many(&v, SESSIONS, |i| match i % 3 {
        0 => Strategy::Speculative { k: 1 + i % 5 },
        1 => Strategy::Adaptive {
            policy: PolicySpec::PlusTwoMinusOne { max_k: 8 },
        },
        _ => Strategy::CloudOnly,
    })
    .await;
    let (mut drafts, mut drafted, mut accepted) = (0, 0, 0);
    for report in &reports {
        for r in &report.rounds {
            if r.kind == RoundKind::Verified && r.drafted > 0 {
                drafts += 1;
                drafted += r.drafted;
                accepted += r.accepted;
            }
        }
    }
    let addr = v.running.metrics_addr.unwrap();
    // A pass's counts are recorded just after its replies are sent, so a client can
    // finish before its last pass is counted; a close is handled only after the pass
    // before it, so once no session is open every pass has been counted.
    until_zero(addr, "tandem_active_sessions").await;
    let page = scrape(addr, "/metrics").await;
    let m = |name: &str| value(&page, name);
    assert_eq!(m("tandem_sessions_opened_total"), SESSIONS as f64);
    assert_eq!(m("tandem_spec_decode_num_drafts_total"), drafts as f64);
    assert_eq!(
        m("tandem_spec_decode_num_draft_tokens_total"),
        drafted as f64
    );
    assert_eq!(
        m("tandem_spec_decode_num_accepted_tokens_total"),
        accepted as f64
    );
    assert_eq!(m("tandem_errors_total"), 0.0, "{page}");
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_pipelined_sessions_over_both_transports_are_exact() {
    let v = start_verifier(VerifierOptions::default()).await;
    let reports = run_many(&v, 64, |i| Strategy::Pipelined { k: 2 + i % 3 }).await;
    assert!(reports.iter().any(|r| r.rounds.iter().any(|r| r.ahead)));
    v.running.stop().await;
}
