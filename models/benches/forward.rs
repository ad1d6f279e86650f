//! Forward throughput of the shipped tiny target: verification blocks of 5 tokens for
//! 1–64 sessions in one ragged batch (each session with its own 64-token context), one
//! session's token tree of 4–32 nodes beside a chain of as many tokens, and a 128-token
//! prefill. Reported as tokens per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use tandem_models::{BatchEntry, LanguageModel, LoadOptions, ModelSpec, Positions, SessionCache};

const BLOCK: usize = 5;
const CONTEXT: usize = 64;

fn ids(seed: u32, n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (seed.wrapping_mul(7919) + i * 104_729) % vocab)
        .collect()
}

fn bench(c: &mut Criterion) {
    let loaded = "builtin:tiny-target"
        .parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap();
    let model = &loaded.model;
    let vocab = model.info().vocab_size as u32;

    let mut group = c.benchmark_group("verify_block5");
    for batch in [1usize, 8, 32, 64] {
        let mut caches: Vec<_> = (0..batch)
            .map(|s| {
                let mut cache = model.new_cache();
                model
                    .forward(&mut cache, &ids(s as u32, CONTEXT, vocab), Positions::Last)
                    .unwrap();
                cache
            })
            .collect();
        let blocks: Vec<Vec<u32>> = (0..batch)
            .map(|s| ids(1000 + s as u32, BLOCK, vocab))
            .collect();
        group.throughput(Throughput::Elements((batch * BLOCK) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| {
                let mut entries: Vec<_> = caches
                    .iter_mut()
                    .zip(&blocks)
                    .map(|(cache, tokens)| BatchEntry {
                        cache,
                        tokens,
                        positions: Positions::All,
                        tree: None,
                    })
                    .collect();
                let out = model.forward_batch(&mut entries).unwrap();
                for e in entries.iter_mut() {
                    e.cache.truncate(CONTEXT).unwrap();
                }
                out
            })
        });
    }
    group.finish();

    // A verification pass against tree nodes: a binary tree (each row two candidates,
    // breadth first) and a chain of the same number of tokens, one session.
    let mut group = c.benchmark_group("verify_tree");
    let mut cache = model.new_cache();
    model
        .forward(&mut cache, &ids(3, CONTEXT, vocab), Positions::Last)
        .unwrap();
    for nodes in [4usize, 8, 16, 32] {
        let tokens = ids(2000 + nodes as u32, nodes, vocab);
        let binary: Vec<u32> = (0..nodes as u32).map(|i| i / 2).collect();
        let chain: Vec<u32> = (0..nodes as u32).collect();
        group.throughput(Throughput::Elements(nodes as u64));
        for (shape, parents) in [("binary", &binary), ("chain", &chain)] {
            group.bench_with_input(BenchmarkId::new(shape, nodes), &nodes, |b, _| {
                b.iter(|| {
                    let mut entries = [BatchEntry {
                        cache: &mut cache,
                        tokens: &tokens,
                        positions: Positions::All,
                        tree: Some(parents),
                    }];
                    let out = model.forward_batch(&mut entries).unwrap();
                    cache.truncate(CONTEXT).unwrap();
                    out
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("prefill");
    let prompt = ids(7, 128, vocab);
    group.throughput(Throughput::Elements(prompt.len() as u64));
    group.bench_function("128", |b| {
        b.iter(|| model.prefill(&mut model.new_cache(), &prompt).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
#[allow(unsafe_code)]
fn main() {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
