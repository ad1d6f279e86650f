//! The scheduler: what waits for a pass, when a pass is worth running, which blocks may
//! run, and which jobs form the next pass. No model, no channels and no clock: `now` is
//! an argument, so the real engine (on the system clock) and the simulator (on its
//! virtual clock) drive this same code and cannot drift apart.
//!
//! Terms:
//! - a **job** waits in arrival order: a prefill (the rest of a new session's prompt,
//!   cut into chunks of [`BatchPolicy::prefill_chunk`]) or a draft block (`k` tokens,
//!   run as `k + 1`: the newest committed token first);
//! - a session's **line** is its jobs in the queue, in order; only the job at the head
//!   of a line can be checked against the session, since the ones behind it extend what
//!   that one will commit;
//! - a **pass** takes one job per session ([`batch::select`]), plus the steps of
//!   sessions generating alone, which are reserved before anything is picked.

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use tandem_protocol::WireError;

use super::batch::{self, BatchPolicy, Candidate};
use super::queue::Queue;

/// Where a draft block starts: the committed length it extends and the token it ends in
/// (`Draft.base_len`, `Draft.anchor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// Committed length.
    pub len: usize,
    /// Newest committed token.
    pub newest: u32,
}

/// The check every block gets at the head of its session's line: it must extend exactly
/// what the session has committed, or it is stale (`FAILED_PRECONDITION`: a pipelined
/// guess that missed, or a lost verdict).
pub fn check_extends(block: Base, session: Base) -> Result<(), WireError> {
    if block != session {
        return Err(WireError::precondition(format!(
            "stale draft: it extends length {} ending in {}, the session has length {} ending in {}",
            block.len, block.newest, session.len, session.newest
        )));
    }
    Ok(())
}

/// How many tokens a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A draft block: its drafted tokens plus the newest committed one; never cut.
    Block(usize),
    /// A prefill: the prompt tokens still to run; cut to the room left in a pass.
    Prefill(usize),
}

impl Size {
    /// Tokens the whole job runs.
    pub fn tokens(self) -> usize {
        match self {
            Size::Block(n) | Size::Prefill(n) => n,
        }
    }
}

/// One job in the queue, with what the scheduler needs to know of it.
#[derive(Debug)]
pub struct Waiting<J> {
    /// Its session.
    pub session: u64,
    /// When it reached the verifier.
    pub arrived: Instant,
    /// How many tokens it runs.
    pub size: Size,
    /// The job itself (the engine's: its reply channel, its block...).
    pub job: J,
}

/// Whether to run a pass now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    /// Run it: the budget is full, every session has work waiting, or the oldest job
    /// has waited [`BatchPolicy::max_wait`].
    Run,
    /// Wait for more work, at most this long.
    Wait(Duration),
}

/// The queue and the rules that empty it.
#[derive(Debug)]
pub struct Scheduler<J> {
    policy: BatchPolicy,
    queue: Queue<J>,
}

impl<J> Scheduler<J> {
    /// An empty queue under `policy`.
    pub fn new(policy: BatchPolicy) -> Self {
        Self {
            policy,
            queue: Queue::default(),
        }
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The waiting jobs, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = &Waiting<J>> {
        self.queue.iter()
    }

    /// Whether `session` has a job waiting.
    pub fn has_work(&self, session: u64) -> bool {
        self.queue.has_work(session)
    }

    /// Files a job behind everything waiting.
    pub fn push(&mut self, w: Waiting<J>) {
        self.queue.push_back(w);
    }

    /// Files a job ahead of everything: a prefill with more prompt to go keeps its place.
    pub fn push_front(&mut self, w: Waiting<J>) {
        self.queue.push_front(w);
    }

    /// Keeps only the jobs `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(&Waiting<J>) -> bool) {
        for w in self.queue.take_all() {
            if keep(&w) {
                self.queue.push_back(w);
            }
        }
    }

    /// Takes out every job of `session`.
    pub fn forget(&mut self, session: u64) {
        self.queue.forget(session);
    }

    /// Empties the queue.
    pub fn clear(&mut self) {
        self.queue.take_all();
    }

    /// The waiting jobs fill a pass, by tokens or by sessions.
    pub fn full(&self) -> bool {
        self.queue.tokens() >= self.policy.max_tokens
            || self.queue.len() >= self.policy.max_sessions
    }

    /// Whether every session in `could_send` (open sessions that take drafts) has work
    /// waiting: nobody else will add to this pass.
    pub fn everyone_waiting(&self, could_send: impl IntoIterator<Item = u64>) -> bool {
        could_send.into_iter().all(|s| self.has_work(s))
    }

    /// Whether a pass is worth running at `now`, or how long more work may be awaited;
    /// `everyone_waiting`: every session that could send has work waiting (see
    /// [`Self::everyone_waiting`]). An empty queue runs at once (the pass then holds
    /// only generation steps).
    pub fn gather(&self, now: Instant, everyone_waiting: bool) -> Gather {
        let waited = self
            .queue
            .front()
            .map_or(Duration::MAX, |w| now.saturating_duration_since(w.arrived));
        if waited >= self.policy.max_wait || self.full() || everyone_waiting {
            Gather::Run
        } else {
            Gather::Wait(self.policy.max_wait - waited)
        }
    }

