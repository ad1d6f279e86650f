//! The simulated backend: a cell's requests on a virtual clock, through the real draft
//! loop (`tandem_draft::generate_with`, every strategy) and the real scheduler's pass
//! selection, with acceptance drawn per position and every time from a latency
//! profile ([`SimSpec`]).
//!
//! - [`exec`]: the executor and its virtual clock;
//! - [`draft`]: the simulated draft, and the true continuation verdicts come from;
//! - [`verifier`]: the simulated verifier, behind the link model;
//! - [`fit`]: pass times fitted from a real run (`profile_trace`);
//! - this module: the cell's clients (closed loop or Poisson arrivals), each request
//!   turned into rows exactly as a real run turns it.
//!
//! Worked example, one speculative round, k = 4, one-way delay 60 ms, verification
//! pass 620 ms, draft step 72 ms: draft 288 ms → block arrives 60 ms later → waits for
//! the current pass to end → 620 ms pass → verdict arrives 60 ms later: the edge commits
//! the accepted tokens plus the target's own, 1 to 5 tokens.

pub mod draft;
pub mod exec;
mod profile;
mod spec;
pub mod verifier;

pub use profile::{Fit, fit};
pub use spec::{Outage, SimSpec, acceptance_by_position};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_decoding::SessionRng;
use tandem_decoding::rng::stream;
use tandem_draft::{Clock, DevicePace, Parts, generate_with};

use crate::config::{Cost, Workload};
use crate::results::{RequestRow, RoundRow};
use crate::run::cells::Cell;
use crate::run::request::{Ask, rows_of};
use crate::run::{generate_config, request_seed};
use crate::workload::{Prompt, poisson_arrivals};
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
}

/// What every client of a cell shares.
struct Clients {
    spec: SimSpec,
    cell: Cell,
    workload: Workload,
    prompts: Vec<Prompt>,
    cost: Cost,
    seed: u64,
    acceptance: Vec<f64>,
    clock: VirtualClock,
    hub: Arc<Hub>,
    next: AtomicUsize,
    rows: Mutex<Vec<(RequestRow, Vec<RoundRow>)>>,
}

/// Runs every request of a cell on the virtual clock.
pub fn run_cell(c: &SimCell<'_>) -> (Vec<RequestRow>, Vec<RoundRow>) {
    let n = c.workload.requests;
    let mut ex = Executor::new();
    let clock = ex.clock();
    let shared = Arc::new(Clients {
        spec: c.spec.clone(),
        cell: c.cell.clone(),
        workload: c.workload.clone(),
        prompts: c.prompts.to_vec(),
        cost: c.cost.clone(),
        seed: c.seed,
        acceptance: c.acceptance.to_vec(),
        clock: clock.clone(),
        hub: verifier::start(&clock, c.spec),
        next: AtomicUsize::new(0),
        rows: Mutex::default(),
    });
    match c.workload.arrival_rate {
        Some(rate) => {
            let at = poisson_arrivals(n, rate, c.seed ^ c.cell.repetition as u64);
            for (i, t) in at.into_iter().enumerate() {
                let s = shared.clone();
                clock.spawn(async move {
                    s.clock.sleep(Duration::from_secs_f64(t)).await;
                    s.one(i, s.device()).await;
                });
            }
        }
        None => {
            for _ in 0..c.cell.clients.clamp(1, n) {
                let s = shared.clone();
                clock.spawn(async move {
                    // Each client is its own device, heating up on its own.
                    let device = s.device();
                    loop {
                        let i = s.next.fetch_add(1, Ordering::Relaxed);
                        if i >= s.workload.requests {
                            return;
                        }
                        s.one(i, device.clone()).await;
                    }
                });
            }
        }
    }
    let waiting = ex.run();
    let done = std::mem::take(&mut *shared.rows.lock().expect("rows"));
    let mut requests = Vec::with_capacity(n);
    let mut rounds = Vec::new();
    let mut seen = vec![false; n];
    for (row, mut r) in done {
        seen[row.request as usize] = true;
        requests.push(row);
        rounds.append(&mut r);
    }
    // A request that never finished is a fault of the simulation: say so in its row.
    for (i, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
        let ask = shared.ask(i, 0.0);
        requests.push(rows_of(&ask, Err(stalled(waiting)), &shared.cost).0);
    }
    requests.sort_by_key(|r| r.request);
    rounds.sort_by_key(|r| (r.request, r.round));
    (requests, rounds)
}

fn stalled(waiting: usize) -> tandem_draft::DraftError {
    tandem_draft::DraftError::Violation(format!(
        "the simulation stalled before this request finished ({waiting} tasks waiting)"
    ))
}

impl Clients {
    fn device(&self) -> Option<DevicePace> {
        self.cell.pace.as_ref().map(|p| p.pace())
    }

    fn prompt_ids(&self, seed: u64) -> Vec<u32> {
        (0..self.spec.prompt_tokens.max(1))
            .map(|p| truth(seed, p))
            .collect()
    }

    /// The strategy of request `i` (a routed cell's pick, and why).
    fn strategy(&self, i: usize) -> (tandem_draft::Strategy, &'static str) {
        let p = &self.prompts[i % self.prompts.len()];
        match &self.cell.route {
            Some(router) => router.pick(&p.tag, self.spec.prompt_tokens, &self.cell.link),
            None => (self.cell.strategy, ""),
        }
    }

    /// Request `i` as a real run describes it: its seed, strategy, prompt and the draft
    /// loop's settings (rows are made from it).
    fn ask(&self, i: usize, start_s: f64) -> Ask<'_> {
        let seed = request_seed(self.seed, self.cell.repetition, i);
        let (strategy, route) = self.strategy(i);
        let prompt_index = i % self.prompts.len();
        let ids = self.prompt_ids(seed);
        Ask {
            cell: &self.cell,
            request: i,
            prompt_index,
            prompt: &self.prompts[prompt_index],
            prompt_ids: ids.clone(),
            seed,
            start_s,
            strategy,
            route,
            generate: generate_config(&self.workload, strategy, ids, seed),
        }
    }

    /// Runs request `i` through the real draft loop, on the simulated models.
    async fn one(&self, i: usize, device: Option<DevicePace>) {
        let ask = self.ask(i, self.clock.elapsed().as_secs_f64());
        let (seed, strategy) = (ask.seed, ask.strategy);
        let parts = Parts {
            proposer: strategy.needs_draft().then(|| {
                Box::new(SimDraft {
                    seed,
                    acceptance: self.acceptance.clone(),
                    ms_per_token: self.spec.draft_ms_per_token.unwrap_or(0.0),
                    pace: device,
                    rng: SessionRng::for_stream(seed, stream::DRAFT),
                }) as Box<dyn tandem_draft::Propose>
            }),
            verifier: strategy.needs_verifier().then(|| {
                Arc::new(SimDial {
                    hub: self.hub.clone(),
                    link: self.cell.link.clone(),
                    seed,
                }) as Arc<dyn tandem_draft::Dial>
            }),
            clock: Arc::new(self.clock.clone()) as Arc<dyn Clock>,
        };
        let result = generate_with(parts, &ask.generate, &mut |_, _| {}).await;
        let rows = rows_of(&ask, result, &self.cost);
        self.rows.lock().expect("rows").push(rows);
    }
}
