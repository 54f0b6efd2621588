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

/* Column c of row i in a panel block, as the signed quant: Q8_0 stores q + 128; Q4_0 holds
 * q + 8 in the low nibble of byte c % 16 for c < 16 and in the high one for c >= 16. */
static inline int32_t q8_at(const q8x16 *wb, int i, int c) {
    return (int32_t)(int8_t)(wb->qs[q8_panel_byte(i, c)] ^ 0x80);
}

static inline int32_t q4_at(const q4x16 *wb, int i, int c) {
    const uint8_t byte = wb->qs[q8_panel_byte(i, c % 16)];
    return (int32_t)(c < 16 ? byte & 15 : byte >> 4) - 8;
}

/* Both formats (q4 a constant in each caller): row by row, the chain above. */
static inline __attribute__((always_inline)) void panels_ref(const void *w, int64_t nb, const q8_act *x,
                                                             int64_t t, int64_t p0, int64_t p1, int64_t n,
                                                             float *y, int64_t ldy, const int q4) {
    const size_t psize = q4 ? sizeof(q4x16) : sizeof(q8x16);
    for (int64_t j = 0; j < t; j++) {
        const q8_act *xj = x + j * nb;
        for (int64_t p = p0; p < p1; p++) {
            for (int i = 0; i < PANEL && p * PANEL + i < n; i++) {
                float acc = 0.0f;
                for (int64_t b = 0; b < nb; b++) {
                    const unsigned char *wb = (const unsigned char *)w + (size_t)(p * nb + b) * psize;
                    int32_t s = 0;
                    for (int c = 0; c < QK; c++)
                        s += (q4 ? q4_at((const q4x16 *)wb, i, c) : q8_at((const q8x16 *)wb, i, c)) * xj[b].qs[c];
                    const uint16_t dw = ((const uint16_t *)wb)[i]; /* d[16] leads the block */
                    acc = fmaf(q8_fp16_to_fp32_ref(dw) * xj[b].d, (float)s, acc);
                }
                y[j * ldy + p * PANEL + i] = acc;
            }
        }
    }
}

static void panel_run_ref(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                          int64_t p1, int64_t n, float *y, int64_t ldy) {
    panels_ref(w, nb, x, t, p0, p1, n, y, ldy, 0);
}

static void q4_panel_run_ref(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                             int64_t p1, int64_t n, float *y, int64_t ldy) {
    panels_ref(w, nb, x, t, p0, p1, n, y, ldy, 1);
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

Q8_KERNEL_TABLE(ref, q8_quantize_row_ref);
