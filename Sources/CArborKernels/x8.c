// K-format weights with 8 rows interleaved ("x8"): the batch and decode kernels for Q4_K and
// Q6_K on AVX-512 builds. (Q6_K: see the second half of the file.)
//
// Layout: per group of 8 rows and per 256-element block, the rows' f16 d and dmin, the 6-bit
// scales and mins unpacked to bytes, and the quants regrouped so that one 64-byte load holds
// 8 bytes of each of the 8 rows for the same 16 elements (8 low nibbles: elements 64j+8t+0..7 of
// sub-block 2j; 8 high nibbles: the same offsets of sub-block 2j+1). An activation's matching
// 8 bytes are broadcast to all 8 row slots, so vpmaddubsw/vpdpwssd work on 8 rows at once and
// every lane belongs to one weight row: the per-block float work is done once per 8 rows.
//
// Arithmetic per (row, activation row): per block the exact integer Σ sc·q·a and Σ mn·S, then
// acc = fma(d·d_a, S, acc); acc = fma(-dmin·d_a, M, acc) in block order. A row's result depends
// only on its weight row and its activation row, never on how many activation rows share a call.
#include "quants.h"

typedef struct {
    uint16_t d[8], dmin[8];
    uint8_t sc[8][8];     // [sub-block][row]
    uint8_t mnp[4][16];   // [k][2·row + e] = mn of sub-block 2k+e of row
    uint8_t qs[16][64];   // [4j + t][8·row + b] = row's qs[32j + 8t + b]
} blk_q4_Kx8;
_Static_assert(sizeof(blk_q4_Kx8) == 1184, "Q4_Kx8 block");

int64_t arbor_q4_K_x8_bytes(int64_t rows, int64_t n) {
    if (rows % 8 != 0 || n % QK_K != 0) return -1;
    return rows / 8 * (n / QK_K) * (int64_t)sizeof(blk_q4_Kx8);
}

int arbor_q4_K_x8_pack(const void *src, size_t row_bytes, int64_t rows, int64_t n, void *dst) {
    if (arbor_q4_K_x8_bytes(rows, n) < 0) return -1;
    return arbor_q4_K_x8_pack_groups(src, row_bytes, n, 0, rows / 8, dst);
}

int arbor_q4_K_x8_pack_groups(const void *src, size_t row_bytes, int64_t n, int64_t group_begin, int64_t group_end,
                              void *dst) {
    if (n % QK_K != 0 || group_begin < 0 || group_end < group_begin) return -1;
    const int64_t nb = n / QK_K;
    blk_q4_Kx8 *out = dst;
    for (int64_t g = group_begin; g < group_end; g++) {
        for (int64_t i = 0; i < nb; i++) {
            blk_q4_Kx8 *o = out + g * nb + i;
            for (int r = 0; r < 8; r++) {
                const blk_q4_K *x = (const blk_q4_K *)((const uint8_t *)src + (size_t)(8 * g + r) * row_bytes) + i;
                uint8_t sc[8], mn[8];
                unpack_k4_scales(x->scales, sc, mn);
                o->d[r] = x->d;
                o->dmin[r] = x->dmin;
                for (int s = 0; s < 8; s++) o->sc[s][r] = sc[s];
                for (int k = 0; k < 4; k++) {
                    o->mnp[k][2 * r] = mn[2 * k];
                    o->mnp[k][2 * r + 1] = mn[2 * k + 1];
                }
                for (int j = 0; j < 4; j++)
                    for (int t = 0; t < 4; t++) memcpy(o->qs[4 * j + t] + 8 * r, x->qs + 32 * j + 8 * t, 8);
            }
        }
    }
    return 0;
}

/// Q6_K × 8 rows: per block the rows' f16 d, the 16 int8 scales by [sub-block][row], and the
/// quants as 64-byte vectors of 8 bytes per row, in the order the kernel reads them (one
/// forward stream). For half h and t = 0...3 (8 elements each), q[4h + t] holds:
/// [0] ql[64h + 8t ...] (low nibbles: elements 128h + 8t + 0...7, high nibbles: + 64),
/// [1] ql[64h + 32 + 8t ...] (+ 32 and + 96), [2] qh[32h + 8t ...] (bit pairs for + 0, + 32,
/// + 64, + 96).
typedef struct {
    uint16_t d[8];
    int8_t sc[16][8];     // [sub-block of 16][row]
    uint8_t q[8][3][64];
} blk_q6_Kx8;
_Static_assert(sizeof(blk_q6_Kx8) == 8 * sizeof(blk_q6_K), "Q6_Kx8 block");

