/* test_q8, drivers: the public drivers against each other, across thread counts and kernel paths. */
#include "harness.h"

/* ---- public drivers -------------------------------------------------------------------------- */
static int64_t argmax_scalar(const float *y, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n && !isnan(y[best]); i++)
        if (isnan(y[i]) || y[i] > y[best]) best = i;
    return best;
}

typedef struct {
    int64_t n, k;
} shape_t;
/* Row counts around the 16-row panels (1, 2, 15, 17, 33, 50) and the 256-row lm_head tiles
 * (257: a last tile of one row; 700, 1029: several tiles, a short last panel). */
static const shape_t SHAPES[] = {{1, 32},  {2, 32},  {5, 64},    {15, 32},   {17, 64},  {33, 96},
                                 {37, 96}, {50, 160}, {257, 32}, {700, 256}, {1029, 64}};
#define N_SHAPES LEN(SHAPES)
#define GEMM_T 5
#define TAIL 16 /* guard floats after every output */

/* Inputs per shape, and the outputs of the first (path, thread count) run to compare with. */
typedef struct {
    q8_block *wg; /* GGML blocks, for the specification */
    q8x16 *w;     /* the same weights packed, in a q8_alloc block as the binding holds them */
    float *wf, *x, *bias;
    float *y0_q, *y0_f; /* gemv with bias, every activation row: GEMM_T x n */
    int have0;
} drv_data;

static void driver_case(drv_data *d, const shape_t *s, const char *path, int threads) {
    const int64_t n = s->n, k = s->k, nb = k / QK, T = GEMM_T;
    float *y = xmalloc((size_t)(T * n + TAIL) * sizeof(float));
    float *yg = xmalloc((size_t)(T * n + TAIL) * sizeof(float));
    float *yl = xmalloc((size_t)(n + TAIL) * sizeof(float));
    const char *tag = path;
    for (int f32 = 0; f32 < 2; f32++) {
        const char *kind = f32 ? "f32" : "q8";
        /* gemv per activation row (with bias) and gemm on all of them; nothing past t x n */
        memset(y, GUARD, (size_t)(T * n + TAIL) * sizeof(float));
        memset(yg, GUARD, (size_t)(T * n + TAIL) * sizeof(float));
        int rc = 0;
        for (int64_t j = 0; j < T; j++)
            rc |= f32 ? q8_gemv_f32(d->wf, n, k, d->x + j * k, d->bias, y + j * n)
                      : q8_gemv(d->w, n, k, d->x + j * k, d->bias, y + j * n);
        rc |= f32 ? q8_gemm_f32(d->wf, n, k, d->x, T, d->bias, yg)
                  : q8_gemm(d->w, n, k, d->x, T, d->bias, yg);
        CHECK(rc == Q8_OK, "%s t%d %s n=%lld: rc", tag, threads, kind, (long long)n);
        CHECK(same_f32(y, yg, T * n), "%s t%d %s n=%lld k=%lld: gemm row != gemv, first diff %lld", tag,
              threads, kind, (long long)n, (long long)k, (long long)first_diff(y, yg, T * n));
        CHECK(untouched(y + T * n, TAIL * sizeof(float)) && untouched(yg + T * n, TAIL * sizeof(float)),
              "%s t%d %s n=%lld: gemv/gemm wrote past row n - 1", tag, threads, kind, (long long)n);
        /* against the specification: spec_dot on the reference quantization, + bias */
        float *ref = xmalloc((size_t)n * sizeof(float));
        if (f32) {
            q8_kernels_ref.f32_rows(d->wf, k, d->x, 0, n, ref);
        } else {
            q8_block xq[8];
            q8_quantize_row_ref(d->x, xq, k);
            for (int64_t r = 0; r < n; r++) ref[r] = spec_dot(d->wg + r * nb, xq, nb);
        }
        for (int64_t r = 0; r < n; r++) ref[r] += d->bias[r];
        CHECK(same_f32(ref, y, n), "%s t%d %s n=%lld: gemv != reference, first diff %lld", tag, threads,
              kind, (long long)n, (long long)first_diff(ref, y, n));
        free(ref);
        /* the same across paths and thread counts */
        float *y0 = f32 ? d->y0_f : d->y0_q;
        if (!d->have0) memcpy(y0, y, (size_t)(T * n) * sizeof(float));
        else CHECK(same_f32(y0, y, T * n), "%s t%d %s n=%lld: differs from the first run", tag, threads,
                   kind, (long long)n);
        /* lmhead = gemv without bias; argmax = scalar argmax of that */
        memset(y, GUARD, (size_t)(n + TAIL) * sizeof(float));
        memset(yl, GUARD, (size_t)(n + TAIL) * sizeof(float));
        rc = f32 ? q8_gemv_f32(d->wf, n, k, d->x, NULL, y) : q8_gemv(d->w, n, k, d->x, NULL, y);
        rc |= f32 ? q8_lmhead_f32(d->wf, n, k, d->x, yl) : q8_lmhead(d->w, n, k, d->x, yl);
        CHECK(rc == Q8_OK && same_f32(y, yl, n), "%s t%d %s n=%lld: lmhead != gemv, first diff %lld", tag,
              threads, kind, (long long)n, (long long)first_diff(y, yl, n));
        CHECK(untouched(y + n, TAIL * sizeof(float)) && untouched(yl + n, TAIL * sizeof(float)),
              "%s t%d %s n=%lld: gemv/lmhead wrote past row n - 1", tag, threads, kind, (long long)n);
        int64_t idx = -7;
        float val = 0.0f;
        rc = f32 ? q8_lmhead_argmax_f32(d->wf, n, k, d->x, &idx, &val)
                 : q8_lmhead_argmax(d->w, n, k, d->x, &idx, &val);
        const int64_t want = argmax_scalar(y, n);
        CHECK(rc == Q8_OK && idx == want && memcmp(&val, &y[want], 4) == 0,
              "%s t%d %s n=%lld: argmax %lld (%g), want %lld (%g)", tag, threads, kind,
              (long long)n, (long long)idx, (double)val, (long long)want, (double)y[want]);
    }
    d->have0 = 1;
    free(y), free(yg), free(yl);
}

