// AVX2 + FMA dot products: one weight row against up to 8 activation rows at a time, so a
// decoded weight block (nibbles unpacked, scales expanded) is reused across the batch.
//
// Batch invariance: every activation row c has its own accumulator and sees exactly the same
// sequence of operations whether it is processed alone (nc = 1) or beside others (nc = 2...8).
// Integer partial sums are exact; the float work per row is a fixed set of FMA chains in block
// order, then a fixed horizontal sum. Where a chain of several rows shares a vector (the Q4_K
// min term, lane c = row c), each lane is still row c's own chain: the lanes never mix. So a
// row's result never depends on its neighbours.
//
// Per-block scalars (f16 scales, packed 6-bit scales, qh bits) are loaded straight into vector
// registers: on this core a GPR→vector move (_mm_set_epi32, _mm256_set1_* of a computed value)
// costs several cycles and made the Q4_K kernel ~1.7× slower.
//
// Integer ranges (why nothing saturates): _mm256_maddubs_epi16 multiplies unsigned weight bytes by
// signed activation bytes and adds adjacent pairs into int16. Activations are in [-127, 127]
// (the q8 quantizers never produce -128); weights are at most 63 (Q6_K), so a pair is at most
// 2·63·127 = 16002 < 32767. For the signed 32-element formats the weight's sign is moved onto the
// activation (_mm256_sign_epi8) and |w| ≤ 128 gives 2·128·127 = 32512.
#include "quants.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define ARBOR_HAVE_AVX2 1

/// 16 bytes of nibble pairs → 32 bytes [low nibbles (elements 0-15) | high nibbles (16-31)].
ARBOR_INLINE __m256i unpack_nibbles32(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

/// 32 bits (little endian) → 32 bytes, 0xFF where the bit is set: byte k gets source byte k/8,
/// is OR-ed with a mask that has every bit but bit k%8 set, and compared with 0xFF.
/// (The 4 bytes are broadcast straight from memory: a GPR→vector move costs several cycles here.)
ARBOR_INLINE __m256i bits_to_bytes32(const uint8_t *p) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i x = _mm256_castps_si256(_mm256_broadcast_ss((const float *)p));  // bit copy, no FP
    const __m256i v = _mm256_shuffle_epi8(x, spread);
    return _mm256_cmpeq_epi8(_mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE)), _mm256_set1_epi64x(-1));
}

/// Pairwise Σ u·s of unsigned bytes u and signed bytes s, widened to 8 int32 lanes.
ARBOR_INLINE __m256i madd_u8_i8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// MARK: 32-element formats · Q8_0 (Q4_0, Q5_0, Q8_0)

/// Signed weight values of one block, as 32 int8 in element order.
ARBOR_INLINE __m256i wq_q4_0(const void *b) {
    return _mm256_sub_epi8(unpack_nibbles32(((const blk_q4_0 *)b)->qs), _mm256_set1_epi8(8));
}
ARBOR_INLINE __m256i wq_q5_0(const void *b) {
    const blk_q5_0 *x = b;
    // value = (nibble | bit·16) - 16: with the bit set that is the nibble; without it nibble - 16,
    // whose int8 bit pattern is nibble | 0xF0. So OR 0xF0 into the bytes whose bit is clear.
    const __m256i hi = _mm256_andnot_si256(bits_to_bytes32(x->qh), _mm256_set1_epi8((char)0xF0));
    return _mm256_or_si256(unpack_nibbles32(x->qs), hi);
}
ARBOR_INLINE __m256i wq_q8_0(const void *b) {
    return _mm256_loadu_si256((const __m256i *)((const blk_q8_0 *)b)->qs);
}

/// The f16 pair at p (d, and m or s where the block has one) as floats in lanes 0 and 1.
/// Loaded straight into a vector register (see bits_to_bytes32); lanes 2-3 are unused.
ARBOR_INLINE __m128 load_half_pair(const void *p) {
    return _mm_cvtph_ps(_mm_castps_si128(_mm_load_ss((const float *)p)));
}

