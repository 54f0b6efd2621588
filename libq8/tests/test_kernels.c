/* test_q8, kernels: every kernel table against the scalar reference on odd sizes (the reference itself
 * against the arithmetic kernels_ref.c specifies, on GGML blocks), with guard floats around every output. */
#include "harness.h"

/* One panel_run of kt for panels [p0, p1) and t tokens into a GUARD-filled t x ldy buffer with
 * 16 more floats before and after it. want is that buffer as it must be: spec (t x n, spec_dot of
 * every row and token) at rows 16 p0 .. min(16 p1, n) - 1 of each token, GUARD everywhere else
 * (rows before p0, rows >= n of the last panel, the gap up to ldy, head and tail). The reference
 * must produce exactly want, and kt exactly the reference's buffer. */
static void run_panels(const q8_kernels *kt, const void *w, int q4, int64_t nb, const q8_act *xa, int64_t t,
                       int64_t p0, int64_t p1, int64_t n, float *y, int64_t ldy) {
    if (q4) kt->q4_panel_run(w, nb, xa, t, p0, p1, n, y, ldy);
    else kt->panel_run(w, nb, xa, t, p0, p1, n, y, ldy);
}

/* w: packed Q8_0 (q4 = 0) or Q4_0 (q4 = 1) weights. */
static void panel_case(const q8_kernels *kt, const void *w, int q4, const q8_act *xa, const float *spec,
                       int64_t n, int64_t nb, int64_t t, int64_t p0, int64_t p1, int64_t ldy) {
    const int64_t G = 16, len = G + t * ldy + G, r0 = 16 * p0, r1 = 16 * p1 < n ? 16 * p1 : n;
    float *want = xmalloc((size_t)len * sizeof(float));
    float *ya = xmalloc((size_t)len * sizeof(float)), *yb = xmalloc((size_t)len * sizeof(float));
    memset(want, GUARD, (size_t)len * sizeof(float));
    for (int64_t j = 0; j < t; j++)
        for (int64_t r = r0; r < r1; r++) want[G + j * ldy + r] = spec[j * n + r];
    memset(ya, GUARD, (size_t)len * sizeof(float));
    memset(yb, GUARD, (size_t)len * sizeof(float));
    run_panels(&q8_kernels_ref, w, q4, nb, xa, t, p0, p1, n, ya + G, ldy);
    run_panels(kt, w, q4, nb, xa, t, p0, p1, n, yb + G, ldy);
    if (kt == &q8_kernels_ref)
        CHECK(same_f32(want, ya, len), "ref %s panel_run != spec n=%lld nb=%lld t=%lld p=[%lld,%lld) ldy=%lld: "
              "first diff at y[%lld]", q4 ? "q4" : "q8", (long long)n, (long long)nb, (long long)t, (long long)p0,
              (long long)p1, (long long)ldy, (long long)(first_diff(want, ya, len) - G));
    const int64_t d = first_diff(ya, yb, len), e = d - G; /* e: offset from y, negative in the head */
    CHECK(d < 0, "%s %s panel_run != ref n=%lld nb=%lld t=%lld p=[%lld,%lld) ldy=%lld: first diff at y[%lld] "
          "(token %lld, row %lld): %a vs ref %a%s", kt->name, q4 ? "q4" : "q8", (long long)n, (long long)nb, (long long)t,
          (long long)p0, (long long)p1, (long long)ldy, (long long)e, (long long)(e >= 0 ? e / ldy : -1),
          (long long)(e >= 0 ? e % ldy : e), d >= 0 ? (double)yb[d] : 0.0, d >= 0 ? (double)ya[d] : 0.0,
          d >= 0 && untouched(&ya[d], sizeof(float)) ? " (wrote a guard)" : "");
    free(want), free(ya), free(yb);
}

static const int64_t PN[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 50};
static const int64_t PNB[] = {1, 2, 3, 7, 36};
/* 16 and more: the AMX path's token groups of 16, with and without a remainder */
static const int64_t PT[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 32, 35};
#define PT_MAX 35

