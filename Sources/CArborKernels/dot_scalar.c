// Portable reference dot products (ggml's *_generic semantics): integer sums per block, then
// one float multiply-add per block. The AVX2 kernels must agree with these to rounding.
#include "quants.h"

static float dot_f32(int64_t n, const float *w, const float *a) {
    // Four partial sums: a fixed order that does not depend on anything but n.
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++) s[k] += w[i + k] * a[i + k];
    }
    for (; i < n; i++) s[0] += w[i] * a[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static float dot_f16(int64_t n, const uint16_t *w, const float *a) {
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++) s[k] += fp16_to_fp32(w[i + k]) * a[i + k];
    }
    for (; i < n; i++) s[0] += fp16_to_fp32(w[i]) * a[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static float dot_bf16(int64_t n, const uint16_t *w, const float *a) {
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++) s[k] += bf16_to_fp32(w[i + k]) * a[i + k];
    }
    for (; i < n; i++) s[0] += bf16_to_fp32(w[i]) * a[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static float dot_q4_0(int64_t n, const blk_q4_0 *x, const blk_q8_0 *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            s += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
            s += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK / 2];
        }
        sum += (float)s * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sum;
}

static float dot_q4_1(int64_t n, const blk_q4_1 *x, const blk_q8_1 *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            s += (x[i].qs[j] & 0x0F) * y[i].qs[j];
            s += (x[i].qs[j] >> 4) * y[i].qs[j + QK / 2];
        }
        // Σ (d·q + m)·a = d·Σq·a + m·Σa, and Σa is y.s.
        sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)s + fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sum;
}

static float dot_q5_0(int64_t n, const blk_q5_0 *x, const blk_q8_0 *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
            s += (((x[i].qs[j] & 0x0F) | h0) - 16) * y[i].qs[j];
            s += (((x[i].qs[j] >> 4) | h1) - 16) * y[i].qs[j + QK / 2];
        }
        sum += (float)s * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sum;
}

static float dot_q5_1(int64_t n, const blk_q5_1 *x, const blk_q8_1 *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
            s += ((x[i].qs[j] & 0x0F) | h0) * y[i].qs[j];
            s += ((x[i].qs[j] >> 4) | h1) * y[i].qs[j + QK / 2];
        }
        sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)s + fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sum;
}

static float dot_q8_0(int64_t n, const blk_q8_0 *x, const blk_q8_0 *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int s = 0;
        for (int j = 0; j < QK; j++) s += x[i].qs[j] * y[i].qs[j];
        sum += (float)s * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sum;
}

static float dot_q4_K(int64_t n, const blk_q4_K *x, const blk_q8_K *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        unpack_k4_scales(x[i].scales, sc, mn);
        const uint8_t *q = x[i].qs;
        const int8_t *a = y[i].qs;
        int s = 0;
        for (int j = 0; j < 4; j++, q += 32, a += 64) {
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += (q[l] & 0x0F) * a[l];
                hi += (q[l] >> 4) * a[l + 32];
            }
            s += lo * sc[2 * j] + hi * sc[2 * j + 1];
        }
        // The mins: Σ_sub mn · Σ a over the sub-block (two 16-element bsums each).
        int smin = 0;
        for (int j = 0; j < 8; j++) smin += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        sum += (fp16_to_fp32(x[i].d) * y[i].d) * (float)s - (fp16_to_fp32(x[i].dmin) * y[i].d) * (float)smin;
    }
    return sum;
}

static float dot_q5_K(int64_t n, const blk_q5_K *x, const blk_q8_K *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        unpack_k4_scales(x[i].scales, sc, mn);
        const uint8_t *q = x[i].qs, *qh = x[i].qh;
        const int8_t *a = y[i].qs;
        int s = 0;
        for (int j = 0; j < 4; j++, q += 32, a += 64) {
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += ((q[l] & 0x0F) | (((qh[l] >> (2 * j)) & 1) << 4)) * a[l];
                hi += ((q[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4)) * a[l + 32];
            }
            s += lo * sc[2 * j] + hi * sc[2 * j + 1];
        }
        int smin = 0;
        for (int j = 0; j < 8; j++) smin += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        sum += (fp16_to_fp32(x[i].d) * y[i].d) * (float)s - (fp16_to_fp32(x[i].dmin) * y[i].d) * (float)smin;
    }
    return sum;
}

static float dot_q6_K(int64_t n, const blk_q6_K *x, const blk_q8_K *y) {
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *a = y[i].qs, *sc = x[i].scales;
        int s = 0;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, a += 128, sc += 8) {
            int sub[8] = {0};  // per 16-element sub-block
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                sub[is + 0] += ((int)((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32) * a[l];
                sub[is + 2] += ((int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32) * a[l + 32];
                sub[is + 4] += ((int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * a[l + 64];
                sub[is + 6] += ((int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * a[l + 96];
            }
            for (int k = 0; k < 8; k++) s += sc[k] * sub[k];
        }
        sum += (fp16_to_fp32(x[i].d) * y[i].d) * (float)s;
    }
    return sum;
}

// MARK: tiles (one weight row × nc activation rows), one dot at a time

#define SCALAR_TILE(name, wt, at, fn)                                                                  \
    static void name(int64_t n, const void *w, const uint8_t *a, size_t as, int64_t nc, float *out,    \
                     int64_t os, const q8K_group *groups) {                                            \
        (void)groups;                                                                                  \
        for (int64_t c = 0; c < nc; c++) out[c * os] = fn(n, (const wt *)w, (const at *)(a + c * as)); \
    }

SCALAR_TILE(tile_f32, float, float, dot_f32)
SCALAR_TILE(tile_f16, uint16_t, float, dot_f16)
SCALAR_TILE(tile_bf16, uint16_t, float, dot_bf16)
SCALAR_TILE(tile_q4_0, blk_q4_0, blk_q8_0, dot_q4_0)
SCALAR_TILE(tile_q4_1, blk_q4_1, blk_q8_1, dot_q4_1)
SCALAR_TILE(tile_q5_0, blk_q5_0, blk_q8_0, dot_q5_0)
SCALAR_TILE(tile_q5_1, blk_q5_1, blk_q8_1, dot_q5_1)
SCALAR_TILE(tile_q8_0, blk_q8_0, blk_q8_0, dot_q8_0)
SCALAR_TILE(tile_q4_K, blk_q4_K, blk_q8_K, dot_q4_K)
SCALAR_TILE(tile_q5_K, blk_q5_K, blk_q8_K, dot_q5_K)
SCALAR_TILE(tile_q6_K, blk_q6_K, blk_q8_K, dot_q6_K)

arbor_tile_fn arbor_scalar_tile(uint32_t wtype) {
    switch (wtype) {
    case ARBOR_TYPE_F32: return tile_f32;
    case ARBOR_TYPE_F16: return tile_f16;
    case ARBOR_TYPE_BF16: return tile_bf16;
    case ARBOR_TYPE_Q4_0: return tile_q4_0;
    case ARBOR_TYPE_Q4_1: return tile_q4_1;
    case ARBOR_TYPE_Q5_0: return tile_q5_0;
    case ARBOR_TYPE_Q5_1: return tile_q5_1;
    case ARBOR_TYPE_Q8_0: return tile_q8_0;
    case ARBOR_TYPE_Q4_K: return tile_q4_K;
    case ARBOR_TYPE_Q5_K: return tile_q5_K;
    case ARBOR_TYPE_Q6_K: return tile_q6_K;
    default: return NULL;
    }
}
