/* Internal contracts of libq8: the block layout check, the kernel table every ISA file fills,
 * the thread pool's job interface and small helpers shared by the drivers. */
#ifndef PYRUSTML_Q8_INTERNAL_H
#define PYRUSTML_Q8_INTERNAL_H

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "q8.h"

#define QK 32 /* weights per Q8_0 block */

/* The GGML contract: 2-byte fp16 scale + 32 int8, no padding. */
static_assert(sizeof(q8_block) == 34, "q8_block must be 34 bytes like ggml's block_q8_0");
static_assert(offsetof(q8_block, qs) == 2, "quants follow the scale directly");

#define PANEL 16 /* rows per q8x16 */
static_assert(sizeof(q8x16) == 16 * sizeof(q8_block), "a panel block is 16 GGML blocks' bytes");
static_assert(offsetof(q8x16, qs) == 32, "quants follow the 16 scales directly");

/* The GGML Q4_0 contract: 2-byte fp16 scale + 16 bytes of nibbles, no padding. */
static_assert(sizeof(q4_block) == 18, "q4_block must be 18 bytes like ggml's block_q4_0");
static_assert(offsetof(q4_block, qs) == 2, "nibbles follow the scale directly");
static_assert(sizeof(q4x16) == 16 * sizeof(q4_block), "a Q4_0 panel block is 16 GGML blocks' bytes");
static_assert(offsetof(q4x16, qs) == 32, "nibbles follow the 16 scales directly");
/* So a loop over panel blocks of either format reads the scales at the block's first byte. */
static_assert(offsetof(q8x16, d) == 0 && offsetof(q4x16, d) == 0, "both panel blocks lead with d[16]");

/* One activation block as the packed kernels read it: the quants, the scale widened, and the
 * correction for the weights' +128 offset (sum over i of (q_w + 128) * q_x is the exact
 * product plus 128 * sum(q_x)). */
typedef struct {
    int8_t qs[32];
    float d;
    int32_t nsum; /* -128 * sum(qs) */
} q8_act;
static_assert(sizeof(q8_act) == 40, "q8_act is 40 bytes");

/* The element-wise loops outside the kernel tables (loops.c), one table per vector width; each
 * element rounds the same in every table. */
typedef struct {
    const char *name;
    /* sum of x[i] (squares = 0) or of (x[i] - center)^2 (squares = 1), in double, fixed order */
    double (*sum_f64)(const float *x, int64_t n, double center, int squares);
    /* y[i] = (x[i] - m) * inv * gamma[i] + beta[i] */
    void (*layernorm_row)(const float *x, const float *gamma, const float *beta, int64_t n, float m,
                          float inv, float *y);
    /* y[i] = x[i] * inv * (offset + w[i]) */
    void (*rmsnorm_row)(const float *x, const float *w, int64_t n, float inv, float offset, float *y);
    /* y[i] = gelu_tanh(x[i]); y[i] = gelu_tanh(gate[i]) * up[i] */
    void (*gelu)(const float *x, int64_t n, float *y);
    void (*geglu)(const float *gate, const float *up, int64_t n, float *y);
    /* y[i] = silu(gate[i]) * up[i] (SwiGLU) */
    void (*swiglu)(const float *gate, const float *up, int64_t n, float *y);
    /* attention.c's per-block work: scores scaled (and soft-capped) in place, returning their max;
     * e[i] = exp(s[i] - m); o += e[i] * value row (b0 + i) % cap; O = O * fa + o * fb */
    float (*block_scores)(float *s, int64_t nb, float scale, float softcap);
    void (*block_exp)(const float *s, float m, int64_t nb, float *e);
    void (*block_values)(const float *e, const float *vh, int64_t b0, int64_t nb, int64_t cap,
                         int64_t hd, float *o);
    void (*fold_values)(float *O, float fa, const float *o, float fb, int64_t hd);
} q8_loops;

extern const q8_loops q8_loops_base;
#if defined(__x86_64__) || defined(_M_X64)
extern const q8_loops q8_loops_avx2;
extern const q8_loops q8_loops_avx512;
#endif

/* The inner kernels of one instruction set. Every variant must produce results bitwise equal
 * to the scalar reference (kernels_ref.c documents the arithmetic it fixes).
 *
 * panel_run computes, for panels p in [p0, p1) of a packed matrix (nb blocks per row) and the
 * t activations x[j * nb ...], y[j * ldy + r] for every row r = 16p + i < n. */
