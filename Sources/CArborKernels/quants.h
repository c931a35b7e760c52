// Private to CArborKernels: ggml's block layouts and the scalar helpers shared by the kernels.
//
// Every struct below is byte-for-byte ggml's (ggml-common.h); the static asserts pin the sizes
// a GGUF file relies on. Weight rows in a GGUF mapping start at multiples of the block size, which
// is always even, so the 2-byte alignment of these structs holds; SIMD code uses unaligned loads.
#pragma once

#include <stdint.h>
#include <string.h>
#include <math.h>
#include "arbor_kernels.h"

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define QK 32     // elements per block of the 32-element formats
#define QK_K 256  // elements per super-block of the K formats

typedef struct { uint16_t d; uint8_t qs[QK / 2]; } blk_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } blk_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } blk_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; } blk_q5_1;
typedef struct { uint16_t d; int8_t qs[QK]; } blk_q8_0;
/// `s` = d × Σqs (the unrounded d), kept so a dot with an offset format (Q4_1, Q5_1) costs one multiply.
typedef struct { uint16_t d, s; int8_t qs[QK]; } blk_q8_1;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } blk_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } blk_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } blk_q6_K;
/// Activation format of the K dots: f32 scale, and the sums of each 16 quants (for the mins and offsets).
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } blk_q8_K;

_Static_assert(sizeof(blk_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(blk_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(blk_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(blk_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(blk_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(blk_q8_1) == 36, "Q8_1 block");
_Static_assert(sizeof(blk_q4_K) == 144, "Q4_K block");
_Static_assert(sizeof(blk_q5_K) == 176, "Q5_K block");
_Static_assert(sizeof(blk_q6_K) == 210, "Q6_K block");
_Static_assert(sizeof(blk_q8_K) == 292, "Q8_K block");

#define ARBOR_INLINE static inline __attribute__((always_inline))

// MARK: half precision (IEEE binary16 and bfloat16)

ARBOR_INLINE float fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    // Exact software conversion (same results as F16C: every half is a float).
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000 | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

/// Round to nearest, ties to even (what ggml's GGML_FP32_TO_FP16 does on every platform).
ARBOR_INLINE uint16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t ax = x & 0x7FFFFFFF;
    if (ax > 0x7F800000) return (uint16_t)(sign | 0x7E00);         // NaN
    if (ax >= 0x477FF000) return (uint16_t)(sign | 0x7C00);        // rounds to infinity
    if (ax < 0x38800000) {                                          // subnormal half or zero
        float a;
        memcpy(&a, &ax, 4);
        // Adding 0.5 (2^-1) aligns the half's subnormal ulp (2^-24) to the float's ulp: the FPU rounds.
        const float r = a + 0.5f;
        uint32_t rb;
        memcpy(&rb, &r, 4);
        return (uint16_t)(sign | (rb - 0x3F000000));
    }
    const uint32_t odd = (ax >> 13) & 1;
    return (uint16_t)(sign | ((ax + 0xC8000FFF + odd) >> 13));
#endif
}

ARBOR_INLINE float bf16_to_fp32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/// ggml_compute_fp32_to_bf16: NaNs are quieted, everything else rounds to nearest even.
ARBOR_INLINE uint16_t fp32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7FFF + ((u >> 16) & 1))) >> 16);
}

// MARK: K-format scales

/// The 8 six-bit scales and 8 six-bit mins of a Q4_K / Q5_K super-block, packed in 12 bytes:
///   bytes 0-3:  sc[0..3] (low 6 bits), top 2 bits = high bits of sc[4..7]
///   bytes 4-7:  mn[0..3] (low 6 bits), top 2 bits = high bits of mn[4..7]
///   bytes 8-11: low nibble = sc[4..7] low 4 bits, high nibble = mn[4..7] low 4 bits
ARBOR_INLINE void unpack_k4_scales(const uint8_t q[12], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = (uint8_t)(q[j] & 63);
        mn[j] = (uint8_t)(q[j + 4] & 63);
        sc[j + 4] = (uint8_t)((q[j + 8] & 0x0F) | ((q[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

/// ggml's nearest_int: round to nearest, ties to even, via the float adder (valid for |x| < 2^22).
ARBOR_INLINE int nearest_int(float x) {
    const float v = x + 12582912.0f;  // 1.5 × 2^23: the integer lands in the low mantissa bits
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007FFFFF) - 0x00400000;
}

// MARK: SIMD helpers shared by the AVX2 / AVX-512 kernels

#if defined(__AVX2__)
/// Σ of 8 lanes in a fixed order (halves, then pairs): every kernel that ends a float chain of
/// 8 lanes uses this one, so results that must agree bit for bit sum the same way.
ARBOR_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
/// acc + (Σ over int16 pairs of s·p) per int32 lane: vpdpwssd where VNNI exists.
ARBOR_INLINE __m512i dpwssd512(__m512i acc, __m512i s, __m512i p) {
#if defined(__AVX512VNNI__)
    return _mm512_dpwssd_epi32(acc, s, p);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(s, p));
#endif
}
#endif

// MARK: kernels shared between files

/// What the Q4_K tiles share across a group of 8 activation rows, per Q8_K block: built once
/// per call from the activations (q8K_groups_fill), then read for every weight row, so the part
/// of a dot that depends on the activations alone is not redone per weight row.
///   bs: Σ of each 32-element sub-block j (bsums[2j] + bsums[2j+1], |·| ≤ 4064) as int16 pairs,
///       laid out for two 512-bit vpmaddwd: in bs[q], int32 lane L (row c = L % 8, h = L / 8)
///       holds (S[4q+2h][c], S[4q+2h+1][c]).
///   yd: each row's scale d. Rows past the group's end are zero.
typedef struct {
    int16_t bs[2][32];
    float yd[8];
} q8K_group;

/// Fills `(nc + 7) / 8` groups of n / QK_K blocks each (group g, block i at groups[g * nb + i]).
void q8K_groups_fill(const uint8_t *a, size_t as, int64_t nc, int64_t n, q8K_group *groups);
/// This thread's q8K_groups_fill buffer for nc rows of n elements, filled (grows, never shrinks).
const q8K_group *q8K_groups_for(const uint8_t *a, size_t as, int64_t nc, int64_t n);

/// Dot of one weight row with `nc` activation rows (`a + c*a_stride`), out[c*out_stride].
/// `groups`: for Q8_K activations, q8K_groups_fill's data for these rows; the Q4_K SIMD tiles
/// read it (non-NULL there), every other tile ignores it.
typedef void (*arbor_tile_fn)(int64_t n, const void *w, const uint8_t *a, size_t a_stride,
                              int64_t nc, float *out, int64_t out_stride, const q8K_group *groups);

/// The scalar reference dot for a weight type (NULL if unsupported).
arbor_tile_fn arbor_scalar_tile(uint32_t wtype);
/// The fastest dot for a weight type on this build (AVX-512 or AVX2 where written, else scalar).
arbor_tile_fn arbor_fast_tile(uint32_t wtype);
/// The 256-bit AVX2 dot for a weight type, or NULL if this build has none (tests compare the
/// 512-bit tiles with it bit for bit).
arbor_tile_fn arbor_avx2_tile(uint32_t wtype);
