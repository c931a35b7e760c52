// Quantizers. The activation ones (Q8_0, Q8_1, Q8_K) reproduce ggml's *_ref functions exactly,
// so a quantized activation row here is the same bytes as llama.cpp's reference build makes.
// Weight quantizers: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16 and BF16 follow ggml's *_ref functions;
// Q4_K, Q5_K and Q6_K are simple min/max quantizers (not ggml's iterative search), meant for tests
// and tiny synthetic models.
#include "quants.h"
#include <float.h>

#if defined(__AVX2__)
/// roundf (ties away from zero) on 8 lanes, exactly: truncate, then step away from zero when the
/// dropped fraction (exact: x - trunc(x) is representable) is at least one half.
ARBOR_INLINE __m256 round_away8(__m256 x) {
    const __m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(x, t));
    const __m256 step = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(sign, x));  // ±1 like x
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step));
}

/// One 32-element block of ggml's q8_0/q8_1 reference quantizer, vectorised with identical results:
/// d = amax/127 (the max is exact in any order), q = roundf(x · (1/d)). Returns Σq.
ARBOR_INLINE int quantize_block_q8(const float *x, uint16_t *dh, int8_t *qs, float *dout) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *dh = fp32_to_fp16(d);
    *dout = d;
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = _mm256_cvttps_epi32(round_away8(_mm256_mul_ps(v[k], _mm256_set1_ps(id))));
    // Σq before packing; then int32 → int16 → int8 (packs interleave the 128-bit lanes: undo it).
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return _mm_cvtsi128_si32(s4);
}
#endif

void arbor_quantize_row_q8_0(const float *x, void *dst, int64_t n) {
    blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
#if defined(__AVX2__)
        float d;
        (void)quantize_block_q8(x, &y[i].d, y[i].qs, &d);
#else
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
#endif
    }
}

void arbor_quantize_row_q8_1(const float *x, void *dst, int64_t n) {
    blk_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
#if defined(__AVX2__)
        float d;
        const int sum = quantize_block_q8(x, &y[i].d, y[i].qs, &d);
#else
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
#endif
        // ggml stores the sum times the unrounded d, rounded to half.
        y[i].s = fp32_to_fp16((float)sum * d);
    }
}

#if defined(__AVX2__)
/// The largest |x[j]| of a block (NaN lanes ignored, as the scalar `ax > amax` scan does) and
/// the first x[j] of that magnitude: the scalar scan's (amax, max), found 8 lanes at a time.
ARBOR_INLINE float q8K_block_max(const float *x, float *amax_out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    // max(|x|, m): an unordered pair yields the second operand, so a NaN never enters m.
    for (int j = 0; j < QK_K; j += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    *amax_out = amax;
    if (amax == 0.0f) return 0.0f;
    const __m256 target = _mm256_set1_ps(amax);
    for (int j = 0; j < QK_K; j += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), target, _CMP_EQ_OQ));
        if (hit) return x[j + __builtin_ctz((unsigned)hit)];
    }
    return 0.0f;  // unreachable: amax is one of the |x[j]|
}
#endif

void arbor_quantize_row_q8_K(const float *x, void *dst, int64_t n) {
    blk_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        // The signed value of largest magnitude (the first one on ties) maps to -127.
        float max = 0.0f, amax = 0.0f;
#if defined(__AVX2__)
        max = q8K_block_max(x, &amax);
#else
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
#endif
        if (amax == 0.0f) {
            // ggml leaves bsums untouched here; zero them so the block is fully defined.
            memset(&y[i], 0, sizeof(blk_q8_K));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[j * 16 + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

int arbor_quantize_activation_row(uint32_t vec_dot_type, const float *x, void *dst, int64_t n) {
    const int64_t bs = arbor_type_block_size(vec_dot_type);
    if (bs <= 0 || n < 0 || n % bs != 0) return -1;
    switch (vec_dot_type) {
    case ARBOR_TYPE_F32: memmove(dst, x, (size_t)n * sizeof(float)); return 0;
    case ARBOR_TYPE_Q8_0: arbor_quantize_row_q8_0(x, dst, n); return 0;
    case ARBOR_TYPE_Q8_1: arbor_quantize_row_q8_1(x, dst, n); return 0;
    case ARBOR_TYPE_Q8_K: arbor_quantize_row_q8_K(x, dst, n); return 0;
    default: return -1;
    }
}

// MARK: weight quantizers

static void q_q4_0(const float *x, blk_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK / 2; j++) {
            const int8_t a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + QK / 2] * id + 8.5f);
            y[i].qs[j] = (uint8_t)((a < 15 ? a : 15) | ((b < 15 ? b : 15) << 4));
        }
    }
}