/* spec (t x n) for the GGML weights w (n x nb) and activations x (t x nb). */
static float *spec_table(const q8_block *w, const q8_block *x, int64_t n, int64_t nb, int64_t t) {
    float *s = xmalloc((size_t)(t * n) * sizeof(float));
    for (int64_t j = 0; j < t; j++)
        for (int64_t r = 0; r < n; r++) s[j * n + r] = spec_dot(w + r * nb, x + j * nb, nb);
    return s;
}

/* Random weights (n x nb blocks) and tmax activation rows: packed, prepared, and their spec. */
typedef struct {
    q8x16 *wp;
    q4x16 *wp4; /* other weights, Q4_0 */
    q8_act *xa;
    float *spec, *spec4;
} panel_fixture;

static panel_fixture panel_fixture_make(int64_t n, int64_t nb, int64_t tmax) {
    q8_block *w = xmalloc((size_t)(n * nb) * sizeof *w), *x = xmalloc((size_t)(tmax * nb) * sizeof *x);
    q4_block *w4 = xmalloc((size_t)(n * nb) * sizeof *w4);
    random_blocks(w, n, nb);
    random_q4_blocks(w4, n, nb);
    random_blocks(x, tmax, nb);
    float *spec4 = xmalloc((size_t)(tmax * n) * sizeof(float));
    for (int64_t j = 0; j < tmax; j++)
        for (int64_t r = 0; r < n; r++) spec4[j * n + r] = spec_dot4(w4 + r * nb, x + j * nb, nb);
    const panel_fixture f = {packed(w, n, nb * QK), packed4(w4, n, nb * QK), acts(x, tmax, nb),
                             spec_table(w, x, n, nb, tmax), spec4};
    free(w), free(w4), free(x);
    return f;
}

static void panel_fixture_free(panel_fixture f) { free(f.wp), free(f.wp4), free(f.xa), free(f.spec), free(f.spec4); }

static void test_q8_kernels(const q8_kernels *kt) {
    for (int in = 0; in < LEN(PN); in++) {
        for (int ib = 0; ib < LEN(PNB); ib++) {
            const int64_t n = PN[in], nb = PNB[ib], np = panels_of(n);
            const panel_fixture f = panel_fixture_make(n, nb, PT_MAX);
            for (int it = 0; it < LEN(PT); it++) {
                const int64_t t = PT[it];
                /* every panel, with the driver's ldy = n and with a 16-float gap between tokens
                 * (a write to a row >= n lands in the gap); then partial panel ranges */
                for (int q4 = 0; q4 < 2; q4++) {
                    const void *wp = q4 ? (const void *)f.wp4 : (const void *)f.wp;
                    const float *spec = q4 ? f.spec4 : f.spec;
                    panel_case(kt, wp, q4, f.xa, spec, n, nb, t, 0, np, n);
                    panel_case(kt, wp, q4, f.xa, spec, n, nb, t, 0, np, n + 16);
                    if (np > 1) {
                        panel_case(kt, wp, q4, f.xa, spec, n, nb, t, 1, np, n + 16);
                        panel_case(kt, wp, q4, f.xa, spec, n, nb, t, np - 1, np, n + 16);
                        panel_case(kt, wp, q4, f.xa, spec, n, nb, t, 0, np - 1, n + 16);
                    }
                }
            }
            panel_fixture_free(f);
        }
    }
}

