//! The engine thread's loop: gather work for a moment, choose a pass
//! ([`super::batch::select`]), run it as one batched forward, answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_models::{BatchEntry, LanguageModel, Positions, SessionCache};
use tandem_protocol::limits::DraftBlock;
use tandem_protocol::{WireError, pb};
use tokio::sync::{mpsc, oneshot};

use super::batch::{Candidate, select};
use super::session::{Generation, Session};
use super::{Command, EngineConfig, GenEvent};
use crate::metrics::Metrics;

/// A new session, prefilled chunk by chunk; it owns the session until it is done.
struct Prefill<C> {
    session: Session<C>,
    done: usize,
    arrived: Instant,
    events: Option<mpsc::UnboundedSender<GenEvent>>,
    max_new: u32,
    ignore_eos: bool,
    reply: oneshot::Sender<Result<pb::Opened, WireError>>,
}

/// A draft block of an open session.
struct Verify {
    session: u64,
    block: DraftBlock,
    arrived: Instant,
    reply: oneshot::Sender<Result<pb::Verdict, WireError>>,
}

/// Work waiting for a pass, in arrival order.
enum Work<C> {
    Prefill(Prefill<C>),
    Verify(Verify),
}

impl<C> Work<C> {
    fn session(&self) -> u64 {
        match self {
            Work::Prefill(p) => p.session.id,
            Work::Verify(v) => v.session,
        }
    }

    fn arrived(&self) -> Instant {
        match self {
            Work::Prefill(p) => p.arrived,
            Work::Verify(v) => v.arrived,
        }
    }
}

/// What one session does in this pass: a chunk of prefill (that many tokens), a block,
/// or one step of cloud-only generation.
enum Job<C> {
    Prefill(Prefill<C>, usize),
    Verify(Session<C>, Verify),
    Generate(Session<C>),
}

pub(super) struct Worker<M: LanguageModel> {
    model: M,
    config: EngineConfig,
    sessions: HashMap<u64, Session<M::Cache>>,
    queue: VecDeque<Work<M::Cache>>,
    next_id: u64,
    /// Recently evicted sessions, so their next block learns why (bounded).
    evicted: VecDeque<u64>,
    /// For timed waits on the command channel from this plain thread.
    clock: tokio::runtime::Runtime,
    metrics: Arc<Metrics>,
}

/// How many evicted session ids are remembered for the error message.
const EVICTED_MEMORY: usize = 4096;

pub(super) fn info_response<M: LanguageModel>(
    model: &M,
    config: &EngineConfig,
) -> pb::InfoResponse {
    let info = model.info();
    pb::InfoResponse {
        model: config.model_name.clone(),
        vocab_size: info.vocab_size as u32,
        tokenizer_fingerprint: info.tokenizer_fingerprint.clone(),
        max_context: info.max_context as u32,
        limits: Some(config.limits.into()),
        modes: vec![
            pb::AcceptanceMode::Greedy as i32,
            pb::AcceptanceMode::Stochastic as i32,
        ],
        generate: true,
        eos_token_ids: info.eos_token_ids.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        bos_token_id: info.bos_token_id,
    }
}

fn timing(
    start: Instant,
    arrived: Option<Instant>,
    forward_ns: u64,
    size: usize,
    tokens: usize,
) -> pb::Timing {
    pb::Timing {
        queue_ns: arrived.map_or(0, |a| start.saturating_duration_since(a).as_nanos() as u64),
        forward_ns,
        batch_size: size as u32,
        batch_tokens: tokens as u32,
    }
}

