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

/// Wire form of a draft distribution: dense stays dense, sparse sends its support.
pub fn distribution_to_pb(d: &Distribution) -> pb::DraftDistribution {
    match d {
        Distribution::Dense(p) => pb::DraftDistribution {
            dense: p.clone(),
            ..Default::default()
        },
        Distribution::Sparse { ids, probs, .. } => pb::DraftDistribution {
            dense: vec![],
            ids: ids.clone(),
            probs: probs.clone(),
        },
    }
}

/// Reads a wire draft distribution over a `vocab`-sized vocabulary, checking it.
pub fn distribution_from_pb(
    d: pb::DraftDistribution,
    vocab: usize,
) -> Result<Distribution, DecodingError> {
    let bad = |m: String| Err(DecodingError::InvalidDistribution(m));
    match (d.dense.is_empty(), d.ids.is_empty()) {
        (false, true) => {
            if !d.probs.is_empty() {
                return bad("both dense and probs are set".into());
            }
            if d.dense.len() != vocab {
                return bad(format!(
                    "dense q has {} entries, the vocabulary {vocab}",
                    d.dense.len()
                ));
            }
            Distribution::dense(d.dense)
        }
        (true, false) => {
            if d.ids.len() != d.probs.len() {
                return bad(format!(
                    "sparse q has {} ids but {} probs",
                    d.ids.len(),
                    d.probs.len()
                ));
            }
            Distribution::sparse(d.ids.into_iter().zip(d.probs).collect(), vocab)
        }
        (true, true) => bad("q is empty".into()),
        (false, false) => bad("q sets both dense and ids".into()),
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
}
