//! The vectorisable inner loops of sampling: argmax, max, softmax weights.
//!
//! They run over whole vocabularies (32 000 to 152 000 logits) once per verified
//! position, so they are written as branch-free loops over eight independent lanes or
//! plain maps, which the compiler turns into SIMD (checked on x86-64 with SSE2 only).
//! `benches/acceptance.rs` measures them.

const LANES: usize = 8;

/// Index of the largest non-NaN value, lowest index on ties; 0 if none (all NaN).
///
/// Two passes, both vectorisable: the maximum, then the first block of eight that holds
/// it (a block test has no early exit inside it), then the position inside that block.
pub(crate) fn argmax(xs: &[f32]) -> usize {
    let max = max_value(xs);
    if max == f32::NEG_INFINITY {
        // Every value is NaN or −∞: the first non-NaN value, if any, wins.
        return xs.iter().position(|x| !x.is_nan()).unwrap_or(0);
    }
    let block = xs
        .chunks(LANES)
        .position(|c| c.iter().fold(false, |hit, &x| hit | (x == max)))
        .expect("the maximum is in the slice");
    let start = block * LANES;
    start
        + xs[start..]
            .iter()
            .position(|&x| x == max)
            .expect("the block holds the maximum")
}

/// The largest non-NaN value (−∞ if there is none).
pub(crate) fn max_value(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for j in 0..LANES {
            lanes[j] = if chunk[j] > lanes[j] {
                chunk[j]
            } else {
                lanes[j]
            };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    lanes.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

/// `out[i] = exp((logits[i] − max) / temperature)` and their sum. NaN and −∞ logits get
/// exactly 0; the largest weight is exactly 1.
pub(crate) fn softmax_weights(logits: &[f32], temperature: f32, out: &mut Vec<f32>) -> f64 {
    let max = max_value(logits);
    let inv_t = 1.0 / temperature;
    out.clear();
    // Two simple passes vectorise; one fused pass with wide accumulators does not.
    out.extend(logits.iter().map(|&l| exp((l - max) * inv_t)));
    sum(out)
}

/// Sum in eight f32 lanes of at most a few thousand terms each, added up in f64: each
/// lane's rounding error stays near 1e-7 relative for vocabularies up to 10⁶.
pub(crate) fn sum(xs: &[f32]) -> f64 {
    const BLOCK: usize = 4096;
    let mut total = 0.0f64;
    for block in xs.chunks(BLOCK) {
        let mut lanes = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for j in 0..LANES {
                lanes[j] += chunk[j];
            }
        }
        total += lanes.iter().map(|&x| x as f64).sum::<f64>();
        total += chunks.remainder().iter().map(|&x| x as f64).sum::<f64>();
    }
    total
}

/// `eˣ` for single floats, branch-free: Cephes `expf` (range reduction by ln 2, a
/// degree-6 polynomial, scaling by 2ⁿ through the exponent bits). Relative error below
/// 2·10⁻⁷ on [−87, 88]; below −87 (and for NaN) it returns exactly 0, so masked logits
/// get no mass.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let keep = x >= -87.0;
    let xc = if x < 88.0 { x } else { 88.0 };
    let xc = if keep { xc } else { 0.0 };
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    // The low mantissa bits of `shifted` hold n; rebuild 2ⁿ from them with integer ops
    // (a float-to-int cast would saturate and defeat vectorisation).
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_int.wrapping_add(127) << 23);
    if keep { p * scale } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_two_ulp_scale() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NAN), 0.0);
    }

    #[test]
    fn lane_argmax_equals_a_first_maximum_scan() {
        let reference = |xs: &[f32]| {
            let mut best: Option<usize> = None;
            for (i, &x) in xs.iter().enumerate() {
                if !x.is_nan() && best.is_none_or(|b| x > xs[b]) {
                    best = Some(i);
                }
            }
            best.unwrap_or(0)
        };
        let mut rng = crate::SessionRng::new(9);
        for len in 1..70 {
            for _ in 0..50 {
                let xs: Vec<f32> = (0..len)
                    .map(|_| match (rng.uniform() * 10.0) as u32 {
                        0 => f32::NAN,
                        1 => f32::NEG_INFINITY,
                        v => (v % 3) as f32,
                    })
                    .collect();
                assert_eq!(argmax(&xs), reference(&xs), "{xs:?}");
            }
        }
    }
}
