//! The simulated backend: accepted length matches the analytical expectation for
//! i.i.d. acceptance, runs repeat exactly, and 1 000 clients × 256 tokens run through
//! the same tables and report.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tandem_decoding::analytic::expected_tokens_per_round;
use tandem_experiments::config::Config;
use tandem_experiments::run::cells::{self, Cell};
use tandem_experiments::run::{Progress, RunOptions, run};
use tandem_experiments::sim::{SimCell, run_cell};
use tandem_experiments::workload::load_prompts;

fn config(requests: usize, clients: usize, max_new: usize, strategies: &str) -> Config {
    let text = format!(
        r#"
name = "sim"
seed = 9
[simulation]
acceptance = 0.8
draft_ms_per_token = 72
pass_ms = 25
verify_extra_ms = 595
per_session_ms = 0.5
[workload]
prompts = "builtin:mixed"
requests = {requests}
clients = {clients}
max_new_tokens = {max_new}
[[network]]
name = "paper"
link = "delay=60"
{strategies}
"#
    );
    Config::parse(&text, Path::new("sim.toml")).unwrap()
}

fn run_sim(
    c: &Config,
    cell: &Cell,
) -> (
    Vec<tandem_experiments::results::RequestRow>,
    Vec<tandem_experiments::results::RoundRow>,
) {
    let prompts = load_prompts(&c.workload.prompts, Path::new(".")).unwrap();
    run_cell(&SimCell {
        spec: c.simulation.as_ref().unwrap(),
        cell,
        workload: &c.workload,
        prompts: &prompts,
        cost: &c.cost,
        seed: c.seed,
    })
}

#[test]
fn accepted_length_matches_the_analytical_expectation_within_five_percent() {
    let c = config(
        200,
        16,
        128,
        "[[strategy]]\nkind = \"speculative\"\nk = [2, 4, 8]",
    );
    for cell in cells::cells(&c) {
        let k = match cell.strategy {
            tandem_draft::Strategy::Speculative { k } => k,
            _ => unreachable!(),
        };
        let (_, rounds) = run_sim(&c, &cell);
        // Full-length blocks only: a request's last block may be cut to its length.
        let full: Vec<_> = rounds
            .iter()
            .filter(|r| r.kind == "verified" && r.drafted as usize == k)
            .collect();
        assert!(full.len() > 1000, "k = {k}: {} rounds", full.len());
        let measured =
            full.iter().map(|r| r.accepted as f64 + 1.0).sum::<f64>() / full.len() as f64;
        let expected = expected_tokens_per_round(0.8, k);
        let err = (measured - expected).abs() / expected;
        assert!(
            err < 0.05,
            "k = {k}: measured {measured:.3}, expected {expected:.3}"
        );
    }
}

#[test]
fn the_same_config_gives_the_same_rows() {
    let c = config(
        40,
        8,
        64,
        "[[strategy]]\nkind = \"speculative\"\nk = 4\n[[strategy]]\nkind = \"cloud_only\"",
    );
    for cell in cells::cells(&c) {
        // Debug text, so that NaN (no drafts in cloud-only) compares equal to itself.
        let once = format!("{:?}", run_sim(&c, &cell));
        assert_eq!(once, format!("{:?}", run_sim(&c, &cell)));
    }
}

#[test]
fn the_profile_shapes_the_times() {
    // One client, cloud-only: every token after the first is one decode pass (25 ms
    // + 0.5 ms for the one session), streamed; the first pays the RTT and a pass.
    let c = config(1, 1, 10, "[[strategy]]\nkind = \"cloud_only\"");
    let (requests, _) = run_sim(&c, &cells::cells(&c)[0]);
    let r = &requests[0];
    assert!((r.tpot_ms - 25.5).abs() < 1e-6, "{}", r.tpot_ms);
    assert!((r.ttft_ms - (120.0 + 25.5)).abs() < 0.01, "{}", r.ttft_ms);
    assert_eq!(r.tokens, 10);
}

struct Quiet;

impl Progress for Quiet {
    fn cell(&self, _: &Cell, _: usize) {}
    fn request_done(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_of_256_tokens_run_through_the_tables() {
    let c = config(
        1000,
        1000,
        256,
        "[[strategy]]\nkind = \"speculative\"\nk = 4",
    );
    let out = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        config_path: out.path().join("sim.toml"),
        out: out.path().to_path_buf(),
    };
    let t = Instant::now();
    let outcome = run(&c, &opts, Arc::new(AtomicBool::new(false)), Arc::new(Quiet))
        .await
        .unwrap();
    eprintln!(
        "1000 clients × 256 tokens simulated and written in {:?}",
        t.elapsed()
    );
    assert!(outcome.complete);
    assert_eq!(outcome.requests.len(), 1000);
    assert!(outcome.requests.iter().all(|r| r.tokens == 256));
    // Batched: the verifier served many sessions per pass.
    assert!(outcome.rounds.iter().map(|r| r.batch_size).max().unwrap() > 100);
    assert!(outcome.dir.join("requests.parquet").is_file());
}

#[test]
fn the_simulated_backend_refuses_what_it_cannot_run() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/quickstart.toml"
    ))
    .unwrap()
    .replace(
        "[models]",
        "[simulation]\nacceptance = 0.7\ndraft_ms_per_token = 1\npass_ms = 5\n\n[models]",
    );
    let e = Config::parse(&text, Path::new("q.toml")).unwrap_err();
    assert!(e.message.starts_with("strategy[3].kind:"), "{e}");
    assert!(e.message.contains("pipelined"), "{e}");
}
