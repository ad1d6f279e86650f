//! The block dot products with AVX2 (x86-64), after llama.cpp's `ggml_vec_dot_*`:
//! nibbles are spread to bytes, `maddubs` multiplies unsigned by signed bytes into i16
//! pairs (no overflow: |q_w| ≤ 127 and |q_x| ≤ 127), `madd` widens to i32, and each
//! block's sum is scaled into an 8-lane f32 accumulator per token.
//!
//! A weight row meets up to [`TILE`] tokens at once: each block is unpacked once and
//! multiplied with every token's activation block. Each token's accumulator sees the
//! same operations in the same order whatever the tile holds, so a token's result does
//! not depend on its neighbours. The integer sums are exactly the scalar ones
//! ([`super::scalar`]); only the order of the f32 additions differs.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{ActBlock, Kind, TILE};

/// The AVX2 kernel for `kind`, if this CPU has AVX2, FMA and F16C.
pub(super) fn row_fn(kind: Kind) -> Option<super::RowFn> {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    {
        return None;
    }
    Some(match kind {
        Kind::Q4_0 => q4_0,
        Kind::Q4_1 => q4_1,
        Kind::Q8_0 => q8_0,
    })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn half_at(p: *const u8) -> f32 {
    // SAFETY: callers pass a pointer to two readable bytes.
    let bits = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 16 bytes of nibbles → 32 bytes: values 0–15 from the low nibbles, 16–31 from the high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: callers pass a pointer to 16 readable bytes.
    let lo = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let hi = _mm_srli_epi16(lo, 4);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0f))
}

/// Σ a·b over 32 unsigned × signed bytes, as 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_us8(a: __m256i, b: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(a, b);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn act(b: &ActBlock) -> __m256i {
    // SAFETY: `q` is 32 bytes, and `ActBlock` is 32-byte aligned with `q` first.
    unsafe { _mm256_load_si256(b.q.as_ptr() as *const __m256i) }
}

/// One weight block, unpacked for `maddubs`: the unsigned operand, the sign to move onto
/// the activation (signed weights), the scale and the minimum (Q4_1).
struct Unpacked {
    q: __m256i,
    sign: Option<__m256i>,
    d: f32,
    m: f32,
}

/// The kernel body shared by the three types: for every block, unpack the weight once,
/// then scale each token's integer dot product into its accumulator.
macro_rules! row_kernel {
    ($name:ident, $inner:ident, $kind:expr, $unpack:expr) => {
        fn $name(w: &[u8], xs: &[&[ActBlock]], out: &mut [f32]) {
            assert!(xs.len() <= TILE && out.len() >= xs.len());
            for x in xs {
                assert!(w.len() >= x.len() * $kind.block_bytes());
            }
            // SAFETY: AVX2/FMA/F16C were detected (`row_fn` hands these out only then);
            // `w` holds a block for every block of every `xs[t]` (checked above).
            unsafe { $inner(w, xs, out) }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $inner(w: &[u8], xs: &[&[ActBlock]], out: &mut [f32]) {
            const B: usize = $kind.block_bytes();
            let n = xs.len();
            let mut acc = [_mm256_setzero_ps(); TILE];
            let mut mins = [0f32; TILE];
            for b in 0..xs.first().map_or(0, |x| x.len()) {
                // SAFETY: block b lies within `w` (checked by the caller).
                let u = unsafe { $unpack(w.as_ptr().add(b * B)) };
                for t in 0..n {
                    let xb = &xs[t][b];
                    let y = match u.sign {
                        Some(s) => _mm256_sign_epi8(act(xb), s),
                        None => act(xb),
                    };
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(u.d * xb.d), dot_us8(u.q, y), acc[t]);
                    mins[t] += u.m * xb.s;
                }
            }
            for t in 0..n {
                out[t] = hsum(acc[t]) + mins[t];
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_q4_0(p: *const u8) -> Unpacked {
    // SAFETY: `p` points at a whole Q4_0 block (2 + 16 bytes).
    let q = _mm256_sub_epi8(nibbles(unsafe { p.add(2) }), _mm256_set1_epi8(8));
    Unpacked {
        q: _mm256_sign_epi8(q, q),
        sign: Some(q),
        d: half_at(p),
        m: 0.0,
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_q4_1(p: *const u8) -> Unpacked {
    // SAFETY: `p` points at a whole Q4_1 block (2 + 2 + 16 bytes).
    Unpacked {
        q: nibbles(unsafe { p.add(4) }),
        sign: None,
        d: half_at(p),
        m: half_at(unsafe { p.add(2) }),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_q8_0(p: *const u8) -> Unpacked {
    // SAFETY: `p` points at a whole Q8_0 block (2 + 32 bytes).
    let q = unsafe { _mm256_loadu_si256(p.add(2) as *const __m256i) };
    Unpacked {
        q: _mm256_sign_epi8(q, q),
        sign: Some(q),
        d: half_at(p),
        m: 0.0,
    }
}

row_kernel!(q4_0, q4_0_avx2, Kind::Q4_0, unpack_q4_0);
row_kernel!(q4_1, q4_1_avx2, Kind::Q4_1, unpack_q4_1);
row_kernel!(q8_0, q8_0_avx2, Kind::Q8_0, unpack_q8_0);
