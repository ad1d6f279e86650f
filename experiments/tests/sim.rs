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
    let spec = c.simulation.as_ref().unwrap();
    run_cell(&SimCell {
        spec,
        cell,
        workload: &c.workload,
        prompts: &prompts,
        cost: &c.cost,
        seed: c.seed,
        acceptance: &spec.acceptance_curve(Path::new(".")).unwrap(),
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

/// Rounds whose acceptance depends on the position: position i is accepted with
/// probability `p[i]` once reached.
fn trace(p: &[f64], rounds: usize) -> Vec<tandem_experiments::results::RoundRow> {
    let mut rng = tandem_decoding::SessionRng::new(77);
    (0..rounds)
        .map(|i| tandem_experiments::results::RoundRow {
            round: i as u32,
            kind: "verified".into(),
            k: p.len() as u32,
            drafted: p.len() as u32,
            accepted: p.iter().take_while(|&&q| rng.uniform() < q).count() as u32,
            ..Default::default()
        })
        .collect()
}

#[test]
fn a_recorded_trace_sets_the_acceptance_of_each_position() {
    let p = [0.9, 0.6, 0.3, 0.5];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rounds.parquet");
    let rows = trace(&p, 20_000);
    tandem_experiments::results::write_parquet(
        &file,
        &mut tandem_experiments::results::rounds_frame(&rows).unwrap(),
    )
    .unwrap();
    let text = r#"
name = "traced"
[simulation]
acceptance_trace = "rounds.parquet"
draft_ms_per_token = 1
pass_ms = 5
[workload]
prompts = "builtin:mixed"
requests = 400
clients = 16
max_new_tokens = 200
[[network]]
name = "lan"
[[strategy]]
kind = "speculative"
k = 4
"#;
    let c = Config::parse(text, &dir.path().join("traced.toml")).unwrap();
    let spec = c.simulation.as_ref().unwrap();
    let curve = spec.acceptance_curve(dir.path()).unwrap();
    // Each estimate rests on thousands of reached positions: within 4 sd of the truth.
    for (i, (&est, &truth)) in curve.iter().zip(&p).enumerate() {
        let reached = rows.iter().filter(|r| r.accepted as usize >= i).count() as f64;
        let sd = (truth * (1.0 - truth) / reached).sqrt();
        assert!(
            (est - truth).abs() < 4.0 * sd,
            "position {i}: {est} vs {truth}"
        );
    }
    // The simulation then accepts each position at the trace's rate.
    let prompts = load_prompts(&c.workload.prompts, Path::new(".")).unwrap();
    let (_, rounds) = run_cell(&SimCell {
        spec,
        cell: &cells::cells(&c)[0],
        workload: &c.workload,
        prompts: &prompts,
        cost: &c.cost,
        seed: c.seed,
        acceptance: &curve,
    });
    let simulated = tandem_experiments::sim::acceptance_by_position(&rounds);
    for i in 0..4 {
        let reached = rounds
            .iter()
            .filter(|r| r.kind == "verified" && r.drafted as usize > i && r.accepted as usize >= i)
            .count() as f64;
        let sd = (curve[i] * (1.0 - curve[i]) / reached).sqrt();
        assert!(
            (simulated[i] - curve[i]).abs() < 4.0 * sd + 1e-9,
            "position {i}: simulated {} vs trace {}",
            simulated[i],
            curve[i]
        );
    }
    // A missing trace is named.
    let e = spec
        .acceptance_curve(Path::new("/nonexistent"))
        .unwrap_err();
    assert!(e.contains("/nonexistent/rounds.parquet"), "{e}");
}