/// Shared body: x blocks of `bsize` bytes decoded by `decode`, d (f16) first in every block.
/// Even and odd blocks go to separate accumulators: two independent FMA chains instead of one
/// (a 32-element block has little work besides its FMA, so one chain is latency-bound).
ARBOR_INLINE void tile_q8_0_family(int64_t n, const uint8_t *w, size_t bsize, __m256i (*decode)(const void *),
                                   const uint8_t *a, size_t as, float *out, int64_t os, const int nc) {
    __m256 acc[2][8];
    for (int c = 0; c < nc; c++) acc[0][c] = acc[1][c] = _mm256_setzero_ps();
    const int64_t nb = n / QK;
    for (int64_t i = 0; i < nb; i++) {
        const int k = (int)(i & 1);
        const uint8_t *blk = w + (size_t)i * bsize;
        const __m128 xd = load_half_pair(blk);          // lane 0: the weight block's d
        const __m256i qx = decode(blk);                 // [32] int8 weights
        const __m256i ax = _mm256_sign_epi8(qx, qx);    // |w|, unsigned operand of maddubs
        for (int c = 0; c < nc; c++) {
            const blk_q8_0 *y = (const blk_q8_0 *)(a + (size_t)c * as) + i;
            const __m256i qy = _mm256_loadu_si256((const __m256i *)y->qs);
            const __m256i p = madd_u8_i8(ax, _mm256_sign_epi8(qy, qx));  // [8] int32 partial Σ w·a
            const __m256 dd = _mm256_broadcastss_ps(_mm_mul_ss(xd, load_half_pair(y)));
            acc[k][c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc[k][c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c * os] = hsum8(_mm256_add_ps(acc[0][c], acc[1][c]));
}

// MARK: 32-element formats with a min · Q8_1 (Q4_1, Q5_1)

ARBOR_INLINE __m256i wq_q4_1(const void *b) { return unpack_nibbles32(((const blk_q4_1 *)b)->qs); }
ARBOR_INLINE __m256i wq_q5_1(const void *b) {
    const blk_q5_1 *x = b;
    const __m256i hi = _mm256_and_si256(bits_to_bytes32(x->qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles32(x->qs), hi);
}

/// Blocks start with f16 d, f16 m; weights are unsigned levels 0...31; Σ(d·q + m)·a = d·Σq·a + m·(d_a·Σqa).
/// Two chains (even/odd blocks) as above. The min terms m·s ride in lane 1 of a 4-lane product
/// whose lane 0 is d·d_a, so one multiply serves both.
ARBOR_INLINE void tile_q8_1_family(int64_t n, const uint8_t *w, size_t bsize, __m256i (*decode)(const void *),
                                   const uint8_t *a, size_t as, float *out, int64_t os, const int nc) {
    __m256 acc[2][8];
    __m128 summ[2][8];
    for (int c = 0; c < nc; c++) {
        acc[0][c] = acc[1][c] = _mm256_setzero_ps();
        summ[0][c] = summ[1][c] = _mm_setzero_ps();
    }
    const int64_t nb = n / QK;
    for (int64_t i = 0; i < nb; i++) {
        const int k = (int)(i & 1);
        const uint8_t *blk = w + (size_t)i * bsize;
        const __m128 xdm = load_half_pair(blk);  // [d, m, -, -]
        const __m256i qx = decode(blk);          // [32] uint8 levels
        for (int c = 0; c < nc; c++) {
            const blk_q8_1 *y = (const blk_q8_1 *)(a + (size_t)c * as) + i;
            const __m256i p = madd_u8_i8(qx, _mm256_loadu_si256((const __m256i *)y->qs));
            const __m128 prod = _mm_mul_ps(xdm, load_half_pair(y));  // [d·d_a, m·s, -, -]
            acc[k][c] = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), _mm256_cvtepi32_ps(p), acc[k][c]);
            summ[k][c] = _mm_add_ps(summ[k][c], prod);
        }
    }
    for (int c = 0; c < nc; c++) {
        const __m128 ms = _mm_add_ps(summ[0][c], summ[1][c]);
        out[c * os] = hsum8(_mm256_add_ps(acc[0][c], acc[1][c])) + _mm_cvtss_f32(_mm_movehdup_ps(ms));
    }
}

// MARK: K formats · Q8_K

/// The 12 packed bytes of Q4_K/Q5_K scales → 16 bytes [sc0..sc7 | mn0..mn7]: unpack_k4_scales
/// done on 32-bit lanes (four bytes at a time; no shift moves a bit into a byte the mask keeps),
/// entirely in a vector register (GPR→vector moves are slow on this core).
/// Reads 16 bytes at q: the 4 after the scales are the block's own quants, ignored.
ARBOR_INLINE __m128i k4_scales_mins(const uint8_t *q) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q);          // [u0, u1, u2, -]
    const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x3F));        // [sc0-3, mn0-3, ...]: low 6 bits
    const __m128i u2 = _mm_shuffle_epi32(v, 0xAA);                   // [u2, u2, u2, u2]
    const __m128i nib = _mm_and_si128(_mm_srlv_epi32(u2, _mm_setr_epi32(0, 4, 0, 0)), _mm_set1_epi8(0x0F));
    const __m128i top = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), _mm_set1_epi8(0x03)), 4);
    const __m128i hi = _mm_or_si128(nib, top);                       // [sc4-7, mn4-7, ...]
    return _mm_unpacklo_epi32(lo, hi);                                // [sc0-3, sc4-7, mn0-3, mn4-7]
}

/// _mm256_shuffle_epi8 masks broadcasting int16 lane s (of each 128-bit half) to all lanes.
static const uint8_t k4_scale_shuffle[8][32] = {
#define ARBOR_REP16(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
    {ARBOR_REP16(0, 1), ARBOR_REP16(0, 1)},
    {ARBOR_REP16(2, 3), ARBOR_REP16(2, 3)},
    {ARBOR_REP16(4, 5), ARBOR_REP16(4, 5)},
    {ARBOR_REP16(6, 7), ARBOR_REP16(6, 7)},
    {ARBOR_REP16(8, 9), ARBOR_REP16(8, 9)},
    {ARBOR_REP16(10, 11), ARBOR_REP16(10, 11)},
    {ARBOR_REP16(12, 13), ARBOR_REP16(12, 13)},
    {ARBOR_REP16(14, 15), ARBOR_REP16(14, 15)},
#undef ARBOR_REP16
};

