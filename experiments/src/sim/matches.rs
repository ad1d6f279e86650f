//! What a greedy run's records fix about each prompt's drafts. In greedy decoding the
//! committed continuation of a prompt is the target's own, whatever the strategy, and
//! the draft's token at position `t` (drafted after the committed prefix) either is
//! the target's token there or is not: one fact per position, the same in every
//! request of that prompt. A verified block that starts at `t` and accepts `a` of its
//! `d` tokens says positions `t .. t + a` match and, if `a < d`, that `t + a` does not.
//!
//! Re-simulating a greedy run with these facts replays its draft outcomes (where a
//! block tested them), so the comparison measures the simulator's times, not one
//! draw of its acceptance against another: easy stretches of text, where every block
//! is accepted in turn, stay together as they were.
//!
//! Worked example, k = 4: the prefill commits position 0; a block at 1 accepts all 4
//! (positions 1–4 match) and the target adds 5; a block at 6 accepts 2 (6, 7 match, 8
//! does not) and the target corrects 8; the next block starts at 9. Position 5 was
//! never drafted after its true prefix: unknown, drawn from the curve.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tandem_draft::RoundKind;

use crate::results::{RequestRow, RoundRow};

/// One prompt's draft outcomes by position of its continuation (`None`: no verified
/// block tested that position).
pub type Matches = Arc<[Option<bool>]>;

/// Each prompt's outcomes (index: the prompt's place in the set), from the verified
/// rounds of a greedy run's requests. Requests that went on without the verifier
/// (fallbacks, unverified tokens) leave the target's continuation and are left out;
/// a position two requests disagree on (a near-tie the batch shape tipped) is unknown.
/// Requests that drafted token trees are left out too: a tree's accepted length is a
/// path through it, not a prefix of one block (its rows' first choices are the chain's
/// tokens, so the outcomes learnt from chains replay there).
pub fn matches_by_prompt(rounds: &[RoundRow], requests: &[RequestRow]) -> Vec<Matches> {
    let trees: BTreeSet<(u32, u32, u32)> = rounds
        .iter()
        .filter(|r| r.record.tree_depth > 0)
        .map(|r| (r.key.cell, r.key.repetition, r.request))
        .collect();
    let verified: BTreeMap<(u32, u32, u32), u32> = requests
        .iter()
        .filter(|r| r.fallbacks == 0 && r.unverified_tokens == 0)
        .filter(|r| !trees.contains(&(r.cell, r.repetition, r.request)))
        .map(|r| ((r.cell, r.repetition, r.request), r.prompt_index))
        .collect();
    let mut by_request: BTreeMap<(u32, u32, u32), Vec<&RoundRow>> = BTreeMap::new();
    for r in rounds {
        let id = (r.key.cell, r.key.repetition, r.request);
        if verified.contains_key(&id) {
            by_request.entry(id).or_default().push(r);
        }
    }
    let prompts = requests.iter().map(|r| r.prompt_index as usize + 1).max();
    let mut table = vec![Outcomes::default(); prompts.unwrap_or(0)];
    for (id, mut rs) in by_request {
        rs.sort_by_key(|r| r.record.round);
        table[verified[&id] as usize].learn(&rs);
    }
    table.into_iter().map(|o| o.known.into()).collect()
}

/// What is known of one prompt's positions so far.
#[derive(Debug, Clone, Default)]
struct Outcomes {
    known: Vec<Option<bool>>,
    /// Positions two requests disagreed on: unknown for good.
    disputed: Vec<bool>,
}

impl Outcomes {
    /// Learns from one request's rounds, in order.
    fn learn(&mut self, rounds: &[&RoundRow]) {
        let mut at = 0usize;
        for r in rounds {
            let rec = &r.record;
            if rec.kind == RoundKind::Stale {
                continue;
            }
            if rec.kind == RoundKind::Verified {
                let (drafted, accepted) = (rec.drafted as usize, rec.accepted as usize);
                for i in 0..accepted.min(drafted) {
                    self.set(at + i, true);
                }
                if accepted < drafted {
                    self.set(at + accepted, false);
                }
            }
            at += rec.committed as usize;
        }
    }

