/* AArch64 Advanced SIMD kernels; built twice: "neon" (baseline) and, with
 * -march=armv8.2-a+dotprod and Q8_DOTPROD defined, "neon_dotprod". A packed panel's 16 rows are
 * four 128-bit registers of 4 row lanes; the f32 dot product keeps the reference's 16 lanes in
 * four registers. */
#include <arm_neon.h>
#include <math.h>

#include "q8_internal.h"

#ifdef Q8_DOTPROD
#define PATH neon_dotprod
#else
#define PATH neon
#endif
#define SUFFIX(name) Q8_PATHED(name, PATH)

static inline float h2f(uint16_t h) {
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v; /* exact widening */
}

static inline float fold(float32x4_t e0, float32x4_t e1, float32x4_t o0, float32x4_t o1) {
    const float32x4_t s8a = vaddq_f32(e0, o0), s8b = vaddq_f32(e1, o1); /* acc[i] + acc[i+8] */
    const float32x4_t s4 = vaddq_f32(s8a, s8b);                          /* + 4 */
    const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4)); /* + 2 */
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

/* 4 rows x 4 columns of a panel (signed quants) times the same 4 activation quants (x4
 * repeated in every 32-bit lane): lane i = row i's exact 4-product sum. */
static inline int32x4_t step4(int32x4_t s, int8x16_t w, int8x16_t x4) {
#ifdef Q8_DOTPROD
    return vdotq_s32(s, w, x4);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x4));
    const int16x8_t hi = vmull_s8(vget_high_s8(w), vget_high_s8(x4));
    /* pairwise: products -> pairs -> each row's four */
    return vaddq_s32(s, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
}

/* Quants c = 4j .. 4j + 3 of an activation block in every 32-bit lane. */
static inline int8x16_t xgroup(const q8_act *a, int j) {
    int32_t v;
    memcpy(&v, a->qs + 4 * j, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

/* One Q8_0 panel block x one activation block: the int sums of rows 4g .. 4g + 3 in s[g]. The
 * stored weights are q + 128. */
static inline void q8_block_sums(const q8x16 *wb, const q8_act *a, int32x4_t s[4]) {
    for (int j = 0; j < 8; j++) {
        const int8x16_t x4 = xgroup(a, j);
        for (int g = 0; g < 4; g++) {
            const uint8x16_t v = vld1q_u8(wb->qs + 64 * j + 16 * g);
            s[g] = step4(s[g], vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80))), x4);
        }
    }
}

/* Packed Q4_0: 16 bytes hold 4 columns of 4 rows in their low nibbles and the 4 columns 16
 * further in their high ones; nibble - 8 is the signed quant, so the Q8_0 step applies. */
static inline void q4_block_sums(const q4x16 *wb, const q8_act *a, int32x4_t s[4]) {
    const uint8x16_t m = vdupq_n_u8(0x0f);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int j = 0; j < 4; j++) {
        const int8x16_t x0 = xgroup(a, j), x1 = xgroup(a, j + 4);
        for (int g = 0; g < 4; g++) {
            const uint8x16_t v = vld1q_u8(wb->qs + 64 * j + 16 * g);
            const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m)), eight);
            const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
            s[g] = step4(step4(s[g], lo, x0), hi, x1);
        }
    }
}

/* One panel (16 rows, nb blocks) times one activation row, either format (q4 is a constant in
 * both callers). Both panel blocks lead with the 16 fp16 scales. */
static inline __attribute__((always_inline)) void panel_dot(const void *w, int64_t nb, const q8_act *x,
                                                            float out[16], const int q4) {
    const size_t psize = q4 ? sizeof(q4x16) : sizeof(q8x16);
    float32x4_t acc[4];
    for (int g = 0; g < 4; g++) acc[g] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *wb = (const unsigned char *)w + (size_t)b * psize;
        int32x4_t s[4];
        for (int g = 0; g < 4; g++) s[g] = vdupq_n_s32(0);
        if (q4) q4_block_sums((const q4x16 *)wb, x + b, s);
        else q8_block_sums((const q8x16 *)wb, x + b, s);
        const uint16_t *d = (const uint16_t *)wb; /* the block's first member */
        for (int g = 0; g < 4; g++) {
            float32x4_t dw;
            for (int i = 0; i < 4; i++) dw[i] = h2f(d[4 * g + i]);
            acc[g] = vfmaq_f32(acc[g], vmulq_n_f32(dw, x[b].d), vcvtq_f32_s32(s[g]));
        }
    }
    for (int g = 0; g < 4; g++) vst1q_f32(out + 4 * g, acc[g]);
}

static void q8_panel_dot(const void *w, int64_t nb, const q8_act *x, float out[16]) {
    panel_dot(w, nb, x, out, 0);
}

static void q4_panel_dot(const void *w, int64_t nb, const q8_act *x, float out[16]) {
    panel_dot(w, nb, x, out, 1);
}

static void SUFFIX(panel_run)(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                              int64_t p1, int64_t n, float *y, int64_t ldy) {
    q8_panels_by_token(q8_panel_dot, w, sizeof *w, nb, x, t, p0, p1, n, y, ldy);
}

static void SUFFIX(q4_panel_run)(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t,
                                 int64_t p0, int64_t p1, int64_t n, float *y, int64_t ldy) {
    q8_panels_by_token(q4_panel_dot, w, sizeof *w, nb, x, t, p0, p1, n, y, ldy);
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

/* The quantizer is small next to the GEMV; not worth a variant yet. */
Q8_KERNEL_TABLE(PATH, q8_quantize_row_ref);