/// Per-block constants of Q4_K/Q5_K: the 8 scales as int16 in both 128-bit halves (for
/// k4_scale_shuffle), and the mins expanded to one per 16-element bsum (lane k = mn[k/2]).
ARBOR_INLINE void k4_block_scales(const uint8_t *packed, __m256i *sc16x2, __m256i *mins16) {
    const __m128i sm = k4_scales_mins(packed);
    *sc16x2 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    const __m128i dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    *mins16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, dup));
}

ARBOR_INLINE __m256i k4_scale(__m256i sc16x2, int s) {
    return _mm256_shuffle_epi8(sc16x2, _mm256_loadu_si256((const __m256i *)k4_scale_shuffle[s]));
}

/// Σ mn[j]·S[j][c] over the 8 sub-blocks j, for the 8 rows c of a group: 8 int32 lanes, one per
/// row. `scmn` is the block's [8 scales | 8 mins] as int16; its int32 element 4 + k is the pair
/// (mn[2k], mn[2k+1]), which meets the group's (S[2k][c], S[2k+1][c]) pairs in one vpmaddwd.
ARBOR_INLINE __m256i k4_mins_dot8(const q8K_group *g, __m256i scmn) {
    const __m256i p0 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)g->bs[0]), _mm256_permutevar8x32_epi32(scmn, _mm256_set1_epi32(4)));
    const __m256i p1 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(g->bs[0] + 16)), _mm256_permutevar8x32_epi32(scmn, _mm256_set1_epi32(5)));
    const __m256i p2 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)g->bs[1]), _mm256_permutevar8x32_epi32(scmn, _mm256_set1_epi32(6)));
    const __m256i p3 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(g->bs[1] + 16)), _mm256_permutevar8x32_epi32(scmn, _mm256_set1_epi32(7)));
    return _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3));
}

/// out[c] = (the d·sc·q chain of row c, summed) + (lane c of the min chain), as every Q4_K tile ends.
ARBOR_INLINE void k4_store(float *out, int64_t os, int c, float dsum, __m256 accm) {
    float m[8];
    _mm256_storeu_ps(m, accm);
    out[c * os] = dsum + m[c];
}

/// Q4_K: 8 sub-blocks of 32, each d·sc·q - dmin·mn with q in 0...15.
/// The min term -dmin·d_a·Σ mn·S does not depend on the quants, only on the weight block's mins
/// and the activation group's sub-block sums: it is formed for all 8 rows of the group at once
/// (lane c = row c, a chain of its own, added to row c's sum at the end) from q8K_group.
ARBOR_INLINE void tile_q4_K_n(int64_t n, const blk_q4_K *x, const uint8_t *a, size_t as, float *out, int64_t os, const int nc, const q8K_group *g) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[8];
    __m256 accm = _mm256_setzero_ps();
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m256i scmn = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        const __m256i sc16x2 = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(scmn));
        const float xd = fp16_to_fp32(x[i].d), xdmin = fp16_to_fp32(x[i].dmin);
        __m256i sumi[8];
        for (int c = 0; c < nc; c++) sumi[c] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            // 64 elements: 32 bytes, low nibbles = sub-block 2j, high nibbles = sub-block 2j+1.
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            const __m256i lo = _mm256_and_si256(bits, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i slo = k4_scale(sc16x2, 2 * j), shi = k4_scale(sc16x2, 2 * j + 1);
            for (int c = 0; c < nc; c++) {
                const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 64 * j;
                const __m256i pl = _mm256_madd_epi16(slo, _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8)));
                const __m256i ph = _mm256_madd_epi16(shi, _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32))));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(pl, ph));
            }
        }
        for (int c = 0; c < nc; c++) {
            const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)c * as) + i;
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(xd * y->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
        const __m256 nd = _mm256_mul_ps(_mm256_set1_ps(-xdmin), _mm256_loadu_ps(g[i].yd));
        accm = _mm256_fmadd_ps(nd, _mm256_cvtepi32_ps(k4_mins_dot8(g + i, scmn)), accm);
    }
    for (int c = 0; c < nc; c++) k4_store(out, os, c, hsum8(acc[c]), accm);
}

/// Q5_K: Q4_K plus a 5th bit per element; bit s of qh[l] belongs to element l of sub-block s.
ARBOR_INLINE void tile_q5_K_n(int64_t n, const blk_q5_K *x, const uint8_t *a, size_t as, float *out, int64_t os, const int nc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    __m256 acc[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i sc16x2, mins16;
        k4_block_scales(x[i].scales, &sc16x2, &mins16);
        const float xd = fp16_to_fp32(x[i].d), xdmin = fp16_to_fp32(x[i].dmin);
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i sumi[8];
        for (int c = 0; c < nc; c++) sumi[c] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            // Bit 2j (2j+1) of every byte moved to bit 0, masked, then to bit 4 (value 16).
            // 16-bit shifts are safe: the mask keeps only each byte's own bit.
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), m1), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), m1), 4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), h0);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), h1);
            const __m256i slo = k4_scale(sc16x2, 2 * j), shi = k4_scale(sc16x2, 2 * j + 1);
            for (int c = 0; c < nc; c++) {
                const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 64 * j;
                const __m256i pl = _mm256_madd_epi16(slo, _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8)));
                const __m256i ph = _mm256_madd_epi16(shi, _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32))));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(pl, ph));
            }
        }
        for (int c = 0; c < nc; c++) {
            const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)c * as) + i;
            const __m256i pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(xd * y->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(-(xdmin * y->d)), _mm256_cvtepi32_ps(pm), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c * os] = hsum8(acc[c]);
}

