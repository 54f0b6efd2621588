/* AVX-512 (F, BW, DQ, VL) kernels; built twice: once as "avx512" and once with -mavx512vnni
 * and Q8_VNNI defined as "avx512vnni". One 512-bit register holds one packed panel's 16 rows,
 * a 32-bit lane per row, so lane i is row i's reference accumulator. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "q8_internal.h"

#ifdef Q8_VNNI
#define PATH avx512vnni
#else
#define PATH avx512
#endif
#define SUFFIX(name) Q8_PATHED(name, PATH)


static inline float fold(__m512 acc) {
    return q8_fold8(_mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1)));
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
    const __m512 sign = _mm512_set1_ps(-0.0f), big = _mm512_set1_ps(Q8_FLT_MAX);
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
        const float id = q8_inv_scale(d);
        y[b].d = q8_fp32_to_fp16_ref(d);
        const __m512 idv = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v0, idv))));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16),
                         _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v1, idv))));
    }
}

/* ---- packed Q8_0 products ---------------------------------------------------------------
 * Per panel block and token: 8 steps, each multiplying 4 columns of all 16 rows (one 64-byte
 * load) by the same 4 activation quants broadcast to every lane, summed into int32 row lanes;
 * then one fmaf per row, as the reference. The weights hold q + 128 (unsigned), so with VNNI
 * each step is one vpdpbusd and the int sum starts at -128 * sum(x) (q8_act.nsum) to take the
 * offset back out: exact, as vpdpbusd does not saturate. Without VNNI the step restores the
 * signed weights and uses |x| and sign(x) so that vpmaddubsw cannot saturate either
 * (2 * 127 * 127 < 2^15). */

/* Quants c = 4j .. 4j + 3 of an activation block, as one 32-bit lane for broadcast. */
static inline __m512i xgroup(const q8_act *a, int j) {
    int32_t v;
    memcpy(&v, a->qs + 4 * j, 4);
    return _mm512_set1_epi32(v);
}

static inline __m512i step(__m512i s, const q8x16 *wb, int j, __m512i xb) {
    const __m512i wu = _mm512_loadu_si512((const void *)(wb->qs + 64 * j));
#ifdef Q8_VNNI
    return _mm512_dpbusd_epi32(s, wu, xb);
#else
    const __m512i w = _mm512_xor_si512(wu, _mm512_set1_epi8((char)0x80));
    const __m512i sw = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(xb), _mm512_setzero_si512(), w);
    const __m512i p = _mm512_maddubs_epi16(_mm512_abs_epi8(xb), sw);
    return _mm512_add_epi32(s, _mm512_madd_epi16(p, _mm512_set1_epi16(1)));
#endif
}

static inline __m512i sum_start(const q8_act *a) {
#ifdef Q8_VNNI
    return _mm512_set1_epi32(a->nsum);
#else
    (void)a;
    return _mm512_setzero_si512();
#endif
}

/* ---- packed Q4_0 products: the same structure. One 64-byte load holds columns 4j .. 4j + 3
 * of 16 rows in its low nibbles and columns 16 + 4j .. in its high ones; masking gives the low
 * step's unsigned weights (nibble = q + 8), and the int sum starts at -8 * sum(x) (nsum / 16)
 * to take the offset out. With VNNI the high step takes the byte with its low nibble cleared,
 * 16 x the nibble, so one op (not a shift and a mask) per load: its chain then holds 16 x its
 * sum, exact (|sum| <= 16 * 16 * 15 * 127 < 2^31), and an arithmetic shift by 4 at the end gives
 * the sum back exactly. Without VNNI, vpmaddubsw takes both steps' nibbles (the high ones
 * shifted down) as its unsigned operand: 2 * 15 * 127 < 2^15, no saturation, where 16 x the
 * nibble would saturate. */
static inline __m512i q4_step(__m512i s, __m512i wu, __m512i xb) {
#ifdef Q8_VNNI
    return _mm512_dpbusd_epi32(s, wu, xb);
#else
    return _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(wu, xb), _mm512_set1_epi16(1)));
