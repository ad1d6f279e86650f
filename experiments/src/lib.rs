//! # tandem-experiments
//!
//! The researcher's entry point: from one config to a published results folder.
//!
//! - [`config`]: the experiment config (TOML), validated before anything runs.
//! - [`workload`]: prompt sets and arrival processes (the `routed` strategy's rules are
//!   `tandem_draft::route`, so the edge applies them itself);
//!   [`sim`]: the simulated backend on a virtual clock.
//! - [`plan`]: the grid's cells and each request's seed, settings and rows;
//!   [`drive`]: one cell driver (clients, arrivals) over a real or simulated backend.
//! - [`run`]: the runner behind `tandem run` (in-process verifier, the real backend,
//!   progress, partial results on Ctrl-C).
//! - [`results`], [`summary`], [`manifest`]: the results folder (`rounds.parquet`,
//!   `requests.parquet`, `summary.csv`, `manifest.json`); [`report`]: its figures and
//!   `report.md` (`tandem report`); [`resimulate`]: the simulator fitted to a real
//!   run and replayed on its grid, measured against simulated (`tandem resimulate`).
//! - [`capacity`]: goodput and capacity under the config's SLO, beside the capacity
//!   law; [`predict`]: the analytical model behind `tandem predict`; [`crossover`]: cost by
//!   daily volume and the break-even of edge hardware; [`early_exit`]: the report's
//!   table of provisional verdicts (agreement, lead, time saved); [`claims`]: a
//!   paper's reported reductions beside this run's.
//!
//! The `tandem` command line itself (`src/bin/tandem/`) parses arguments and reports
//! errors; everything it runs is here.

pub mod capacity;
pub mod claims;
pub mod config;
pub mod crossover;
pub mod drive;
pub mod early_exit;
pub mod manifest;
pub mod plan;
pub mod predict;
pub mod report;
pub mod resimulate;
pub mod results;
pub mod run;
pub mod sim;
pub mod summary;
pub mod workload;
