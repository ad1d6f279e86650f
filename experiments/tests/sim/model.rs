//! The simulated cell as a model: accepted length against the analytical expectation,
//! exact repeats, the profile's times, every strategy through the real draft loop, the
//! link model, gathering, an emulated device, and 1 000 clients through the tables.

use crate::*;

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
fn tree_accepted_length_and_acceptance_by_rank_match_the_model() {
    use tandem_decoding::TreeShape;
    use tandem_decoding::analytic::tree::expected_tree_accepted;
    let c = config_with(
        200,
        16,
        128,
        "[[strategy]]\nkind = \"tree\"\ntree = [\"1,1,1,1\", \"2,2,1\", \"4,1,1\", \"3,2,2,1\"]",
        "sibling_acceptance = [0.4, 0.2]",
    );
    // Rank 0 at the acceptance of its depth (0.8 everywhere), ranks 1 and 2 (and later)
    // at the siblings'.
    let a = vec![vec![0.8, 0.4, 0.2]];
    let mut pooled = [(0u64, 0u64); 3];
    for cell in cells::cells(&c) {
        let tandem_draft::Strategy::Tree {
            shape: TreeShape::Static(shape),
        } = cell.strategy
        else {
            unreachable!()
        };
        let (_, rounds) = run_sim(&c, &cell);
        // Whole trees only: a request's last tree may be cut to its length.
        let full: Vec<_> = rounds
            .iter()
            .filter(|r| {
                r.record.kind == RoundKind::Verified && r.record.drafted as usize == shape.nodes()
            })
            .collect();
        assert!(full.len() > 1000, "{shape}: {} rounds", full.len());
        assert!(
            full.iter()
                .all(|r| r.record.tree_depth as usize == shape.depth())
        );
        let measured =
            full.iter().map(|r| r.record.accepted as f64).sum::<f64>() / full.len() as f64;
        let expected = expected_tree_accepted(&shape.parents(), &a);
        let err = (measured - expected).abs() / expected;
        assert!(
            err < 0.05,
            "{shape}: measured {measured:.3}, expected {expected:.3}"
        );
        // A rank no row of the shape reaches is never tested.
        let parents = shape.parents();
        let widest = (0..=parents.len() as u32)
            .map(|row| parents.iter().filter(|&&p| p == row).count())
            .max()
            .unwrap_or(0);
        for r in &rounds {
            for (rank, c) in r.record.by_rank().iter().enumerate() {
                pooled[rank].0 += u64::from(c.tested);
                pooled[rank].1 += u64::from(c.accepted);
                assert!(rank < widest || c.tested == 0, "{shape}: rank {rank}");
            }
        }
    }
    // The rounds' counts by sibling rank, pooled over the shapes, give back the
    // acceptance each rank was given (rank 2 pools the third candidates and later ones),
    // within four standard errors.
    for (rank, want) in [0.8, 0.4, 0.2].into_iter().enumerate() {
        let (tested, accepted) = pooled[rank];
        let got = accepted as f64 / tested as f64;
        let bound = 4.0 * (want * (1.0 - want) / tested as f64).sqrt();
        assert!(
            (got - want).abs() < bound,
            "rank {rank}: accepted {got:.3} of {tested}, given {want}"
        );
    }
}

#[test]
fn a_simulated_dynamic_tree_is_the_likeliest_tree_and_accepts_as_the_model_says() {
    use tandem_decoding::analytic::best_tree::{grow_tree, level_order};
    use tandem_decoding::analytic::tree::expected_tree_accepted;
    let c = config_with(
        200,
        16,
        128,
        "[[strategy]]\nkind = \"tree\"\ntree = \"dynamic:12:5\"",
        "sibling_acceptance = [0.4, 0.2]",
    );
    // What a calibrated draft grows: the 12 nodes likeliest on the accepted path, at
    // most 5 deep (a chain of 5, then second and third candidates).
    let rates = [0.8, 0.4, 0.2];
    let grown: Vec<u32> = grow_tree(&rates, 12, 5).iter().map(|g| g.parent).collect();
    let shape = level_order(&grown);
    assert_eq!(shape.len(), 12);
    let (_, rounds) = run_sim(&c, &cells::cells(&c)[0]);
    // Whole trees only: near a request's end the tree is cut to the tokens still
    // wanted (as deep as they are, as many nodes).
    let full: Vec<_> = rounds
        .iter()
        .filter(|r| {
            r.record.kind == RoundKind::Verified
                && r.record.drafted == 12
                && r.record.tree_depth == 5
        })
        .collect();
    assert!(full.len() > 1000, "{} rounds", full.len());
    let measured = full.iter().map(|r| r.record.accepted as f64).sum::<f64>() / full.len() as f64;
    let expected = expected_tree_accepted(&shape, &[rates.to_vec()]);
    assert!(
        (measured - expected).abs() / expected < 0.05,
        "measured {measured:.3}, expected {expected:.3}"
    );
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
