//! The simulated verifier's engine: one task that owns every session and drives the
//! real engine's [`Scheduler`] (gather, block checks, pass selection, prefill chunks)
//! on the virtual clock; only the forward pass is replaced by the latency profile's
//! time, and the verdicts by the request's true continuation.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tandem_draft::clock::Clock;
use tandem_protocol::{WireError, pb};
use tandem_verifier::BatchPolicy;
use tandem_verifier::engine::scheduler::{Base, Gather, Scheduler, Size, Waiting, check_extends};
use tokio::sync::mpsc;

use super::{Down, MAX_DRAFT, Msg, Outages, send};
use crate::config::SimSpec;
use crate::sim::draft::VOCAB;
use crate::sim::draft::truth;
use crate::sim::exec::{Sleep, VirtualClock};
use tandem_decoding::SessionRng;

/// One session as the engine keeps it.
struct Session {
    down: Down,
    /// From its `Open`: the request's seed, and whether the verifier generates alone.
    seed: u64,
    /// It asked for provisional verdicts (`Open.early_exit`).
    early_exit: bool,
    opened: bool,
    /// Committed length and last token.
    len: usize,
    last: u32,
    /// Cloud-only: tokens still to generate.
    generating: usize,
    /// Has work queued or in the pass.
    busy: bool,
    /// Blocks that came while it was busy, in order. Like the real verifier, which
    /// reads a session's next block only once the previous one is answered, they
    /// queue from then.
    pending: VecDeque<pb::Draft>,
}

impl Session {
    /// It takes drafts and has none in the engine: a pass may wait for its block.
    fn idle(&self) -> bool {
        self.opened && self.generating == 0 && !self.busy
    }
}

/// What every gather and pass asks of all sessions, kept as they change, so that a
/// pass costs what it holds, not how many sessions are open.
#[derive(Default)]
struct Tally {
    /// Sessions [`Session::idle`].
    idle: usize,
    /// Sessions generating alone, by id (each steps in every pass).
    generating: BTreeSet<u64>,
}

impl Tally {
    /// `s` as it is now no longer counts (call before changing it)...
    fn take(&mut self, id: u64, s: &Session) {
        self.idle -= usize::from(s.idle());
        self.generating.remove(&id);
    }

    /// ...and counts again as it is now (after).
    fn put(&mut self, id: u64, s: &Session) {
        self.idle += usize::from(s.idle());
        if s.generating > 0 {
            self.generating.insert(id);
        }
    }
}

/// A job in the scheduler's queue. Boxed: the queue moves its jobs as it fills and
/// empties (a hundred thousand a pass), and a pointer moves cheaper than a message.
enum Job {
    /// A new session's prompt, `done` tokens of it already run.
    Prefill {
        open: Box<pb::Open>,
        done: usize,
    },
    Verify(Box<pb::Draft>),
}

/// The verdict on block `d` of the request with `seed`, from the true continuation: a
/// chain's longest true prefix, or a tree's path of true nodes (at each row the child
/// holding the true token), and the target's token after it.
struct SimVerdict {
    accepted: usize,
    next: u32,
    /// A tree's accepted nodes (empty for a chain).
    path: Vec<u32>,
}

fn verdict(seed: u64, d: &pb::Draft) -> SimVerdict {
    let base = d.base_len as usize;
    let mut path = Vec::new();
    let accepted = if d.parents.is_empty() {
        d.tokens
            .iter()
            .enumerate()
            .take_while(|&(i, &t)| t == truth(seed, base + i))
            .count()
    } else {
        let mut row = 0u32;
        while let Some(node) = (0..d.tokens.len())
            .find(|&n| d.parents[n] == row && d.tokens[n] == truth(seed, base + path.len()))
        {
            path.push(node as u32);
            row = node as u32 + 1;
        }
        path.len()
    };
    SimVerdict {
        accepted,
        next: truth(seed, base + accepted),
        path,
    }
}

/// The prompt tokens a prefill runs (an empty prompt still runs one).
fn prompt_len(open: &pb::Open) -> usize {
    open.prompt_ids.len().max(1)
}

