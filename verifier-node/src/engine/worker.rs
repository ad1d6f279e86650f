//! The engine thread's loop: gather commands, run one batched pass, answer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use tandem_models::{BatchEntry, LanguageModel, Positions};
use tandem_protocol::limits::DraftBlock;
use tandem_protocol::{WireError, pb};
use tokio::sync::{mpsc, oneshot};

use super::session::{Generation, Session};
use super::{Command, EngineConfig, GenEvent};

/// What one session does in a pass.
enum Job {
    Prefill {
        arrived: Instant,
        events: Option<mpsc::UnboundedSender<GenEvent>>,
        max_new: u32,
        ignore_eos: bool,
        reply: oneshot::Sender<Result<pb::Opened, WireError>>,
    },
    Verify {
        block: DraftBlock,
        arrived: Instant,
        reply: oneshot::Sender<Result<pb::Verdict, WireError>>,
    },
    Generate,
}

pub(super) struct Worker<M: LanguageModel> {
    model: M,
    config: EngineConfig,
    sessions: HashMap<u64, Session<M::Cache>>,
    next_id: u64,
    deferred: VecDeque<Command>,
}

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

impl<M: LanguageModel> Worker<M> {
    pub fn new(model: M, config: EngineConfig) -> Self {
        Self {
            model,
            config,
            sessions: HashMap::new(),
            next_id: 1,
            deferred: VecDeque::new(),
        }
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let mut cmds: Vec<Command> = self.deferred.drain(..).collect();
            let generating = self.sessions.values().any(|s| s.generation.is_some());
            if cmds.is_empty() && !generating {
                match rx.blocking_recv() {
                    Some(c) => cmds.push(c),
                    None => return,
                }
            }
            while cmds.len() < self.config.max_batch.max(1) {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            self.pass(cmds);
        }
    }