#endif
}

static inline __m512i q4_lo(__m512i v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0f)); }
static inline __m512i q4_hi(__m512i v) {
    return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f));
}

/* The high step's weights and what turns that chain's total into the plain int sum. */
static inline __m512i q4_hi_w(__m512i v) {
#ifdef Q8_VNNI
    return _mm512_andnot_si512(_mm512_set1_epi8(0x0f), v);
#else
    return q4_hi(v);
#endif
}
static inline __m512i q4_hi_sum(__m512i s) {
#ifdef Q8_VNNI
    return _mm512_srai_epi32(s, 4);
#else
    return s;
#endif
}

static inline __m512i q4_start(const q8_act *a) { return _mm512_set1_epi32(a->nsum / 16); }

/* ---- the loops, for both formats. They take the weights untyped with q4 (0: q8x16, 1: q4x16)
 * a constant in every caller and are always inlined, so each instance is one format's code
 * with no branch left. */
static inline size_t psize(const int q4) { return q4 ? sizeof(q4x16) : sizeof(q8x16); }

/* Decode streams each matrix once from DRAM. Two cores' hardware prefetchers alone kept a
 * Qwen2.5-0.5B step at ~72% of the read probe; asking for the lines 2 KiB ahead as each panel
 * block is read brings it to ~80% (2, 4 and 8 KiB measured alike; tools/PERF_NOTES.md). Q4_0,
 * with twice the instructions per byte, streams best from lines asked 2.5 KiB ahead into L2
 * only (T1): Gemma 3 1B q4_0-pure's products went from ~86% to ~90% of the probe; T0 at 2 or
 * 3 KiB, and T1 at 1 or 4 KiB, were slower (tools/PERF_NOTES.md). */
#define PF_AHEAD 2048
#define Q4_PF_AHEAD 2560

/* Asks for the lines that start in [wb + ahead, wb + ahead + block size): each line once (a
 * 288-byte Q4_0 block spans 4 or 5). As an integer: the lines ahead may lie past the matrix (a
 * prefetch never faults). */
static inline __attribute__((always_inline)) void prefetch_ahead(const unsigned char *wb, const int q4) {
    const uintptr_t a = (uintptr_t)wb + (q4 ? Q4_PF_AHEAD : PF_AHEAD);
    for (uintptr_t l = (a + 63) & ~(uintptr_t)63; l < a + psize(q4); l += 64) {
        if (q4) _mm_prefetch((const char *)l, _MM_HINT_T1);
        else _mm_prefetch((const char *)l, _MM_HINT_T0);
    }
}

/* Panel block i of w. */
static inline const unsigned char *wblock(const void *w, int64_t i, const int q4) {
    return (const unsigned char *)w + (size_t)i * psize(q4);
}

/* The fp16 scales of a panel block's 16 rows. */
static inline __m512 wscales(const unsigned char *wb) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)wb));
}

static inline __m512i start(const q8_act *a, const int q4) { return q4 ? q4_start(a) : sum_start(a); }

static inline __mmask16 rows_mask(int64_t valid) {
    return valid >= PANEL ? (__mmask16)0xffff : (__mmask16)((1u << valid) - 1u);
}

/* One panel block x one token's block: the 16 rows' int sums in two chains, so the 8 dependent
 * steps of a block are two chains of 4. */
static inline __attribute__((always_inline)) __m512i block_sums(const unsigned char *wb, const q8_act *a,
                                                                const int q4) {
    __m512i s0 = start(a, q4), s1 = _mm512_setzero_si512();
    if (q4) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512i v = _mm512_loadu_si512((const void *)(((const q4x16 *)wb)->qs + 64 * j));
            s0 = q4_step(s0, q4_lo(v), xgroup(a, j));
            s1 = q4_step(s1, q4_hi_w(v), xgroup(a, j + 4));
        }
        return _mm512_add_epi32(s0, q4_hi_sum(s1));
    } else {
#pragma GCC unroll 4
        for (int j = 0; j < 8; j += 2) {
            s0 = step(s0, (const q8x16 *)wb, j, xgroup(a, j));
            s1 = step(s1, (const q8x16 *)wb, j + 1, xgroup(a, j + 1));
        }
    }
    return _mm512_add_epi32(s0, s1);
}