int64_t arbor_q6_K_x8_bytes(int64_t rows, int64_t n) {
    if (rows % 8 != 0 || n % QK_K != 0) return -1;
    return rows / 8 * (n / QK_K) * (int64_t)sizeof(blk_q6_Kx8);
}

int arbor_q6_K_x8_pack_groups(const void *src, size_t row_bytes, int64_t n, int64_t group_begin, int64_t group_end,
                              void *dst) {
    if (n % QK_K != 0 || group_begin < 0 || group_end < group_begin) return -1;
    const int64_t nb = n / QK_K;
    blk_q6_Kx8 *out = dst;
    for (int64_t g = group_begin; g < group_end; g++) {
        for (int64_t i = 0; i < nb; i++) {
            blk_q6_Kx8 *o = out + g * nb + i;
            for (int r = 0; r < 8; r++) {
                const blk_q6_K *x = (const blk_q6_K *)((const uint8_t *)src + (size_t)(8 * g + r) * row_bytes) + i;
                o->d[r] = x->d;
                for (int s = 0; s < 16; s++) o->sc[s][r] = x->scales[s];
                for (int h = 0; h < 2; h++) {
                    for (int t = 0; t < 4; t++) {
                        memcpy(o->q[4 * h + t][0] + 8 * r, x->ql + 64 * h + 8 * t, 8);
                        memcpy(o->q[4 * h + t][1] + 8 * r, x->ql + 64 * h + 32 + 8 * t, 8);
                        memcpy(o->q[4 * h + t][2] + 8 * r, x->qh + 32 * h + 8 * t, 8);
                    }
                }
            }
        }
    }
    return 0;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

int arbor_x8_available(void) { return 1; }

/// 8 weight rows (one x8 group) × nc activation rows. Integer accumulators per activation row:
/// one when several rows interleave their chains, four (by t) when one or two rows would
/// otherwise wait on a single 32-long vpdpwssd chain. Integer sums are exact, so the count does
/// not change any result.
ARBOR_INLINE void tile_x8(int64_t nb, const blk_q4_Kx8 *x, const uint8_t *a, size_t as, const q8K_group *g,
                          float *out, int64_t os, const int nc) {
    enum { A = 4 };
    const int na = nc <= 2 ? A : 1;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    // int16 lane 4r + k ← byte r of an 8-byte scale row: index r for every 4 lanes.
    const __m512i sidx = _mm512_set_epi16(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4,
                                          3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m256 acc[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const blk_q4_Kx8 *b = x + i;
        if (nc > 1) {  // as in the row tiles: a batch outruns the hardware prefetcher
            const char *ahead = (const char *)(b + 4);
            for (int l = 0; l < (int)sizeof(blk_q4_Kx8); l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
        }
        const __m256 xd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        const __m256 nxdmin = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->dmin)));
        __m512i scale[8];
        for (int s = 0; s < 8; s++)
            scale[s] = _mm512_permutexvar_epi16(sidx, _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)b->sc[s]))));
        __m512i sumi[8][A];
        for (int c = 0; c < nc; c++)
            for (int k = 0; k < na; k++) sumi[c][k] = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++) {
            for (int t = 0; t < 4; t++) {
                const __m512i w = _mm512_loadu_si512((const void *)b->qs[4 * j + t]);
                const __m512i lo = _mm512_and_si512(w, m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
                for (int c = 0; c < nc; c++) {
                    const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 64 * j + 8 * t;
                    // The activation's 8 bytes for these elements, in every row's slot.
                    const __m512i alo = _mm512_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)q8));
                    const __m512i ahi = _mm512_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(q8 + 32)));
                    const int k = na == 1 ? 0 : t;
                    sumi[c][k] = dpwssd512(sumi[c][k], scale[2 * j], _mm512_maddubs_epi16(lo, alo));
                    sumi[c][k] = dpwssd512(sumi[c][k], scale[2 * j + 1], _mm512_maddubs_epi16(hi, ahi));
                }
            }
        }
        const __m256i mnp0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->mnp[0]));
        const __m256i mnp1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->mnp[1]));
        const __m256i mnp2 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->mnp[2]));
        const __m256i mnp3 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->mnp[3]));
        const int32_t *bs0 = (const int32_t *)g[i].bs[0], *bs1 = (const int32_t *)g[i].bs[1];
        for (int c = 0; c < nc; c++) {
            __m512i s = sumi[c][0];
            for (int k = 1; k < na; k++) s = _mm512_add_epi32(s, sumi[c][k]);
            // Two int32 per row slot: add the high one onto the low one, keep the low ones.
            const __m256i s8 = _mm512_cvtepi64_epi32(_mm512_add_epi64(s, _mm512_srli_epi64(s, 32)));
            // (S[2k], S[2k+1]) of activation row c is int32 element c + 8(k % 2) of bs[k / 2].
            __m256i m8 = _mm256_madd_epi16(mnp0, _mm256_set1_epi32(bs0[c]));
            m8 = _mm256_add_epi32(m8, _mm256_madd_epi16(mnp1, _mm256_set1_epi32(bs0[c + 8])));
            m8 = _mm256_add_epi32(m8, _mm256_madd_epi16(mnp2, _mm256_set1_epi32(bs1[c])));
            m8 = _mm256_add_epi32(m8, _mm256_madd_epi16(mnp3, _mm256_set1_epi32(bs1[c + 8])));
            const __m256 yd = _mm256_set1_ps(g[i].yd[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(xd, yd), _mm256_cvtepi32_ps(s8), acc[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(nxdmin, yd), _mm256_cvtepi32_ps(m8), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_storeu_ps(out + c * os, acc[c]);
}

int arbor_matmul_q4_K_x8(int64_t n, const void *packed, int64_t group_begin, int64_t group_end,
                         const void *acts, size_t act_row_bytes, int64_t ncols, float *y, int64_t y_stride) {
    if (n % QK_K != 0 || group_begin < 0 || group_end < group_begin || ncols < 0) return -1;
    if (ncols == 0) return 0;
    const int64_t nb = n / QK_K;
    const q8K_group *groups = q8K_groups_for(acts, act_row_bytes, ncols, n);
    const blk_q4_Kx8 *w = packed;
    const uint8_t *ab = acts;
    for (int64_t c0 = 0; c0 < ncols; c0 += 8) {
        const int nc = ncols - c0 < 8 ? (int)(ncols - c0) : 8;
        const q8K_group *g = groups + c0 / 8 * nb;
        for (int64_t gr = group_begin; gr < group_end; gr++) {
            const blk_q4_Kx8 *x = w + gr * nb;
            float *o = y + c0 * y_stride + 8 * gr;
            const uint8_t *a = ab + (size_t)c0 * act_row_bytes;
            switch (nc) {
            case 8: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 8); break;
            case 7: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 7); break;
            case 6: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 6); break;
            case 5: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 5); break;
            case 4: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 4); break;
            case 3: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 3); break;
            case 2: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 2); break;
            default: tile_x8(nb, x, a, act_row_bytes, g, o, y_stride, 1); break;
            }
        }
    }
    return 0;
}

