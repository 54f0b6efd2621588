/* AMX-INT8 kernels for the batched products (x86-64, Sapphire Rapids and later): "amx" is the
 * avx512vnni path with its panel runs replaced for 16 tokens and more.
 *
 * One tile product gives, for 16 tokens x 16 weight rows, the exact int32 dot product of one
 * block (K = 32: A is 16 tokens x 32 activation quants, B is the panel block's quants made
 * signed, in the VNNI order the panels already use: 8 rows of 4 columns x 16 weight rows).
 * The float steps after it are the reference's, per row and token in block order, so results
 * are bitwise equal to every other path. Tokens past the last full group of 16 (and calls with
 * fewer than 16) go to the avx512vnni kernels, which compute the same bits.
 * Where the time goes (tools/PERF_NOTES.md, "AMX-INT8, second pass"): per block and 16 x 16,
 * the product (~19 cycles), the tile store of its 1 KiB of sums (~17), the two tile loads
 * (~10) and the float steps (48 vector ops, ~26) barely overlap on the CPU measured. */
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
 * 16 tokens contiguous (one 512-byte tile load; straight from q8_act, 16 rows nb * 40 bytes
 * apart, the same run took ~6 ns a block more), then their scales. */
typedef struct {
    int8_t qs[GROUP][QK];
    float d[GROUP];
} act_group;
static_assert(sizeof(act_group) == 576, "act_group is 576 bytes");

/* Tokens [0, groups * 16) of x (nb blocks each) regrouped: element g * nb + b. */
static void group_acts(const q8_act *x, int64_t nb, int64_t groups, act_group *out) {
    for (int64_t g = 0; g < groups; g++)
        for (int m = 0; m < GROUP; m++)
            for (int64_t b = 0; b < nb; b++) {
                const q8_act *a = x + (g * GROUP + m) * nb + b;
                act_group *o = out + g * nb + b;
                memcpy(o->qs[m], a->qs, QK);
                o->d[m] = a->d;
            }
}

/* One panel block as B and the float steps read it: the 16 rows' quants signed (Q8_0: q, not
 * q + 128; Q4_0: nibble - 8) in the VNNI order the panels already use (8 tile rows of 4
 * columns x 16 weight rows), so one TDPBSSD gives the exact block dot with no offset term,
 * and the 16 row scales widened to float. Both formats are unpacked once per panel for all
 * token groups; 64-byte aligned, which tile loads want (q8x16.qs sits at byte 32). */
typedef struct {
    int8_t qs[QK / 4][64];
    float dw[PANEL];
} wblock;
static_assert(sizeof(wblock) == 576, "wblock is 576 bytes");

/* Blocks [0, count) of the next panel, to be unpacked while this one's tiles run: done in
 * bulk before a panel, the unpack waited on every weight line from L2/L3 with the tile unit
 * idle (~4 ns of each 16 x 16 block's ~28 at 64 tokens); spread over the quads, its loads
 * overlap the tile work (~2 ns a block saved). */
typedef struct {
    void (*unpack)(const void *src, int64_t nb, wblock *out);
    const unsigned char *src;
    size_t size; /* bytes per source panel block */
    wblock *dst;
    int64_t count;
} next_panel;

static void unpack_q8(const void *src, int64_t nb, wblock *out) {
    const q8x16 *w = src;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        for (int j = 0; j < QK / 4; j++)
            _mm512_store_si512((void *)out[b].qs[j],
                               _mm512_xor_si512(_mm512_loadu_si512((const void *)(w[b].qs + 64 * j)), flip));
        _mm512_store_ps(out[b].dw, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w[b].d)));
    }
}

/* Q4_0: tile rows 0-3 hold the low nibbles (columns 0-15), rows 4-7 the high ones (16-31). */
static void unpack_q4(const void *src, int64_t nb, wblock *out) {
    const q4x16 *w = src;
    const __m512i m = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    for (int64_t b = 0; b < nb; b++) {
        for (int j = 0; j < 4; j++) {
            const __m512i v = _mm512_loadu_si512((const void *)(w[b].qs + 64 * j));
            _mm512_store_si512((void *)out[b].qs[j], _mm512_sub_epi8(_mm512_and_si512(v, m), eight));
            _mm512_store_si512((void *)out[b].qs[j + 4],
                               _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m), eight));
        }
        _mm512_store_ps(out[b].dw, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w[b].d)));
    }
}

/* The 16 accumulators (one per token, 16 rows each) are named variables, not an array: gcc
 * kept an array of them in memory, a load and a store per token and block, and those stores
 * competed with the tile stores for the store port. */
#define TOKENS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define ACC_DECL(m) __m512 acc##m = _mm512_setzero_ps();
/* The reference's float step for token m of one block (s: int32, token-major as tile-stored):
 * acc = fmaf(dw * dx, (float)s, acc). Three vector ops. */
#define ACC_STEP(m)                                                                                \
    acc##m = _mm512_fmadd_ps(_mm512_mul_ps(dw_, _mm512_set1_ps(xa_->d[m])),                      \
                             _mm512_cvtepi32_ps(_mm512_load_si512((const void *)s_[m])), acc##m);