/* One panel x one token (decode): blocks are independent until the final fmaf. */
static inline __attribute__((always_inline)) void gemv_panel(const void *w, int64_t nb, const q8_act *x,
                                                             float *y, int64_t valid, const int q4) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *wb = wblock(w, b, q4);
        prefetch_ahead(wb, q4);
        const __m512i s = block_sums(wb, x + b, q4);
        const __m512 d = _mm512_mul_ps(wscales(wb), _mm512_set1_ps(x[b].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc);
    }
    _mm512_mask_storeu_ps(y, rows_mask(valid), acc);
}

/* R panels (w, w + nb, ...) x T tokens (x, x + nb, ...); always_inline with constant R and T
 * so the R * T int sums and float accumulators live in registers. */
static inline __attribute__((always_inline)) void
micro(const void *w, int64_t nb, const q8_act *x, float *y, int64_t ldy, int64_t valid,
      const int R, const int T, const int q4) {
    __m512 acc[2][4];
#pragma GCC unroll 2
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int c = 0; c < T; c++) acc[i][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i s[2][4];
#pragma GCC unroll 2
        for (int i = 0; i < R; i++)
#pragma GCC unroll 4
            for (int c = 0; c < T; c++) s[i][c] = start(x + c * nb + b, q4);
        if (q4) {
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512i xl[4], xh[4];
#pragma GCC unroll 4
                for (int c = 0; c < T; c++) xl[c] = xgroup(x + c * nb + b, j), xh[c] = xgroup(x + c * nb + b, j + 4);
#pragma GCC unroll 2
                for (int i = 0; i < R; i++) {
                    const q4x16 *wb = (const q4x16 *)wblock(w, i * nb + b, 1);
                    const __m512i v = _mm512_loadu_si512((const void *)(wb->qs + 64 * j));
                    const __m512i lo = q4_lo(v), hi = q4_hi(v);
#pragma GCC unroll 4
                    for (int c = 0; c < T; c++) s[i][c] = q4_step(q4_step(s[i][c], lo, xl[c]), hi, xh[c]);
                }
            }
        } else {
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                __m512i xb[4];
#pragma GCC unroll 4
                for (int c = 0; c < T; c++) xb[c] = xgroup(x + c * nb + b, j);
#pragma GCC unroll 2
                for (int i = 0; i < R; i++)
#pragma GCC unroll 4
                    for (int c = 0; c < T; c++)
                        s[i][c] = step(s[i][c], (const q8x16 *)wblock(w, i * nb + b, 0), j, xb[c]);
            }
        }
#pragma GCC unroll 2
        for (int i = 0; i < R; i++) {
            const __m512 dw = wscales(wblock(w, i * nb + b, q4));
#pragma GCC unroll 4
            for (int c = 0; c < T; c++) {
                const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(x[c * nb + b].d));
                acc[i][c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s[i][c]), acc[i][c]);
            }
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int c = 0; c < T; c++)
            _mm512_mask_storeu_ps(y + c * ldy + i * PANEL, rows_mask(valid - i * PANEL), acc[i][c]);
}

typedef void (*micro_fn)(const void *, int64_t, const q8_act *, float *, int64_t, int64_t);
#define MICRO(R, T)                                                                            \
    static void micro_##R##x##T(const void *w, int64_t nb, const q8_act *x, float *y,           \
                                int64_t ldy, int64_t valid) {                                  \
        micro(w, nb, x, y, ldy, valid, R, T, 0);                                               \
    }                                                                                          \
    static void q4_micro_##R##x##T(const void *w, int64_t nb, const q8_act *x, float *y,        \
                                   int64_t ldy, int64_t valid) {                               \
        micro(w, nb, x, y, ldy, valid, R, T, 1);                                               \
    }
