//! The simulated backend: accepted length matches the analytical expectation for
//! i.i.d. acceptance, runs repeat exactly, and 1 000 clients × 256 tokens run through
//! the same tables and report.

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
            .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted as usize == k)
            .collect();
        assert!(full.len() > 1000, "k = {k}: {} rounds", full.len());
        let measured = full
            .iter()
            .map(|r| r.record.accepted as f64 + 1.0)
            .sum::<f64>()
            / full.len() as f64;
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
    // Every strategy, over a link with jitter and loss.
    let c = every_strategy("lte", "gather_ms = 2");
    for cell in cells::cells(&c) {
        // Debug text, so that NaN (no drafts in cloud-only) compares equal to itself.
        let once = format!("{:?}", run_sim(&c, &cell));
        assert_eq!(once, format!("{:?}", run_sim(&c, &cell)), "{}", cell.name);
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
    assert!(
        outcome
            .rounds
            .iter()
            .map(|r| r.record.batch_size)
            .max()
            .unwrap()
            > 100
    );
    assert!(outcome.dir.join("requests.parquet").is_file());
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

#[test]
fn every_strategy_runs_through_the_real_draft_loop_and_verified_output_is_the_targets() {
    let c = every_strategy("delay=20", "");
    let cells = by_strategy(&c);
    let names: Vec<&str> = cells.iter().map(|(c, ..)| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cloud_only",
            "edge_only",
            "speculative(k=2)",
            "speculative(k=4)",
            "pipelined(k=4)",
            "adaptive(+2/-1:8)",
            "routed"
        ]
    );
    let cloud = &cells[0].1;
    for (cell, requests, rounds) in &cells {
        assert_eq!(requests.len(), 8, "{}", cell.name);
        for (r, base) in requests.iter().zip(cloud) {
            assert_eq!(r.error, "", "{}", cell.name);
            assert_eq!(r.tokens, 48, "{}", cell.name);
            if cell.name == "edge_only" {
                assert_eq!((r.bytes_up, r.bytes_down, r.unverified_tokens), (0, 0, 48));
                assert_ne!(r.output_ids, base.output_ids, "a 0.7 draft alone strays");
            } else {
                // The verifier keeps only the target's tokens, whatever the strategy.
                assert_eq!(
                    r.output_ids, base.output_ids,
                    "{} request {}",
                    cell.name, r.request
                );
                assert_eq!(r.unverified_tokens, 0);
                assert!(r.bytes_up > 0 && r.bytes_down > 0);
            }
        }
        let stale = rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Stale)
            .count();
        let ahead = rounds
            .iter()
            .filter(|r| r.record.ahead && r.record.kind == RoundKind::Verified)
            .count();
        if cell.name.starts_with("pipelined") {
            // Guesses that came true were verified ahead; the others were dropped.
            assert!(ahead > 0 && stale > 0, "ahead {ahead}, stale {stale}");
        } else {
            assert_eq!(ahead + stale, 0, "{}", cell.name);
        }
        if cell.name.starts_with("adaptive") {
            let ks: std::collections::BTreeSet<u32> = rounds
                .iter()
                .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
                .map(|r| r.record.k)
                .collect();
            assert!(ks.len() > 2, "the policy moved k: {ks:?}");
        }
        if cell.name == "routed" {
            // Private prompts never leave the edge; the rest take the default tier.
            for r in requests {
                let private = r.tag == "private";
                assert_eq!(r.tier == "edge_only", private, "{r:?}");
                assert_eq!(r.bytes_up == 0, private);
            }
            assert!(requests.iter().any(|r| r.tier == "speculative(k=3)"));
        }
    }
}