typedef struct {
    const char *name;
    /* Activation quantizer: bytes identical to q8_quantize_row_ref. */
    void (*quantize_row)(const float *x, q8_block *y, int64_t k);
    void (*panel_run)(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                      int64_t p1, int64_t n, float *y, int64_t ldy);
    /* The same for packed Q4_0 weights: the int sum of a block starts at nsum / 16 (= -8 *
     * sum(x)), which takes the nibbles' +8 back out exactly. */
    void (*q4_panel_run)(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                         int64_t p1, int64_t n, float *y, int64_t ldy);
    void (*f32_rows)(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                     float *y);
    void (*f32_tile)(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                     int64_t r1, float *y, int64_t ldy);
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    /* y[i] = fmaf(a, x[i], y[i]) */
    void (*axpy_f32)(float a, const float *x, float *y, int64_t n);
} q8_kernels;

/* The panel loop of the kernels that work one panel and one token at a time (AVX2, NEON):
 * panel outer, tokens inner, so a panel's weights stay in cache while every token passes;
 * dot(w_panel, nb, x_token, out) writes 16 rows, of which the valid ones are copied to y. The
 * weights are untyped so that one loop serves both formats: psize is the bytes of one panel
 * block (sizeof(q8x16) or sizeof(q4x16)). */
typedef void (*q8_panel_dot_fn)(const void *w, int64_t nb, const q8_act *x, float out[16]);
static inline void q8_panels_by_token(q8_panel_dot_fn dot, const void *w, size_t psize, int64_t nb,
                                      const q8_act *x, int64_t t, int64_t p0, int64_t p1, int64_t n,
                                      float *y, int64_t ldy) {
    for (int64_t p = p0; p < p1; p++) {
        const int64_t valid = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        for (int64_t j = 0; j < t; j++) {
            float out[16];
            dot((const unsigned char *)w + (size_t)(p * nb) * psize, nb, x + j * nb, out);
            memcpy(y + j * ldy + p * PANEL, out, (size_t)valid * sizeof(float));
        }
    }
}

/* The f32 row kernels' last step for 4 rows (w0, w0 + k, ...) with folded sums s0 .. s3: the
 * reference's tail, columns main .. k - 1 in order with fmaf, and the 4 results to y. */
static inline void q8_f32_rows4_tail(const float *w0, int64_t k, const float *x, int64_t main, float s0,
                                     float s1, float s2, float s3, float *y) {
    const float *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    for (int64_t i = main; i < k; i++) {
        s0 = fmaf(w0[i], x[i], s0);
        s1 = fmaf(w1[i], x[i], s1);
        s2 = fmaf(w2[i], x[i], s2);
        s3 = fmaf(w3[i], x[i], s3);
    }
    y[0] = s0;
    y[1] = s1;
    y[2] = s2;
    y[3] = s3;
}

/* f32_tile from f32_rows for the kernels that work 16 rows at a time (AVX2, AVX-512): a group's
 * weights stay in cache while every token passes. */
typedef void (*q8_f32_rows_fn)(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                               float *y);
static inline void q8_f32_tile_by_rows(q8_f32_rows_fn rows, const float *w, int64_t k, const float *x,
                                       int64_t t, int64_t r0, int64_t r1, float *y, int64_t ldy) {
    for (int64_t g = r0; g < r1; g += 16) {
        const int64_t g1 = g + 16 < r1 ? g + 16 : r1;
        for (int64_t j = 0; j < t; j++) rows(w, k, x + j * k, g, g1, y + j * ldy);
    }
}

#if defined(__AVX__)
#include <immintrin.h>
/* The reference's fold16 tree (kernels_ref.c) from its second level down: lanes i + 8 already
 * added to lanes i. For the files built with AVX (kernels_avx2.c, kernels_avx512.c). */
