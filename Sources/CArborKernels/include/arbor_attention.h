#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Attention of the `g` query heads that share one key/value head (grouped-query attention)
/// over a list of cache slots, with the numerics of ggml's CPU flash attention (llama.cpp's
/// default): F16 keys and values, each score an F16·F16 dot in F32 lanes in ggml's order, an
/// online softmax, and the weighted sum of values kept in F16, rounded after every key. So
/// Arbor's logits track the reference engine's (FidelityTests).
///
/// The arithmetic is fixed by the slot list alone, so a token's result never depends on the
/// rest of its batch, on the thread count, or on how the work was split (batch invariance):
/// - the list is cut into segments of `ARBOR_ATTEND_SEGMENT` slots, counted from its start;
///   each segment starts from an empty state, and segment states are merged left to right in
///   F32 (`arbor_attend_merge`), so sums never run longer than a segment in F16;
/// - within a segment, keys are taken in chunks of `ARBOR_ATTEND_CHUNK`: the chunk's rows are
///   widened to F32 once for every query head (and every token) that reads them, its scores
///   computed, its weights taken with one vectorised exp, then its values folded in key order.
/// `arbor_attend` does all of it in one call; a caller that splits a long list across threads
/// (flash-decoding) computes each segment with `arbor_attend_partial`, then merges the states in
/// order and finishes, and gets the same bits.
///
/// A state holds `arbor_attend_state_size(g, dv)` floats: the running maximum [g], the sum of
/// weights [g], then the weighted sum of values [g, dv].
///
/// - q:        [g, dk] queries (F32; callers round them to F16 values, as the keys are F16)
/// - keys:     F16 rows; slot s starts at keys + s * key_stride
/// - values:   F16 rows; slot s starts at values + s * value_stride
/// - slots:    [n_slots] slot indices, in the order the keys are visited
/// - scale:    multiplies each score (1/sqrt(dk), or 1 when the query was pre-scaled)
enum { ARBOR_ATTEND_MAX_GROUP = 16, ARBOR_ATTEND_MAX_DIM = 256, ARBOR_ATTEND_CHUNK = 16, ARBOR_ATTEND_SEGMENT = 512 };

static inline int64_t arbor_attend_state_size(int64_t g, int64_t dv) { return g * (dv + 2); }

/// One segment's state (at most `ARBOR_ATTEND_SEGMENT` slots, so callers pass a segment at a
/// time; longer lists are the caller's error and are cut there).
void arbor_attend_partial(const float *q, int64_t g, const uint16_t *keys, int64_t key_stride,
                          const uint16_t *values, int64_t value_stride,
                          const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                          float *state);

/// state = state ∘ other: both rescaled to their common maximum and added.
void arbor_attend_merge(int64_t g, int64_t dv, float *state, const float *other);

/// out[g, dv] = weighted sum ÷ sum of weights (zeros for an empty list).
void arbor_attend_finish(int64_t g, int64_t dv, const float *state, float *out);

/// The whole list: every segment's partial, merged in order, finished into `out` [g, dv].
/// `scratch` holds 2 × arbor_attend_state_size(g, dv) floats.
void arbor_attend(const float *q, int64_t g, const uint16_t *keys, int64_t key_stride,
                  const uint16_t *values, int64_t value_stride,
                  const int32_t *slots, int64_t n_slots, int64_t dk, int64_t dv, float scale,
                  float *scratch, float *out);

/// `arbor_attend` for `t` tokens at once (token i: queries q + i * q_stride, slot list
/// slots + i * slot_stride of n_slots[i] entries, result out + i * out_stride; scratch holds
/// 2 × t states). The first `shared` entries of all lists must be the same slots (a prompt's
/// tokens all see the cache before it): their rows are widened once for all t tokens. Each
/// token's result is bit-identical to its own `arbor_attend`.
void arbor_attend_many(int64_t t, const float *q, int64_t q_stride, int64_t g,
                       const uint16_t *keys, int64_t key_stride, const uint16_t *values, int64_t value_stride,
                       const int32_t *slots, int64_t slot_stride, const int64_t *n_slots, int64_t shared,
                       int64_t dk, int64_t dv, float scale, float *scratch, float *out, int64_t out_stride);

#ifdef __cplusplus
}
#endif
