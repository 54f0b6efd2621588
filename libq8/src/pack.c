/* The packed weight layouts (q8x16 and q4x16, see q8.h): GGML rows scattered into 16-row panels
 * and gathered back. Loading packs once; nothing in a decode step touches this file but the
 * embedding rows (dequantize_packed).
 *
 * Both layouts are one shape: a panel block holds the 16 rows' fp16 scales, then groups of 64
 * bytes, each the same 4 GGML quant bytes of the 16 rows (a 32-bit lane per row). Q8_0 has 8
 * groups and stores q + 128 (the XOR below); Q4_0 has 4 and stores its GGML bytes (two nibbles
 * each) as they are. So one set of loops serves both, with q4 (0: Q8_0, 1: Q4_0) choosing. */
#include <stdlib.h>

#include "q8_internal.h"

typedef struct {
    size_t block, panel; /* bytes of a GGML block, of a panel block */
    int groups;          /* 64-byte groups per panel block */
    uint32_t flip;       /* GGML lane XOR flip = packed lane */
    unsigned char pad;   /* the quant bytes of a padding row: value 0 */
} layout;

static const layout LAYOUTS[2] = {
    {sizeof(q8_block), sizeof(q8x16), 8, 0x80808080u, 0x80},
    {sizeof(q4_block), sizeof(q4x16), 4, 0, 0x88},
};
/* Where the scale and quants of a GGML block and of a panel block start (asserted in
 * q8_internal.h for both formats). */
#define BLOCK_QS offsetof(q8_block, qs)
#define PANEL_QS offsetof(q8x16, qs)

/* Byte offset of panel block b of the panel that holds row r. */
static size_t panel_block(const layout *L, int64_t nb, int64_t r, int64_t b) {
    return (size_t)(r / PANEL * nb + b) * L->panel;
}

int64_t q8_packed_count(int64_t n, int64_t k) {
    if (!q8_mat_ok(n, k) || k % QK != 0) return -1;
    return (n + PANEL - 1) / PANEL * (k / QK);
}

int64_t q8_q4_packed_count(int64_t n, int64_t k) { return q8_packed_count(n, k); }

void q8_put_row(void *dst, int q4, int64_t nb, int64_t r, const void *row) {
    const layout *L = &LAYOUTS[q4];
    const int i = (int)(r % PANEL);
    for (int64_t b = 0; b < nb; b++) {
        unsigned char *pb = (unsigned char *)dst + panel_block(L, nb, r, b);
        const unsigned char *g = (const unsigned char *)row + (size_t)b * L->block;
        memcpy(pb + 2 * i, g, 2); /* d[i] */
        for (int j = 0; j < L->groups; j++) { /* 4 quant bytes at a time: one lane of the panel */
            uint32_t v;
            memcpy(&v, g + BLOCK_QS + 4 * j, 4);
            v ^= L->flip;
            memcpy(pb + PANEL_QS + 64 * j + 4 * i, &v, 4);
        }
    }
}

static void get_row(const void *src, int q4, int64_t nb, int64_t r, void *row) {
    const layout *L = &LAYOUTS[q4];
    const int i = (int)(r % PANEL);
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *pb = (const unsigned char *)src + panel_block(L, nb, r, b);
        unsigned char *g = (unsigned char *)row + (size_t)b * L->block;
        memcpy(g, pb + 2 * i, 2);
        for (int j = 0; j < L->groups; j++) {
            uint32_t v;
            memcpy(&v, pb + PANEL_QS + 64 * j + 4 * i, 4);
            v ^= L->flip;
            memcpy(g + BLOCK_QS + 4 * j, &v, 4);
        }
    }
}