/* Ties across chunks and NaN rows: n = 700 spans three 256-row tiles. */
static void argmax_edges(int threads) {
    const int64_t n = 700, k = 64, nb = k / QK;
    q8_block *w = xmalloc((size_t)(n * nb) * sizeof *w);
    float *wf = xmalloc((size_t)(n * k) * sizeof(float));
    float x[64], y[700];
    /* weights in [-1, 1], so the 4 * x row below is the clear maximum */
    fill_f32(wf, n * k, 1.0f);
    q8_quantize(wf, Q8_DTYPE_F32, n, k, w);
    fill_f32(x, k, 1.0f);
    /* rows 300 and 650 are the same strong row: equal largest logits, lowest index wins */
    float strong[64];
    for (int i = 0; i < k; i++) strong[i] = 4.0f * x[i];
    q8_quantize_row_ref(strong, w + 300 * nb, k);
    memcpy(w + 650 * nb, w + 300 * nb, (size_t)nb * sizeof *w);
    memcpy(wf + 300 * k, strong, sizeof strong);
    memcpy(wf + 650 * k, strong, sizeof strong);
    q8x16 *wp = packed(w, n, k);
    for (int f32 = 0; f32 < 2; f32++) {
        int64_t idx = -1;
        float val = 0.0f;
        int rc = f32 ? q8_gemv_f32(wf, n, k, x, NULL, y) : q8_gemv(wp, n, k, x, NULL, y);
        rc |= f32 ? q8_lmhead_argmax_f32(wf, n, k, x, &idx, &val) : q8_lmhead_argmax(wp, n, k, x, &idx, &val);
        CHECK(rc == Q8_OK && idx == 300 && argmax_scalar(y, n) == 300 && y[300] == y[650],
              "t%d %s tie: index %lld", threads, f32 ? "f32" : "q8", (long long)idx);
    }
    /* a NaN weight row is reported even though row 300 is larger than anything finite */
    w[513 * nb + 1].d = 0x7e00;
    wf[513 * k + 5] = NAN;
    free(wp);
    wp = packed(w, n, k);
    for (int f32 = 0; f32 < 2; f32++) {
        int64_t idx = -1;
        float val = 0.0f;
        const int rc = f32 ? q8_lmhead_argmax_f32(wf, n, k, x, &idx, &val)
                           : q8_lmhead_argmax(wp, n, k, x, &idx, &val);
        CHECK(rc == Q8_OK && idx == 513 && isnan(val), "t%d %s NaN row: index %lld value %g", threads,
              f32 ? "f32" : "q8", (long long)idx, (double)val);
    }
    /* a NaN activation makes every logit NaN: index 0, value NaN */
    x[17] = NAN;
    for (int f32 = 0; f32 < 2; f32++) {
        int64_t idx = -1;
        float val = 0.0f;
        int rc = f32 ? q8_gemv_f32(wf, n, k, x, NULL, y) : q8_gemv(wp, n, k, x, NULL, y);
        int all_nan = 1;
        for (int64_t r = 0; r < n; r++) all_nan &= isnan(y[r]);
        rc |= f32 ? q8_lmhead_argmax_f32(wf, n, k, x, &idx, &val) : q8_lmhead_argmax(wp, n, k, x, &idx, &val);
        CHECK(rc == Q8_OK && all_nan && idx == 0 && isnan(val), "t%d %s NaN activation: index %lld",
              threads, f32 ? "f32" : "q8", (long long)idx);
    }
    free(w), free(wp), free(wf);
}

