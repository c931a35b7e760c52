// Attention with ggml's CPU flash-attention numerics, in fixed chunks and segments. See
// arbor_attention.h.
//
// Why this shape: a query's cost is one pass over its keys and values. Per chunk of 16 keys the
// rows are widened from F16 once for all g query heads of the group (and for every token of a
// prompt that sees them), the chunk's weights come from one vectorised exp instead of a scalar
// expf per key, and the F16 accumulator lives in registers (rounded in place) instead of being
// loaded, widened, narrowed and stored for every key. Long lists are cut into fixed segments so
// that threads can share one query's keys (flash-decoding) without changing a bit of the result.
#include "arbor_attention.h"

#include <math.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define ARBOR_AVX512 1
#endif

enum { CHUNK = ARBOR_ATTEND_CHUNK, MAXG = ARBOR_ATTEND_MAX_GROUP, MAXD = ARBOR_ATTEND_MAX_DIM };

static inline float h2f(uint16_t h) {
    _Float16 v;
    memcpy(&v, &h, 2);
    return (float)v;
}

static void state_reset(int64_t g, int64_t dv, float *state) {
    for (int64_t h = 0; h < g; h++) {
        state[h] = -INFINITY;
        state[g + h] = 0.0f;
    }
    memset(state + 2 * g, 0, (size_t)(g * dv) * sizeof(float));
}

// exp(a - b) for a <= b, exactly 0 when a is -inf (an empty state).
static inline float weight(float a, float b) { return a == -INFINITY ? 0.0f : expf(a - b); }

// A chunk is handled in two steps, shared by every entry point so that a token's arithmetic is
// the same whichever way it is reached: `widen` converts the chunk's key and value rows to F32
// (once for every query that sees exactly these rows), `update` folds the chunk into one query
// group's running state.
typedef void (*widen_fn)(const uint16_t *keys, int64_t ks, const uint16_t *values, int64_t vs,
                         const int32_t *slots, int len, int64_t dk, int64_t dv, float *kb, float *vb);
typedef void (*update_fn)(const float *q, int64_t g, const float *kb, const float *vb, int len,
                          int64_t dk, int64_t dv, float scale, float *state);

static void widen_scalar(const uint16_t *keys, int64_t ks, const uint16_t *values, int64_t vs,
                         const int32_t *slots, int len, int64_t dk, int64_t dv, float *kb, float *vb) {
    for (int j = 0; j < len; j++) {
        const uint16_t *kr = keys + (int64_t)slots[j] * ks, *vr = values + (int64_t)slots[j] * vs;
        for (int64_t i = 0; i < dk; i++) kb[j * dk + i] = h2f(kr[i]);
        for (int64_t i = 0; i < dv; i++) vb[j * dv + i] = h2f(vr[i]);
    }
}

