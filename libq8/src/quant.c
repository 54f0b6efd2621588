/* Q8_0 quantization and the fp16/bf16 conversions it rests on.
 *
 * The quantizer is the specification shared with ggml (quantize_row_q8_0_ref) and the gguf
 * Python package: per block of 32, d = max|x| / 127 in float32, id = 1/d (0 when d == 0),
 * q = round-half-away-from-zero(x * id), and d is stored as fp16 rounded to nearest even.
 * A block holding NaN or Inf gets d = NaN and q = 0, so it poisons every dot product it enters
 * instead of producing plausible garbage (gguf leaves such blocks undefined). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "q8_internal.h"

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t q8_fp32_to_fp16_ref(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x1ffu)); /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {
        /* Below the fp16 normal range: adding 0.5f leaves an ulp of 2^-24, the fp16 subnormal
         * step, so the FPU's round-to-nearest-even does the rounding for us. */
        const float sum = bits_f32(ax) + 0.5f;
        return (uint16_t)(sign | (f32_bits(sum) - f32_bits(0.5f)));
    }
    /* Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even. */
    const uint32_t odd = (ax >> 13) & 1u;
    return (uint16_t)(sign | ((ax - (112u << 23) + 0xfffu + odd) >> 13));
}

float q8_fp16_to_fp32_ref(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        const float mag = (float)mant * 0x1p-24f; /* exact: at most 11 significant bits */
        return bits_f32(sign | f32_bits(mag));
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t q8_fp32_to_fp16(float f) { return q8_fp32_to_fp16_ref(f); }
float q8_fp16_to_fp32(uint16_t h) { return q8_fp16_to_fp32_ref(h); }

static inline float bf16_to_fp32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

void q8_quantize_row_ref(const float *x, q8_block *y, int64_t k) {
    for (int64_t b = 0; b < k / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        int finite = 1;
        for (int i = 0; i < QK; i++) {
            const float a = fabsf(xb[i]);
            finite &= (a <= Q8_FLT_MAX); /* false for Inf and NaN */
            if (a > amax) amax = a;
        }
        if (!finite) {
            y[b].d = 0x7e00u;
            memset(y[b].qs, 0, QK);
            continue;
        }
        const float d = amax / 127.0f;
        const float id = q8_inv_scale(d);
        y[b].d = q8_fp32_to_fp16_ref(d);
        for (int i = 0; i < QK; i++) y[b].qs[i] = (int8_t)roundf(xb[i] * id);
    }
}

int q8_convert_to_f32(const void *src, int dtype, int64_t n, float *dst) {
    Q8_CHECK(src && dst && n > 0 && n <= ((int64_t)1 << 42));
    switch (dtype) {
    case Q8_DTYPE_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        return Q8_OK;
    case Q8_DTYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = q8_fp16_to_fp32_ref(s[i]);
        return Q8_OK;
    }
    case Q8_DTYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(s[i]);
        return Q8_OK;
    }
    default:
        return Q8_EINVAL;
    }
}

static size_t dtype_size(int dtype) { return dtype == Q8_DTYPE_F32 ? 4 : 2; }

/* ---- threaded quantization: rows to workers, each with a one-row float scratch ---------- */
typedef struct {
    const unsigned char *src;
    int dtype;
    int64_t k;
    int64_t rows;     /* rows of the output */
    int transposed;   /* source is k x rows */
    int q4;           /* Q4_0 output instead of Q8_0 */
    void *dst;        /* GGML rows (q8_block or q4_block), or NULL: */
    void *packed;     /* rows row0 .. of a packed matrix (q8x16 or q4x16) */
    int64_t row0;
    _Atomic int failed; /* any worker may set it; several may at once */
} quant_job;

/* Row r of the source as float32 into row. */
static int source_row(const quant_job *job, int64_t r, float *row) {
    const int64_t k = job->k;
    const size_t es = dtype_size(job->dtype);
    if (!job->transposed) return q8_convert_to_f32(job->src + (size_t)r * (size_t)k * es, job->dtype, k, row);
    /* Column r of a k x rows matrix: strided gather of one element per source row. */
    for (int64_t i = 0; i < k; i++) {
        const unsigned char *p = job->src + ((size_t)i * (size_t)job->rows + (size_t)r) * es;
        float v;
        if (job->dtype == Q8_DTYPE_F32) memcpy(&v, p, 4);
        else {
            uint16_t h;
            memcpy(&h, p, 2);
            v = job->dtype == Q8_DTYPE_F16 ? q8_fp16_to_fp32_ref(h) : bf16_to_fp32(h);
        }
        row[i] = v;
    }
    return Q8_OK;
}

