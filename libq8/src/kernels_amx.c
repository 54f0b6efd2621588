/* AMX-INT8 kernels for the batched products (x86-64, Sapphire Rapids and later): "amx" is the
 * avx512vnni path with its panel runs replaced for 16 tokens and more.
 *
 * One tile product gives, for 16 tokens x 16 weight rows, the exact int32 dot product of one
 * block (K = 32: A is 16 tokens x 32 activation quants, B is the panel block as it is stored,
 * 8 rows of 4 columns x 16 weight rows: q8x16 is already the VNNI layout AMX wants). The float
 * steps after it are the reference's, per row and token in block order, so results are
 * bitwise equal to every other path. Tokens past the last full group of 16 (and calls with
 * fewer than 16) go to the avx512vnni kernels, which compute the same bits. */
#include <immintrin.h>
#include <stdlib.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "q8_internal.h"

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int q8_amx_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
    if (!amx_tile || !amx_int8) return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const uint64_t xcr0 = ((uint64_t)hi << 32) | lo;
    if ((xcr0 & (3u << 17)) != (3u << 17)) return 0; /* XTILECFG and XTILEDATA state enabled */
    /* Linux 5.16+ hands out the 8 KiB tile state only on request; a refusal (older kernel,
     * seccomp) leaves the avx512vnni path in charge. */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0) return 0;
    return (perm >> XFEATURE_XTILEDATA) & 1;
}

/* Tile registers: A (activations) 0 and 4, B (weights) 1 and 5, C (int32 results) 2, 3, 6, 7;
 * consecutive blocks alternate A/B pairs, so that the loads of one block do not wait for the
 * product of the previous one, and four C tiles keep four products in flight. */
typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;
static_assert(sizeof(tilecfg) == 64, "LDTILECFG reads 64 bytes");

static void tiles_on(void) {
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    static const int A[2] = {0, 4}, B[2] = {1, 5}, C[4] = {2, 3, 6, 7};
    for (int i = 0; i < 2; i++) {
        cfg.rows[A[i]] = 16, cfg.colsb[A[i]] = QK;      /* 16 tokens x one block's 32 quants */
        cfg.rows[B[i]] = QK / 4, cfg.colsb[B[i]] = 64;  /* 8 groups of 4 columns x 16 rows */
    }
    for (int i = 0; i < 4; i++) cfg.rows[C[i]] = 16, cfg.colsb[C[i]] = 64; /* 16 x 16 int32 */
    /* gcc 12's _tile_loadconfig tells the compiler it reads 8 bytes, so the stores above may be
     * dropped; this operand is the whole struct. */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

#define GROUP 16 /* tokens per tile */

/* 16 tokens' activation block b, as the tiles and the float steps read it: the quants of the
 * 16 tokens contiguous (one 512-byte tile load, instead of 16 rows nb * 40 bytes apart), then
 * their scales and offset sums. */
typedef struct {
    int8_t qs[GROUP][QK];
    float d[GROUP];
    int32_t nsum[GROUP];
} act_group;
static_assert(sizeof(act_group) == 640, "act_group is 640 bytes");

/* Tokens [0, groups * 16) of x (nb blocks each) regrouped: element g * nb + b. */
static act_group *group_acts(const q8_act *x, int64_t nb, int64_t groups) {
    act_group *out = aligned_alloc(64, (size_t)(groups * nb) * sizeof *out);
    if (!out) return NULL;
    for (int64_t g = 0; g < groups; g++)
        for (int m = 0; m < GROUP; m++)
            for (int64_t b = 0; b < nb; b++) {
                const q8_act *a = x + (g * GROUP + m) * nb + b;
                act_group *o = out + g * nb + b;
                memcpy(o->qs[m], a->qs, QK);
                o->d[m] = a->d;
                o->nsum[m] = a->nsum;
            }
    return out;
}

/* The reference's float step for one block of 16 tokens x 16 rows: s (int32, token-major, as
 * tile-stored) plus the token's offset correction (Q8_0 only), then
 * acc = fmaf(dw * dx, (float)s, acc). */
static inline __attribute__((always_inline)) void
block_step(__m512 acc[GROUP], const int32_t s[GROUP][16], __m512 dw, const act_group *a, const int q4) {
#pragma GCC unroll 16
    for (int m = 0; m < GROUP; m++) {
        __m512i si = _mm512_load_si512((const void *)s[m]);
        if (!q4) si = _mm512_add_epi32(si, _mm512_set1_epi32(a->nsum[m]));
        const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(a->d[m]));
        acc[m] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(si), acc[m]);
    }
}