    fn set(&mut self, t: usize, hit: bool) {
        if self.known.len() <= t {
            self.known.resize(t + 1, None);
            self.disputed.resize(t + 1, false);
        }
        match self.known[t] {
            _ if self.disputed[t] => {}
            Some(h) if h != hit => {
                self.known[t] = None;
                self.disputed[t] = true;
            }
            _ => self.known[t] = Some(hit),
        }
    }
}

/// The share of positions, over every prompt, whose outcome is known (0 when none is).
pub fn known_share(matches: &[Matches]) -> f64 {
    let (known, all) = matches.iter().fold((0, 0), |(k, n), m| {
        (k + m.iter().filter(|x| x.is_some()).count(), n + m.len())
    });
    known as f64 / all.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::CellKey;
    use tandem_draft::RoundRecord;

    fn round(request: u32, round: u32, kind: RoundKind, d: u32, a: u32, c: u32) -> RoundRow {
        RoundRow {
            key: Arc::new(CellKey::default()),
            request,
            record: RoundRecord {
                round,
                kind,
                drafted: d,
                accepted: a,
                committed: c,
                ..Default::default()
            },
        }
    }

    fn request(request: u32, prompt_index: u32) -> RequestRow {
        RequestRow {
            request,
            prompt_index,
            ..Default::default()
        }
    }

    #[test]
    fn the_worked_example() {
        use RoundKind::{Stale, Verified};
        let rounds = [
            round(0, 0, Verified, 0, 0, 1),
            round(0, 1, Verified, 4, 4, 5),
            // A pipelined block whose guess missed commits nothing and says nothing.
            round(0, 2, Stale, 4, 0, 0),
            round(0, 3, Verified, 4, 2, 3),
            round(0, 4, Verified, 4, 0, 1),
        ];
        let m = matches_by_prompt(&rounds, &[request(0, 0)]);
        let (t, f) = (Some(true), Some(false));
        assert_eq!(&*m[0], &[None, t, t, t, t, None, t, t, f, f]);
        assert!((known_share(&m) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn requests_of_a_prompt_add_up_and_disagreements_are_unknown() {
        use RoundKind::Verified;
        let rounds = [
            // Request 0 (prompt 1): position 1 matches, 2 does not.
            round(0, 0, Verified, 0, 0, 1),
            round(0, 1, Verified, 2, 1, 2),
            // Request 1 (prompt 1), rounds out of order in the table: 1 does not match
            // (a dispute), 2 agrees, 3 and 4 are fresh.
            round(1, 1, Verified, 1, 0, 1),
            round(1, 0, Verified, 0, 0, 1),
            round(1, 2, Verified, 2, 0, 1),
            round(1, 3, Verified, 2, 1, 2),
            // Request 2 (prompt 0) fell back to the edge alone: left out.
            round(2, 0, Verified, 0, 0, 1),
            round(2, 1, Verified, 4, 4, 5),
        ];
        let mut fell_back = request(2, 0);
        fell_back.fallbacks = 1;
        let m = matches_by_prompt(&rounds, &[request(0, 1), request(1, 1), fell_back]);
        assert!(m[0].is_empty());
        assert_eq!(&*m[1], &[None, None, Some(false), Some(true), Some(false)]);
        // Request 1 again, agreeing with itself, does not undo the dispute.
        let again = [
            round(3, 0, Verified, 0, 0, 1),
            round(3, 1, Verified, 1, 1, 2),
        ];
        let m = matches_by_prompt(
            &[&rounds[..], &again].concat(),
            &[request(0, 1), request(1, 1), request(3, 1)],
        );
        assert_eq!(m[1][1], None);
    }

    #[test]
    fn a_request_that_drafted_trees_says_nothing() {
        use RoundKind::Verified;
        // A 3,2,1,1 tree (21 nodes) whose path of 3 ran through second choices: read
        // as a chain it would claim positions 1–3 match and 4 does not.
        let mut tree = round(0, 1, Verified, 21, 3, 4);
        tree.record.tree_depth = 4;
        let rounds = [round(0, 0, Verified, 0, 0, 1), tree];
        let m = matches_by_prompt(&rounds, &[request(0, 0)]);
        assert!(m[0].is_empty(), "{:?}", m[0]);
    }
}
