/* The packed weight layout (q8x16, see q8.h): GGML rows scattered into 16-row panels and
 * gathered back. Loading packs once; nothing in a decode step touches this file. */
#include <stdlib.h>

#include "q8_internal.h"

int64_t q8_packed_count(int64_t n, int64_t k) {
    if (!q8_mat_ok(n, k) || k % QK != 0) return -1;
    return (n + PANEL - 1) / PANEL * (k / QK);
}

void q8_put_row(q8x16 *dst, int64_t nb, int64_t r, const q8_block *row) {
    q8x16 *pb = dst + r / PANEL * nb;
    const int i = (int)(r % PANEL);
    for (int64_t b = 0; b < nb; b++) {
        pb[b].d[i] = row[b].d;
        for (int j = 0; j < 8; j++) { /* 4 columns at a time: one 32-bit lane of the panel */
            uint32_t v;
            memcpy(&v, row[b].qs + 4 * j, 4);
            v ^= 0x80808080u;
            memcpy(pb[b].qs + 64 * j + 4 * i, &v, 4);
        }
    }
}

void q8_get_row(const q8x16 *src, int64_t nb, int64_t r, q8_block *row) {
    const q8x16 *pb = src + r / PANEL * nb;
    const int i = (int)(r % PANEL);
    for (int64_t b = 0; b < nb; b++) {
        row[b].d = pb[b].d[i];
        for (int j = 0; j < 8; j++) {
            uint32_t v;
            memcpy(&v, pb[b].qs + 64 * j + 4 * i, 4);
            v ^= 0x80808080u;
            memcpy(row[b].qs + 4 * j, &v, 4);
        }
    }
}

void q8_put_padding(q8x16 *dst, int64_t n, int64_t nb) {
    q8x16 *last = dst + (n - 1) / PANEL * nb;
    for (int i = (int)(n % PANEL); i > 0 && i < PANEL; i++)
        for (int64_t b = 0; b < nb; b++) {
            last[b].d[i] = 0;
            for (int j = 0; j < 8; j++) memset(last[b].qs + 64 * j + 4 * i, 0x80, 4);
        }
}

int q8_pack(const q8_block *src, int64_t n, int64_t k, q8x16 *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(n, k) && k % QK == 0);
    const int64_t nb = k / QK;
    /* The kernels' sign trick needs -q to fit an int8: ggml's quantizers never write -128. */
    for (int64_t b = 0; b < n * nb; b++)
        for (int c = 0; c < QK; c++) Q8_CHECK(src[b].qs[c] != -128);
    for (int64_t r = 0; r < n; r++) q8_put_row(dst, nb, r, src + r * nb);
    q8_put_padding(dst, n, nb);
    return Q8_OK;
}

int q8_unpack(const q8x16 *src, int64_t n, int64_t k, q8_block *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(n, k) && k % QK == 0);
    const int64_t nb = k / QK;
    for (int64_t r = 0; r < n; r++) q8_get_row(src, nb, r, dst + r * nb);
    return Q8_OK;
}

int q8_dequantize_packed(const q8x16 *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                         float *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(n, k) && k % QK == 0);
    Q8_CHECK(row0 >= 0 && rows > 0 && row0 < n && rows <= n - row0);
    const int64_t nb = k / QK;
    for (int64_t r = 0; r < rows; r++) {
        const q8x16 *pb = src + (row0 + r) / PANEL * nb;
        const int i = (int)((row0 + r) % PANEL);
        float *out = dst + r * k;
        for (int64_t b = 0; b < nb; b++) {
            const float d = q8_fp16_to_fp32_ref(pb[b].d[i]);
            for (int c = 0; c < QK; c++)
                out[b * QK + c] = d * (float)(int8_t)(pb[b].qs[q8_panel_byte(i, c)] ^ 0x80u);
        }
    }
    return Q8_OK;
}

void q8_act_prep(const q8_block *x, int64_t nb, q8_act *out) {
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int c = 0; c < QK; c++) s += x[b].qs[c];
        memcpy(out[b].qs, x[b].qs, QK);
        out[b].d = q8_fp16_to_fp32_ref(x[b].d);
        out[b].nsum = -128 * s;
    }
}
