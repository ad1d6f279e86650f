//! The verifier's Prometheus counters add up to what its clients saw: drafts, drafted
//! and accepted tokens (vLLM's definitions), accepted tokens by position, sessions and
//! refusals by code.

mod common;

use common::raw::*;
use common::scrape::*;
use common::*;
use tandem_draft::{RoundKind, Strategy};
use tandem_protocol::client::Transport;
use tandem_protocol::pb::cloud_message::Kind as Down;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_to_what_the_clients_saw() {
    let v = start_verifier(VerifierOptions::default()).await;
    let addr = v.running.metrics_addr.unwrap();
    let (mut drafts, mut drafted, mut accepted, mut sessions) = (0, 0, 0, 0);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let transport = if i % 2 == 0 {
            Transport::Grpc
        } else {
            Transport::Quic
        };
        let cfg = config(
            Strategy::Speculative { k: 1 + i % 4 },
            prompt_ids(PROMPTS[i % 4]),
            32,
        );
        let target = v.target(transport, None);
        tasks.push(tokio::spawn(async move { run(Some(target), &cfg).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        sessions += 1;
        for round in r
            .rounds
            .iter()
            .filter(|r| r.kind == RoundKind::Verified && r.drafted > 0)
        {
            drafts += 1;
            drafted += round.drafted;
            accepted += round.accepted;
        }
    }
    // One refused block: a token out of range.
    let mut s = raw_grpc(&v, None).await.unwrap();
    let Down::Opened(o) = s.ask(open_msg(&fingerprint(), "")).await.unwrap() else {
        panic!("no Opened")
    };
    sessions += 1;
    let bad = draft_msg(
        o.session_id,
        o.committed_len,
        o.first_token,
        vec![100_000],
        1,
    );
    assert!(matches!(s.ask(bad).await.unwrap(), Down::Error(_)));

    let page = scrape(addr, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    let m = |name: &str| value(&page, name);
    assert_eq!(m("tandem_spec_decode_num_drafts_total"), drafts as f64);
    assert_eq!(
        m("tandem_spec_decode_num_draft_tokens_total"),
        drafted as f64
    );
    assert_eq!(
        m("tandem_spec_decode_num_accepted_tokens_total"),
        accepted as f64
    );
    assert_eq!(
        m("tandem_spec_decode_num_accepted_tokens_per_pos_total"),
        accepted as f64
    );
    assert_eq!(m("tandem_sessions_opened_total"), sessions as f64);
    assert_eq!(m("tandem_errors_total"), 1.0);
    assert!(
        page.contains("tandem_errors_total{code=\"InvalidArgument\"} 1"),
        "{page}"
    );
    assert!(m("tandem_batch_size_count") >= 1.0);
    assert!(scrape(addr, "/other").await.starts_with("HTTP/1.1 404"));
    v.running.stop().await;
}

/// A client that connects to the metrics port and never sends a request is
/// disconnected (after the 5 s header timeout), and the port keeps answering others
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_metrics_client_is_disconnected_and_others_are_served() {
    use tokio::io::AsyncReadExt;
    let v = start_verifier(VerifierOptions::default()).await;
    let addr = v.running.metrics_addr.unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        scrape(addr, "/metrics")
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), silent.read(&mut buf))
        .await
        .expect("the silent connection is closed well within a minute");
    // Closed (EOF), reset, or answered with 408 and then closed.
    if let Ok(n) = read {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    v.running.stop().await;
}