#[test]
fn jitter_and_loss_reach_each_round_through_the_link_model() {
    // Jitter: every round trip lies within 2 × (20 ± 5) ms, and they differ.
    let c = every_strategy("delay=20,jitter=5", "");
    let (_, _, rounds) = &by_strategy(&c)[3];
    let net: Vec<u64> = rounds
        .iter()
        .filter(|r| r.record.kind == RoundKind::Verified)
        .map(|r| r.record.network_ns)
        .collect();
    assert!(
        net.iter().all(|&n| (30_000_000..=50_000_000).contains(&n)),
        "{net:?}"
    );
    assert!(net.iter().collect::<std::collections::BTreeSet<_>>().len() > net.len() / 2);

    // Loss: a round pays a probe timeout (RTT + 1 ms + 25 ms ack delay) for each of
    // its two messages that is lost, so P(round slower than the RTT) = 1 − (1 − p)².
    let p = 0.2;
    let c = every_strategy(&format!("delay=20,loss={p}"), "");
    let slow_share = |rounds: &[RoundRow]| {
        let v: Vec<&RoundRow> = rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Verified)
            .collect();
        let slow = v
            .iter()
            .filter(|r| r.record.network_ns > 41_000_000)
            .count();
        (slow as f64 / v.len() as f64, v.len() as f64)
    };
    let mut rounds = Vec::new();
    for (_, _, r) in by_strategy(&c).into_iter().skip(2).take(2) {
        rounds.extend(r);
    }
    let (share, n) = slow_share(&rounds);
    let want = 1.0 - (1.0 - p) * (1.0 - p);
    let sd = (want * (1.0 - want) / n).sqrt();
    assert!(
        (share - want).abs() < 4.0 * sd,
        "{share} vs {want} over {n} rounds"
    );
    for r in rounds
        .iter()
        .filter(|r| r.record.kind == RoundKind::Verified)
    {
        assert!(
            r.record.network_ns >= 40_000_000,
            "never faster than the RTT"
        );
    }
}