/// Q6_K scale masks: within a 128-bit half holding 8 int16 scales, mask k puts scale 2k in every
/// int16 lane of the low half and scale 2k+1 in the high half, matching maddubs output lanes 0-7
/// (elements 0-15) and 8-15 (elements 16-31) of a 32-byte load.
static const uint8_t q6_scale_shuffle[4][32] = {
#define ARBOR_REP8(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
    {ARBOR_REP8(0, 1), ARBOR_REP8(2, 3)},
    {ARBOR_REP8(4, 5), ARBOR_REP8(6, 7)},
    {ARBOR_REP8(8, 9), ARBOR_REP8(10, 11)},
    {ARBOR_REP8(12, 13), ARBOR_REP8(14, 15)},
#undef ARBOR_REP8
};

/// Q6_K: 16 sub-blocks of 16, d·sc·(q - 32) with q in 0...63 and int8 sc.
/// The -32 is not applied per element: Σ sc·(q-32)·a = Σ sc·q·a - 32·Σ sc·bsum, and the
/// activation's 16-element sums (bsums) give the second term with one madd.
ARBOR_INLINE void tile_q6_K_n(int64_t n, const blk_q6_K *x, const uint8_t *a, size_t as, float *out, int64_t os, const int nc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float xd = fp16_to_fp32(x[i].d);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);  // [16] int8
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);                      // [16] int16
        __m256i sumi[8];
        for (int c = 0; c < nc; c++) sumi[c] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            // 128 elements: ql 64 bytes (two loads), qh 32 bytes holding four 2-bit fields.
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h));
            const __m256i l2 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h + 32));
            const __m256i w0 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            const __m256i w1 = _mm256_or_si256(_mm256_and_si256(l2, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            const __m256i w2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            const __m256i w3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l2, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
            // Scales for elements [0,32), [32,64), [64,96), [96,128) of this half: scales 8h...8h+7,
            // which are the 128-bit half h of sc16, copied to both halves, then shuffled in-lane.
            const __m256i g = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
            const __m256i s0 = _mm256_shuffle_epi8(g, _mm256_loadu_si256((const __m256i *)q6_scale_shuffle[0]));
            const __m256i s1 = _mm256_shuffle_epi8(g, _mm256_loadu_si256((const __m256i *)q6_scale_shuffle[1]));
            const __m256i s2 = _mm256_shuffle_epi8(g, _mm256_loadu_si256((const __m256i *)q6_scale_shuffle[2]));
            const __m256i s3 = _mm256_shuffle_epi8(g, _mm256_loadu_si256((const __m256i *)q6_scale_shuffle[3]));
            for (int c = 0; c < nc; c++) {
                const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 128 * h;
                const __m256i p0 = _mm256_madd_epi16(s0, _mm256_maddubs_epi16(w0, _mm256_loadu_si256((const __m256i *)(q8 + 0))));
                const __m256i p1 = _mm256_madd_epi16(s1, _mm256_maddubs_epi16(w1, _mm256_loadu_si256((const __m256i *)(q8 + 32))));
                const __m256i p2 = _mm256_madd_epi16(s2, _mm256_maddubs_epi16(w2, _mm256_loadu_si256((const __m256i *)(q8 + 64))));
                const __m256i p3 = _mm256_madd_epi16(s3, _mm256_maddubs_epi16(w3, _mm256_loadu_si256((const __m256i *)(q8 + 96))));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)));
            }
        }
        for (int c = 0; c < nc; c++) {
            const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)c * as) + i;
            const __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);  // Σ sc·bsum
            const __m256i s = _mm256_sub_epi32(sumi[c], _mm256_slli_epi32(corr, 5));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(xd * y->d), _mm256_cvtepi32_ps(s), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c * os] = hsum8(acc[c]);
}

// MARK: 512-bit K-format tiles (AVX-512BW, with AVX-512 VNNI where present)
//
// Same results, bit for bit, as the 256-bit tiles above: a 512-bit register holds two of the
// 256-bit integer vectors side by side (the low and high nibbles of a 32-byte load, or two
// consecutive 32-byte chunks of a Q6_K half), the integer sums are formed lane for lane as
// before, and at the end of a block the two 256-bit halves are added into the same 8 int32
// lanes the 256-bit tile produces. Integer sums are exact, so the lanes hold the same values;
// the float work per block is then literally the 256-bit tile's code. With VNNI, vpdpwssd fuses
// the scale multiply-add (vpmaddwd) with the accumulation (vpaddd): same integers.
#if defined(__AVX512F__) && defined(__AVX512BW__)

