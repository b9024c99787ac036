//! SSE2 versions of the bilinear row kernels (SSE2 is always present on x86_64, so there is
//! no runtime detection). Bilinear resizing is gather-bound: per output sample two source
//! reads at computed offsets. Safe Rust kept a bounds check and a spill per read and left the
//! 16-bit multiplies scalar, 3-5x slower than OpenCV; here the reads are unchecked (indices
//! validated once per image by `Plan`) and the arithmetic is OpenCV's own (`pmaddwd`,
//! `pmulhw`), so results are identical to the scalar versions (tested in `bilinear.rs`).

use crate::image::Sample;
use std::arch::x86_64::*;

/// `out[k] = src[index[k]] * alpha[k][0] + src[index[k] + cn] * alpha[k][1]`.
///
/// Safety: `index[k] + cn < src.len()` for every `k < out.len()`; samples are at most 255.
pub(super) unsafe fn hline_fixed<T: Sample>(
    src: &[T],
    index: &[u32],
    alpha: &[[i16; 2]],
    cn: usize,
    out: &mut [i32],
) {
    let n = out.len().min(index.len()).min(alpha.len());
    // Both samples of a pair in one i32 lane (low, high 16 bits), as `pmaddwd` wants them.
    let pair = |k: usize| -> i32 {
        let j = *index.get_unchecked(k) as usize;
        (src.get_unchecked(j).to_usize() | src.get_unchecked(j + cn).to_usize() << 16) as i32
    };
    let mut k = 0;
    while k + 8 <= n {
        let lo = _mm_set_epi32(pair(k + 3), pair(k + 2), pair(k + 1), pair(k));
        let hi = _mm_set_epi32(pair(k + 7), pair(k + 6), pair(k + 5), pair(k + 4));
        let a = alpha.as_ptr().add(k) as *const __m128i;
        let o = out.as_mut_ptr().add(k) as *mut __m128i;
        _mm_storeu_si128(o, _mm_madd_epi16(lo, _mm_loadu_si128(a)));
        _mm_storeu_si128(o.add(1), _mm_madd_epi16(hi, _mm_loadu_si128(a.add(1))));
        k += 8;
    }
    while k < n {
        let j = *index.get_unchecked(k) as usize;
        let a = alpha.get_unchecked(k);
        *out.get_unchecked_mut(k) = src.get_unchecked(j).to_usize() as i32 * i32::from(a[0])
            + src.get_unchecked(j + cn).to_usize() as i32 * i32::from(a[1]);
        k += 1;
    }
}

/// [`hline_fixed`] for one 8-bit channel, where a pair is two adjacent bytes: one 16-bit
/// read each (OpenCV's `v_lut_pairs`), widened to 16-bit lanes.
///
/// Safety: `index[k] + 1 < src.len()` for every `k < out.len()`.
pub(super) unsafe fn hline_fixed_gray8(
    src: &[u8],
    index: &[u32],
    alpha: &[[i16; 2]],
    out: &mut [i32],
) {
    let n = out.len().min(index.len()).min(alpha.len());
    let pair = |k: usize| -> i16 {
        let j = *index.get_unchecked(k) as usize;
        (src.as_ptr().add(j) as *const i16).read_unaligned()
    };
    let zero = _mm_setzero_si128();
    let mut k = 0;
    while k + 8 <= n {
        let v = _mm_set_epi16(
            pair(k + 7),
            pair(k + 6),
            pair(k + 5),
            pair(k + 4),
            pair(k + 3),
            pair(k + 2),
            pair(k + 1),
            pair(k),
        );
        let a = alpha.as_ptr().add(k) as *const __m128i;
        let o = out.as_mut_ptr().add(k) as *mut __m128i;
        let lo = _mm_unpacklo_epi8(v, zero);
        let hi = _mm_unpackhi_epi8(v, zero);
        _mm_storeu_si128(o, _mm_madd_epi16(lo, _mm_loadu_si128(a)));
        _mm_storeu_si128(o.add(1), _mm_madd_epi16(hi, _mm_loadu_si128(a.add(1))));
        k += 8;
    }
    while k < n {
        let j = *index.get_unchecked(k) as usize;
        let a = alpha.get_unchecked(k);
        *out.get_unchecked_mut(k) = i32::from(*src.get_unchecked(j)) * i32::from(a[0])
            + i32::from(*src.get_unchecked(j + 1)) * i32::from(a[1]);
        k += 1;
    }
}

