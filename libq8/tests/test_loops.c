/* test_q8, loops: every vector width's element-wise loops (loops.c) against the baseline ones. */
#include "harness.h"

/* ---- element-wise loops: every vector width's table (loops.c) against the baseline one ------- */
/* Values with the specials the loops must carry through: NaN, +-Inf, subnormals, zeros, and
 * magnitudes where tanh and exp switch formulas or saturate. */
static void fill_loop_input(float *x, int64_t n) {
    static const float special[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 0.6249f, 0.625f, 12.0f, -12.0f,
                                    30.0f, -200.0f, INFINITY, -INFINITY, NAN};
    for (int64_t i = 0; i < n; i++)
        x[i] = rnd() % 8 == 0 ? special[rnd() % (sizeof special / sizeof special[0])] : frand() * 8.0f;
}

static void loops_case(const q8_loops *lp, int64_t n) {
    const q8_loops *b = &q8_loops_base;
    float *x = xmalloc((size_t)n * 4), *g = xmalloc((size_t)n * 4), *u = xmalloc((size_t)n * 4);
    float *ya = xmalloc((size_t)n * 4), *yb = xmalloc((size_t)n * 4);
    fill_loop_input(x, n);
    fill_loop_input(g, n);
    fill_loop_input(u, n);
    for (int sq = 0; sq < 2; sq++) {
        const double da = b->sum_f64(x, n, sq ? 0.25 : 0.0, sq), db = lp->sum_f64(x, n, sq ? 0.25 : 0.0, sq);
        CHECK(memcmp(&da, &db, sizeof da) == 0, "%s sum_f64 n=%lld squares=%d", lp->name, (long long)n, sq);
    }
    b->layernorm_row(x, g, u, n, 0.5f, 1.25f, ya);
    lp->layernorm_row(x, g, u, n, 0.5f, 1.25f, yb);
    CHECK(same_f32(ya, yb, n), "%s layernorm_row n=%lld", lp->name, (long long)n);
    for (int off = 0; off < 2; off++) {
        b->rmsnorm_row(x, g, n, 0.75f, (float)off, ya);
        lp->rmsnorm_row(x, g, n, 0.75f, (float)off, yb);
        CHECK(same_f32(ya, yb, n), "%s rmsnorm_row n=%lld offset=%d", lp->name, (long long)n, off);
    }
    b->gelu(x, n, ya);
    lp->gelu(x, n, yb);
    CHECK(same_f32(ya, yb, n), "%s gelu n=%lld, first diff %lld", lp->name, (long long)n, (long long)first_diff(ya, yb, n));
    b->geglu(x, g, n, ya);
    lp->geglu(x, g, n, yb);
    CHECK(same_f32(ya, yb, n), "%s geglu n=%lld", lp->name, (long long)n);
    b->swiglu(x, g, n, ya);
    lp->swiglu(x, g, n, yb);
    CHECK(same_f32(ya, yb, n), "%s swiglu n=%lld", lp->name, (long long)n);
    if (n <= 64) { /* one attention block of scores */
        for (int cap = 0; cap < 2; cap++) {
            memcpy(ya, x, (size_t)n * 4);
            memcpy(yb, x, (size_t)n * 4);
            const float ma = b->block_scores(ya, n, 0.125f, cap ? 30.0f : 0.0f);
            const float mb = lp->block_scores(yb, n, 0.125f, cap ? 30.0f : 0.0f);
            CHECK(same_f32(ya, yb, n) && same_f32(&ma, &mb, 1), "%s block_scores n=%lld softcap=%d", lp->name,
                  (long long)n, cap);
            /* exp(s - max) of those scores, as attention takes it: its domain is s - max <= 0 or NaN */
            float ea[64], eb[64];
            b->block_exp(ya, ma, n, ea);
            lp->block_exp(ya, ma, n, eb);
            CHECK(same_f32(ea, eb, n), "%s block_exp n=%lld softcap=%d", lp->name, (long long)n, cap);
        }
    }
    /* fold and value sums over a head of n floats; the values ring of 5 rows starts mid-ring */
    memcpy(ya, x, (size_t)n * 4);
    memcpy(yb, x, (size_t)n * 4);
    b->fold_values(ya, 0.5f, g, 0.25f, n);
    lp->fold_values(yb, 0.5f, g, 0.25f, n);
    CHECK(same_f32(ya, yb, n), "%s fold_values n=%lld", lp->name, (long long)n);
    const int64_t cap = 5, nb = 4;
    float *vh = xmalloc((size_t)(cap * n) * 4), e[4];
    fill_loop_input(vh, cap * n);
    for (int i = 0; i < 4; i++) e[i] = frand();
    memcpy(ya, u, (size_t)n * 4);
    memcpy(yb, u, (size_t)n * 4);
    b->block_values(e, vh, 3, nb, cap, n, ya);
    lp->block_values(e, vh, 3, nb, cap, n, yb);
    CHECK(same_f32(ya, yb, n), "%s block_values hd=%lld", lp->name, (long long)n);
    free(vh), free(x), free(g), free(u), free(ya), free(yb);
}

