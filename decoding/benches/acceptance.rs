//! Acceptance of one k = 8 block at vocabulary 32 000 (Llama 2) and 152 000 (Qwen2).
//!
//! Greedy: argmax over up to k + 1 rows. Stochastic: the target's softmax per tested row
//! plus the accept test, the residual or bonus sample. Each is measured in its worst case
//! (every token accepted: all k + 1 rows are read) and with a rejection at position 0.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::sampling::argmax;
use tandem_decoding::{
    Candidates, Distribution, DraftTree, LogitRows, SamplingParams, SessionRng, TokenId,
    verify_greedy, verify_stochastic, verify_tree_stochastic,
};

const K: usize = 8;

fn random_logits(vocab: usize, rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = SessionRng::new(seed);
    (0..vocab * rows)
        .map(|_| (rng.uniform() * 12.0 - 6.0) as f32)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("accept_k8");
    group.throughput(Throughput::Elements(1));
    for vocab in [32_000usize, 152_000] {
        let logits = random_logits(vocab, K + 1, vocab as u64);
        let rows = LogitRows::new(&logits, vocab).unwrap();
        let argmaxes: Vec<TokenId> = (0..=K).map(|i| argmax(rows.row(i))).collect();
        let all_match = &argmaxes[..K];
        let first_wrong: Vec<TokenId> = all_match
            .iter()
            .map(|&t| (t + 1) % vocab as TokenId)
            .collect();

        group.bench_function(BenchmarkId::new("greedy_full_accept", vocab), |b| {
            b.iter(|| verify_greedy(black_box(all_match), rows).unwrap())
        });
        group.bench_function(BenchmarkId::new("greedy_reject_at_0", vocab), |b| {
            b.iter(|| verify_greedy(black_box(&first_wrong), rows).unwrap())
        });

        // Stochastic, draft truncated to top-k 50 (sparse q), target at temperature 0.8.
        let params = SamplingParams {
            temperature: 0.8,
            ..Default::default()
        };
        let draft_params = SamplingParams {
            top_k: 50,
            ..params
        };
        let q: Vec<Distribution> = (0..K)
            .map(|i| draft_params.distribution(rows.row(i)))
            .collect();
        let drafted: Vec<TokenId> = q.iter().map(|d| d.argmax()).collect();
        let mut rng = SessionRng::new(1);
        group.bench_function(BenchmarkId::new("stochastic_sparse_q", vocab), |b| {
            b.iter(|| {
                let mut target = FromLogits::new(rows, params);
                verify_stochastic(black_box(&drafted), &q, &mut target, &mut rng).unwrap()
            })
        });
        // Worst case: q = p, so every token is accepted and all k + 1 rows are computed.
        let q_equal: Vec<Distribution> = (0..K).map(|i| params.distribution(rows.row(i))).collect();
        group.bench_function(
            BenchmarkId::new("stochastic_full_accept_dense_q", vocab),
            |b| {
                b.iter(|| {
                    let mut target = FromLogits::new(rows, params);
                    verify_stochastic(black_box(&drafted), &q_equal, &mut target, &mut rng).unwrap()
                })
            },
        );
        // Rejection at position 0: one softmax, then the residual against a dense q.
        let q_wrong: Vec<Distribution> = (0..K)
            .map(|_| {
                let mut w = vec![1e-9f32; vocab];
                w[first_wrong[0] as usize] = 1.0;
                Distribution::dense(w).unwrap()
            })
            .collect();
        let wrong: Vec<TokenId> = vec![first_wrong[0]; K];
        group.bench_function(
            BenchmarkId::new("stochastic_reject_at_0_dense_q", vocab),
            |b| {
                b.iter(|| {
                    let mut target = FromLogits::new(rows, params);
                    verify_stochastic(black_box(&wrong), &q_wrong, &mut target, &mut rng).unwrap()
                })
            },
        );
        // A tree's worst row: three candidates at the root (top-50 q), all rejected: the
        // residual computed over the vocabulary twice, then the target's token drawn.
        let misses: Vec<TokenId> = (1..4)
            .map(|i| (argmaxes[0] + i) % vocab as TokenId)
            .collect();
        let root_rows = LogitRows::new(&logits[..4 * vocab], vocab).unwrap();
        let q_tree: Vec<Distribution> = (0..3)
            .map(|_| {
                let mut w: Vec<(TokenId, f32)> = misses.iter().map(|&t| (t, 1.0)).collect();
                w.push((argmaxes[0], 1e-3));
                Distribution::sparse(w, vocab).unwrap()
            })
            .collect();
        let parents = [0u32; 3];
        let tree = DraftTree::new(&misses, &parents).unwrap();
        group.bench_function(BenchmarkId::new("tree_3_candidates_rejected", vocab), |b| {
            b.iter(|| {
                let mut target = FromLogits::new(root_rows, params);
                verify_tree_stochastic(
                    black_box(tree),
                    &q_tree,
                    &mut target,
                    &mut rng,
                    Candidates::WithoutReplacement,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