    /// Sorts commands into one pass's jobs, runs the pass, answers.
    fn pass(&mut self, cmds: Vec<Command>) {
        let mut jobs: Vec<(Session<M::Cache>, Job)> = Vec::new();
        let mut busy: HashSet<u64> = HashSet::new();
        for cmd in cmds {
            if cmd.session().is_some_and(|s| busy.contains(&s)) {
                self.deferred.push_back(cmd);
                continue;
            }
            match cmd {
                Command::Close { session } => {
                    self.sessions.remove(&session);
                }
                Command::Open {
                    req,
                    events,
                    arrived,
                    reply,
                } => {
                    let open = self.sessions.len()
                        + jobs
                            .iter()
                            .filter(|j| matches!(j.1, Job::Prefill { .. }))
                            .count();
                    if open >= self.config.limits.max_sessions as usize {
                        let _ = reply.send(Err(WireError::exhausted(format!(
                            "the verifier already serves {open} sessions, its limit (Limits.max_sessions)"
                        ))));
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let max_context = self.model.info().max_context;
                    let budget = if req.generate {
                        req.prompt.len() + req.max_new_tokens as usize
                    } else {
                        req.prompt.len()
                            + req.max_new_tokens as usize
                            + self.config.limits.max_draft_tokens as usize
                            + 1
                    };
                    let session =
                        Session::new(id, self.model.new_cache(), &req, budget.min(max_context));
                    busy.insert(id);
                    let job = Job::Prefill {
                        arrived,
                        events,
                        max_new: req.max_new_tokens,
                        ignore_eos: req.ignore_eos,
                        reply,
                    };
                    jobs.push((session, job));
                }
                Command::Verify {
                    session,
                    block,
                    arrived,
                    reply,
                } => {
                    let Some(s) = self.sessions.get(&session) else {
                        let _ = reply.send(Err(WireError::new(
                            tonic::Code::NotFound,
                            format!("unknown session {session}: it was never opened here, or it was closed"),
                        )));
                        continue;
                    };
                    if let Err(e) = s.check_block(&block) {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    busy.insert(session);
                    let s = self.sessions.remove(&session).expect("checked above");
                    jobs.push((
                        s,
                        Job::Verify {
                            block,
                            arrived,
                            reply,
                        },
                    ));
                }
            }
        }
        let generating: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(id, s)| s.generation.is_some() && !busy.contains(id))
            .map(|(&id, _)| id)
            .collect();
        for id in generating {
            let s = self.sessions.remove(&id).expect("listed");
            jobs.push((s, Job::Generate));
        }
        if jobs.is_empty() {
            return;
        }
        self.run_jobs(jobs);
    }

    fn run_jobs(&mut self, mut jobs: Vec<(Session<M::Cache>, Job)>) {
        let inputs: Vec<Vec<u32>> = jobs
            .iter()
            .map(|(s, job)| match job {
                Job::Prefill { .. } => s.committed.clone(),
                Job::Verify { block, .. } => s.verify_input(block),
                Job::Generate => vec![*s.committed.last().expect("never empty")],
            })
            .collect();
        let batch_tokens: usize = inputs.iter().map(Vec::len).sum();
        let start = Instant::now();
        let result = {
            let mut entries: Vec<BatchEntry<'_, M::Cache>> = jobs
                .iter_mut()
                .zip(&inputs)
                .map(|((s, job), tokens)| BatchEntry {
                    cache: &mut s.cache,
                    tokens,
                    positions: match job {
                        Job::Verify { .. } => Positions::All,
                        _ => Positions::Last,
                    },
                })
                .collect();
            self.model.forward_batch(&mut entries)
        };
        let forward_ns = start.elapsed().as_nanos() as u64;
        let timing = |arrived: Option<Instant>| pb::Timing {
            queue_ns: arrived.map_or(0, |a| start.saturating_duration_since(a).as_nanos() as u64),
            forward_ns,
            batch_size: jobs_len_u32(&inputs),
            batch_tokens: batch_tokens as u32,
        };
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("forward pass failed: {e}");
                let err = WireError::internal(format!("the target's forward pass failed: {e}"));
                for (s, job) in jobs {
                    match job {
                        Job::Prefill { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        Job::Verify { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                            self.sessions.insert(s.id, s);
                        }
                        Job::Generate => {
                            if let Some(g) = &s.generation {
                                let _ = g.events.send(pb::cloud_message::Kind::Error(err.to_pb(0)));
                            }
                        }
                    }
                }
                return;
            }
        };
        for ((mut s, job), rows) in jobs.into_iter().zip(logits) {
            match job {
                Job::Prefill {
                    arrived,
                    events,
                    max_new,
                    ignore_eos,
                    reply,
                } => {
                    let first = s.pick(rows.last());
                    s.push(first);
                    let opened = pb::Opened {
                        session_id: s.id,
                        first_token: first,
                        committed_len: s.committed.len() as u32,
                        timing: Some(timing(Some(arrived))),
                    };
                    if reply.send(Ok(opened)).is_err() {
                        continue; // the client went away before its session opened
                    }
                    if let Some(events) = events {
                        s.generation = Some(Generation {
                            events,
                            remaining: max_new - 1,
                            ignore_eos,
                        });
                        if self.finished(&s) {
                            continue;
                        }
                    }
                    self.sessions.insert(s.id, s);
                }
                Job::Verify {
                    block,
                    arrived,
                    reply,
                } => {
                    let answer = s.accept(&block, &rows).map(|v| pb::Verdict {
                        seq: block.seq,
                        accepted: v.accepted as u32,
                        next_token: v.next_token,
                        committed_len: s.committed.len() as u32,
                        timing: Some(timing(Some(arrived))),
                    });
                    let _ = reply.send(answer);
                    self.sessions.insert(s.id, s);
                }
                Job::Generate => {
                    let token = s.pick(rows.last());
                    s.push(token);
                    let g = s.generation.as_mut().expect("generating");
                    g.remaining -= 1;
                    let msg = pb::cloud_message::Kind::Token(pb::Token {
                        token,
                        committed_len: s.committed.len() as u32,
                        timing: Some(timing(None)),
                    });
                    if g.events.send(msg).is_err() || self.finished(&s) {
                        continue; // gone or done: the session ends here
                    }
                    self.sessions.insert(s.id, s);
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

fn jobs_len_u32(inputs: &[Vec<u32>]) -> u32 {
    inputs.len() as u32
}
