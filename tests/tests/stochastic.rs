//! Stochastic speculative generation over real sockets: with a fixed seed the output is
//! reproducible (run to run and across transports), and every verdict the verifier
//! sent is exactly what the decoding crate's rule gives on the same p and q, replayed
//! here in process.

mod common;

use common::*;
use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::{SamplingParams, verify_stochastic};
use tandem_draft::{Report, RoundKind, Strategy};
use tandem_models::{LanguageModel, Positions, SessionCache};
use tandem_protocol::client::Transport;

const NEW: usize = 48;
const K: usize = 4;

fn settings() -> [SamplingParams; 2] {
    [
        // Dense q: plain sampling at temperature 1.
        SamplingParams::default(),
        // Sparse q: top-k truncation, sent as id/probability pairs.
        SamplingParams {
            temperature: 0.8,
            top_k: 20,
            ..SamplingParams::default()
        },
    ]
}

/// Replays a speculative session in process: the same draft stream, the target's rows
/// for each block, and `verify_stochastic` with the verifier's stream. Returns the
/// accepted count of every round and the output.
fn replay(prompt: &[u32], sampling: SamplingParams, seed: u64) -> (Vec<usize>, Vec<u32>) {
    let t = &target().model;
    let mut r = Replay::start(prompt, sampling, seed);
    let mut accepted = Vec::new();
    while r.goes_on(NEW) {
        let k = K.min(NEW - r.generated());
        let block = r.drafter.draft(&r.committed, k, |_, _| true).unwrap();
        let mut input = vec![*r.committed.last().unwrap()];
        input.extend_from_slice(&block.tokens);
        let rows = t.forward(&mut r.cache, &input, Positions::All).unwrap();
        let mut p = FromLogits::new(rows.rows(), sampling);
        let v = verify_stochastic(&block.tokens, &block.q, &mut p, &mut r.rng).unwrap();
        accepted.push(v.accepted);
        r.committed.extend_from_slice(&block.tokens[..v.accepted]);
        r.committed.push(v.next_token);
        r.cache.truncate(r.committed.len() - 1).unwrap();
    }
    (accepted, r.output(NEW))
}

fn accepted_column(r: &Report) -> Vec<usize> {
    r.rounds
        .iter()
        .filter(|r| r.kind == RoundKind::Verified && r.drafted > 0)
        .map(|r| r.accepted as usize)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stochastic_verdicts_follow_the_rule_and_repeat_with_the_seed() {
    let v = start_verifier(VerifierOptions::default()).await;
    let mut rejections = 0;
    for sampling in settings() {
        for (i, text) in PROMPTS.iter().enumerate() {
            let prompt = prompt_ids(text);
            let seed = 100 + i as u64;
            let mut cfg = config(Strategy::Speculative { k: K }, prompt.clone(), NEW);
            cfg.sampling = sampling;
            cfg.seed = seed;
            let grpc = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
            let again = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
            let quic = run(Some(v.target(Transport::Quic, None)), &cfg).await;
            assert_eq!(grpc.output_ids, again.output_ids, "same seed, same tokens");
            assert_eq!(grpc.output_ids, quic.output_ids, "same tokens over QUIC");
            assert_eq!(accepted_column(&grpc), accepted_column(&again));
            assert_eq!(accepted_column(&grpc), accepted_column(&quic));
            let (want_accepted, want_output) = replay(&prompt, sampling, seed);
            assert_eq!(
                accepted_column(&grpc),
                want_accepted,
                "{sampling:?} {text:?}"
            );
            assert_eq!(grpc.output_ids, want_output, "{sampling:?} {text:?}");
            rejections += want_accepted.iter().filter(|&&a| a < K).count();
        }
    }
    assert!(rejections > 0, "no rejection: the residual path never ran");
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_matter_and_cloud_only_sampling_repeats() {
    let v = start_verifier(VerifierOptions::default()).await;
    let prompt = prompt_ids(PROMPTS[0]);
    let mut cfg = config(Strategy::CloudOnly, prompt, NEW);
    cfg.sampling = SamplingParams::default();
    cfg.ignore_eos = true;
    let a = run(Some(v.target(Transport::Quic, None)), &cfg).await;
    let b = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
    assert_eq!(a.output_ids, b.output_ids);
    assert_eq!(a.output_ids.len(), NEW);
    let mut differ = false;
    for seed in [12, 13, 14] {
        let mut c = cfg.clone();
        c.seed = seed;
        differ |= run(Some(v.target(Transport::Grpc, None)), &c)
            .await
            .output_ids
            != a.output_ids;
    }
    assert!(differ, "the seed changes nothing");
    v.running.stop().await;
}