static inline void store_rows(const __m512 acc[GROUP], float *y, int64_t ldy, int64_t valid) {
    const __mmask16 k = valid >= PANEL ? (__mmask16)0xffff : (__mmask16)((1u << valid) - 1u);
    for (int m = 0; m < GROUP; m++) _mm512_mask_storeu_ps(y + m * ldy, k, acc[m]);
}

/* The block products of one panel x 16 tokens, software-pipelined: the tile products of blocks
 * b .. b + 3 are issued (four C tiles in flight), then the float steps of b - 4 .. b - 1 read
 * what the previous round stored, then b .. b + 3 are stored; so no float step waits for the
 * tile store just before it, and the tile unit has four independent products to overlap.
 * Q8_0 (q4 = 0): B is the panel block as stored (q + 128, unsigned): TDPBSUD, and the sum
 * takes -128 * sum(x) (q8_act.nsum) to remove the offset. Q4_0 (q4 = 1): B comes from wq, the
 * panel's blocks unpacked to signed nibble - 8: TDPBSSD, exact as it stands. */
static inline __attribute__((always_inline)) void
group_run(const q8x16 *w8, const q4x16 *w4, const int8_t (*wq)[QK / 4][64], int64_t nb, const act_group *x,
          float *y, int64_t ldy, int64_t valid, const int q4) {
    __m512 acc[GROUP];
    for (int m = 0; m < GROUP; m++) acc[m] = _mm512_setzero_ps();
    int32_t s[4][GROUP][16] __attribute__((aligned(64)));
#define B_OF(b) (q4 ? (const void *)wq[b] : (const void *)w8[b].qs)
#define DW_OF(b) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q4 ? w4[b].d : w8[b].d)))
#define ISSUE(C, A, B, b)                                                                      \
    do {                                                                                       \
        _tile_loadd(A, x[b].qs, QK);                                                           \
        _tile_loadd(B, B_OF(b), 64);                                                           \
        _tile_zero(C);                                                                         \
        if (q4) _tile_dpbssd(C, A, B);                                                         \
        else _tile_dpbsud(C, A, B);                                                            \
    } while (0)
#define STEP(i, b) block_step(acc, (const int32_t(*)[16])s[i], DW_OF(b), x + (b), q4)
    const int64_t quads = nb / 4;
    for (int64_t i = 0; i < quads; i++) {
        const int64_t b = 4 * i;
        ISSUE(2, 0, 1, b);
        ISSUE(3, 4, 5, b + 1);
        ISSUE(6, 0, 1, b + 2);
        ISSUE(7, 4, 5, b + 3);
        if (i > 0) {
            STEP(0, b - 4);
            STEP(1, b - 3);
            STEP(2, b - 2);
            STEP(3, b - 1);
        }
        _tile_stored(2, s[0], 64);
        _tile_stored(3, s[1], 64);
        _tile_stored(6, s[2], 64);
        _tile_stored(7, s[3], 64);
    }
    if (quads > 0) {
        const int64_t b = 4 * quads;
        STEP(0, b - 4);
        STEP(1, b - 3);
        STEP(2, b - 2);
        STEP(3, b - 1);
    }
    for (int64_t b = 4 * quads; b < nb; b++) {
        ISSUE(2, 0, 1, b);
        _tile_stored(2, s[0], 64);
        STEP(0, b);
    }
#undef STEP
#undef ISSUE
#undef DW_OF
#undef B_OF
    store_rows(acc, y, ldy, valid);
}

static void q8_group(const q8x16 *w, int64_t nb, const act_group *x, float *y, int64_t ldy, int64_t valid) {
    group_run(w, NULL, NULL, nb, x, y, ldy, valid, 0);
}

