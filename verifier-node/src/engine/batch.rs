//! How the next pass is chosen: pure logic, no model, no channels.
//!
//! Waiting work is kept in arrival order. A pass takes work from the front while it
//! fits the token budget and the session cap, skipping work of a session that is
//! already in the pass (its blocks must be verified one after another), and stopping
//! at the first job that does not fit, so nothing is overtaken for ever: the job at the
//! front always goes into the next pass.

use std::time::Duration;

use rustc_hash::FxHashSet;

/// Limits of one batched pass, and how long to gather work for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most sessions in one pass; 1 turns batching off.
    pub max_sessions: usize,
    /// Most tokens in one pass (a job larger than this still runs, alone).
    pub max_tokens: usize,
    /// How long to wait for more work after the first job arrives, unless the budget
    /// fills or every open session already has work waiting.
    pub max_wait: Duration,
    /// Longest piece of a prompt prefilled in one pass, so a long prompt does not
    /// hold everyone else's verification up.
    pub prefill_chunk: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_sessions: 256,
            max_tokens: 4096,
            max_wait: Duration::from_micros(500),
            prefill_chunk: 512,
        }
    }
}

/// One waiting job as the selection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The session (new sessions have their id already).
    pub session: u64,
    /// Tokens it would run; a prefill can shrink down to `min_tokens`.
    pub tokens: usize,
    /// Fewest tokens it can run with (a prefill chunk can be cut; a block cannot).
    pub min_tokens: usize,
}

/// Picks the jobs of the next pass: indices into `queue` with the tokens each runs.
/// `reserved` tokens and sessions are already taken (steps of cloud-only generation).
/// Reads the queue only as far as the pass reaches, so a pass costs what it takes,
/// however long the queue behind it.
pub fn select(
    queue: impl IntoIterator<Item = Candidate>,
    policy: &BatchPolicy,
    reserved_tokens: usize,
    reserved_sessions: &[u64],
) -> Vec<(usize, usize)> {
    let mut picked: Vec<(usize, usize)> = Vec::new();
    let mut sessions: FxHashSet<u64> = reserved_sessions.iter().copied().collect();
    let mut tokens = reserved_tokens;
    for (i, c) in queue.into_iter().enumerate() {
        if sessions.len() >= policy.max_sessions.max(1) && !picked.is_empty() {
            break;
        }
        if sessions.contains(&c.session) {
            continue;
        }
        let room = policy.max_tokens.saturating_sub(tokens);
        let take = if c.tokens <= room {
            c.tokens
        } else if c.min_tokens <= room {
            room
        } else if picked.is_empty() {
            c.tokens // the front job runs whatever its size
        } else {
            break;
        };
        picked.push((i, take));
        sessions.insert(c.session);
        tokens += take;
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(session: u64, tokens: usize) -> Candidate {
        Candidate {
            session,
            tokens,
            min_tokens: tokens,
        }
    }

    fn prefill(session: u64, tokens: usize) -> Candidate {
        Candidate {
            session,
            tokens,
            min_tokens: 1,
        }
    }

    fn policy(max_sessions: usize, max_tokens: usize) -> BatchPolicy {
        BatchPolicy {
            max_sessions,
            max_tokens,
            ..BatchPolicy::default()
        }
    }

    #[test]
    fn takes_in_order_within_the_budget_and_stops_at_the_first_misfit() {
        let q = [block(1, 5), block(2, 5), block(3, 9), block(4, 1)];
        // 5 + 5 fit in 12; block 3 does not, and block 4 may not overtake it.
        assert_eq!(select(q, &policy(8, 12), 0, &[]), vec![(0, 5), (1, 5)]);
    }

    #[test]
    fn a_session_is_in_a_pass_once() {
        let q = [block(1, 5), block(1, 5), block(2, 5)];
        assert_eq!(select(q, &policy(8, 100), 0, &[]), vec![(0, 5), (2, 5)]);
        // Reserved sessions (generation steps) count too.
        assert_eq!(select(q, &policy(8, 100), 1, &[2]), vec![(0, 5)]);
    }

    #[test]
    fn batching_off_runs_one_job() {
        let q = [block(1, 5), block(2, 5)];
        assert_eq!(select(q, &policy(1, 100), 0, &[]), vec![(0, 5)]);
    }

    #[test]
    fn a_prefill_is_cut_to_the_room_left_and_an_oversized_job_runs_alone() {
        let q = [block(1, 5), prefill(2, 100), block(3, 5)];
        assert_eq!(select(q, &policy(8, 20), 0, &[]), vec![(0, 5), (1, 15)]);
        let q = [block(1, 50), block(2, 5)];
        assert_eq!(select(q, &policy(8, 20), 0, &[]), vec![(0, 50)]);
    }

    #[test]
    fn the_front_job_always_runs_so_nothing_starves() {
        // Whatever the budget, the head of the queue is picked.
        for max_tokens in [1, 3, 10, 1000] {
            let q = [block(9, 7), block(1, 1)];
            let got = select(q, &policy(4, max_tokens), 0, &[]);
            assert_eq!(got[0].0, 0, "budget {max_tokens}");
            // Even when generation steps already fill the pass.
            let got = select(q, &policy(2, max_tokens), max_tokens, &[5, 6]);
            assert_eq!(got[0], (0, 7), "budget {max_tokens}");
        }
    }
}
