//! From logits to the distribution a token is drawn from.
//!
//! The transform, in this order: temperature, top-k, top-p, min-p. A temperature of 0 is
//! greedy decoding: all mass on the argmax. Without truncation the result is dense;
//! with any truncation it is sparse, holding exactly the surviving tokens, which is what
//! makes sending a draft's `q` over the wire exact.

mod kernels;

use crate::{DecodingError, Distribution, TokenId};
use kernels::softmax_weights;

/// How one session samples. The same parameters apply to the draft and the target: the
/// lossless guarantee is about the target's distribution *after* this transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` most probable tokens; `0` disables.
    pub top_k: usize,
    /// Keep the smallest set of most probable tokens whose mass reaches `top_p`; `1`
    /// disables.
    pub top_p: f32,
    /// Drop tokens less probable than `min_p` times the most probable one; `0` disables.
    pub min_p: f32,
}

impl Default for SamplingParams {
    /// Plain sampling at temperature 1 with no truncation (vLLM's default).
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Whether these parameters mean greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Whether the resulting distributions are truncated (and therefore sparse).
    pub fn truncates(&self) -> bool {
        self.top_k > 0 || self.top_p < 1.0 || self.min_p > 0.0
    }

    /// Checks every parameter's domain.
    pub fn validate(&self) -> Result<(), DecodingError> {
        let bad = |msg: String| Err(DecodingError::InvalidSamplingParams(msg));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be finite and >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        Ok(())
    }

    /// The distribution to sample the next token from, given the model's `logits`.
    ///
    /// Logits that are NaN or −∞ get probability 0. Panics if `logits` is empty.
    pub fn distribution(&self, logits: &[f32]) -> Distribution {
        self.distribution_in(logits, Vec::new())
    }

    /// [`Self::distribution`], writing dense results into `buf` (reused across rows of a
    /// block to avoid a vocabulary-sized allocation per row).
    pub(crate) fn distribution_in(&self, logits: &[f32], buf: Vec<f32>) -> Distribution {
        assert!(!logits.is_empty(), "empty logits");
        let vocab = logits.len();
        if self.is_greedy() {
            return Distribution::point(argmax(logits), vocab);
        }
        let mut w = buf;
        let total = softmax_weights(logits, self.temperature, &mut w);
        if !(total > 0.0 && total.is_finite()) {
            // Only non-finite logits (a broken model) get here: fall back to the argmax.
            return Distribution::point(argmax(logits), vocab);
        }
        if !self.truncates() {
            let inv = (1.0 / total) as f32;
            w.iter_mut().for_each(|x| *x *= inv);
            return Distribution::Dense(w);
        }
        let kept = self.truncate(&w, total);
        let entries = kept.into_iter().map(|i| (i, w[i as usize])).collect();
        // The argmax always survives, so the support is non-empty and the weights valid.
        Distribution::sparse(entries, vocab).expect("truncated support keeps the argmax")
    }

    /// Token ids surviving top-k, top-p and min-p, from unnormalised weights `w` that
    /// sum to `total` and whose maximum is 1 (so `min_p` compares with `w` directly).
    fn truncate(&self, w: &[f32], total: f64) -> Vec<TokenId> {
        let by_weight_desc =
            |a: &TokenId, b: &TokenId| w[*b as usize].total_cmp(&w[*a as usize]).then(a.cmp(b));
        let mut ids: Vec<TokenId> = (0..w.len() as TokenId)
            .filter(|&i| w[i as usize] > 0.0)
            .collect();
        if self.top_k > 0 && self.top_k < ids.len() {
            ids.select_nth_unstable_by(self.top_k - 1, by_weight_desc);
            ids.truncate(self.top_k);
        }
        ids.sort_unstable_by(by_weight_desc);
        if self.top_p < 1.0 {
            // Mass is measured against the distribution left after top-k.
            let kept_total: f64 = if self.top_k > 0 {
                ids.iter().map(|&i| w[i as usize] as f64).sum()
            } else {
                total
            };
            let goal = self.top_p as f64 * kept_total;
            let mut acc = 0.0;
            let cut = ids
                .iter()
                .position(|&i| {
                    acc += w[i as usize] as f64;
                    acc >= goal
                })
                .map_or(ids.len(), |p| p + 1);
            ids.truncate(cut);
        }
        if self.min_p > 0.0 {
            ids.retain(|&i| w[i as usize] >= self.min_p);
        }
        ids
    }
}

