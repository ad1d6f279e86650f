//! A chaos run: clients over both transports and an emulated lossy link keep generating
//! while the verifier is killed, shut down gracefully and restarted at seeded moments.
//! Whatever happens, every stretch of tokens the verifier confirmed is the target's
//! greedy continuation of everything committed before it; the run reports the tokens
//! verified and not, the fallbacks and the resyncs. Bounded: about four seconds of
//! chaos, then one last verifier stays up until every client is done.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tandem_draft::{Edge, Report, Strategy, VerifierTarget};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tandem_verifier::Running;

const CLIENTS: usize = 16;
const NEW: usize = 64;
const CHAOS: Duration = Duration::from_secs(4);
const SEED: u64 = 0x5eed;

/// splitmix64: the schedule's seeded randomness.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn millis(state: &mut u64, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + next(state) % (hi - lo))
}

/// How a verifier goes away.
#[derive(Debug, Clone, Copy)]
enum Exit {
    /// As a crash would: everything ends at once.
    Kill,
    /// Ctrl-C: in-flight work answered, sessions told UNAVAILABLE.
    Shutdown,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_tokens_stay_exact_while_the_verifier_dies_and_returns() {
    let certs = tempfile::tempdir().unwrap();
    let first = serve_in(VerifierOptions::default(), certs.path()).await;
    let (grpc, quic) = (first.grpc_addr.unwrap(), first.quic_addr.unwrap());
    let same_place = {
        let opts = VerifierOptions::in_place_of(&first);
        move || opts.clone()
    };
    let chaos_over = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (transport, addr) = if c % 2 == 0 {
            (Transport::Grpc, grpc)
        } else {
            (Transport::Quic, quic)
        };
        let target = VerifierTarget {
            replicas: Vec::new(),
            endpoint: Endpoint::at(transport, addr),
            options: ConnectOptions {
                ca: Some(certs.path().join("cert.pem")),
                link: Some("delay=2,jitter=1,loss=0.02".parse().unwrap()),
                link_seed: SEED + c as u64,
                ..Default::default()
            },
        };
        let over = chaos_over.clone();
        clients.push(tokio::spawn(async move {
            let mut reports: Vec<Report> = Vec::new();
            let mut request = 0u64;
            // Requests one after another until the chaos is over, and one more.
            loop {
                let last = over.load(Ordering::Acquire);
                let prompt = prompt_ids(PROMPTS[(c + request as usize) % PROMPTS.len()]);
                let mut cfg = config(Strategy::Speculative { k: 4 }, prompt, NEW);
                cfg.ignore_eos = true;
                cfg.fallback = true;
                cfg.deadline = Duration::from_secs(2);
                cfg.retry = Duration::from_millis(200);
                cfg.seed = SEED ^ (c as u64) << 16 ^ request;
                let edge = Edge {
                    device: None,
                    draft: Some(&draft().model),
                    verifier: Some(target.clone()),
                };
                reports.push(
                    tandem_draft::generate(&edge, &cfg, &mut |_, _| {})
                        .await
                        .unwrap(),
                );
                request += 1;
                if last {
                    return reports;
                }
            }
        }));
    }

    // The schedule: up for a while, then killed or shut down, down for a while, back.
    let mut rng = SEED;
    let mut verifier: Running = first;
    let started = tokio::time::Instant::now();
    let mut events = Vec::new();
    while started.elapsed() < CHAOS {
        tokio::time::sleep(millis(&mut rng, 150, 500)).await;
        let exit = if next(&mut rng).is_multiple_of(3) {
            Exit::Shutdown
        } else {
            Exit::Kill
        };
        let at = started.elapsed();
        match exit {
            Exit::Kill => verifier.stop().await,
            Exit::Shutdown => {
                verifier.shutdown(Duration::from_millis(500)).await;
            }
        }
        let took = started.elapsed() - at;
        let down = millis(&mut rng, 50, 400);
        events.push(format!(
            "{exit:?} at {at:.2?} (took {took:.2?}), down {down:?}"
        ));
        tokio::time::sleep(down).await;
        verifier = serve_in(same_place(), certs.path()).await;
    }
    chaos_over.store(true, Ordering::Release);

    let (mut requests, mut verified, mut unverified, mut fallbacks, mut resyncs) = (0, 0, 0, 0, 0);
    for c in clients {
        for report in c.await.unwrap() {
            assert_eq!(report.output_ids.len(), NEW);
            verified += assert_verified_exact(&report);
            unverified += report.unverified.len();
            fallbacks += report.summary.fallbacks;
            resyncs += report.summary.resyncs;
            requests += 1;
        }
    }
    verifier.stop().await;
    eprintln!(
        "chaos schedule (seed {SEED:#x}):\n  {}",
        events.join("\n  ")
    );
    eprintln!(
        "chaos run: {CLIENTS} clients, {requests} requests, {verified} tokens verified (all exact), {unverified} unverified, {fallbacks} fallbacks, {resyncs} resyncs"
    );
    assert!(events.len() >= 4, "{events:?}");
    assert!(
        fallbacks > 0 && resyncs > 0,
        "the chaos never reached a client"
    );
    assert!(verified > 0);
}