impl<M: LanguageModel> Worker<M> {
    pub fn new(model: M, config: EngineConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            model,
            config,
            sessions: HashMap::new(),
            queue: VecDeque::new(),
            next_id: 1,
            evicted: VecDeque::new(),
            clock: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a timer-only runtime"),
            metrics,
        }
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut open = true;
        loop {
            self.evict_idle();
            let idle = self.queue.is_empty() && !self.generating();
            if idle {
                if !open {
                    return;
                }
                let timeout = self.config.idle_timeout;
                let next = if timeout.is_zero() || self.sessions.is_empty() {
                    rx.blocking_recv().ok_or(())
                } else {
                    // Wake now and then to evict sessions that went quiet.
                    let tick = timeout / 4;
                    match self
                        .clock
                        .block_on(async { tokio::time::timeout(tick, rx.recv()).await })
                    {
                        Ok(c) => c.ok_or(()),
                        Err(_) => continue,
                    }
                };
                match next {
                    Ok(c) => self.accept(c),
                    Err(()) => return,
                }
            }
            open &= self.gather(&mut rx);
            self.pass();
        }
    }

    /// Frees sessions that have had nothing to do for longer than the idle timeout.
    fn evict_idle(&mut self) {
        let timeout = self.config.idle_timeout;
        if timeout.is_zero() {
            return;
        }
        let queued: Vec<u64> = self.queue.iter().map(Work::session).collect();
        let stale: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.generation.is_none() && s.last_active.elapsed() > timeout)
            .filter(|s| !queued.contains(&s.id))
            .map(|s| s.id)
            .collect();
        for id in stale {
            self.sessions.remove(&id);
            tracing::info!(session = id, "evicted after {timeout:?} idle");
            if self.evicted.len() == EVICTED_MEMORY {
                self.evicted.pop_front();
            }
            self.evicted.push_back(id);
            self.metrics.sessions_evicted.inc();
            self.gauges();
        }
    }

    /// KV bytes promised to open and opening sessions (each its whole `max_len`).
    fn kv_reserved(&self) -> u64 {
        let opening = self.queue.iter().filter_map(|w| match w {
            Work::Prefill(p) => Some(p.session.max_len),
            Work::Verify(_) => None,
        });
        let tokens: usize = self
            .sessions
            .values()
            .map(|s| s.max_len)
            .chain(opening)
            .sum();
        (tokens * self.model.info().kv_bytes_per_token) as u64
    }

    fn generating(&self) -> bool {
        self.sessions.values().any(|s| s.generation.is_some())
    }

    /// Takes commands until the pass is worth running: the budget is full, every open
    /// session has work waiting, or `max_wait` has passed since the oldest work came.
    /// Returns false once the channel is closed.
    fn gather(&mut self, rx: &mut mpsc::Receiver<Command>) -> bool {
        let policy = self.config.batch;
        loop {
            loop {
                match rx.try_recv() {
                    Ok(c) => self.accept(c),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return false,
                }
            }
            let oldest = self.queue.front().map(Work::arrived);
            let waited = oldest.map_or(Duration::MAX, |t| t.elapsed());
            if waited >= policy.max_wait || self.full() || self.everyone_waiting() {
                return true;
            }
            let rest = policy.max_wait - waited;
            let next = self
                .clock
                .block_on(async { tokio::time::timeout(rest, rx.recv()).await });
            match next {
                Ok(Some(c)) => self.accept(c),
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    fn full(&self) -> bool {
        let tokens: usize = self
            .queue
            .iter()
            .map(|w| match w {
                Work::Prefill(p) => p.session.committed.len() - p.done,
                Work::Verify(v) => v.block.tokens.len() + 1,
            })
            .sum();
        tokens >= self.config.batch.max_tokens || self.queue.len() >= self.config.batch.max_sessions
    }

    /// Whether every open session that could send a block has one waiting.
    fn everyone_waiting(&self) -> bool {
        let waiting: std::collections::HashSet<u64> =
            self.queue.iter().map(Work::session).collect();
        self.sessions
            .values()
            .filter(|s| s.generation.is_none())
            .all(|s| waiting.contains(&s.id))
    }

    /// Files a command: new sessions and blocks join the queue, closes act at once.
    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Close { session } => {
                self.sessions.remove(&session);
                self.queue
                    .retain(|w| !matches!(w, Work::Prefill(p) if p.session.id == session));
                self.gauges();
            }
            Command::Open {
                req,
                events,
                arrived,
                reply,
            } => {
                let prefilling = self
                    .queue
                    .iter()
                    .filter(|w| matches!(w, Work::Prefill(_)))
                    .count();
                let open = self.sessions.len() + prefilling;
                if open >= self.config.limits.max_sessions as usize {
                    let _ = reply.send(Err(WireError::exhausted(format!(
                        "the verifier already serves {open} sessions, its limit (Limits.max_sessions)"
                    ))));
                    return;
                }
                let limits = &self.config.limits;
                let budget = req.prompt.len()
                    + req.max_new_tokens as usize
                    + if req.generate {
                        0
                    } else {
                        limits.max_draft_tokens as usize + 1
                    };
                let max_len = budget.min(self.model.info().max_context);
                let per_token = self.model.info().kv_bytes_per_token;
                if let Err(e) = self.config.kv.admit(max_len, per_token, self.kv_reserved()) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
                let session = Session::new(id, self.model.new_cache_for(max_len), &req, max_len);
                self.queue.push_back(Work::Prefill(Prefill {
                    session,
                    done: 0,
                    arrived,
                    events,
                    max_new: req.max_new_tokens,
                    ignore_eos: req.ignore_eos,
                    reply,
                }));
            }
            Command::Verify {
                session,
                block,
                arrived,
                reply,
            } => self.queue.push_back(Work::Verify(Verify {
                session,
                block,
                arrived,
                reply,
            })),
        }
    }

    /// Chooses and runs one pass.
    fn pass(&mut self) {
        // Blocks that cannot run (unknown session, stale) are answered here and leave.
        let sessions = &self.sessions;
        let evicted = &self.evicted;
        let idle = self.config.idle_timeout;
        let mut refused = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        let mut pending: HashMap<u64, usize> = HashMap::new();
        for w in self.queue.drain(..) {
            if let Work::Verify(Verify { session, block, .. }) = &w {
                // A block behind another of its session is checked when it reaches
                // the front of that session's line.
                if !pending.contains_key(session) {
                    let check = match sessions.get(session) {
                        None if evicted.contains(session) => Err(WireError::new(
                            tonic::Code::NotFound,
                            format!(
                                "session {session} was evicted after {idle:?} idle: re-open it with the committed tokens"
                            ),
                        )),
                        None => Err(WireError::new(
                            tonic::Code::NotFound,
                            format!(
                                "unknown session {session}: it was never opened here, or it was closed"
                            ),
                        )),
                        Some(s) => s.check_block(block),
                    };
                    if let Err(e) = check {
                        refused.push((w, e));
                        continue;
                    }
                }
            }
            *pending.entry(w.session()).or_default() += 1;
            kept.push_back(w);
        }
        self.queue = kept;
        for (w, e) in refused {
            if let Work::Verify(v) = w {
                let _ = v.reply.send(Err(e));
            }
        }

        let generating: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.generation.is_some())
            .map(|s| s.id)
            .collect();
        let candidates: Vec<Candidate> = self
            .queue
            .iter()
            .map(|w| match w {
                Work::Prefill(Prefill { session, done, .. }) => Candidate {
                    session: session.id,
                    tokens: (session.committed.len() - done)
                        .min(self.config.batch.prefill_chunk.max(1)),
                    min_tokens: 1,
                },
                Work::Verify(Verify { block, .. }) => Candidate {
                    session: w.session(),
                    tokens: block.tokens.len() + 1,
                    min_tokens: block.tokens.len() + 1,
                },
            })
            .collect();
        let picked = select(
            &candidates,
            &self.config.batch,
            generating.len(),
            &generating,
        );

        let mut jobs: Vec<Job<M::Cache>> = generating
            .iter()
            .map(|id| Job::Generate(self.sessions.remove(id).expect("listed")))
            .collect();
        let mut taken: Vec<Option<Work<M::Cache>>> = self.queue.drain(..).map(Some).collect();
        for &(i, tokens) in &picked {
            let w = taken[i].take().expect("picked once");
            match w {
                Work::Prefill(p) => jobs.push(Job::Prefill(p, tokens)),
                Work::Verify(v) => {
                    let s = self.sessions.remove(&v.session).expect("checked above");
                    jobs.push(Job::Verify(s, v));
                }
            }
        }
        self.queue = taken.into_iter().flatten().collect();
        if !jobs.is_empty() {
            self.run_jobs(jobs);
        }
    }

    fn run_jobs(&mut self, mut jobs: Vec<Job<M::Cache>>) {
        let inputs: Vec<Vec<u32>> = jobs
            .iter()
            .map(|job| match job {
                Job::Prefill(Prefill { session, done, .. }, n) => {
                    session.committed[*done..done + n].to_vec()
                }
                Job::Verify(s, v) => s.verify_input(&v.block),
                Job::Generate(s) => vec![*s.committed.last().expect("never empty")],
            })
            .collect();
        let batch_tokens: usize = inputs.iter().map(Vec::len).sum();
        let size = inputs.len();
        let start = Instant::now();
        let result = {
            let mut entries: Vec<BatchEntry<'_, M::Cache>> = jobs
                .iter_mut()
                .zip(&inputs)
                .map(|(job, tokens)| {
                    let (cache, positions) = match job {
                        Job::Prefill(p, _) => (&mut p.session.cache, Positions::Last),
                        Job::Verify(s, _) => (&mut s.cache, Positions::All),
                        Job::Generate(s) => (&mut s.cache, Positions::Last),
                    };
                    BatchEntry {
                        cache,
                        tokens,
                        positions,
                    }
                })
                .collect();
            self.model.forward_batch(&mut entries)
        };
        let forward_ns = start.elapsed().as_nanos() as u64;
        self.metrics.batch_size.observe(size as f64);
        self.metrics.batch_tokens.observe(batch_tokens as f64);
        self.metrics
            .forward_seconds
            .observe(forward_ns as f64 / 1e9);
        let waited = |arrived: Instant| start.saturating_duration_since(arrived).as_secs_f64();
        let logits = match result {
            Ok(l) => l,
            Err(e) => return self.fail(jobs, e),
        };
        let mut unfinished = Vec::new();
        for (job, rows) in jobs.into_iter().zip(logits) {
            match job {
                Job::Prefill(
                    Prefill {
                        mut session,
                        done,
                        arrived,
                        events,
                        max_new,
                        ignore_eos,
                        reply,
                    },
                    n,
                ) => {
                    if done + n < session.committed.len() {
                        // More prompt to go: back to the front of the line.
                        unfinished.push(Prefill {
                            session,
                            done: done + n,
                            arrived,
                            events,
                            max_new,
                            ignore_eos,
                            reply,
                        });
                        continue;
                    }
                    let first = session.pick(rows.last());
                    session.push(first);
                    self.metrics.queue_seconds.observe(waited(arrived));
                    self.metrics
                        .prompt_tokens
                        .inc_by(session.committed.len() as u64 - 1);
                    self.metrics.sessions_opened.inc();
                    self.metrics.generation_tokens.inc();
                    let opened = pb::Opened {
                        session_id: session.id,
                        first_token: first,
                        committed_len: session.committed.len() as u32,
                        timing: Some(timing(start, Some(arrived), forward_ns, size, batch_tokens)),
                    };
                    if reply.send(Ok(opened)).is_err() {
                        continue; // the client went away before its session opened
                    }
                    if let Some(events) = events {
                        session.generation = Some(Generation {
                            events,
                            remaining: max_new - 1,
                            ignore_eos,
                        });
                        if self.finished(&session) {
                            continue;
                        }
                    }
                    self.sessions.insert(session.id, session);
                }
                Job::Verify(
                    mut s,
                    Verify {
                        block,
                        arrived,
                        reply,
                        ..
                    },
                ) => {
                    self.metrics.queue_seconds.observe(waited(arrived));
                    let answer = s
                        .accept(&block, &rows)
                        .inspect(|v| self.metrics.verified(v.drafted, v.accepted))
                        .map(|v| pb::Verdict {
                            seq: block.seq,
                            accepted: v.accepted as u32,
                            next_token: v.next_token,
                            committed_len: s.committed.len() as u32,
                            timing: Some(timing(
                                start,
                                Some(arrived),
                                forward_ns,
                                size,
                                batch_tokens,
                            )),
                        });
                    let _ = reply.send(answer);
                    self.sessions.insert(s.id, s);
                }
                Job::Generate(mut s) => {
                    let token = s.pick(rows.last());
                    s.push(token);
                    self.metrics.generation_tokens.inc();
                    let g = s.generation.as_mut().expect("generating");
                    g.remaining -= 1;
                    let msg = pb::cloud_message::Kind::Token(pb::Token {
                        token,
                        committed_len: s.committed.len() as u32,
                        timing: Some(timing(start, None, forward_ns, size, batch_tokens)),
                    });
                    if g.events.send(msg).is_err() || self.finished(&s) {
                        continue; // gone or done: the session ends here
                    }
                    self.sessions.insert(s.id, s);
                }
            }
        }
        for w in unfinished.into_iter().rev() {
            self.queue.push_front(Work::Prefill(w));
        }
        self.gauges();
    }

    /// Sets the gauges of what the engine holds.
    fn gauges(&self) {
        self.metrics.active_sessions.set(self.sessions.len() as i64);
        let kv: usize = self.sessions.values().map(|s| s.cache.bytes()).sum();
        self.metrics.kv_cache_bytes.set(kv as i64);
        self.metrics
            .kv_reserved_bytes
            .set(self.kv_reserved() as i64);
    }

    /// A failed pass (caches untouched): everyone in it is told; blocks' sessions stay.
    fn fail(&mut self, jobs: Vec<Job<M::Cache>>, e: tandem_models::ModelError) {
        tracing::error!("forward pass failed: {e}");
        let err = WireError::internal(format!("the target's forward pass failed: {e}"));
        for job in jobs {
            match job {
                Job::Prefill(p, _) => {
                    let _ = p.reply.send(Err(err.clone()));
                }
                Job::Verify(s, v) => {
                    let _ = v.reply.send(Err(err.clone()));
                    self.sessions.insert(s.id, s);
                }
                Job::Generate(s) => {
                    if let Some(g) = &s.generation {
                        let _ = g.events.send(pb::cloud_message::Kind::Error(err.to_pb(0)));
                    }
                }
            }
        }
    }

    /// For a generating session: whether it is done; if so, tells its stream why.
    fn finished(&self, s: &Session<M::Cache>) -> bool {
        let g = s.generation.as_ref().expect("generating");
        let last = *s.committed.last().expect("never empty");
        let reason = if !g.ignore_eos && self.model.info().eos_token_ids.contains(&last) {
            "eos"
        } else if g.remaining == 0 {
            "length"
        } else if s.committed.len() >= s.max_len {
            "context"
        } else {
            return false;
        };
        let _ = g
            .events
            .send(pb::cloud_message::Kind::Finished(pb::Finished {
                reason: reason.into(),
            }));
        true
    }
}