/* The nibbles of a Q4_0 panel block as B wants them, signed (nibble - 8): rows 0-3 hold the
 * low nibbles (columns 0-15), rows 4-7 the high ones (columns 16-31). */
static inline void q4_unpack_b(const q4x16 *wb, int8_t out[QK / 4][64]) {
    const __m512i m = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    for (int j = 0; j < 4; j++) {
        const __m512i v = _mm512_loadu_si512((const void *)(wb->qs + 64 * j));
        _mm512_store_si512((void *)out[j], _mm512_sub_epi8(_mm512_and_si512(v, m), eight));
        _mm512_store_si512((void *)out[j + 4],
                           _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m), eight));
    }
}

static void q4_group(const q4x16 *w, const int8_t (*wq)[QK / 4][64], int64_t nb, const act_group *x, float *y,
                     int64_t ldy, int64_t valid) {
    group_run(NULL, w, wq, nb, x, y, ldy, valid, 1);
}

/* Panels outer, token groups inner: a panel's weights stay in L1/L2 while every group passes.
 * Without memory for the regrouped activations (or the unpacked nibbles) the avx512vnni kernels
 * take every token: the same bits. */
static void panel_run_amx(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                          int64_t p1, int64_t n, float *y, int64_t ldy) {
    int64_t full = t / GROUP * GROUP;
    act_group *xg = full ? group_acts(x, nb, full / GROUP) : NULL;
    if (!xg) full = 0;
    if (full) {
        tiles_on();
        for (int64_t p = p0; p < p1; p++)
            for (int64_t g = 0; g < full / GROUP; g++)
                q8_group(w + p * nb, nb, xg + g * nb, y + g * GROUP * ldy + p * PANEL, ldy, n - p * PANEL);
        _tile_release();
    }
    free(xg);
    if (t > full)
        q8_kernels_avx512vnni.panel_run(w, nb, x + full * nb, t - full, p0, p1, n, y + full * ldy, ldy);
}

static void q4_panel_run_amx(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                             int64_t p1, int64_t n, float *y, int64_t ldy) {
    int64_t full = t / GROUP * GROUP;
    /* A panel's nibbles are unpacked once for all of its token groups (nb x 512 bytes). */
    int8_t (*wq)[QK / 4][64] = full ? aligned_alloc(64, (size_t)nb * sizeof *wq) : NULL;
    act_group *xg = wq ? group_acts(x, nb, full / GROUP) : NULL;
    if (!xg) full = 0;
    if (full) {
        tiles_on();
        for (int64_t p = p0; p < p1; p++) {
            for (int64_t b = 0; b < nb; b++) q4_unpack_b(w + p * nb + b, wq[b]);
            for (int64_t g = 0; g < full / GROUP; g++)
                q4_group(w + p * nb, (const int8_t(*)[QK / 4][64])wq, nb, xg + g * nb, y + g * GROUP * ldy + p * PANEL,
                         ldy, n - p * PANEL);
        }
        _tile_release();
    }
    free(wq);
    free(xg);
    if (t > full)
        q8_kernels_avx512vnni.q4_panel_run(w, nb, x + full * nb, t - full, p0, p1, n, y + full * ldy,
                                           ldy);
}

/* Everything else is avx512vnni's (a C initializer cannot copy another table's members). */
static void quantize_row_amx(const float *x, q8_block *y, int64_t k) {
    q8_kernels_avx512vnni.quantize_row(x, y, k);
}
static void f32_rows_amx(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1, float *y) {
    q8_kernels_avx512vnni.f32_rows(w, k, x, r0, r1, y);
}
static void f32_tile_amx(const float *w, int64_t k, const float *x, int64_t t, int64_t r0, int64_t r1,
                         float *y, int64_t ldy) {
    q8_kernels_avx512vnni.f32_tile(w, k, x, t, r0, r1, y, ldy);
}
static float dot_f32_amx(const float *a, const float *b, int64_t n) {
    return q8_kernels_avx512vnni.dot_f32(a, b, n);
}
static void axpy_f32_amx(float a, const float *x, float *y, int64_t n) {
    q8_kernels_avx512vnni.axpy_f32(a, x, y, n);
}

Q8_KERNEL_TABLE(amx, quantize_row_amx);