static void q_q4_1(const float *x, blk_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t a = (uint8_t)(int8_t)((x[j] - min) * id + 0.5f);
            const uint8_t b = (uint8_t)(int8_t)((x[j + QK / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((a < 15 ? a : 15) | ((b < 15 ? b : 15) << 4));
        }
    }
}

static void q_q5_0(const float *x, blk_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int8_t a = (int8_t)(x[j] * id + 16.5f), b = (int8_t)(x[j + QK / 2] * id + 16.5f);
            a = a < 31 ? a : 31;
            b = b < 31 ? b : 31;
            y[i].qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
            qh |= ((uint32_t)(a & 0x10) >> 4) << j;
            qh |= ((uint32_t)(b & 0x10) >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q_q5_1(const float *x, blk_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t a = (uint8_t)((x[j] - min) * id + 0.5f);
            const uint8_t b = (uint8_t)((x[j + QK / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
            qh |= ((uint32_t)(a & 0x10) >> 4) << j;
            qh |= ((uint32_t)(b & 0x10) >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

/// Pack 6-bit scales and mins as unpack_k4_scales reads them.
static void pack_k4_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[12]) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
}

static uint8_t clamp_u(int v, int hi) { return (uint8_t)(v < 0 ? 0 : (v > hi ? hi : v)); }

/// Min/max quantization of one 256-element super-block into 8 sub-blocks of `levels` steps:
/// writes d, dmin, packed scales and per-element levels L[256] in 0...levels.
static void quantize_k_minmax(const float *x, int levels, uint16_t *dh, uint16_t *dminh, uint8_t packed[12], uint8_t L[QK_K]) {
    float scale[8], minv[8], maxScale = 0, maxMin = 0;
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = -FLT_MAX;  // lo ≤ 0: the min is stored as a positive offset
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        scale[j] = (hi - lo) / (float)levels;
        minv[j] = -lo;
        maxScale = fmaxf(maxScale, scale[j]);
        maxMin = fmaxf(maxMin, minv[j]);
    }
    const float d = maxScale / 63.0f, dmin = maxMin / 63.0f;
    *dh = fp32_to_fp16(d);
    *dminh = fp32_to_fp16(dmin);
    const float dq = fp16_to_fp32(*dh), dminq = fp16_to_fp32(*dminh);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        // Round the scale up so the top level still reaches the sub-block's max.
        sc[j] = dq > 0 ? clamp_u((int)ceilf(scale[j] / dq), 63) : 0;
        mn[j] = dminq > 0 ? clamp_u(nearest_int(minv[j] / dminq), 63) : 0;
        const float d1 = dq * (float)sc[j], m1 = dminq * (float)mn[j];
        for (int l = 0; l < 32; l++) {
            L[32 * j + l] = d1 > 0 ? clamp_u(nearest_int((x[32 * j + l] + m1) / d1), levels) : 0;
        }
    }
    pack_k4_scales(sc, mn, packed);
}

static void q_q4_K(const float *x, blk_q4_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        quantize_k_minmax(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int j = 0; j < 4; j++) {
            for (int l = 0; l < 32; l++) y[i].qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + 32 + l] << 4));
        }
    }
}

static void q_q5_K(const float *x, blk_q5_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        quantize_k_minmax(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int j = 0; j < 4; j++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t a = L[64 * j + l], b = L[64 * j + 32 + l];
                y[i].qs[32 * j + l] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * j)) | ((b >> 4) << (2 * j + 1)));
            }
        }
    }
}

static void q_q6_K(const float *x, blk_q6_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        // 16 sub-blocks of 16, symmetric: q - 32 in [-31, 31] times an int8 scale times d.
        float s[16], maxS = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            s[j] = amax / 31.0f;
            maxS = fmaxf(maxS, s[j]);
        }
        const float d = maxS / 127.0f;
        y[i].d = fp32_to_fp16(d);
        const float dq = fp16_to_fp32(y[i].d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            int sc = dq > 0 ? (int)ceilf(s[j] / dq) : 0;
            sc = sc > 127 ? 127 : sc;
            y[i].scales[j] = (int8_t)sc;
            const float d1 = dq * (float)sc;
            for (int l = 0; l < 16; l++) {
                int q = d1 > 0 ? nearest_int(x[16 * j + l] / d1) : 0;
                q = q < -32 ? -32 : (q > 31 ? 31 : q);
                L[16 * j + l] = (uint8_t)(q + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            const uint8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                y[i].ql[64 * h + l] = (uint8_t)((Lh[l] & 0x0F) | ((Lh[l + 64] & 0x0F) << 4));
                y[i].ql[64 * h + l + 32] = (uint8_t)((Lh[l + 32] & 0x0F) | ((Lh[l + 96] & 0x0F) << 4));
                y[i].qh[32 * h + l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

int arbor_quantize_row(uint32_t type, const float *x, void *dst, int64_t n) {
    const int64_t bs = arbor_type_block_size(type);
    if (bs <= 0 || n < 0 || n % bs != 0) return -1;
    const int64_t nb = n / bs;
    switch (type) {
    case ARBOR_TYPE_F32: memmove(dst, x, (size_t)n * sizeof(float)); return 0;
    case ARBOR_TYPE_F16: {
        uint16_t *y = dst;
        for (int64_t i = 0; i < n; i++) y[i] = fp32_to_fp16(x[i]);
        return 0;
    }
    case ARBOR_TYPE_BF16: {
        uint16_t *y = dst;
        for (int64_t i = 0; i < n; i++) y[i] = fp32_to_bf16(x[i]);
        return 0;
    }
    case ARBOR_TYPE_Q4_0: q_q4_0(x, dst, nb); return 0;
    case ARBOR_TYPE_Q4_1: q_q4_1(x, dst, nb); return 0;
    case ARBOR_TYPE_Q5_0: q_q5_0(x, dst, nb); return 0;
    case ARBOR_TYPE_Q5_1: q_q5_1(x, dst, nb); return 0;
    case ARBOR_TYPE_Q8_0: arbor_quantize_row_q8_0(x, dst, n); return 0;
    case ARBOR_TYPE_Q8_1: arbor_quantize_row_q8_1(x, dst, n); return 0;
    case ARBOR_TYPE_Q8_K: arbor_quantize_row_q8_K(x, dst, n); return 0;
    case ARBOR_TYPE_Q4_K: q_q4_K(x, dst, nb); return 0;
    case ARBOR_TYPE_Q5_K: q_q5_K(x, dst, nb); return 0;
    case ARBOR_TYPE_Q6_K: q_q6_K(x, dst, nb); return 0;
    default: return -1;
    }
}
