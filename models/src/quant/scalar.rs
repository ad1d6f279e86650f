//! The block dot products in portable Rust: the reference the SIMD versions are tested
//! against, and the path on CPUs without AVX2.

use half::f16;

use super::{ActBlock, QK};

/// A row kernel from a dot product: each token on its own.
macro_rules! row_of {
    ($row:ident, $dot:ident) => {
        /// One weight row against each token of the tile.
        pub(crate) fn $row(w: &[u8], xs: &[&[ActBlock]], out: &mut [f32]) {
            for (x, y) in xs.iter().zip(out.iter_mut()) {
                *y = $dot(w, x);
            }
        }
    };
}

row_of!(row_q4_0, dot_q4_0);
row_of!(row_q4_1, dot_q4_1);
row_of!(row_q8_0, dot_q8_0);

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_0 row · activation: Σ d_w · d_x · Σ (q_w − 8) q_x.
pub(crate) fn dot_q4_0(w: &[u8], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for (wb, xb) in w.chunks_exact(2 + QK / 2).zip(x) {
        let qs = &wb[2..];
        let (lo, hi) = xb.q.split_at(QK / 2);
        let mut sum = 0i32;
        for ((&b, &x0), &x1) in qs.iter().zip(lo).zip(hi) {
            sum += (i32::from(b & 0x0f) - 8) * i32::from(x0);
            sum += (i32::from(b >> 4) - 8) * i32::from(x1);
        }
        acc += f16_at(wb, 0) * xb.d * sum as f32;
    }
    acc
}

/// Q4_1 row · activation: Σ d_w · d_x · Σ q_w q_x + m_w · s_x.
pub(crate) fn dot_q4_1(w: &[u8], x: &[ActBlock]) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (wb, xb) in w.chunks_exact(4 + QK / 2).zip(x) {
        let qs = &wb[4..];
        let (lo, hi) = xb.q.split_at(QK / 2);
        let mut sum = 0i32;
        for ((&b, &x0), &x1) in qs.iter().zip(lo).zip(hi) {
            sum += i32::from(b & 0x0f) * i32::from(x0);
            sum += i32::from(b >> 4) * i32::from(x1);
        }
        acc += f16_at(wb, 0) * xb.d * sum as f32;
        mins += f16_at(wb, 2) * xb.s;
    }
    acc + mins
}

/// Q8_0 row · activation: Σ d_w · d_x · Σ q_w q_x.
pub(crate) fn dot_q8_0(w: &[u8], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for (wb, xb) in w.chunks_exact(2 + QK).zip(x) {
        let sum: i32 = wb[2..]
            .iter()
            .zip(&xb.q)
            .map(|(&a, &b)| i32::from(a as i8) * i32::from(b))
            .sum();
        acc += f16_at(wb, 0) * xb.d * sum as f32;
    }
    acc
}
