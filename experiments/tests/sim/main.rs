//! The simulated backend, end to end: the cell as a model (`model`), fitted to what a
//! run recorded (`calibration`), under faults (`faults`) and with early exits
//! (`early_exit`). The configs and runners they share are here.

mod calibration;
mod early_exit;
mod faults;
mod model;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tandem_decoding::analytic::expected_tokens_per_round;
use tandem_draft::RoundKind;
use tandem_experiments::config::Config;
use tandem_experiments::plan::{self as cells, Cell};
use tandem_experiments::results::{RequestRow, RoundRow};
use tandem_experiments::run::{Progress, RunOptions, run};
use tandem_experiments::sim::{SimCell, run_cell};
use tandem_experiments::workload::load_prompts;

fn config(requests: usize, clients: usize, max_new: usize, strategies: &str) -> Config {
    config_with(requests, clients, max_new, strategies, "")
}

/// [`config`] with more `[simulation]` keys.
fn config_with(
    requests: usize,
    clients: usize,
    max_new: usize,
    strategies: &str,
    extra_sim: &str,
) -> Config {
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
{extra_sim}
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
        by_prompt: &[],
        matches: &[],
    })
}

/// The quickstart's grid (and adaptive and routed) on the simulated backend.
fn every_strategy(link: &str, extra_sim: &str) -> Config {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/quickstart.toml"
    ))
    .unwrap()
    .replace(
        "[models]\ndraft = \"builtin:tiny-draft\"\ntarget = \"builtin:tiny-target\"",
        &format!("[simulation]\nacceptance = 0.7\ndraft_ms_per_token = 4\npass_ms = 20\nper_session_ms = 1\n{extra_sim}"),
    )
    .replace("[[network]]\nname = \"lan\"\n\n[[network]]\nname = \"lte\"", &format!("[[network]]\nname = \"link\"\nlink = \"{link}\""))
    .replace("requests = 16", "requests = 8");
    let text = format!(
        "{text}\n[[strategy]]\nkind = \"adaptive\"\n\n[[strategy]]\nkind = \"routed\"\n[strategy.route]\ndefault = \"speculative:3\"\n"
    );
    Config::parse(&text, Path::new("q.toml")).unwrap()
}

fn by_strategy(c: &Config) -> Vec<(Cell, Vec<RequestRow>, Vec<RoundRow>)> {
    cells::cells(c)
        .into_iter()
        .map(|cell| {
            let (req, rounds) = run_sim(c, &cell);
            (cell, req, rounds)
        })
        .collect()
}

/// Progress that says nothing.
struct Quiet;

impl Progress for Quiet {
    fn cell(&self, _: &Cell, _: usize) {}
    fn request_done(&self) {}
}
