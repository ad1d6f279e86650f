//! Fitting the simulator to what a run recorded: per-position acceptance from a trace,
//! pass times from a real run's rounds.

use crate::*;

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
        matches: &[],
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
