//! Stochastic speculative generation over real sockets: with a fixed seed the output is
//! reproducible (run to run and across transports), and every verdict the verifier
//! sent is exactly what the decoding crate's rule gives on the same p and q, replayed
//! here in process.

mod common;

use common::*;
use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::rng::stream;
use tandem_decoding::{SamplingParams, SessionRng, verify_stochastic};
use tandem_draft::drafter::Drafter;
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
    let eos = t.info().eos_token_ids.clone();
    let mut drafter = Drafter::new(
        &draft().model,
        sampling,
        SessionRng::for_stream(seed, stream::DRAFT),
    );
    let mut rng = SessionRng::for_stream(seed, stream::VERIFY);
    let mut cache = t.new_cache();
    let first = sampling
        .distribution(t.prefill(&mut cache, prompt).unwrap().last())
        .sample(&mut rng);
    let mut committed = prompt.to_vec();
    committed.push(first);
    let mut accepted = Vec::new();
    let out = |c: &Vec<u32>| c.len() - prompt.len();
    let ended = |c: &Vec<u32>| c[prompt.len()..].iter().any(|t| eos.contains(t));
    while out(&committed) < NEW && !ended(&committed) {
        let k = K.min(NEW - out(&committed));
        let block = drafter.draft(&committed, k, |_, _| true).unwrap();
        let mut input = vec![*committed.last().unwrap()];
        input.extend_from_slice(&block.tokens);
        let rows = t.forward(&mut cache, &input, Positions::All).unwrap();
        let mut p = FromLogits::new(rows.rows(), sampling);
        let v = verify_stochastic(&block.tokens, &block.q, &mut p, &mut rng).unwrap();
        accepted.push(v.accepted);
        committed.extend_from_slice(&block.tokens[..v.accepted]);
        committed.push(v.next_token);
        cache.truncate(committed.len() - 1).unwrap();
    }
    let mut output = committed[prompt.len()..].to_vec();
    if let Some(at) = output.iter().position(|t| eos.contains(t)) {
        output.truncate(at + 1);
    }
    output.truncate(NEW);
    (accepted, output)
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