static inline float q8_fold8(__m256 s8) {
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
#endif

/* Token pasting and quoting after expansion, for the files built once per path (their path is a
 * macro); Q8_PATHED(name, path) is name_path. */
#define Q8_CAT_(a, b) a##b
#define Q8_CAT(a, b) Q8_CAT_(a, b)
#define Q8_STR_(a) #a
#define Q8_STR(a) Q8_STR_(a)
#define Q8_PATHED(name, path) Q8_CAT(name##_, path)
/* The table q8_kernels_<path>, named "<path>", of the kernels <slot>_<path> that every ISA file
 * defines, with the quantizer given (the reference's where a path has none of its own): a new
 * slot is one edit here. */
#define Q8_KERNEL_TABLE(path, quantizer)                                                       \
    const q8_kernels Q8_PATHED(q8_kernels, path) = {                                           \
        .name = Q8_STR(path),                                                                  \
        .quantize_row = quantizer,                                                             \
        .panel_run = Q8_PATHED(panel_run, path),                                               \
        .q4_panel_run = Q8_PATHED(q4_panel_run, path),                                         \
        .f32_rows = Q8_PATHED(f32_rows, path),                                                 \
        .f32_tile = Q8_PATHED(f32_tile, path),                                                 \
        .dot_f32 = Q8_PATHED(dot_f32, path),                                                   \
        .axpy_f32 = Q8_PATHED(axpy_f32, path),                                                 \
    }

extern const q8_kernels q8_kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
extern const q8_kernels q8_kernels_avx2;
extern const q8_kernels q8_kernels_avx512;
extern const q8_kernels q8_kernels_avx512vnni;
extern const q8_kernels q8_kernels_amx;
/* Whether this process may use AMX tiles (cpuid, XCR0, and the kernel granted XTILEDATA);
 * dispatch.c asks once. */
int q8_amx_usable(void);
#endif
#if defined(__aarch64__)
extern const q8_kernels q8_kernels_neon;
extern const q8_kernels q8_kernels_neon_dotprod;
#endif

/* The active table (dispatch.c); never NULL once q8_kernels_get() has returned. */
const q8_kernels *q8_kernels_get(void);
/* The loops that go with a kernel table: its vector width (dispatch.c). */
const q8_loops *q8_loops_for(const q8_kernels *kt);

/* fp16 conversions, scalar and exact (quant.c). */
uint16_t q8_fp32_to_fp16_ref(float f);
float q8_fp16_to_fp32_ref(uint16_t h);

/* Quantize one row of k floats (k % 32 == 0) to k/32 blocks, exactly as ggml's reference. */
void q8_quantize_row_ref(const float *x, q8_block *y, int64_t k);
/* The packed layouts (pack.c), q8x16 or q4x16 when q4: row r of a packed matrix with nb blocks
 * per row, written from GGML blocks; the zero padding rows after row n - 1. Then the packed
 * kernels' view of nb quantized activation blocks. */
void q8_put_row(void *dst, int q4, int64_t nb, int64_t r, const void *row);
void q8_put_padding(void *dst, int q4, int64_t n, int64_t nb);
void q8_act_prep(const q8_block *x, int64_t nb, q8_act *out);

/* Q4_0 (q4.c): the reference quantizer of one row. */
void q8_q4_quantize_row_ref(const float *x, q4_block *y, int64_t k);

/* ---- thread pool (pool.c) ---- */
/* fn runs on chunks [begin, end) of [0, total); worker is 0 .. q8_pool_threads() - 1 and is
 * unique among the threads running this job at one time. */
typedef void (*q8_task_fn)(void *ctx, int64_t begin, int64_t end, int worker);
/* Runs fn over [0, total) on all pool threads (the caller included) in chunks that are a
 * multiple of `align` (several per thread), and returns when every chunk is done. Jobs from
 * several caller threads are serialized. */
int q8_parallel_for(int64_t total, int64_t align, q8_task_fn fn, void *ctx);

/* ---- checks shared by the entry points ---- */
#define Q8_CHECK(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) return Q8_EINVAL;                                                         \
    } while (0)

/* ---- shared scalar helpers ---- */
/* The largest finite float (FLT_MAX): `a <= Q8_FLT_MAX` is false for Inf and NaN. */
#define Q8_FLT_MAX 3.40282347e38f

/* The quantizers' inverse scale: 1/d, or 0 when d is 0 or 1/d overflows (d subnormal: x * inf
 * has no integer value, and ggml's cast is undefined there). Such a block stores fp16(d) = 0,
 * so its quants are 0 too. */
static inline float q8_inv_scale(float d) {
    return d != 0.0f && fabsf(1.0f / d) <= Q8_FLT_MAX ? 1.0f / d : 0.0f;
}

/* Byte of row i (< 16), column c (< 32) in a q8x16 block's qs (see q8.h): 4-column groups of
 * 64 bytes, a 32-bit lane per row. A q4x16 block's byte c (< 16) sits at the same place. */
static inline int q8_panel_byte(int i, int c) { return 64 * (c / 4) + 4 * i + c % 4; }

/* CLOCK_MONOTONIC in nanoseconds: plan marks, the pool's spin budget, the read probe. */
static inline int64_t q8_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Largest sizes we accept: keeps every byte count below 2^62, so no size product overflows. */
#define Q8_MAX_DIM ((int64_t)1 << 31)

static inline int q8_dim_ok(int64_t n) { return n > 0 && n <= Q8_MAX_DIM; }
/* rows x k elements, both positive, product at most 2^42 (so bytes * 34 stays far from 2^63). */
static inline int q8_mat_ok(int64_t rows, int64_t k) {
    return q8_dim_ok(rows) && q8_dim_ok(k) && rows <= ((int64_t)1 << 42) / k;
}

#endif /* PYRUSTML_Q8_INTERNAL_H */
