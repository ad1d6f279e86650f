//! KV-cache budgets over real sockets: an `Open` that does not fit is refused with
//! RESOURCE_EXHAUSTED on both transports, and a draft node refused for memory goes on
//! alone and re-joins, losing nothing, once a session closes and frees its share.

mod common;

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use common::raw::*;
use common::scrape::until_zero;
use common::*;
use tandem_draft::Strategy;
use tandem_models::LanguageModel;
use tandem_protocol::client::Transport;
use tandem_protocol::frame;
use tandem_protocol::pb::cloud_message::Kind as Down;
use tandem_verifier::KvBudget;
use tokio::sync::mpsc;
use tonic::Code;

fn per_token() -> u64 {
    target().model.info().kv_bytes_per_token as u64
}

/// Tokens a session reserves: its prompt, its new tokens, and one largest block.
fn reservation(prompt_len: usize, max_new: usize) -> u64 {
    (prompt_len + max_new + tandem_protocol::Limits::default().block_room()) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_over_the_session_budget_is_refused_on_both_transports() {
    // `open_msg` asks for 32 new tokens after the counting prompt: one token too many.
    let need = reservation(prompt_ids(PROMPTS[1]).len(), 32);
    let v = start_verifier(VerifierOptions {
        kv: KvBudget {
            total_bytes: 0,
            session_bytes: (need - 1) * per_token(),
        },
        ..VerifierOptions::default()
    })
    .await;
    let mut s = raw_grpc(&v, None).await.unwrap();
    let status = s.ask(open_msg(&fingerprint(), "")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("per-session budget"),
        "{status:?}"
    );

    let conn = raw_quic(&v).await;
    let got = quic_bytes(&conn, &frame::encode(&open_msg(&fingerprint(), ""))).await;
    expect_error(got, Code::ResourceExhausted, 0, "per-session budget");
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draft_node_refused_for_memory_goes_on_alone_and_rejoins_when_room_frees() {
    let prompt = prompt_ids(PROMPTS[0]);
    let holder_need = reservation(prompt_ids(PROMPTS[1]).len(), 32);
    let edge_need = reservation(prompt.len(), 40);
    // Room for either session, not both.
    let v = start_verifier(VerifierOptions {
        kv: KvBudget {
            total_bytes: holder_need.max(edge_need) * per_token(),
            session_bytes: 0,
        },
        ..VerifierOptions::default()
    })
    .await;
    let metrics = v.running.metrics_addr.unwrap();
    let mut holder = raw_grpc(&v, None).await.unwrap();
    assert!(matches!(
        holder.ask(open_msg(&fingerprint(), "")).await,
        Ok(Down::Opened(_))
    ));

    let mut cfg = config(Strategy::Speculative { k: 3 }, prompt.clone(), 40);
    cfg.ignore_eos = true;
    cfg.fallback = true;
    cfg.retry = Duration::ZERO;
    let target = v.target(Transport::Grpc, None);
    let (release_tx, mut release) = mpsc::unbounded_channel::<()>();
    let (freed_tx, freed) = std_mpsc::channel::<()>();
    let generation = tokio::spawn(async move {
        let mut asked = false;
        let mut on_tokens = move |_: &[u32], verified: bool| {
            if !verified && !std::mem::replace(&mut asked, true) {
                release_tx.send(()).unwrap();
                tokio::task::block_in_place(|| freed.recv().unwrap());
            }
        };
        try_run_with(Some(target), &cfg, &mut on_tokens).await
    });

    // The edge was refused and is drafting alone: close the holder, wait until the
    // verifier has given its share back, and let the edge go on.
    if release.recv().await.is_none() {
        panic!(
            "the edge never went on alone: {:?}",
            generation.await.unwrap().map(|r| r.summary)
        );
    }
    drop(holder);
    until_zero(metrics, "tandem_kv_reserved_bytes").await;
    freed_tx.send(()).unwrap();
    let report = generation.await.unwrap().unwrap();
    eprintln!("{}", tandem_draft::cli::summary_line(&report));

    let s = &report.summary;
    assert_eq!(s.tokens, 40);
    assert!(s.fallbacks >= 1 && s.resyncs >= 1, "{s:?}");
    assert_eq!(
        report.unverified.first(),
        Some(&0),
        "refused from the start"
    );
    // After re-joining: the target's greedy continuation of everything committed.
    let last = *report.unverified.last().unwrap();
    let mut context = prompt.clone();
    context.extend_from_slice(&report.output_ids[..=last]);
    let rest = &report.output_ids[last + 1..];
    assert!(!rest.is_empty(), "nothing was verified after re-joining");
    assert_eq!(
        rest,
        greedy_reference(&context, rest.len(), true).as_slice()
    );
    let page = common::scrape::scrape(metrics, "/metrics").await;
    assert!(common::scrape::value(&page, "tandem_errors_total") >= 1.0);
    v.running.stop().await;
}

/// Cloud-only generation that reaches the target's context (1 024 tokens) before its
/// `max_new_tokens` stops there, and the draft node reports why: `context`, not
/// `length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_stopped_by_the_context_says_so() {
    let v = start_verifier(VerifierOptions::default()).await;
    let context = target().model.info().max_context;
    let prompt: Vec<u32> = (0..context - 4).map(|i| 5 + (i % 50) as u32).collect();
    let mut cfg = config(Strategy::CloudOnly, prompt, 16);
    cfg.ignore_eos = true;
    let report = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
    assert_eq!(report.summary.stop, tandem_draft::StopReason::Context);
    assert_eq!(
        report.output_ids.len(),
        4,
        "the context holds 4 more tokens"
    );
    v.running.stop().await;
}