/// [`hline_fixed`] for 3- or 4-channel 8-bit pixels: one 32-bit read per source pixel
/// brings all its channels (OpenCV's `v_load_expand_q`), so each output pixel is one
/// `pmaddwd`. With 3 channels the read and the write each cover one sample of the next
/// pixel; the write is overwritten by that pixel, and the last pixels go the scalar way.
/// Equal to the scalar kernel for plans built by `linear_fixed`, where the channels of a
/// pixel share one weight pair and have consecutive indices.
///
/// Safety: `index[k] + cn < src.len()` for every `k < out.len()` (the 32-bit reads are
/// checked against the row end).
pub(super) unsafe fn hline_fixed_color8(
    src: &[u8],
    index: &[u32],
    alpha: &[[i16; 2]],
    cn: usize,
    out: &mut [i32],
) {
    let n = out.len().min(index.len()).min(alpha.len());
    let zero = _mm_setzero_si128();
    let read = |j: usize| _mm_cvtsi32_si128((src.as_ptr().add(j) as *const i32).read_unaligned());
    let weights = |k: usize| _mm_set1_epi32((alpha.as_ptr().add(k) as *const i32).read_unaligned());
    let mut k = 0;
    // Two pixels per step: their byte pairs fill one register.
    while k + cn + 4 <= n {
        let (j0, j1) = (
            *index.get_unchecked(k) as usize,
            *index.get_unchecked(k + cn) as usize,
        );
        if j0.max(j1) + cn + 4 > src.len() {
            break;
        }
        let p0 = _mm_unpacklo_epi8(read(j0), read(j0 + cn));
        let p1 = _mm_unpacklo_epi8(read(j1), read(j1 + cn));
        let both = _mm_unpacklo_epi64(p0, p1);
        let r0 = _mm_madd_epi16(_mm_unpacklo_epi8(both, zero), weights(k));
        let r1 = _mm_madd_epi16(_mm_unpackhi_epi8(both, zero), weights(k + cn));
        _mm_storeu_si128(out.as_mut_ptr().add(k) as *mut __m128i, r0);
        _mm_storeu_si128(out.as_mut_ptr().add(k + cn) as *mut __m128i, r1);
        k += 2 * cn;
    }
    while k < n {
        let j = *index.get_unchecked(k) as usize;
        let a = alpha.get_unchecked(k);
        *out.get_unchecked_mut(k) = i32::from(*src.get_unchecked(j)) * i32::from(a[0])
            + i32::from(*src.get_unchecked(j + cn)) * i32::from(a[1]);
        k += 1;
    }
}

/// OpenCV's `VResizeLinearVec_32s8u`; returns how many leading samples it wrote (a multiple
/// of 8), the caller finishes the rest.
///
/// Safety: none beyond SSE2 (all accesses are below the three slices' common length).
pub(super) unsafe fn vline_fixed<T: Sample>(
    r0: &[i32],
    r1: &[i32],
    beta: [i16; 2],
    dst: &mut [T],
) -> usize {
    let n = dst.len().min(r0.len()).min(r1.len());
    let (b0, b1) = (_mm_set1_epi16(beta[0]), _mm_set1_epi16(beta[1]));
    let two = _mm_set1_epi16(2);
    let mut x = 0;
    while x + 8 <= n {
        let p0 = r0.as_ptr().add(x) as *const __m128i;
        let p1 = r1.as_ptr().add(x) as *const __m128i;
        let s0 = _mm_packs_epi32(
            _mm_srai_epi32(_mm_loadu_si128(p0), 4),
            _mm_srai_epi32(_mm_loadu_si128(p0.add(1)), 4),
        );
        let s1 = _mm_packs_epi32(
            _mm_srai_epi32(_mm_loadu_si128(p1), 4),
            _mm_srai_epi32(_mm_loadu_si128(p1.add(1)), 4),
        );
        let t = _mm_adds_epi16(_mm_mulhi_epi16(s0, b0), _mm_mulhi_epi16(s1, b1));
        let t = _mm_srai_epi16(_mm_adds_epi16(t, two), 2);
        let mut bytes = [0u8; 16];
        _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, _mm_packus_epi16(t, t));
        for (d, &b) in dst.get_unchecked_mut(x..x + 8).iter_mut().zip(&bytes) {
            *d = T::from_usize_sat(usize::from(b));
        }
        x += 8;
    }
    x
}

