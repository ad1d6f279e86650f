//! The simulator at a datacenter's scale: one cell of N closed-loop clients × 256
//! tokens, speculative k = 4 over LTE, through the whole of `tandem run` (the
//! simulation, `requests.parquet` and `rounds.parquet`, the report), run once, with
//! its wall time and the process's peak memory. N is 100 000 unless given:
//! `cargo bench -p tandem-experiments --bench sim_scale -- 10000 20000`.
//!
//! The simulated verifier batches every session waiting into one pass (25 ms + 5 µs a
//! session + 595 ms to verify: a fleet taken as one verifier), so what is timed is the
//! clients' rounds, not a queue that never drains.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tandem_experiments::config::Config;
use tandem_experiments::plan::Cell;
use tandem_experiments::run::{Progress, RunOptions, run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every waiting session in one pass: 5 µs a session on top of the pass.
fn config(clients: usize) -> Config {
    let pass = format!(
        "per_session_ms = 0.005\nmax_batch_sessions = {clients}\nmax_batch_tokens = {}",
        clients * 8
    );
    common::config(clients, &pass, "kind = \"speculative\"\nk = 4")
}

/// Counts nothing: the run is timed as a whole.
struct Quiet;

impl Progress for Quiet {
    fn cell(&self, _: &Cell, _: usize) {}
    fn request_done(&self) {}
}

/// The process's peak resident memory, in MB (Linux).
fn peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    // Cargo passes `--bench`; sizes are the other arguments.
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("a client count"))
        .collect();
    if sizes.is_empty() {
        sizes.push(100_000);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    println!("| clients | rounds | wall s | peak MB |\n|---:|---:|---:|---:|");
    for clients in sizes {
        let out = tempfile::tempdir().expect("a temporary folder");
        let opts = RunOptions {
            config_path: "sim-scale.toml".into(),
            out: out.path().to_path_buf(),
        };
        let started = Instant::now();
        let outcome = runtime
            .block_on(run(
                &config(clients),
                &opts,
                Arc::new(AtomicBool::new(false)),
                Arc::new(Quiet),
            ))
            .expect("the run");
        let wall = started.elapsed().as_secs_f64();
        assert!(outcome.requests.iter().all(|r| r.error.is_empty()));
        println!(
            "| {clients} | {} | {wall:.1} | {:.0} |",
            outcome.rounds.len(),
            peak_mb().unwrap_or(f64::NAN)
        );
    }
}