#define ACC_STORE(m) _mm512_mask_storeu_ps(y + m * ldy, k, acc##m);

/* The block products of one panel x 16 tokens, software-pipelined: the tile products of blocks
 * b .. b + 3 are issued (four C tiles in flight), then the float steps of b - 4 .. b - 1 read
 * what the previous round stored, then b .. b + 3 are stored; so no float step waits for the
 * tile store just before it, and the tile unit has four independent products to overlap. */
static void group_run(const wblock *w, int64_t nb, const act_group *x, float *y, int64_t ldy, int64_t valid,
                      const next_panel *np) {
    TOKENS(ACC_DECL)
    int32_t s[4][GROUP][16] __attribute__((aligned(64)));
#define ISSUE(C, A, B, b)                                                                      \
    do {                                                                                       \
        _tile_loadd(A, x[b].qs, QK);                                                           \
        _tile_loadd(B, w[b].qs, 64);                                                           \
        _tile_zero(C);                                                                         \
        _tile_dpbssd(C, A, B);                                                                 \
    } while (0)
#define STEP(i, b)                                                                             \
    do {                                                                                       \
        const __m512 dw_ = _mm512_load_ps(w[b].dw);                                            \
        const act_group *xa_ = x + (b);                                                        \
        const int32_t(*s_)[16] = s[i];                                                         \
        TOKENS(ACC_STEP)                                                                       \
    } while (0)
    const int64_t quads = nb / 4, per_quad = quads ? (np->count + quads - 1) / quads : 0;
    for (int64_t i = 0; i < quads; i++) {
        const int64_t b = 4 * i, u0 = i * per_quad, u1 = u0 + per_quad < np->count ? u0 + per_quad : np->count;
        if (u1 > u0) np->unpack(np->src + (size_t)u0 * np->size, u1 - u0, np->dst + u0);
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
    if (!quads && np->count) np->unpack(np->src, np->count, np->dst);
    for (int64_t b = 4 * quads; b < nb; b++) {
        ISSUE(2, 0, 1, b);
        _tile_stored(2, s[0], 64);
        STEP(0, b);
    }
#undef STEP
#undef ISSUE
    const __mmask16 k = valid >= PANEL ? (__mmask16)0xffff : (__mmask16)((1u << valid) - 1u);
    TOKENS(ACC_STORE)
}

/* Panels outer, token groups inner: a panel's unpacked weights (nb x 576 bytes) stay in L1/L2
 * while every group passes, and the groups' runs unpack the next panel into the other half of
 * wu, a share each. Returns how many leading tokens it computed (whole groups of 16; none
 * without memory for the unpacked panels and the regrouped activations): the caller's
 * avx512vnni kernel takes the rest, with the same bits. */
static int64_t runs_amx(const void *w, size_t size, void (*unpack)(const void *, int64_t, wblock *), int64_t nb,
                     const q8_act *x, int64_t t, int64_t p0, int64_t p1, int64_t n, float *y, int64_t ldy) {
    const int64_t groups = t / GROUP;
    wblock *wu = groups ? aligned_alloc(64, (size_t)nb * (2 * sizeof(wblock) + (size_t)groups * sizeof(act_group)))
                        : NULL;
    const int64_t full = wu ? groups * GROUP : 0;
    if (full) {
        act_group *xg = (act_group *)(wu + 2 * nb);
        group_acts(x, nb, groups, xg);
        const unsigned char *src = w;
        unpack(src + (size_t)(p0 * nb) * size, nb, wu);
        tiles_on();
        for (int64_t p = p0; p < p1; p++) {
            wblock *cur = wu + (p - p0) % 2 * nb, *nxt = wu + (p - p0 + 1) % 2 * nb;
            for (int64_t g = 0; g < groups; g++) {
                const int64_t b0 = nb * g / groups, b1 = p + 1 < p1 ? nb * (g + 1) / groups : b0;
                const next_panel np = {unpack, src + (size_t)((p + 1) * nb + b0) * size, size, nxt + b0, b1 - b0};
                group_run(cur, nb, xg + g * nb, y + g * GROUP * ldy + p * PANEL, ldy, n - p * PANEL, &np);
            }
        }
        _tile_release();
    }
    free(wu);
    return full;
}

static void panel_run_amx(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0, int64_t p1,
                          int64_t n, float *y, int64_t ldy) {
    const int64_t full = runs_amx(w, sizeof(q8x16), unpack_q8, nb, x, t, p0, p1, n, y, ldy);
    if (t > full)
        q8_kernels_avx512vnni.panel_run(w, nb, x + full * nb, t - full, p0, p1, n, y + full * ldy, ldy);
}

static void q4_panel_run_amx(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0, int64_t p1,
                             int64_t n, float *y, int64_t ldy) {
    const int64_t full = runs_amx(w, sizeof(q4x16), unpack_q4, nb, x, t, p0, p1, n, y, ldy);
    if (t > full)
        q8_kernels_avx512vnni.q4_panel_run(w, nb, x + full * nb, t - full, p0, p1, n, y + full * ldy, ldy);
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
