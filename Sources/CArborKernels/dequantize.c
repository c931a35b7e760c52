// Dequantization of weight rows, bit-identical to ggml's dequantize_row_* (and to the `gguf`
// Python package): the same float operations in the same order. This file is compiled with
// -ffp-contract=off, so `a * b - c` is two rounded operations here, as in ggml's reference build.
#include "quants.h"

static void deq_f16(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    }
#endif
    for (; i < n; i++) y[i] = fp16_to_fp32(x[i]);
}

static void deq_bf16(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = bf16_to_fp32(x[i]);
}

static void deq_q4_0(const blk_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const blk_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + QK / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

static void deq_q5_0(const blk_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = fp16_to_fp32(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            // Bit j of qh is the 5th bit of element j, bit j+16 that of element j+16.
            const int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + QK / 2] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void deq_q5_1(const blk_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + QK / 2] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

static void deq_q8_0(const blk_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

static void deq_q4_K(const blk_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        uint8_t sc[8], mn[8];
        unpack_k4_scales(x[i].scales, sc, mn);
        const uint8_t *q = x[i].qs;
        // Four 64-element chunks; a chunk's 32 bytes hold sub-block 2j (low nibbles) and 2j+1 (high).
        for (int j = 0; j < 4; j++, q += 32, y += 64) {
            const float d1 = d * (float)sc[2 * j], m1 = dmin * (float)mn[2 * j];
            const float d2 = d * (float)sc[2 * j + 1], m2 = dmin * (float)mn[2 * j + 1];
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const blk_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        uint8_t sc[8], mn[8];
        unpack_k4_scales(x[i].scales, sc, mn);
        const uint8_t *q = x[i].qs, *qh = x[i].qh;
        // As Q4_K, plus a 5th bit: bit s of qh[l] belongs to element l of sub-block s.
        for (int j = 0; j < 4; j++, q += 32, y += 64) {
            const float d1 = d * (float)sc[2 * j], m1 = dmin * (float)mn[2 * j];
            const float d2 = d * (float)sc[2 * j + 1], m2 = dmin * (float)mn[2 * j + 1];
            const uint8_t u1 = (uint8_t)(1u << (2 * j)), u2 = (uint8_t)(2u << (2 * j));
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)((q[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) y[l + 32] = d2 * (float)((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

static void deq_q6_K(const blk_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        // Two 128-element halves: 64 bytes of low nibbles, 32 bytes of 2-bit high parts, 8 scales.
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

int arbor_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const int64_t bs = arbor_type_block_size(type);
    if (bs <= 0 || n < 0 || n % bs != 0) return -1;
    const int64_t nb = n / bs;
    switch (type) {
    case ARBOR_TYPE_F32: memmove(dst, src, (size_t)n * sizeof(float)); return 0;
    case ARBOR_TYPE_F16: deq_f16(src, dst, n); return 0;
    case ARBOR_TYPE_BF16: deq_bf16(src, dst, n); return 0;
    case ARBOR_TYPE_Q4_0: deq_q4_0(src, dst, nb); return 0;
    case ARBOR_TYPE_Q4_1: deq_q4_1(src, dst, nb); return 0;
    case ARBOR_TYPE_Q5_0: deq_q5_0(src, dst, nb); return 0;
    case ARBOR_TYPE_Q5_1: deq_q5_1(src, dst, nb); return 0;
    case ARBOR_TYPE_Q8_0: deq_q8_0(src, dst, nb); return 0;
    case ARBOR_TYPE_Q4_K: deq_q4_K(src, dst, nb); return 0;
    case ARBOR_TYPE_Q5_K: deq_q5_K(src, dst, nb); return 0;
    case ARBOR_TYPE_Q6_K: deq_q6_K(src, dst, nb); return 0;
    case ARBOR_TYPE_Q8_1: {  // activation format; d × q like Q8_0 (s is redundant)
        const blk_q8_1 *x = src;
        for (int64_t i = 0; i < nb; i++) {
            const float d = fp16_to_fp32(x[i].d);
            for (int j = 0; j < QK; j++) dst[i * QK + j] = (float)x[i].qs[j] * d;
        }
        return 0;
    }
    case ARBOR_TYPE_Q8_K: {
        const blk_q8_K *x = src;
        for (int64_t i = 0; i < nb; i++) {
            for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = x[i].d * (float)x[i].qs[j];
        }
        return 0;
    }
    default: return -1;
    }
}

// MARK: type table

int64_t arbor_type_block_size(uint32_t type) {
    switch (type) {
    case ARBOR_TYPE_F32: case ARBOR_TYPE_F16: case ARBOR_TYPE_BF16: return 1;
    case ARBOR_TYPE_Q4_0: case ARBOR_TYPE_Q4_1: case ARBOR_TYPE_Q5_0: case ARBOR_TYPE_Q5_1:
    case ARBOR_TYPE_Q8_0: case ARBOR_TYPE_Q8_1: return QK;
    case ARBOR_TYPE_Q4_K: case ARBOR_TYPE_Q5_K: case ARBOR_TYPE_Q6_K: case ARBOR_TYPE_Q8_K: return QK_K;
    default: return 0;
    }
}

int64_t arbor_type_block_bytes(uint32_t type) {
    switch (type) {
    case ARBOR_TYPE_F32: return 4;
    case ARBOR_TYPE_F16: case ARBOR_TYPE_BF16: return 2;
    case ARBOR_TYPE_Q4_0: return sizeof(blk_q4_0);
    case ARBOR_TYPE_Q4_1: return sizeof(blk_q4_1);
    case ARBOR_TYPE_Q5_0: return sizeof(blk_q5_0);
    case ARBOR_TYPE_Q5_1: return sizeof(blk_q5_1);
    case ARBOR_TYPE_Q8_0: return sizeof(blk_q8_0);
    case ARBOR_TYPE_Q8_1: return sizeof(blk_q8_1);
    case ARBOR_TYPE_Q4_K: return sizeof(blk_q4_K);
    case ARBOR_TYPE_Q5_K: return sizeof(blk_q5_K);
    case ARBOR_TYPE_Q6_K: return sizeof(blk_q6_K);
    case ARBOR_TYPE_Q8_K: return sizeof(blk_q8_K);
    default: return 0;
    }
}

int64_t arbor_row_bytes(uint32_t type, int64_t n) {
    const int64_t bs = arbor_type_block_size(type);
    if (bs <= 0 || n < 0 || n % bs != 0) return -1;
    return n / bs * arbor_type_block_bytes(type);
}

uint32_t arbor_vec_dot_type(uint32_t weight_type) {
    switch (weight_type) {
    case ARBOR_TYPE_F32: case ARBOR_TYPE_F16: case ARBOR_TYPE_BF16: return ARBOR_TYPE_F32;
    case ARBOR_TYPE_Q4_0: case ARBOR_TYPE_Q5_0: case ARBOR_TYPE_Q8_0: return ARBOR_TYPE_Q8_0;
    case ARBOR_TYPE_Q4_1: case ARBOR_TYPE_Q5_1: return ARBOR_TYPE_Q8_1;
    case ARBOR_TYPE_Q4_K: case ARBOR_TYPE_Q5_K: case ARBOR_TYPE_Q6_K: return ARBOR_TYPE_Q8_K;
    default: return ARBOR_TYPE_NONE;
    }
}
