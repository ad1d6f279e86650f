//! Stochastic verification (Leviathan et al. 2023, arXiv 2211.17192; Chen et al. 2023,
//! arXiv 2302.01318).
//!
//! For each drafted token `x_i`, sampled by the draft from `q_i`, draw `r ~ U[0, 1)` and
//! accept if `r < p_i(x_i) / q_i(x_i)`. At the first rejection, sample the correction
//! from the residual `max(0, p_i − q_i)` renormalised. After a full accept, sample the
//! bonus from `p_{k}`. Each committed token is then distributed exactly as `p`.
//!
//! Worked example, one position, vocabulary {a, b, c}:
//!
//! ```text
//! p = [0.6, 0.3, 0.1]   target        q = [0.2, 0.7, 0.1]   draft
//! draft proposes b with prob 0.7; accepted with prob p/q = 0.3/0.7 = 3/7
//! draft proposes a with prob 0.2; accepted always (p/q = 3 ≥ 1); c likewise (p/q = 1)
//! residual max(0, p − q) = [0.4, 0, 0] → renormalised [1, 0, 0]
//! P(emit a) = 0.2·1 + (0.7·4/7)·1 = 0.6      P(emit b) = 0.7·3/7 = 0.3
//! P(emit c) = 0.1·1                = 0.1      — exactly p.
//! ```
//!
//! Random numbers are drawn in a fixed order (one uniform per tested token, one for the
//! correction or bonus), so a session's seed fixes its tokens.

use std::ops::ControlFlow;

use super::{Verdict, check_rows, check_tokens};
use crate::{DecodingError, Distribution, LogitRows, SamplingParams, SessionRng, TokenId};

/// The target's distributions at the `k + 1` positions of a block, produced on demand so
/// that rows past the first rejection are never computed.
pub trait TargetProbs {
    /// Number of rows available (must be drafted tokens + 1).
    fn rows(&self) -> usize;
    /// The target's distribution at row `i`, after the session's sampling transform.
    fn row(&mut self, i: usize) -> &Distribution;
}

impl TargetProbs for [Distribution] {
    fn rows(&self) -> usize {
        self.len()
    }
    fn row(&mut self, i: usize) -> &Distribution {
        &self[i]
    }
}

/// Target rows computed lazily from logits with a session's [`SamplingParams`].
#[derive(Debug)]
pub struct FromLogits<'a> {
    logits: LogitRows<'a>,
    params: SamplingParams,
    cached: Option<(usize, Distribution)>,
}

impl<'a> FromLogits<'a> {
    /// Wraps the target's logits for a block.
    pub fn new(logits: LogitRows<'a>, params: SamplingParams) -> Self {
        Self {
            logits,
            params,
            cached: None,
        }
    }
}

impl TargetProbs for FromLogits<'_> {
    fn rows(&self) -> usize {
        self.logits.rows()
    }
    fn row(&mut self, i: usize) -> &Distribution {
        if self.cached.as_ref().is_none_or(|(j, _)| *j != i) {
            let buf = match self.cached.take() {
                Some((_, Distribution::Dense(v))) => v,
                _ => Vec::new(),
            };
            let dist = self.params.distribution_in(self.logits.row(i), buf);
            self.cached = Some((i, dist));
        }
        &self.cached.as_ref().expect("just filled").1
    }
}

/// Checks sampled drafts against the target before any randomness is drawn: one `q` per
/// token, `tokens.len() + 1` target rows, every token and `q` within the target's
/// vocabulary, every token drawable from its own `q` (`what` names a token in errors:
/// "position", "tree node"). Returns the vocabulary size.
pub(super) fn check_sampled<T: TargetProbs + ?Sized>(
    tokens: &[TokenId],
    q: &[Distribution],
    target: &mut T,
    what: &str,
) -> Result<usize, DecodingError> {
    if q.len() != tokens.len() {
        return Err(DecodingError::DraftLengthMismatch {
            tokens: tokens.len(),
            dists: q.len(),
        });
    }
    check_rows(tokens.len(), target.rows())?;
    let vocab = target.row(0).vocab_size();
    check_tokens(tokens, vocab)?;
    for (position, (&token, qi)) in tokens.iter().zip(q).enumerate() {
        if qi.vocab_size() != vocab {
            return Err(DecodingError::InvalidDistribution(format!(
                "draft distribution of {what} {position} covers {} tokens, the target {vocab}",
                qi.vocab_size()
            )));
        }
        if qi.prob(token) <= 0.0 {
            return Err(DecodingError::ZeroDraftProbability { position, token });
        }
    }
    Ok(vocab)
}