// ggml_vec_dot_f16's order: four 8-lane accumulators over blocks of 32, reduced pairwise; the
// tail in double.
static float dot_ggml(const float *x, const float *y, int64_t n) {
    const int64_t np = n & ~(int64_t)31;
    double sum = 0.0;
    if (np > 0) {
        float acc[4][8] = {{0}};
        for (int64_t i = 0; i < np; i += 32)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 8; l++) acc[j][l] = fmaf(x[i + 8 * j + l], y[i + 8 * j + l], acc[j][l]);
        float r[8], t[4];
        for (int l = 0; l < 8; l++) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
        for (int l = 0; l < 4; l++) t[l] = r[l] + r[l + 4];
        sum = (double)((t[0] + t[1]) + (t[2] + t[3]));
    }
    for (int64_t i = np; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

static inline float round16(float x) { return (float)(_Float16)x; }

// The weights of a chunk's keys under ggml's online softmax: key j either raises the running
// maximum (the sums are rescaled by e^(M - s), its own weight is 1) or not (weight e^(s - M)).
// `x` gets the exponent of whichever applies, `raises` the mask of keys that raise M.
static inline uint32_t chunk_exponents(const float *sc, int len, float *M, float *x) {
    uint32_t raises = 0;
    for (int j = 0; j < len; j++) {
        if (sc[j] > *M) {
            x[j] = *M == -INFINITY ? -INFINITY : *M - sc[j];
            *M = sc[j];
            raises |= 1u << j;
        } else {
            x[j] = sc[j] - *M;
        }
    }
    return raises;
}

static void update_scalar(const float *q, int64_t g, const float *kb, const float *vb, int len,
                          int64_t dk, int64_t dv, float scale, float *state) {
    float *M = state, *S = state + g, *acc = state + 2 * g;
    float sc[CHUNK], x[CHUNK];
    for (int64_t h = 0; h < g; h++) {
        for (int j = 0; j < len; j++) sc[j] = dot_ggml(kb + j * dk, q + h * dk, dk) * scale;
        const uint32_t raises = chunk_exponents(sc, len, &M[h], x);
        float *ah = acc + h * dv;
        for (int j = 0; j < len; j++) {
            const float e = x[j] == -INFINITY ? 0.0f : expf(x[j]);
            float ms = 1.0f, vs = 1.0f;
            if (raises >> j & 1u) {
                ms = e;
                for (int64_t i = 0; i < dv; i++) ah[i] = round16(ah[i] * ms);
            } else {
                vs = e;
            }
            for (int64_t i = 0; i < dv; i++) ah[i] = round16(fmaf(vb[j * dv + i], vs, ah[i]));
            S[h] = S[h] * ms + vs;
        }
    }
}

#if ARBOR_AVX512
// e^x, Cephes' expf polynomial on [-ln2/2, ln2/2] scaled by 2^n (scalef); about 1 ulp.
// Inputs below -103 give (nearly) 0; callers zero the lanes that must be exactly 0.
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-103.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

// The head sizes are constants in these (one instance per size below), so that a head's query
// (DK/16 registers) and its value sums (DV/16 registers) stay in registers across a chunk.
static inline __attribute__((always_inline)) void widen512(
    const uint16_t *keys, int64_t ks, const uint16_t *values, int64_t vs, const int32_t *slots, int len,
    const int DK, const int DV, float *kb, float *vb) {
    for (int j = 0; j < len; j++) {
        const uint16_t *kr = keys + (int64_t)slots[j] * ks, *vr = values + (int64_t)slots[j] * vs;
        for (int i = 0; i < DK; i += 16)
            _mm512_store_ps(kb + j * DK + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kr + i))));
        for (int i = 0; i < DV; i += 16)
            _mm512_store_ps(vb + j * DV + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vr + i))));
    }
}

