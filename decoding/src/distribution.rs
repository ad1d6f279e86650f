//! Probability vectors over a vocabulary, and rows of logits.

use crate::{DecodingError, SessionRng, TokenId};

/// A normalised probability distribution over a vocabulary.
///
/// `Dense` holds one probability per token. `Sparse` holds only the support, sorted by
/// token id: it is what a top-k/top-p/min-p-truncated sampler produces, and because the
/// sampler drew from exactly those entries, sending them over the wire is exact.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// One probability per token id.
    Dense(Vec<f32>),
    /// The support only: `ids` strictly increasing, `probs[i]` the probability of `ids[i]`.
    Sparse {
        /// Token ids of the support, strictly increasing.
        ids: Vec<TokenId>,
        /// Their probabilities.
        probs: Vec<f32>,
        /// Size of the vocabulary the ids index into.
        vocab: usize,
    },
}

impl Distribution {
    /// A dense distribution from non-negative weights, normalised here.
    pub fn dense(weights: Vec<f32>) -> Result<Self, DecodingError> {
        let mut w = weights;
        normalise(&mut w)?;
        Ok(Self::Dense(w))
    }

    /// A dense distribution from probabilities that must sum to 1 within `tolerance`
    /// (what a client sends), renormalised exactly here.
    pub fn dense_probabilities(p: Vec<f32>, tolerance: f64) -> Result<Self, DecodingError> {
        let mut p = p;
        normalise_expecting(&mut p, Some(tolerance))?;
        Ok(Self::Dense(p))
    }

    /// A sparse distribution from `(id, probability)` pairs whose probabilities must
    /// sum to 1 within `tolerance`; otherwise as [`Self::sparse`].
    pub fn sparse_probabilities(
        entries: Vec<(TokenId, f32)>,
        vocab: usize,
        tolerance: f64,
    ) -> Result<Self, DecodingError> {
        Self::sparse_with(entries, vocab, Some(tolerance))
    }

    /// A sparse distribution over `vocab` tokens from `(id, weight)` pairs in any order,
    /// normalised here. Duplicate ids, ids out of range and bad weights are errors.
    pub fn sparse(entries: Vec<(TokenId, f32)>, vocab: usize) -> Result<Self, DecodingError> {
        Self::sparse_with(entries, vocab, None)
    }

    fn sparse_with(
        mut entries: Vec<(TokenId, f32)>,
        vocab: usize,
        tolerance: Option<f64>,
    ) -> Result<Self, DecodingError> {
        entries.sort_unstable_by_key(|&(id, _)| id);
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(DecodingError::InvalidDistribution(format!(
                "token {} listed twice",
                w[0].0
            )));
        }
        if let Some(&(id, _)) = entries.iter().find(|&&(id, _)| id as usize >= vocab) {
            return Err(DecodingError::InvalidDistribution(format!(
                "token {id} out of range for vocabulary size {vocab}"
            )));
        }
        let (ids, mut probs): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        normalise_expecting(&mut probs, tolerance)?;
        Ok(Self::Sparse { ids, probs, vocab })
    }

    /// All mass on one token.
    pub fn point(token: TokenId, vocab: usize) -> Self {
        Self::Sparse {
            ids: vec![token],
            probs: vec![1.0],
            vocab,
        }
    }

    /// Size of the vocabulary.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Dense(p) => p.len(),
            Self::Sparse { vocab, .. } => *vocab,
        }
    }

    /// Probability of `token` (0 outside the support or the vocabulary).
    pub fn prob(&self, token: TokenId) -> f32 {
        match self {
            Self::Dense(p) => p.get(token as usize).copied().unwrap_or(0.0),
            Self::Sparse { ids, probs, .. } => {
                ids.binary_search(&token).map(|i| probs[i]).unwrap_or(0.0)
            }
        }
    }

    /// Visits `(token, probability)` for every token of a dense vector, or for the support
    /// of a sparse one.
    pub fn for_each(&self, mut f: impl FnMut(TokenId, f32)) {
        match self {
            Self::Dense(p) => p.iter().enumerate().for_each(|(i, &w)| f(i as TokenId, w)),
            Self::Sparse { ids, probs, .. } => {
                ids.iter().zip(probs).for_each(|(&i, &w)| f(i, w));
            }
        }
    }

    /// Draws one token with one uniform number from `rng`.
    pub fn sample(&self, rng: &mut SessionRng) -> TokenId {
        match self {
            Self::Dense(p) => sample_weighted(
                p.iter().enumerate().map(|(i, &w)| (i as TokenId, w)),
                1.0,
                rng,
            ),
            Self::Sparse { ids, probs, .. } => {
                sample_weighted(ids.iter().copied().zip(probs.iter().copied()), 1.0, rng)
            }
        }
    }

    /// The token of highest probability; ties go to the lowest id.
    pub fn argmax(&self) -> TokenId {
        match self {
            Self::Dense(p) => crate::sampling::argmax(p),
            Self::Sparse { ids, probs, .. } => ids[crate::sampling::argmax(probs) as usize],
        }
    }
}

