//! The server's phases as its sessions see them, and the count of sessions still
//! running, so a shutdown can let them finish.
//!
//! - `Serving`: business as usual.
//! - `Draining` (graceful shutdown): no new session opens; a session that is waiting
//!   for its client's next message ends with `UNAVAILABLE`; a block or prefill already
//!   in the engine is answered first.
//! - `Stopped`: everything ends at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serving.
    Serving,
    /// Finishing what is in flight; refusing new work.
    Draining,
    /// Gone.
    Stopped,
}

#[derive(Debug, Default)]
struct Active {
    count: AtomicUsize,
    /// Transport streams still delivering their last frames.
    writers: AtomicUsize,
    idle: Notify,
}

/// A session's view of the server's life (cheap to clone).
#[derive(Debug, Clone)]
pub struct Lifecycle {
    phase: watch::Receiver<Phase>,
    active: Arc<Active>,
}

/// Counts one running session while it lives.
#[derive(Debug)]
pub struct SessionGuard(Arc<Active>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Keeps a shutdown waiting while a transport stream delivers its last frames (a
/// session's final `Error` must reach the client before the connection closes).
#[derive(Debug)]
pub struct WriterGuard(Arc<Active>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.0.writers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Lifecycle {
    /// Registers a running session.
    pub fn enter(&self) -> SessionGuard {
        self.active.count.fetch_add(1, Ordering::AcqRel);
        SessionGuard(self.active.clone())
    }

    /// Registers a transport stream that is writing to its client.
    pub fn writing(&self) -> WriterGuard {
        self.active.writers.fetch_add(1, Ordering::AcqRel);
        WriterGuard(self.active.clone())
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves once the server is no longer serving (draining or stopped).
    pub async fn leaving(&mut self) {
        let _ = self.phase.wait_for(|p| *p != Phase::Serving).await;
    }

    /// Resolves once the server has stopped.
    pub async fn stopped(&mut self) {
        let _ = self.phase.wait_for(|p| *p == Phase::Stopped).await;
    }
}

/// The server's side: moves the phase and waits for sessions.
#[derive(Debug)]
pub struct Controller {
    phase: watch::Sender<Phase>,
    active: Arc<Active>,
}

impl Controller {
    /// A controller in `Serving`, and the view sessions share.
    pub fn new() -> (Self, Lifecycle) {
        let (tx, rx) = watch::channel(Phase::Serving);
        let active = Arc::new(Active::default());
        (
            Self {
                phase: tx,
                active: active.clone(),
            },
            Lifecycle { phase: rx, active },
        )
    }

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Sessions still running.
    pub fn active(&self) -> usize {
        self.active.count.load(Ordering::Acquire)
    }

    /// Waits until no session runs and every stream has delivered its last frames, or
    /// `grace` passes. Returns the sessions left.
    pub async fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.active.idle.notified();
            let left = self.active();
            if left == 0 && self.active.writers.load(Ordering::Acquire) == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active();
            }
        }
    }
}