/// Verifies a block drafted by sampling: `draft[i]` was drawn from `q[i]`.
///
/// Errors (all checked before any randomness is drawn): `q` and `draft` differ in length;
/// `target` does not have `draft.len() + 1` rows; a token or a `q` is outside the
/// target's vocabulary; a drafted token has probability 0 under its own `q`.
pub fn verify_stochastic<T: TargetProbs + ?Sized>(
    draft: &[TokenId],
    q: &[Distribution],
    target: &mut T,
    rng: &mut SessionRng,
) -> Result<Verdict, DecodingError> {
    check_sampled(draft, q, target, "position")?;

    for (i, (&token, qi)) in draft.iter().zip(q).enumerate() {
        let p = target.row(i);
        let ratio = p.prob(token) as f64 / qi.prob(token) as f64;
        if rng.uniform() >= ratio {
            let next_token = sample_residual(p, qi, rng);
            return Ok(Verdict {
                drafted: draft.len(),
                accepted: i,
                next_token,
            });
        }
    }
    let bonus = target.row(draft.len()).sample(rng);
    Ok(Verdict {
        drafted: draft.len(),
        accepted: draft.len(),
        next_token: bonus,
    })
}

/// Samples from `max(0, p − q)` renormalised, with one uniform.
///
/// If the residual has no mass (`p ≤ q` everywhere, which for normalised `p` and `q`
/// means `p = q` up to rounding, where a rejection has probability 0), the token is
/// drawn from `p` instead: the right limit, and never a NaN.
pub(crate) fn sample_residual(p: &Distribution, q: &Distribution, rng: &mut SessionRng) -> TokenId {
    let mut total = 0.0f64;
    visit_residual::<()>(p, q, |_, w| {
        total += w as f64;
        ControlFlow::Continue(())
    });
    if !(total > 0.0 && total.is_finite()) {
        return p.sample(rng);
    }
    let goal = rng.uniform() * total;
    let mut acc = 0.0f64;
    let mut last = None;
    let hit = visit_residual(p, q, |t, w| {
        if w > 0.0 {
            acc += w as f64;
            last = Some(t);
            if goal < acc {
                return ControlFlow::Break(t);
            }
        }
        ControlFlow::Continue(())
    });
    hit.or(last).unwrap_or_else(|| p.argmax())
}

/// Calls `f(token, max(0, p(token) − q(token)))` over the support of `p`, in token order,
/// until it breaks.
fn visit_residual<B>(
    p: &Distribution,
    q: &Distribution,
    mut f: impl FnMut(TokenId, f32) -> ControlFlow<B>,
) -> Option<B> {
    let mut emit = |t: TokenId, pv: f32, qv: f32| f(t, (pv - qv).max(0.0));
    match (p, q) {
        (Distribution::Dense(p), Distribution::Dense(q)) => {
            for (t, (&pv, &qv)) in p.iter().zip(q).enumerate() {
                if let ControlFlow::Break(b) = emit(t as TokenId, pv, qv) {
                    return Some(b);
                }
            }
        }
        (Distribution::Dense(p), Distribution::Sparse { ids, probs, .. }) => {
            // Merge walk: q's ids are sorted, so one pointer suffices.
            let mut j = 0;
            for (t, &pv) in p.iter().enumerate() {
                let qv = if ids.get(j) == Some(&(t as TokenId)) {
                    j += 1;
                    probs[j - 1]
                } else {
                    0.0
                };
                if let ControlFlow::Break(b) = emit(t as TokenId, pv, qv) {
                    return Some(b);
                }
            }
        }
        (Distribution::Sparse { ids, probs, .. }, q) => {
            for (&t, &pv) in ids.iter().zip(probs) {
                if let ControlFlow::Break(b) = emit(t, pv, q.prob(t)) {
                    return Some(b);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_follows_the_positive_part() {
        let p = Distribution::dense(vec![0.6, 0.3, 0.1]).unwrap();
        let q = Distribution::dense(vec![0.2, 0.7, 0.1]).unwrap();
        let mut rng = SessionRng::new(1);
        for _ in 0..1000 {
            assert_eq!(sample_residual(&p, &q, &mut rng), 0);
        }
        // The same with a sparse q holding the same numbers.
        let qs = Distribution::sparse(vec![(0, 0.2), (1, 0.7), (2, 0.1)], 3).unwrap();
        for _ in 0..1000 {
            assert_eq!(sample_residual(&p, &qs, &mut rng), 0);
        }
    }

    #[test]
    fn empty_residual_falls_back_to_p_without_nan() {
        // p − q ≤ 0 everywhere: q equals p.
        let p = Distribution::dense(vec![0.25, 0.25, 0.5]).unwrap();
        let mut rng = SessionRng::new(2);
        let mut seen = [0u32; 3];
        for _ in 0..4000 {
            seen[sample_residual(&p, &p.clone(), &mut rng) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        assert!(seen[2] > seen[0] && seen[2] > seen[1], "{seen:?}");
    }

    #[test]
    fn from_logits_matches_the_sampling_transform() {
        let logits = [0.0f32, 1.0, 2.0, 3.0, 2.0, 1.0];
        let params = SamplingParams {
            temperature: 0.7,
            top_k: 2,
            ..Default::default()
        };
        let mut rows = FromLogits::new(LogitRows::new(&logits, 3).unwrap(), params);
        assert_eq!(rows.rows(), 2);
        assert_eq!(*rows.row(1), params.distribution(&logits[3..]));
        assert_eq!(*rows.row(0), params.distribution(&logits[..3]));
    }
}
