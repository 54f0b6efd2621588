/* AVX-512 (F, BW, DQ, VL) kernels; built twice: once as "avx512" and once with -mavx512vnni
 * and Q8_VNNI defined as "avx512vnni". One 512-bit register holds two consecutive blocks, so
 * lanes 0-7 are the reference's even-block accumulators and lanes 8-15 the odd-block ones. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "q8_internal.h"

#ifdef Q8_VNNI
#define SUFFIX(name) name##_avx512vnni
#define PATH_NAME "avx512vnni"
#else
#define SUFFIX(name) name##_avx512
#define PATH_NAME "avx512"
#endif

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Quants of blocks b[0] and b[1] in one register. */
static inline __m512i load2(const q8_block *b) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)b[0].qs);
    const __m256i hi = _mm256_loadu_si256((const __m256i *)b[1].qs);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Quants of block b[0] in the low half, zeros above. */
static inline __m512i load1(const q8_block *b) {
    return _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)b[0].qs));
}

static inline __m512 scale2(float lo, float hi) {
    return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1);
}

/* Activation prepared once per block pair, shared by every weight row. */
typedef struct {
    __m512i x;   /* quants of the two blocks (signed) */
#ifdef Q8_VNNI
    __m512i neg; /* -128 * (sum of each 4-byte group of x): the correction for w + 128 */
#endif
    __m512 d;    /* x scales: block b in lanes 0-7, block b+1 in lanes 8-15 */
} xpair;         /* 192 bytes: a K = 6912 row's table is 21 KiB and stays in L1 */

static inline xpair prep(const __m512i x, float d0, float d1) {
    xpair p;
    p.x = x;
#ifdef Q8_VNNI
    const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), x);
    p.neg = _mm512_sub_epi32(_mm512_setzero_si512(), s);
#endif
    p.d = scale2(d0, d1);
    return p;
}

/* 16 int32 lanes: lane g of each block = sum_{j<4} w[4g+j] * x[4g+j], exact. */
static inline __m512i lanes(__m512i w, const xpair *p) {
#ifdef Q8_VNNI
    /* (w + 128) as unsigned bytes times signed x, minus 128 * sum(x): vpdpbusd does not
     * saturate, and the correction was paid once per activation pair, not per row. */
    const __m512i wu = _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
    return _mm512_dpbusd_epi32(p->neg, wu, p->x);
#else
    const __m512i aw = _mm512_abs_epi8(w);
    const __m512i sx = _mm512_mask_sub_epi8(p->x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), p->x);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(aw, sx), _mm512_set1_epi16(1));
#endif
}

/* Scales of a weight block pair times the activation's: one 64-byte load at the pair holds
 * both fp16 scales (words 0 and 17); a word permute broadcasts them into the two halves and
 * vcvtph2ps widens them exactly. The load stays inside the pair's 68 bytes. */
static inline __m512 wscale2(const q8_block *wb, const xpair *p) {
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i words = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void *)wb));
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(words)), p->d);
}

static inline float fold(__m512 acc) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

/* Round half away from zero, exactly as roundf (see kernels_avx2.c). */
static inline __m512i round_away(__m512 v) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 a = _mm512_andnot_ps(sign, v);
    const __m512 f = _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, f), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 r = _mm512_mask_add_ps(f, up, f, _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_or_ps(r, _mm512_and_ps(sign, v)));
}

static void SUFFIX(quantize_row)(const float *x, q8_block *y, int64_t k) {
    const __m512 sign = _mm512_set1_ps(-0.0f), big = _mm512_set1_ps(3.40282347e38f);
    for (int64_t b = 0; b < k / QK; b++) {
        const float *xb = x + b * QK;
        const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        const __m512 a0 = _mm512_andnot_ps(sign, v0), a1 = _mm512_andnot_ps(sign, v1);
        const __mmask16 fin = _mm512_cmp_ps_mask(a0, big, _CMP_LE_OQ) &
                              _mm512_cmp_ps_mask(a1, big, _CMP_LE_OQ); /* false for NaN, Inf */
        if (fin != 0xffff) {
            q8_quantize_row_ref(xb, y + b, QK); /* the reference owns the non-finite case */
            continue;
        }
        const float d = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1)) / 127.0f;
        const float id = d != 0.0f && 1.0f / d <= 3.40282347e38f ? 1.0f / d : 0.0f; /* see quant.c */
        y[b].d = q8_fp32_to_fp16_ref(d);
        const __m512 idv = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v0, idv))));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16),
                         _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v1, idv))));
    }
}