    /// Checks the job at the head of each session's line with `check` and takes out the
    /// ones it refuses, with its reason (the next job of that line is then checked in
    /// turn). Jobs further back wait for the ones ahead of them.
    pub fn refuse<E>(
        &mut self,
        mut check: impl FnMut(&Waiting<J>) -> Result<(), E>,
    ) -> Vec<(Waiting<J>, E)> {
        let mut refused = Vec::new();
        let mut heads: FxHashSet<u64> = FxHashSet::default();
        for w in self.queue.take_all() {
            if !heads.contains(&w.session)
                && let Err(e) = check(&w)
            {
                refused.push((w, e));
                continue;
            }
            heads.insert(w.session);
            self.queue.push_back(w);
        }
        refused
    }

    /// Takes the jobs of the next pass out of the queue, in arrival order, each with the
    /// tokens it runs now (a prefill may run a chunk). `reserved` sessions (steps of
    /// generation, one token each) are already in the pass. Costs what the pass
    /// reaches into the queue, not the queue's length.
    pub fn next_pass(&mut self, reserved: &[u64]) -> Vec<(Waiting<J>, usize)> {
        let chunk = self.policy.prefill_chunk.max(1);
        let candidates = self.queue.iter().map(|w| match w.size {
            Size::Block(n) => Candidate {
                session: w.session,
                tokens: n,
                min_tokens: n,
            },
            Size::Prefill(n) => Candidate {
                session: w.session,
                tokens: n.min(chunk),
                min_tokens: 1,
            },
        });
        let picked = batch::select(candidates, &self.policy, reserved.len(), reserved);
        let at: Vec<usize> = picked.iter().map(|&(i, _)| i).collect();
        self.queue
            .take_at(&at)
            .into_iter()
            .zip(picked)
            .map(|(w, (_, tokens))| (w, tokens))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_sessions: usize, max_tokens: usize, max_wait_ms: u64) -> BatchPolicy {
        BatchPolicy {
            max_sessions,
            max_tokens,
            max_wait: Duration::from_millis(max_wait_ms),
            prefill_chunk: 4,
        }
    }

    fn job(session: u64, arrived: Instant, size: Size) -> Waiting<u32> {
        Waiting {
            session,
            arrived,
            size,
            job: session as u32,
        }
    }

    #[test]
    fn gathers_until_the_oldest_waited_long_enough_or_nobody_else_can_send() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(policy(8, 100, 10));
        s.push(job(1, t0, Size::Block(3)));
        let later = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(
            s.gather(later(4), s.everyone_waiting([1, 2])),
            Gather::Wait(Duration::from_millis(6))
        );
        assert_eq!(s.gather(later(10), s.everyone_waiting([1, 2])), Gather::Run);
        // When session 1 is the only one that could send, nobody else will join.
        assert_eq!(s.gather(later(4), s.everyone_waiting([1])), Gather::Run);
        s.push(job(2, later(3), Size::Block(3)));
        assert_eq!(s.gather(later(4), s.everyone_waiting([1, 2])), Gather::Run);
        assert_eq!(
            s.gather(later(4), s.everyone_waiting([1, 2, 3])),
            Gather::Wait(Duration::from_millis(6))
        );
    }

    #[test]
    fn a_full_budget_runs_at_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(policy(2, 100, 10));
        s.push(job(1, t0, Size::Block(3)));
        assert!(!s.full());
        s.push(job(2, t0, Size::Block(3)));
        assert!(s.full(), "two sessions fill a pass of two");
        let mut s = Scheduler::new(policy(8, 10, 10));
        s.push(job(1, t0, Size::Prefill(10)));
        assert_eq!(
            s.gather(t0, s.everyone_waiting([9])),
            Gather::Run,
            "ten tokens fill a pass of ten"
        );
    }

    #[test]
    fn only_the_head_of_a_line_is_checked_and_the_next_one_follows_a_refusal() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(policy(8, 100, 10));
        for (session, job_id) in [(1, 10), (1, 11), (2, 20), (1, 12)] {
            s.push(Waiting {
                session,
                arrived: t0,
                size: Size::Block(2),
                job: job_id,
            });
        }
        let mut checked = Vec::new();
        let refused = s.refuse(|w| {
            checked.push(w.job);
            if w.job == 10 { Err("stale") } else { Ok(()) }
        });
        assert_eq!(checked, vec![10, 11, 20], "12 waits behind 11");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0.job, 10);
        let left: Vec<u32> = s.iter().map(|w| w.job).collect();
        assert_eq!(left, vec![11, 20, 12]);
    }

    #[test]
    fn a_pass_takes_one_job_per_session_cuts_prefills_and_keeps_the_rest_in_order() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(policy(8, 100, 10));
        s.push(job(1, t0, Size::Block(3)));
        s.push(job(1, t0, Size::Block(3)));
        s.push(job(2, t0, Size::Prefill(10)));
        s.push(job(3, t0, Size::Block(2)));
        let pass: Vec<(u64, usize)> = s
            .next_pass(&[3])
            .into_iter()
            .map(|(w, n)| (w.session, n))
            .collect();
        // Session 3 steps this pass (reserved); the prefill runs a chunk of 4.
        assert_eq!(pass, vec![(1, 3), (2, 4)]);
        let left: Vec<u64> = s.iter().map(|w| w.session).collect();
        assert_eq!(left, vec![1, 3]);
    }
}