// Rounds every lane to the nearest F16 value, as storing the accumulator in F16 does.
static inline __m512 round16x16(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// Folds the chunk's values into one head's accumulator (registers `ar`), keys in order.
#define ARBOR_ACCUMULATE_KEY(ar, raises, e, j)                                                            \
    do {                                                                                                \
        float vs_ = 1.0f;                                                                               \
        if ((raises) >> (j) & 1u) {                                                                     \
            const __m512 vms_ = _mm512_set1_ps((e)[j]);                                                 \
            for (int i = 0; i < DV / 16; i++) ar[i] = round16x16(_mm512_mul_ps(ar[i], vms_));           \
        } else {                                                                                        \
            vs_ = (e)[j];                                                                               \
        }                                                                                               \
        const __m512 w_ = _mm512_set1_ps(vs_);                                                          \
        for (int i = 0; i < DV / 16; i++)                                                               \
            ar[i] = round16x16(_mm512_fmadd_ps(_mm512_load_ps(vb + (j) * DV + 16 * i), w_, ar[i]));     \
    } while (0)

static inline __attribute__((always_inline)) void update512(
    const float *q, int64_t g, const float *kb, const float *vb, int len, const int DK, const int DV, float scale,
    float *state) {
    float *M = state, *S = state + g, *acc = state + 2 * g;
    float sc[CHUNK] __attribute__((aligned(64)));
    float x[CHUNK] __attribute__((aligned(64)));
    float e[MAXG][CHUNK] __attribute__((aligned(64)));
    uint32_t raises[MAXG];
    const __mmask16 live = (__mmask16)((1u << len) - 1u);
    for (int64_t h = 0; h < g; h++) {
        // Scores in ggml_vec_dot_f16's order: lanes 0-7 and 8-15 of `a` are its accumulators 0
        // and 1, those of `b` its 2 and 3; then (0 + 2) + (1 + 3), then the 8 lanes.
        __m512 qr[MAXD / 16];
        for (int i = 0; i < DK / 16; i++) qr[i] = _mm512_loadu_ps(q + h * DK + 16 * i);
        for (int j = 0; j < len; j++) {
            __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
            for (int i = 0; i < DK / 16; i += 2) {
                a = _mm512_fmadd_ps(_mm512_load_ps(kb + j * DK + 16 * i), qr[i], a);
                b = _mm512_fmadd_ps(_mm512_load_ps(kb + j * DK + 16 * i + 16), qr[i + 1], b);
            }
            const __m512 ab = _mm512_add_ps(a, b);
            const __m256 r = _mm256_add_ps(_mm512_castps512_ps256(ab), _mm512_extractf32x8_ps(ab, 1));
            const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
            const __m128 t1 = _mm_hadd_ps(t0, t0);
            sc[j] = _mm_cvtss_f32(_mm_hadd_ps(t1, t1)) * scale;
        }
        // Every weight of the chunk with one vector exp.
        raises[h] = chunk_exponents(sc, len, &M[h], x);
        _mm512_store_ps(e[h], _mm512_maskz_mov_ps(live, exp512(_mm512_mask_loadu_ps(_mm512_setzero_ps(), live, x))));
        for (int j = 0; j < len; j++) {
            if (x[j] == -INFINITY) e[h][j] = 0.0f;
            const float ms = raises[h] >> j & 1u ? e[h][j] : 1.0f, vs = raises[h] >> j & 1u ? 1.0f : e[h][j];
            S[h] = S[h] * ms + vs;
        }
    }
    // The values, keys in order, the accumulator rounded to F16 after each step as ggml keeps it
    // (VKQ16). Two heads at a time: each step waits on the previous one's rounding, and two
    // independent heads keep the vector units busy meanwhile.
    int64_t h = 0;
    for (; h + 1 < g; h += 2) {
        float *a0 = acc + h * DV, *a1 = acc + (h + 1) * DV;
        __m512 r0[MAXD / 16], r1[MAXD / 16];
        for (int i = 0; i < DV / 16; i++) r0[i] = _mm512_loadu_ps(a0 + 16 * i), r1[i] = _mm512_loadu_ps(a1 + 16 * i);
        for (int j = 0; j < len; j++) {
            ARBOR_ACCUMULATE_KEY(r0, raises[h], e[h], j);
            ARBOR_ACCUMULATE_KEY(r1, raises[h + 1], e[h + 1], j);
        }
        for (int i = 0; i < DV / 16; i++) _mm512_storeu_ps(a0 + 16 * i, r0[i]), _mm512_storeu_ps(a1 + 16 * i, r1[i]);
    }
    for (; h < g; h++) {
        float *a0 = acc + h * DV;
        __m512 r0[MAXD / 16];
        for (int i = 0; i < DV / 16; i++) r0[i] = _mm512_loadu_ps(a0 + 16 * i);
        for (int j = 0; j < len; j++) ARBOR_ACCUMULATE_KEY(r0, raises[h], e[h], j);
        for (int i = 0; i < DV / 16; i++) _mm512_storeu_ps(a0 + 16 * i, r0[i]);
    }
}
#undef ARBOR_ACCUMULATE_KEY

#define ARBOR_SHAPE(D)                                                                                        \
    static void widen_##D(const uint16_t *keys, int64_t ks, const uint16_t *values, int64_t vs,              \
                          const int32_t *slots, int len, int64_t dk, int64_t dv, float *kb, float *vb) {     \
        (void)dk, (void)dv;                                                                                   \
        widen512(keys, ks, values, vs, slots, len, D, D, kb, vb);                                             \
    }                                                                                                         \
    static void update_##D(const float *q, int64_t g, const float *kb, const float *vb, int len, int64_t dk, \
                           int64_t dv, float scale, float *state) {                                           \
        (void)dk, (void)dv;                                                                                   \
        update512(q, g, kb, vb, len, D, D, scale, state);                                                     \
    }
ARBOR_SHAPE(32)
ARBOR_SHAPE(64)
ARBOR_SHAPE(128)
ARBOR_SHAPE(256)
#undef ARBOR_SHAPE
#endif

static void kernels(int64_t g, int64_t dk, int64_t dv, widen_fn *widen, update_fn *update) {
    *widen = widen_scalar;
    *update = update_scalar;
#if ARBOR_AVX512
    if (g < 1 || g > MAXG || dk != dv) return;
    switch (dk) {
    case 32: *widen = widen_32, *update = update_32; break;
    case 64: *widen = widen_64, *update = update_64; break;
    case 128: *widen = widen_128, *update = update_128; break;
    case 256: *widen = widen_256, *update = update_256; break;
    default: break;
    }
#endif
}

void arbor_attend_partial(const float *q, int64_t g, const uint16_t *keys, int64_t key_stride,
                          const uint16_t *values, int64_t value_stride,
                          const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                          float *state) {
    widen_fn widen;
    update_fn update;
    kernels(g, dk, dv, &widen, &update);
    float kb[CHUNK * MAXD] __attribute__((aligned(64)));
    float vb[CHUNK * MAXD] __attribute__((aligned(64)));
    state_reset(g, dv, state);
    if (n_slots > ARBOR_ATTEND_SEGMENT) n_slots = ARBOR_ATTEND_SEGMENT;
    for (int64_t c = 0; c < n_slots; c += CHUNK) {
        const int len = n_slots - c < CHUNK ? (int)(n_slots - c) : CHUNK;
        widen(keys, key_stride, values, value_stride, slots + c, len, dk, dv, kb, vb);
        update(q, g, kb, vb, len, dk, dv, scale, state);
    }
}

