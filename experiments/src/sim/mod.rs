//! The simulated backend: a cell's requests on a virtual clock, through the real draft
//! loop (`tandem_draft::generate_with`, every strategy) and the real scheduler's pass
//! selection, with acceptance drawn per position and every time from a latency
//! profile ([`SimSpec`]).
//!
//! - [`exec`]: the executor and its virtual clock;
//! - [`draft`]: the simulated draft, and the true continuation verdicts come from;
//! - [`verifier`]: the simulated verifier, behind the link model;
//! - [`fit`] and `calibrate`: pass times and acceptance taken from a real run
//!   (`profile_trace`, `acceptance_trace`);
//! - this module: the simulated [`Backend`] the cell driver ([`crate::drive`]) runs a
//!   cell's clients on, exactly as a real run's.
//!
//! Worked example, one speculative round, k = 4, one-way delay 60 ms, verification
//! pass 620 ms, draft step 72 ms: draft 288 ms → block arrives 60 ms later → waits for
//! the current pass to end → 620 ms pass → verdict arrives 60 ms later: the edge commits
//! the accepted tokens plus the target's own, 1 to 5 tokens.

mod calibrate;
pub mod draft;
pub mod exec;
mod matches;
mod profile;
mod radix_heap;
pub mod verifier;

pub use crate::config::{Outage, SimSpec};
pub use calibrate::{acceptance_by_position, acceptance_by_prompt, sibling_acceptance};
pub use matches::{Matches, known_share, matches_by_prompt};
pub use profile::{Fit, draft_step, fit, transport};

use std::sync::Arc;

use tandem_decoding::SessionRng;
use tandem_decoding::rng::stream;
use tandem_draft::clock::BoxFuture;
use tandem_draft::{Clock, DevicePace, DraftError, Parts, Report, generate_with};

use crate::config::{Cost, Workload};
use crate::drive::{Backend, CellDriver, CellPlan};
use crate::plan::{Ask, Cell};
use crate::results::{RequestRow, RoundRow};
use crate::workload::Prompt;
use draft::{SimDraft, truth};
use exec::{Executor, VirtualClock};
use verifier::{Hub, SimDial};

/// What one simulated cell needs.
pub struct SimCell<'a> {
    /// The backend.
    pub spec: &'a SimSpec,
    /// The cell.
    pub cell: &'a Cell,
    /// Requests, arrivals, lengths.
    pub workload: &'a Workload,
    /// The prompts (for their tags).
    pub prompts: &'a [Prompt],
    /// Prices.
    pub cost: &'a Cost,
    /// The config's seed.
    pub seed: u64,
    /// Acceptance probability of each draft position ([`SimSpec::acceptance_curve`]).
    pub acceptance: &'a [f64],
    /// A curve per prompt of the set, for requests of that prompt (empty: every
    /// request draws from `acceptance`); see [`acceptance_by_prompt`].
    pub by_prompt: &'a [Vec<f64>],
    /// A greedy run's draft outcomes per prompt, replayed where known (empty: every
    /// position drawn); see [`matches_by_prompt`].
    pub matches: &'a [Matches],
}

/// The simulated draft and verifier, on the virtual clock.
struct SimBackend {
    spec: SimSpec,
    acceptance: Vec<f64>,
    by_prompt: Vec<Vec<f64>>,
    matches: Vec<Matches>,
    clock: VirtualClock,
    hub: Arc<Hub>,
}

/// Runs every request of a cell on the virtual clock.
pub fn run_cell(c: &SimCell<'_>) -> (Vec<RequestRow>, Vec<RoundRow>) {
    let mut ex = Executor::new();
    let clock = ex.clock();
    let backend = SimBackend {
        spec: c.spec.clone(),
        acceptance: c.acceptance.to_vec(),
        by_prompt: c.by_prompt.to_vec(),
        matches: c.matches.to_vec(),
        hub: verifier::start(&clock, c.spec),
        clock: clock.clone(),
    };
    let plan = CellPlan {
        cell: c.cell.clone(),
        workload: c.workload.clone(),
        prompts: c.prompts.to_vec(),
        cost: c.cost.clone(),
        seed: c.seed,
    };
    let driver = CellDriver::new(plan, backend);
    for client in driver.clients() {
        clock.spawn(client);
    }
    let started = std::time::Instant::now();
    let waiting = ex.run();
    tracing::debug!(
        "cell {} simulated in {:.2?}",
        c.cell.index,
        started.elapsed()
    );
    let mut done = driver.finish();
    // A request that never finished is a fault of the simulation: say so in its row.
    for &i in &done.missing {
        done.requests.push(driver.failed(i, stalled(waiting)));
    }
    done.requests.sort_by_key(|r| r.request);
    (done.requests, done.rounds)
}

fn stalled(waiting: usize) -> DraftError {
    DraftError::Violation(format!(
        "the simulation stalled before this request finished ({waiting} tasks waiting)"
    ))
}

impl Backend for SimBackend {
    fn clock(&self) -> &dyn Clock {
        &self.clock
    }

    /// The request's true continuation's first `prompt_tokens` tokens.
    fn prompt_ids(&self, _index: usize, seed: u64) -> Vec<u32> {
        (0..self.spec.prompt_tokens.max(1))
            .map(|p| truth(seed, p))
            .collect()
    }

    /// Runs the request through the real draft loop, on the simulated models.
    fn generate<'a>(
        &'a self,
        ask: &'a Ask<'a>,
        device: Option<DevicePace>,
    ) -> BoxFuture<'a, Result<Report, DraftError>> {
        let (seed, strategy) = (ask.seed, ask.strategy);
        let parts = Parts {
            proposer: strategy.needs_draft().then(|| {
                Box::new(SimDraft {
                    seed,
                    acceptance: self
                        .by_prompt
                        .get(ask.prompt_index)
                        .unwrap_or(&self.acceptance)
                        .clone(),
                    siblings: self.spec.sibling_acceptance.clone(),
                    matches: self.matches.get(ask.prompt_index).cloned(),
                    prompt_len: self.spec.prompt_tokens.max(1),
                    ms_per_token: self.spec.step_ms(&strategy),
                    pace: device,
                    context: self.spec.draft_context.unwrap_or(usize::MAX),
                    kv_bytes_per_token: self
                        .spec
                        .draft_kv_kib_per_token
                        .map_or(1, |kib| (kib * 1024.0).round().max(1.0) as u64),
                    rng: SessionRng::for_stream(seed, stream::DRAFT),
                    last_block: None,
                }) as Box<dyn tandem_draft::Propose>
            }),
            verifier: strategy.needs_verifier().then(|| {
                Arc::new(SimDial {
                    hub: self.hub.clone(),
                    link: ask.cell.link.clone(),
                    seed,
                }) as Arc<dyn tandem_draft::Dial>
            }),
            clock: Arc::new(self.clock.clone()) as Arc<dyn Clock>,
        };
        Box::pin(async move { generate_with(parts, &ask.generate, &mut |_, _| {}).await })
    }
}
