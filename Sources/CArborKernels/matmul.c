// Dot-product entry points and the cache-blocked row loop of a matmul.
#include "quants.h"
#include <stdlib.h>

static int check(uint32_t wtype, int64_t n, arbor_tile_fn fn) {
    if (!fn) return -1;
    const int64_t bs = arbor_type_block_size(arbor_vec_dot_type(wtype));
    const int64_t wbs = arbor_type_block_size(wtype);
    if (n < 0 || bs <= 0 || wbs <= 0 || n % bs != 0 || n % wbs != 0) return -1;
    return 0;
}

void q8K_groups_fill(const uint8_t *a, size_t as, int64_t nc, int64_t n, q8K_group *groups) {
    const int64_t nb = n / QK_K;
    for (int64_t g = 0; g < (nc + 7) / 8; g++) {
        for (int64_t i = 0; i < nb; i++) {
            q8K_group *x = groups + g * nb + i;
            memset(x, 0, sizeof *x);
            for (int64_t c = 0; c < 8 && 8 * g + c < nc; c++) {
                const blk_q8_K *y = (const blk_q8_K *)(a + (size_t)(8 * g + c) * as) + i;
                x->yd[c] = y->d;
                for (int j = 0; j < 8; j++) {  // j = 4q + 2h + e: int16 2(c + 8h) + e of bs[q]
                    x->bs[j / 4][2 * (c + 8 * ((j / 2) % 2)) + j % 2] = (int16_t)(y->bsums[2 * j] + y->bsums[2 * j + 1]);
                }
            }
        }
    }
}

const q8K_group *q8K_groups_for(const uint8_t *a, size_t as, int64_t nc, int64_t n) {
    // One buffer per thread (the pool's workers each fill their own), kept for the next call:
    // after the first matmul of a size nothing is allocated.
    static _Thread_local q8K_group *buffer;
    static _Thread_local size_t capacity;
    const size_t count = (size_t)((nc + 7) / 8 * (n / QK_K));
    if (count > capacity) {
        free(buffer);
        buffer = malloc(count * sizeof(q8K_group));
        if (!buffer) abort();  // a few KB per thread; nothing sensible remains if this fails
        capacity = count;
    }
    q8K_groups_fill(a, as, nc, n, buffer);
    return buffer;
}

/// The q8K_group data a tile for `wtype` reads, or NULL when its activations are not Q8_K.
static const q8K_group *groups_for(uint32_t wtype, const void *acts, size_t as, int64_t nc, int64_t n) {
    if (arbor_vec_dot_type(wtype) != ARBOR_TYPE_Q8_K || nc == 0) return NULL;
    return q8K_groups_for(acts, as, nc, n);
}

int arbor_vec_dot(uint32_t wtype, int64_t n, const void *w, const void *acts, size_t act_stride,
                  int64_t ncols, float *out, int64_t out_stride) {
    const arbor_tile_fn fn = arbor_fast_tile(wtype);
    if (check(wtype, n, fn)) return -1;
    fn(n, w, acts, act_stride, ncols, out, out_stride, groups_for(wtype, acts, act_stride, ncols, n));
    return 0;
}

int arbor_vec_dot_scalar(uint32_t wtype, int64_t n, const void *w, const void *acts, size_t act_stride,
                         int64_t ncols, float *out, int64_t out_stride) {
    const arbor_tile_fn fn = arbor_scalar_tile(wtype);
    if (check(wtype, n, fn)) return -1;
    fn(n, w, acts, act_stride, ncols, out, out_stride, groups_for(wtype, acts, act_stride, ncols, n));
    return 0;
}

// Cache blocking for batches: a block of activation rows sized for L1 (~32 KB) is swept over a
// block of weight rows sized for L2 (~256 KB; 1 MB per core here), so inside a sweep every weight
// row is read from L2 once per activation block and the activations come from L1. Without it a
// large batch re-streams the weights from memory once per group of activation rows.
// (Very long rows, e.g. K = 8960 of ffn_down, still stream 8 activation rows from L2 per weight
// row: splitting K into chunks would fix that and is left to tuning.)
// For batch 1 (decode) this is a plain loop over the rows. Blocking changes only the order in which
// independent dots run, never a dot's own arithmetic.
enum { ROW_BLOCK_BYTES = 256 * 1024, COL_BLOCK_BYTES = 32 * 1024 };

int arbor_vec_dot_avx2(uint32_t wtype, int64_t n, const void *w, const void *acts, size_t act_stride,
                       int64_t ncols, float *out, int64_t out_stride) {
    const arbor_tile_fn fn = arbor_avx2_tile(wtype);
    if (check(wtype, n, fn)) return -1;
    fn(n, w, acts, act_stride, ncols, out, out_stride, groups_for(wtype, acts, act_stride, ncols, n));
    return 0;
}

int arbor_matmul_rows(uint32_t wtype, int64_t n, const void *w, size_t w_row_bytes,
                      int64_t row_begin, int64_t row_end, const void *acts, size_t act_row_bytes,
                      int64_t ncols, float *y, int64_t y_stride) {
    const arbor_tile_fn fn = arbor_fast_tile(wtype);
    if (check(wtype, n, fn) || row_begin < 0 || row_end < row_begin || ncols < 0) return -1;
    const uint8_t *wb = w, *ab = acts;
    int64_t row_block = (int64_t)(ROW_BLOCK_BYTES / (w_row_bytes ? w_row_bytes : 1));
    int64_t col_block = (int64_t)(COL_BLOCK_BYTES / (act_row_bytes ? act_row_bytes : 1)) / 8 * 8;
    row_block = row_block < 4 ? 4 : row_block;
    col_block = col_block < 8 ? 8 : col_block;  // the AVX2 tiles take 8 rows at a time
    const q8K_group *groups = groups_for(wtype, acts, act_row_bytes, ncols, n);
    const int64_t nb = n / QK_K;
    for (int64_t r0 = row_begin; r0 < row_end; r0 += row_block) {
        const int64_t r1 = r0 + row_block < row_end ? r0 + row_block : row_end;
        for (int64_t c0 = 0; c0 < ncols; c0 += col_block) {
            const int64_t nc = ncols - c0 < col_block ? ncols - c0 : col_block;
            const q8K_group *g = groups ? groups + c0 / 8 * nb : NULL;  // col_block is a multiple of 8
            for (int64_t r = r0; r < r1; r++) {
                fn(n, wb + (size_t)r * w_row_bytes, ab + (size_t)c0 * act_row_bytes, act_row_bytes, nc,
                   y + c0 * y_stride + r, y_stride, g);
            }
        }
    }
    return 0;
}
