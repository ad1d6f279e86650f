//! Acceptance metrics accumulated from verdicts, with the field's names and definitions.
//!
//! vLLM: acceptance rate = accepted / drafted tokens; mean acceptance length =
//! 1 + accepted / drafts; per-position acceptance = accepted at position j / drafts;
//! system efficiency = committed / Σ(drafted + 1). llama.cpp divides accepted by the
//! tokens *tested* (accepted plus the first rejected) instead: reported here as
//! [`AcceptanceStats::tested_acceptance_rate`], which is also the maximum-likelihood
//! estimate of the per-token acceptance probability α under i.i.d. acceptance.

use crate::Verdict;

/// Running totals over any number of verified blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcceptanceStats {
    /// Verified blocks with at least one drafted token.
    pub drafts: u64,
    /// Drafted tokens.
    pub drafted_tokens: u64,
    /// Accepted drafted tokens.
    pub accepted_tokens: u64,
    /// Drafted tokens tested (accepted plus first rejected).
    pub tested_tokens: u64,
    /// Committed tokens (accepted plus the target's own), over all blocks.
    pub committed_tokens: u64,
    /// Rounds, including blocks with no drafted token.
    pub rounds: u64,
    /// `accepted_per_position[j]`: blocks whose token at position `j` was accepted.
    pub accepted_per_position: Vec<u64>,
    /// `tested_per_position[j]`: blocks whose token at position `j` was tested.
    pub tested_per_position: Vec<u64>,
}

impl AcceptanceStats {
    /// Adds one verdict.
    pub fn record(&mut self, v: &Verdict) {
        self.rounds += 1;
        self.committed_tokens += v.committed() as u64;
        if v.drafted == 0 {
            return;
        }
        self.drafts += 1;
        self.drafted_tokens += v.drafted as u64;
        self.accepted_tokens += v.accepted as u64;
        self.tested_tokens += v.tested() as u64;
        if self.tested_per_position.len() < v.drafted {
            self.tested_per_position.resize(v.drafted, 0);
            self.accepted_per_position.resize(v.drafted, 0);
        }
        for j in 0..v.tested() {
            self.tested_per_position[j] += 1;
            self.accepted_per_position[j] += u64::from(j < v.accepted);
        }
    }

    /// vLLM's acceptance rate: accepted / drafted tokens.
    pub fn acceptance_rate(&self) -> f64 {
        ratio(self.accepted_tokens, self.drafted_tokens)
    }

    /// llama.cpp's acceptance rate: accepted / tested tokens.
    pub fn tested_acceptance_rate(&self) -> f64 {
        ratio(self.accepted_tokens, self.tested_tokens)
    }

    /// vLLM's mean acceptance length: 1 + accepted / drafts (tokens committed per
    /// verified block).
    pub fn mean_acceptance_length(&self) -> f64 {
        if self.drafts == 0 {
            f64::NAN
        } else {
            1.0 + ratio(self.accepted_tokens, self.drafts)
        }
    }

    /// vLLM's per-position acceptance: accepted at position `j` / drafts.
    pub fn per_position_acceptance(&self) -> Vec<f64> {
        self.accepted_per_position
            .iter()
            .map(|&a| ratio(a, self.drafts))
            .collect()
    }

    /// Conditional acceptance at each position: accepted / tested there (an estimate of
    /// `β_j = 1 − TV(p_j, q_j)`).
    pub fn conditional_acceptance(&self) -> Vec<f64> {
        self.accepted_per_position
            .iter()
            .zip(&self.tested_per_position)
            .map(|(&a, &t)| ratio(a, t))
            .collect()
    }

    /// vLLM's system efficiency: committed / Σ(drafted + 1) over verified blocks.
    pub fn system_efficiency(&self) -> f64 {
        ratio(self.committed_tokens, self.drafted_tokens + self.rounds)
    }

    /// Adds another accumulator's totals (e.g. one per session into a global one).
    pub fn merge(&mut self, other: &AcceptanceStats) {
        self.drafts += other.drafts;
        self.drafted_tokens += other.drafted_tokens;
        self.accepted_tokens += other.accepted_tokens;
        self.tested_tokens += other.tested_tokens;
        self.committed_tokens += other.committed_tokens;
        self.rounds += other.rounds;
        let n = self
            .tested_per_position
            .len()
            .max(other.tested_per_position.len());
        for (mine, theirs) in [
            (
                &mut self.accepted_per_position,
                &other.accepted_per_position,
            ),
            (&mut self.tested_per_position, &other.tested_per_position),
        ] {
            mine.resize(n, 0);
            mine.iter_mut().zip(theirs).for_each(|(m, t)| *m += t);
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(drafted: usize, accepted: usize) -> Verdict {
        Verdict {
            drafted,
            accepted,
            next_token: 0,
        }
    }

    #[test]
    fn hand_computed_metrics() {
        // Three blocks of 4: accepted 4, 1, 0.
        let mut s = AcceptanceStats::default();
        for x in [v(4, 4), v(4, 1), v(4, 0)] {
            s.record(&x);
        }
        assert_eq!(s.acceptance_rate(), 5.0 / 12.0);
        // Tested: 4 + 2 + 1 = 7.
        assert_eq!(s.tested_acceptance_rate(), 5.0 / 7.0);
        assert_eq!(s.mean_acceptance_length(), 1.0 + 5.0 / 3.0);
        assert_eq!(
            s.per_position_acceptance(),
            vec![2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
        );
        assert_eq!(
            s.conditional_acceptance(),
            vec![2.0 / 3.0, 1.0 / 2.0, 1.0, 1.0]
        );
        // Committed 5 + 2 + 1 = 8 of 15 slots.
        assert_eq!(s.system_efficiency(), 8.0 / 15.0);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let all = [v(2, 2), v(5, 3), v(0, 0), v(3, 0)];
        let mut one = AcceptanceStats::default();
        all.iter().for_each(|x| one.record(x));
        let (mut a, mut b) = (AcceptanceStats::default(), AcceptanceStats::default());
        all[..2].iter().for_each(|x| a.record(x));
        all[2..].iter().for_each(|x| b.record(x));
        b.merge(&a);
        assert_eq!(b.drafted_tokens, one.drafted_tokens);
        assert_eq!(b.per_position_acceptance(), one.per_position_acceptance());
        assert_eq!(b.system_efficiency(), one.system_efficiency());
    }
}
