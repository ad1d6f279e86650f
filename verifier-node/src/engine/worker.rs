//! The engine thread: it owns the model and every session, takes commands, and runs
//! passes. Each step is one call: [`Scheduler::gather`] says when, [`Scheduler::refuse`]
//! and [`Scheduler::next_pass`] say what, [`Job::finish`] answers, and the pass's
//! [`PassStats`] reach the metrics once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tandem_models::{Exits, LanguageModel, ModelError, SessionCache};
use tandem_protocol::{WireError, pb};
use tokio::sync::mpsc;

use super::admission::{Holding, admit};
use super::early_exit::{self, Predictor};
use super::job::{Job, Prefill, Queued, Verify};
use super::outcome::{Outcome, PassInfo};
use super::scheduler::{Gather, Scheduler};
use super::session::Session;
use super::stats::PassStats;
use super::{Command, EngineConfig};
use crate::metrics::Metrics;

pub(super) struct Worker<M: LanguageModel> {
    model: M,
    /// The model's end-of-sequence tokens.
    eos: Vec<u32>,
    config: EngineConfig,
    sessions: HashMap<u64, Session<M::Cache>>,
    scheduler: Scheduler<Queued<M::Cache>>,
    next_id: u64,
    /// Recently evicted sessions, so their next block learns why (bounded).
    evicted: VecDeque<u64>,
    /// Runs timed waits on the command channel from this plain thread.
    timer: tokio::runtime::Runtime,
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
        connections: None,
        early_exit_layers: config.early_exit_layers.iter().map(|&l| l as u32).collect(),
        early_exit_head: match config.early_exit_layers.is_empty() {
            true => String::new(),
            false => early_exit::HEAD.into(),
        },
    }
}

