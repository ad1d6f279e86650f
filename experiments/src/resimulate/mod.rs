//! `tandem resimulate DIR` (and `[report] resimulate = true` at the end of `tandem
//! run`): the simulator fitted to a real run's own records ([`fit_run`]) replays the
//! run's grid on the virtual clock, and every cell's measured figures are set beside
//! the simulated ones ([`compare`]). The folder gains `resimulation.csv` (one row per
//! cell), `resimulation.toml` (the fitted `[simulation]` table: put it in a config to
//! simulate the same pair at other scales) and, in `report.md`, a table and a figure.
//!
//! This is the simulator's own check: a figure it gives at 1 000 clients means
//! something only if, at the scale a real run reached, it gives what the run measured.

pub mod compare;
mod fit;

use std::collections::BTreeSet;
use std::path::Path;

pub use compare::Compared;
pub use fit::{Fitted, fit_link, per_cell};

use crate::config::Config;
use crate::report::ReportError;
use crate::results::RequestRow;
use crate::workload::Prompt;

/// The comparison's file in a results folder.
pub const CSV: &str = "resimulation.csv";
/// The fitted simulation's file in a results folder.
pub const TOML: &str = "resimulation.toml";

/// A run re-simulated.
#[derive(Debug, Clone)]
pub struct Resimulation {
    /// What was fitted, per link (network name), in grid order.
    pub links: Vec<(String, Fitted)>,
    /// Each cell, measured and simulated.
    pub cells: Vec<Compared>,
    /// A greedy run's share of positions whose draft outcome was replayed
    /// ([`crate::sim::matches_by_prompt`]); `None` for a sampled run.
    pub replayed: Option<f64>,
}

/// One line on what was fitted for a link (and, for a greedy run, the share of
/// positions whose draft outcome is replayed).
fn describe(f: &Fitted, replayed: Option<f64>) -> String {
    let mut s = format!(
        "passes {}; transport {:.3} ms each way (from {} verified rounds); prompt {} tokens; gathering {:.2} ms",
        f.fit, f.spec.transport_ms, f.transport_rounds, f.spec.prompt_tokens, f.spec.gather_ms
    );
    if f.fit.draft_ms_per_token.is_none() {
        s += &format!(
            "; drafting {:.4} ms a token",
            f.spec.draft_ms_per_token.unwrap_or(0.0)
        );
    }
    if !f.spec.sibling_acceptance.is_empty() {
        let a: Vec<String> = f
            .spec
            .sibling_acceptance
            .iter()
            .map(|a| format!("{a:.3}"))
            .collect();
        s += &format!(
            "; trees: a row's later candidates accepted at {} (rank 1, 2+; from {} rank-1 candidates)",
            a.join(", "),
            f.siblings_tested
        );
    }
    if let Some(share) = replayed {
        s += &format!(
            "; greedy: the run's draft outcomes replayed at {:.0} % of positions",
            share * 100.0
        );
    }
    s
}

/// One link's fit in `resimulation.toml`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LinkFit {
    network: String,
    fitted: String,
    simulation: crate::config::SimSpec,
}

/// `resimulation.toml`.
#[derive(serde::Serialize, serde::Deserialize)]
struct FitFile {
    link: Vec<LinkFit>,
}

