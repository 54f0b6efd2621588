/* AArch64 Advanced SIMD kernels; built twice: "neon" (baseline) and, with
 * -march=armv8.2-a+dotprod and Q8_DOTPROD defined, "neon_dotprod". A block is two 128-bit
 * registers of 4 lanes each; even and odd blocks accumulate in separate register pairs, which
 * is the reference's 16-lane layout. */
#include <arm_neon.h>
#include <math.h>

#include "q8_internal.h"

#ifdef Q8_DOTPROD
#define SUFFIX(name) name##_neon_dotprod
#define PATH_NAME "neon_dotprod"
#else
#define SUFFIX(name) name##_neon
#define PATH_NAME "neon"
#endif

static inline float h2f(uint16_t h) {
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v; /* exact widening */
}

/* 4 int32 lanes, lane g = sum_{j<4} w[4g+j] * x[4g+j] over 16 bytes. */
static inline int32x4_t lanes16(int8x16_t w, int8x16_t x) {
#ifdef Q8_DOTPROD
    return vdotq_s32(vdupq_n_s32(0), w, x);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    const int16x8_t hi = vmull_s8(vget_high_s8(w), vget_high_s8(x));
    /* pairwise: products -> pairs -> groups of four consecutive bytes */
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
#endif
}

static inline float fold(float32x4_t e0, float32x4_t e1, float32x4_t o0, float32x4_t o1) {
    const float32x4_t s8a = vaddq_f32(e0, o0), s8b = vaddq_f32(e1, o1); /* acc[i] + acc[i+8] */
    const float32x4_t s4 = vaddq_f32(s8a, s8b);                          /* + 4 */
    const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4)); /* + 2 */
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

static inline void step(const q8_block *wb, const q8_block *xb, float32x4_t *a0, float32x4_t *a1) {
    const float32x4_t d = vdupq_n_f32(h2f(wb->d) * h2f(xb->d));
    const int32x4_t l0 = lanes16(vld1q_s8(wb->qs), vld1q_s8(xb->qs));
    const int32x4_t l1 = lanes16(vld1q_s8(wb->qs + 16), vld1q_s8(xb->qs + 16));
    *a0 = vfmaq_f32(*a0, d, vcvtq_f32_s32(l0));
    *a1 = vfmaq_f32(*a1, d, vcvtq_f32_s32(l1));
}

static void SUFFIX(q8_rows)(const q8_block *w, int64_t nb, const q8_block *x, int64_t r0,
                            int64_t r1, float *y) {
    for (int64_t r = r0; r < r1; r++) {
        const q8_block *wr = w + r * nb;
        float32x4_t e0 = vdupq_n_f32(0.0f), e1 = e0, o0 = e0, o1 = e0;
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            step(wr + b, x + b, &e0, &e1);
            step(wr + b + 1, x + b + 1, &o0, &o1);
        }
        if (b < nb) step(wr + b, x + b, &e0, &e1);
        y[r] = fold(e0, e1, o0, o1);
    }
}

static void SUFFIX(q8_tile)(const q8_block *w, int64_t nb, const q8_block *x, int64_t t,
                            int64_t r0, int64_t r1, float *y, int64_t ldy) {
    for (int64_t g = r0; g < r1; g += 16) {
        const int64_t g1 = g + 16 < r1 ? g + 16 : r1;
        for (int64_t j = 0; j < t; j++) SUFFIX(q8_rows)(w, nb, x + j * nb, g, g1, y + j * ldy);
    }
}

static float SUFFIX(dot_f32)(const float *a, const float *b, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0; /* lanes 0-3 .. 12-15 */
    const int64_t main = n - n % 16;
    for (int64_t i = 0; i < main; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(a + i), vld1q_f32(b + i));
        a1 = vfmaq_f32(a1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    float s = fold(a0, a1, a2, a3);
    for (int64_t i = main; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static void SUFFIX(f32_rows)(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                             float *y) {
    for (int64_t r = r0; r < r1; r++) y[r] = SUFFIX(dot_f32)(w + r * k, x, k);
}

static void SUFFIX(f32_tile)(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                             int64_t r1, float *y, int64_t ldy) {
    for (int64_t j = 0; j < t; j++) SUFFIX(f32_rows)(w, k, x + j * k, r0, r1, y + j * ldy);
}

static void SUFFIX(axpy_f32)(float a, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

const q8_kernels SUFFIX(q8_kernels) = {
    .name = PATH_NAME,
    .quantize_row = q8_quantize_row_ref, /* small next to the GEMV; not worth a variant yet */
    .q8_rows = SUFFIX(q8_rows),
    .q8_tile = SUFFIX(q8_tile),
    .f32_rows = SUFFIX(f32_rows),
    .f32_tile = SUFFIX(f32_tile),
    .dot_f32 = SUFFIX(dot_f32),
    .axpy_f32 = SUFFIX(axpy_f32),
};
