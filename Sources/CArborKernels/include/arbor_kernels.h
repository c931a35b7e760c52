// CArborKernels: ggml-compatible quantization kernels and a small thread pool.
//
// Layouts are ggml's (GGUF tensor data is used in place). Weight types and the activation
// ("vec dot") type each one is multiplied with, as in llama.cpp's CPU backend:
//   Q4_0, Q5_0, Q8_0 · Q8_0     Q4_1, Q5_1 · Q8_1     Q4_K, Q5_K, Q6_K · Q8_K
//   F32, F16, BF16 · F32 (the activation row stays float)
//
// Every dot depends only on its two input rows: a token scored alone or inside a batch gets
// bit-identical results.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// ggml_type values of the formats these kernels know.
enum {
    ARBOR_TYPE_F32 = 0,
    ARBOR_TYPE_F16 = 1,
    ARBOR_TYPE_Q4_0 = 2,
    ARBOR_TYPE_Q4_1 = 3,
    ARBOR_TYPE_Q5_0 = 6,
    ARBOR_TYPE_Q5_1 = 7,
    ARBOR_TYPE_Q8_0 = 8,
    ARBOR_TYPE_Q8_1 = 9,
    ARBOR_TYPE_Q4_K = 12,
    ARBOR_TYPE_Q5_K = 13,
    ARBOR_TYPE_Q6_K = 14,
    ARBOR_TYPE_Q8_K = 15,
    ARBOR_TYPE_BF16 = 30,
};
#define ARBOR_TYPE_NONE UINT32_MAX

// MARK: Types

/// Elements per block (1 for float types), or 0 for a type these kernels do not know.
int64_t arbor_type_block_size(uint32_t type);
/// Bytes per block, or 0 for an unknown type.
int64_t arbor_type_block_bytes(uint32_t type);
/// Bytes of a row of `n` elements, or -1 if the type is unknown or n is not a whole number of blocks.
int64_t arbor_row_bytes(uint32_t type, int64_t n);
/// The activation type a weight type is multiplied with, or ARBOR_TYPE_NONE if there is no dot for it.
uint32_t arbor_vec_dot_type(uint32_t weight_type);

// MARK: Dequantization and quantization

/// Dequantize `n` elements (a whole number of blocks) of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q8_0, Q4_K, Q5_K, Q6_K (and the activation formats Q8_1, Q8_K), bit-identical to ggml.
/// Returns 0, or nonzero for an unsupported type or a bad n.
int arbor_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/// ggml's quantize_row_q8_0_ref / q8_1_ref / q8_K_ref (n a multiple of 32, 32, 256).
void arbor_quantize_row_q8_0(const float *x, void *dst, int64_t n);
void arbor_quantize_row_q8_1(const float *x, void *dst, int64_t n);
void arbor_quantize_row_q8_K(const float *x, void *dst, int64_t n);
/// Quantize an activation row to a vec-dot type (F32 copies). Returns nonzero on a bad type or n.
int arbor_quantize_activation_row(uint32_t vec_dot_type, const float *x, void *dst, int64_t n);
/// Quantize a row to any known type. Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K, F16, BF16 are ggml's
/// reference quantizers; Q4_K, Q5_K, Q6_K are simple min/max quantizers (valid blocks, but not
/// ggml's error-minimising search), for tests and tiny synthetic models.
int arbor_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);

// MARK: Dot products

/// Dot one weight row (`n` elements of `weight_type`) with `ncols` activation rows in the weight
/// type's vec-dot type, the c-th at `(const char *)acts + c * act_stride`:
///   out[c * out_stride] = Σ_i w[i] · a_c[i].
/// `arbor_vec_dot` uses AVX2 kernels where this build has them (see arbor_vec_dot_is_simd),
/// `arbor_vec_dot_scalar` the portable reference. Returns nonzero for an unsupported type or n.
int arbor_vec_dot(uint32_t weight_type, int64_t n, const void *w, const void *acts, size_t act_stride,
                  int64_t ncols, float *out, int64_t out_stride);
int arbor_vec_dot_scalar(uint32_t weight_type, int64_t n, const void *w, const void *acts, size_t act_stride,
                         int64_t ncols, float *out, int64_t out_stride);
