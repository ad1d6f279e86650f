//! The edge's real workload: SmolLM2-135M-Instruct Q4_1 (the GGUF llama.cpp's converter
//! wrote, fetched on first use) — one decode step, a 5-token verification block, and
//! verification passes of 4–32 tokens as a chain and as a binary token tree, after a
//! 128-token context; and a 128-token prefill. Reported as tokens per second.
//!
//! Threads: candle's pool takes `RAYON_NUM_THREADS` (all cores when unset); the group
//! names carry the count. `tools/bench-smollm2.sh` runs this at 1 and 2 threads beside
//! llama.cpp on the same file and prints the ratios.

use criterion::{Criterion, Throughput, criterion_group};
use tandem_models::fetch::SMOLLM2_135M_Q4_1;
use tandem_models::{BatchEntry, LanguageModel, LoadOptions, ModelSpec, Positions, SessionCache};

const CONTEXT: usize = 128;

fn ids(seed: u32, n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (seed.wrapping_mul(7919) + i * 104_729) % vocab)
        .collect()
}

fn bench(c: &mut Criterion) {
    let path = SMOLLM2_135M_Q4_1.fetch().expect("fetching SmolLM2");
    let loaded = ModelSpec::Gguf(path).load(&LoadOptions::default()).unwrap();
    let model = &loaded.model;
    let vocab = model.info().vocab_size as u32;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    let context = ids(7, CONTEXT, vocab);
    let mut cache = model.new_cache();
    model
        .forward(&mut cache, &context, Positions::Last)
        .unwrap();

    let mut group = c.benchmark_group(format!("smollm2_q4_1/threads={threads}"));
    for (name, n) in [("decode", 1usize), ("block5", 5)] {
        let block = ids(99, n, vocab);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = model.forward(&mut cache, &block, Positions::All).unwrap();
                cache.truncate(CONTEXT).unwrap();
                out
            })
        });
    }
    // Verification passes of as many tokens as a token tree's nodes: a chain, and a
    // binary tree (each row two candidates, breadth first) under the tree mask.
    for nodes in [4usize, 8, 9, 16, 32] {
        let block = ids(2000 + nodes as u32, nodes, vocab);
        let binary: Vec<u32> = (0..nodes as u32).map(|i| i / 2).collect();
        let chain: Vec<u32> = (0..nodes as u32).collect();
        group.throughput(Throughput::Elements(nodes as u64));
        for (shape, parents) in [("chain", &chain), ("binary", &binary)] {
            group.bench_function(format!("verify_{shape}/{nodes}"), |b| {
                b.iter(|| {
                    let mut entries = [BatchEntry {
                        cache: &mut cache,
                        tokens: &block,
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
    group.throughput(Throughput::Elements(CONTEXT as u64));
    group.bench_function("prefill128", |b| {
        b.iter(|| {
            model
                .forward(&mut model.new_cache(), &context, Positions::Last)
                .unwrap()
        })
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