#[test]
fn a_gather_window_fills_passes() {
    // Eight clients: without a window a pass takes whoever is there; with one longer
    // than a round, it waits until every open session has its block in.
    let mean_batch = |gather: &str| {
        let c = config(64, 8, 64, "[[strategy]]\nkind = \"speculative\"\nk = 4").clone();
        let mut c = c;
        c.simulation.as_mut().unwrap().gather_ms = gather.parse().unwrap();
        let (_, rounds) = run_sim(&c, &cells::cells(&c)[0]);
        let v: Vec<f64> = rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
            .map(|r| f64::from(r.record.batch_size))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (none, window) = (mean_batch("0"), mean_batch("5000"));
    assert!(window > none + 1.0, "with window {window}, without {none}");
    assert!(window > 7.0, "{window}");
}

#[test]
fn an_emulated_device_stretches_the_simulated_draft() {
    let mut c = every_strategy("delay=20", "");
    c.devices = vec![toml::from_str("name = \"phone\"\ndraft_slowdown = 3").unwrap()];
    let cell = cells::cells(&c)
        .into_iter()
        .find(|c| c.name == "edge_only")
        .unwrap();
    let (_, rounds) = run_sim(&c, &cell);
    // 4 ms a token on the reference device, 3 × slower on the phone.
    assert!(
        rounds.iter().all(|r| r.record.draft_ns == 12_000_000),
        "{:?}",
        rounds[0]
    );
}

/// Rounds whose acceptance depends on the position: position i is accepted with
/// probability `p[i]` once reached.
fn trace(p: &[f64], rounds: usize) -> Vec<tandem_experiments::results::RoundRow> {
    let mut rng = tandem_decoding::SessionRng::new(77);
    (0..rounds)
        .map(|i| tandem_experiments::results::RoundRow {
            record: tandem_draft::RoundRecord {
                round: i as u32,
                kind: RoundKind::Verified,
                k: p.len() as u32,
                drafted: p.len() as u32,
                accepted: p.iter().take_while(|&&q| rng.uniform() < q).count() as u32,
                ..Default::default()
            },
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
        let reached = rows
            .iter()
            .filter(|r| r.record.accepted as usize >= i)
            .count() as f64;
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
        by_prompt: &[],
    });
    let simulated = tandem_experiments::sim::acceptance_by_position(&rounds);
    for i in 0..4 {
        let reached = rounds
            .iter()
            .filter(|r| {
                r.record.kind == RoundKind::Verified
                    && r.record.drafted as usize > i
                    && r.record.accepted as usize >= i
            })
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

#[tokio::test]
async fn pass_times_fitted_from_a_real_runs_rounds_time_the_simulation() {
    // A "measured" run: passes timed 10 ms + 2 ms/session + 0.5 ms/token (+100 ms
    // when verifying), each pass seen by every session in it.
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for (i, s) in [1u32, 2, 4, 8, 16].iter().cycle().take(60).enumerate() {
        let verifies = i % 3 != 0;
        let t = if verifies { 5 * s } else { *s };
        let ms =
            10.0 + 2.0 * f64::from(*s) + 0.5 * f64::from(t) + if verifies { 100.0 } else { 0.0 };
        for _ in 0..*s {
            rows.push(RoundRow {
                key: std::sync::Arc::new(tandem_experiments::results::CellKey {
                    cell: i as u32,
                    ..Default::default()
                }),
                request: 0,
                record: tandem_draft::RoundRecord {
                    kind: if verifies {
                        RoundKind::Verified
                    } else {
                        RoundKind::Cloud
                    },
                    drafted: if verifies { 4 } else { 0 },
                    draft_ns: if verifies { 12_000_000 } else { 0 }, // 3 ms a token
                    forward_ns: (ms * 1e6) as u64,
                    batch_size: *s,
                    batch_tokens: t,
                    ..Default::default()
                },
            });
        }
    }
    tandem_experiments::results::write_parquet(
        &dir.path().join("gpu-rounds.parquet"),
        &mut tandem_experiments::results::rounds_frame(&rows).unwrap(),
    )
    .unwrap();
    let text = |profile: &str| {
        format!(
            "name = \"fitted\"\n[simulation]\nacceptance = 0.8\n{profile}\n\
             [workload]\nprompts = \"builtin:mixed\"\nrequests = 2\nclients = 1\nmax_new_tokens = 11\n\
             [[network]]\nname = \"lan\"\nlink = \"delay=0\"\n[[strategy]]\nkind = \"cloud_only\"\n"
        )
    };
    let both = text("profile_trace = \"gpu-rounds.parquet\"\nper_token_ms = 1");
    let e = Config::parse(&both, &dir.path().join("both.toml")).unwrap_err();
    assert!(e.message.starts_with("simulation.per_token_ms:"), "{e}");
    assert!(e.message.contains("not both"), "{e}");

    let path = dir.path().join("fitted.toml");
    let c = Config::parse(&text("profile_trace = \"gpu-rounds.parquet\""), &path).unwrap();
    let opts = RunOptions {
        config_path: path,
        out: dir.path().join("out"),
    };
    let outcome = run(&c, &opts, Arc::new(AtomicBool::new(false)), Arc::new(Quiet))
        .await
        .unwrap();
    // One client, cloud-only: each token after the first is one decode pass of one
    // session and one token, timed as fitted: 10 + 2 + 0.5 ms.
    for r in &outcome.requests {
        assert!((r.tpot_ms - 12.5).abs() < 1e-3, "{}", r.tpot_ms);
    }
    // The folder's config says what was simulated: the fitted numbers, no trace.
    let recorded = std::fs::read_to_string(outcome.dir.join("config.toml")).unwrap();
    assert!(recorded.starts_with("# simulation pass times fitted from gpu-rounds.parquet"));
    let again = Config::parse(&recorded, &outcome.dir.join("config.toml")).unwrap();
    let sim = again.simulation.unwrap();
    assert_eq!(sim.profile_trace, None);
    let near = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() < 1e-6;
    assert!(
        near(sim.pass_ms, 10.0) && near(sim.per_session_ms, 2.0),
        "{sim:?}"
    );
    assert!(
        near(sim.per_token_ms, 0.5) && near(sim.verify_extra_ms, 100.0),
        "{sim:?}"
    );
}

#[test]
fn an_outage_sends_drafting_edges_on_alone_and_back_and_fails_cloud_only() {
    let text = r#"
name = "outage"
[simulation]
acceptance = 0.8
draft_ms_per_token = 40
pass_ms = 20
outages = [{ at_s = 1.0, for_s = 1.0 }]
[workload]
prompts = "builtin:mixed"
requests = 12
clients = 4
max_new_tokens = 64
[[network]]
name = "link"
link = "delay=20"
[[strategy]]
kind = "speculative"
k = 4
[[strategy]]
kind = "cloud_only"
"#;
    let c = Config::parse(text, Path::new("outage.toml")).unwrap();
    let all = by_strategy(&c);
    let (_, spec, spec_rounds) = &all[0];
    let in_flight = |r: &RequestRow| r.start_s < 1.0 && r.start_s * 1e3 + r.e2e_ms > 1000.0;
    let mut hit = 0;
    for r in spec {
        // Nothing is lost: every request gets all its tokens.
        assert_eq!((r.error.as_str(), r.tokens), ("", 64), "{r:?}");
        if in_flight(r) {
            hit += 1;
            assert!(r.fallbacks >= 1 && r.unverified_tokens > 0, "{r:?}");
            // Back with the verifier: verified rounds follow the ones drafted alone.
            let rounds: Vec<&RoundRow> = spec_rounds
                .iter()
                .filter(|x| x.request == r.request)
                .collect();
            let last_alone = rounds
                .iter()
                .rposition(|x| x.record.kind == RoundKind::Edge)
                .unwrap();
            assert!(
                rounds[last_alone..]
                    .iter()
                    .any(|x| x.record.kind == RoundKind::Verified),
                "request {} never re-joined",
                r.request
            );
        }
        if r.start_s >= 2.0 {
            assert_eq!((r.fallbacks, r.unverified_tokens), (0, 0), "{r:?}");
        }
    }
    assert_eq!(hit, 4, "each client had a request in flight at 1 s");
    // Cloud-only has nothing to go on with: its requests in flight fail, with a reason.
    let (_, cloud, _) = &all[1];
    let failed: Vec<&RequestRow> = cloud.iter().filter(|r| !r.error.is_empty()).collect();
    assert!(!failed.is_empty());
    for r in &failed {
        assert!(r.error.contains("outage"), "{}", r.error);
        assert!(r.start_s < 2.0, "{r:?}");
    }
    assert!(
        cloud
            .iter()
            .filter(|r| r.start_s >= 2.0)
            .all(|r| r.error.is_empty() && r.tokens == 64)
    );
}

/// An owned GPU at half utilisation bills each request twice its forward time: the
/// same simulated run costs exactly twice as much in the cloud.
#[test]
fn gpu_utilisation_divides_the_billed_forward_time() {
    let strategies = "[[strategy]]\nkind = \"speculative\"\nk = 4\n";
    let cloud_cost = |utilisation: &str| -> f64 {
        let mut c = config(4, 2, 32, strategies);
        let text = format!("gpu_dollars_per_hour = 3.0\n{utilisation}");
        c.cost = toml::from_str(&text).unwrap();
        let cell = cells::cells(&c).remove(0);
        run_sim(&c, &cell).0.iter().map(|r| r.cost_cloud_usd).sum()
    };
    let full = cloud_cost("");
    let half = cloud_cost("gpu_utilisation = 0.5");
    assert!(full > 0.0);
    assert!((half / full - 2.0).abs() < 1e-9, "{half} vs {full}");
}

/// A simulated device that shuts down after 0.5 s of drafting hands its requests to the
/// cloud (the first mid-way): counted and timed per request, tabled in the report, and
/// the requests still end at full length, every token verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thermal_shutdown_sends_requests_to_the_cloud_in_simulation() {
    let mut c = config(8, 1, 32, "[[strategy]]\nkind = \"speculative\"\nk = 4");
    let device = "name = \"hot\"\nshutdown_after_s = 0.5";
    c.devices = vec![toml::from_str(device).unwrap()];
    let c = Config::parse(&toml::to_string(&c).unwrap(), Path::new("sim.toml")).unwrap();
    // A memory bound needs the simulated cache's size: refused, not ignored.
    let mut bounded = c.clone();
    bounded.devices = vec![toml::from_str("name = \"small\"\nkv_budget_mb = 1").unwrap()];
    let err =
        Config::parse(&toml::to_string(&bounded).unwrap(), Path::new("sim.toml")).unwrap_err();
    assert!(err.to_string().contains("draft_kv_kib_per_token"), "{err}");
    let out = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        config_path: out.path().join("sim.toml"),
        out: out.path().to_path_buf(),
    };
    let outcome = run(&c, &opts, Arc::new(AtomicBool::new(false)), Arc::new(Quiet))
        .await
        .unwrap();
    // 72 ms a drafted token: the first request's drafting passes 0.5 s.
    let moved: Vec<&RequestRow> = outcome
        .requests
        .iter()
        .filter(|r| r.to_cloud == 1)
        .collect();
    assert_eq!(
        moved.len(),
        8,
        "one client's device: every request after it shut down"
    );
    for r in &outcome.requests {
        assert_eq!(r.tokens, 32);
        assert!(r.error.is_empty(), "{}", r.error);
        assert_eq!(r.unverified_tokens, 0);
    }
    for r in &moved {
        assert_eq!(r.to_cloud_reason, "thermal shutdown");
    }
    // The first request moved mid-way, after drafting for the device's 0.5 s.
    let first = outcome
        .requests
        .iter()
        .min_by(|a, b| a.start_s.total_cmp(&b.start_s))
        .unwrap();
    assert!(
        first.drafted > 0 && first.to_cloud_at_ms >= 500.0,
        "{first:?}"
    );
    let report = std::fs::read_to_string(outcome.dir.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("| 8 | 0 | 0 (0.0 %) | {} |", moved.len())),
        "{report}"
    );
    // Read back from the results folder, the columns are the same.
    let back =
        tandem_experiments::results::read_parquet(&outcome.dir.join("requests.parquet")).unwrap();
    let rows = tandem_experiments::results::read::requests(&back).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.to_cloud).sum::<u32>() as usize,
        moved.len()
    );
}

