#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Attention of one query head over a list of cache slots, with the numerics of ggml's CPU
/// flash attention (F16 keys and values): the query is rounded to F16, each score is an F16·F16
/// dot accumulated in F32 (four 8-lane accumulators, ggml's reduction order), the softmax is
/// computed online, and the weighted sum of values is accumulated in F16 — exactly as llama.cpp
/// does by default, so Arbor's logits track the reference engine's.
///
/// Slots are visited in the order given; callers pass them in increasing slot order, so a
/// token's result depends only on which keys it sees, never on the rest of the batch.
///
/// - q:        [dk] query (F32, rounded to F16 here)
/// - keys:     F16 rows; slot s starts at keys + s * key_stride
/// - values:   F16 rows; slot s starts at values + s * value_stride
/// - slots:    [n_slots] slot indices
/// - scale:    multiplies each score (1/sqrt(dk), or 1 when the query was pre-scaled)
/// - q16:      [dk] scratch; acc16: [dv] scratch
/// - out:      [dv] result (F32)
void arbor_attend_f16(const float *q, const uint16_t *keys, int64_t key_stride,
                      const uint16_t *values, int64_t value_stride,
                      const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                      uint16_t *q16, uint16_t *acc16, float *out);

enum { ARBOR_ATTEND_MAX_GROUP = 16, ARBOR_ATTEND_MAX_DIM = 256 };

/// `arbor_attend_f16` for the `g` query heads sharing one key/value head, bit-identical to `g`
/// separate calls but widening each key and value row once. `q` is [g, dk], `q16` [g, dk],
/// `acc16` [g, dv], `out` [g, dv].
void arbor_attend_f16_group(const float *q, int64_t g, const uint16_t *keys, int64_t key_stride,
                            const uint16_t *values, int64_t value_stride,
                            const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                            uint16_t *q16, uint16_t *acc16, float *out);

/// ggml_vec_dot_f16: F16·F16 dot in F32 lanes (blocks of 32), the tail in double.
float arbor_dot_f16(const uint16_t *x, const uint16_t *y, int64_t n);

#ifdef __cplusplus
}
#endif