static void test_f32_kernels(const q8_kernels *kt) {
    for (int ir = 0; ir < LEN(ROWS); ir++) {
        for (int ik = 0; ik < LEN(KS); ik++) {
            const int64_t R = ROWS[ir], k = KS[ik], tmax = 7, ldy = R + 3;
            float *w = xmalloc((size_t)(R * k) * sizeof(float));
            float *x = xmalloc((size_t)(tmax * k) * sizeof(float));
            fill_f32(w, R * k, 1.0f);
            fill_f32(x, tmax * k, 3.0f);
            float *ya = xmalloc((size_t)(tmax * ldy) * sizeof(float));
            float *yb = xmalloc((size_t)(tmax * ldy) * sizeof(float));
            int64_t rr[2][2];
            ranges(R, rr);
            for (int g = 0; g < 2; g++) {
                memset(ya, GUARD, (size_t)ldy * sizeof(float));
                memset(yb, GUARD, (size_t)ldy * sizeof(float));
                q8_kernels_ref.f32_rows(w, k, x, rr[g][0], rr[g][1], ya);
                kt->f32_rows(w, k, x, rr[g][0], rr[g][1], yb);
                CHECK(same_f32(ya, yb, ldy), "%s f32_rows R=%lld k=%lld r=[%lld,%lld) first diff %lld",
                      kt->name, (long long)R, (long long)k, (long long)rr[g][0],
                      (long long)rr[g][1], (long long)first_diff(ya, yb, ldy));
                for (int it = 0; it < LEN(TS); it++) {
                    const int64_t t = TS[it];
                    memset(ya, GUARD, (size_t)(t * ldy) * sizeof(float));
                    memset(yb, GUARD, (size_t)(t * ldy) * sizeof(float));
                    q8_kernels_ref.f32_tile(w, k, x, t, rr[g][0], rr[g][1], ya, ldy);
                    kt->f32_tile(w, k, x, t, rr[g][0], rr[g][1], yb, ldy);
                    CHECK(same_f32(ya, yb, t * ldy),
                          "%s f32_tile R=%lld k=%lld t=%lld r=[%lld,%lld) first diff %lld", kt->name,
                          (long long)R, (long long)k, (long long)t, (long long)rr[g][0],
                          (long long)rr[g][1], (long long)first_diff(ya, yb, t * ldy));
                }
            }
            free(w), free(x), free(ya), free(yb);
        }
    }
    /* dot and axpy, also from addresses off the vector alignment */
    for (int ik = 0; ik < LEN(KS); ik++) {
        const int64_t k = KS[ik];
        float *a = xmalloc((size_t)(k + 1) * sizeof(float));
        float *b = xmalloc((size_t)(k + 1) * sizeof(float));
        float *ya = xmalloc((size_t)(k + 1) * sizeof(float));
        float *yb = xmalloc((size_t)(k + 1) * sizeof(float));
        fill_f32(a, k + 1, 2.0f);
        fill_f32(b, k + 1, 2.0f);
        for (int off = 0; off < 2; off++) {
            const float da = q8_kernels_ref.dot_f32(a + off, b + off, k);
            const float db = kt->dot_f32(a + off, b + off, k);
            CHECK(memcmp(&da, &db, sizeof da) == 0, "%s dot_f32 k=%lld off=%d: %a vs %a", kt->name,
                  (long long)k, off, (double)da, (double)db);
            fill_f32(ya, k + 1, 1.0f);
            memcpy(yb, ya, (size_t)(k + 1) * sizeof(float));
            const float s = frand() * 4.0f;
            q8_kernels_ref.axpy_f32(s, a + off, ya + off, k);
            kt->axpy_f32(s, a + off, yb + off, k);
            CHECK(same_f32(ya, yb, k + 1), "%s axpy_f32 k=%lld off=%d first diff %lld", kt->name,
                  (long long)k, off, (long long)first_diff(ya, yb, k + 1));
        }
        free(a), free(b), free(ya), free(yb);
    }
}

/* A poisoned block (d = NaN, as the quantizer writes for Inf/NaN input) must make exactly the
 * rows that hold it NaN, on every path; the other rows keep their values, and rows >= n of the
 * last panel stay unwritten. */