static inline __m512 pair_step(const q8_block *wb, const xpair *p, __m512 acc) {
    const __m512 d = wscale2(wb, p);
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes(load2(wb), p)), acc);
}

/* The last block when nb is odd: an even block, so only lanes 0-7 may change. Scalar scale:
 * a 64-byte load here could run past the end of the matrix. */
static inline __m512 last_step(const q8_block *wb, const xpair *p, __m512 acc) {
    const __m512 d = _mm512_set1_ps(h2f(wb[0].d) * _mm512_cvtss_f32(p->d));
    return _mm512_mask3_fmadd_ps(d, _mm512_cvtepi32_ps(lanes(load1(wb), p)), acc, 0x00ff);
}

static inline xpair prep_at(const q8_block *x, int64_t b, int64_t nb) {
    if (b + 2 <= nb) return prep(load2(x + b), h2f(x[b].d), h2f(x[b + 1].d));
    return prep(load1(x + b), h2f(x[b].d), 0.0f);
}

#define PREP_STACK 128 /* block pairs prepared on the stack (24 KiB): K up to 8192 */

static void SUFFIX(q8_rows)(const q8_block *w, int64_t nb, const q8_block *x, int64_t r0,
                            int64_t r1, float *y) {
    /* The activation is prepared once for all rows of the chunk. */
    const int64_t np = nb / 2;
    xpair stack_prep[PREP_STACK];
    xpair *pp = np <= PREP_STACK ? stack_prep : aligned_alloc(64, (size_t)np * sizeof(xpair));
    if (pp)
        for (int64_t i = 0; i < np; i++) pp[i] = prep_at(x, 2 * i, nb);
    xpair tail = prep(_mm512_setzero_si512(), 0.0f, 0.0f);
    if (nb & 1) tail = prep_at(x, nb - 1, nb);
    /* One row at a time: a single sequential stream is what the hardware prefetcher follows
     * best (interleaving 4 rows ran at 40% of the speed from DRAM; the activation is in L1
     * anyway, so there is nothing to share between rows). */
    for (int64_t r = r0; r < r1; r++) {
        const q8_block *wr = w + r * nb;
        __m512 a = _mm512_setzero_ps();
        if (pp) {
            for (int64_t i = 0; i < np; i++) a = pair_step(wr + 2 * i, &pp[i], a);
        } else { /* allocation failed: prepare as we go */
            for (int64_t i = 0; i < np; i++) {
                const xpair p = prep_at(x, 2 * i, nb);
                a = pair_step(wr + 2 * i, &p, a);
            }
        }
        if (nb & 1) a = last_step(wr + nb - 1, &tail, a);
        y[r] = fold(a);
    }
    if (pp != stack_prep) free(pp);
}

/* ---- batched products (speculative verify, prefill) -------------------------------------
 * A register tile of R weight rows x T tokens walks the whole row: per block pair each row's
 * quants, scales and (VNNI) offset correction are loaded or computed once and used for T
 * tokens, and each token's prepared pair once for R rows. The weights of a row tile stay in
 * L1 while every token tile of the block passes over them, so each weight byte comes from
 * DRAM once per token block; the tokens' table (128 B per token and pair) sits in L2.
 *
 * VNNI: the token side holds x ^ 0x80 (x + 128 as unsigned bytes) and the row side the
 * correction -128 * (sum of each 4-byte group of w), paid once per row and pair instead of
 * once per token; vpdpbusd(-128*sum(w), x + 128, w) is the exact int32 lane sum. Without
 * VNNI the row side holds |w| and w's sign mask and the lanes are maddubs/madd as in lanes().
 * Either way the float work per (row, token, pair) is the reference's: d = dw * dx (exact),
 * then one fmaf per lane into the even/odd accumulator halves, then the same fold. */
