//! # tandem-experiments
//!
//! The researcher's entry point: from one config to a published results folder.
//!
//! Today it owns [`predict`], the analytical comparison of strategies behind
//! `tandem predict`, [`modelcmd`], `tandem train-tiny` and `tandem quantize`, and [`generatecmd`], `tandem generate`
//! (draft loop and in-process verifier over a loopback socket). It will own the experiment config schema (TOML, validated before
//! anything runs), the runner behind `tandem run` (in-process verifier, strategy grid,
//! progress, partial results on Ctrl-C), the recorder (`rounds.parquet`,
//! `requests.parquet`, `summary.csv`, manifest) and the report (`tandem report`: plots
//! and `report.md`).

pub mod generatecmd;
pub mod modelcmd;
pub mod predict;