#define ARBOR_HAVE_AVX512 1

/// The two 256-bit halves of v, added: the 8 int32 lanes the 256-bit tile accumulates.
ARBOR_INLINE __m256i fold512(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

/// fold512 of two rows at once: [fold512(u) | fold512(v)].
ARBOR_INLINE __m512i fold512x2(__m512i u, __m512i v) {
    return _mm512_add_epi32(_mm512_shuffle_i64x2(u, v, 0x44), _mm512_shuffle_i64x2(u, v, 0xEE));
}

/// [*p × 8 | *q × 8]: two broadcasts from memory, the second merge-masked into the high half.
ARBOR_INLINE __m512 broadcast_pair(const float *p, const float *q) {
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(*p), 0xFF00, _mm_load_ss(q));
}

/// The low and high 8 floats of v.
ARBOR_INLINE __m256 lo256_ps(__m512 v) { return _mm512_castps512_ps256(v); }
ARBOR_INLINE __m256 hi256_ps(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

/// k4_scale_shuffle for a 512-bit register: the low 256 bits broadcast scale 2j, the high 256
/// bits scale 2j+1 (every 128-bit lane holds all 8 int16 scales).
static const uint8_t k4_scale_shuffle512[4][64] = {
#define ARBOR_REP16(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
#define ARBOR_PAIR(s) ARBOR_REP16(2 * (2 * s), 2 * (2 * s) + 1), ARBOR_REP16(2 * (2 * s), 2 * (2 * s) + 1), \
                      ARBOR_REP16(2 * (2 * s + 1), 2 * (2 * s + 1) + 1), ARBOR_REP16(2 * (2 * s + 1), 2 * (2 * s + 1) + 1)
    {ARBOR_PAIR(0)}, {ARBOR_PAIR(1)}, {ARBOR_PAIR(2)}, {ARBOR_PAIR(3)},
#undef ARBOR_PAIR
#undef ARBOR_REP16
};

/// Q4_K, 512 bits: per 64 elements one vpmaddubsw and one vpdpwssd for each activation row.
/// The float work of two rows runs side by side in one 512-bit register (lanes 0-7 row c, 8-15
/// row c+1): per lane the same multiplies and FMAs, with the same values, as the 256-bit tile.
/// The min term is the 256-bit tile's, with its four vpmaddwd folded into two 512-bit ones.
ARBOR_INLINE void tile_q4_K_512(int64_t n, const blk_q4_K *x, const uint8_t *a, size_t as, float *out, int64_t os, const int nc, const q8K_group *g) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i mins_lo = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5);
    const __m512i mins_hi = _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7);
    __m512 acc2[4];  // rows 2k | 2k+1
    __m256 acc1 = _mm256_setzero_ps();  // row nc-1 when nc is odd
    __m256 accm = _mm256_setzero_ps();  // the min chains, lane c = row c
    for (int c = 0; c + 1 < nc; c += 2) acc2[c / 2] = _mm512_setzero_ps();
    // With a batch the block's scales and mins are unpacked one block ahead: every multiply-add
    // of a block waits for them, and their chain of shifts and shuffles is long (7 % faster at
    // nc = 8; at nc = 1 it is 7 % slower, so a lone row unpacks them in place).
    __m256i scmn_next = nc > 1 ? _mm256_cvtepu8_epi16(k4_scales_mins(x[0].scales)) : _mm256_setzero_si256();
    for (int64_t i = 0; i < n / QK_K; i++) {
        // With a batch, each weight block takes long enough that the hardware prefetcher falls
        // behind: streaming the weights from memory instead of L3 cost 15 % here (Q4_K, 8 rows)
        // and 2.2× for Q6_K's long ffn_down rows. Asking for them 4 KB ahead brings both back to
        // within 10 % of L3 speed. Alone (nc = 1) a row streams at full speed without it.
        if (nc > 1) {
            const char *ahead = (const char *)(x + i) + 4096;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            _mm_prefetch(ahead + 128, _MM_HINT_T0);
        }
        const __m256i scmn = nc > 1 ? scmn_next : _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        if (nc > 1 && i + 1 < n / QK_K) scmn_next = _mm256_cvtepu8_epi16(k4_scales_mins(x[i + 1].scales));
        const __m512i sc16x4 = _mm512_broadcast_i32x4(_mm256_castsi256_si128(scmn));
        const float xd = fp16_to_fp32(x[i].d), xdmin = fp16_to_fp32(x[i].dmin);
        __m512i sumi[8];
        for (int j = 0; j < 4; j++) {
            // [low nibbles (sub-block 2j) | high nibbles (sub-block 2j+1)] of 32 bytes.
            // The 32 bytes in both halves (a broadcast load), the high half shifted by 4: no insert.
            const __m512i bits = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j)));
            const __m512i q = _mm512_and_si512(_mm512_mask_srli_epi16(bits, 0xFFFF0000, bits, 4), m4);
            const __m512i s = _mm512_shuffle_epi8(sc16x4, _mm512_loadu_si512((const void *)k4_scale_shuffle512[j]));
            for (int c = 0; c < nc; c++) {
                const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 64 * j;
                const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)q8));
                sumi[c] = j == 0 ? _mm512_madd_epi16(s, p) : dpwssd512(sumi[c], s, p);
            }
        }
        const __m256 yd8 = _mm256_loadu_ps(g[i].yd);
        const __m512 vxd = _mm512_set1_ps(xd);
        for (int c = 0; c + 1 < nc; c += 2) {
            const __m512 yd = _mm512_permutexvar_ps(_mm512_setr_epi32(c, c, c, c, c, c, c, c, c + 1, c + 1, c + 1, c + 1, c + 1, c + 1, c + 1, c + 1),
                                                    _mm512_castps256_ps512(yd8));
            acc2[c / 2] = _mm512_fmadd_ps(_mm512_mul_ps(vxd, yd), _mm512_cvtepi32_ps(fold512x2(sumi[c], sumi[c + 1])), acc2[c / 2]);
        }
        if (nc & 1) {
            const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)(nc - 1) * as) + i;
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(xd * y->d), _mm256_cvtepi32_ps(fold512(sumi[nc - 1])), acc1);
        }
        const __m512i scmn512 = _mm512_castsi256_si512(scmn);
        const __m512i pm = dpwssd512(_mm512_madd_epi16(_mm512_loadu_si512((const void *)g[i].bs[0]), _mm512_permutexvar_epi32(mins_lo, scmn512)),
                                     _mm512_loadu_si512((const void *)g[i].bs[1]), _mm512_permutexvar_epi32(mins_hi, scmn512));
        accm = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(-xdmin), yd8), _mm256_cvtepi32_ps(fold512(pm)), accm);
    }
    for (int c = 0; c + 1 < nc; c += 2) {
        k4_store(out, os, c, hsum8(lo256_ps(acc2[c / 2])), accm);
        k4_store(out, os, c + 1, hsum8(hi256_ps(acc2[c / 2])), accm);
    }
    if (nc & 1) k4_store(out, os, nc - 1, hsum8(acc1), accm);
}