typedef struct {
#ifdef Q8_VNNI
    __m512i xu; /* x ^ 0x80 */
#else
    __m512i x;
#endif
    __m512 d; /* x scales: block b in lanes 0-7, block b+1 in lanes 8-15 */
} tokpair;

typedef struct {
#ifdef Q8_VNNI
    __m512i w, neg;
#else
    __m512i aw;
    __mmask64 sgn;
#endif
    __m512 d;
} rowpair;

static inline tokpair tok_prep(__m512i x, __m512 d) {
    tokpair p;
#ifdef Q8_VNNI
    p.xu = _mm512_xor_si512(x, _mm512_set1_epi8((char)0x80));
#else
    p.x = x;
#endif
    p.d = d;
    return p;
}

static inline rowpair row_prep(__m512i w, __m512 d) {
    rowpair r;
#ifdef Q8_VNNI
    r.w = w;
    r.neg = _mm512_sub_epi32(_mm512_setzero_si512(),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), w));
#else
    r.aw = _mm512_abs_epi8(w);
    r.sgn = _mm512_movepi8_mask(w);
#endif
    r.d = d;
    return r;
}

static inline __m512i tile_lanes(const rowpair *r, const tokpair *p) {
#ifdef Q8_VNNI
    return _mm512_dpbusd_epi32(r->neg, p->xu, r->w);
#else
    const __m512i sx = _mm512_mask_sub_epi8(p->x, r->sgn, _mm512_setzero_si512(), p->x);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(r->aw, sx), _mm512_set1_epi16(1));
#endif
}

/* Both fp16 scales of a weight pair, widened (see wscale2). */
static inline __m512 wscales(const q8_block *wb) {
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_cvtph_ps(_mm512_castsi512_si256(
        _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void *)wb))));
}

#ifndef PF_ROWS
#define PF_ROWS 8 /* prefetch distance in rows: two 4-row tiles */
#endif

/* R rows (r .. r+R-1) x T tokens. tp: the tokens' table, pair-major with stride ts tokens
 * (tp[pi * ts + c]); tail: the tokens' odd last block (block nb-1, lanes 0-7) when nb is odd.
 * always_inline with constant R and T: the accumulators live in registers. */
static inline __attribute__((always_inline)) void
micro(const q8_block *w, int64_t nb, const tokpair *tp, int64_t ts, const tokpair *tail,
      float *y, int64_t ldy, const int R, const int T) {
    const int64_t np = nb / 2;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int c = 0; c < T; c++) acc[i][c] = _mm512_setzero_ps();
    /* The R rows are one contiguous stretch, but read pair by pair they are R interleaved
     * streams, which the hardware prefetcher follows badly (PERF_NOTES: one row at a time ran
     * 2.5x faster from DRAM than four). So the next stretch is prefetched in order: per pair,
     * the R * 68 bytes at the same relative offset (a few lines twice; nothing faults). */
    const char *pf = (const char *)(w + PF_ROWS * nb);
    for (int64_t pi = 0; pi < np; pi++) {
        const char *pl = pf + pi * R * (int64_t)(2 * sizeof(q8_block));
#pragma GCC unroll 5
        for (int l = 0; l < (R * 68 + 63) / 64 + 1; l++) _mm_prefetch(pl + 64 * l, _MM_HINT_T0);
        rowpair rp[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            const q8_block *wb = w + i * nb + 2 * pi;
            rp[i] = row_prep(load2(wb), wscales(wb));
        }
        const tokpair *p = tp + pi * ts;
#pragma GCC unroll 4
        for (int c = 0; c < T; c++) {
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const __m512 d = _mm512_mul_ps(rp[i].d, p[c].d);
                acc[i][c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(tile_lanes(&rp[i], &p[c])), acc[i][c]);
            }
        }
    }
    if (nb & 1) { /* an even block: lanes 0-7 only; scalar scale (no load past the matrix) */
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            const q8_block *wb = w + i * nb + nb - 1;
            const rowpair rp = row_prep(load1(wb), _mm512_set1_ps(h2f(wb->d)));
#pragma GCC unroll 4
            for (int c = 0; c < T; c++) {
                const __m512 d = _mm512_mul_ps(rp.d, tail[c].d);
                acc[i][c] = _mm512_mask3_fmadd_ps(d, _mm512_cvtepi32_ps(tile_lanes(&rp, &tail[c])),
                                                  acc[i][c], 0x00ff);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int c = 0; c < T; c++) y[c * ldy + i] = fold(acc[i][c]);
}