impl<M: LanguageModel> Worker<M> {
    pub fn new(model: M, config: EngineConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            eos: model.info().eos_token_ids.clone(),
            model,
            scheduler: Scheduler::new(config.batch),
            config,
            sessions: HashMap::new(),
            next_id: 1,
            evicted: VecDeque::new(),
            timer: tokio::runtime::Builder::new_current_thread()
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
            if self.scheduler.is_empty() && !self.generating() {
                if !open {
                    return;
                }
                match self.wait_idle(&mut rx) {
                    Some(Some(c)) => self.accept(c),
                    Some(None) => continue, // a tick: look for idle sessions
                    None => return,
                }
            }
            open &= self.gather(&mut rx);
            self.pass();
        }
    }

    /// Waits for a command with nothing to do: `None` once the channel is closed,
    /// `Some(None)` when it is time to look for idle sessions.
    fn wait_idle(&self, rx: &mut mpsc::Receiver<Command>) -> Option<Option<Command>> {
        let timeout = self.config.idle_timeout;
        if timeout.is_zero() || self.sessions.is_empty() {
            return rx.blocking_recv().map(Some);
        }
        let tick = timeout / 4;
        match self
            .timer
            .block_on(async { tokio::time::timeout(tick, rx.recv()).await })
        {
            Ok(c) => c.map(Some),
            Err(_) => Some(None),
        }
    }

    /// Frees sessions that have had nothing to do for longer than the idle timeout.
    fn evict_idle(&mut self) {
        let timeout = self.config.idle_timeout;
        if timeout.is_zero() {
            return;
        }
        let stale: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.generation.is_none() && s.last_active.elapsed() > timeout)
            .filter(|s| !self.scheduler.has_work(s.id))
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

    /// Sessions prefilling: they are in the queue, not yet in `sessions`.
    fn prefilling(&self) -> impl Iterator<Item = &Prefill<M::Cache>> {
        self.scheduler.iter().filter_map(|w| match &w.job {
            Queued::Prefill(p) => Some(p),
            Queued::Verify(_) => None,
        })
    }

    /// KV bytes promised to open and opening sessions (each its whole `max_len`).
    fn kv_reserved(&self) -> u64 {
        let opening = self.prefilling().map(|p| p.session.max_len);
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

    /// Takes commands until the scheduler says the pass is worth running. Returns false
    /// once the channel is closed.
    fn gather(&mut self, rx: &mut mpsc::Receiver<Command>) -> bool {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(c) => self.accept(c),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return false,
                }
            }
            let could_send = self
                .sessions
                .values()
                .filter(|s| s.generation.is_none())
                .map(|s| s.id);
            let everyone = self.scheduler.everyone_waiting(could_send);
            let rest = match self.scheduler.gather(Instant::now(), everyone) {
                Gather::Run => return true,
                Gather::Wait(rest) => rest,
            };
            // The gathering window is often under a millisecond: tokio's timer would
            // round it up to the next tick, the precise one does not.
            let next = self.timer.block_on(async {
                tokio::select! {
                    c = rx.recv() => Some(c),
                    () = tandem_protocol::timer::sleep(rest) => None,
                }
            });
            match next {
                Some(Some(c)) => self.accept(c),
                Some(None) => return false,
                None => return true,
            }
        }
    }

    /// Files a command: new sessions and blocks join the queue, closes act at once.
    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Close { session } => {
                self.sessions.remove(&session);
                self.scheduler
                    .retain(|w| !(w.session == session && matches!(w.job, Queued::Prefill(_))));
                self.gauges();
            }
            Command::Open {
                req,
                events,
                arrived,
                reply,
            } => {
                let holding = Holding {
                    sessions: self.sessions.len() + self.prefilling().count(),
                    kv_reserved: self.kv_reserved(),
                };
                let info = self.model.info();
                let max_len = match admit(&req, &self.config.limits, &self.config.kv, info, holding)
                {
                    Ok(max_len) => max_len,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let id = self.next_id;
                self.next_id += 1;
                let session = Session::new(id, self.model.new_cache_for(max_len), &req, max_len);
                tracing::debug!(parent: &session.span, max_len, "admitted");
                let prefill = Prefill {
                    session,
                    done: 0,
                    events,
                    max_new: req.max_new_tokens,
                    ignore_eos: req.ignore_eos,
                    reply,
                };
                self.scheduler.push(prefill.waiting(arrived));
            }
            Command::Verify {
                session,
                block,
                arrived,
                reply,
                provisional,
            } => {
                let (seq, k) = (block.seq, block.tokens.len());
                let span = match self.sessions.get(&session) {
                    Some(s) => tracing::debug_span!(parent: &s.span, "block", seq, k),
                    None => tracing::debug_span!("block", session, seq, k),
                };
                tracing::debug!(parent: &span, "queued");
                let verify = Verify {
                    tree: super::session::pass_tree(&block),
                    block,
                    reply,
                    provisional,
                    span,
                };
                self.scheduler.push(verify.waiting(session, arrived));
            }
        }
    }

    /// Chooses and runs one pass.
    fn pass(&mut self) {
        // Blocks that cannot run (unknown session, stale) are answered here and leave.
        let (sessions, evicted) = (&self.sessions, &self.evicted);
        let idle = self.config.idle_timeout;
        let refused = self.scheduler.refuse(|w| match &w.job {
            Queued::Verify(v) => check(sessions, evicted, idle, w.session, v),
            Queued::Prefill(_) => Ok(()),
        });
        for (w, e) in refused {
            if let Queued::Verify(v) = w.job {
                tracing::debug!(parent: &v.span, code = ?e.code, "refused: {}", e.message);
                let _ = v.reply.send(Err(e));
            }
        }

        let generating: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.generation.is_some())
            .map(|s| s.id)
            .collect();
        let picked = self.scheduler.next_pass(&generating);
        let mut jobs: Vec<Job<M::Cache>> = generating
            .iter()
            .map(|id| Job::Generate(self.sessions.remove(id).expect("listed")))
            .collect();
        for (w, tokens) in picked {
            jobs.push(match w.job {
                Queued::Prefill(p) => Job::Prefill(p, tokens, w.arrived),
                Queued::Verify(v) => {
                    let s = self.sessions.remove(&w.session).expect("checked by refuse");
                    Job::Verify(s, v, w.arrived)
                }
            });
        }
        if !jobs.is_empty() {
            self.run_pass(jobs);
        }
    }

    /// One batched forward over `jobs`, then every job's answer.
    fn run_pass(&mut self, mut jobs: Vec<Job<M::Cache>>) {
        let inputs: Vec<Vec<u32>> = jobs.iter().map(Job::input).collect();
        let mut stats = PassStats {
            size: inputs.len(),
            tokens: inputs.iter().map(Vec::len).sum(),
            ..PassStats::default()
        };
        let span = tracing::debug_span!("pass", size = stats.size, tokens = stats.tokens);
        for job in &jobs {
            job.span().follows_from(&span);
        }
        let predictors: Vec<Option<Predictor>> = match self.config.early_exit_layers.is_empty() {
            true => Vec::new(),
            false => jobs.iter().map(Predictor::of).collect(),
        };
        let start = Instant::now();
        let result = {
            let mut entries: Vec<_> = jobs
                .iter_mut()
                .zip(&inputs)
                .map(|(job, tokens)| job.entry(tokens))
                .collect();
            if predictors.iter().any(Option::is_some) {
                let want: Vec<bool> = predictors.iter().map(Option::is_some).collect();
                let mut on_exit = |layer, logits| {
                    early_exit::announce(&predictors, layer, logits, start);
                };
                let exits = Exits {
                    after: &self.config.early_exit_layers,
                    want: &want,
                    on_exit: &mut on_exit,
                };
                self.model.forward_batch_exits(&mut entries, exits)
            } else {
                self.model.forward_batch(&mut entries)
            }
        };
        stats.forward_ns = start.elapsed().as_nanos() as u64;
        tracing::debug!(parent: &span, forward_ns = stats.forward_ns, "forward");
        let paced_ns = self.hold(start, &stats, &jobs);
        match result {
            Ok(logits) => {
                let pass = PassInfo {
                    start,
                    forward_ns: stats.forward_ns,
                    paced_ns,
                    size: stats.size,
                    tokens: stats.tokens,
                    eos: &self.eos,
                };
                let mut unfinished = Vec::new();
                for (job, rows) in jobs.into_iter().zip(logits) {
                    match job.finish(rows, &pass, &mut stats) {
                        Outcome::Keep(s) => {
                            self.sessions.insert(s.id, s);
                        }
                        Outcome::Unfinished(p, arrived) => unfinished.push(p.waiting(arrived)),
                        Outcome::Ended => {}
                    }
                }
                for w in unfinished.into_iter().rev() {
                    self.scheduler.push_front(w);
                }
            }
            Err(e) => self.fail(jobs, e),
        }
        self.metrics.record_pass(&stats);
        self.gauges();
    }

    /// Holds the pass that started at `start` until the cloud profile's time for it
    /// has passed; the time held, ns (0 without a profile, or when the forward took
    /// longer).
    fn hold(&self, start: Instant, stats: &PassStats, jobs: &[Job<M::Cache>]) -> u64 {
        let Some(pace) = &self.config.pace else {
            return 0;
        };
        let verifies = jobs.iter().any(|j| matches!(j, Job::Verify(..)));
        let until = start + pace.pass(stats.size, stats.tokens, verifies);
        let now = Instant::now();
        if until <= now {
            return 0;
        }
        std::thread::sleep(until - now);
        Instant::now().saturating_duration_since(now).as_nanos() as u64
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
    fn fail(&mut self, jobs: Vec<Job<M::Cache>>, e: ModelError) {
        tracing::error!("forward pass failed: {e}");
        let err = WireError::internal(format!("the target's forward pass failed: {e}"));
        for job in jobs {
            if let Some(s) = job.fail(&err) {
                self.sessions.insert(s.id, s);
            }
        }
    }
}

/// Why a block at the head of its session's line cannot run, if it cannot: its session
/// is unknown (never opened, closed, or evicted after `idle`), or the block does not
/// extend what the session committed.
fn check<C: SessionCache>(
    sessions: &HashMap<u64, Session<C>>,
    evicted: &VecDeque<u64>,
    idle: std::time::Duration,
    session: u64,
    v: &Verify,
) -> Result<(), WireError> {
    match sessions.get(&session) {
        Some(s) => s.check_block(&v.block),
        None if evicted.contains(&session) => Err(WireError::new(
            tonic::Code::NotFound,
            format!(
                "session {session} was evicted after {idle:?} idle: re-open it with the committed tokens"
            ),
        )),
        None => Err(WireError::new(
            tonic::Code::NotFound,
            format!("unknown session {session}: it was never opened here, or it was closed"),
        )),
    }
}
