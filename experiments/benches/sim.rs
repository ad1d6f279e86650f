//! The simulator's speed: one cell of `clients` closed-loop clients × 256 tokens,
//! speculative k = 4 over a link with jitter and loss, every request through the real
//! draft loop on the virtual clock (simulated requests per second of wall time is the
//! figure to watch). Run with `cargo bench -p tandem-experiments --bench sim`.

mod common;

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tandem_experiments::config::Config;
use tandem_experiments::plan as cells;
use tandem_experiments::sim::{SimCell, run_cell};
use tandem_experiments::workload::load_prompts;

fn config(clients: usize, strategy: &str) -> Config {
    common::config(clients, "per_session_ms = 0.5", strategy)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim_cell_256_tokens");
    for (name, strategy) in [
        ("speculative_k4", "kind = \"speculative\"\nk = 4"),
        ("cloud_only", "kind = \"cloud_only\""),
    ] {
        for clients in [64usize, 1000] {
            let cfg = config(clients, strategy);
            let prompts = load_prompts(&cfg.workload.prompts, Path::new(".")).unwrap();
            let spec = cfg.simulation.as_ref().unwrap();
            let acceptance = spec.acceptance_curve(Path::new(".")).unwrap();
            let cell = cells::cells(&cfg).remove(0);
            g.throughput(Throughput::Elements(clients as u64));
            g.bench_function(BenchmarkId::new(name, clients), |b| {
                b.iter(|| {
                    run_cell(&SimCell {
                        spec,
                        cell: &cell,
                        workload: &cfg.workload,
                        prompts: &prompts,
                        cost: &cfg.cost,
                        seed: cfg.seed,
                        acceptance: &acceptance,
                        by_prompt: &[],
                        matches: &[],
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
