/* The element-wise loops outside the kernel tables: the norms' row passes, the activations and
 * attention's per-position work. Baseline x86-64 has only 4-wide SSE2, so the Makefile compiles
 * this file once per vector width (loops.o: baseline; loops_avx2.o; loops_avx512.o), each into its
 * own table, and dispatch.c pairs each kernel table with one: PYRUSTML_ISA and q8_isa_set choose
 * these loops too, and the property suite's `isa` fixture runs every width. Element-wise without
 * contraction or reassociation (-ffp-contract=off), so every width rounds each element the same.
 * GeGLU's tanh was ~12% of a GPT-2 prefill with SSE2 alone. */
#include <math.h>

#include "fastmath.h"
#include "q8_internal.h"

#ifndef Q8_LOOPS
#define Q8_LOOPS base /* the table's suffix and name: base, avx2, avx512 */
#endif

/* Row reductions in double over 8 independent partial sums: the vectorized loop keeps them in
 * one register (a single chain of scalar double adds was most of a 4.5 us LayerNorm of 768).
 * The order is fixed, so every width gives the same bits. */
#define NORM_LANES 8

static double sum_f64(const float *x, int64_t n, double center, int squares) {
    double s[NORM_LANES] = {0};
    int64_t i = 0;
    if (squares) {
        for (; i + NORM_LANES <= n; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) {
                const double d = (double)x[i + l] - center;
                s[l] += d * d;
            }
        for (; i < n; i++) {
            const double d = (double)x[i] - center;
            s[i % NORM_LANES] += d * d;
        }
    } else {
        for (; i + NORM_LANES <= n; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) s[l] += (double)x[i + l];
        for (; i < n; i++) s[i % NORM_LANES] += (double)x[i];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static void layernorm_row(const float *x, const float *gamma, const float *beta, int64_t n, float m,
                          float inv, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * inv * gamma[i] + beta[i];
}

static void rmsnorm_row(const float *x, const float *w, int64_t n, float inv, float offset, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv * (offset + w[i]);
}

#define SQRT_2_OVER_PI 0.7978845608028654f

static inline float gelu_tanh1(float v) {
    return 0.5f * v * (1.0f + q8_tanh(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)));
}

static void gelu(const float *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh1(x[i]);
}

static void geglu(const float *gate, const float *up, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh1(gate[i]) * up[i];
}

/* silu(v) = v * sigmoid(v), sigmoid from e = e^-|v| so the exponential never overflows:
 * 1 / (1 + e) for v >= 0, e / (1 + e) below. IEEE like torch's v / (1 + e^-v): silu(+inf) = +inf,
 * silu(-inf) = -inf * 0 = NaN, NaN stays NaN. */
static inline float silu1(float v) {
    const float e = q8_exp_neg(v > 0.0f ? -v : v);
    const float s = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    return v * s;
}

static void swiglu(const float *gate, const float *up, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = silu1(gate[i]) * up[i];
}

/* Scores scaled and soft-capped in place; returns their max (NaN if one is NaN). */
static float block_scores(float *s, int64_t nb, float scale, float softcap) {
    if (softcap > 0.0f)
        for (int64_t i = 0; i < nb; i++) s[i] = softcap * q8_tanh(s[i] * scale / softcap);
    else
        for (int64_t i = 0; i < nb; i++) s[i] = s[i] * scale;
    float bm = -INFINITY;
    for (int64_t i = 0; i < nb; i++)
        if (s[i] > bm || isnan(s[i])) bm = s[i];
    return bm;
}

static void block_exp(const float *s, float m, int64_t nb, float *e) {
    for (int64_t i = 0; i < nb; i++) e[i] = q8_exp_neg(s[i] - m);
}

/* o = o + e[i] * value row i (a product, then a sum: no contraction), rows in order. 64 output
 * elements at a time stay in registers (four 16-float vectors: a zmm, 2 ymm or 4 xmm each, by
 * width) while every row of the block passes, instead of o being loaded and stored once per
 * row; element by element the operations and their order are those of the plain loop. */
typedef float v16f __attribute__((vector_size(64)));
#define VCHUNK 64

static void block_values(const float *e, const float *vh, int64_t b0, int64_t nb, int64_t cap,
                         int64_t hd, float *o) {
    int64_t d0 = 0;
    for (; d0 + VCHUNK <= hd; d0 += VCHUNK) {
        v16f a0, a1, a2, a3;
        memcpy(&a0, o + d0, sizeof a0);
        memcpy(&a1, o + d0 + 16, sizeof a1);
        memcpy(&a2, o + d0 + 32, sizeof a2);
        memcpy(&a3, o + d0 + 48, sizeof a3);
        int64_t slot = b0 % cap;
        for (int64_t i = 0; i < nb; i++) {
            const float *vr = vh + slot * hd + d0;
            const float w = e[i];
            v16f r0, r1, r2, r3;
            memcpy(&r0, vr, sizeof r0);
            memcpy(&r1, vr + 16, sizeof r1);
            memcpy(&r2, vr + 32, sizeof r2);
            memcpy(&r3, vr + 48, sizeof r3);
            a0 = a0 + w * r0;
            a1 = a1 + w * r1;
            a2 = a2 + w * r2;
            a3 = a3 + w * r3;
            slot = slot + 1 == cap ? 0 : slot + 1;
        }
        memcpy(o + d0, &a0, sizeof a0);
        memcpy(o + d0 + 16, &a1, sizeof a1);
        memcpy(o + d0 + 32, &a2, sizeof a2);
        memcpy(o + d0 + 48, &a3, sizeof a3);
    }
    if (d0 < hd) { /* the rest of a head_dim that is not a multiple of 64 */
        int64_t slot = b0 % cap;
        for (int64_t i = 0; i < nb; i++) {
            const float *vr = vh + slot * hd;
            const float w = e[i];
            for (int64_t d = d0; d < hd; d++) o[d] = o[d] + w * vr[d];
            slot = slot + 1 == cap ? 0 : slot + 1;
        }
    }
}

static void fold_values(float *O, float fa, const float *o, float fb, int64_t hd) {
    for (int64_t d = 0; d < hd; d++) O[d] = O[d] * fa + o[d] * fb;
}

const q8_loops Q8_CAT(q8_loops_, Q8_LOOPS) = {
    Q8_STR(Q8_LOOPS), sum_f64, layernorm_row, rmsnorm_row, gelu, geglu, swiglu,
    block_scores, block_exp, block_values, fold_values,
};