/// Q6_K, 8 weight rows × nc activation rows, bit-identical to the row tiles (tile_q6_K_n and
/// tile_q6_K_512): those keep 8 integer lanes per row, lane l summing elements 4l...4l+3 of
/// every 32-element chunk less 32·(sc·bsum) of sub-blocks 2l and 2l+1, each lane its own float
/// chain, summed at the end with the shared hsum8. Here a row's 8 bytes at offset 8t of a chunk
/// give exactly lanes 2t and 2t+1, so one integer accumulator per t (over the block's 8 chunks)
/// holds those two lanes for all 8 rows; the 4 float chains per row and activation row
/// (64 floats) live in memory.
ARBOR_INLINE void tile6_x8(int64_t nb, const blk_q6_Kx8 *x, const uint8_t *a, size_t as, float *out, int64_t os,
                           const int nc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const __m512i sidx = _mm512_set_epi16(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4,
                                          3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i pair_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i row_dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    float acc[8][4][16] __attribute__((aligned(64)));  // [column][t][2·row + e]: lane 2t + e of row
    for (int c = 0; c < nc; c++)
        for (int t = 0; t < 4; t++) _mm512_store_ps(acc[c][t], _mm512_setzero_ps());
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_Kx8 *b = x + i;
        if (nc > 1) {
            const char *ahead = (const char *)(b + 3);
            for (int l = 0; l < (int)sizeof(blk_q6_Kx8); l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
        }
        // d of row r in lanes 2r and 2r+1.
        const __m512 xd = _mm512_permutexvar_ps(row_dup, _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d))));
        for (int t = 0; t < 4; t++) {
            __m512i isum[8];
            for (int c = 0; c < nc; c++) isum[c] = _mm512_setzero_si512();
            for (int h = 0; h < 2; h++) {
                const __m512i p0 = _mm512_loadu_si512((const void *)b->q[4 * h + t][0]);
                const __m512i p1 = _mm512_loadu_si512((const void *)b->q[4 * h + t][1]);
                const __m512i qh = _mm512_loadu_si512((const void *)b->q[4 * h + t][2]);
                __m512i w[4];
                w[0] = _mm512_or_si512(_mm512_and_si512(p0, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
                w[1] = _mm512_or_si512(_mm512_and_si512(p1, m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2), m3), 4));
                w[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(p0, 4), m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
                w[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(p1, 4), m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 6), m3), 4));
                // w[k] covers elements 32k + 8t...+7 of the half: sub-block 8h + t/2 + 2k of 16.
                __m512i sv[4];
                for (int k = 0; k < 4; k++)
                    sv[k] = _mm512_permutexvar_epi16(sidx, _mm512_castsi128_si512(_mm_cvtepi8_epi16(
                                _mm_loadl_epi64((const __m128i *)b->sc[8 * h + t / 2 + 2 * k]))));
                for (int c = 0; c < nc; c++) {
                    const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 128 * h + 8 * t;
                    for (int k = 0; k < 4; k++) {
                        const __m512i av = _mm512_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(q8 + 32 * k)));
                        isum[c] = dpwssd512(isum[c], sv[k], _mm512_maddubs_epi16(w[k], av));
                    }
                }
            }
            // Lane (row r, e) of lane 2t+e: the pair (sc[4t+2e][r], sc[4t+2e+1][r]) meets the
            // activation's (bsum[4t+2e], bsum[4t+2e+1]).
            const __m256i cs0 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)b->sc[4 * t]),
                                                                      _mm_loadl_epi64((const __m128i *)b->sc[4 * t + 1])));
            const __m256i cs1 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)b->sc[4 * t + 2]),
                                                                      _mm_loadl_epi64((const __m128i *)b->sc[4 * t + 3])));
            const __m512i cs = _mm512_permutex2var_epi32(_mm512_castsi256_si512(cs0), pair_idx, _mm512_castsi256_si512(cs1));
            for (int c = 0; c < nc; c++) {
                const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)c * as) + i;
                int64_t bpair;
                memcpy(&bpair, y->bsums + 4 * t, 8);  // (bsum pairs 2t, 2t+1) = bsums[4t...4t+3]
                const __m512i corr = _mm512_madd_epi16(cs, _mm512_set1_epi64(bpair));
                const __m512i lanes = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(corr, 5));
                const __m512 d = _mm512_mul_ps(xd, _mm512_set1_ps(y->d));
                _mm512_store_ps(acc[c][t], _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), _mm512_load_ps(acc[c][t])));
            }
        }
    }
    for (int c = 0; c < nc; c++) {
        float o[8] __attribute__((aligned(32)));
        for (int r = 0; r < 8; r++) {
            float lane[8];
            for (int l = 0; l < 8; l++) lane[l] = acc[c][l / 2][2 * r + l % 2];
            o[r] = hsum8(_mm256_loadu_ps(lane));
        }
        _mm256_storeu_ps(out + c * os, _mm256_load_ps(o));
    }
}

