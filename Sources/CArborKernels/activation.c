// Element-wise activations of the feed-forward block.
//
// SiLU's exp is a vector polynomial, the formulation llama.cpp's CPU backend uses on AVX-512
// (Arm's optimized-routines expf: n = round(x·log2 e), a two-part ln 2 reduction, a degree-5
// minimax polynomial, then an exact j·2^n; max error about 1.5 ulp). So Arbor's gate values track
// the reference engine's on this machine rather than libm's, and cost a few cycles each instead of
// a libm call.
//
// Batch invariance: a value depends only on its own element. Tails shorter than a vector go
// through the same vector code on a padded copy, so no element ever takes a different path
// because of where a batch (or a thread's share of it) happens to end.
#include "quants.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>

/// e^x on 16 lanes. |n| > 192 (x beyond about ±133) gives +inf or 0 directly; NaN stays NaN.
ARBOR_INLINE __m512 exp16(__m512 x) {
    const __m512 shift = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift);  // x·log2 e, rounded
    const __m512 n = _mm512_sub_ps(z, shift);
    // b = x - n·ln 2, with ln 2 in two parts so the product is (almost) exact.
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 hi = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                                      _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f)));
    const __m512 j = _mm512_fmadd_ps(hi, u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __m512 r = _mm512_scalef_ps(j, n);
    const __mmask16 far = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    if (!far) return r;
    const __m512 limit = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                              _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(far, r, limit);
}

/// silu(g)·u = g / (1 + e^-g) · u on 16 lanes.
ARBOR_INLINE __m512 swiglu16(__m512 g, __m512 u) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void arbor_swiglu_f32(float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(gate + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 r = swiglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i));
        _mm512_mask_storeu_ps(gate + i, m, r);
    }
}

#else

void arbor_swiglu_f32(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

#endif
