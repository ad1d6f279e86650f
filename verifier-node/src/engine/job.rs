//! The engine's jobs: what waits in the scheduler's queue, and what each session does
//! in a pass (its input and its place in the batched forward).

use std::time::Instant;

use tandem_models::{BatchEntry, Positions, SessionCache};
use tandem_protocol::limits::DraftBlock;
use tandem_protocol::{WireError, pb};
use tokio::sync::{mpsc, oneshot};

use super::GenEvent;
use super::scheduler::{Size, Waiting};
use super::session::Session;

/// A new session, prefilled chunk by chunk; it owns the session until it is opened.
pub(super) struct Prefill<C> {
    pub session: Session<C>,
    /// Prompt tokens already in the cache.
    pub done: usize,
    /// Where its tokens go when the verifier generates alone.
    pub events: Option<mpsc::UnboundedSender<GenEvent>>,
    pub max_new: u32,
    pub ignore_eos: bool,
    pub reply: oneshot::Sender<Result<pb::Opened, WireError>>,
}

/// A draft block of an open session.
pub(super) struct Verify {
    pub block: DraftBlock,
    /// A tree block's parent rows in the pass ([`super::session::pass_tree`]).
    pub tree: Option<Vec<u32>>,
    pub reply: oneshot::Sender<Result<pb::Verdict, WireError>>,
    /// Where its provisional verdicts go, if its edge asked for them.
    pub provisional: Option<super::early_exit::ProvisionalTx>,
    /// The block's life: queued, in a pass, answered.
    pub span: tracing::Span,
}

/// Work waiting for a pass.
pub(super) enum Queued<C> {
    Prefill(Prefill<C>),
    Verify(Verify),
}

impl<C> Prefill<C> {
    /// Tokens of the prompt still to run.
    pub fn remaining(&self) -> usize {
        self.session.committed.len() - self.done
    }

    /// Its place in the queue.
    pub fn waiting(self, arrived: Instant) -> Waiting<Queued<C>> {
        Waiting {
            session: self.session.id,
            arrived,
            size: Size::Prefill(self.remaining()),
            job: Queued::Prefill(self),
        }
    }
}

impl Verify {
    /// Its place in the queue.
    pub fn waiting<C>(self, session: u64, arrived: Instant) -> Waiting<Queued<C>> {
        Waiting {
            session,
            arrived,
            size: Size::Block(self.block.tokens.len() + 1),
            job: Queued::Verify(self),
        }
    }
}

/// What one session does in a pass.
pub(super) enum Job<C> {
    /// A chunk of prefill, that many tokens, of a session that arrived then.
    Prefill(Prefill<C>, usize, Instant),
    /// A block, of a session that arrived then.
    Verify(Session<C>, Verify, Instant),
    /// One step of cloud-only generation.
    Generate(Session<C>),
}

impl<C: SessionCache> Job<C> {
    /// The tokens this job feeds the model.
    pub fn input(&self) -> Vec<u32> {
        match self {
            Job::Prefill(p, n, _) => p.session.committed[p.done..p.done + n].to_vec(),
            Job::Verify(s, v, _) => s.verify_input(&v.block),
            Job::Generate(s) => vec![s.newest()],
        }
    }

    /// Its entry in the batched forward over `tokens` (its [`Job::input`]).
    pub fn entry<'a>(&'a mut self, tokens: &'a [u32]) -> BatchEntry<'a, C> {
        let (cache, positions, tree) = match self {
            Job::Prefill(p, ..) => (&mut p.session.cache, Positions::Last, None),
            Job::Verify(s, v, _) => (&mut s.cache, Positions::All, v.tree.as_deref()),
            Job::Generate(s) => (&mut s.cache, Positions::Last, None),
        };
        BatchEntry {
            cache,
            tokens,
            positions,
            tree,
        }
    }

    /// The span its events belong to.
    pub fn span(&self) -> &tracing::Span {
        match self {
            Job::Prefill(p, ..) => &p.session.span,
            Job::Verify(_, v, _) => &v.span,
            Job::Generate(s) => &s.span,
        }
    }
}
