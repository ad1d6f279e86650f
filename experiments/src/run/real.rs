//! The real backend: the draft model on this machine and the verifier over real
//! sockets, each request over its cell's emulated link, driven by the cell driver on
//! tokio.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tandem_draft::clock::BoxFuture;
use tandem_draft::{Clock, DevicePace, DraftError, Edge, Report, SystemClock, VerifierTarget};
use tandem_models::Llama;

use super::Progress;
use crate::config::Config;
use crate::drive::{Backend, CellDriver, CellPlan};
use crate::plan::{Ask, Cell};
use crate::results::{RequestRow, RoundRow};
use crate::workload::Prompt;

/// One cell's run on models and sockets.
pub(super) struct CellRun<'a> {
    pub config: &'a Config,
    pub cell: &'a Cell,
    pub prompts: &'a [Prompt],
    pub prompt_ids: &'a [Vec<u32>],
    pub draft: Arc<Llama>,
    pub verifier: Option<VerifierTarget>,
    pub stop: Arc<AtomicBool>,
    pub progress: Arc<dyn Progress>,
}

/// The draft model on this machine and the verifier over real sockets, each request
/// over the cell's emulated link.
struct RealBackend {
    draft: Arc<Llama>,
    verifier: Option<VerifierTarget>,
    prompt_ids: Vec<Vec<u32>>,
    stop: Arc<AtomicBool>,
    progress: Arc<dyn Progress>,
}

impl CellRun<'_> {
    /// Runs every request; false when stopped before all ran.
    pub async fn run(self) -> (Vec<RequestRow>, Vec<RoundRow>, bool) {
        let plan = CellPlan {
            cell: self.cell.clone(),
            workload: self.config.workload.clone(),
            prompts: self.prompts.to_vec(),
            cost: self.config.cost.clone(),
            seed: self.config.seed,
        };
        let backend = RealBackend {
            draft: self.draft.clone(),
            verifier: self.verifier.clone(),
            prompt_ids: self.prompt_ids.to_vec(),
            stop: self.stop.clone(),
            progress: self.progress.clone(),
        };
        let driver = CellDriver::new(plan, backend);
        let mut tasks = tokio::task::JoinSet::new();
        for client in driver.clients() {
            tasks.spawn(client);
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!("a request task failed: {e}");
            }
        }
        let done = driver.finish();
        (done.requests, done.rounds, done.missing.is_empty())
    }
}

impl Backend for RealBackend {
    fn clock(&self) -> &dyn Clock {
        &SystemClock
    }

    fn prompt_ids(&self, index: usize, _seed: u64) -> Vec<u32> {
        self.prompt_ids[index].clone()
    }

    fn generate<'a>(
        &'a self,
        ask: &'a Ask<'a>,
        device: Option<DevicePace>,
    ) -> BoxFuture<'a, Result<Report, DraftError>> {
        let strategy = ask.strategy;
        let verifier = self.verifier.clone().filter(|_| strategy.needs_verifier());
        let edge = Edge {
            draft: strategy.needs_draft().then_some(&*self.draft),
            verifier: verifier.map(|mut t| {
                t.options.link = Some(ask.cell.link.clone());
                t.options.link_seed = ask.seed;
                t
            }),
            device,
        };
        Box::pin(async move { tandem_draft::generate(&edge, &ask.generate, &mut |_, _| {}).await })
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn request_done(&self) {
        self.progress.request_done();
    }
}