/// Re-simulates the real run in `dir` and writes `resimulation.csv` and
/// `resimulation.toml` there (the report is redrawn by the caller).
///
/// Each link's cells are fitted from that link's rounds: on a CPU shared by the draft
/// and the verifier, both compute noticeably slower after the idle wait of a long
/// round trip than back to back on a LAN (caches, clock scaling), which the
/// simulator's times do not depend on.
pub fn resimulate(dir: &Path) -> Result<Resimulation, ReportError> {
    let folder = crate::report::read_dir(dir)?;
    let refuse = |message: String| ReportError::Read {
        path: dir.join("rounds.parquet"),
        message,
    };
    if folder.config.simulation.is_some() {
        return Err(refuse(
            "this run is a simulation: there is nothing measured to re-simulate".into(),
        ));
    }
    let mut trees = folder
        .rounds
        .iter()
        .filter(|r| r.record.kind == tandem_draft::RoundKind::Verified && r.record.tree_depth > 0);
    // A verified tree's first candidate at the root is always tested.
    if trees.clone().next().is_some() && trees.all(|r| r.record.rank0_tested == 0) {
        return Err(refuse(
            "this run drafted token trees, but its rounds.parquet has no counts by sibling rank (it was written before Tandem recorded them): re-run it to re-simulate its trees".into(),
        ));
    }
    let acceptance = crate::sim::acceptance_by_position(&folder.rounds);
    let (siblings, siblings_tested) = crate::sim::sibling_acceptance(&folder.rounds);
    let by_prompt = crate::sim::acceptance_by_prompt(&folder.rounds, &folder.requests);
    // Greedy: each prompt's draft outcomes are facts of the run, replayed.
    let matches = if folder.config.workload.temperature == 0.0 {
        crate::sim::matches_by_prompt(&folder.rounds, &folder.requests)
    } else {
        Vec::new()
    };
    let prompts = prompts(&folder.config, dir, &folder.requests);
    let mut networks: Vec<String> = Vec::new();
    for r in &folder.requests {
        if !networks.contains(&r.network) {
            networks.push(r.network.clone());
        }
    }
    let mut links = Vec::new();
    let mut simulated = vec![Vec::new(); REPLAYS];
    for network in networks {
        let requests: Vec<RequestRow> = folder
            .requests
            .iter()
            .filter(|r| r.network == network)
            .cloned()
            .collect();
        let rounds: Vec<crate::results::RoundRow> = folder
            .rounds
            .iter()
            .filter(|r| r.key.network == network)
            .cloned()
            .collect();
        let mut fitted = fit_link(&folder.config, &requests, &rounds).map_err(|e| {
            refuse(format!(
                "cannot fit the simulator to this run's cells on {network}: {e}"
            ))
        })?;
        fitted.spec.sibling_acceptance = siblings.clone();
        fitted.siblings_tested = siblings_tested;
        let replay = Replay {
            config: &folder.config,
            spec: &fitted.spec,
            cells: per_cell(&fitted.spec, &rounds),
            acceptance: &acceptance,
            by_prompt: &by_prompt,
            matches: &matches,
            prompts: &prompts,
        };
        for (i, rows) in simulated.iter_mut().enumerate() {
            rows.extend(replay.cells(&requests, i as u64));
        }
        links.push((network, fitted));
    }
    let cells = compare::compare(
        &crate::summary::summarise(&folder.requests),
        &pooled(&simulated),
    );
    let replayed = (!matches.is_empty()).then(|| crate::sim::known_share(&matches));
    let r = Resimulation {
        links,
        cells,
        replayed,
    };
    let mut table = compare::frame(&r.cells).map_err(std::io::Error::other)?;
    crate::results::write_csv(&dir.join(CSV), &mut table)?;
    let file = FitFile {
        link: r
            .links
            .iter()
            .map(|(network, f)| LinkFit {
                network: network.clone(),
                fitted: describe(f, r.replayed),
                simulation: f.spec.clone(),
            })
            .collect(),
    };
    let text = toml::to_string_pretty(&file).map_err(std::io::Error::other)?;
    let head = "# The simulator fitted to this run, one [[link]] per network: copy a link's\n\
                # [link.simulation] table into a config as [simulation] to simulate that setting\n\
                # at other scales (acceptance_trace is this folder's rounds.parquet).\n\n";
    crate::results::write_text(&dir.join(TOML), &format!("{head}{text}"))?;
    Ok(r)
}

impl Resimulation {
    /// One line per link on what was fitted.
    pub fn describe(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|(n, f)| format!("{n}: {}", describe(f, self.replayed)))
            .collect()
    }
}

/// The run's prompts, for their tags and SLOs: from the config's prompt set if it can
/// be read from here, otherwise rebuilt from the requests' tags.
fn prompts(config: &Config, dir: &Path, requests: &[RequestRow]) -> Vec<Prompt> {
    if let Ok(p) = crate::workload::load_prompts(&config.workload.prompts, dir) {
        return p;
    }
    let n = requests
        .iter()
        .map(|r| r.prompt_index + 1)
        .max()
        .unwrap_or(1);
    (0..n)
        .map(|i| Prompt {
            tag: requests
                .iter()
                .find(|r| r.prompt_index == i)
                .map_or_else(|| "public".into(), |r| r.tag.clone()),
            prompt: String::new(),
            messages: None,
            slo_ms: None,
        })
        .collect()
}