static void test_nan_blocks(const q8_kernels *kt) {
    const int64_t n = 20, nb = 5, t = 4, ldy = n + 16, len = t * ldy + 16;
    q8_block *w = xmalloc((size_t)(n * nb) * sizeof *w);
    q8_block *x = xmalloc((size_t)(t * nb) * sizeof *x);
    random_blocks(w, n, nb);
    random_blocks(x, t, nb);
    w[2 * nb + 3].d = 0x7e00;  /* row 2 */
    w[7 * nb + 0].d = 0x7e00;  /* row 7 */
    w[17 * nb + 4].d = 0xfe00; /* row 17, in the short last panel; a negative NaN */
    q8x16 *wp = packed(w, n, nb * QK);
    q8_act *xa = acts(x, t, nb);
    float *ya = xmalloc((size_t)len * sizeof(float)), *yb = xmalloc((size_t)len * sizeof(float));
    memset(ya, GUARD, (size_t)len * sizeof(float));
    memset(yb, GUARD, (size_t)len * sizeof(float));
    q8_kernels_ref.panel_run(wp, nb, xa, t, 0, panels_of(n), n, ya, ldy);
    kt->panel_run(wp, nb, xa, t, 0, panels_of(n), n, yb, ldy);
    int ok = 1;
    for (int64_t i = 0; i < len; i++) {
        const int64_t j = i / ldy, r = i % ldy;
        const int poisoned = j < t && (r == 2 || r == 7 || r == 17);
        if (j >= t || r >= n) ok &= untouched(&ya[i], 4) && untouched(&yb[i], 4);
        else if (poisoned) ok &= isnan(ya[i]) && isnan(yb[i]);
        else {
            const float s = spec_dot(w + r * nb, x + j * nb, nb);
            ok &= memcmp(&ya[i], &yb[i], 4) == 0 && memcmp(&ya[i], &s, 4) == 0;
        }
    }
    CHECK(ok, "%s: NaN block rows", kt->name);
    free(w), free(x), free(wp), free(xa), free(ya), free(yb);
}

/* The activation quantizer of a table: bytes identical to q8_quantize_row_ref, which is the
 * producer the weights come from. Blocks of every kind the reference treats specially. */
static void fill_quant_block(float *x, int kind) {
    const float mag = ldexpf(1.0f, (int)(rnd() % 61) - 30);
    const int e = (int)(rnd() % 21) - 10;
    for (int i = 0; i < QK; i++) {
        switch (kind) {
        case 0: x[i] = frand() * mag; break;
        case 1: /* d = 2^e exactly, so x * id = n + 0.5 exactly: ties at every scale */
            x[i] = ldexpf(i == 0 ? 127.0f : (float)((int)(rnd() % 254) - 127) + 0.5f, e);
            break;
        case 2: x[i] = (rnd() & 3) ? 0.0f : -0.0f; break;           /* zeros of both signs */
        case 3: x[i] = i == 5 ? -mag : 0.0f; break;                 /* one value */
        case 4: x[i] = frand() * 3.0e38f; break;                    /* d overflows fp16 */
        case 5: x[i] = frand() * 1e-30f; break;                     /* fp16 d underflows */
        case 6: x[i] = frand() * 2.0f; if (i == 9) x[i] = (rnd() & 1) ? INFINITY : -INFINITY; break;
        case 7: x[i] = frand() * 2.0f; if (i == 30) x[i] = NAN; break;
        default: x[i] = frand() * 1e-37f; break;                    /* 1/d overflows: see below */
        }
    }
}

static int quants_in_range(const q8_block *q, int64_t nb) {
    for (int64_t b = 0; b < nb; b++)
        for (int i = 0; i < QK; i++)
            if (q[b].qs[i] == -128) return 0;
    return 1;
}

static void test_quantize_row(const q8_kernels *kt) {
    static const int64_t QKS[] = {32, 64, 96, 224, 1024, 4128};
    for (int ik = 0; ik < LEN(QKS); ik++) {
        const int64_t k = QKS[ik], nb = k / QK;
        float *x = xmalloc((size_t)(k + 1) * sizeof(float));
        q8_block *qa = xmalloc((size_t)(nb + 1) * sizeof *qa), *qb = xmalloc((size_t)(nb + 1) * sizeof *qb);
        for (int kind = 0; kind < 8; kind++) {
            for (int off = 0; off < 2; off++) { /* and from an address off the vector grid */
                for (int64_t b = 0; b < nb; b++) fill_quant_block(x + off + b * QK, b % 3 ? kind : 0);
                memset(qa, GUARD, (size_t)(nb + 1) * sizeof *qa);
                memset(qb, GUARD, (size_t)(nb + 1) * sizeof *qb);
                q8_quantize_row_ref(x + off, qa, k);
                kt->quantize_row(x + off, qb, k);
                CHECK(memcmp(qa, qb, (size_t)nb * sizeof *qa) == 0 && untouched(qb + nb, sizeof *qb),
                      "%s quantize_row k=%lld kind %d off %d", kt->name, (long long)k, kind, off);
            }
        }
        /* 0 < max|x| < ~3.7e-37: d = max/127 is a float subnormal and 1/d overflows to inf */
        for (int64_t b = 0; b < nb; b++) fill_quant_block(x + b * QK, 8);
        q8_quantize_row_ref(x, qa, k);
        kt->quantize_row(x, qb, k);
        CHECK(memcmp(qa, qb, (size_t)nb * sizeof *qa) == 0 && quants_in_range(qb, nb),
              "%s quantize_row k=%lld, max|x| = 1e-37: qs[0] %d vs ref %d", kt->name, (long long)k,
              qb[0].qs[0], qa[0].qs[0]);
        free(x), free(qa), free(qb);
    }
}

