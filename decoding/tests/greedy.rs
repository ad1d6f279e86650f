//! Greedy acceptance against a brute-force reference, on random inputs with many ties.

use proptest::prelude::*;
use tandem_decoding::acceptance::FromLogits;
use tandem_decoding::{
    DecodingError, Distribution, LogitRows, SamplingParams, SessionRng, TokenId, verify_greedy,
    verify_stochastic,
};

/// The obvious argmax: first index holding the maximum.
fn reference_argmax(row: &[f32]) -> TokenId {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as TokenId
}

/// A block of `k` drafted tokens with `k + 1` rows of small-integer logits (so ties are
/// common); each drafted token copies the row's argmax when its `follow` flag is set, so
/// long accepted prefixes occur.
fn case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<TokenId>)> {
    (2usize..40, 0usize..9).prop_flat_map(|(vocab, k)| {
        (
            Just(vocab),
            prop::collection::vec(-3i8..4, vocab * (k + 1)),
            prop::collection::vec((any::<bool>(), 0..vocab as TokenId), k),
        )
            .prop_map(move |(vocab, logits, picks)| {
                let logits: Vec<f32> = logits.into_iter().map(f32::from).collect();
                let draft = picks
                    .iter()
                    .enumerate()
                    .map(|(i, &(follow, t))| {
                        if follow {
                            reference_argmax(&logits[i * vocab..(i + 1) * vocab])
                        } else {
                            t
                        }
                    })
                    .collect();
                (vocab, logits, draft)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn greedy_matches_the_reference((vocab, logits, draft) in case()) {
        let rows = LogitRows::new(&logits, vocab).unwrap();
        let v = verify_greedy(&draft, rows).unwrap();
        let row = |i: usize| &logits[i * vocab..(i + 1) * vocab];
        let accepted = draft.iter().enumerate().take_while(|&(i, &t)| t == reference_argmax(row(i))).count();
        prop_assert_eq!(v.accepted, accepted);
        prop_assert_eq!(v.drafted, draft.len());
        prop_assert_eq!(v.next_token, reference_argmax(row(accepted)));
    }

    /// At temperature 0 the draft's q is a point mass on its token, the target's p a point
    /// mass on its argmax, and the stochastic rule must reduce to the greedy one.
    #[test]
    fn stochastic_at_temperature_zero_is_greedy((vocab, logits, draft) in case(), seed in any::<u64>()) {
        let rows = LogitRows::new(&logits, vocab).unwrap();
        let q: Vec<Distribution> = draft.iter().map(|&t| Distribution::point(t, vocab)).collect();
        let mut target = FromLogits::new(rows, SamplingParams::greedy());
        let mut rng = SessionRng::new(seed);
        let stochastic = verify_stochastic(&draft, &q, &mut target, &mut rng).unwrap();
        prop_assert_eq!(stochastic, verify_greedy(&draft, rows).unwrap());
    }

    #[test]
    fn an_out_of_range_token_is_named_wherever_it_is((vocab, logits, mut draft) in case(), at in any::<prop::sample::Index>()) {
        prop_assume!(!draft.is_empty());
        let position = at.index(draft.len());
        draft[position] = vocab as TokenId + 3;
        let err = verify_greedy(&draft, LogitRows::new(&logits, vocab).unwrap()).unwrap_err();
        prop_assert_eq!(err, DecodingError::TokenOutOfRange { position, token: vocab as TokenId + 3, vocab });
    }
}

#[test]
fn empty_block_is_one_plain_decoding_step() {
    let logits = [0.5f32, 2.0, -1.0];
    let rows = LogitRows::new(&logits, 3).unwrap();
    let v = verify_greedy(&[], rows).unwrap();
    assert_eq!(
        (v.accepted, v.next_token, v.tested(), v.committed()),
        (0, 1, 0, 1)
    );
    let mut target = FromLogits::new(rows, SamplingParams::greedy());
    let s = verify_stochastic(&[], &[], &mut target, &mut SessionRng::new(0)).unwrap();
    assert_eq!(s, v);
}

#[test]
fn malformed_blocks_get_precise_errors() {
    let logits = [0.0f32; 8];
    let rows = LogitRows::new(&logits, 4).unwrap();
    // Two rows verify one drafted token, not two.
    assert_eq!(
        verify_greedy(&[1, 2], rows).unwrap_err(),
        DecodingError::TargetRowsMismatch {
            drafted: 2,
            rows: 2
        }
    );
    let mut rng = SessionRng::new(0);
    let mut target = FromLogits::new(rows, SamplingParams::default());
    let q = vec![Distribution::point(1, 4)];
    assert_eq!(
        verify_stochastic(&[1], &[], &mut target, &mut rng).unwrap_err(),
        DecodingError::DraftLengthMismatch {
            tokens: 1,
            dists: 0
        }
    );
    // The draft "sampled" token 2 from a q that gives it no mass.
    assert_eq!(
        verify_stochastic(&[2], &q, &mut target, &mut rng).unwrap_err(),
        DecodingError::ZeroDraftProbability {
            position: 0,
            token: 2
        }
    );
    let wrong_vocab = vec![Distribution::point(1, 5)];
    assert!(matches!(
        verify_stochastic(&[1], &wrong_vocab, &mut target, &mut rng).unwrap_err(),
        DecodingError::InvalidDistribution(msg) if msg.contains("covers 5 tokens, the target 4")
    ));
}
