/* The scalar reference kernels: the specification every SIMD variant reproduces bit for bit.
 *
 * Q8_0 dot product of a weight row w and an activation row x (both nb blocks): one float
 *   accumulator, blocks in order,
 *     for b = 0 .. nb-1:  s = sum_{i<32} w.qs[i] * x.qs[i]                       (exact int32)
 *                         acc = fmaf(dw*dx, (float)s, acc)
 *   where dw*dx is the product of the two fp16 scales in float32 (exact: 22 significant bits)
 *   and (float)s is exact (|s| <= 32 * 127 * 127 < 2^24). A SIMD register holds 16 (or 8, 4)
 *   rows of one panel side by side, so this is what the packed layout computes with no
 *   horizontal work at all.
 * Q4_0 weights (packed q4x16) times Q8_0 activations: the same chain, with
 *     s = sum_{c<32} (nibble_c - 8) * x.qs[c]   (exact int32: |s| <= 32 * 8 * 127)
 * f32 dot product of length k: lane i%16 of 16 accumulators takes fmaf(a[i], b[i], acc) for
 *   i < 16*floor(k/16); the same tree fold; then the tail i >= 16*floor(k/16) in order with
 *   fmaf into the folded sum.
 * The f32 shape is what one 512-bit register (or two 256-bit, or four 128-bit ones) computes
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

static float dot_f32_ref(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    const int64_t main = n - n % 16;
    for (int64_t i = 0; i < main; i++) acc[i % 16] = fmaf(a[i], b[i], acc[i % 16]);
    float s = fold16(acc);
    for (int64_t i = main; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static void panel_run_ref(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                          int64_t p1, int64_t n, float *y, int64_t ldy) {
    for (int64_t j = 0; j < t; j++) {
        const q8_act *xj = x + j * nb;
        for (int64_t p = p0; p < p1; p++) {
            for (int i = 0; i < PANEL && p * PANEL + i < n; i++) {
                float acc = 0.0f;
                for (int64_t b = 0; b < nb; b++) {
                    const q8x16 *wb = w + p * nb + b;
                    int32_t s = 0;
                    for (int c = 0; c < QK; c++) /* column c: chunk c / 4, byte c % 4 */
                        s += (int32_t)(int8_t)(wb->qs[q8_panel_byte(i, c)] ^ 0x80) * xj[b].qs[c];
                    acc = fmaf(q8_fp16_to_fp32_ref(wb->d[i]) * xj[b].d, (float)s, acc);
                }
                y[j * ldy + p * PANEL + i] = acc;
            }
        }
    }
}

/* Column c of row i in a Q4_0 panel block: the low nibble of byte (c % 16) for c < 16, the
 * high one of the same byte for c >= 16, minus 8. */
static inline int32_t q4_at(const q4x16 *wb, int i, int c) {
    const uint8_t byte = wb->qs[q8_panel_byte(i, c % 16)];
    return (int32_t)(c < 16 ? byte & 15 : byte >> 4) - 8;
}

static void q4_panel_run_ref(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                             int64_t p1, int64_t n, float *y, int64_t ldy) {
    for (int64_t j = 0; j < t; j++) {
        const q8_act *xj = x + j * nb;
        for (int64_t p = p0; p < p1; p++) {
            for (int i = 0; i < PANEL && p * PANEL + i < n; i++) {
                float acc = 0.0f;
                for (int64_t b = 0; b < nb; b++) {
                    const q4x16 *wb = w + p * nb + b;
                    int32_t s = 0;
                    for (int c = 0; c < QK; c++) s += q4_at(wb, i, c) * xj[b].qs[c];
                    acc = fmaf(q8_fp16_to_fp32_ref(wb->d[i]) * xj[b].d, (float)s, acc);
                }
                y[j * ldy + p * PANEL + i] = acc;
            }
        }
    }
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
    .panel_run = panel_run_ref,
    .q4_panel_run = q4_panel_run_ref,
    .f32_rows = f32_rows_ref,
    .f32_tile = f32_tile_ref,
    .dot_f32 = dot_f32_ref,
    .axpy_f32 = axpy_f32_ref,
};