/// OpenCV's `VResizeLinearVec_32f16u`: `saturate(round(r0 * b0 + r1 * b1))` (ties to even,
/// the default MXCSR mode); returns how many leading samples it wrote (a multiple of 8).
///
/// Safety: none beyond SSE2 (all accesses are below the three slices' common length).
pub(super) unsafe fn vline_float<T: Sample>(
    r0: &[f32],
    r1: &[f32],
    beta: [f32; 2],
    dst: &mut [T],
) -> usize {
    let n = dst.len().min(r0.len()).min(r1.len());
    let (b0, b1) = (_mm_set1_ps(beta[0]), _mm_set1_ps(beta[1]));
    // SSE2 has no unsigned 32->16 pack: shift into the signed range, pack with signed
    // saturation, shift back.
    let bias32 = _mm_set1_epi32(32768);
    let bias16 = _mm_set1_epi16(-32768);
    let round = |p0: *const f32, p1: *const f32| {
        let r = _mm_add_ps(
            _mm_mul_ps(_mm_loadu_ps(p0), b0),
            _mm_mul_ps(_mm_loadu_ps(p1), b1),
        );
        _mm_sub_epi32(_mm_cvtps_epi32(r), bias32)
    };
    let mut x = 0;
    while x + 8 <= n {
        let (p0, p1) = (r0.as_ptr().add(x), r1.as_ptr().add(x));
        let lo = round(p0, p1);
        let hi = round(p0.add(4), p1.add(4));
        let words = _mm_xor_si128(_mm_packs_epi32(lo, hi), bias16);
        let mut out = [0u16; 8];
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, words);
        for (d, &w) in dst.get_unchecked_mut(x..x + 8).iter_mut().zip(&out) {
            *d = T::from_usize_sat(usize::from(w));
        }
        x += 8;
    }
    x
}

/// `out[k] = src[index[k]] * alpha[0][k] + src[index[k] + cn] * alpha[1][k]` in f32.
///
/// Safety: `index[k] + cn < src.len()` for every `k < out.len()`.
pub(super) unsafe fn hline_float<T: Sample>(
    src: &[T],
    index: &[u32],
    alpha: [&[f32]; 2],
    cn: usize,
    out: &mut [f32],
) {
    let n = out
        .len()
        .min(index.len())
        .min(alpha[0].len())
        .min(alpha[1].len());
    let at = |k: usize, off: usize| -> i32 {
        let j = *index.get_unchecked(k) as usize;
        src.get_unchecked(j + off).to_usize() as i32
    };
    let mut k = 0;
    while k + 4 <= n {
        let v0 = _mm_cvtepi32_ps(_mm_set_epi32(
            at(k + 3, 0),
            at(k + 2, 0),
            at(k + 1, 0),
            at(k, 0),
        ));
        let v1 = _mm_cvtepi32_ps(_mm_set_epi32(
            at(k + 3, cn),
            at(k + 2, cn),
            at(k + 1, cn),
            at(k, cn),
        ));
        let a0 = _mm_loadu_ps(alpha[0].as_ptr().add(k));
        let a1 = _mm_loadu_ps(alpha[1].as_ptr().add(k));
        let r = _mm_add_ps(_mm_mul_ps(v0, a0), _mm_mul_ps(v1, a1));
        _mm_storeu_ps(out.as_mut_ptr().add(k), r);
        k += 4;
    }
    while k < n {
        *out.get_unchecked_mut(k) = at(k, 0) as f32 * *alpha[0].get_unchecked(k)
            + at(k, cn) as f32 * *alpha[1].get_unchecked(k);
        k += 1;
    }
}
