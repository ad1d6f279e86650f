//! Sampling parameters and draft distributions to and from their wire form.

use tandem_decoding::{DecodingError, Distribution, SamplingParams};

use crate::pb;

/// Wire form of sampling parameters (`top_p` 0 is sent as 1: the proto3 default).
pub fn sampling_to_pb(s: &SamplingParams) -> pb::Sampling {
    pb::Sampling {
        temperature: s.temperature,
        top_k: s.top_k as u32,
        top_p: s.top_p,
        min_p: s.min_p,
    }
}

/// Reads wire sampling parameters; an unset (0) `top_p` means 1 (disabled).
pub fn sampling_from_pb(s: pb::Sampling) -> SamplingParams {
    SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k as usize,
        top_p: if s.top_p == 0.0 { 1.0 } else { s.top_p },
        min_p: s.min_p,
    }
}

/// Wire form of a draft distribution: dense as `dense_f32le`, sparse as its support.
pub fn distribution_to_pb(d: &Distribution) -> pb::DraftDistribution {
    match d {
        Distribution::Dense(p) => pb::DraftDistribution {
            dense_f32le: p.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        },
        Distribution::Sparse { ids, probs, .. } => pb::DraftDistribution {
            ids: ids.clone(),
            probs: probs.clone(),
            ..Default::default()
        },
    }
}

/// Reads `dense_f32le` bytes as probabilities.
fn f32le(bytes: &[u8]) -> Result<Vec<f32>, DecodingError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(DecodingError::InvalidDistribution(format!(
            "dense_f32le has {} bytes, not a whole number of 4-byte floats",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// How far the probabilities of a wire `q` may sum from 1 (rounding of a float32
/// softmax over a large vocabulary stays orders of magnitude inside it).
pub const Q_SUM_TOLERANCE: f64 = 1e-3;

/// Reads a wire draft distribution over a `vocab`-sized vocabulary, checking it: the
/// right length, no negative or non-finite entry, a sum of 1 within
/// [`Q_SUM_TOLERANCE`].
pub fn distribution_from_pb(
    d: pb::DraftDistribution,
    vocab: usize,
) -> Result<Distribution, DecodingError> {
    let bad = |m: String| Err(DecodingError::InvalidDistribution(m));
    let forms = [
        !d.dense.is_empty(),
        !d.dense_f32le.is_empty(),
        !d.ids.is_empty() || !d.probs.is_empty(),
    ];
    match forms {
        [true, false, false] | [false, true, false] => {
            let dense = if forms[0] {
                d.dense
            } else {
                f32le(&d.dense_f32le)?
            };
            if dense.len() != vocab {
                return bad(format!(
                    "dense q has {} entries, the vocabulary {vocab}",
                    dense.len()
                ));
            }
            Distribution::dense_probabilities(dense, Q_SUM_TOLERANCE)
        }
        [false, false, true] => {
            if d.ids.len() != d.probs.len() {
                return bad(format!(
                    "sparse q has {} ids but {} probs",
                    d.ids.len(),
                    d.probs.len()
                ));
            }
            Distribution::sparse_probabilities(
                d.ids.into_iter().zip(d.probs).collect(),
                vocab,
                Q_SUM_TOLERANCE,
            )
        }
        [false, false, false] => bad("q is empty".into()),
        _ => bad("q sets more than one of dense, dense_f32le and ids/probs".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_round_trip_exactly() {
        let dense = Distribution::dense(vec![0.25, 0.5, 0.25]).unwrap();
        let sparse = Distribution::sparse(vec![(7, 0.75), (2, 0.25)], 10).unwrap();
        for (d, vocab) in [(dense, 3), (sparse, 10)] {
            let back = distribution_from_pb(distribution_to_pb(&d), vocab).unwrap();
            assert_eq!(back, d);
        }
    }

    #[test]
    fn both_dense_forms_read_the_same() {
        let p = vec![0.125, 0.375, 0.5];
        let plain = pb::DraftDistribution {
            dense: p.clone(),
            ..Default::default()
        };
        let packed = distribution_to_pb(&Distribution::Dense(p));
        assert!(packed.dense.is_empty() && packed.dense_f32le.len() == 12);
        assert_eq!(
            distribution_from_pb(plain, 3).unwrap(),
            distribution_from_pb(packed, 3).unwrap()
        );
        let ragged = pb::DraftDistribution {
            dense_f32le: vec![0; 7],
            ..Default::default()
        };
        assert!(distribution_from_pb(ragged, 3).is_err());
    }

    #[test]
    fn malformed_q_is_refused() {
        let e = distribution_from_pb(
            pb::DraftDistribution {
                dense: vec![1.0, 0.0],
                ..Default::default()
            },
            3,
        )
        .unwrap_err();
        assert!(e.to_string().contains("2 entries"), "{e}");
        assert!(distribution_from_pb(pb::DraftDistribution::default(), 3).is_err());
    }

    #[test]
    fn q_must_sum_to_one() {
        let dense = |dense: Vec<f32>| pb::DraftDistribution {
            dense,
            ..Default::default()
        };
        let sparse = |ids: Vec<u32>, probs: Vec<f32>| pb::DraftDistribution {
            ids,
            probs,
            ..Default::default()
        };
        // 711 entries of 1 (the probe's q), and a half-mass sparse q: refused.
        for (q, vocab) in [
            (dense(vec![1.0; 711]), 711),
            (sparse(vec![3, 5], vec![0.25, 0.25]), 10),
            (dense(vec![0.5, 0.5, 0.002]), 3),
            // What the fuzzer fed the decoder: NaNs sum to NaN, which is not 1.
            (dense(vec![2.8e-29, f32::NAN, f32::NAN, 6.4e19]), 4),
        ] {
            let e = distribution_from_pb(q, vocab).unwrap_err();
            assert!(e.to_string().contains("sums to"), "{e}");
        }
        // Float rounding well inside the tolerance: accepted.
        let third = 1.0f32 / 3.0;
        assert!(distribution_from_pb(dense(vec![third; 3]), 3).is_ok());
        let eps = (Q_SUM_TOLERANCE / 2.0) as f32;
        assert!(distribution_from_pb(sparse(vec![1, 2], vec![0.5, 0.5 + eps]), 4).is_ok());
    }
}