/// q6_scale_shuffle for a 512-bit register: masks 2k and 2k+1 side by side.
static const uint8_t q6_scale_shuffle512[2][64] = {
#define ARBOR_REP8(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
    {ARBOR_REP8(0, 1), ARBOR_REP8(2, 3), ARBOR_REP8(4, 5), ARBOR_REP8(6, 7)},
    {ARBOR_REP8(8, 9), ARBOR_REP8(10, 11), ARBOR_REP8(12, 13), ARBOR_REP8(14, 15)},
#undef ARBOR_REP8
};

/// Q6_K, 512 bits: the 256-bit tile's w0|w1 and w2|w3 pairs, one vpmaddubsw and one vpdpwssd
/// per 64 elements for each activation row. The -32 offset term (-32·Σ sc·bsum) joins the integer
/// sum in the low 256 bits before the fold (exact integers, so the same lanes as the 256-bit
/// tile's sub); the float FMA of two rows runs side by side as in the Q4_K tile.
ARBOR_INLINE void tile_q6_K_512(int64_t n, const blk_q6_K *x, const uint8_t *a, size_t as, float *out, int64_t os, const int nc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m512 acc2[4];  // rows 2k | 2k+1
    __m256 acc1 = _mm256_setzero_ps();  // row nc-1 when nc is odd
    for (int c = 0; c + 1 < nc; c += 2) acc2[c / 2] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        if (nc > 1) {  // as in the Q4_K tile
            const char *ahead = (const char *)(x + i) + 4096;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            _mm_prefetch(ahead + 128, _MM_HINT_T0);
            _mm_prefetch(ahead + 192, _MM_HINT_T0);
        }
        const float xd = fp16_to_fp32(x[i].d);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);  // [16] int8
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);                      // [16] int16
        // [-32·sc | 0]: |-32·sc| ≤ 4096 fits int16; the high half meets no data (zeroed bsums).
        const __m512i corr_sc = _mm512_castsi256_si512(_mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32)));
        __m512i sumi[8];
        for (int c = 0; c < nc; c++) {
            const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)c * as) + i;
            sumi[c] = _mm512_madd_epi16(_mm512_maskz_loadu_epi16(0x0000FFFF, y->bsums),
                                        _mm512_maskz_mov_epi16(0x0000FFFF, corr_sc));
        }
        for (int h = 0; h < 2; h++) {
            // ql: 64 bytes = [l1 | l2]; qh as [qh | qh >> 2], so one mask and shift per pair gives
            // [w0 | w1] and [w2 | w3] of the 256-bit tile.
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m512i l = _mm512_loadu_si512((const void *)(x[i].ql + 64 * h));
            const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            const __m512i w01 = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(hh, m2), 4));
            const __m512i w23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hh, 4), m2), 4));
            // Scales 8h...8h+7 (128-bit half h of sc16) in every 128-bit lane, then shuffled in-lane.
            const __m512i g = _mm512_broadcast_i32x4(h == 0 ? _mm256_castsi256_si128(sc16) : _mm256_extracti128_si256(sc16, 1));
            const __m512i s01 = _mm512_shuffle_epi8(g, _mm512_loadu_si512((const void *)q6_scale_shuffle512[0]));
            const __m512i s23 = _mm512_shuffle_epi8(g, _mm512_loadu_si512((const void *)q6_scale_shuffle512[1]));
            for (int c = 0; c < nc; c++) {
                const int8_t *q8 = ((const blk_q8_K *)(a + (size_t)c * as) + i)->qs + 128 * h;
                sumi[c] = dpwssd512(sumi[c], s01, _mm512_maddubs_epi16(w01, _mm512_loadu_si512((const void *)q8)));
                sumi[c] = dpwssd512(sumi[c], s23, _mm512_maddubs_epi16(w23, _mm512_loadu_si512((const void *)(q8 + 64))));
            }
        }
        const __m512 vxd = _mm512_set1_ps(xd);
        for (int c = 0; c + 1 < nc; c += 2) {
            const blk_q8_K *y0 = (const blk_q8_K *)(a + (size_t)c * as) + i;
            const blk_q8_K *y1 = (const blk_q8_K *)(a + (size_t)(c + 1) * as) + i;
            const __m512 d = _mm512_mul_ps(vxd, broadcast_pair(&y0->d, &y1->d));
            acc2[c / 2] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(fold512x2(sumi[c], sumi[c + 1])), acc2[c / 2]);
        }
        if (nc & 1) {
            const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)(nc - 1) * as) + i;
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(xd * y->d), _mm256_cvtepi32_ps(fold512(sumi[nc - 1])), acc1);
        }
    }
    for (int c = 0; c + 1 < nc; c += 2) {
        out[c * os] = hsum8(lo256_ps(acc2[c / 2]));
        out[(c + 1) * os] = hsum8(hi256_ps(acc2[c / 2]));
    }
    if (nc & 1) out[(nc - 1) * os] = hsum8(acc1);
}

