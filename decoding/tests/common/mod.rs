//! Statistics shared by the decoding crate's tests: the chi-square test and random
//! distributions.

#![allow(dead_code)]

use tandem_decoding::{Distribution, SessionRng};

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised upper incomplete gamma function Q(a, x) (Numerical Recipes 6.2).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let prefactor = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut ap, mut del, mut sum) = (a, 1.0 / a, 1.0 / a);
        for _ in 0..10_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * prefactor
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        prefactor * h
    }
}

/// P(X ≥ x) for X chi-square distributed with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, x / 2.0)
}

/// Pearson's goodness-of-fit test of `observed` counts against probabilities
/// `expected_p`. Cells with expected count below 5 are pooled into one. Returns the
/// p-value. Panics if a token of probability zero was observed.
pub fn chi2_p_value(observed: &[u64], expected_p: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    let mut stat = 0.0;
    let mut cells = 0;
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (&o, &p) in observed.iter().zip(expected_p) {
        if p == 0.0 {
            assert_eq!(o, 0, "a token of probability 0 was emitted {o} times");
            continue;
        }
        let e = p * n as f64;
        if e < 5.0 {
            pooled_obs += o as f64;
            pooled_exp += e;
        } else {
            stat += (o as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pooled_exp > 0.0 {
        stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp;
        cells += 1;
    }
    assert!(cells >= 2, "too few cells for a chi-square test");
    chi2_sf(stat, cells - 1)
}

/// Random positive weights over `vocab` tokens with `zeros` of them forced to zero
/// (never token 0), as a normalised dense distribution.
pub fn random_dense(rng: &mut SessionRng, vocab: usize, zeros: usize) -> Distribution {
    let mut w: Vec<f32> = (0..vocab)
        .map(|_| (0.05 + rng.uniform()).powi(2) as f32)
        .collect();
    for z in 0..zeros {
        w[vocab - 1 - z] = 0.0;
    }
    Distribution::dense(w).unwrap()
}

/// The probabilities of a distribution as a dense `f64` vector.
pub fn as_vec(d: &Distribution) -> Vec<f64> {
    (0..d.vocab_size() as u32)
        .map(|t| d.prob(t) as f64)
        .collect()
}

#[test]
fn chi2_matches_textbook_quantiles() {
    // Upper-tail critical values from standard chi-square tables.
    for (x, df, alpha) in [
        (3.841, 1, 0.05),
        (18.307, 10, 0.05),
        (37.697, 15, 0.001),
        (6.635, 1, 0.01),
    ] {
        let sf = chi2_sf(x, df);
        assert!(
            (sf - alpha).abs() < alpha * 0.01,
            "sf({x}, {df}) = {sf}, want {alpha}"
        );
    }
}
