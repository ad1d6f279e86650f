//! After the pass: each job and its rows of logits → the acceptance rule → its reply.
//! Every count goes into the pass's [`PassStats`]; nothing here touches metrics.

use std::time::Instant;

use tandem_models::{Logits, SessionCache};
use tandem_protocol::{StopReason, WireError, pb};

use super::job::{Job, Prefill, Verify};
use super::session::{Generation, Session};
use super::stats::PassStats;

/// What the pass was, as every reply in it reports it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PassInfo<'a> {
    pub start: Instant,
    pub forward_ns: u64,
    /// Time the pass was held after its forward to meet the cloud pace, ns.
    pub paced_ns: u64,
    pub size: usize,
    pub tokens: usize,
    /// The target's end-of-sequence tokens.
    pub eos: &'a [u32],
}

impl PassInfo<'_> {
    fn timing(&self, arrived: Option<Instant>) -> pb::Timing {
        pb::Timing {
            queue_ns: arrived.map_or(0, |a| {
                self.start.saturating_duration_since(a).as_nanos() as u64
            }),
            forward_ns: self.forward_ns,
            paced_ns: self.paced_ns,
            batch_size: self.size as u32,
            batch_tokens: self.tokens as u32,
        }
    }

    fn waited(&self, arrived: Instant) -> f64 {
        self.start.saturating_duration_since(arrived).as_secs_f64()
    }
}

/// What became of a job's session after its pass.
pub(super) enum Outcome<C> {
    /// It stays open.
    Keep(Session<C>),
    /// A prefill with more prompt to go, back to the front of the queue.
    Unfinished(Prefill<C>, Instant),
    /// It ends here: its client went away, or its generation is over.
    Ended,
}

impl<C: SessionCache> Job<C> {
    /// Answers the job from its rows of logits.
    pub fn finish(self, rows: Logits, pass: &PassInfo<'_>, stats: &mut PassStats) -> Outcome<C> {
        match self {
            Job::Prefill(mut p, n, arrived) => {
                p.done += n;
                if p.done < p.session.committed.len() {
                    return Outcome::Unfinished(p, arrived);
                }
                stats.queue_seconds.push(pass.waited(arrived));
                opened(p, rows, pass.timing(Some(arrived)), pass.eos, stats)
            }
            Job::Verify(mut s, v, arrived) => {
                stats.queue_seconds.push(pass.waited(arrived));
                let Verify {
                    block, reply, span, ..
                } = v;
                let answer = s.accept(&block, &rows).map(|verdict| {
                    stats.verified.push((verdict.drafted, verdict.accepted()));
                    tracing::debug!(parent: &span, accepted = verdict.accepted(), next = verdict.next_token, "verdict");
                    pb::Verdict {
                        seq: block.seq,
                        accepted: verdict.accepted() as u32,
                        next_token: verdict.next_token,
                        committed_len: s.committed.len() as u32,
                        timing: Some(pass.timing(Some(arrived))),
                        path: verdict.wire_path(&block),
                    }
                });
                if let Err(e) = &answer {
                    tracing::debug!(parent: &span, code = ?e.code, "refused: {}", e.message);
                }
                let _ = reply.send(answer);
                Outcome::Keep(s)
            }
            Job::Generate(mut s) => {
                let token = s.pick(rows.last());
                s.push(token);
                stats.own_tokens += 1;
                let g = s.generation.as_mut().expect("generating");
                g.remaining -= 1;
                let msg = pb::cloud_message::Kind::Token(pb::Token {
                    token,
                    committed_len: s.committed.len() as u32,
                    timing: Some(pass.timing(None)),
                });
                if g.events.send(msg).is_err() || finished(&s, pass.eos) {
                    return Outcome::Ended;
                }
                Outcome::Keep(s)
            }
        }
    }

    /// Tells the job's client that its pass failed (the caches are untouched); returns
    /// the session if it stays open.
    pub fn fail(self, err: &WireError) -> Option<Session<C>> {
        match self {
            Job::Prefill(p, ..) => {
                let _ = p.reply.send(Err(err.clone()));
                None
            }
            Job::Verify(s, v, _) => {
                let _ = v.reply.send(Err(err.clone()));
                Some(s)
            }
            Job::Generate(s) => {
                if let Some(g) = &s.generation {
                    let _ = g.events.send(pb::cloud_message::Kind::Error(err.to_pb(0)));
                }
                None
            }
        }
    }
}

/// A session whose whole prompt is in the cache: its first token, and its reply.
fn opened<C: SessionCache>(
    p: Prefill<C>,
    rows: Logits,
    timing: pb::Timing,
    eos: &[u32],
    stats: &mut PassStats,
) -> Outcome<C> {
    let Prefill {
        mut session,
        events,
        max_new,
        ignore_eos,
        reply,
        ..
    } = p;
    let first = session.pick(rows.last());
    session.push(first);
    stats.prompt_tokens += session.committed.len() as u64 - 1;
    stats.opened += 1;
    stats.own_tokens += 1;
    tracing::debug!(parent: &session.span, first, "opened");
    let opened = pb::Opened {
        session_id: session.id,
        first_token: first,
        committed_len: session.committed.len() as u32,
        timing: Some(timing),
    };
    if reply.send(Ok(opened)).is_err() {
        return Outcome::Ended; // the client went away before its session opened
    }
    if let Some(events) = events {
        session.generation = Some(Generation {
            events,
            remaining: max_new - 1,
            ignore_eos,
        });
        if finished(&session, eos) {
            return Outcome::Ended;
        }
    }
    Outcome::Keep(session)
}

/// Why a generating session stops now, if it does.
pub(super) fn stop_reason<C: SessionCache>(s: &Session<C>, eos: &[u32]) -> Option<StopReason> {
    let g = s.generation.as_ref()?;
    if !g.ignore_eos && eos.contains(&s.newest()) {
        Some(StopReason::Eos)
    } else if g.remaining == 0 {
        Some(StopReason::Length)
    } else if s.committed.len() >= s.max_len {
        Some(StopReason::Context)
    } else {
        None
    }
}

/// For a generating session: whether it is done; if so, tells its stream why.
fn finished<C: SessionCache>(s: &Session<C>, eos: &[u32]) -> bool {
    let Some(reason) = stop_reason(s, eos) else {
        return false;
    };
    tracing::debug!(parent: &s.span, %reason, "finished");
    let g = s.generation.as_ref().expect("generating");
    let _ = g
        .events
        .send(pb::cloud_message::Kind::Finished(pb::Finished {
            reason: reason.as_str().into(),
        }));
    true
}