void q8_put_padding(void *dst, int q4, int64_t n, int64_t nb) {
    const layout *L = &LAYOUTS[q4];
    for (int i = (int)(n % PANEL); i > 0 && i < PANEL; i++)
        for (int64_t b = 0; b < nb; b++) {
            unsigned char *pb = (unsigned char *)dst + panel_block(L, nb, n - 1, b);
            memset(pb + 2 * i, 0, 2);
            for (int j = 0; j < L->groups; j++) memset(pb + PANEL_QS + 64 * j + 4 * i, L->pad, 4);
        }
}

static int pack(const void *src, int q4, int64_t n, int64_t k, void *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(n, k) && k % QK == 0);
    const int64_t nb = k / QK;
    const size_t row_bytes = (size_t)nb * LAYOUTS[q4].block;
    if (!q4) { /* the kernels' sign trick needs -q to fit an int8: ggml's quantizers never write -128 */
        const q8_block *s = src;
        for (int64_t b = 0; b < n * nb; b++)
            for (int c = 0; c < QK; c++) Q8_CHECK(s[b].qs[c] != -128);
    }
    for (int64_t r = 0; r < n; r++) q8_put_row(dst, q4, nb, r, (const unsigned char *)src + (size_t)r * row_bytes);
    q8_put_padding(dst, q4, n, nb);
    return Q8_OK;
}

static int unpack(const void *src, int q4, int64_t n, int64_t k, void *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(n, k) && k % QK == 0);
    const int64_t nb = k / QK;
    const size_t row_bytes = (size_t)nb * LAYOUTS[q4].block;
    for (int64_t r = 0; r < n; r++) get_row(src, q4, nb, r, (unsigned char *)dst + (size_t)r * row_bytes);
    return Q8_OK;
}

/* Rows row0 .. row0 + rows - 1 as float32: d * q, with q the signed quant of column c. */
static int dequantize_packed(const void *src, int q4, int64_t n, int64_t k, int64_t row0, int64_t rows,
                             float *dst) {
    Q8_CHECK(src && dst && q8_mat_ok(n, k) && k % QK == 0);
    Q8_CHECK(row0 >= 0 && rows > 0 && row0 < n && rows <= n - row0);
    const layout *L = &LAYOUTS[q4];
    const int64_t nb = k / QK;
    for (int64_t r = 0; r < rows; r++) {
        const int i = (int)((row0 + r) % PANEL);
        float *out = dst + r * k;
        for (int64_t b = 0; b < nb; b++, out += QK) {
            const unsigned char *pb = (const unsigned char *)src + panel_block(L, nb, row0 + r, b);
            const uint8_t *qs = pb + PANEL_QS;
            uint16_t h;
            memcpy(&h, pb + 2 * i, 2);
            const float d = q8_fp16_to_fp32_ref(h);
            if (q4)
                for (int c = 0; c < QK / 2; c++) {
                    const uint8_t byte = qs[q8_panel_byte(i, c)];
                    out[c] = d * (float)((byte & 15) - 8);
                    out[c + QK / 2] = d * (float)((byte >> 4) - 8);
                }
            else
                for (int c = 0; c < QK; c++) out[c] = d * (float)(int8_t)(qs[q8_panel_byte(i, c)] ^ 0x80u);
        }
    }
    return Q8_OK;
}

int q8_pack(const q8_block *src, int64_t n, int64_t k, q8x16 *dst) { return pack(src, 0, n, k, dst); }
int q8_q4_pack(const q4_block *src, int64_t n, int64_t k, q4x16 *dst) { return pack(src, 1, n, k, dst); }
int q8_unpack(const q8x16 *src, int64_t n, int64_t k, q8_block *dst) { return unpack(src, 0, n, k, dst); }
int q8_q4_unpack(const q4x16 *src, int64_t n, int64_t k, q4_block *dst) { return unpack(src, 1, n, k, dst); }

int q8_dequantize_packed(const q8x16 *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    return dequantize_packed(src, 0, n, k, row0, rows, dst);
}

int q8_q4_dequantize_packed(const q4x16 *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    return dequantize_packed(src, 1, n, k, row0, rows, dst);
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