static void quant_task(void *vctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    quant_job *job = vctx;
    const int64_t k = job->k, nb = k / QK;
    /* The dispatched quantizer: bytes identical to the reference (the property suite checks
     * every path against gguf's), 5x faster than the scalar one that dominated loading. */
    void (*const quantize_row)(const float *, q8_block *, int64_t) = q8_kernels_get()->quantize_row;
    const size_t bsize = job->q4 ? sizeof(q4_block) : sizeof(q8_block);
    float *row = malloc((size_t)k * sizeof(float));
    void *blocks = job->packed ? malloc((size_t)nb * bsize) : NULL;
    if (!row || (job->packed && !blocks)) {
        free(row);
        free(blocks);
        atomic_store_explicit(&job->failed, 1, memory_order_relaxed);
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        if (source_row(job, r, row) != Q8_OK) atomic_store_explicit(&job->failed, 1, memory_order_relaxed);
        void *out = job->packed ? blocks : (unsigned char *)job->dst + (size_t)(r * nb) * bsize;
        if (job->q4) q8_q4_quantize_row_ref(row, out, k);
        else quantize_row(row, out, k);
        if (job->packed) q8_put_row(job->packed, job->q4, nb, job->row0 + r, blocks);
    }
    free(blocks);
    free(row);
}

static int quantize_common(quant_job *job) {
    Q8_CHECK(job->src && q8_mat_ok(job->rows, job->k) && job->k % QK == 0);
    Q8_CHECK(job->dtype == Q8_DTYPE_F32 || job->dtype == Q8_DTYPE_F16 || job->dtype == Q8_DTYPE_BF16);
    /* Packed rows share panels, but each row owns its own bytes of them: one writer each. */
    const int rc = q8_parallel_for(job->rows, 1, quant_task, job);
    if (rc) return rc;
    /* q8_parallel_for joins every worker first, so relaxed stores are visible here. */
    return atomic_load_explicit(&job->failed, memory_order_relaxed) ? Q8_ENOMEM : Q8_OK;
}

/* GGML rows (q8_block or q4_block) at dst. */
static int quantize_rows(const void *src, int dtype, int64_t rows, int64_t k, int transposed, int q4,
                         void *dst) {
    Q8_CHECK(dst);
    quant_job job = {src, dtype, k, rows, transposed, q4, dst, NULL, 0, 0};
    return quantize_common(&job);
}

/* Rows row0 .. row0 + rows - 1 of the packed n x k matrix dst (q8x16 or q4x16); the call that
 * writes row n - 1 also writes the padding rows. */
static int quantize_packed(const void *src, int dtype, int64_t rows, int64_t k, int transposed, int q4,
                           void *dst, int64_t n, int64_t row0) {
    Q8_CHECK(dst && q8_mat_ok(n, k) && row0 >= 0 && rows > 0 && row0 < n && rows <= n - row0);
    quant_job job = {src, dtype, k, rows, transposed != 0, q4, NULL, dst, row0, 0};
    const int rc = quantize_common(&job);
    if (rc != Q8_OK || row0 + rows != n) return rc;
    q8_put_padding(dst, q4, n, k / QK);
    return Q8_OK;
}

int q8_quantize(const void *src, int dtype, int64_t rows, int64_t k, q8_block *dst) {
    return quantize_rows(src, dtype, rows, k, 0, 0, dst);
}

int q8_quantize_transposed(const void *src, int dtype, int64_t k, int64_t rows, q8_block *dst) {
    return quantize_rows(src, dtype, rows, k, 1, 0, dst);
}

int q8_q4_quantize(const void *src, int dtype, int64_t rows, int64_t k, q4_block *dst) {
    return quantize_rows(src, dtype, rows, k, 0, 1, dst);
}

int q8_quantize_packed(const void *src, int dtype, int64_t rows, int64_t k, int transposed,
                       q8x16 *dst, int64_t n, int64_t row0) {
    return quantize_packed(src, dtype, rows, k, transposed, 0, dst, n, row0);
}

int q8_q4_quantize_packed(const void *src, int dtype, int64_t rows, int64_t k, int transposed,
                          q4x16 *dst, int64_t n, int64_t row0) {
    return quantize_packed(src, dtype, rows, k, transposed, 1, dst, n, row0);
}

int q8_dequantize(const q8_block *src, int64_t rows, int64_t k, float *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(rows, k) && k % QK == 0);
    const int64_t nblocks = rows * (k / QK);
    for (int64_t b = 0; b < nblocks; b++) {
        const float d = q8_fp16_to_fp32_ref(src[b].d);
        for (int i = 0; i < QK; i++) dst[b * QK + i] = d * (float)src[b].qs[i];
    }
    return Q8_OK;
}
