//! Stochastic acceptance is lossless: what it commits is distributed exactly as the
//! target's distribution, whatever the draft's `q` (dense, sparse, disjoint, equal).
//!
//! The target here is context-independent (position `j` always has distribution `p_j`),
//! so plain target decoding would emit token `j` from `p_j`: the tests compare the
//! emitted tokens with `p_j` by Pearson's chi-square test at significance 1e-3, with
//! fixed seeds so each run is identical. A negative control shows the test has the power
//! to catch the classic bug (resampling from `p` instead of the residual).

mod common;

use common::{as_vec, chi2_p_value, random_dense};
use tandem_decoding::{Distribution, SamplingParams, SessionRng, TokenId, verify_stochastic};

const TRIALS: usize = 100_000;
const SIGNIFICANCE: f64 = 1e-3;
const VOCAB: usize = 8;

/// Draws a block of `q.len()` tokens, each from its own `q`.
fn draft_block(q: &[Distribution], rng: &mut SessionRng) -> Vec<TokenId> {
    q.iter().map(|d| d.sample(rng)).collect()
}

/// Counts of the first emitted token over `TRIALS` single-round trials.
fn first_token_counts(p: &[Distribution], q: &[Distribution], seed: u64) -> Vec<u64> {
    let mut draft_rng = SessionRng::for_stream(seed, 1);
    let mut verify_rng = SessionRng::for_stream(seed, 2);
    let mut counts = vec![0u64; VOCAB];
    let mut rows = p.to_vec();
    for _ in 0..TRIALS {
        let draft = draft_block(q, &mut draft_rng);
        let v = verify_stochastic(&draft, q, rows.as_mut_slice(), &mut verify_rng).unwrap();
        let first = if v.accepted > 0 {
            draft[0]
        } else {
            v.next_token
        };
        counts[first as usize] += 1;
    }
    counts
}

fn assert_matches(counts: &[u64], p: &Distribution, what: &str) {
    let pv = chi2_p_value(counts, &as_vec(p));
    assert!(
        pv > SIGNIFICANCE,
        "{what}: chi-square p-value {pv:.2e}; counts {counts:?}, p {:?}",
        as_vec(p)
    );
}

fn setting(
    seed: u64,
    k: usize,
    make_q: impl Fn(&mut SessionRng) -> Distribution,
) -> (Vec<Distribution>, Vec<Distribution>) {
    let mut rng = SessionRng::new(seed);
    let p = (0..=k).map(|_| random_dense(&mut rng, VOCAB, 1)).collect();
    let q = (0..k).map(|_| make_q(&mut rng)).collect();
    (p, q)
}

#[test]
fn first_token_follows_p_with_dense_q() {
    let (p, q) = setting(1, 3, |rng| random_dense(rng, VOCAB, 0));
    assert_matches(&first_token_counts(&p, &q, 10), &p[0], "dense q");
}

#[test]
fn first_token_follows_p_with_sparse_q() {
    // The draft sampled from a truncated distribution: q's support is 3 of 8 tokens,
    // including one where p is 0.
    let (p, q) = setting(2, 3, |rng| {
        let w = |rng: &mut SessionRng| 0.1 + rng.uniform() as f32;
        Distribution::sparse(vec![(1, w(rng)), (4, w(rng)), (7, w(rng))], VOCAB).unwrap()
    });
    assert_matches(&first_token_counts(&p, &q, 20), &p[0], "sparse q");
}

#[test]
fn first_token_follows_a_truncated_target() {
    // The target itself is truncated (top-k 3 of logits), the draft is dense.
    let mut rng = SessionRng::new(3);
    let params = SamplingParams {
        top_k: 3,
        temperature: 0.8,
        ..Default::default()
    };
    let p: Vec<Distribution> = (0..3)
        .map(|_| {
            let logits: Vec<f32> = (0..VOCAB).map(|_| (rng.uniform() * 4.0) as f32).collect();
            params.distribution(&logits)
        })
        .collect();
    let q: Vec<Distribution> = (0..2).map(|_| random_dense(&mut rng, VOCAB, 0)).collect();
    assert_matches(&first_token_counts(&p, &q, 30), &p[0], "truncated p");
}

#[test]
fn first_token_follows_p_when_q_equals_p_and_when_q_is_far_from_p() {
    let (p, _) = setting(4, 2, |rng| random_dense(rng, VOCAB, 0));
    let same: Vec<Distribution> = p[..2].to_vec();
    assert_matches(&first_token_counts(&p, &same, 40), &p[0], "q = p");
    // Nearly disjoint: q puts almost all mass where p has none (token 7).
    let far: Vec<Distribution> = (0..2)
        .map(|_| Distribution::dense(vec![0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.99]).unwrap())
        .collect();
    assert_matches(&first_token_counts(&p, &far, 41), &p[0], "q far from p");
}

