/* Q4_0: the reference quantizer (the gguf package's, which the property suite uses as its
 * oracle) and dequantization; its packed layout q4x16 lives with q8x16's in pack.c. Loading runs
 * this file; a decode step does not. */
#include <math.h>

#include "q8_internal.h"

#define Q4_NAN_BYTE 0x88u /* nibbles 8: value 0, so a poisoned block's d = NaN carries alone */

void q8_q4_quantize_row_ref(const float *x, q4_block *y, int64_t k) {
    for (int64_t b = 0; b < k / QK; b++) {
        const float *xb = x + b * QK;
        /* The first value of largest magnitude, sign included (numpy's argmax of |x|): an
         * all-zero block starting with -0.0 gets d = +0.0, otherwise d = -0.0 as in gguf. */
        float amax = fabsf(xb[0]), m = xb[0];
        int finite = amax <= Q8_FLT_MAX;
        for (int i = 1; i < QK; i++) {
            const float a = fabsf(xb[i]);
            finite &= (a <= Q8_FLT_MAX); /* false for Inf and NaN */
            if (a > amax) amax = a, m = xb[i];
        }
        if (!finite) {
            y[b].d = 0x7e00u;
            memset(y[b].qs, Q4_NAN_BYTE, sizeof y[b].qs);
            continue;
        }
        const float d = m / -8.0f;
        /* 1/d overflows only for |m| below ~2^-125: fp16(d) = -0 and nibbles 8 (q8_inv_scale). */
        const float id = q8_inv_scale(d);
        y[b].d = q8_fp32_to_fp16_ref(d);
        for (int j = 0; j < QK / 2; j++) {
            const float v0 = xb[j] * id + 8.5f, v1 = xb[j + QK / 2] * id + 8.5f; /* both >= 0.5 */
            const int q0 = (int)v0 < 15 ? (int)v0 : 15, q1 = (int)v1 < 15 ? (int)v1 : 15;
            y[b].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

int q8_q4_dequantize(const q4_block *src, int64_t rows, int64_t k, float *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(rows, k) && k % QK == 0);
    const int64_t nblocks = rows * (k / QK);
    for (int64_t b = 0; b < nblocks; b++) {
        const float d = q8_fp16_to_fp32_ref(src[b].d);
        for (int j = 0; j < QK / 2; j++) {
            dst[b * QK + j] = d * (float)((src[b].qs[j] & 15) - 8);
            dst[b * QK + j + QK / 2] = d * (float)((src[b].qs[j] >> 4) - 8);
        }
    }
    return Q8_OK;
}
