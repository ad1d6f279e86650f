//! The policies that need no model of time: fixed, +2/−1, confidence stop.

use super::{DraftLengthPolicy, RoundObservation};

/// Always draft `k` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    /// The draft length.
    pub k: usize,
}

impl DraftLengthPolicy for Fixed {
    fn next_k(&self) -> usize {
        self.k
    }
    fn observe(&mut self, _: &RoundObservation) {}
}

/// transformers' "heuristic" schedule for assistant tokens: after a fully accepted block
/// draft two more next time, otherwise one fewer; kept within `[min_k, max_k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlusTwoMinusOne {
    k: usize,
    min_k: usize,
    max_k: usize,
}

impl PlusTwoMinusOne {
    /// Starts at `start`, clamped to `[min_k.max(1), max_k]`.
    pub fn new(start: usize, min_k: usize, max_k: usize) -> Self {
        let min_k = min_k.max(1);
        let max_k = max_k.max(min_k);
        Self {
            k: start.clamp(min_k, max_k),
            min_k,
            max_k,
        }
    }
}

impl DraftLengthPolicy for PlusTwoMinusOne {
    fn next_k(&self) -> usize {
        self.k
    }
    fn observe(&mut self, round: &RoundObservation) {
        self.k = if round.drafted > 0 && round.accepted == round.drafted {
            (self.k + 2).min(self.max_k)
        } else {
            self.k.saturating_sub(1).max(self.min_k)
        };
    }
}

/// llama.cpp's confidence stop: draft up to `max_k` tokens, but stop before a candidate
/// whose top-1 draft probability is below `p_min` (it would likely be rejected).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    /// The minimum top-1 probability to keep drafting.
    pub p_min: f32,
    /// The most tokens in a block.
    pub max_k: usize,
}

impl DraftLengthPolicy for Confidence {
    fn next_k(&self) -> usize {
        self.max_k
    }
    fn keep_drafting(&self, position: usize, top1_prob: f32) -> bool {
        position < self.max_k && top1_prob >= self.p_min
    }
    fn observe(&mut self, _: &RoundObservation) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(drafted: usize, accepted: usize) -> RoundObservation {
        RoundObservation {
            drafted,
            accepted,
            draft_s: 0.0,
            remote_s: 0.0,
        }
    }

    #[test]
    fn plus_two_minus_one_follows_the_schedule_within_bounds() {
        let mut p = PlusTwoMinusOne::new(4, 1, 9);
        let mut seen = vec![p.next_k()];
        for (d, a) in [(4, 4), (6, 6), (8, 8), (9, 3), (8, 0), (7, 0)] {
            p.observe(&round(d, a));
            seen.push(p.next_k());
        }
        assert_eq!(seen, vec![4, 6, 8, 9, 8, 7, 6]);
        let mut low = PlusTwoMinusOne::new(1, 1, 9);
        low.observe(&round(1, 0));
        assert_eq!(low.next_k(), 1);
    }

    #[test]
    fn confidence_stops_below_p_min_and_at_max_k() {
        let p = Confidence {
            p_min: 0.5,
            max_k: 3,
        };
        assert!(p.keep_drafting(0, 0.9));
        assert!(!p.keep_drafting(1, 0.49));
        assert!(!p.keep_drafting(3, 0.99));
        assert!(Fixed { k: 2 }.keep_drafting(1, 0.0));
        assert!(!Fixed { k: 2 }.keep_drafting(2, 1.0));
    }
}
