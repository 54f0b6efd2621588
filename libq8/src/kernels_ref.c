/* The scalar reference kernels: the specification every SIMD variant reproduces bit for bit.
 *
 * Q8_0 dot product of a weight row w and an activation row x (both nb blocks):
 *   for block b, lane g in 0..7:  s = sum_{j<4} w.qs[4g+j] * x.qs[4g+j]        (exact int32)
 *                                  acc[8*(b&1) + g] = fmaf(dw*dx, (float)s, acc[...])
 *   where dw*dx is the product of the two fp16 scales in float32 (exact: 22 significant bits).
 *   Then the 16 lanes fold in a fixed tree: acc[i] + acc[i+8], then +4, +2, +1.
 * f32 dot product of length k: lane i%16 of 16 accumulators takes fmaf(a[i], b[i], acc) for
 *   i < 16*floor(k/16); the same tree fold; then the tail i >= 16*floor(k/16) in order with
 *   fmaf into the folded sum.
 * These shapes are what one 512-bit register (or two 256-bit, or four 128-bit ones) computes
 * naturally, so every ISA reaches them without extra work, and results do not depend on the
 * CPU, the thread count or the tiling. */
#include <math.h>

#include "q8_internal.h"

static float fold16(const float acc[16]) {
    float s8[8], s4[4], s2[2];
    for (int i = 0; i < 8; i++) s8[i] = acc[i] + acc[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    for (int i = 0; i < 2; i++) s2[i] = s4[i] + s4[i + 2];
    return s2[0] + s2[1];
}

static float dot_q8_ref(const q8_block *w, const q8_block *x, int64_t nb) {
    float acc[16] = {0};
    for (int64_t b = 0; b < nb; b++) {
        const float d = q8_fp16_to_fp32_ref(w[b].d) * q8_fp16_to_fp32_ref(x[b].d);
        float *lane = acc + 8 * (b & 1);
        for (int g = 0; g < 8; g++) {
            int32_t s = 0;
            for (int j = 0; j < 4; j++) s += (int32_t)w[b].qs[4 * g + j] * x[b].qs[4 * g + j];
            lane[g] = fmaf(d, (float)s, lane[g]);
        }
    }
    return fold16(acc);
}

static float dot_f32_ref(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    const int64_t main = n - n % 16;
    for (int64_t i = 0; i < main; i++) acc[i % 16] = fmaf(a[i], b[i], acc[i % 16]);
    float s = fold16(acc);
    for (int64_t i = main; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static void q8_rows_ref(const q8_block *w, int64_t nb, const q8_block *x, int64_t r0, int64_t r1,
                        float *y) {
    for (int64_t r = r0; r < r1; r++) y[r] = dot_q8_ref(w + r * nb, x, nb);
}

static void q8_tile_ref(const q8_block *w, int64_t nb, const q8_block *x, int64_t t, int64_t r0,
                        int64_t r1, float *y, int64_t ldy) {
    for (int64_t j = 0; j < t; j++) q8_rows_ref(w, nb, x + j * nb, r0, r1, y + j * ldy);
}

static void f32_rows_ref(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                         float *y) {
    for (int64_t r = r0; r < r1; r++) y[r] = dot_f32_ref(w + r * k, x, k);
}

static void f32_tile_ref(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                         int64_t r1, float *y, int64_t ldy) {
    for (int64_t j = 0; j < t; j++) f32_rows_ref(w, k, x + j * k, r0, r1, y + j * ldy);
}

static void axpy_f32_ref(float a, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

const q8_kernels q8_kernels_ref = {
    .name = "ref",
    .quantize_row = q8_quantize_row_ref,
    .q8_rows = q8_rows_ref,
    .q8_tile = q8_tile_ref,
    .f32_rows = f32_rows_ref,
    .f32_tile = f32_tile_ref,
    .dot_f32 = dot_f32_ref,
    .axpy_f32 = axpy_f32_ref,
};