int arbor_matmul_q6_K_x8(int64_t n, const void *packed, int64_t group_begin, int64_t group_end,
                         const void *acts, size_t act_row_bytes, int64_t ncols, float *y, int64_t y_stride) {
    if (n % QK_K != 0 || group_begin < 0 || group_end < group_begin || ncols < 0) return -1;
    const int64_t nb = n / QK_K;
    const blk_q6_Kx8 *w = packed;
    const uint8_t *ab = acts;
    for (int64_t c0 = 0; c0 < ncols; c0 += 8) {
        const int nc = ncols - c0 < 8 ? (int)(ncols - c0) : 8;
        for (int64_t gr = group_begin; gr < group_end; gr++) {
            const blk_q6_Kx8 *x = w + gr * nb;
            float *o = y + c0 * y_stride + 8 * gr;
            const uint8_t *a = ab + (size_t)c0 * act_row_bytes;
            switch (nc) {
            case 8: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 8); break;
            case 7: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 7); break;
            case 6: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 6); break;
            case 5: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 5); break;
            case 4: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 4); break;
            case 3: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 3); break;
            case 2: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 2); break;
            default: tile6_x8(nb, x, a, act_row_bytes, o, y_stride, 1); break;
            }
        }
    }
    return 0;
}

#else

int arbor_matmul_q6_K_x8(int64_t n, const void *packed, int64_t group_begin, int64_t group_end,
                         const void *acts, size_t act_row_bytes, int64_t ncols, float *y, int64_t y_stride) {
    (void)n; (void)packed; (void)group_begin; (void)group_end; (void)acts; (void)act_row_bytes;
    (void)ncols; (void)y; (void)y_stride;
    return -1;
}

int arbor_x8_available(void) { return 0; }

int arbor_matmul_q4_K_x8(int64_t n, const void *packed, int64_t group_begin, int64_t group_end,
                         const void *acts, size_t act_row_bytes, int64_t ncols, float *y, int64_t y_stride) {
    (void)n; (void)packed; (void)group_begin; (void)group_end; (void)acts; (void)act_row_bytes;
    (void)ncols; (void)y; (void)y_stride;
    return -1;
}

#endif
