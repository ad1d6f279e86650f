//! Faults in simulation: an outage, a thermal shutdown, a full context or memory, and
//! the GPU's utilisation in the bill.

use crate::*;

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
