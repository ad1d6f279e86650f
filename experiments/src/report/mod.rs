//! `tandem report DIR` (also the end of every `tandem run`): the figures of a results
//! folder and `report.md`, rebuilt from its Parquet tables and resolved config.
//!
//! Figures: time per output token by strategy; where that time goes (draft, network,
//! queue, forward); mean accepted length against k with the analytical curve of
//! `tandem_decoding::analytic` for the measured acceptance; acceptance by position;
//! cost per million tokens against latency with the Pareto front; end-to-end latency
//! against the link's round-trip time; where the grid drafts token trees, committed
//! tokens per round trip against the RTT and per round against the nodes sent. Every
//! figure gives a strategy one colour and a link one marker ([`Palette`]), puts an axis
//! on a log scale where its values span two decades, and has a caption in `report.md`
//! saying what it shows and what ran.

mod captions;
mod figures;
mod load;
pub mod plots;
mod trees;

pub use figures::Palette;

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::results::{RequestRow, RoundRow};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file of the folder is missing or unreadable.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Writing failed.
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// What the report wrote.
#[derive(Debug)]
pub struct Written {
    /// Figures drawn (names, each as .svg and .png under `plots/`).
    pub figures: Vec<&'static str>,
    /// Why figures were not drawn, if they were not.
    pub skipped: Option<String>,
}

/// A results folder, read back.
#[derive(Debug)]
pub struct Folder {
    /// Its resolved config.
    pub config: Config,
    /// Whether every cell finished.
    pub complete: bool,
    /// `requests.parquet`.
    pub requests: Vec<RequestRow>,
    /// `rounds.parquet`.
    pub rounds: Vec<RoundRow>,
}

/// Rebuilds the report of the results folder `dir`.
pub fn from_dir(dir: &Path) -> Result<Written, ReportError> {
    let f = read_dir(dir)?;
    write(dir, &f.config, &f.requests, &f.rounds, f.complete)
}

/// Reads the results folder `dir`.
pub fn read_dir(dir: &Path) -> Result<Folder, ReportError> {
    let read = |name: &str| -> Result<String, ReportError> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| ReportError::Read {
            path,
            message: e.to_string(),
        })
    };
    let config = Config::parse(&read("config.toml")?, &dir.join("config.toml")).map_err(|e| {
        ReportError::Read {
            path: dir.join("config.toml"),
            message: e.to_string(),
        }
    })?;
    let complete = read("manifest.json")?.contains("\"status\": \"complete\"");
    let table = |name: &str| {
        let path = dir.join(name);
        crate::results::read_parquet(&path).map_err(|e| ReportError::Read {
            path,
            message: e.to_string(),
        })
    };
    let bad = |name: &str, e: polars::prelude::PolarsError| ReportError::Read {
        path: dir.join(name),
        message: format!("not a Tandem table: {e}"),
    };
    let requests = crate::results::read::requests(&table("requests.parquet")?)
        .map_err(|e| bad("requests.parquet", e))?;
    let rounds = crate::results::read::rounds(&table("rounds.parquet")?)
        .map_err(|e| bad("rounds.parquet", e))?;
    Ok(Folder {
        config,
        complete,
        requests,
        rounds,
    })
}

/// With a `[cloud]` pace: the profile, and how much of each pass was the target's own
/// forward and how much was held to meet it.
fn cloud_md(config: &Config, rounds: &[RoundRow]) -> String {
    let Some(c) = &config.cloud else {
        return String::new();
    };
    let ms = |v: Option<f64>| v.unwrap_or(0.0);
    let mut s = format!(
        "\nCloud paced to `{}`: each pass held to at least {} ms + {} ms × sessions + {} ms × tokens (+ {} ms when verifying)",
        c.name,
        ms(c.pass_ms),
        ms(c.per_session_ms),
        ms(c.per_token_ms),
        ms(c.verify_extra_ms)
    );
    if !c.source.is_empty() {
        s += &format!(" ({})", c.source.trim());
    }
    let timed: Vec<&RoundRow> = rounds.iter().filter(|r| r.record.forward_ns > 0).collect();
    if !timed.is_empty() {
        let n = timed.len() as f64;
        let mean =
            |f: fn(&RoundRow) -> u64| timed.iter().map(|r| f(r) as f64).sum::<f64>() / n / 1e6;
        s += &format!(
            ". Per round, the target's own forward took {:.3} ms and the pace held {:.3} ms more",
            mean(|r| r.record.forward_ns),
            mean(|r| r.record.paced_ns)
        );
    }
    s + ".\n"
}

/// Draws the figures and writes `report.md` (and `summary.csv`) into `dir`.
pub fn write(
    dir: &Path,
    config: &Config,
    requests: &[RequestRow],
    rounds: &[RoundRow],
    complete: bool,
) -> Result<Written, ReportError> {
    let summary = crate::summary::summarise(requests);
    crate::results::write_csv(
        &dir.join("summary.csv"),
        &mut crate::summary::frame(&summary).map_err(std::io::Error::other)?,
    )?;
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir)?;
    let (figures, skipped) = match figures::draw_all(&plots_dir, config, requests, rounds) {
        Ok(f) => (f, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    let mut md = crate::summary::report_md(config, &summary, complete);
    md += "\nEnd-to-end includes the first token; TPOT is time per output token after the first. Speedup is cloud-only's median TPOT over the strategy's, on the same link and device. Edge-only tokens are never verified: it is the quality floor, not a competitor.\n";
    md += &cloud_md(config, rounds);
    md += &crate::summary::reliability_md(&summary);
    md += &crate::summary::routing_md(requests);
    md += &crate::crossover::volume_md(&summary, &config.cost);
    md += &crate::early_exit::section_md(&summary, rounds);
    md += &crate::claims::section_md(&config.claims, &summary);
    let mut figures = figures;
    if let Some(slo) = crate::capacity::Slo::of(&config.report) {
        let curves = crate::capacity::curves(requests, rounds, slo);
        md += &crate::capacity::section_md(&curves, slo);
        let palette = Palette::of(requests);
        if let (None, Some(fig)) = (&skipped, crate::capacity::figure(&curves, slo, &palette)) {
            plots::save(&fig, &plots_dir).map_err(std::io::Error::other)?;
            figures.push("capacity");
        }
    }
    if let Some(r) = crate::resimulate::Recorded::read(dir) {
        md += &crate::resimulate::compare::section_md(&r.cells, &r.fitted);
        if skipped.is_none() {
            let fig = crate::resimulate::compare::figure(&r.cells, &Palette::of(requests));
            plots::save(&fig, &plots_dir).map_err(std::io::Error::other)?;
            figures.push("resimulation");
        }
    }
    if !figures.is_empty() {
        md += "\n## Figures\n\n";
        for (name, title) in figures.iter().map(|n| (n, captions::title(n))) {
            let caption = captions::caption(name, config);
            md += &format!("### {title}\n\n![{title}](plots/{name}.png)\n\n*{caption}*\n\n");
        }
    }
    if let Some(why) = &skipped {
        md += &format!("\nFigures were not drawn: {why}\n");
    }
    crate::results::write_text(&dir.join("report.md"), &md)?;
    Ok(Written { figures, skipped })
}