#endif  // AVX-512BW

// MARK: float weights · F32 (one activation row at a time; the weight row stays in L1)

ARBOR_INLINE __m256 load_f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
ARBOR_INLINE __m256 load_bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
ARBOR_INLINE __m256 load_f32x8(const void *p) { return _mm256_loadu_ps((const float *)p); }

/// 4 accumulators × 8 lanes over 32 elements, then 8, then a scalar tail: a fixed order for a given n.
#define FLOAT_DOT(NAME, WT, LOAD, CVT1)                                                          \
    static float NAME(int64_t n, const WT *w, const float *x) {                                  \
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                              \
        int64_t i = 0;                                                                           \
        for (; i + 32 <= n; i += 32) {                                                           \
            s0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), s0);                       \
            s1 = _mm256_fmadd_ps(LOAD(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);               \
            s2 = _mm256_fmadd_ps(LOAD(w + i + 16), _mm256_loadu_ps(x + i + 16), s2);             \
            s3 = _mm256_fmadd_ps(LOAD(w + i + 24), _mm256_loadu_ps(x + i + 24), s3);             \
        }                                                                                        \
        for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), s0); \
        float sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));          \
        for (; i < n; i++) sum += CVT1(w[i]) * x[i];                                             \
        return sum;                                                                              \
    }

ARBOR_INLINE float id_f32(float v) { return v; }
FLOAT_DOT(dot_f32_avx2, float, load_f32x8, id_f32)
FLOAT_DOT(dot_f16_avx2, uint16_t, load_f16x8, fp16_to_fp32)
FLOAT_DOT(dot_bf16_avx2, uint16_t, load_bf16x8, bf16_to_fp32)

// MARK: tile entry points (nc specialised to a constant so acc[]/sumi[] live in registers)

/// Groups of 8 activation rows; `G` is the group's q8K_group data (n / QK_K entries per group).
#define GROUP(c) (groups ? groups + (c) / 8 * nb : NULL)
#define TILE_DRIVER(NAME, CALL)                                                                     \
    static void NAME(int64_t n, const void *w, const uint8_t *a, size_t as, int64_t nc, float *out, \
                     int64_t os, const q8K_group *groups) {                                         \
        int64_t c = 0;                                                                              \
        const int64_t nb = n / QK_K;                                                                \
        for (; c + 8 <= nc; c += 8) CALL(a + (size_t)c * as, out + c * os, 8, GROUP(c));            \
        const q8K_group *G = GROUP(c);                                                              \
        (void)G;                                                                                    \
        switch (nc - c) {                                                                           \
        case 7: CALL(a + (size_t)c * as, out + c * os, 7, G); break;                                \
        case 6: CALL(a + (size_t)c * as, out + c * os, 6, G); break;                                \
        case 5: CALL(a + (size_t)c * as, out + c * os, 5, G); break;                                \
        case 4: CALL(a + (size_t)c * as, out + c * os, 4, G); break;                                \
        case 3: CALL(a + (size_t)c * as, out + c * os, 3, G); break;                                \
        case 2: CALL(a + (size_t)c * as, out + c * os, 2, G); break;                                \
        case 1: CALL(a + (size_t)c * as, out + c * os, 1, G); break;                                \
        default: break;                                                                             \
        }                                                                                           \
    }

