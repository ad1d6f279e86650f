//! Many sessions at once against one verifier: every output is still exactly the
//! target's greedy output, and the engine batched them (some verdicts came from passes
//! that served more than one session).

mod common;

use common::*;
use tandem_draft::Strategy;
use tandem_protocol::client::Transport;

const SESSIONS: usize = 64;
const NEW: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_sessions_over_both_transports_are_exact() {
    let v = start_verifier(VerifierOptions::default()).await;
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt_ids(p)).collect();
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| greedy_reference(p, NEW, false))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let transport = if i % 2 == 0 {
            Transport::Grpc
        } else {
            Transport::Quic
        };
        let strategy = match i % 3 {
            0 => Strategy::Speculative { k: 1 + i % 5 },
            1 => Strategy::Pipelined { k: 3 },
            _ => Strategy::CloudOnly,
        };
        let cfg = config(strategy, prompts[i % prompts.len()].clone(), NEW);
        let target = v.target(transport, None);
        tasks.push(tokio::spawn(
            async move { (i, run(Some(target), &cfg).await) },
        ));
    }
    let mut max_batch = 0;
    for t in tasks {
        let (i, report) = t.await.unwrap();
        assert_eq!(report.output_ids, want[i % want.len()], "session {i}");
        max_batch = max_batch.max(
            report
                .rounds
                .iter()
                .map(|r| r.batch_size)
                .max()
                .unwrap_or(0),
        );
    }
    assert!(max_batch > 1, "no pass ever served two sessions");
    v.running.stop().await;
}
