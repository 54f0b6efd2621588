/* AVX2 + FMA + F16C kernels (compiled with exactly those flags). Same arithmetic as
 * kernels_ref.c: a packed panel's 16 rows are two 256-bit registers of 8 row lanes; the f32
 * dot product keeps 16 lanes in two registers and folds them in the reference's tree. */
#include <immintrin.h>
#include <math.h>

#include "q8_internal.h"


/* lanes 0-7 and 8-15 of the reference's 16 */
static inline float fold(__m256 lo, __m256 hi) { return q8_fold8(_mm256_add_ps(lo, hi)); }

/* Round half away from zero, exactly as roundf: floor(|v|) plus one when the (exact) fraction
 * is at least one half, with v's sign put back. */
static inline __m256i round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign, v);
    const __m256 f = _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, f), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 r = _mm256_add_ps(f, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_or_ps(r, _mm256_and_ps(sign, v)));
}

static void quantize_row_avx2(const float *x, q8_block *y, int64_t k) {
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(Q8_FLT_MAX);
    for (int64_t b = 0; b < k / QK; b++) {
        const float *xb = x + b * QK;
        __m256 v[4], amax = _mm256_setzero_ps(), fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            const __m256 a = _mm256_andnot_ps(sign, v[i]);
            fin = _mm256_and_ps(fin, _mm256_cmp_ps(a, big, _CMP_LE_OQ)); /* false for NaN, Inf */
            amax = _mm256_max_ps(amax, a);
        }
        if (_mm256_movemask_ps(fin) != 0xff) {
            q8_quantize_row_ref(xb, y + b, QK); /* the reference owns the non-finite case */
            continue;
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float d = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1))) / 127.0f;
        const float id = q8_inv_scale(d);
        y[b].d = q8_fp32_to_fp16_ref(d);
        const __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = round_away(_mm256_mul_ps(v[i], idv));
        /* int32 -> int8 (values lie in [-127, 127]); the packs interleave 128-bit lanes, the
         * permute restores element order. */
        const __m256i p16 = _mm256_packs_epi32(q[0], q[1]);
        const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_packs_epi16(p16, p16b);
        const __m256i ord = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, ord);
    }
}

/* ---- packed Q8_0 products: per panel block, 8 steps of 4 columns x 8 rows per register;
 * the stored weights are q + 128, so each step restores the signed quants and multiplies
 * them by x's sign and |x| (vpmaddubsw cannot saturate: 2 * 127 * 127 < 2^15). ---- */
static inline __m256i step_half(__m256i s, const uint8_t *q, __m256i ax, __m256i xb) {
    const __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q), _mm256_set1_epi8((char)0x80));
    const __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, xb));
    return _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* ---- packed Q4_0: one 32-byte load holds 4 columns of 8 rows in its low nibbles and the 4
 * columns 16 further in its high ones; the nibbles (q + 8) are vpmaddubsw's unsigned operand
 * as they are (2 * 15 * 127 < 2^15), and the int sum starts at -8 * sum(x). ---- */
static inline __m256i q4_step_half(__m256i s, __m256i wu, __m256i xb) {
    return _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xb), _mm256_set1_epi16(1)));
}

/* One panel block x one activation block: the int sums of rows 0-7 (lo) and 8-15 (hi). */
static inline void q8_block_sums(const q8x16 *wb, const q8_act *a, __m256i *lo, __m256i *hi) {
    __m256i slo = _mm256_setzero_si256(), shi = slo;
    for (int j = 0; j < 8; j++) {
        int32_t v;
        memcpy(&v, a->qs + 4 * j, 4);
        const __m256i xb = _mm256_set1_epi32(v), ax = _mm256_sign_epi8(xb, xb);
        slo = step_half(slo, wb->qs + 64 * j, ax, xb);
        shi = step_half(shi, wb->qs + 64 * j + 32, ax, xb);
    }
    *lo = slo;
    *hi = shi;
}

