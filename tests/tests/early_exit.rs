//! Early exits (arXiv 2505.21594) end to end: a verifier with `--early-exit-layer`
//! streams provisional verdicts mid-pass, the `early_exit` strategy pre-drafts on them,
//! and only final verdicts commit. An exit after the tiny target's first layer predicts
//! badly, so pre-drafted blocks are dropped often: if a provisional verdict ever
//! committed, the output would leave the target's greedy decoding. An exit after its
//! third layer predicts well, so pre-drafted blocks are kept.

mod common;

use common::scrape::metric;
use common::*;
use tandem_draft::{Report, RoundKind, Strategy};
use tandem_protocol::client::Transport;

const NEW: usize = 40;

async fn run_with_exits(layers: Vec<usize>, transport: Transport) -> (Vec<Report>, f64, f64) {
    let v = start_verifier(VerifierOptions {
        early_exit_layers: layers,
        ..VerifierOptions::default()
    })
    .await;
    let mut reports = Vec::new();
    for text in [
        "The quick brown fox",
        "Once upon a time",
        "In the beginning",
    ] {
        let prompt = prompt_ids(text);
        let want = greedy_reference(&prompt, NEW, false);
        let cfg = config(Strategy::EarlyExit { k: 4, exit: None }, prompt, NEW);
        let report = run(Some(v.target(transport, None)), &cfg).await;
        assert_eq!(report.output_ids, want, "{text:?} over {transport}");
        assert!(report.unverified.is_empty());
        reports.push(report);
    }
    let addr = v.running.metrics_addr.unwrap();
    let sent = metric(addr, "tandem_provisional_verdicts_total").await;
    let agreed = metric(addr, "tandem_provisional_verdicts_agreed_total").await;
    (reports, sent, agreed)
}

/// Rounds of `reports` that were verified after a provisional verdict, and of those
/// whose verdict agreed with it.
fn provisional_rounds(reports: &[Report]) -> (usize, usize) {
    let rounds = reports.iter().flat_map(|r| &r.rounds);
    let heard: Vec<_> = rounds
        .filter(|r| r.kind == RoundKind::Verified && r.provisional_ns > 0)
        .collect();
    (
        heard.len(),
        heard.iter().filter(|r| r.provisional_agreed).count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_provisional_verdict_never_commits() {
    for transport in [Transport::Grpc, Transport::Quic] {
        let (reports, sent, agreed) = run_with_exits(vec![0], transport).await;
        let (heard, kept) = provisional_rounds(&reports);
        let stale = reports
            .iter()
            .flat_map(|r| &r.rounds)
            .filter(|r| r.kind == RoundKind::Stale)
            .count();
        assert!(heard > 0, "no provisional verdict reached the edge");
        assert!(
            heard > kept && stale > 0,
            "the first layer's exit should mislead at times: {heard} heard, {kept} agreed, {stale} stale"
        );
        // The verifier counts every provisional verdict it sent, and the agreeing ones.
        assert!(
            sent >= heard as f64 && agreed < sent,
            "{sent} sent, {agreed} agreed"
        );
        for r in reports.iter().flat_map(|r| &r.rounds) {
            assert!(r.provisional_layer == 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_drafted_on_an_agreeing_provisional_verdict_is_kept() {
    for transport in [Transport::Grpc, Transport::Quic] {
        let (reports, _, _) = run_with_exits(vec![2], transport).await;
        let (heard, kept) = provisional_rounds(&reports);
        let ahead = reports
            .iter()
            .flat_map(|r| &r.rounds)
            .filter(|r| r.kind == RoundKind::Verified && r.ahead)
            .count();
        assert!(
            kept > 0 && ahead > 0,
            "{heard} heard, {kept} agreed, {ahead} kept ahead"
        );
        assert!(
            reports
                .iter()
                .flat_map(|r| &r.rounds)
                .filter(|r| r.provisional_ns > 0)
                .all(|r| r.provisional_layer == 2
                    && r.provisional_ns <= r.wait_ns
                    && r.provisional_lead_ns > 0
                    && r.provisional_lead_ns < r.forward_ns)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_exits_early_exit_is_speculative() {
    let v = start_verifier(VerifierOptions::default()).await;
    let prompt = prompt_ids("The quick brown fox");
    let early = run(
        Some(v.target(Transport::Grpc, None)),
        &config(
            Strategy::EarlyExit { k: 4, exit: None },
            prompt.clone(),
            NEW,
        ),
    )
    .await;
    let spec = run(
        Some(v.target(Transport::Grpc, None)),
        &config(Strategy::Speculative { k: 4 }, prompt, NEW),
    )
    .await;
    assert_eq!(early.output_ids, spec.output_ids);
    let drafted = |r: &Report| r.rounds.iter().map(|r| r.drafted).collect::<Vec<_>>();
    assert_eq!(drafted(&early), drafted(&spec), "the same rounds");
    assert!(
        early
            .rounds
            .iter()
            .all(|r| r.provisional_ns == 0 && !r.ahead)
    );
}