/* Batched GEMM through the public driver on every path: token counts that split into uneven
 * register tiles (2..16), several token blocks of the AVX-512 path (K = 9632: 21 tokens a block,
 * odd nb), activations prepared on the pool (t * nb > 2048), n = 71: a last panel of 7 rows.
 * Each output row must equal q8_gemv on that token, bit for bit, for every thread count, and
 * nothing past row t - 1 is written. */
void test_gemm_batches(void) {
    static const int64_t TT[] = {2, 3, 4, 5, 8, 9, 16, 45};
    static const int64_t KK[] = {96, 1024, 9632};
    static const int THREADS[] = {1, 2, 3};
    const int64_t n = 71, tmax = 45;
    const char *best = q8_isa_active();
    for (int ik = 0; ik < LEN(KK); ik++) {
        const int64_t k = KK[ik];
        q8_block *wg = xmalloc((size_t)(n * k / QK) * sizeof *wg);
        float *x = xmalloc((size_t)(tmax * k) * sizeof(float));
        float *bias = xmalloc((size_t)n * sizeof(float));
        float *y = xmalloc((size_t)(tmax * n) * sizeof(float));
        float *yg = xmalloc((size_t)(tmax * n + TAIL) * sizeof(float));
        random_blocks(wg, n, k / QK);
        q8x16 *w = packed(wg, n, k);
        fill_f32(x, tmax * k, 2.0f);
        fill_f32(bias, n, 0.5f);
        for (int i = 0; i < N_TABLES; i++) {
            if (!use_table(i)) continue;
            for (int ti = 0; ti < LEN(THREADS); ti++) {
                q8_pool_init(THREADS[ti]);
                int rc = 0;
                for (int64_t j = 0; j < tmax; j++) rc |= q8_gemv(w, n, k, x + j * k, bias, y + j * n);
                for (int it = 0; it < LEN(TT); it++) {
                    const int64_t t = TT[it];
                    memset(yg, GUARD, (size_t)(tmax * n + TAIL) * sizeof(float));
                    rc |= q8_gemm(w, n, k, x, t, bias, yg);
                    CHECK(rc == Q8_OK && same_f32(y, yg, t * n) && untouched(yg + t * n, (size_t)((tmax - t) * n + TAIL) * sizeof(float)),
                          "%s threads=%d gemm k=%lld t=%lld: row != gemv, first diff %lld", all_tables[i].name,
                          THREADS[ti], (long long)k, (long long)t, (long long)first_diff(y, yg, t * n));
                }
            }
        }
        free(wg), free(w), free(x), free(bias), free(y), free(yg);
    }
    q8_isa_set(best);
    q8_pool_init(0);
}