/// Speculative and early-exit cells (k = 4) at one client over the paper's link, the
/// provisional verdict `at` of the way through a pass that agrees with probability `p`.
fn early_exit_cells(at: f64, p: f64) -> Vec<(Cell, Vec<RequestRow>, Vec<RoundRow>)> {
    let c = config_with(
        6,
        1,
        64,
        "[[strategy]]\nkind = \"speculative\"\nk = 4\n[[strategy]]\nkind = \"early_exit\"\nk = 4",
        &format!("early_exit_at = {at}\nearly_exit_agreement = {p}"),
    );
    by_strategy(&c)
}

fn mean_tpot(requests: &[RequestRow]) -> f64 {
    requests.iter().map(|r| r.tpot_ms).sum::<f64>() / requests.len() as f64
}

#[test]
fn early_exits_pre_draft_in_simulation_and_commit_only_verdicts() {
    for p in [1.0, 0.5, 0.0] {
        let cells = early_exit_cells(0.5, p);
        let [(_, spec, _), (cell, early, rounds)] = &cells[..] else {
            panic!("two cells")
        };
        assert_eq!(cell.name, "early_exit(k=4)");
        for (a, b) in early.iter().zip(spec) {
            assert_eq!(a.output_ids, b.output_ids, "only verdicts commit (p = {p})");
            assert_eq!(a.error, "");
        }
        let heard: Vec<_> = rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Verified && r.record.provisional_ns > 0)
            .collect();
        let agreed = heard.iter().filter(|r| r.record.provisional_agreed).count();
        let share = agreed as f64 / heard.len() as f64;
        assert!(
            heard.len() > 50,
            "{} rounds heard a provisional verdict",
            heard.len()
        );
        // Seeded draws: the share is within a few binomial standard errors of p.
        let se = (p * (1.0 - p) / heard.len() as f64).sqrt();
        assert!((share - p).abs() <= 4.0 * se + 1e-9, "p = {p}: {share}");
        let kept = rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Verified && r.record.ahead)
            .count();
        assert_eq!(kept > 0, p > 0.0, "p = {p}: {kept} kept");
        // With every provisional verdict right, each round's drafting (288 ms) hides
        // behind the rest of the pass and the way back (310 + 60 ms): about a quarter
        // of the 1 028 ms round.
        let (t_spec, t_early) = (mean_tpot(spec), mean_tpot(early));
        if p == 1.0 {
            assert!(t_early < 0.85 * t_spec, "{t_early} vs {t_spec}");
        }
    }
}

