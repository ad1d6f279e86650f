//! The simulated backend: a cell's requests on a virtual clock, with acceptance drawn
//! from a probability and every time from a latency profile ([`SimSpec`]). The
//! verifier side forms its passes with the real scheduler's selection
//! (`tandem_verifier::engine::batch::select`: arrival order, one block per session,
//! cloud-only steps reserved in every pass); the edge side follows the real
//! strategies' round structure (open, draft k, send, verdict, commit accepted + 1).
//!
//! What it leaves out, on purpose: link jitter and loss (the link's mean delay and
//! bandwidth are used), the verifier's gather window (a pass starts as soon as the
//! previous one ends), and pipelined, adaptive and routed strategies (refused when the
//! config is checked).
//!
//! Worked example, one speculative round, k = 4, one-way delay 60 ms, verification
//! pass 620 ms, draft step 72 ms: draft 288 ms → block arrives 60 ms later → waits for
//! the current pass to end → 620 ms pass → verdict arrives 60 ms later: the edge commits
//! the accepted tokens plus the target's own, 1 to 5 tokens.

mod spec;

pub use spec::{SimSpec, acceptance_by_position};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tandem_decoding::SessionRng;
use tandem_draft::Strategy;
use tandem_verifier::BatchPolicy;
use tandem_verifier::engine::batch::{Candidate, select};

use crate::config::{Cost, Workload};
use crate::results::{RequestRow, RoundRow};
use crate::run::cells::Cell;
use crate::workload::{Prompt, poisson_arrivals};

/// Bytes on the wire: an `Open` (plus 4 per prompt token), a block (plus 2 per drafted
/// token), a verdict, a streamed token.
const OPEN_BYTES: u64 = 16;
const BLOCK_BYTES: u64 = 24;
const VERDICT_BYTES: u64 = 24;
const TOKEN_BYTES: u64 = 16;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Opened,
    Verdict { accepted: usize, drafted: usize },
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timing {
    queue_ns: u64,
    forward_ns: u64,
    batch_size: u32,
    batch_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A client is free for its next request (closed loop).
    ClientFree,
    /// Request `i` arrives (open loop).
    Arrival(usize),
    /// Request `i`'s message reaches the verifier's queue.
    AtVerifier(usize),
    /// The verifier's pass ends.
    PassDone,
    /// An answer reaches request `i`'s edge.
    AtEdge(usize, Answer, Timing),
    /// Request `i`'s draft block is ready.
    Drafted(usize),
    /// Edge-only request `i` is done.
    EdgeDone(usize),
}

#[derive(Debug, Clone, Copy)]
enum JobKind {
    Open,
    Verify { drafted: usize },
}

#[derive(Debug, Clone, Copy)]
struct Job {
    req: usize,
    kind: JobKind,
    arrived: u64,
}

/// The verifier's pass in progress.
struct Pass {
    /// Opens and blocks in it.
    jobs: Vec<Job>,
    /// Cloud-only sessions generating a token in it.
    steps: Vec<usize>,
    started: u64,
    forward: u64,
    size: u32,
    tokens: u32,
}

/// One request in flight.
struct Req {
    prompt_index: usize,
    seed: u64,
    rng: SessionRng,
    start: u64,
    first: Option<u64>,
    end: u64,
    committed: usize,
    /// Cloud-only: tokens the verifier still has to generate.
    to_generate: usize,
    sent: u64,
    draft_ns: u64,
    rounds: Vec<RoundRow>,
    bytes: (u64, u64),
    forward_share_s: f64,
}

struct Sim<'a> {
    c: &'a SimCell<'a>,
    now: u64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    reqs: Vec<Option<Req>>,
    next_request: usize,
    queue: Vec<Job>,
    generating: Vec<usize>,
    /// The pass running.
    pass: Option<Pass>,
    done: Vec<RequestRow>,
}

/// Runs every request of a cell on the virtual clock.
pub fn run_cell(c: &SimCell<'_>) -> (Vec<RequestRow>, Vec<RoundRow>) {
    let n = c.workload.requests;
    let mut sim = Sim {
        c,
        now: 0,
        seq: 0,
        events: BinaryHeap::new(),
        reqs: (0..n).map(|_| None).collect(),
        next_request: 0,
        queue: Vec::new(),
        generating: Vec::new(),
        pass: None,
        done: Vec::new(),
    };
    match c.workload.arrival_rate {
        Some(rate) => {
            let at = poisson_arrivals(n, rate, c.seed ^ c.cell.repetition as u64);
            for (i, t) in at.into_iter().enumerate() {
                sim.at((t * 1e9) as u64, Ev::Arrival(i));
            }
        }
        None => {
            for _ in 0..c.cell.clients.clamp(1, n) {
                sim.at(0, Ev::ClientFree);
            }
        }
    }
    while let Some(Reverse((t, _, ev))) = sim.events.pop() {
        sim.now = t;
        sim.handle(ev);
    }
    let mut requests = sim.done;
    requests.sort_by_key(|r| r.request);
    let mut rounds = Vec::new();
    for r in sim.reqs.into_iter().flatten() {
        rounds.extend(r.rounds);
    }
    rounds.sort_by_key(|r| (r.request, r.round));
    (requests, rounds)
}

