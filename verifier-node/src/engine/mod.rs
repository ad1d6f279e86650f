//! The engine: one thread that owns the target model and every session's KV cache.
//!
//! Transports talk to it through an [`EngineHandle`]: commands over an mpsc channel,
//! each with a oneshot reply (TGI's queue pattern). The thread (`worker`) queues work in
//! arrival order, gathers for up to [`BatchPolicy::max_wait`], picks a pass under a
//! token budget ([`scheduler`], clock-free, which the simulator drives too, over a
//! `queue` whose every step costs O(log n) in the sessions waiting), runs it as
//! one ragged batched forward pass (held to a cloud profile's time if it has one:
//! [`pace`]), and answers (`outcome`); each pass's counts
//! ([`PassStats`]) reach the metrics once. One
//! session appears at most once per pass, so its blocks are verified in the order they
//! came; long prompts are prefilled in chunks between everyone else's blocks.
//!
//! Admission: a new session must fit the [`KvBudget`] and the session limit; any
//! request beyond [`EngineConfig::max_queued`] unanswered ones is refused with
//! `RESOURCE_EXHAUSTED` at once rather than queued without bound.

mod admission;
pub mod batch;
pub mod budget;
pub mod early_exit;
mod job;
mod outcome;
pub mod pace;
mod queue;
pub mod scheduler;
mod session;
mod stats;
#[cfg(test)]
mod tests;
mod worker;

pub use batch::BatchPolicy;
pub use budget::KvBudget;
pub use pace::PassPace;
pub use stats::PassStats;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tandem_models::LanguageModel;
use tandem_protocol::limits::{DraftBlock, OpenRequest};
use tandem_protocol::{Limits, WireError, pb};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// What the engine serves: the model and the limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Name reported in `Info` (the model spec as given).
    pub model_name: String,
    /// Input limits.
    pub limits: Limits,
    /// How passes are formed.
    pub batch: BatchPolicy,
    /// A session with no block for this long is evicted (its KV cache freed); its next
    /// block gets `NOT_FOUND` and the draft node re-opens it. Zero: never.
    pub idle_timeout: std::time::Duration,
    /// KV-cache memory sessions may reserve.
    pub kv: KvBudget,
    /// Most requests (opens and blocks) waiting for or in a pass; more are refused.
    pub max_queued: usize,
    /// Decoder layers (0-based, increasing, each before the last; see
    /// [`early_exit::check_layers`]) after which a pass sends provisional verdicts to
    /// the sessions that asked. Empty: none.
    pub early_exit_layers: Vec<usize>,
    /// Hold each pass to at least the time this profile gives ([`pace`]). None: passes
    /// take what the forward takes.
    pub pace: Option<PassPace>,
}

impl EngineConfig {
    /// Default limits, batching and idle timeout, for a model called `model_name`.
    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            limits: Limits::default(),
            batch: BatchPolicy::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            kv: KvBudget::default(),
            max_queued: DEFAULT_MAX_QUEUED,
            early_exit_layers: Vec::new(),
            pace: None,
        }
    }
}

/// Default bound on unanswered requests: four per session at the default session
/// limit, so it only bites when the engine falls far behind.
pub const DEFAULT_MAX_QUEUED: usize = 1024;

/// Default idle timeout: five minutes.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// An event of cloud-only generation, streamed to the session's transport.
pub type GenEvent = pb::cloud_message::Kind;

pub(crate) enum Command {
    Open {
        req: OpenRequest,
        events: Option<mpsc::UnboundedSender<GenEvent>>,
        arrived: Instant,
        reply: oneshot::Sender<Result<pb::Opened, WireError>>,
    },
    Verify {
        session: u64,
        block: DraftBlock,
        arrived: Instant,
        reply: oneshot::Sender<Result<pb::Verdict, WireError>>,
        provisional: Option<early_exit::ProvisionalTx>,
    },
    Close {
        session: u64,
    },
}

/// A cheap, cloneable handle to the engine thread.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    info: pb::InfoResponse,
    limits: Limits,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

/// One request's place in the engine's queue, given back however the request ends
/// (answered, failed, or its caller gone).
struct Place<'a> {
    queued: &'a AtomicUsize,
    gauge: &'a prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Open { .. } => write!(f, "Open"),
            Command::Verify { session, block, .. } => {
                write!(f, "Verify(session {session}, seq {})", block.seq)
            }
            Command::Close { session } => write!(f, "Close({session})"),
        }
    }
}

fn gone() -> WireError {
    WireError::new(tonic::Code::Unavailable, "the verifier is shutting down")
}

impl EngineHandle {
    /// Starts the engine thread with `model`. The thread ends when every handle is gone.
    pub fn start<M>(model: M, config: EngineConfig) -> Self
    where
        M: LanguageModel + 'static,
    {
        let info = worker::info_response(&model, &config);
        // Room for every queued request plus the closes, which are never refused.
        let max_queued = config.max_queued.max(1);
        let (tx, rx) = mpsc::channel(max_queued + 1024);
        let limits = config.limits;
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("tandem-engine".into())
            .spawn(move || worker::Worker::new(model, config, m).run(rx))
            .expect("spawning the engine thread");
        Self {
            tx,
            info,
            limits,
            metrics,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued,
        }
    }

    /// Requests sent to the engine and not yet answered.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Takes a place in the queue, or refuses when all are taken.
    fn place(&self) -> Result<Place<'_>, WireError> {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        let place = Place {
            queued: &self.queued,
            gauge: &self.metrics.queued_requests,
        };
        place.gauge.inc();
        if before >= self.max_queued {
            return Err(WireError::exhausted(format!(
                "the verifier's queue is full ({before} requests waiting, its limit): retry \
                 after a verdict, or add verifiers"
            )));
        }
        Ok(place)
    }

    /// The verifier's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What `Info` answers.
    pub fn info(&self) -> &pb::InfoResponse {
        &self.info
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Opens a session (prefill + first token). With `events`, the session generates
    /// alone and streams its tokens there.
    pub async fn open(
        &self,
        req: OpenRequest,
        events: Option<mpsc::UnboundedSender<GenEvent>>,
    ) -> Result<pb::Opened, WireError> {
        let _place = self.place()?;
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Open {
            req,
            events,
            arrived: Instant::now(),
            reply,
        };
        self.tx.send(cmd).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Verifies one draft block of `session`.
    pub async fn verify(&self, session: u64, block: DraftBlock) -> Result<pb::Verdict, WireError> {
        self.verify_early(session, block, None).await
    }

    /// Verifies one draft block of `session`, sending the provisional verdicts of the
    /// engine's early exits (if it has any) to `provisional` while the pass runs.
    pub async fn verify_early(
        &self,
        session: u64,
        block: DraftBlock,
        provisional: Option<early_exit::ProvisionalTx>,
    ) -> Result<pb::Verdict, WireError> {
        let _place = self.place()?;
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Verify {
            session,
            block,
            arrived: Instant::now(),
            reply,
            provisional,
        };
        self.tx.send(cmd).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Frees a session's cache (also stops its generation). Never blocks.
    pub fn close(&self, session: u64) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) =
            self.tx.try_send(Command::Close { session })
        {
            // The queue is full: deliver it later rather than leak the cache.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tx = self.tx.clone();
                rt.spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}
