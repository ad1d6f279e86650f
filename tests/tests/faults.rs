//! A verifier that goes away mid-generation: the draft node finishes on its own, marks
//! the tokens nobody verified, and re-opens its session when a verifier is back, after
//! which the target is in charge again.
//!
//! The test steers the run from the token callback, so nothing depends on timing: at
//! 12 committed tokens the callback asks the test to stop the verifier and waits; at
//! the first unverified token it asks for a new verifier on the same address and waits.

mod common;

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use common::*;
use tandem_draft::{Strategy, VerifierTarget};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tokio::sync::mpsc;

#[derive(Debug, PartialEq)]
enum Ask {
    Stop,
    Restart,
}

async fn verifier_comes_and_goes(transport: Transport, strategy: Strategy) {
    let certs = tempfile::tempdir().unwrap();
    let first = serve_in(VerifierOptions::default(), certs.path()).await;
    let (grpc, quic) = (first.grpc_addr.unwrap(), first.quic_addr.unwrap());
    let same_place = {
        let opts = VerifierOptions::in_place_of(&first);
        move || opts.clone()
    };
    let addr = match transport {
        Transport::Grpc => grpc,
        Transport::Quic => quic,
    };
    let target = VerifierTarget {
        replicas: Vec::new(),
        endpoint: Endpoint::at(transport, addr),
        options: ConnectOptions {
            ca: Some(certs.path().join("cert.pem")),
            ..Default::default()
        },
    };

    let prompt = prompt_ids(PROMPTS[0]);
    let mut cfg = config(strategy, prompt.clone(), 60);
    cfg.ignore_eos = true;
    cfg.fallback = true;
    cfg.deadline = Duration::from_secs(5);
    cfg.retry = Duration::ZERO;

    let (ask_tx, mut asks) = mpsc::unbounded_channel::<Ask>();
    let (done_tx, done_rx) = std_mpsc::channel::<()>();
    let generation = tokio::spawn(async move {
        let (mut n, mut stopped, mut restarted) = (0usize, false, false);
        let mut on_tokens = move |tokens: &[u32], verified: bool| {
            n += tokens.len();
            if !stopped && n >= 12 {
                stopped = true;
                ask_tx.send(Ask::Stop).unwrap();
                tokio::task::block_in_place(|| done_rx.recv().unwrap());
            } else if stopped && !verified && !restarted {
                restarted = true;
                ask_tx.send(Ask::Restart).unwrap();
                tokio::task::block_in_place(|| done_rx.recv().unwrap());
            }
        };
        try_run_with(Some(target), &cfg, &mut on_tokens).await
    });

    assert_eq!(asks.recv().await, Some(Ask::Stop));
    first.stop().await;
    done_tx.send(()).unwrap();
    assert_eq!(asks.recv().await, Some(Ask::Restart));
    let second = serve_in(same_place(), certs.path()).await;
    done_tx.send(()).unwrap();
    let report = generation.await.unwrap().unwrap();
    second.stop().await;
    eprintln!("{}", tandem_draft::cli::summary_line(&report));

    let s = &report.summary;
    assert_eq!(s.tokens, 60);
    assert!(s.fallbacks >= 1 && s.resyncs >= 1, "{s:?}");
    assert!(!report.unverified.is_empty());
    // Before the verifier went away: exactly the target's greedy output.
    let first_unverified = report.unverified[0];
    let want = greedy_reference(&prompt, 60, true);
    assert_eq!(
        report.output_ids[..first_unverified],
        want[..first_unverified]
    );
    // After the resync: the target's greedy continuation of everything committed,
    // unverified tokens included.
    let last_unverified = *report.unverified.last().unwrap();
    let mut context = prompt.clone();
    context.extend_from_slice(&report.output_ids[..=last_unverified]);
    let rest = &report.output_ids[last_unverified + 1..];
    assert!(!rest.is_empty(), "nothing was verified after the resync");
    assert_eq!(
        rest,
        greedy_reference(&context, rest.len(), true).as_slice()
    );
    // The records say the same: edge rounds between verified ones.
    let kinds: Vec<&str> = report.rounds.iter().map(|r| r.kind.as_str()).collect();
    let first_edge = kinds.iter().position(|k| *k == "edge").unwrap();
    assert!(
        kinds[first_edge..]
            .iter()
            .any(|k| *k == "verified" || *k == "cloud")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn speculative_over_grpc_falls_back_and_resyncs() {
    verifier_comes_and_goes(Transport::Grpc, Strategy::Speculative { k: 3 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_over_quic_falls_back_and_resyncs() {
    verifier_comes_and_goes(Transport::Quic, Strategy::Pipelined { k: 3 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_only_falls_back_to_the_draft_and_resyncs() {
    verifier_comes_and_goes(Transport::Grpc, Strategy::CloudOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallback_a_lost_verifier_is_an_error() {
    let v = start_verifier(VerifierOptions::default()).await;
    let target = v.target(Transport::Grpc, None);
    v.running.stop().await;
    let cfg = config(Strategy::Speculative { k: 2 }, prompt_ids(PROMPTS[1]), 10);
    let err = try_run(Some(target), &cfg).await.unwrap_err();
    assert!(err.to_string().contains("connection"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_slower_than_the_deadline_is_left_behind() {
    // A 100 ms one-way link cannot answer within a 40 ms deadline, ever.
    let v = start_verifier(VerifierOptions::default()).await;
    let target = v.target(Transport::Quic, Some("delay=100"));
    let prompt = prompt_ids(PROMPTS[1]);
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt.clone(), 12);
    cfg.fallback = true;
    cfg.ignore_eos = true;
    cfg.deadline = Duration::from_millis(40);
    cfg.retry = Duration::from_secs(3600);
    let report = try_run(Some(target), &cfg).await.unwrap();
    let mut alone = config(Strategy::EdgeOnly, prompt, 12);
    alone.ignore_eos = true;
    let alone = try_run(None, &alone).await.unwrap();
    assert_eq!(report.summary.fallbacks, 1);
    assert_eq!(report.summary.resyncs, 0);
    assert_eq!(report.unverified, (0..12).collect::<Vec<_>>());
    // Greedy drafting alone is the draft's own greedy output.
    assert_eq!(report.output_ids, alone.output_ids[..12]);
    v.running.stop().await;
}

/// A client refused because the verifier was full goes on alone and, at the default
/// retry setting, re-joins as soon as a slot is free: its first try comes well inside
/// the time the shipped draft takes for a block, so the resync happens while there is
/// still something left to verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_client_rejoins_when_a_slot_frees_at_the_default_retry() {
    let v = start_verifier(VerifierOptions {
        limits: tandem_protocol::Limits {
            max_sessions: 1,
            ..tandem_protocol::Limits::default()
        },
        ..VerifierOptions::default()
    })
    .await;
    // Another client holds the only slot.
    let holder = common::raw::open_session(&v).await;

    let prompt = prompt_ids(PROMPTS[0]);
    let mut cfg = config(Strategy::Speculative { k: 4 }, prompt.clone(), 64);
    cfg.ignore_eos = true;
    cfg.fallback = true;
    cfg.retry = Duration::from_millis(1000); // the draft node's default
    let target = v.target(Transport::Grpc, None);
    let (freed_tx, mut freed) = mpsc::unbounded_channel::<()>();
    let (go_on_tx, go_on) = std_mpsc::channel::<()>();
    let generation = tokio::spawn(async move {
        let mut asked = false;
        // At its first (unverified) token, wait until the slot is free.
        let mut on_tokens = move |_: &[u32], verified: bool| {
            if !asked && !verified {
                asked = true;
                freed_tx.send(()).unwrap();
                tokio::task::block_in_place(|| go_on.recv().unwrap());
            }
        };
        try_run_with(Some(target), &cfg, &mut on_tokens).await
    });
    freed.recv().await.unwrap();
    drop(holder);
    while v.running.active_sessions() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    go_on_tx.send(()).unwrap();
    let report = generation.await.unwrap().unwrap();
    let s = &report.summary;
    assert_eq!((s.fallbacks, s.resyncs), (1, 1), "{s:?}");
    // Everything after the resync is the target's greedy continuation.
    let last_unverified = *report.unverified.last().unwrap();
    let mut context = prompt.clone();
    context.extend_from_slice(&report.output_ids[..=last_unverified]);
    let rest = &report.output_ids[last_unverified + 1..];
    assert!(!rest.is_empty(), "nothing was verified after the resync");
    assert_eq!(
        rest,
        greedy_reference(&context, rest.len(), true).as_slice()
    );
    v.running.stop().await;
}