#define MICRO(R, T)                                                                            \
    static void micro_##R##x##T(const q8_block *w, int64_t nb, const tokpair *tp, int64_t ts,  \
                                const tokpair *tail, float *y, int64_t ldy) {                  \
        micro(w, nb, tp, ts, tail, y, ldy, R, T);                                              \
    }
MICRO(1, 1) MICRO(1, 2) MICRO(1, 3)
MICRO(2, 1) MICRO(2, 2) MICRO(2, 3)
MICRO(3, 1) MICRO(3, 2) MICRO(3, 3)
MICRO(4, 1) MICRO(4, 2) MICRO(4, 3)
#undef MICRO

typedef void (*micro_fn)(const q8_block *, int64_t, const tokpair *, int64_t, const tokpair *,
                         float *, int64_t);
static const micro_fn MICROS[4][3] = {
    {micro_1x1, micro_1x2, micro_1x3},
    {micro_2x1, micro_2x2, micro_2x3},
    {micro_3x1, micro_3x2, micro_3x3},
    {micro_4x1, micro_4x2, micro_4x3},
};

#define TILE_R 4
#define TILE_T 3
#define TOK_TABLE_BYTES (384 << 10) /* a token block's table: stays in L2 beside the weights */

/* Tokens per block of the table, and where block b starts: block b holds tokens
 * j0 = b * tb .. j0 + nt - 1 (nt = min(tb, t - j0)) as nt * np pairs, pair-major, then the nt
 * odd tail blocks; it starts at entry j0 * (np + 1). */
static int64_t tok_block(int64_t nb) {
    const int64_t tb = TOK_TABLE_BYTES / ((nb / 2 + 1) * (int64_t)sizeof(tokpair));
    return tb < TILE_T ? TILE_T : tb;
}

static int64_t SUFFIX(tile_table_bytes)(int64_t nb, int64_t t) {
    return t * (nb / 2 + 1) * (int64_t)sizeof(tokpair);
}

/* Token j's entries of the table (any thread, any order: each token writes only its own). */
static void SUFFIX(tile_prep)(const q8_block *xj, int64_t nb, int64_t t, int64_t j, void *table) {
    const int64_t np = nb / 2, tb = tok_block(nb), j0 = j / tb * tb;
    const int64_t nt = t - j0 < tb ? t - j0 : tb, c = j - j0;
    tokpair *base = (tokpair *)table + j0 * (np + 1);
    for (int64_t pi = 0; pi < np; pi++)
        base[pi * nt + c] = tok_prep(load2(xj + 2 * pi), scale2(h2f(xj[2 * pi].d), h2f(xj[2 * pi + 1].d)));
    if (nb & 1) base[np * nt + c] = tok_prep(load1(xj + nb - 1), scale2(h2f(xj[nb - 1].d), 0.0f));
}