/// 1 if arbor_vec_dot runs SIMD code for this weight type on this build.
int arbor_vec_dot_is_simd(uint32_t weight_type);
/// The 256-bit AVX2 kernels even where arbor_vec_dot uses wider ones (AVX-512 for Q4_K and Q6_K),
/// for tests: both must give the same bits. Returns nonzero where this build has no AVX2 kernel.
int arbor_vec_dot_avx2(uint32_t weight_type, int64_t n, const void *w, const void *acts, size_t act_stride,
                       int64_t ncols, float *out, int64_t out_stride);
/// 1 if arbor_vec_dot uses 512-bit kernels for this weight type on this build.
int arbor_vec_dot_is_avx512(uint32_t weight_type);

/// Rows [row_begin, row_end) of y = W·A for `ncols` activation rows:
///   y[c * y_stride + r] = dot(W row r, activation row c)
/// W rows are `w_row_bytes` apart, activation rows (already in the vec-dot type) `act_row_bytes`.
/// Rows and activations are blocked for the cache; each result is the same as arbor_vec_dot's.
int arbor_matmul_rows(uint32_t weight_type, int64_t n, const void *w, size_t w_row_bytes,
                      int64_t row_begin, int64_t row_end, const void *acts, size_t act_row_bytes,
                      int64_t ncols, float *y, int64_t y_stride);

// MARK: Thread pool

/// gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^-gate[i]) · up[i] (SwiGLU). Each element
/// depends only on its own inputs, bit for bit, whatever n (see activation.c for the exp).
void arbor_swiglu_f32(float *gate, const float *up, int64_t n);

/// Q4_K and Q6_K with 8 weight rows interleaved (see x8.c), for builds with AVX-512.
/// 1 if this build has the x8 kernels.
int arbor_x8_available(void);
/// Bytes of the interleaved copy of `rows` × `n` Q4_K weights, or -1 unless rows % 8 == 0.
int64_t arbor_q4_K_x8_bytes(int64_t rows, int64_t n);
/// Writes the interleaved copy of `rows` ggml-layout Q4_K rows (`row_bytes` apart) to `dst`.
int arbor_q4_K_x8_pack(const void *src, size_t row_bytes, int64_t rows, int64_t n, void *dst);
/// The same for row groups [group_begin, group_end) only (rows 8·g...8·g+7 of `src`; `dst` is the
/// start of the whole copy), so a large matrix can be packed by several threads.
int arbor_q4_K_x8_pack_groups(const void *src, size_t row_bytes, int64_t n, int64_t group_begin, int64_t group_end,
                              void *dst);
/// Q6_K counterparts (same layout idea, same availability as the Q4_K kernel).
int64_t arbor_q6_K_x8_bytes(int64_t rows, int64_t n);
int arbor_q6_K_x8_pack_groups(const void *src, size_t row_bytes, int64_t n, int64_t group_begin, int64_t group_end,
                              void *dst);
int arbor_matmul_q6_K_x8(int64_t n, const void *packed, int64_t group_begin, int64_t group_end,
                         const void *acts, size_t act_row_bytes, int64_t ncols, float *y, int64_t y_stride);
/// y[c * y_stride + r] for weight rows r of groups [group_begin, group_end) (8 rows each) and
/// activation rows c < ncols (Q8_K, act_row_bytes apart). Returns nonzero without the kernel.
int arbor_matmul_q4_K_x8(int64_t n, const void *packed, int64_t group_begin, int64_t group_end,
                         const void *acts, size_t act_row_bytes, int64_t ncols, float *y, int64_t y_stride);

/// Persistent worker threads. `threads` counts the calling thread: 2 means one worker.
/// Idle workers spin for `spin_ns` nanoseconds, then sleep on a condition variable.
typedef struct arbor_pool arbor_pool;
typedef void (*arbor_task_fn)(void *ctx, int64_t index);
arbor_pool *arbor_pool_create(int threads, int64_t spin_ns);
void arbor_pool_destroy(arbor_pool *pool);
int arbor_pool_threads(const arbor_pool *pool);
/// Run fn(ctx, i) for i in [0, count), spread over the caller and the workers; returns when all are
/// done. Calls from several threads are serialised; a call from inside a task runs inline.
void arbor_pool_run(arbor_pool *pool, int64_t count, arbor_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#include "arbor_attention.h"
