//! `tandem resimulate` on committed real runs (real models, real sockets, this
//! machine): fitted to the quickstart's own records, the simulator must give every
//! cell's TPOT p50 within the bound, and the folder gains its table, file and figure;
//! fitted to the tree run's, its static tree must accept and pace as measured.
//!
//! The measured side is fixed (a committed folder), so this fails when the simulator
//! or its fit drifts, not when this machine is busy.

use std::path::{Path, PathBuf};

use tandem_experiments::resimulate::compare::{METRICS, TPOT_BOUND};
use tandem_experiments::resimulate::{CSV, TOML, resimulate};

/// The committed run `results/<name>` (a run's folder, or a config's: its first run),
/// copied to a scratch folder (the test writes into it).
fn committed_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../results")
        .join(name);
    let run = if root.join("rounds.parquet").exists() {
        root
    } else {
        std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("results/{name} is committed: {e}"))
            .map(|e| e.unwrap().path())
            .find(|p| p.join("rounds.parquet").exists())
            .unwrap_or_else(|| panic!("a committed {name} run with rounds.parquet"))
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(dir.join("plots")).unwrap();
    for f in [
        "config.toml",
        "manifest.json",
        "requests.parquet",
        "rounds.parquet",
    ] {
        std::fs::copy(run.join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

#[test]
fn the_quickstart_resimulates_within_the_bound() {
    let (_tmp, dir) = committed_copy("quickstart");
    let r = resimulate(&dir).unwrap();
    assert_eq!(r.cells.len(), 10, "every cell of the quickstart grid");
    assert_eq!(r.links.len(), 2, "one fit per link");
    for c in &r.cells {
        let e = c.tpot_error();
        assert!(
            e.abs() <= TPOT_BOUND,
            "{} @ {}: TPOT p50 {:.3} ms measured, {:.3} ms simulated ({:+.1} %)",
            c.strategy,
            c.network,
            c.tpot().0,
            c.tpot().1,
            e * 100.0
        );
    }
    // A greedy run's draft outcomes are replayed where its blocks tested them: every
    // drafting cell's simulated acceptance is the measured one.
    let replayed = r.replayed.expect("the quickstart is greedy");
    assert!(replayed > 0.9, "{replayed}");
    let acceptance = METRICS.iter().position(|m| m.stem == "acceptance").unwrap();
    for c in r
        .cells
        .iter()
        .filter(|c| c.measured[acceptance].is_finite())
    {
        assert_eq!(
            c.measured[acceptance], c.simulated[acceptance],
            "{} @ {}",
            c.strategy, c.network
        );
    }
    // The same simulation twice gives the same figures, to the byte.
    let first = std::fs::read(dir.join(CSV)).unwrap();
    resimulate(&dir).unwrap();
    assert_eq!(std::fs::read(dir.join(CSV)).unwrap(), first);
    // The folder's report now has the table and the figure.
    tandem_experiments::report::from_dir(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Re-simulation"), "{md}");
    assert!(md.contains("plots/resimulation.png"), "{md}");
    let csv = std::fs::read_to_string(dir.join(CSV)).unwrap();
    let header = csv.lines().next().unwrap();
    for col in [
        "tpot_ms_p50_measured",
        "tpot_ms_p50_simulated",
        "ttft_ms_error",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let fitted = std::fs::read_to_string(dir.join(TOML)).unwrap();
    assert!(fitted.contains("[link.simulation]"), "{fitted}");
}

/// Re-simulating the committed run `name` is refused with an error that says `why`,
/// and nothing is written.
fn assert_refused(name: &str, why: &str) {
    let (_tmp, dir) = committed_copy(name);
    let e = resimulate(&dir).unwrap_err().to_string();
    assert!(e.contains(why), "{e}");
    assert!(!dir.join(CSV).exists(), "nothing written");
}

#[test]
fn a_simulated_run_is_refused() {
    assert_refused("sim-links", "this run is a simulation");
}

/// A tree run recorded before rounds counted candidates by sibling rank cannot be
/// re-simulated (its later siblings' acceptance is unknown): refused, saying why.
#[test]
fn a_tree_run_without_counts_by_sibling_rank_is_refused() {
    assert_refused(
        "smollm2-trees/20261202T042522Z",
        "no counts by sibling rank",
    );
}

/// The committed tree run (the tiny pair over four links: chains, a static tree, a
/// dynamic one and one sized by the link) re-simulated: the acceptance of a row's later
/// candidates is the run's own (its rank counts), and the static tree (drafted as the
/// run did, its first choices replayed from the chains) and the dynamic one (drafted as
/// the tree a calibrated draft grows on average) accept and pace as measured.
#[test]
fn a_tree_run_resimulates_with_its_measured_sibling_acceptance() {
    let (_tmp, dir) = committed_copy("trees");
    let r = resimulate(&dir).unwrap();
    let rounds = tandem_experiments::report::read_dir(&dir).unwrap().rounds;
    let (mut tested, mut accepted) = ([0u64; 3], [0u64; 3]);
    for round in &rounds {
        for (rank, c) in round.record.by_rank().iter().enumerate() {
            tested[rank] += u64::from(c.tested);
            accepted[rank] += u64::from(c.accepted);
        }
    }
    let siblings: Vec<f64> = (1..3)
        .map(|rank| accepted[rank] as f64 / tested[rank] as f64)
        .collect();
    assert!(tested[1] > 100 && tested[2] > 100, "{tested:?}");
    for (network, f) in &r.links {
        assert_eq!(f.spec.sibling_acceptance, siblings, "{network}");
        assert_eq!(f.siblings_tested, tested[1]);
    }
    assert_eq!(r.cells.len(), 20, "every cell, dynamic trees too");
    let acceptance = METRICS.iter().position(|m| m.stem == "acceptance").unwrap();
    let trees: Vec<_> = r
        .cells
        .iter()
        .filter(|c| c.strategy == "tree(3,2,1,1)" || c.strategy.starts_with("tree(dynamic:"))
        .collect();
    assert_eq!(trees.len(), 8, "one of each per link");
    for c in trees {
        let (m, s) = (c.measured[acceptance], c.simulated[acceptance]);
        assert!(
            (s / m - 1.0).abs() <= TPOT_BOUND,
            "{} @ {}: acceptance {m:.3} measured, {s:.3} simulated",
            c.strategy,
            c.network
        );
        assert!(
            c.tpot_error().abs() <= TPOT_BOUND,
            "{} @ {}: TPOT p50 {:.3} ms measured, {:.3} ms simulated",
            c.strategy,
            c.network,
            c.tpot().0,
            c.tpot().1
        );
    }
}
