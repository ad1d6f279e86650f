//! The `tree` strategy end to end: the shipped draft drafts token trees (static shapes,
//! EAGLE-2 dynamic trees, and shapes sized by the link), the verifier judges them in its
//! batched pass, and the edge commits the path each verdict names.
//!
//! - Greedy: every shape, over gRPC and QUIC, commits exactly the target's greedy
//!   output.
//! - Sampling: with a fixed seed the output repeats across runs and transports, and each
//!   round's verdict is exactly what `verify_tree_stochastic` gives on the same p and q,
//!   replayed here in process with the target's own tree pass.
//! - Misuse: a dynamic tree under sampling, and a static tree beyond the verifier's
//!   limits, are refused before anything is sent, saying why.

mod common;

use common::*;
use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::{Candidates, DraftTree, SamplingParams, TreeShape, verify_tree_stochastic};
use tandem_draft::propose::{Propose, TreePlan};
use tandem_draft::{DraftError, Report, RoundKind, Strategy};
use tandem_models::{BatchEntry, LanguageModel, Positions, SessionCache};
use tandem_protocol::Limits;
use tandem_protocol::client::Transport;

const NEW: usize = 40;

fn tree(shape: &str) -> Strategy {
    Strategy::Tree {
        shape: shape.parse().unwrap(),
    }
}

