/* Internal contracts of libq8: the block layout check, the kernel table every ISA file fills,
 * the thread pool's job interface and small helpers shared by the drivers. */
#ifndef PYRUSTML_Q8_INTERNAL_H
#define PYRUSTML_Q8_INTERNAL_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "q8.h"

#define QK 32 /* weights per Q8_0 block */

/* The GGML contract: 2-byte fp16 scale + 32 int8, no padding. */
static_assert(sizeof(q8_block) == 34, "q8_block must be 34 bytes like ggml's block_q8_0");
static_assert(offsetof(q8_block, qs) == 2, "quants follow the scale directly");

/* The inner kernels of one instruction set. Every variant must produce results bitwise equal
 * to the scalar reference (kernels_ref.c documents the arithmetic it fixes).
 *
 * Row kernels compute y[r] for r in [r0, r1); tile kernels compute y[j * ldy + r] for the t
 * activations j of x (each nb blocks, or k floats, long) and the same rows. */
typedef struct {
    const char *name;
    /* Activation quantizer: bytes identical to q8_quantize_row_ref. */
    void (*quantize_row)(const float *x, q8_block *y, int64_t k);
    void (*q8_rows)(const q8_block *w, int64_t nb, const q8_block *x, int64_t r0, int64_t r1,
                    float *y);
    void (*q8_tile)(const q8_block *w, int64_t nb, const q8_block *x, int64_t t, int64_t r0,
                    int64_t r1, float *y, int64_t ldy);
    /* Optional (NULL where absent): q8_tile split in two so that the driver prepares the
     * activations once per call for all threads instead of once per chunk. tile_prep fills
     * token j's part of a table of tile_table_bytes(nb, t) bytes (64-byte aligned) from its
     * quantized row xj; tile_run then equals q8_tile on those t tokens. */
    int64_t (*tile_table_bytes)(int64_t nb, int64_t t);
    void (*tile_prep)(const q8_block *xj, int64_t nb, int64_t t, int64_t j, void *table);
    void (*tile_run)(const q8_block *w, int64_t nb, const void *table, int64_t t, int64_t r0,
                     int64_t r1, float *y, int64_t ldy);
    void (*f32_rows)(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                     float *y);
    void (*f32_tile)(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                     int64_t r1, float *y, int64_t ldy);
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    /* y[i] = fmaf(a, x[i], y[i]) */
    void (*axpy_f32)(float a, const float *x, float *y, int64_t n);
} q8_kernels;

extern const q8_kernels q8_kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
extern const q8_kernels q8_kernels_avx2;
extern const q8_kernels q8_kernels_avx512;
extern const q8_kernels q8_kernels_avx512vnni;
#endif
#if defined(__aarch64__)
extern const q8_kernels q8_kernels_neon;
extern const q8_kernels q8_kernels_neon_dotprod;
#endif

/* The active table (dispatch.c); never NULL once q8_kernels_get() has returned. */
const q8_kernels *q8_kernels_get(void);

/* fp16 conversions, scalar and exact (quant.c). */
uint16_t q8_fp32_to_fp16_ref(float f);
float q8_fp16_to_fp32_ref(uint16_t h);

/* Quantize one row of k floats (k % 32 == 0) to k/32 blocks, exactly as ggml's reference. */
void q8_quantize_row_ref(const float *x, q8_block *y, int64_t k);

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

/* Largest sizes we accept: keeps every byte count below 2^62, so no size product overflows. */
#define Q8_MAX_DIM ((int64_t)1 << 31)

static inline int q8_dim_ok(int64_t n) { return n > 0 && n <= Q8_MAX_DIM; }
/* rows x k elements, both positive, product at most 2^42 (so bytes * 34 stays far from 2^63). */
static inline int q8_mat_ok(int64_t rows, int64_t k) {
    return q8_dim_ok(rows) && q8_dim_ok(k) && rows <= ((int64_t)1 << 42) / k;
}

#endif /* PYRUSTML_Q8_INTERNAL_H */