/// Times the grid is simulated, each with its own seeds: the simulated figures are
/// those of all replays' requests together (tokens/s: their mean), the simulator's
/// expectation rather than one draw of its acceptance and link.
pub const REPLAYS: usize = 8;

/// Stream ids the replays' seeds are drawn from (well clear of the session streams).
const REPLAY_STREAM: u64 = 0x5e51_0000;

/// Each replay's requests summarised together: quantiles and means over every
/// simulated request, tokens/s averaged over the replays.
fn pooled(replays: &[Vec<RequestRow>]) -> Vec<crate::summary::Line> {
    let all: Vec<RequestRow> = replays.iter().flatten().cloned().collect();
    let mut lines = crate::summary::summarise(&all);
    let each: Vec<Vec<crate::summary::Line>> = replays
        .iter()
        .map(|r| crate::summary::summarise(r))
        .collect();
    for l in &mut lines {
        let rates: Vec<f64> = each
            .iter()
            .filter_map(|ls| {
                ls.iter()
                    .find(|x| x.same_setting(l))
                    .map(|x| x.tokens_per_s)
            })
            .collect();
        l.tokens_per_s = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    }
    lines
}

/// What a link's cells replay with.
struct Replay<'a> {
    config: &'a Config,
    /// The link's fit.
    spec: &'a crate::config::SimSpec,
    /// Each cell's, where it measured its own draft step ([`per_cell`]).
    cells: std::collections::BTreeMap<u32, crate::config::SimSpec>,
    acceptance: &'a [f64],
    by_prompt: &'a [Vec<f64>],
    matches: &'a [crate::sim::Matches],
    prompts: &'a [Prompt],
}

impl Replay<'_> {
    /// The requests of every cell the run finished of those `measured` comes from, on
    /// the simulated backend; replay 0 with the run's own seed, replay `i` with a seed
    /// derived from it.
    fn cells(&self, measured: &[RequestRow], replay: u64) -> Vec<RequestRow> {
        let seed = match replay {
            0 => self.config.seed,
            i => tandem_decoding::SessionRng::for_stream(self.config.seed, REPLAY_STREAM + i)
                .next_u64(),
        };
        let ran: BTreeSet<u32> = measured.iter().map(|r| r.cell).collect();
        crate::plan::cells(self.config)
            .iter()
            .filter(|c| ran.contains(&(c.index as u32)))
            .flat_map(|cell| {
                crate::sim::run_cell(&crate::sim::SimCell {
                    spec: self.cells.get(&(cell.index as u32)).unwrap_or(self.spec),
                    cell,
                    workload: &self.config.workload,
                    prompts: self.prompts,
                    cost: &self.config.cost,
                    seed,
                    acceptance: self.acceptance,
                    by_prompt: self.by_prompt,
                    matches: self.matches,
                })
                .0
            })
            .collect()
    }
}

/// What a results folder holds of a re-simulation, for its report.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Each cell.
    pub cells: Vec<Compared>,
    /// Each link's fit, described ("lan: passes …").
    pub fitted: Vec<String>,
}

impl Recorded {
    /// Reads `dir`'s re-simulation, if it has one.
    pub fn read(dir: &Path) -> Option<Recorded> {
        if !dir.join(CSV).exists() {
            return None;
        }
        let cells = match compare::read(&dir.join(CSV)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{}: {e}; left out of the report", dir.join(CSV).display());
                return None;
            }
        };
        let fitted = std::fs::read_to_string(dir.join(TOML))
            .ok()
            .and_then(|t| toml::from_str::<FitFile>(&t).ok())
            .map(|f| {
                f.link
                    .into_iter()
                    .map(|l| format!("{}: {}", l.network, l.fitted))
                    .collect()
            })
            .unwrap_or_default();
        Some(Recorded { cells, fitted })
    }
}
