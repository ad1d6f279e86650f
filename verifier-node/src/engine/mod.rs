//! The engine: one thread that owns the target model and every session's KV cache.
//!
//! Transports talk to it through an [`EngineHandle`]: commands over an mpsc channel,
//! each with a oneshot reply (TGI's queue pattern). The thread queues work in arrival
//! order, gathers for up to [`BatchPolicy::max_wait`], picks a pass under a token
//! budget ([`batch`]), runs it as one ragged batched forward pass, and answers. One
//! session appears at most once per pass, so its blocks are verified in the order they
//! came; long prompts are prefilled in chunks between everyone else's blocks.

pub mod batch;
mod session;
mod worker;

pub use batch::BatchPolicy;

use std::sync::Arc;
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
}

impl EngineConfig {
    /// Default limits, batching and idle timeout, for a model called `model_name`.
    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            limits: Limits::default(),
            batch: BatchPolicy::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

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
        let (tx, rx) = mpsc::channel(4096);
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
        }
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
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Verify {
            session,
            block,
            arrived: Instant::now(),
            reply,
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
