// Attention with ggml's CPU flash-attention numerics. See arbor_attention.h.
#include "arbor_attention.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#define ARBOR_F16C 1
#endif

static inline float h2f(uint16_t h) {
#if ARBOR_F16C
    return _cvtsh_ss(h);
#else
    __fp16 v;
    memcpy(&v, &h, 2);
    return (float)v;
#endif
}

static inline uint16_t f2h(float f) {
#if ARBOR_F16C
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    __fp16 v = (__fp16)f;
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
#endif
}

float arbor_dot_f16(const uint16_t *x, const uint16_t *y, int64_t n) {
    double sum = 0.0;
    const int64_t np = n & ~(int64_t)31;
#if ARBOR_F16C
    if (np > 0) {
        // Four 8-lane accumulators over blocks of 32, reduced as ggml's GGML_F32x8_REDUCE.
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t i = 0; i < np; i += 32) {
            for (int j = 0; j < 4; j++) {
                const __m256 ax = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8 * j)));
                const __m256 ay = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + 8 * j)));
                acc[j] = _mm256_fmadd_ps(ax, ay, acc[j]);
            }
        }
        acc[0] = _mm256_add_ps(acc[0], acc[2]);
        acc[1] = _mm256_add_ps(acc[1], acc[3]);
        acc[0] = _mm256_add_ps(acc[0], acc[1]);
        const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(acc[0]), _mm256_extractf128_ps(acc[0], 1));
        const __m128 t1 = _mm_hadd_ps(t0, t0);
        sum = (double)_mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    }
#else
    if (np > 0) {
        float acc[4][8] = {{0}};
        for (int64_t i = 0; i < np; i += 32)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 8; l++)
                    acc[j][l] = fmaf(h2f(x[i + 8 * j + l]), h2f(y[i + 8 * j + l]), acc[j][l]);
        float r[8];
        for (int l = 0; l < 8; l++) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
        float t0[4];
        for (int l = 0; l < 4; l++) t0[l] = r[l] + r[l + 4];
        sum = (double)((t0[0] + t0[1]) + (t0[2] + t0[3]));
    }
#endif
    for (int64_t i = np; i < n; i++) sum += (double)(h2f(x[i]) * h2f(y[i]));
    return (float)sum;
}

// y = f16(f32(y) * v)
static void scale_f16(int64_t n, uint16_t *y, float v) {
    int64_t i = 0;
#if ARBOR_F16C
    const __m256 vv = _mm256_set1_ps(v);
    for (; i + 8 <= (n & ~(int64_t)31); i += 8) {
        __m256 ay = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        ay = _mm256_mul_ps(ay, vv);
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(ay, _MM_FROUND_TO_NEAREST_INT));
    }
#endif
    for (; i < n; i++) y[i] = f2h(h2f(y[i]) * v);
}

// y = f16(f32(y) + f32(x) * v), fused in the SIMD part as ggml's ggml_vec_mad_f16.
static void mad_f16(int64_t n, uint16_t *y, const uint16_t *x, float v) {
    int64_t i = 0;
#if ARBOR_F16C
    const __m256 vv = _mm256_set1_ps(v);
    for (; i + 8 <= (n & ~(int64_t)31); i += 8) {
        const __m256 ax = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 ay = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        ay = _mm256_fmadd_ps(ax, vv, ay);
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(ay, _MM_FROUND_TO_NEAREST_INT));
    }
#endif
    for (; i < n; i++) y[i] = f2h(h2f(y[i]) + h2f(x[i]) * v);
}

void arbor_attend_f16(const float *q, const uint16_t *keys, int64_t key_stride,
                      const uint16_t *values, int64_t value_stride,
                      const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                      uint16_t *q16, uint16_t *acc16, float *out) {
    for (int64_t i = 0; i < dk; i++) q16[i] = f2h(q[i]);
    memset(acc16, 0, (size_t)dv * sizeof(uint16_t));
    float S = 0.0f, M = -INFINITY;
    for (int64_t n = 0; n < n_slots; n++) {
        const int64_t slot = slots[n];
        const float s = arbor_dot_f16(keys + slot * key_stride, q16, dk) * scale;
        const float m_old = M;
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            // New maximum: rescale what was accumulated; this key's weight is exp(0) = 1.
            M = s;
            ms = expf(m_old - M);
            scale_f16(dv, acc16, ms);
        } else {
            vs = expf(s - M);
        }
        mad_f16(dv, acc16, values + slot * value_stride, vs);
        S = S * ms + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int64_t d = 0; d < dv; d++) out[d] = h2f(acc16[d]) * inv;
}