#[test]
fn early_exit_settings_are_checked() {
    let text = |extra: &str| {
        format!(
            "name = \"x\"\n[simulation]\nacceptance = 0.8\ndraft_ms_per_token = 1\npass_ms = 1\n{extra}\n[workload]\nprompts = \"builtin:mixed\"\nrequests = 1\nmax_new_tokens = 8\n[[network]]\nname = \"lan\"\n[[strategy]]\nkind = \"early_exit\"\nk = 2\n"
        )
    };
    let refused = |extra: &str, strategy: &str| {
        let t = text(extra) + strategy;
        Config::parse(&t, Path::new("x.toml"))
            .unwrap_err()
            .to_string()
    };
    let e = refused("", "");
    assert!(e.contains("early_exit_layers"), "{e}");
    let e = refused(
        "early_exit_at = 0.5\nearly_exit_agreement = 1",
        "exit_layer = 3\n",
    );
    assert!(e.contains("no exit after layer 3"), "{e}");
    let mut c = config_with(
        1,
        1,
        8,
        "[[strategy]]\nkind = \"early_exit\"\nk = 2",
        "early_exit_at = 0.5\nearly_exit_agreement = 1",
    );
    let sim = c.simulation.as_mut().unwrap();
    sim.early_exit_at = Some(1.0);
    assert!(sim.check().unwrap_err().0 == "early_exit_at");
    (sim.early_exit_at, sim.early_exit_agreement) = (None, Some(0.5));
    assert!(sim.check().unwrap_err().0 == "early_exit_agreement");
    (sim.early_exit_at, sim.early_exit_agreement) = (Some(0.5), None);
    let e = sim.check().unwrap_err();
    assert!(
        e.0 == "early_exit_agreement" && e.1.contains("acceptance_trace"),
        "{e:?}"
    );
}

