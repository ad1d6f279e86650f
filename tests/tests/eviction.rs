//! An idle session is evicted, and its client does not lose a token: the next block
//! gets NOT_FOUND (saying why), the draft node re-opens the session with everything
//! committed, and the output is still exactly the target's greedy output.
//!
//! The client pauses inside its token callback for 20 idle timeouts, so the eviction
//! happens during the pause on any machine.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use tandem_draft::{Edge, Strategy};
use tandem_protocol::client::Transport;
use tandem_protocol::pb::cloud_message::Kind as Down;
use tonic::Code;

const IDLE: Duration = Duration::from_millis(20);

fn options() -> VerifierOptions {
    VerifierOptions {
        idle_timeout: IDLE,
        ..VerifierOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_session_is_reopened_without_losing_a_token() {
    let v = start_verifier(options()).await;
    for (transport, strategy) in [
        (Transport::Grpc, Strategy::Speculative { k: 3 }),
        (Transport::Quic, Strategy::Pipelined { k: 3 }),
    ] {
        let prompt = prompt_ids(PROMPTS[0]);
        let mut cfg = config(strategy, prompt.clone(), 40);
        cfg.ignore_eos = true;
        let edge = Edge {
            device: None,
            draft: Some(&draft().model),
            verifier: Some(v.target(transport, None)),
        };
        let mut paused = false;
        let mut on_tokens = |_: &[u32], _: bool| {
            if !std::mem::replace(&mut paused, true) {
                tokio::task::block_in_place(|| std::thread::sleep(IDLE * 20));
            }
        };
        let report = tandem_draft::generate(&edge, &cfg, &mut on_tokens)
            .await
            .unwrap();
        assert_eq!(
            report.output_ids,
            greedy_reference(&prompt, 40, true),
            "{strategy}"
        );
        assert!(report.unverified.is_empty());
        assert!(report.summary.resyncs >= 1, "{strategy}: never re-opened");
    }
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_block_of_an_evicted_session_learns_why() {
    let v = start_verifier(options()).await;
    let mut s = raw_grpc(&v, None).await.unwrap();
    let Down::Opened(o) = s.ask(open_msg(&fingerprint(), "")).await.unwrap() else {
        panic!("no Opened")
    };
    tokio::time::sleep(IDLE * 20).await;
    let block = draft_msg(o.session_id, o.committed_len, o.first_token, vec![5], 1);
    match s.ask(block).await.unwrap() {
        Down::Error(e) => {
            assert_eq!(Code::from_i32(e.code), Code::NotFound);
            assert!(e.message.contains("evicted"), "{}", e.message);
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    v.running.stop().await;
}