/// Verified rounds' (nodes, accepted path length, depth), the prompt's round left out.
fn tree_rounds(r: &Report) -> Vec<(u32, u32, u32)> {
    r.rounds
        .iter()
        .filter(|r| r.kind == RoundKind::Verified && r.drafted > 0)
        .map(|r| (r.drafted, r.accepted, u32::from(r.tree_depth)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_trees_of_every_shape_commit_the_targets_greedy_output() {
    let v = start_verifier(VerifierOptions::default()).await;
    for shape in [
        "3,2,1",
        "1,1,1,1",
        "dynamic:12",
        "dynamic:6:3",
        "auto",
        "auto:8",
    ] {
        for transport in [Transport::Grpc, Transport::Quic] {
            for text in &PROMPTS[..2] {
                let prompt = prompt_ids(text);
                let report = run(
                    Some(v.target(transport, None)),
                    &config(tree(shape), prompt.clone(), NEW),
                )
                .await;
                assert_eq!(
                    report.output_ids,
                    greedy_reference(&prompt, NEW, false),
                    "{shape} {text:?} over {transport}"
                );
                let rounds = tree_rounds(&report);
                assert!(!rounds.is_empty());
                for (nodes, accepted, depth) in rounds {
                    assert!(depth >= 1 && accepted <= depth && depth <= nodes, "{shape}");
                }
                // Each accepted node is counted at its sibling rank; every row on the
                // path, and the row it stops at if it has children, tested a first one.
                for r in report
                    .rounds
                    .iter()
                    .filter(|r| r.kind == RoundKind::Verified)
                {
                    let by_rank = r.by_rank();
                    let accepted: u32 = by_rank.iter().map(|c| c.accepted).sum();
                    assert_eq!(accepted, r.accepted, "{shape}");
                    let first = by_rank[0].tested;
                    assert!(first == r.accepted || first == r.accepted + 1, "{shape}");
                }
            }
        }
    }
    // A static shape sends its nodes every round (until the request's end cuts it).
    let report = run(
        Some(v.target(Transport::Grpc, None)),
        &config(tree("3,2,1"), prompt_ids(PROMPTS[0]), NEW),
    )
    .await;
    assert_eq!(tree_rounds(&report)[0], (15, tree_rounds(&report)[0].1, 3));
    v.running.stop().await;
}

/// Replays a tree session in process: the same draft stream and shape, the target's
/// tree pass behind its newest committed token, `verify_tree_stochastic` with the
/// verifier's stream, and the cache kept to the accepted path. Returns each round's
/// path length and the output.
fn replay(
    prompt: &[u32],
    shape: &str,
    sampling: SamplingParams,
    seed: u64,
) -> (Vec<u32>, Vec<u32>) {
    let TreeShape::Static(branching) = shape.parse().unwrap() else {
        panic!("a static shape")
    };
    let t = &target().model;
    let mut r = Replay::start(prompt, sampling, seed);
    let mut paths = Vec::new();
    while r.goes_on(NEW) {
        let depth = branching.depth().min(NEW - r.generated());
        let widths: Vec<usize> = branching.widths().take(depth).collect();
        let plan = TreePlan::Shape(tandem_decoding::Branching::new(&widths).unwrap().parents());
        let block = r.drafter.propose_tree(&r.committed, plan).unwrap().block;
        let mut input = vec![*r.committed.last().unwrap()];
        input.extend_from_slice(&block.tokens);
        let parents: Vec<u32> = std::iter::once(0)
            .chain(block.parents.iter().map(|&p| p + 1))
            .collect();
        let start = r.committed.len() - 1;
        let rows = t
            .forward_batch(&mut [BatchEntry {
                cache: &mut r.cache,
                tokens: &input,
                positions: Positions::All,
                tree: Some(&parents),
            }])
            .unwrap()
            .pop()
            .unwrap();
        let mut p = FromLogits::new(rows.rows(), sampling);
        let tree = DraftTree::new(&block.tokens, &block.parents).unwrap();
        let v = verify_tree_stochastic(tree, &block.q, &mut p, &mut r.rng, Candidates::Independent)
            .unwrap();
        paths.push(v.accepted() as u32);
        let keep: Vec<usize> = std::iter::once(0)
            .chain(v.path.iter().map(|&n| n + 1))
            .collect();
        r.cache.keep_rows(start, &keep).unwrap();
        r.committed.extend(v.path.iter().map(|&n| block.tokens[n]));
        r.committed.push(v.next_token);
    }
    (paths, r.output(NEW))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_trees_follow_the_rule_and_repeat_with_the_seed() {
    let v = start_verifier(VerifierOptions::default()).await;
    let sampling = SamplingParams {
        temperature: 0.8,
        top_k: 20,
        ..SamplingParams::default()
    };
    let mut short_paths = 0;
    for (i, text) in PROMPTS.iter().take(3).enumerate() {
        let prompt = prompt_ids(text);
        let seed = 300 + i as u64;
        let mut cfg = config(tree("2,2,1"), prompt.clone(), NEW);
        cfg.sampling = sampling;
        cfg.seed = seed;
        let grpc = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
        let again = run(Some(v.target(Transport::Grpc, None)), &cfg).await;
        let quic = run(Some(v.target(Transport::Quic, None)), &cfg).await;
        assert_eq!(grpc.output_ids, again.output_ids, "same seed, same tokens");
        assert_eq!(grpc.output_ids, quic.output_ids, "same tokens over QUIC");
        let paths = |r: &Report| tree_rounds(r).iter().map(|r| r.1).collect::<Vec<_>>();
        let (want_paths, want_output) = replay(&prompt, "2,2,1", sampling, seed);
        assert_eq!(paths(&grpc), want_paths, "{text:?}");
        assert_eq!(grpc.output_ids, want_output, "{text:?}");
        short_paths += want_paths.iter().filter(|&&a| a < 3).count();
    }
    assert!(
        short_paths > 0,
        "every path was accepted whole: no residual ran"
    );
    v.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_the_rule_or_the_verifier_cannot_take_are_refused() {
    let v = start_verifier(VerifierOptions {
        limits: Limits {
            max_tree_nodes: 8,
            ..Limits::default()
        },
        ..VerifierOptions::default()
    })
    .await;
    let prompt = prompt_ids(PROMPTS[0]);
    let mut cfg = config(tree("dynamic:8"), prompt.clone(), NEW);
    cfg.sampling = SamplingParams::default();
    let err = try_run(Some(v.target(Transport::Grpc, None)), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DraftError::Usage(m) if m.contains("static shape")),
        "{err}"
    );
    let cfg = config(tree("3,2,1"), prompt.clone(), NEW);
    let err = try_run(Some(v.target(Transport::Grpc, None)), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DraftError::Usage(m) if m.contains("15 nodes") && m.contains("at most 8")),
        "{err}"
    );
    // A dynamic tree or an auto one is cut to the limit instead, and still exact.
    for shape in ["dynamic:32", "auto"] {
        let report = run(
            Some(v.target(Transport::Grpc, None)),
            &config(tree(shape), prompt.clone(), NEW),
        )
        .await;
        assert_eq!(report.output_ids, greedy_reference(&prompt, NEW, false));
        assert!(tree_rounds(&report).iter().all(|r| r.0 <= 8), "{shape}");
    }
    v.running.stop().await;
}