/// Sequence level: generate `LEN` tokens in rounds of `k`, through rejections,
/// corrections and bonus tokens. Every absolute position must follow its own `p_j`; and
/// the bonus token, counted alone, must follow the `p` of its position.
#[test]
fn every_position_of_a_generated_sequence_follows_p_including_bonus_tokens() {
    const LEN: usize = 6;
    const K: usize = 3;
    let mut rng = SessionRng::new(5);
    let p: Vec<Distribution> = (0..LEN + K + 1)
        .map(|_| random_dense(&mut rng, VOCAB, 1))
        .collect();
    let q: Vec<Distribution> = (0..LEN + K)
        .map(|_| random_dense(&mut rng, VOCAB, 0))
        .collect();
    let mut draft_rng = SessionRng::for_stream(50, 1);
    let mut verify_rng = SessionRng::for_stream(50, 2);
    let mut counts = vec![vec![0u64; VOCAB]; LEN];
    let mut bonus_counts = vec![0u64; VOCAB];
    for _ in 0..TRIALS {
        let mut seq: Vec<TokenId> = Vec::with_capacity(LEN + K + 1);
        while seq.len() < LEN {
            let at = seq.len();
            let qs = &q[at..at + K];
            let draft = draft_block(qs, &mut draft_rng);
            let mut rows = p[at..at + K + 1].to_vec();
            let v = verify_stochastic(&draft, qs, rows.as_mut_slice(), &mut verify_rng).unwrap();
            seq.extend_from_slice(&draft[..v.accepted]);
            seq.push(v.next_token);
            if at == 0 && v.fully_accepted() {
                bonus_counts[v.next_token as usize] += 1;
            }
        }
        for (j, &t) in seq[..LEN].iter().enumerate() {
            counts[j][t as usize] += 1;
        }
    }
    // Bonferroni over the positions.
    for (j, c) in counts.iter().enumerate() {
        let pv = chi2_p_value(c, &as_vec(&p[j]));
        assert!(
            pv > SIGNIFICANCE / LEN as f64,
            "position {j}: p-value {pv:.2e}, counts {c:?}"
        );
    }
    assert!(
        bonus_counts.iter().sum::<u64>() > 1000,
        "too few full accepts to test the bonus"
    );
    assert_matches(&bonus_counts, &p[K], "bonus token");
}

/// The same harness applied to a broken rule — on rejection, resample from `p` instead
/// of from `max(0, p − q)` — must fail, so the tests above could fail too.
#[test]
fn negative_control_the_test_catches_resampling_from_p() {
    let (p, q) = setting(1, 1, |rng| random_dense(rng, VOCAB, 0));
    let mut draft_rng = SessionRng::for_stream(10, 1);
    let mut rng = SessionRng::for_stream(10, 2);
    let mut counts = vec![0u64; VOCAB];
    for _ in 0..TRIALS {
        let x = q[0].sample(&mut draft_rng);
        let ratio = p[0].prob(x) as f64 / q[0].prob(x) as f64;
        let t = if rng.uniform() < ratio {
            x
        } else {
            p[0].sample(&mut rng)
        };
        counts[t as usize] += 1;
    }
    let pv = chi2_p_value(&counts, &as_vec(&p[0]));
    assert!(pv < 1e-9, "the broken rule passed with p-value {pv:.2e}");
}

/// `E[N] = (1 − β^(k+1)) / (1 − β)` with `β = Σ min(p, q)` when every position has the
/// same `p` and `q`: the Monte-Carlo mean of committed tokens must agree within four
/// standard errors.
#[test]
fn expected_committed_tokens_match_the_formula() {
    let mut rng = SessionRng::new(6);
    let p = random_dense(&mut rng, VOCAB, 1);
    let q = random_dense(&mut rng, VOCAB, 0);
    let beta: f64 = (0..VOCAB as u32)
        .map(|t| p.prob(t).min(q.prob(t)) as f64)
        .sum();
    for k in [1usize, 2, 4, 8] {
        let qs = vec![q.clone(); k];
        let mut rows = vec![p.clone(); k + 1];
        let mut draft_rng = SessionRng::for_stream(60 + k as u64, 1);
        let mut verify_rng = SessionRng::for_stream(60 + k as u64, 2);
        let n = TRIALS / 2;
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for _ in 0..n {
            let draft = draft_block(&qs, &mut draft_rng);
            let v = verify_stochastic(&draft, &qs, rows.as_mut_slice(), &mut verify_rng).unwrap();
            let c = v.committed() as f64;
            sum += c;
            sum_sq += c * c;
        }
        let mean = sum / n as f64;
        let se = ((sum_sq / n as f64 - mean * mean) / n as f64).sqrt();
        let formula = tandem_decoding::analytic::expected_tokens_per_round(beta, k);
        assert!(
            (mean - formula).abs() < 4.0 * se,
            "k={k}: Monte-Carlo {mean:.4} ± {se:.4}, formula {formula:.4} (β={beta:.3})"
        );
    }
}

/// Same seed, same verdicts; another seed, other verdicts.
#[test]
fn verdicts_are_reproducible_from_the_seed() {
    let (p, q) = setting(7, 4, |rng| random_dense(rng, VOCAB, 0));
    let run = |seed: u64| -> Vec<(usize, TokenId)> {
        let mut draft_rng = SessionRng::for_stream(seed, 1);
        let mut verify_rng = SessionRng::for_stream(seed, 2);
        let mut rows = p.clone();
        (0..200)
            .map(|_| {
                let d = draft_block(&q, &mut draft_rng);
                let v = verify_stochastic(&d, &q, rows.as_mut_slice(), &mut verify_rng).unwrap();
                (v.accepted, v.next_token)
            })
            .collect()
    };
    assert_eq!(run(99), run(99));
    assert_ne!(run(99), run(100));
}