impl Sim<'_> {
    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, ev)));
    }

    fn one_way(&self, bytes: u64, up: bool) -> u64 {
        let link = &self.c.cell.link;
        let mbps = if up { link.up_mbps } else { link.down_mbps };
        let tx = if mbps > 0.0 {
            bytes as f64 * 8.0 / (mbps * 1e6)
        } else {
            0.0
        };
        ((link.one_way_ms / 1e3 + tx) * 1e9) as u64
    }

    fn draft_ns(&self, tokens: usize) -> u64 {
        (self.c.spec.draft_ms_per_token * 1e6 * tokens as f64) as u64
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ClientFree => {
                if self.next_request < self.c.workload.requests {
                    let i = self.next_request;
                    self.next_request += 1;
                    self.start(i);
                }
            }
            Ev::Arrival(i) => self.start(i),
            Ev::AtVerifier(i) => {
                let kind = match self.req(i).committed {
                    0 => JobKind::Open,
                    _ => JobKind::Verify {
                        drafted: self.pending_k(i),
                    },
                };
                self.queue.push(Job {
                    req: i,
                    kind,
                    arrived: self.now,
                });
                self.maybe_pass();
            }
            Ev::PassDone => self.end_pass(),
            Ev::AtEdge(i, answer, t) => self.answer(i, answer, t),
            Ev::Drafted(i) => {
                let k = self.pending_k(i);
                let up = BLOCK_BYTES + 2 * k as u64;
                let now = self.now;
                let r = self.req_mut(i);
                r.sent = now;
                r.bytes.0 += up;
                let t = self.now + self.one_way(up, true);
                self.at(t, Ev::AtVerifier(i));
            }
            Ev::EdgeDone(i) => self.finish(i),
        }
    }

    fn req(&self, i: usize) -> &Req {
        self.reqs[i].as_ref().expect("started")
    }

    fn req_mut(&mut self, i: usize) -> &mut Req {
        self.reqs[i].as_mut().expect("started")
    }

    /// The draft length of request `i`'s next block: k, or fewer near the end.
    fn pending_k(&self, i: usize) -> usize {
        let k = match self.c.cell.strategy {
            Strategy::Speculative { k } => k,
            _ => 0,
        };
        k.min(self.c.workload.max_new_tokens - self.req(i).committed)
    }

    fn start(&mut self, i: usize) {
        let seed = SessionRng::for_stream(self.c.seed ^ self.c.cell.repetition as u64, i as u64)
            .next_u64();
        let max_new = self.c.workload.max_new_tokens;
        self.reqs[i] = Some(Req {
            prompt_index: i % self.c.prompts.len(),
            seed,
            rng: SessionRng::new(seed),
            start: self.now,
            first: None,
            end: 0,
            committed: 0,
            to_generate: 0,
            sent: self.now,
            draft_ns: 0,
            rounds: Vec::new(),
            bytes: (0, 0),
            forward_share_s: 0.0,
        });
        if self.c.cell.strategy == Strategy::EdgeOnly {
            let step = self.draft_ns(1);
            let base = self.row_base(i);
            let r = self.req_mut(i);
            for t in 0..max_new {
                r.rounds.push(RoundRow {
                    round: t as u32,
                    kind: "edge".into(),
                    k: 1,
                    committed: 1,
                    draft_ns: step,
                    ..base.clone()
                });
            }
            r.committed = max_new;
            r.first = Some(r.start + step);
            let end = self.now + step * max_new as u64;
            self.at(end, Ev::EdgeDone(i));
            return;
        }
        let up = OPEN_BYTES + 4 * self.c.spec.prompt_tokens as u64;
        self.req_mut(i).bytes.0 += up;
        let t = self.now + self.one_way(up, true);
        self.at(t, Ev::AtVerifier(i));
    }

    fn maybe_pass(&mut self) {
        if self.pass.is_some() || (self.queue.is_empty() && self.generating.is_empty()) {
            return;
        }
        let policy = BatchPolicy {
            max_sessions: self.c.spec.max_batch_sessions,
            max_tokens: usize::MAX / 2,
            ..BatchPolicy::default()
        };
        let prompt = self.c.spec.prompt_tokens.max(1);
        let candidates: Vec<Candidate> = self
            .queue
            .iter()
            .map(|j| {
                let tokens = match j.kind {
                    JobKind::Open => prompt,
                    JobKind::Verify { drafted } => drafted + 1,
                };
                Candidate {
                    session: j.req as u64,
                    tokens,
                    min_tokens: tokens,
                }
            })
            .collect();
        let reserved: Vec<u64> = self.generating.iter().map(|&i| i as u64).collect();
        let picked = select(&candidates, &policy, reserved.len(), &reserved);
        let mut taken = vec![false; self.queue.len()];
        let mut jobs = Vec::with_capacity(picked.len());
        let mut tokens = self.generating.len();
        for &(i, t) in &picked {
            taken[i] = true;
            jobs.push(self.queue[i]);
            tokens += t;
        }
        let mut k = 0;
        self.queue.retain(|_| {
            k += 1;
            !taken[k - 1]
        });
        let sessions = jobs.len() + self.generating.len();
        let verifies = jobs
            .iter()
            .any(|j| matches!(j.kind, JobKind::Verify { drafted } if drafted > 0));
        let forward = self.c.spec.pass_ns(sessions, tokens, verifies);
        let steps = self.generating.clone();
        self.pass = Some(Pass {
            jobs,
            steps,
            started: self.now,
            forward,
            size: sessions as u32,
            tokens: tokens as u32,
        });
        let t = self.now + forward;
        self.at(t, Ev::PassDone);
    }

    fn end_pass(&mut self) {
        let Pass {
            jobs,
            steps,
            started,
            forward,
            size,
            tokens,
        } = self.pass.take().expect("a pass");
        let timing = |arrived: u64| Timing {
            queue_ns: started.saturating_sub(arrived),
            forward_ns: forward,
            batch_size: size,
            batch_tokens: tokens,
        };
        let share = forward as f64 / 1e9 / size.max(1) as f64;
        for j in jobs {
            let acceptance = self.c.acceptance;
            let cloud_only = self.c.cell.strategy == Strategy::CloudOnly;
            let max_new = self.c.workload.max_new_tokens;
            let r = self.req_mut(j.req);
            r.forward_share_s += share;
            let (answer, down) = match j.kind {
                JobKind::Open => {
                    if cloud_only && max_new > 1 {
                        r.to_generate = max_new - 1;
                    }
                    (Answer::Opened, VERDICT_BYTES)
                }
                JobKind::Verify { drafted } => {
                    let accepted = (0..drafted)
                        .take_while(|&i| r.rng.uniform() < acceptance[i.min(acceptance.len() - 1)])
                        .count();
                    (Answer::Verdict { accepted, drafted }, VERDICT_BYTES)
                }
            };
            r.bytes.1 += down;
            if matches!(answer, Answer::Opened) && r.to_generate > 0 {
                self.generating.push(j.req);
            }
            let t = self.now + self.one_way(down, false);
            self.at(t, Ev::AtEdge(j.req, answer, timing(j.arrived)));
        }
        for i in steps {
            let r = self.req_mut(i);
            r.forward_share_s += share;
            r.to_generate -= 1;
            r.bytes.1 += TOKEN_BYTES;
            let last = r.to_generate == 0;
            if last {
                self.generating.retain(|&g| g != i);
            }
            let t = self.now + self.one_way(TOKEN_BYTES, false);
            self.at(t, Ev::AtEdge(i, Answer::Token, timing(started)));
        }
        self.maybe_pass();
    }

    fn answer(&mut self, i: usize, answer: Answer, t: Timing) {
        let max_new = self.c.workload.max_new_tokens;
        let now = self.now;
        let base = self.row_base(i);
        let speculative = matches!(self.c.cell.strategy, Strategy::Speculative { .. });
        let prompt = self.c.spec.prompt_tokens as u64;
        let r = self.req_mut(i);
        let wait = now - r.sent;
        let (kind, k, drafted, accepted, add, bytes) = match answer {
            Answer::Opened => {
                let kind = if speculative { "verified" } else { "cloud" };
                (kind, 1, 0, 0, 1, (OPEN_BYTES + 4 * prompt, VERDICT_BYTES))
            }
            Answer::Token => ("cloud", 1, 0, 0, 1, (0, TOKEN_BYTES)),
            Answer::Verdict { accepted, drafted } => {
                let up = BLOCK_BYTES + 2 * drafted as u64;
                (
                    "verified",
                    drafted,
                    drafted,
                    accepted,
                    accepted + 1,
                    (up, VERDICT_BYTES),
                )
            }
        };
        let add = add.min(max_new - r.committed);
        r.committed += add;
        if r.first.is_none() {
            r.first = Some(now);
        }
        let draft_ns = std::mem::take(&mut r.draft_ns);
        r.rounds.push(RoundRow {
            round: r.rounds.len() as u32,
            kind: kind.into(),
            k: k as u32,
            drafted: drafted as u32,
            accepted: accepted as u32,
            committed: add as u32,
            draft_ns,
            wait_ns: wait,
            network_ns: wait.saturating_sub(t.queue_ns + t.forward_ns),
            queue_ns: t.queue_ns,
            forward_ns: t.forward_ns,
            batch_size: t.batch_size,
            batch_tokens: t.batch_tokens,
            bytes_up: bytes.0,
            bytes_down: bytes.1,
            ..base
        });
        // Cloud-only tokens stream: each is timed from the previous one.
        r.sent = now;
        if r.committed >= max_new {
            return self.finish(i);
        }
        if speculative {
            let k = self.pending_k(i);
            let d = self.draft_ns(k);
            self.req_mut(i).draft_ns = d;
            self.at(now + d, Ev::Drafted(i));
        }
    }

    /// The columns every round of request `i` shares.
    fn row_base(&self, i: usize) -> RoundRow {
        self.c.cell.round_row(i)
    }

    fn finish(&mut self, i: usize) {
        let now = self.now;
        let c = self.c;
        let r = self.req_mut(i);
        r.end = now;
        let r = self.req(i);
        let tokens = r.committed;
        let verified: Vec<&RoundRow> = r
            .rounds
            .iter()
            .filter(|x| x.kind == "verified" && x.drafted > 0)
            .collect();
        let drafted: u32 = verified.iter().map(|x| x.drafted).sum();
        let accepted: u32 = verified.iter().map(|x| x.accepted).sum();
        let first = r.first.unwrap_or(r.end);
        let edge = c.cell.strategy == Strategy::EdgeOnly;
        let cloud = if edge {
            0.0
        } else {
            c.cost.gpu_dollars_per_hour * r.forward_share_s / 3600.0
                + c.cost.input_dollars_per_mtok * c.spec.prompt_tokens as f64 / 1e6
                + c.cost.output_dollars_per_mtok * tokens as f64 / 1e6
        };
        let k = match c.cell.strategy {
            Strategy::Speculative { k } => k as u32,
            _ => 0,
        };
        let row = RequestRow {
            cell: c.cell.index as u32,
            repetition: c.cell.repetition as u32,
            strategy: c.cell.name.clone(),
            strategy_kind: c.cell.kind.clone(),
            tier: c.cell.strategy.to_string(),
            route: String::new(),
            k,
            network: c.cell.network.clone(),
            device: c.cell.device.clone(),
            clients: c.cell.clients as u32,
            request: i as u32,
            prompt_index: r.prompt_index as u32,
            tag: c.prompts[r.prompt_index].tag.clone(),
            seed: r.seed,
            start_s: r.start as f64 / 1e9,
            prompt_tokens: c.spec.prompt_tokens as u32,
            tokens: tokens as u32,
            unverified_tokens: if edge { tokens as u32 } else { 0 },
            rounds: r.rounds.len() as u32,
            drafts: verified.len() as u32,
            drafted,
            accepted,
            acceptance_rate: if drafted > 0 {
                f64::from(accepted) / f64::from(drafted)
            } else {
                f64::NAN
            },
            mean_accepted_length: if verified.is_empty() {
                f64::NAN
            } else {
                1.0 + f64::from(accepted) / verified.len() as f64
            },
            ttft_ms: (first - r.start) as f64 / 1e6,
            tpot_ms: if tokens > 1 {
                (r.end - first) as f64 / 1e6 / (tokens - 1) as f64
            } else {
                0.0
            },
            e2e_ms: (r.end - r.start) as f64 / 1e6,
            bytes_up: r.bytes.0,
            bytes_down: r.bytes.1,
            fallbacks: 0,
            stop: "length".into(),
            output_ids: String::new(),
            cost_cloud_usd: cloud,
            cost_edge_usd: 0.0,
            cost_usd: cloud,
            error: String::new(),
        };
        self.done.push(row);
        if c.workload.arrival_rate.is_none() {
            self.at(now, Ev::ClientFree);
        }
    }
}