void test_drivers(void) {
    static const int THREADS[] = {1, 2, 3, 7};
    drv_data data[N_SHAPES];
    for (int s = 0; s < N_SHAPES; s++) {
        const int64_t n = SHAPES[s].n, k = SHAPES[s].k;
        drv_data *d = &data[s];
        d->wg = xmalloc((size_t)(n * k / QK) * sizeof(q8_block));
        d->w = q8_alloc((size_t)q8_packed_count(n, k) * sizeof(q8x16));
        d->wf = xmalloc((size_t)(n * k) * sizeof(float));
        d->x = xmalloc((size_t)(GEMM_T * k) * sizeof(float));
        d->bias = xmalloc((size_t)n * sizeof(float));
        d->y0_q = xmalloc((size_t)(GEMM_T * n) * sizeof(float));
        d->y0_f = xmalloc((size_t)(GEMM_T * n) * sizeof(float));
        d->have0 = 0;
        random_blocks(d->wg, n, k / QK);
        if (!d->w || q8_pack(d->wg, n, k, d->w) != Q8_OK) {
            fprintf(stderr, "q8_alloc / q8_pack failed while building test data\n");
            exit(2);
        }
        fill_f32(d->wf, n * k, 1.0f);
        fill_f32(d->x, GEMM_T * k, 2.0f);
        fill_f32(d->bias, n, 0.5f);
    }
    const char *best = q8_isa_active();
    for (int i = 0; i < N_TABLES; i++) {
        if (!isa_listed(all_tables[i].name)) continue;
        group("drivers/%s", all_tables[i].name);
        CHECK(q8_isa_set(all_tables[i].name) == Q8_OK && strcmp(q8_isa_active(), all_tables[i].name) == 0,
              "q8_isa_set(%s)", all_tables[i].name);
        for (int ti = 0; ti < LEN(THREADS); ti++) {
            CHECK(q8_pool_init(THREADS[ti]) == Q8_OK && q8_pool_threads() == THREADS[ti], "pool_init(%d)",
                  THREADS[ti]);
            for (int s = 0; s < N_SHAPES; s++) driver_case(&data[s], &SHAPES[s], all_tables[i].name, THREADS[ti]);
            argmax_edges(THREADS[ti]);
        }
        group_end();
    }
    q8_isa_set(best);
    for (int s = 0; s < N_SHAPES; s++) {
        drv_data *d = &data[s];
        free(d->wg), q8_free(d->w), free(d->wf), free(d->x), free(d->bias), free(d->y0_q), free(d->y0_f);
    }
}

/* ---- Q4_0 ---- */
/* The public Q4_0 drivers on every path and thread count: gemv = spec + bias, gemm rows = gemv,
 * lmhead = gemv without bias, argmax = scalar argmax; n = 71 (a 7-row last panel), K up to
 * 9632 (token blocks, activations prepared on the pool), t up to 45 (AMX groups + remainder). */
