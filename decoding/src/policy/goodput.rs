//! Goodput-driven draft length: the `k` that maximises expected committed tokens per
//! second, `E[N](α, k) / (k·t_d + t_remote)`, from running estimates of the acceptance
//! probability `α`, the draft time per token `t_d` and the remote part of a round.

use super::{DraftLengthPolicy, RoundObservation};
use crate::analytic::expected_tokens_per_round;

/// Weight of the past in the exponential moving averages (per round).
const DECAY: f64 = 0.9;

/// Picks `k` in `[1, max_k]` by predicted goodput.
///
/// `α` is estimated as accepted / tested tokens (the maximum-likelihood estimate under
/// i.i.d. acceptance), with a prior of one accept in two trials; all three estimates are
/// exponential moving averages so the policy follows a changing text or link. The remote
/// time is treated as independent of `k`, which holds while verification is
/// memory-bound and the link is not bandwidth-bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Goodput {
    max_k: usize,
    k: usize,
    accepted: f64,
    tested: f64,
    draft_s_per_token: Option<f64>,
    remote_s: Option<f64>,
}

impl Goodput {
    /// Starts by drafting `start` tokens until the first observation.
    pub fn new(start: usize, max_k: usize) -> Self {
        let max_k = max_k.max(1);
        Self {
            max_k,
            k: start.clamp(1, max_k),
            accepted: 1.0,
            tested: 2.0,
            draft_s_per_token: None,
            remote_s: None,
        }
    }

    /// The current estimate of the per-token acceptance probability.
    pub fn alpha(&self) -> f64 {
        self.accepted / self.tested
    }

    fn choose(&self) -> usize {
        let (Some(td), Some(remote)) = (self.draft_s_per_token, self.remote_s) else {
            return self.k;
        };
        let alpha = self.alpha();
        let goodput = |k: usize| expected_tokens_per_round(alpha, k) / (k as f64 * td + remote);
        (1..=self.max_k).fold(
            1,
            |best, k| if goodput(k) > goodput(best) { k } else { best },
        )
    }
}

fn ewma(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| DECAY * o + (1.0 - DECAY) * new)
}

impl DraftLengthPolicy for Goodput {
    fn next_k(&self) -> usize {
        self.k
    }

    fn observe(&mut self, r: &RoundObservation) {
        if r.drafted > 0 {
            let tested = (r.accepted + 1).min(r.drafted);
            self.accepted = DECAY * self.accepted + r.accepted as f64;
            self.tested = DECAY * self.tested + tested as f64;
            self.draft_s_per_token =
                Some(ewma(self.draft_s_per_token, r.draft_s / r.drafted as f64));
        }
        self.remote_s = Some(ewma(self.remote_s, r.remote_s));
        self.k = self.choose();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionRng;

    /// Feeds `rounds` rounds where each drafted token is accepted with probability
    /// `alpha`, independently.
    fn feed(policy: &mut Goodput, alpha: f64, td: f64, remote: f64, rounds: usize) {
        let mut rng = SessionRng::new(11);
        for _ in 0..rounds {
            let k = policy.next_k();
            let accepted = (0..k).take_while(|_| rng.uniform() < alpha).count();
            policy.observe(&RoundObservation {
                drafted: k,
                accepted,
                draft_s: td * k as f64,
                remote_s: remote,
            });
        }
    }

    #[test]
    fn estimates_alpha_from_rounds() {
        let mut p = Goodput::new(4, 8);
        feed(&mut p, 0.7, 0.001, 0.05, 400);
        assert!((p.alpha() - 0.7).abs() < 0.12, "α̂ = {}", p.alpha());
    }

    #[test]
    fn long_blocks_when_drafting_is_cheap_and_accurate_short_when_not() {
        let mut good = Goodput::new(2, 12);
        feed(&mut good, 0.9, 0.001, 0.100, 200);
        let mut bad = Goodput::new(2, 12);
        feed(&mut bad, 0.3, 0.020, 0.010, 200);
        assert!(good.next_k() >= 8, "k = {}", good.next_k());
        assert!(bad.next_k() <= 2, "k = {}", bad.next_k());
    }
}