/// A simulated draft whose context fills, and one whose cache outgrows its device's
/// memory, hand their requests to the cloud at the same place, losing no token.
#[test]
fn a_full_context_and_a_full_memory_send_requests_to_the_cloud_in_simulation() {
    let strategies =
        "[[strategy]]\nkind = \"speculative\"\nk = 4\n[[strategy]]\nkind = \"cloud_only\"";
    // Prompts of 32 tokens, 48 new: the draft can hold 32 + 20 = 52 tokens.
    let full = config_with(4, 1, 48, strategies, "draft_context = 52");
    let mut small = config_with(4, 1, 48, strategies, "draft_kv_kib_per_token = 20");
    small.devices = vec![toml::from_str("name = \"small\"\nkv_budget_mb = 1.015625").unwrap()];
    let small = Config::parse(&toml::to_string(&small).unwrap(), Path::new("sim.toml")).unwrap();
    for (c, reason) in [(&full, "context full"), (&small, "out of memory")] {
        let cells = by_strategy(c);
        let [(_, spec, _), (_, cloud, _)] = &cells[..] else {
            panic!("two cells")
        };
        for (r, base) in spec.iter().zip(cloud) {
            assert_eq!(
                (r.to_cloud, r.to_cloud_reason.as_str()),
                (1, reason),
                "{r:?}"
            );
            assert!(r.error.is_empty() && r.unverified_tokens == 0, "{r:?}");
            assert_eq!(
                r.output_ids, base.output_ids,
                "{reason}: no token lost or repeated"
            );
            // It drafted until its 52 tokens were reached, then the cloud went on.
            assert!(r.drafted > 0 && r.to_cloud_at_ms > 0.0, "{r:?}");
        }
    }
}
