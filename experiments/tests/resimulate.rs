//! `tandem resimulate` on the committed quickstart run (real models, real sockets, this
//! machine): the simulator fitted to the run's own records must give every cell's
//! TPOT p50 within the bound, and the folder gains its table, file and figure.
//!
//! The measured side is fixed (a committed folder), so this fails when the simulator
//! or its fit drifts, not when this machine is busy.

use std::path::{Path, PathBuf};

use tandem_experiments::resimulate::compare::{METRICS, TPOT_BOUND};
use tandem_experiments::resimulate::{CSV, TOML, resimulate};

/// The committed quickstart run, copied to a scratch folder (the test writes into it).
fn quickstart_copy() -> (tempfile::TempDir, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/quickstart");
    let run = std::fs::read_dir(&root)
        .expect("results/quickstart is committed")
        .map(|e| e.unwrap().path())
        .find(|p| p.join("rounds.parquet").exists())
        .expect("a committed quickstart run with rounds.parquet");
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
    let (_tmp, dir) = quickstart_copy();
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

#[test]
fn a_simulated_run_is_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/sim-links");
    let run = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("rounds.parquet").exists())
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "config.toml",
        "manifest.json",
        "requests.parquet",
        "rounds.parquet",
    ] {
        std::fs::copy(run.join(f), tmp.path().join(f)).unwrap();
    }
    let e = resimulate(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("this run is a simulation"), "{e}");
    assert!(!tmp.path().join(CSV).exists(), "nothing written");
}