// The same arithmetic as arbor_attend_f16 for the `g` query heads that share one key/value head
// (grouped-query attention): each key and value row is widened from F16 once and used by all g
// queries. Every query's own sequence of float operations is unchanged, so results are
// bit-identical to g separate arbor_attend_f16 calls.
void arbor_attend_f16_group(const float *q, int64_t g, const uint16_t *keys, int64_t key_stride,
                            const uint16_t *values, int64_t value_stride,
                            const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                            uint16_t *q16, uint16_t *acc16, float *out) {
#if ARBOR_F16C
    if (g < 1 || g > ARBOR_ATTEND_MAX_GROUP || dk > ARBOR_ATTEND_MAX_DIM || dv > ARBOR_ATTEND_MAX_DIM ||
        (dk & 31) != 0 || (dv & 31) != 0) {
#endif
        for (int64_t j = 0; j < g; j++)
            arbor_attend_f16(q + j * dk, keys, key_stride, values, value_stride, slots, n_slots, dk, dv, scale,
                             q16 + j * dk, acc16 + j * dv, out + j * dv);
        return;
#if ARBOR_F16C
    }
    float qf[ARBOR_ATTEND_MAX_GROUP * ARBOR_ATTEND_MAX_DIM] __attribute__((aligned(32)));
    float kf[ARBOR_ATTEND_MAX_DIM] __attribute__((aligned(32)));
    float vf[ARBOR_ATTEND_MAX_DIM] __attribute__((aligned(32)));
    float S[ARBOR_ATTEND_MAX_GROUP], M[ARBOR_ATTEND_MAX_GROUP];
    // Queries rounded to F16 and widened back, as the single-query kernel reads them.
    for (int64_t i = 0; i < g * dk; i++) {
        q16[i] = f2h(q[i]);
        qf[i] = h2f(q16[i]);
    }
    memset(acc16, 0, (size_t)(g * dv) * sizeof(uint16_t));
    for (int64_t j = 0; j < g; j++) { S[j] = 0.0f; M[j] = -INFINITY; }
    for (int64_t n = 0; n < n_slots; n++) {
        const int64_t slot = slots[n];
        const uint16_t *kr = keys + slot * key_stride, *vr = values + slot * value_stride;
        for (int64_t i = 0; i < dk; i += 8)
            _mm256_store_ps(kf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + i))));
        for (int64_t i = 0; i < dv; i += 8)
            _mm256_store_ps(vf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + i))));
        for (int64_t j = 0; j < g; j++) {
            // arbor_dot_f16(k, q): four 8-lane accumulators over blocks of 32, same reduction.
            const float *qj = qf + j * dk;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (int64_t i = 0; i < dk; i += 32) {
                a0 = _mm256_fmadd_ps(_mm256_load_ps(kf + i), _mm256_load_ps(qj + i), a0);
                a1 = _mm256_fmadd_ps(_mm256_load_ps(kf + i + 8), _mm256_load_ps(qj + i + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_load_ps(kf + i + 16), _mm256_load_ps(qj + i + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_load_ps(kf + i + 24), _mm256_load_ps(qj + i + 24), a3);
            }
            a0 = _mm256_add_ps(a0, a2);
            a1 = _mm256_add_ps(a1, a3);
            a0 = _mm256_add_ps(a0, a1);
            const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
            const __m128 t1 = _mm_hadd_ps(t0, t0);
            const float s = (float)(double)_mm_cvtss_f32(_mm_hadd_ps(t1, t1)) * scale;

            const float m_old = M[j];
            float ms = 1.0f, vs = 1.0f;
            uint16_t *acc = acc16 + j * dv;
            if (s > M[j]) {
                M[j] = s;
                ms = expf(m_old - s);
                const __m256 vms = _mm256_set1_ps(ms);
                for (int64_t i = 0; i < dv; i += 8) {
                    __m256 ay = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + i)));
                    _mm_storeu_si128((__m128i *)(acc + i), _mm256_cvtps_ph(_mm256_mul_ps(ay, vms), _MM_FROUND_TO_NEAREST_INT));
                }
            } else {
                vs = expf(s - M[j]);
            }
            const __m256 vvs = _mm256_set1_ps(vs);
            for (int64_t i = 0; i < dv; i += 8) {
                __m256 ay = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + i)));
                ay = _mm256_fmadd_ps(_mm256_load_ps(vf + i), vvs, ay);
                _mm_storeu_si128((__m128i *)(acc + i), _mm256_cvtps_ph(ay, _MM_FROUND_TO_NEAREST_INT));
            }
            S[j] = S[j] * ms + vs;
        }
    }
    for (int64_t j = 0; j < g; j++) {
        const float inv = S[j] == 0.0f ? 0.0f : 1.0f / S[j];
        for (int64_t d = 0; d < dv; d++) out[j * dv + d] = h2f(acc16[j * dv + d]) * inv;
    }
#endif
}