void arbor_attend_merge(int64_t g, int64_t dv, float *state, const float *other) {
    float *M = state, *S = state + g, *acc = state + 2 * g;
    const float *M2 = other, *S2 = other + g, *acc2 = other + 2 * g;
    for (int64_t h = 0; h < g; h++) {
        const float m = M[h] > M2[h] ? M[h] : M2[h];
        if (m == -INFINITY) continue;  // both empty
        const float a = weight(M[h], m), b = weight(M2[h], m);
        S[h] = S[h] * a + S2[h] * b;
        for (int64_t i = 0; i < dv; i++) acc[h * dv + i] = acc[h * dv + i] * a + acc2[h * dv + i] * b;
        M[h] = m;
    }
}

void arbor_attend_finish(int64_t g, int64_t dv, const float *state, float *out) {
    const float *S = state + g, *acc = state + 2 * g;
    for (int64_t h = 0; h < g; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        for (int64_t i = 0; i < dv; i++) out[h * dv + i] = acc[h * dv + i] * inv;
    }
}

void arbor_attend_many(int64_t t, const float *q, int64_t q_stride, int64_t g,
                       const uint16_t *keys, int64_t key_stride, const uint16_t *values, int64_t value_stride,
                       const int32_t *slots, int64_t slot_stride, const int64_t *n_slots, int64_t shared,
                       int64_t dk, int64_t dv, float scale, float *scratch, float *out, int64_t out_stride) {
    widen_fn widen;
    update_fn update;
    kernels(g, dk, dv, &widen, &update);
    float kb[CHUNK * MAXD] __attribute__((aligned(64)));
    float vb[CHUNK * MAXD] __attribute__((aligned(64)));
    const int64_t size = arbor_attend_state_size(g, dv);
    int64_t longest = 0;
    for (int64_t i = 0; i < t; i++) {
        if (n_slots[i] > longest) longest = n_slots[i];
        if (n_slots[i] < shared) shared = n_slots[i];
    }
    // Segment by segment; in each, the state being built is the token's first state for
    // segment 0 and its second (then merged into the first) for the others, as arbor_attend.
    for (int64_t start = 0; start == 0 || start < longest; start += ARBOR_ATTEND_SEGMENT) {
        const int64_t which = start == 0 ? 0 : size;
        for (int64_t i = 0; i < t; i++)
            if (start == 0 || start < n_slots[i]) state_reset(g, dv, scratch + i * 2 * size + which);
        for (int64_t c = start; c < start + ARBOR_ATTEND_SEGMENT && c < longest; c += CHUNK) {
            if (c + CHUNK <= shared) {
                // Every token sees exactly these rows here: widen them once.
                widen(keys, key_stride, values, value_stride, slots + c, CHUNK, dk, dv, kb, vb);
                for (int64_t i = 0; i < t; i++)
                    update(q + i * q_stride, g, kb, vb, CHUNK, dk, dv, scale, scratch + i * 2 * size + which);
                continue;
            }
            for (int64_t i = 0; i < t; i++) {
                const int64_t end = n_slots[i] < start + ARBOR_ATTEND_SEGMENT ? n_slots[i] : start + ARBOR_ATTEND_SEGMENT;
                if (c >= end) continue;
                const int len = end - c < CHUNK ? (int)(end - c) : CHUNK;
                widen(keys, key_stride, values, value_stride, slots + i * slot_stride + c, len, dk, dv, kb, vb);
                update(q + i * q_stride, g, kb, vb, len, dk, dv, scale, scratch + i * 2 * size + which);
            }
        }
        if (start > 0)
            for (int64_t i = 0; i < t; i++)
                if (start < n_slots[i]) arbor_attend_merge(g, dv, scratch + i * 2 * size, scratch + i * 2 * size + size);
    }
    for (int64_t i = 0; i < t; i++) arbor_attend_finish(g, dv, scratch + i * 2 * size, out + i * out_stride);
}

void arbor_attend(const float *q, int64_t g, const uint16_t *keys, int64_t key_stride,
                  const uint16_t *values, int64_t value_stride,
                  const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                  float *scratch, float *out) {
    arbor_attend_many(1, q, 0, g, keys, key_stride, values, value_stride, slots, 0, &n_slots, 0, dk, dv, scale,
                      scratch, out, 0);
}