MICRO(1, 1) MICRO(1, 2) MICRO(1, 3) MICRO(1, 4)
MICRO(2, 1) MICRO(2, 2) MICRO(2, 3) MICRO(2, 4)
#undef MICRO

static const micro_fn MICROS[2][4] = {
    {micro_1x1, micro_1x2, micro_1x3, micro_1x4},
    {micro_2x1, micro_2x2, micro_2x3, micro_2x4},
};
static const micro_fn Q4_MICROS[2][4] = {
    {q4_micro_1x1, q4_micro_1x2, q4_micro_1x3, q4_micro_1x4},
    {q4_micro_2x1, q4_micro_2x2, q4_micro_2x3, q4_micro_2x4},
};

#define TILE_R 2
#define TILE_T 4
#define TOK_BLOCK_BYTES (256 << 10) /* a token block's activations stay in L2 beside the weights */

/* t > 1: tokens in blocks whose activations fit L2; inside one, TILE_R panels stay in L1/L2
 * while every token tile passes over them, so each weight byte comes from DRAM once per token
 * block. One loop for both formats: the micro kernels take the weights untyped, q4 picks the
 * table and the panel block size. */
static void tiles_run(const void *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0, int64_t p1,
                      int64_t n, float *y, int64_t ldy, const int q4) {
    const micro_fn(*micros)[4] = q4 ? Q4_MICROS : MICROS;
    const size_t ps = psize(q4);
    int64_t tb = TOK_BLOCK_BYTES / (nb * (int64_t)sizeof(q8_act));
    tb = tb < TILE_T ? TILE_T : tb;
    for (int64_t j0 = 0; j0 < t; j0 += tb) {
        const int64_t nt = t - j0 < tb ? t - j0 : tb;
        /* Token tiles as even as possible (t = 5: 3 + 2, not 4 + 1). */
        const int64_t ntiles = (nt + TILE_T - 1) / TILE_T;
        for (int64_t p = p0; p < p1; p += TILE_R) {
            const int R = (int)(p1 - p < TILE_R ? p1 - p : TILE_R);
            int64_t c = 0;
            for (int64_t ti = 0; ti < ntiles; ti++) {
                const int T = (int)((nt - c + (ntiles - ti) - 1) / (ntiles - ti));
                micros[R - 1][T - 1]((const unsigned char *)w + (size_t)(p * nb) * ps, nb, x + (j0 + c) * nb,
                                     y + (j0 + c) * ldy + p * PANEL, ldy, n - p * PANEL);
                c += T;
            }
        }
    }
}

static inline __attribute__((always_inline)) void
panels(const void *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0, int64_t p1, int64_t n,
       float *y, int64_t ldy, const int q4) {
    if (t == 1)
        for (int64_t p = p0; p < p1; p++) gemv_panel(wblock(w, p * nb, q4), nb, x, y + p * PANEL, n - p * PANEL, q4);
    else
        tiles_run(w, nb, x, t, p0, p1, n, y, ldy, q4);
}

static void SUFFIX(panel_run)(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                              int64_t p1, int64_t n, float *y, int64_t ldy) {
    panels(w, nb, x, t, p0, p1, n, y, ldy, 0);
}

static void SUFFIX(q4_panel_run)(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t,
                                 int64_t p0, int64_t p1, int64_t n, float *y, int64_t ldy) {
    panels(w, nb, x, t, p0, p1, n, y, ldy, 1);
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
        q8_f32_rows4_tail(w0, k, x, main, fold(a0), fold(a1), fold(a2), fold(a3), y + r);
    }
    for (; r < r1; r++) y[r] = SUFFIX(dot_f32)(w + r * k, x, k);
}

static void SUFFIX(f32_tile)(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                             int64_t r1, float *y, int64_t ldy) {
    q8_f32_tile_by_rows(SUFFIX(f32_rows), w, k, x, t, r0, r1, y, ldy);
}

static void SUFFIX(axpy_f32)(float a, const float *x, float *y, int64_t n) {
    const __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

Q8_KERNEL_TABLE(PATH, SUFFIX(quantize_row));