static void SUFFIX(tile_run)(const q8_block *w, int64_t nb, const void *table, int64_t t,
                             int64_t r0, int64_t r1, float *y, int64_t ldy) {
    const int64_t np = nb / 2, tb = tok_block(nb);
    for (int64_t j0 = 0; j0 < t; j0 += tb) {
        const int64_t nt = t - j0 < tb ? t - j0 : tb;
        const tokpair *base = (const tokpair *)table + j0 * (np + 1), *tail = base + np * nt;
        /* Token tiles as even as possible (t = 4: 2 + 2, not 3 + 1): a one-token tile pays
         * the row side's work for a single product. */
        const int64_t ntiles = (nt + TILE_T - 1) / TILE_T;
        for (int64_t r = r0; r < r1; r += TILE_R) {
            const int R = (int)(r1 - r < TILE_R ? r1 - r : TILE_R);
            int64_t c = 0;
            for (int64_t ti = 0; ti < ntiles; ti++) {
                const int T = (int)((nt - c + (ntiles - ti) - 1) / (ntiles - ti));
                MICROS[R - 1][T - 1](w + r * nb, nb, base + c, nt, tail + c, y + (j0 + c) * ldy + r, ldy);
                c += T;
            }
        }
    }
}

static void SUFFIX(q8_tile)(const q8_block *w, int64_t nb, const q8_block *x, int64_t t,
                            int64_t r0, int64_t r1, float *y, int64_t ldy) {
    void *tab = aligned_alloc(64, (size_t)SUFFIX(tile_table_bytes)(nb, t));
    if (!tab) { /* allocation failed: the row kernel needs no table */
        for (int64_t j = 0; j < t; j++) SUFFIX(q8_rows)(w, nb, x + j * nb, r0, r1, y + j * ldy);
        return;
    }
    for (int64_t j = 0; j < t; j++) SUFFIX(tile_prep)(x + j * nb, nb, t, j, tab);
    SUFFIX(tile_run)(w, nb, tab, t, r0, r1, y, ldy);
    free(tab);
}

static float SUFFIX(dot_f32)(const float *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    const int64_t main = n - n % 16;
    for (int64_t i = 0; i < main; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    float s = fold(acc);
    for (int64_t i = main; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static void SUFFIX(f32_rows)(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                             float *y) {
    const int64_t main = k - k % 16;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float *w0 = w + r * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < main; i += 16) {
            const __m512 xv = _mm512_loadu_ps(x + i);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + i), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + i), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + i), xv, a3);
        }
        float s0 = fold(a0), s1 = fold(a1), s2 = fold(a2), s3 = fold(a3);
        for (int64_t i = main; i < k; i++) {
            s0 = fmaf(w0[i], x[i], s0);
            s1 = fmaf(w1[i], x[i], s1);
            s2 = fmaf(w2[i], x[i], s2);
            s3 = fmaf(w3[i], x[i], s3);
        }
        y[r] = s0;
        y[r + 1] = s1;
        y[r + 2] = s2;
        y[r + 3] = s3;
    }
    for (; r < r1; r++) y[r] = SUFFIX(dot_f32)(w + r * k, x, k);
}

static void SUFFIX(f32_tile)(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                             int64_t r1, float *y, int64_t ldy) {
    for (int64_t g = r0; g < r1; g += 16) {
        const int64_t g1 = g + 16 < r1 ? g + 16 : r1;
        for (int64_t j = 0; j < t; j++) SUFFIX(f32_rows)(w, k, x + j * k, g, g1, y + j * ldy);
    }
}

static void SUFFIX(axpy_f32)(float a, const float *x, float *y, int64_t n) {
    const __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

const q8_kernels SUFFIX(q8_kernels) = {
    .name = PATH_NAME,
    .quantize_row = SUFFIX(quantize_row),
    .q8_rows = SUFFIX(q8_rows),
    .q8_tile = SUFFIX(q8_tile),
    .tile_table_bytes = SUFFIX(tile_table_bytes),
    .tile_prep = SUFFIX(tile_prep),
    .tile_run = SUFFIX(tile_run),
    .f32_rows = SUFFIX(f32_rows),
    .f32_tile = SUFFIX(f32_tile),
    .dot_f32 = SUFFIX(dot_f32),
    .axpy_f32 = SUFFIX(axpy_f32),
};