#define CALL_Q4_0(A, O, NC, G) tile_q8_0_family(n, w, sizeof(blk_q4_0), wq_q4_0, A, as, O, os, NC)
#define CALL_Q5_0(A, O, NC, G) tile_q8_0_family(n, w, sizeof(blk_q5_0), wq_q5_0, A, as, O, os, NC)
#define CALL_Q8_0(A, O, NC, G) tile_q8_0_family(n, w, sizeof(blk_q8_0), wq_q8_0, A, as, O, os, NC)
#define CALL_Q4_1(A, O, NC, G) tile_q8_1_family(n, w, sizeof(blk_q4_1), wq_q4_1, A, as, O, os, NC)
#define CALL_Q5_1(A, O, NC, G) tile_q8_1_family(n, w, sizeof(blk_q5_1), wq_q5_1, A, as, O, os, NC)
#define CALL_Q4_K(A, O, NC, G) tile_q4_K_n(n, w, A, as, O, os, NC, G)
#define CALL_Q5_K(A, O, NC, G) tile_q5_K_n(n, w, A, as, O, os, NC)
#define CALL_Q6_K(A, O, NC, G) tile_q6_K_n(n, w, A, as, O, os, NC)

TILE_DRIVER(avx2_q4_0, CALL_Q4_0)
TILE_DRIVER(avx2_q5_0, CALL_Q5_0)
TILE_DRIVER(avx2_q8_0, CALL_Q8_0)
TILE_DRIVER(avx2_q4_1, CALL_Q4_1)
TILE_DRIVER(avx2_q5_1, CALL_Q5_1)
TILE_DRIVER(avx2_q4_K, CALL_Q4_K)
TILE_DRIVER(avx2_q5_K, CALL_Q5_K)
TILE_DRIVER(avx2_q6_K, CALL_Q6_K)

#ifdef ARBOR_HAVE_AVX512
#define CALL_Q4_K_512(A, O, NC, G) tile_q4_K_512(n, w, A, as, O, os, NC, G)
#define CALL_Q6_K_512(A, O, NC, G) tile_q6_K_512(n, w, A, as, O, os, NC)
TILE_DRIVER(avx512_q4_K, CALL_Q4_K_512)
TILE_DRIVER(avx512_q6_K, CALL_Q6_K_512)
#endif

#define FLOAT_TILE(NAME, WT, FN)                                                                    \
    static void NAME(int64_t n, const void *w, const uint8_t *a, size_t as, int64_t nc, float *out, \
                     int64_t os, const q8K_group *groups) {                                         \
        (void)groups;                                                                               \
        for (int64_t c = 0; c < nc; c++) out[c * os] = FN(n, (const WT *)w, (const float *)(a + (size_t)c * as)); \
    }
FLOAT_TILE(avx2_f32, float, dot_f32_avx2)
FLOAT_TILE(avx2_f16, uint16_t, dot_f16_avx2)
FLOAT_TILE(avx2_bf16, uint16_t, dot_bf16_avx2)

#endif  // AVX2

arbor_tile_fn arbor_avx2_tile(uint32_t wtype) {
#ifdef ARBOR_HAVE_AVX2
    switch (wtype) {
    case ARBOR_TYPE_F32: return avx2_f32;
    case ARBOR_TYPE_F16: return avx2_f16;
    case ARBOR_TYPE_BF16: return avx2_bf16;
    case ARBOR_TYPE_Q4_0: return avx2_q4_0;
    case ARBOR_TYPE_Q4_1: return avx2_q4_1;
    case ARBOR_TYPE_Q5_0: return avx2_q5_0;
    case ARBOR_TYPE_Q5_1: return avx2_q5_1;
    case ARBOR_TYPE_Q8_0: return avx2_q8_0;
    case ARBOR_TYPE_Q4_K: return avx2_q4_K;
    case ARBOR_TYPE_Q5_K: return avx2_q5_K;
    case ARBOR_TYPE_Q6_K: return avx2_q6_K;
    default: break;
    }
#else
    (void)wtype;
#endif
    return NULL;
}

arbor_tile_fn arbor_fast_tile(uint32_t wtype) {
#ifdef ARBOR_HAVE_AVX512
    switch (wtype) {
    case ARBOR_TYPE_Q4_K: return avx512_q4_K;
    case ARBOR_TYPE_Q6_K: return avx512_q6_K;
    default: break;
    }
#endif
    const arbor_tile_fn fn = arbor_avx2_tile(wtype);
    return fn ? fn : arbor_scalar_tile(wtype);
}

int arbor_vec_dot_is_simd(uint32_t wtype) {
#ifdef ARBOR_HAVE_AVX2
    return arbor_vec_dot_type(wtype) != ARBOR_TYPE_NONE;
#else
    (void)wtype;
    return 0;
#endif
}

int arbor_vec_dot_is_avx512(uint32_t wtype) {
#ifdef ARBOR_HAVE_AVX512
    return wtype == ARBOR_TYPE_Q4_K || wtype == ARBOR_TYPE_Q6_K;
#else
    (void)wtype;
    return 0;
#endif
}