/* Sizes past the fixed ones: many panels, K > 8192 (more than gemv.c's stack of activation
 * blocks) and token counts past the AVX-512 path's token block (256 KiB of q8_act: 21 tokens at
 * nb = 301), so that t = 45 spans three blocks. */
static void test_big_kernels(const q8_kernels *kt) {
    static const int64_t big[][2] = {{131, 3}, {67, 36}, {5, 301}, {9, 258}, {40, 301}};
    static const int64_t tts[] = {1, 4, 7, 21, 22, 45};
    const int64_t tmax = 45;
    for (int i = 0; i < LEN(big); i++) {
        const int64_t n = big[i][0], nb = big[i][1], np = panels_of(n);
        const panel_fixture f = panel_fixture_make(n, nb, tmax);
        for (int it = 0; it < LEN(tts); it++) {
            const int64_t t = tts[it];
            if (t > 7 && nb < 258) continue; /* one token block: the sizes above cover it */
            panel_case(kt, f.wp, 0, f.xa, f.spec, n, nb, t, 0, np, n);
            panel_case(kt, f.wp4, 1, f.xa, f.spec4, n, nb, t, 0, np, n);
            if (np > 2) panel_case(kt, f.wp, 0, f.xa, f.spec, n, nb, t, 1, np - 1, n + 16);
            if (np > 2) panel_case(kt, f.wp4, 1, f.xa, f.spec4, n, nb, t, 1, np - 1, n + 16);
        }
        panel_fixture_free(f);
    }
}

void test_tables(void) {
    int tested = 0;
    for (int i = 0; i < N_TABLES; i++) {
        if (!isa_listed(all_tables[i].name)) {
            printf("skip kernels/%-20s not supported here\n", all_tables[i].name);
            continue;
        }
        tested++;
        group("kernels/%s", all_tables[i].name);
        CHECK(strcmp(all_tables[i].kt->name, all_tables[i].name) == 0, "table name %s",
              all_tables[i].kt->name);
        test_quantize_row(all_tables[i].kt);
        test_q8_kernels(all_tables[i].kt);
        test_big_kernels(all_tables[i].kt);
        test_f32_kernels(all_tables[i].kt);
        test_nan_blocks(all_tables[i].kt);
        group_end();
    }
    group("kernels/coverage");
    CHECK(tested >= 1 && isa_listed("ref"), "supported list '%s'", q8_isa_supported());
    /* Every listed name must be a table we know, or a new path would go untested silently. */
    char names[128];
    snprintf(names, sizeof names, "%s", q8_isa_supported());
    for (char *save = NULL, *tok = strtok_r(names, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int known = 0;
        for (int i = 0; i < N_TABLES; i++) known |= strcmp(tok, all_tables[i].name) == 0;
        CHECK(known, "supported path '%s' has no table in this harness", tok);
    }
    group_end();
}

/* AMX is listed exactly when this CPU and kernel allow tiles; say so either way. */
void test_amx_listing(void) {
#if defined(__x86_64__)
    group("amx listing");
    CHECK(isa_listed("amx") == q8_amx_usable(), "listed %d, usable %d", isa_listed("amx"), q8_amx_usable());
    group_end();
    printf("     amx: %s\n", isa_listed("amx") ? "present, tested above" : "ABSENT on this machine (not tested)");
#endif
}