/// Scales non-negative finite weights to sum to one.
fn normalise(w: &mut [f32]) -> Result<(), DecodingError> {
    normalise_expecting(w, None)
}

/// Scales non-negative finite weights to sum to one; with `tolerance`, the weights must
/// already be probabilities (their sum within `tolerance` of 1, checked first). One
/// pass checks and sums, a second scales.
fn normalise_expecting(w: &mut [f32], tolerance: Option<f64>) -> Result<(), DecodingError> {
    if w.is_empty() {
        return Err(DecodingError::InvalidDistribution("empty".into()));
    }
    let mut bad = None;
    let mut total = 0.0f64;
    for &x in w.iter() {
        if bad.is_none() && (!x.is_finite() || x < 0.0) {
            bad = Some(x);
        }
        total += x as f64;
    }
    if let Some(tol) = tolerance
        && ((total - 1.0).abs() > tol || !total.is_finite())
    {
        return Err(DecodingError::InvalidDistribution(format!(
            "q sums to {total}, not 1 (tolerance {tol})"
        )));
    }
    if let Some(x) = bad {
        return Err(DecodingError::InvalidDistribution(format!(
            "weight {x} is negative or not finite"
        )));
    }
    if total <= 0.0 {
        return Err(DecodingError::InvalidDistribution(
            "all weights are zero".into(),
        ));
    }
    let inv = (1.0 / total) as f32;
    w.iter_mut().for_each(|x| *x *= inv);
    Ok(())
}

/// Inverse-CDF sampling from `(token, weight)` pairs whose weights sum to `total`.
///
/// Draws exactly one uniform. If rounding leaves the running sum short of the target, the
/// last token of positive weight is returned, so the result always has positive weight.
pub(crate) fn sample_weighted(
    items: impl Iterator<Item = (TokenId, f32)>,
    total: f64,
    rng: &mut SessionRng,
) -> TokenId {
    let target = rng.uniform() * total;
    let mut acc = 0.0f64;
    let mut last_positive = None;
    for (token, w) in items {
        if w > 0.0 {
            acc += w as f64;
            last_positive = Some(token);
            if target < acc {
                return token;
            }
        }
    }
    // Unreachable for a valid distribution except through rounding.
    last_positive.unwrap_or(0)
}

/// Logits for consecutive positions, `rows × vocab` values in row-major order, as a
/// model returns them for a verified block (one row per drafted token plus one).
#[derive(Debug, Clone, Copy)]
pub struct LogitRows<'a> {
    data: &'a [f32],
    vocab: usize,
}

impl<'a> LogitRows<'a> {
    /// Wraps `data`, which must hold a whole, non-zero number of rows of length `vocab`.
    pub fn new(data: &'a [f32], vocab: usize) -> Result<Self, DecodingError> {
        if vocab == 0 || data.is_empty() || !data.len().is_multiple_of(vocab) {
            return Err(DecodingError::BadLogitShape {
                len: data.len(),
                vocab,
            });
        }
        Ok(Self { data, vocab })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.vocab
    }

    /// Vocabulary size (row length).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Row `i`. Panics if `i >= rows()`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_is_sorted_normalised_and_validated() {
        let d = Distribution::sparse(vec![(5, 1.0), (2, 3.0)], 10).unwrap();
        assert_eq!(
            d,
            Distribution::Sparse {
                ids: vec![2, 5],
                probs: vec![0.75, 0.25],
                vocab: 10
            }
        );
        assert_eq!(d.prob(5), 0.25);
        assert_eq!(d.prob(3), 0.0);
        assert!(Distribution::sparse(vec![(1, 1.0), (1, 2.0)], 10).is_err());
        assert!(Distribution::sparse(vec![(10, 1.0)], 10).is_err());
        assert!(Distribution::sparse(vec![(1, f32::NAN)], 10).is_err());
        assert!(Distribution::sparse(vec![(1, 0.0)], 10).is_err());
        assert!(Distribution::dense(vec![]).is_err());
        assert!(Distribution::dense(vec![1.0, -0.5]).is_err());
    }

    #[test]
    fn sampling_never_returns_zero_weight_tokens() {
        let d = Distribution::dense(vec![0.0, 0.5, 0.0, 0.5, 0.0]).unwrap();
        let mut rng = SessionRng::new(3);
        for _ in 0..10_000 {
            let t = d.sample(&mut rng);
            assert!(t == 1 || t == 3, "sampled {t}");
        }
    }

    #[test]
    fn logit_rows_reject_ragged_buffers() {
        assert!(LogitRows::new(&[0.0; 6], 3).is_ok());
        assert!(LogitRows::new(&[0.0; 7], 3).is_err());
        assert!(LogitRows::new(&[0.0; 6], 0).is_err());
        assert!(LogitRows::new(&[], 3).is_err());
        let rows = LogitRows::new(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3).unwrap();
        assert_eq!(rows.rows(), 2);
        assert_eq!(rows.row(1), &[4.0, 5.0, 6.0]);
    }
}