pub(super) struct Engine {
    outages: Outages,
    clock: VirtualClock,
    spec: SimSpec,
    /// By stream id: looked up at least twice a round (block, answer).
    sessions: FxHashMap<u64, Session>,
    tally: Tally,
    scheduler: Scheduler<Job>,
}

impl Engine {
    pub(super) fn new(clock: &VirtualClock, spec: &SimSpec, outages: Outages) -> Self {
        Self {
            outages,
            clock: clock.clone(),
            spec: spec.clone(),
            scheduler: Scheduler::new(BatchPolicy {
                max_sessions: spec.max_batch_sessions,
                max_tokens: spec.max_batch_tokens,
                max_wait: Duration::from_secs_f64(spec.gather_ms / 1e3),
                prefill_chunk: usize::MAX,
            }),
            sessions: FxHashMap::default(),
            tally: Tally::default(),
        }
    }

    pub(super) async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            if self.scheduler.is_empty() && !self.generating() {
                match rx.recv().await {
                    Some(m) => self.accept(m),
                    None => return,
                }
                continue;
            }
            self.gather(&mut rx).await;
            self.pass().await;
        }
    }

    fn generating(&self) -> bool {
        !self.tally.generating.is_empty()
    }

    /// Takes messages until the scheduler says the pass is worth running. The
    /// deadline's timer is set once, not once a message.
    async fn gather(&mut self, rx: &mut mpsc::UnboundedReceiver<Msg>) {
        let mut deadline: Option<(Instant, Sleep)> = None;
        loop {
            while let Ok(m) = rx.try_recv() {
                self.accept(m);
            }
            // Busy sessions have their block in the queue (a pass is not running).
            let everyone = self.tally.idle == 0;
            let rest = match self.scheduler.gather(self.clock.now(), everyone) {
                Gather::Run => return,
                Gather::Wait(rest) => rest,
            };
            let until = self.clock.now() + rest;
            if deadline.as_ref().is_none_or(|(at, _)| *at != until) {
                deadline = Some((until, self.clock.sleep_until(until)));
            }
            let (_, sleep) = deadline.as_mut().expect("set");
            // The message first: one that arrives at the deadline still counts.
            let next = std::future::poll_fn(|cx| match rx.poll_recv(cx) {
                Poll::Ready(m) => Poll::Ready(m),
                Poll::Pending => Pin::new(&mut *sleep).poll(cx).map(|()| None),
            });
            match next.await {
                Some(m) => self.accept(m),
                None => return,
            }
        }
    }

    fn accept(&mut self, m: Msg) {
        match m {
            Msg::Attach(stream, down) => {
                self.sessions.insert(
                    stream,
                    Session {
                        down,
                        seed: 0,
                        early_exit: false,
                        opened: false,
                        len: 0,
                        last: 0,
                        generating: 0,
                        busy: false,
                        pending: VecDeque::new(),
                    },
                );
            }
            Msg::Edge(stream, m, arrived) => match m.kind {
                Some(pb::edge_message::Kind::Open(o)) => {
                    if let Some(s) = self.sessions.get_mut(&stream) {
                        self.tally.take(stream, s);
                        s.busy = true;
                        self.tally.put(stream, s);
                        s.seed = o.seed;
                        s.early_exit = o.early_exit && self.spec.early_exit_at.is_some();
                        self.scheduler.push(Waiting {
                            session: stream,
                            arrived,
                            size: Size::Prefill(prompt_len(&o)),
                            job: Job::Prefill {
                                open: Box::new(o),
                                done: 0,
                            },
                        });
                    }
                }
                Some(pb::edge_message::Kind::Draft(d)) => self.block(stream, d, arrived),
                Some(pb::edge_message::Kind::Close(_)) => self.forget(stream),
                _ => {}
            },
            Msg::Gone(stream) => self.forget(stream),
            Msg::Down => {
                // Every stream breaks; the edges notice at once (a reset connection).
                // In stream order, so the edges wake in the same order every run.
                let mut cut: Vec<_> = std::mem::take(&mut self.sessions).into_iter().collect();
                cut.sort_unstable_by_key(|&(id, _)| id);
                for (_, s) in cut {
                    let _ = s.down.end.tx.try_send(Err(super::unreachable()));
                }
                self.tally = Tally::default();
                self.scheduler.clear();
            }
        }
    }

    fn forget(&mut self, stream: u64) {
        if let Some(s) = self.sessions.remove(&stream) {
            self.tally.take(stream, &s);
        }
        self.scheduler.forget(stream);
    }

    /// A block from the edge: queued, held behind the session's block in the engine,
    /// or refused.
    fn block(&mut self, stream: u64, d: pb::Draft, arrived: Instant) {
        let clock = self.clock.clone();
        let Some(s) = self.sessions.get_mut(&stream) else {
            return;
        };
        if s.busy {
            s.pending.push_back(d);
            return;
        }
        let refusal = if !s.opened || s.generating > 0 {
            Some(WireError::precondition("this session takes no drafts now"))
        } else if let Err(e) = check_extends(
            Base {
                len: d.base_len as usize,
                newest: d.anchor,
            },
            Base {
                len: s.len,
                newest: s.last,
            },
        ) {
            Some(e)
        } else if !d.parents.is_empty() {
            super::tree_limits().check_tree(&d.tokens, &d.parents).err()
        } else if d.tokens.len() > MAX_DRAFT as usize {
            Some(WireError::invalid(format!(
                "{} draft tokens, more than the limit of {MAX_DRAFT}",
                d.tokens.len()
            )))
        } else {
            None
        };
        match refusal {
            Some(e) => send(
                &clock,
                &mut s.down,
                pb::cloud_message::Kind::Error(e.to_pb(d.seq)),
            ),
            None => {
                self.tally.take(stream, s);
                s.busy = true;
                self.tally.put(stream, s);
                self.scheduler.push(Waiting {
                    session: stream,
                    arrived,
                    size: Size::Block(d.tokens.len() + 1),
                    job: Job::Verify(Box::new(d)),
                });
            }
        }
    }

    /// Runs one pass: picks it, spends its time, answers everyone in it.
    async fn pass(&mut self) {
        let steps: Vec<u64> = self.tally.generating.iter().copied().collect();
        let jobs = self.scheduler.next_pass(&steps);
        let tokens = steps.len() + jobs.iter().map(|(_, n)| n).sum::<usize>();
        let size = jobs.len() + steps.len();
        let verifies = jobs
            .iter()
            .any(|(w, _)| matches!(&w.job, Job::Verify(d) if !d.tokens.is_empty()));
        let forward_ns = self.spec.pass_ns(size, tokens, verifies);
        let (started, began) = (self.clock.now(), self.clock.elapsed());
        let exit_ns = self
            .spec
            .early_exit_at
            .map_or(0, |f| (forward_ns as f64 * f).round() as u64);
        if exit_ns > 0 {
            self.clock.sleep(Duration::from_nanos(exit_ns)).await;
            if self.outages.cut_between(began, self.clock.elapsed()) {
                return;
            }
            for (w, _) in &jobs {
                if let Job::Verify(d) = &w.job {
                    self.provisional(w.session, d, exit_ns);
                }
            }
        }
        self.clock
            .sleep(Duration::from_nanos(forward_ns - exit_ns))
            .await;
        if self.outages.cut_between(began, self.clock.elapsed()) {
            return; // the pass died with the verifier
        }
        let timing = |arrived: Instant| pb::Timing {
            queue_ns: (started - arrived).as_nanos() as u64,
            forward_ns,
            paced_ns: 0,
            batch_size: size as u32,
            batch_tokens: tokens as u32,
        };
        let mut unfinished = Vec::new();
        for (w, n) in jobs {
            match w.job {
                Job::Prefill { open, done } if done + n < prompt_len(&open) => {
                    let done = done + n;
                    unfinished.push(Waiting {
                        size: Size::Prefill(prompt_len(&open) - done),
                        job: Job::Prefill { open, done },
                        ..w
                    });
                }
                job => {
                    let t = timing(w.arrived);
                    self.answer(w.session, job, t);
                }
            }
        }
        for w in unfinished.into_iter().rev() {
            self.scheduler.push_front(w);
        }
        for id in steps {
            self.step(id, timing(started));
        }
    }

    fn answer(&mut self, stream: u64, job: Job, timing: pb::Timing) {
        let clock = self.clock.clone();
        let Some(s) = self.sessions.get_mut(&stream) else {
            return;
        };
        self.tally.take(stream, s);
        s.busy = false;
        let kind = match job {
            Job::Prefill { open: o, .. } => {
                s.opened = true;
                s.len = o.prompt_ids.len();
                let first = truth(s.seed, s.len);
                s.len += 1;
                s.last = first;
                if o.generate {
                    s.generating = (o.max_new_tokens as usize).saturating_sub(1);
                }
                pb::cloud_message::Kind::Opened(pb::Opened {
                    session_id: stream,
                    first_token: first,
                    committed_len: s.len as u32,
                    timing: Some(timing),
                })
            }
            Job::Verify(d) => {
                let base = d.base_len as usize;
                let v = verdict(s.seed, &d);
                s.len = base + v.accepted + 1;
                s.last = v.next;
                pb::cloud_message::Kind::Verdict(pb::Verdict {
                    seq: d.seq,
                    accepted: v.accepted as u32,
                    next_token: v.next,
                    committed_len: s.len as u32,
                    timing: Some(timing),
                    path: v.path,
                })
            }
        };
        self.tally.put(stream, s);
        send(&clock, &mut s.down, kind);
        self.drain_pending(stream);
    }

    /// The provisional verdict on block `d` of a session that asked for one, `exit_ns`
    /// into its pass: the verdict to come with probability `early_exit_agreement` (a
    /// seeded draw per block), else one with a wrong next token.
    fn provisional(&mut self, stream: u64, d: &pb::Draft, exit_ns: u64) {
        let clock = self.clock.clone();
        let agreement = self.spec.early_exit_agreement.unwrap_or(1.0);
        let Some(s) = self.sessions.get_mut(&stream).filter(|s| s.early_exit) else {
            return;
        };
        let SimVerdict {
            accepted,
            next,
            path,
        } = verdict(s.seed, d);
        let draw = SessionRng::new(s.seed ^ d.seq.wrapping_mul(0xA24B_AED4_963E_E407)).uniform();
        let next_token = if draw < agreement {
            next
        } else {
            (next + 1) % VOCAB
        };
        let kind = pb::cloud_message::Kind::Provisional(pb::ProvisionalVerdict {
            seq: d.seq,
            layer: 0,
            accepted: accepted as u32,
            next_token,
            committed_len: d.base_len + accepted as u32 + 1,
            elapsed_ns: exit_ns,
            path,
        });
        send(&clock, &mut s.down, kind);
    }

    /// Refuses or queues the blocks a session sent while it was busy, in order, until
    /// one is queued.
    fn drain_pending(&mut self, stream: u64) {
        let now = self.clock.now();
        while let Some(s) = self.sessions.get_mut(&stream)
            && !s.busy
            && let Some(d) = s.pending.pop_front()
        {
            self.block(stream, d, now);
        }
    }

    /// One token of a cloud-only session.
    fn step(&mut self, stream: u64, timing: pb::Timing) {
        let clock = self.clock.clone();
        let Some(s) = self.sessions.get_mut(&stream) else {
            return;
        };
        let token = truth(s.seed, s.len);
        self.tally.take(stream, s);
        s.len += 1;
        s.last = token;
        s.generating -= 1;
        self.tally.put(stream, s);
        send(
            &clock,
            &mut s.down,
            pb::cloud_message::Kind::Token(pb::Token {
                token,
                committed_len: s.len as u32,
                timing: Some(timing),
            }),
        );
        if s.generating == 0 {
            send(
                &clock,
                &mut s.down,
                pb::cloud_message::Kind::Finished(pb::Finished {
                    reason: tandem_protocol::StopReason::Length.as_str().into(),
                }),
            );
        }
    }
}