static inline void q4_block_sums(const q4x16 *wb, const q8_act *a, __m256i *lo, __m256i *hi) {
    const __m256i m = _mm256_set1_epi8(0x0f);
    __m256i slo = _mm256_set1_epi32(a->nsum / 16), shi = slo;
    for (int j = 0; j < 4; j++) {
        int32_t v0, v1;
        memcpy(&v0, a->qs + 4 * j, 4);
        memcpy(&v1, a->qs + 16 + 4 * j, 4);
        const __m256i x0 = _mm256_set1_epi32(v0), x1 = _mm256_set1_epi32(v1);
        const __m256i c0 = _mm256_loadu_si256((const __m256i *)(wb->qs + 64 * j));
        const __m256i c1 = _mm256_loadu_si256((const __m256i *)(wb->qs + 64 * j + 32));
        slo = q4_step_half(slo, _mm256_and_si256(c0, m), x0);
        slo = q4_step_half(slo, _mm256_and_si256(_mm256_srli_epi16(c0, 4), m), x1);
        shi = q4_step_half(shi, _mm256_and_si256(c1, m), x0);
        shi = q4_step_half(shi, _mm256_and_si256(_mm256_srli_epi16(c1, 4), m), x1);
    }
    *lo = slo;
    *hi = shi;
}

/* One panel (16 rows, nb blocks) times one activation row, either format (q4 is a constant in
 * both callers: each is one format's code). Both panel blocks lead with the 16 fp16 scales. */
static inline __attribute__((always_inline)) void panel_dot(const void *w, int64_t nb, const q8_act *x,
                                                            float out[16], const int q4) {
    const size_t psize = q4 ? sizeof(q4x16) : sizeof(q8x16);
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *wb = (const unsigned char *)w + (size_t)b * psize;
        __m256i slo, shi;
        if (q4) q4_block_sums((const q4x16 *)wb, x + b, &slo, &shi);
        else q8_block_sums((const q8x16 *)wb, x + b, &slo, &shi);
        const __m256 dx = _mm256_set1_ps(x[b].d);
        const __m256 dlo = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb)), dx);
        const __m256 dhi = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb + 1)), dx);
        lo = _mm256_fmadd_ps(dlo, _mm256_cvtepi32_ps(slo), lo);
        hi = _mm256_fmadd_ps(dhi, _mm256_cvtepi32_ps(shi), hi);
    }
    _mm256_storeu_ps(out, lo);
    _mm256_storeu_ps(out + 8, hi);
}

static void q8_panel_dot(const void *w, int64_t nb, const q8_act *x, float out[16]) {
    panel_dot(w, nb, x, out, 0);
}

static void q4_panel_dot(const void *w, int64_t nb, const q8_act *x, float out[16]) {
    panel_dot(w, nb, x, out, 1);
}

static void panel_run_avx2(const q8x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                           int64_t p1, int64_t n, float *y, int64_t ldy) {
    q8_panels_by_token(q8_panel_dot, w, sizeof *w, nb, x, t, p0, p1, n, y, ldy);
}

static void q4_panel_run_avx2(const q4x16 *w, int64_t nb, const q8_act *x, int64_t t, int64_t p0,
                              int64_t p1, int64_t n, float *y, int64_t ldy) {
    q8_panels_by_token(q4_panel_dot, w, sizeof *w, nb, x, t, p0, p1, n, y, ldy);
}

static float dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    const int64_t main = n - n % 16;
    for (int64_t i = 0; i < main; i += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), hi);
    }
    float s = fold(lo, hi);
    for (int64_t i = main; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static void f32_rows_avx2(const float *w, int64_t k, const float *x, int64_t r0, int64_t r1,
                          float *y) {
    int64_t r = r0;
    const int64_t main = k - k % 16;
    for (; r + 4 <= r1; r += 4) {
        const float *w0 = w + r * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        __m256 l0 = _mm256_setzero_ps(), l1 = l0, l2 = l0, l3 = l0;
        __m256 h0 = l0, h1 = l0, h2 = l0, h3 = l0;
        for (int64_t i = 0; i < main; i += 16) {
            const __m256 xl = _mm256_loadu_ps(x + i), xh = _mm256_loadu_ps(x + i + 8);
            l0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xl, l0);
            h0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), xh, h0);
            l1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xl, l1);
            h1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), xh, h1);
            l2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xl, l2);
            h2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), xh, h2);
            l3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xl, l3);
            h3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), xh, h3);
        }
        q8_f32_rows4_tail(w0, k, x, main, fold(l0, h0), fold(l1, h1), fold(l2, h2), fold(l3, h3), y + r);
    }
    for (; r < r1; r++) y[r] = dot_f32_avx2(w + r * k, x, k);
}

static void f32_tile_avx2(const float *w, int64_t k, const float *x, int64_t t, int64_t r0,
                          int64_t r1, float *y, int64_t ldy) {
    q8_f32_tile_by_rows(f32_rows_avx2, w, k, x, t, r0, r1, y, ldy);
}

static void axpy_f32_avx2(float a, const float *x, float *y, int64_t n) {
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

Q8_KERNEL_TABLE(avx2, quantize_row_avx2);