void test_loops(void) {
    static const int64_t NS[] = {1, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 100, 128, 191, 256, 768, 1000};
    const q8_loops *seen[MAX_TABLES];
    int n_seen = 0;
    for (int i = 0; i < N_TABLES; i++) {
        if (!isa_listed(all_tables[i].name)) continue;
        const q8_loops *lp = q8_loops_for(all_tables[i].kt);
        int dup = 0;
        for (int j = 0; j < n_seen; j++) dup |= seen[j] == lp;
        if (dup) continue;
        seen[n_seen++] = lp;
        group("loops/%s", lp->name);
        for (int k = 0; k < LEN(NS); k++) loops_case(lp, NS[k]);
        group_end();
    }
    /* Activations past ACT_PARALLEL_MIN (ops.c) run on the pool: any thread count, any width,
     * the single-threaded bits (make tsan runs this group too). */
    group("loops/threads");
    enum { R = 40, C = 1000 };
    float *gu = xmalloc(2 * R * C * 4), *y1 = xmalloc(R * C * 4), *y3 = xmalloc(R * C * 4);
    float *g1 = xmalloc(R * C * 4), *g3 = xmalloc(R * C * 4);
    fill_loop_input(gu, 2 * R * C);
    const int th = q8_pool_threads();
    const char *best = q8_isa_active();
    for (int i = 0; i < N_TABLES; i++) {
        if (!use_table(i)) continue;
        q8_pool_init(1);
        const int ok1 = q8_geglu_rows(gu, R, C, y1) == Q8_OK && q8_gelu_tanh(gu, R * C, g1) == Q8_OK;
        q8_pool_init(3);
        const int ok3 = q8_geglu_rows(gu, R, C, y3) == Q8_OK && q8_gelu_tanh(gu, R * C, g3) == Q8_OK;
        CHECK(ok1 && ok3 && same_f32(y1, y3, R * C) && same_f32(g1, g3, R * C), "%s: 3 threads != 1",
              all_tables[i].name);
    }
    q8_isa_set(best);
    q8_pool_init(th);
    free(gu), free(y1), free(y3), free(g1), free(g3);
    group_end();

    group("loops/coverage");
    CHECK(q8_loops_for(&q8_kernels_ref) == &q8_loops_base, "ref runs the baseline loops");
#if defined(__x86_64__)
    /* Each width this CPU has is reachable through a kernel path (so PYRUSTML_ISA and the property
     * suite's isa fixture run it), and none is paired with a path the CPU may lack. */
    CHECK(!isa_listed("avx2") || q8_loops_for(&q8_kernels_avx2) == &q8_loops_avx2, "avx2 width");
    CHECK(!isa_listed("avx512") || q8_loops_for(&q8_kernels_avx512) == &q8_loops_avx512, "avx512 width");
    CHECK(n_seen == 1 + isa_listed("avx2") + isa_listed("avx512"), "%d widths tested", n_seen);
#endif
    group_end();
}

/* The table RoPE given the table q8_rope builds from theta rotates bit for bit like q8_rope; SwiGLU
 * rows follow their definition and are row-independent for any thread split. */
void test_llama_ops(void) {
    group("llama ops");
    const int64_t rows = 5, heads = 3, hd = 64;
    float *a = xmalloc(rows * heads * hd * sizeof(float)), *b = xmalloc(rows * heads * hd * sizeof(float));
    const int64_t pos[5] = {0, 1, 7, 4095, 131071};
    const float thetas[3] = {10000.0f, 500000.0f, 1000000.0f};
    for (int t = 0; t < 3; t++) {
        float tab[32];
        for (int64_t i = 0; i < hd / 2; i++)
            tab[i] = 1.0f / powf(thetas[t], (float)(2 * i) / (float)hd);
        fill_f32(a, rows * heads * hd, 1.0f);
        memcpy(b, a, rows * heads * hd * sizeof(float));
        CHECK(q8_rope(a, rows, heads, hd, pos, thetas[t]) == Q8_OK &&
              q8_rope_freq(b, rows, heads, hd, pos, tab) == Q8_OK && same_f32(a, b, rows * heads * hd),
              "q8_rope_freq(table of theta %g) == q8_rope", (double)thetas[t]);
    }
    const int64_t n = 3000, r = 20; /* r * n > ACT_PARALLEL_MIN: the pool splits it */
    float *gu = xmalloc(r * 2 * n * sizeof(float)), *y = xmalloc(r * n * sizeof(float)),
          *y1 = xmalloc(n * sizeof(float));
    fill_f32(gu, r * 2 * n, 8.0f);
    int ok = 1;
    for (int th = 1; th <= 3; th++) {
        q8_pool_init(th);
        ok &= q8_swiglu_rows(gu, r, n, y) == Q8_OK;
        for (int64_t k = 0; k < r; k++) {
            ok &= q8_swiglu_rows(gu + k * 2 * n, 1, n, y1) == Q8_OK;
            ok &= same_f32(y1, y + k * n, n);
        }
    }
    q8_pool_init(0);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double g = gu[i], u = gu[n + i], ref = g / (1.0 + exp(-g)) * u;
        const double err = fabs(y[i] - ref) / (fabs(ref) + 1e-30);
        if (err > worst && fabs(ref) > 1e-30) worst = err;
    }
    CHECK(ok, "q8_swiglu_rows: rows independent of the thread split");
    CHECK(worst < 12.0 * 0x1p-24, "q8_swiglu_rows within 12 U32 of silu(g) * u (worst %.2e)", worst);
    free(a), free(b), free(gu), free(y), free(y1);
    group_end();
}