void test_q4_drivers(void) {
    static const int64_t TT[] = {1, 2, 5, 16, 17, 45};
    static const int64_t KK[] = {96, 1024, 9632};
    static const int THREADS[] = {1, 2, 3};
    const int64_t n = 71, tmax = 45;
    const char *best = q8_isa_active();
    group("q4/drivers");
    for (int ik = 0; ik < LEN(KK); ik++) {
        const int64_t k = KK[ik], nb = k / QK;
        q4_block *wg = xmalloc((size_t)(n * nb) * sizeof *wg);
        random_q4_blocks(wg, n, nb);
        q4x16 *w = packed4(wg, n, k);
        float *x = xmalloc((size_t)(tmax * k) * sizeof(float)), *bias = xmalloc((size_t)n * sizeof(float));
        float *spec = xmalloc((size_t)(tmax * n) * sizeof(float)), *y = xmalloc((size_t)(tmax * n + TAIL) * sizeof(float));
        fill_f32(x, tmax * k, 2.0f);
        fill_f32(bias, n, 0.5f);
        q8_block *xq = xmalloc((size_t)nb * sizeof *xq);
        for (int64_t j = 0; j < tmax; j++) {
            q8_quantize_row_ref(x + j * k, xq, k);
            for (int64_t r = 0; r < n; r++) spec[j * n + r] = spec_dot4(wg + r * nb, xq, nb) + bias[r];
        }
        for (int i = 0; i < N_TABLES; i++) {
            if (!use_table(i)) continue;
            for (int ti = 0; ti < LEN(THREADS); ti++) {
                q8_pool_init(THREADS[ti]);
                int ok = 1;
                for (int64_t j = 0; j < 3; j++) {
                    memset(y, GUARD, (size_t)(n + TAIL) * sizeof(float));
                    ok &= q8_q4_gemv(w, n, k, x + j * k, bias, y) == Q8_OK && same_f32(y, spec + j * n, n) &&
                          untouched(y + n, TAIL * sizeof(float));
                }
                CHECK(ok, "%s threads=%d k=%lld: q8_q4_gemv != spec", all_tables[i].name, THREADS[ti], (long long)k);
                for (int it = 0; it < LEN(TT); it++) {
                    const int64_t t = TT[it];
                    memset(y, GUARD, (size_t)(tmax * n + TAIL) * sizeof(float));
                    CHECK(q8_q4_gemm(w, n, k, x, t, bias, y) == Q8_OK && same_f32(y, spec, t * n) &&
                              untouched(y + t * n, TAIL * sizeof(float)),
                          "%s threads=%d k=%lld t=%lld: q8_q4_gemm != spec, first diff %lld", all_tables[i].name,
                          THREADS[ti], (long long)k, (long long)t, (long long)first_diff(y, spec, t * n));
                }
                float *yl = xmalloc((size_t)(n + TAIL) * sizeof(float)), *yv = xmalloc((size_t)n * sizeof(float));
                memset(yl, GUARD, (size_t)(n + TAIL) * sizeof(float));
                int rc = q8_q4_gemv(w, n, k, x, NULL, yv) | q8_q4_lmhead(w, n, k, x, yl);
                CHECK(rc == Q8_OK && same_f32(yv, yl, n) && untouched(yl + n, TAIL * sizeof(float)),
                      "%s threads=%d k=%lld: q8_q4_lmhead != gemv", all_tables[i].name, THREADS[ti], (long long)k);
                int64_t idx = -1;
                float val = 0.0f;
                rc = q8_q4_lmhead_argmax(w, n, k, x, &idx, &val);
                const int64_t want = argmax_scalar(yv, n);
                CHECK(rc == Q8_OK && idx == want && memcmp(&val, &yv[want], 4) == 0,
                      "%s threads=%d: q8_q4_lmhead_argmax %lld, want %lld", all_tables[i].name, THREADS[ti],
                      (long long)idx, (long long)want);
                free(yl), free(yv);
            }
        }
        free(wg), free(w), free(x), free(bias), free(spec), free(y), free(xq);
    }
    /* a poisoned weight block (d = NaN) makes exactly its row NaN on every path */
    {
        const int64_t nn = 20, k = 160, nbb = 5, t = 17;
        q4_block *wg = xmalloc((size_t)(nn * nbb) * sizeof *wg);
        random_q4_blocks(wg, nn, nbb);
        wg[2 * nbb + 3].d = 0x7e00;
        wg[17 * nbb].d = 0xfe00;
        q4x16 *w = packed4(wg, nn, k);
        float *x = xmalloc((size_t)(t * k) * sizeof(float)), *y = xmalloc((size_t)(t * nn) * sizeof(float));
        fill_f32(x, t * k, 1.0f);
        for (int i = 0; i < N_TABLES; i++) {
            if (!use_table(i)) continue;
            int ok = q8_q4_gemm(w, nn, k, x, t, NULL, y) == Q8_OK;
            for (int64_t j = 0; j < t; j++)
                for (int64_t r = 0; r < nn; r++) ok &= (r == 2 || r == 17) == (isnan(y[j * nn + r]) != 0);
            CHECK(ok, "%s: q4 NaN block rows", all_tables[i].name);
        }
        free(wg), free(w), free(x), free(y);
    }
    /* argument checks: NULLs, K % 32, ranges; nothing written */
    {
        q4_block b[4];
        q4x16 p[2];
        float f[64], y[64];
        int64_t idx;
        float val;
        memset(f, 0, sizeof f);
        EINV(q8_q4_quantize(NULL, Q8_DTYPE_F32, 1, 32, b), b, sizeof b);
        EINV(q8_q4_quantize(f, Q8_DTYPE_F32, 1, 33, b), b, sizeof b);
        EINV(q8_q4_quantize(f, 7, 1, 32, b), b, sizeof b);
        EINV(q8_q4_quantize_packed(f, Q8_DTYPE_F32, 1, 32, 0, p, 1, 1), p, sizeof p);
        EINV(q8_q4_quantize_packed(f, Q8_DTYPE_F32, 2, 32, 0, p, 1, 0), p, sizeof p);
        EINV(q8_q4_pack(NULL, 1, 32, p), p, sizeof p);
        EINV(q8_q4_unpack(p, 1, 48, b), b, sizeof b);
        EINV(q8_q4_dequantize(b, 1, 16, f), f, sizeof f);
        EINV(q8_q4_dequantize_packed(p, 1, 32, 1, 1, f), f, sizeof f);
        EINV(q8_q4_gemv(NULL, 1, 32, f, NULL, y), y, sizeof y);
        EINV(q8_q4_gemv(p, 1, 48, f, NULL, y), y, sizeof y);
        EINV(q8_q4_gemm(p, 1, 32, f, 0, NULL, y), y, sizeof y);
        EINV(q8_q4_lmhead(p, 0, 32, f, y), y, sizeof y);
        EINV(q8_q4_lmhead_argmax(p, 1, 32, NULL, &idx, &val), y, sizeof y);
        CHECK(q8_q4_packed_count(17, 33) == -1 && q8_q4_packed_count(17, 64) == 4, "q8_q4_packed_count");
    }
    q8_isa_set(best);
    q8_pool_init(0);
    group_end();
}
