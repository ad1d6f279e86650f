//! Early exits in simulation: pre-drafting on provisional verdicts, and their settings
//! checked.

use crate::*;

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