/// Greedy choice: the index of the largest value.
///
/// Tie rule: the **lowest** index among equal maxima wins, as in `torch.argmax` and
/// `numpy.argmax`, so greedy outputs match reference implementations bit for bit. NaN
/// values are never chosen; if every value is NaN the result is 0. Panics if `xs` is empty.
pub fn argmax(xs: &[f32]) -> TokenId {
    assert!(!xs.is_empty(), "argmax of an empty slice");
    kernels::argmax(xs) as TokenId
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(d: &Distribution) -> Vec<f32> {
        (0..d.vocab_size() as TokenId).map(|t| d.prob(t)).collect()
    }

    #[test]
    fn argmax_takes_lowest_index_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        let mut long = vec![0.0f32; 37];
        long[20] = 5.0;
        long[33] = 5.0;
        assert_eq!(argmax(&long), 20);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn temperature_one_is_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let d = SamplingParams::default().distribution(&logits);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        for (t, l) in logits.iter().enumerate() {
            assert!((d.prob(t as TokenId) - l.exp() / z).abs() < 1e-6);
        }
    }

    #[test]
    fn temperature_zero_is_a_point_mass_on_argmax() {
        let d = SamplingParams::greedy().distribution(&[0.1, 0.7, 0.7, 0.2]);
        assert_eq!(probs(&d), vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn top_k_keeps_the_k_largest_renormalised() {
        let p = SamplingParams {
            top_k: 2,
            ..Default::default()
        };
        let d = p.distribution(&[(0.1f32).ln(), (0.2f32).ln(), (0.3f32).ln(), (0.4f32).ln()]);
        let got = probs(&d);
        assert_eq!(got[0], 0.0);
        assert_eq!(got[1], 0.0);
        assert!((got[2] - 0.3 / 0.7).abs() < 1e-6);
        assert!((got[3] - 0.4 / 0.7).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // Sorted masses 0.4, 0.3, 0.2, 0.1: top_p 0.65 needs {0.4, 0.3}; 0.75 needs three.
        let logits = [(0.1f32).ln(), (0.2f32).ln(), (0.3f32).ln(), (0.4f32).ln()];
        let two = SamplingParams {
            top_p: 0.65,
            ..Default::default()
        }
        .distribution(&logits);
        assert_eq!(probs(&two).iter().filter(|&&x| x > 0.0).count(), 2);
        assert!((two.prob(3) - 0.4 / 0.7).abs() < 1e-6);
        let three = SamplingParams {
            top_p: 0.75,
            ..Default::default()
        }
        .distribution(&logits);
        assert_eq!(probs(&three).iter().filter(|&&x| x > 0.0).count(), 3);
        assert_eq!(three.prob(0), 0.0);
    }

    #[test]
    fn min_p_drops_tokens_below_the_fraction_of_the_max() {
        let logits = [(0.05f32).ln(), (0.15f32).ln(), (0.4f32).ln(), (0.4f32).ln()];
        let d = SamplingParams {
            min_p: 0.3,
            ..Default::default()
        }
        .distribution(&logits);
        // 0.15 / 0.4 = 0.375 >= 0.3 stays, 0.05 / 0.4 = 0.125 goes.
        assert_eq!(d.prob(0), 0.0);
        assert!((d.prob(1) - 0.15 / 0.95).abs() < 1e-6);
    }

    #[test]
    fn invalid_parameters_are_named() {
        let bad = [
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            SamplingParams {
                min_p: 2.0,
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(
                matches!(p.validate(), Err(DecodingError::InvalidSamplingParams(_))),
                "{p:?}"
            );
        }
        assert!(SamplingParams::default().validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
    }

    #[test]
    fn nan_and_negative_infinity_logits_get_zero_mass() {
        let d = SamplingParams::default().distribution(&[f32::NAN, 0.0, f32::NEG_INFINITY, 0.0]);
        assert_eq!(probs(&d), vec![0.0, 0.5, 0.0, 0.5]);
    }
}
