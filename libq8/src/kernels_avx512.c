/* AVX-512 (F, BW, DQ, VL) kernels; built twice: once as "avx512" and once with -mavx512vnni
 * and Q8_VNNI defined as "avx512vnni". One 512-bit register holds two consecutive blocks, so
 * lanes 0-7 are the reference's even-block accumulators and lanes 8-15 the odd-block ones. */
#include <immintrin.h>
#include <math.h>

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
#ifdef Q8_VNNI
    __m512i xu; /* x + 128 as unsigned bytes */
#else
    __m512i x;
#endif
    float d0, d1;
} xpair;

static inline xpair prep(const __m512i x, float d0, float d1) {
    xpair p;
#ifdef Q8_VNNI
    p.xu = _mm512_xor_si512(x, _mm512_set1_epi8((char)0x80));
#else
    p.x = x;
#endif
    p.d0 = d0;
    p.d1 = d1;
    return p;
}

/* 16 int32 lanes: lane g of each block = sum_{j<4} w[4g+j] * x[4g+j], exact. */
static inline __m512i lanes(__m512i w, const xpair *p) {
#ifdef Q8_VNNI
    /* (x + 128) . w - 128 * sum(w) = x . w; vpdpbusd does not saturate. */
    const __m512i w128 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), w);
    return _mm512_dpbusd_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), w128), p->xu, w);
#else
    const __m512i aw = _mm512_abs_epi8(w);
    const __m512i sx = _mm512_mask_sub_epi8(p->x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), p->x);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(aw, sx), _mm512_set1_epi16(1));
#endif
}

static inline float fold(__m512 acc) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

static inline __m512 pair_step(const q8_block *wb, const xpair *p, __m512 acc) {
    const __m512 d = scale2(h2f(wb[0].d) * p->d0, h2f(wb[1].d) * p->d1);
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes(load2(wb), p)), acc);
}

/* The last block when nb is odd: an even block, so only lanes 0-7 may change. */
static inline __m512 last_step(const q8_block *wb, const xpair *p, __m512 acc) {
    const __m512 d = _mm512_set1_ps(h2f(wb[0].d) * p->d0);
    return _mm512_mask3_fmadd_ps(d, _mm512_cvtepi32_ps(lanes(load1(wb), p)), acc, 0x00ff);
}

static inline xpair prep_at(const q8_block *x, int64_t b, int64_t nb) {
    if (b + 2 <= nb) return prep(load2(x + b), h2f(x[b].d), h2f(x[b + 1].d));
    return prep(load1(x + b), h2f(x[b].d), 0.0f);
}

static void SUFFIX(q8_rows)(const q8_block *w, int64_t nb, const q8_block *x, int64_t r0,
                            int64_t r1, float *y) {
    const int64_t nb2 = nb & ~(int64_t)1;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const q8_block *w0 = w + r * nb, *w1 = w0 + nb, *w2 = w1 + nb, *w3 = w2 + nb;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t b = 0; b < nb2; b += 2) {
            const xpair p = prep_at(x, b, nb);
            a0 = pair_step(w0 + b, &p, a0);
            a1 = pair_step(w1 + b, &p, a1);
            a2 = pair_step(w2 + b, &p, a2);
            a3 = pair_step(w3 + b, &p, a3);
        }
        if (nb2 < nb) {
            const xpair p = prep_at(x, nb2, nb);
            a0 = last_step(w0 + nb2, &p, a0);
            a1 = last_step(w1 + nb2, &p, a1);
            a2 = last_step(w2 + nb2, &p, a2);
            a3 = last_step(w3 + nb2, &p, a3);
        }
        y[r] = fold(a0);
        y[r + 1] = fold(a1);
        y[r + 2] = fold(a2);
        y[r + 3] = fold(a3);
    }
    for (; r < r1; r++) {
        const q8_block *wr = w + r * nb;
        __m512 a = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb2; b += 2) {
            const xpair p = prep_at(x, b, nb);
            a = pair_step(wr + b, &p, a);
        }
        if (nb2 < nb) {
            const xpair p = prep_at(x, nb2, nb);
            a = last_step(wr + nb2, &p, a);
        }
        y[r] = fold(a);
    }
}

/* Register tile of 4 weight rows x 3 activation rows: each weight pair is loaded once for three
 * tokens, each activation pair once for four rows. */
#define TR 4
#define TT 3
static void tile_4x3(const q8_block *w, int64_t nb, const q8_block *x, int64_t r, int64_t j,
                     float *y, int64_t ldy) {
    const int64_t nb2 = nb & ~(int64_t)1;
    __m512 acc[TR][TT];
    for (int i = 0; i < TR; i++)
        for (int c = 0; c < TT; c++) acc[i][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb2; b += 2) {
        xpair p[TT];
        for (int c = 0; c < TT; c++) p[c] = prep_at(x + (j + c) * nb, b, nb);
        for (int i = 0; i < TR; i++) {
            const q8_block *wb = w + (r + i) * nb + b;
            const __m512i wv = load2(wb);
            const float wd0 = h2f(wb[0].d), wd1 = h2f(wb[1].d);
            for (int c = 0; c < TT; c++) {
                const __m512 d = scale2(wd0 * p[c].d0, wd1 * p[c].d1);
                acc[i][c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes(wv, &p[c])), acc[i][c]);
            }
        }
    }
    if (nb2 < nb) {
        for (int c = 0; c < TT; c++) {
            const xpair p = prep_at(x + (j + c) * nb, nb2, nb);
            for (int i = 0; i < TR; i++)
                acc[i][c] = last_step(w + (r + i) * nb + nb2, &p, acc[i][c]);
        }
    }
    for (int i = 0; i < TR; i++)
        for (int c = 0; c < TT; c++) y[(j + c) * ldy + r + i] = fold(acc[i][c]);
}

static void SUFFIX(q8_tile)(const q8_block *w, int64_t nb, const q8_block *x, int64_t t,
                            int64_t r0, int64_t r1, float *y, int64_t ldy) {
    /* Row groups of 16 stay in L1/L2 while all activation rows pass over them. */
    for (int64_t g = r0; g < r1; g += 16) {
        const int64_t g1 = g + 16 < r1 ? g + 16 : r1;
        int64_t j = 0;
        for (; j + TT <= t; j += TT) {
            int64_t r = g;
            for (; r + TR <= g1; r += TR) tile_4x3(w, nb, x, r, j, y, ldy);
            for (int c = 0; c < TT; c++)
                SUFFIX(q8_rows)(w, nb, x + (j + c) * nb, r, g1, y + (j + c) * ldy);
        }
        for (; j < t; j++) SUFFIX(q8_rows)(w, nb, x + j * nb, g, g1, y + j * ldy);
    }
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
    .q8_rows = SUFFIX(q8_rows),
    .q8_tile = SUFFIX(q8_tile),
    .f32_rows = SUFFIX(f32_rows),
    .f32_tile = SUFFIX(f32_tile),
    .dot_f32 = SUFFIX(dot_f32),
    .axpy_f32 = SUFFIX(axpy_f32),
};
