//! The block dot products with AVX2 (x86-64), after llama.cpp's `ggml_vec_dot_*`:
//! nibbles are spread to bytes, `maddubs` multiplies unsigned by signed bytes into i16
//! pairs (no overflow: |q_w| ≤ 127 and |q_x| ≤ 127), `madd` widens to i32, and each
//! block's sum is scaled into an 8-lane f32 accumulator. The integer sums are exactly
//! the scalar ones ([`super::scalar`]); only the order of the f32 additions differs.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{ActBlock, Kind, QK};

/// The AVX2 dot product for `kind`, if this CPU has AVX2, FMA and F16C.
pub(super) fn dot_fn(kind: Kind) -> Option<super::DotFn> {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    {
        return None;
    }
    Some(match kind {
        Kind::Q4_0 => dot_q4_0,
        Kind::Q4_1 => dot_q4_1,
        Kind::Q8_0 => dot_q8_0,
    })
}

// The safe wrappers below are only handed out by `dot_fn`, after the CPU features were
// detected; the slices' lengths are checked before any pointer is read.

fn dot_q4_0(w: &[u8], x: &[ActBlock]) -> f32 {
    assert!(w.len() >= x.len() * Kind::Q4_0.block_bytes());
    // SAFETY: AVX2/FMA/F16C were detected (see above); `w` holds a block per `x` block.
    unsafe { q4_0(w, x) }
}

fn dot_q4_1(w: &[u8], x: &[ActBlock]) -> f32 {
    assert!(w.len() >= x.len() * Kind::Q4_1.block_bytes());
    // SAFETY: as for `dot_q4_0`.
    unsafe { q4_1(w, x) }
}

fn dot_q8_0(w: &[u8], x: &[ActBlock]) -> f32 {
    assert!(w.len() >= x.len() * Kind::Q8_0.block_bytes());
    // SAFETY: as for `dot_q4_0`.
    unsafe { q8_0(w, x) }
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

/// Σ a·b over 32 signed × signed bytes (|a|, and b with a's sign).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_s8(a: __m256i, b: __m256i) -> __m256 {
    dot_us8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn act(b: &ActBlock) -> __m256i {
    // SAFETY: `q` is 32 bytes, and `ActBlock` is 32-byte aligned with `q` first.
    unsafe { _mm256_load_si256(b.q.as_ptr() as *const __m256i) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0(w: &[u8], x: &[ActBlock]) -> f32 {
    const B: usize = 2 + QK / 2;
    let mut acc = _mm256_setzero_ps();
    for (i, xb) in x.iter().enumerate() {
        // SAFETY: block i lies within `w` (checked by the caller).
        let p = unsafe { w.as_ptr().add(i * B) };
        let d = half_at(p) * xb.d;
        let q = _mm256_sub_epi8(nibbles(unsafe { p.add(2) }), _mm256_set1_epi8(8));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), dot_s8(q, act(xb)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1(w: &[u8], x: &[ActBlock]) -> f32 {
    const B: usize = 4 + QK / 2;
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (i, xb) in x.iter().enumerate() {
        // SAFETY: block i lies within `w` (checked by the caller).
        let p = unsafe { w.as_ptr().add(i * B) };
        let d = half_at(p) * xb.d;
        mins += half_at(unsafe { p.add(2) }) * xb.s;
        let q = nibbles(unsafe { p.add(4) });
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), dot_us8(q, act(xb)), acc);
    }
    hsum(acc) + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(w: &[u8], x: &[ActBlock]) -> f32 {
    const B: usize = 2 + QK;
    let mut acc = _mm256_setzero_ps();
    for (i, xb) in x.iter().enumerate() {
        // SAFETY: block i lies within `w` (checked by the caller).
        let p = unsafe { w.as_ptr().add(i * B) };
        let d = half_at(p) * xb.d;
        let q = unsafe { _mm256_loadu_si256(p.add(2) as *const __m256i) };
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), dot_s8(q, act(xb)), acc);
    }
    hsum(acc)
}
