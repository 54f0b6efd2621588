/* test_q8: the C-only harness of libq8 (make test / asan / ubsan).
 *
 * Every kernel table this CPU runs is compared bit for bit with the scalar reference on odd
 * sizes (the reference itself with the arithmetic kernels_ref.c specifies, on GGML blocks), with
 * guard floats around every output; fp16 conversions against the hardware; the quantizer on
 * known bytes; the packed weight layout against q8.h's description (pack, unpack,
 * quantize_packed, dequantize_packed); the public drivers against each other, across thread
 * counts and kernel paths; attention against a double precision scalar version; argument
 * checks; the pool's restart and fork paths.
 * Exit status is non-zero on any failure; the last line is "N passed, M failed". */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "q8.h"
#include "q8_internal.h"

/* ---- bookkeeping: one line per group, a failure's first lines in detail -------------------- */
static long n_pass, n_fail, grp_pass, grp_fail;
static char grp_name[96];

static void group(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(grp_name, sizeof grp_name, fmt, ap);
    va_end(ap);
    grp_pass = grp_fail = 0;
}

static void group_end(void) {
    if (grp_fail) printf("FAIL %-28s %ld of %ld checks failed\n", grp_name, grp_fail, grp_pass + grp_fail);
    else printf("ok   %-28s %ld checks\n", grp_name, grp_pass);
    fflush(stdout);
    n_pass += grp_pass;
    n_fail += grp_fail;
}

#define CHECK(cond, ...) check_at(!!(cond), __LINE__, __VA_ARGS__)
static int check_at(int ok, int line, const char *fmt, ...) {
    if (ok) {
        grp_pass++;
        return 1;
    }
    if (++grp_fail <= 8) { /* enough to diagnose, not a flood */
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  [%s] line %d: ", grp_name, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    return 0;
}

/* ---- data: xorshift64* with a fixed seed, so a failure reproduces ---------------------------- */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
static float frand(void) { return (float)(rnd() >> 40) * 0x1p-23f - 1.0f; } /* [-1, 1) */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void fill_f32(float *x, int64_t n, float mag) {
    for (int64_t i = 0; i < n; i++) x[i] = frand() * mag;
}

/* Floats for nblocks blocks of assorted kinds: zero blocks, all-+-max blocks (quants +-127, the
 * widest products), tiny and large scales; then quantized by the library's own producer. */
static void random_blocks(q8_block *dst, int64_t rows, int64_t nb) {
    float *f = xmalloc((size_t)(rows * nb * QK) * sizeof(float));
    for (int64_t b = 0; b < rows * nb; b++) {
        float *x = f + b * QK;
        const unsigned kind = (unsigned)(rnd() % 8);
        const float mag = ldexpf(1.0f, (int)(rnd() % 36) - 24);
        for (int i = 0; i < QK; i++) {
            if (kind == 0) x[i] = 0.0f;
            else if (kind == 1) x[i] = (rnd() & 1) ? mag : -mag;
            else x[i] = frand() * mag;
        }
    }
    if (q8_quantize(f, Q8_DTYPE_F32, rows, nb * QK, dst) != Q8_OK) {
        fprintf(stderr, "q8_quantize failed while building test data\n");
        exit(2);
    }
    free(f);
}

static int same_f32(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static int64_t first_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) return i;
    return -1;
}

/* A byte pattern for "must stay untouched" checks. */
#define GUARD 0xa5
static int untouched(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != GUARD) return 0;
    return 1;
}

/* ---- kernel tables -------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    const q8_kernels *kt;
} table_t;

static const table_t all_tables[] = {
    {"ref", &q8_kernels_ref},
#if defined(__x86_64__)
    {"avx2", &q8_kernels_avx2},
    {"avx512", &q8_kernels_avx512},
    {"avx512vnni", &q8_kernels_avx512vnni},
#endif
#if defined(__aarch64__)
    {"neon", &q8_kernels_neon},
    {"neon_dotprod", &q8_kernels_neon_dotprod},
#endif
};
#define N_TABLES (int)(sizeof all_tables / sizeof all_tables[0])

/* Whether q8_isa_supported() lists this name (comma separated). */
static int isa_listed(const char *name) {
    const char *s = q8_isa_supported();
    const size_t l = strlen(name);
    while (*s) {
        const char *e = strchr(s, ',');
        const size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == l && memcmp(s, name, l) == 0) return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

static const int64_t ROWS[] = {1, 2, 3, 5, 31, 33};
static const int64_t KS[] = {1, 15, 16, 17, 33, 100, 768};
static const int64_t TS[] = {1, 2, 3, 4, 5, 7};
#define LEN(a) (int)(sizeof(a) / sizeof((a)[0]))

/* Row ranges to ask for: all rows, and one starting off the 4-row grid. */
static void ranges(int64_t R, int64_t rr[2][2]) {
    rr[0][0] = 0, rr[0][1] = R;
    rr[1][0] = R > 1 ? 1 : 0, rr[1][1] = R > 4 ? R - 1 : R;
}

/* ---- the packed layout, written from q8.h's description (not from pack.c) -------------------
 * Row 16p + i, column 32b + 4j + e of an n x k matrix lives in element p * nb + b:
 * d[i] is its scale and qs[64j + 4i + e] its quant + 128; rows n .. 16 * ceil(n / 16) - 1 are
 * d = 0, qs = 128. */
static int64_t panels_of(int64_t n) { return (n + 15) / 16; }

/* Whether row r of the packed matrix p (nb blocks per row) holds the GGML row `row`. */
static int row_is(const q8x16 *p, int64_t nb, int64_t r, const q8_block *row) {
    const q8x16 *pb = p + r / 16 * nb;
    const int i = (int)(r % 16);
    for (int64_t b = 0; b < nb; b++) {
        if (pb[b].d[i] != row[b].d) return 0;
        for (int c = 0; c < QK; c++)
            if (pb[b].qs[64 * (c / 4) + 4 * i + c % 4] != (uint8_t)(row[b].qs[c] + 128)) return 0;
    }
    return 1;
}

/* Whether every byte of row r of p is `byte` (GUARD: never written). */
static int row_bytes_are(const q8x16 *p, int64_t nb, int64_t r, unsigned char byte) {
    const q8x16 *pb = p + r / 16 * nb;
    const int i = (int)(r % 16);
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *d = (const unsigned char *)&pb[b].d[i];
        if (d[0] != byte || d[1] != byte) return 0;
        for (int c = 0; c < QK; c++)
            if (pb[b].qs[64 * (c / 4) + 4 * i + c % 4] != byte) return 0;
    }
    return 1;
}

/* Whether row r of p is a padding row: d = 0, every quant byte 128. */
static int row_is_padding(const q8x16 *p, int64_t nb, int64_t r) {
    const q8x16 *pb = p + r / 16 * nb;
    const int i = (int)(r % 16);
    for (int64_t b = 0; b < nb; b++) {
        if (pb[b].d[i] != 0) return 0;
        for (int c = 0; c < QK; c++)
            if (pb[b].qs[64 * (c / 4) + 4 * i + c % 4] != 128) return 0;
    }
    return 1;
}

/* The packed copy of n x k GGML blocks (q8_pack), in a buffer of its own. */
static q8x16 *packed(const q8_block *w, int64_t n, int64_t k) {
    const int64_t count = q8_packed_count(n, k);
    if (count <= 0) {
        fprintf(stderr, "q8_packed_count(%lld, %lld) = %lld\n", (long long)n, (long long)k, (long long)count);
        exit(2);
    }
    q8x16 *p = xmalloc((size_t)count * sizeof *p);
    memset(p, GUARD, (size_t)count * sizeof *p);
    if (q8_pack(w, n, k, p) != Q8_OK) {
        fprintf(stderr, "q8_pack failed while building test data\n");
        exit(2);
    }
    return p;
}

/* The prepared activations of t quantized rows (nb blocks each). */
static q8_act *acts(const q8_block *x, int64_t t, int64_t nb) {
    q8_act *a = xmalloc((size_t)(t * nb) * sizeof *a);
    for (int64_t j = 0; j < t; j++) q8_act_prep(x + j * nb, nb, a + j * nb);
    return a;
}

/* The specification of a Q8_0 row product (kernels_ref.c), on GGML blocks: one float
 * accumulator over the blocks in order, acc = fmaf(dw * dx, exact int dot, acc). */
static float spec_dot(const q8_block *w, const q8_block *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int c = 0; c < QK; c++) s += (int32_t)w[b].qs[c] * (int32_t)x[b].qs[c];
        acc = fmaf(q8_fp16_to_fp32(w[b].d) * q8_fp16_to_fp32(x[b].d), (float)s, acc);
    }
    return acc;
}

/* One panel_run of kt for panels [p0, p1) and t tokens into a GUARD-filled t x ldy buffer with
 * 16 more floats before and after it. want is that buffer as it must be: spec (t x n, spec_dot of
 * every row and token) at rows 16 p0 .. min(16 p1, n) - 1 of each token, GUARD everywhere else
 * (rows before p0, rows >= n of the last panel, the gap up to ldy, head and tail). The reference
 * must produce exactly want, and kt exactly the reference's buffer. */
static void panel_case(const q8_kernels *kt, const q8x16 *w, const q8_act *xa, const float *spec,
                       int64_t n, int64_t nb, int64_t t, int64_t p0, int64_t p1, int64_t ldy) {
    const int64_t G = 16, len = G + t * ldy + G, r0 = 16 * p0, r1 = 16 * p1 < n ? 16 * p1 : n;
    float *want = xmalloc((size_t)len * sizeof(float));
    float *ya = xmalloc((size_t)len * sizeof(float)), *yb = xmalloc((size_t)len * sizeof(float));
    memset(want, GUARD, (size_t)len * sizeof(float));
    for (int64_t j = 0; j < t; j++)
        for (int64_t r = r0; r < r1; r++) want[G + j * ldy + r] = spec[j * n + r];
    memset(ya, GUARD, (size_t)len * sizeof(float));
    memset(yb, GUARD, (size_t)len * sizeof(float));
    q8_kernels_ref.panel_run(w, nb, xa, t, p0, p1, n, ya + G, ldy);
    kt->panel_run(w, nb, xa, t, p0, p1, n, yb + G, ldy);
    if (kt == &q8_kernels_ref)
        CHECK(same_f32(want, ya, len), "ref panel_run != spec n=%lld nb=%lld t=%lld p=[%lld,%lld) ldy=%lld: "
              "first diff at y[%lld]", (long long)n, (long long)nb, (long long)t, (long long)p0, (long long)p1,
              (long long)ldy, (long long)(first_diff(want, ya, len) - G));
    const int64_t d = first_diff(ya, yb, len), e = d - G; /* e: offset from y, negative in the head */
    CHECK(d < 0, "%s panel_run != ref n=%lld nb=%lld t=%lld p=[%lld,%lld) ldy=%lld: first diff at y[%lld] "
          "(token %lld, row %lld): %a vs ref %a%s", kt->name, (long long)n, (long long)nb, (long long)t,
          (long long)p0, (long long)p1, (long long)ldy, (long long)e, (long long)(e >= 0 ? e / ldy : -1),
          (long long)(e >= 0 ? e % ldy : e), d >= 0 ? (double)yb[d] : 0.0, d >= 0 ? (double)ya[d] : 0.0,
          d >= 0 && untouched(&ya[d], sizeof(float)) ? " (wrote a guard)" : "");
    free(want), free(ya), free(yb);
}

static const int64_t PN[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 50};
static const int64_t PNB[] = {1, 2, 3, 7, 36};
static const int64_t PT[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 17};
#define PT_MAX 17

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
    q8_act *xa;
    float *spec;
} panel_fixture;

static panel_fixture panel_fixture_make(int64_t n, int64_t nb, int64_t tmax) {
    q8_block *w = xmalloc((size_t)(n * nb) * sizeof *w), *x = xmalloc((size_t)(tmax * nb) * sizeof *x);
    random_blocks(w, n, nb);
    random_blocks(x, tmax, nb);
    const panel_fixture f = {packed(w, n, nb * QK), acts(x, tmax, nb), spec_table(w, x, n, nb, tmax)};
    free(w), free(x);
    return f;
}

static void panel_fixture_free(panel_fixture f) { free(f.wp), free(f.xa), free(f.spec); }

static void test_q8_kernels(const q8_kernels *kt) {
    for (int in = 0; in < LEN(PN); in++) {
        for (int ib = 0; ib < LEN(PNB); ib++) {
            const int64_t n = PN[in], nb = PNB[ib], np = panels_of(n);
            const panel_fixture f = panel_fixture_make(n, nb, PT_MAX);
            for (int it = 0; it < LEN(PT); it++) {
                const int64_t t = PT[it];
                /* every panel, with the driver's ldy = n and with a 16-float gap between tokens
                 * (a write to a row >= n lands in the gap); then partial panel ranges */
                panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, 0, np, n);
                panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, 0, np, n + 16);
                if (np > 1) {
                    panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, 1, np, n + 16);
                    panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, np - 1, np, n + 16);
                    panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, 0, np - 1, n + 16);
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
            panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, 0, np, n);
            if (np > 2) panel_case(kt, f.wp, f.xa, f.spec, n, nb, t, 1, np - 1, n + 16);
        }
        panel_fixture_free(f);
    }
}

static void test_tables(void) {
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

/* ---- fp16 ------------------------------------------------------------------------------------ */
static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static int h_isnan(uint16_t h) { return (h & 0x7fff) > 0x7c00; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__)
static int have_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 29) & 1) || !((c >> 27) & 1)) return 0; /* F16C, OSXSAVE */
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6; /* VEX instructions need the OS to save YMM state */
}
__attribute__((target("f16c"))) static uint16_t hw_to_half(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_to_float(uint16_t h) { return _cvtsh_ss(h); }
#define HAVE_HW_HALF have_f16c()
#define HW_HALF_TARGET __attribute__((target("f16c"))) /* lets the sweep inline the hardware op */
#elif defined(__aarch64__)
/* AArch64 converts in hardware (FCVT), round to nearest even under the default FPCR. */
static uint16_t hw_to_half(float f) {
    __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float hw_to_float(uint16_t u) {
    __fp16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}
#define HAVE_HW_HALF 1
#define HW_HALF_TARGET
#else
static uint16_t hw_to_half(float f) { return q8_fp32_to_fp16(f); }
static float hw_to_float(uint16_t u) { return q8_fp16_to_fp32(u); }
#define HAVE_HW_HALF 0
#define HW_HALF_TARGET
#endif

/* Compares fp32 -> fp16 for bit patterns [begin, end) with the given stride; returns mismatches
 * and the first one. */
HW_HALF_TARGET static uint64_t f2h_range(uint64_t begin, uint64_t end, uint64_t stride, uint32_t *first) {
    uint64_t bad = 0;
    for (uint64_t u = begin; u < end; u += stride) {
        const float f = u2f((uint32_t)u);
        const uint16_t r = q8_fp32_to_fp16(f);
        const int ok = isnan(f) ? h_isnan(r) : r == hw_to_half(f);
        if (!ok && bad++ == 0) *first = (uint32_t)u;
    }
    return bad;
}

static void test_fp16(void) {
    group("fp16");
    /* fixed points that need no hardware */
    CHECK(q8_fp32_to_fp16(1.0f) == 0x3c00 && q8_fp32_to_fp16(-2.0f) == 0xc000, "1, -2");
    CHECK(q8_fp32_to_fp16(65504.0f) == 0x7bff && q8_fp32_to_fp16(65520.0f) == 0x7c00, "max, overflow");
    CHECK(q8_fp32_to_fp16(0x1p-24f) == 0x0001 && q8_fp32_to_fp16(0x1p-25f) == 0x0000, "subnormal ties to even");
    CHECK(q8_fp32_to_fp16(-0.0f) == 0x8000 && h_isnan(q8_fp32_to_fp16(NAN)), "-0, NaN");
    CHECK(q8_fp16_to_fp32(0x0001) == 0x1p-24f && isinf(q8_fp16_to_fp32(0xfc00)), "decode");
    /* fp16 -> fp32 -> fp16 is the identity on every non-NaN half */
    uint32_t bad = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if (!h_isnan((uint16_t)h)) bad += q8_fp32_to_fp16(q8_fp16_to_fp32((uint16_t)h)) != h;
    CHECK(bad == 0, "round trip: %u halves differ", bad);
    if (!HAVE_HW_HALF) {
        group_end();
        printf("skip fp16/hardware             no F16C here\n");
        return;
    }
    bad = 0;
    uint32_t first = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float a = q8_fp16_to_fp32((uint16_t)h), b = hw_to_float((uint16_t)h);
        const int ok = h_isnan((uint16_t)h) ? isnan(a) : f2u(a) == f2u(b);
        if (!ok && bad++ == 0) first = h;
    }
    CHECK(bad == 0, "fp16->fp32: %u of 65536 differ from hardware, first 0x%04x", bad, first);
    /* All 2^32 floats when that takes under 20 s (about 10 s at -O2 on current x86), else every
     * 7th pattern. Every 256th pattern times the rate: a spread sample, because the low
     * patterns are subnormals, which are far slower than the rest on x86. */
    const uint64_t all = (uint64_t)1 << 32;
    const double t0 = now_s();
    uint64_t nbad = f2h_range(0, all, 256, &first);
    const double est = (now_s() - t0) * 256.0;
    const uint64_t stride = est < 20.0 ? 1 : 7;
    nbad += f2h_range(0, all, stride, &first);
    CHECK(nbad == 0, "fp32->fp16: %llu patterns differ from hardware, first 0x%08x",
          (unsigned long long)nbad, first);
    group_end();
    printf("     fp32->fp16 checked %s bit patterns (%.1f s projected for all)\n",
           stride == 1 ? "all 2^32" : "every 7th of 2^32", est);
}

/* ---- quantization ---------------------------------------------------------------------------- */
static void test_quantize(void) {
    group("quantize");
    float x[4 * QK];
    q8_block q[4];
    /* zeros */
    memset(x, 0, sizeof x);
    memset(q, GUARD, sizeof q);
    CHECK(q8_quantize(x, Q8_DTYPE_F32, 1, QK, q) == Q8_OK, "rc");
    int zero = q[0].d == 0;
    for (int i = 0; i < QK; i++) zero &= q[0].qs[i] == 0;
    CHECK(zero, "zero block: d=0x%04x", q[0].d);
    CHECK(untouched(&q[1], sizeof q[1]), "wrote past one block");
    /* max 127 -> d = 1 exactly, and x * id is exact, so halves show the rounding */
    static const float known[QK] = {127, -3, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -1.5f, 126.5f, -126.5f,
                                    0.49f, -0.49f, 0, -0.0f, 1, -127, 64.25f, -64.75f};
    static const int8_t want[QK] = {127, -3, 3, -3, 1, -1, 2, -2, 127, -127,
                                    0, 0, 0, 0, 1, -127, 64, -65};
    CHECK(q8_quantize(known, Q8_DTYPE_F32, 1, QK, q) == Q8_OK && q[0].d == 0x3c00,
          "max 127: d=0x%04x", q[0].d);
    CHECK(memcmp(q[0].qs, want, QK) == 0, "half-way values round away from zero");
    /* a non-finite value poisons its own block only */
    for (int kind = 0; kind < 3; kind++) {
        fill_f32(x, 4 * QK, 5.0f);
        x[QK + 7] = kind == 0 ? INFINITY : kind == 1 ? -INFINITY : NAN;
        CHECK(q8_quantize(x, Q8_DTYPE_F32, 1, 4 * QK, q) == Q8_OK, "rc");
        int zq = 1;
        for (int i = 0; i < QK; i++) zq &= q[1].qs[i] == 0;
        CHECK(q[1].d == 0x7e00 && zq, "non-finite kind %d: d=0x%04x", kind, q[1].d);
        CHECK(!h_isnan(q[0].d) && !h_isnan(q[2].d) && !h_isnan(q[3].d), "neighbours poisoned");
    }
    /* random rows: properties of the definition, and the pool's split equals one row at a time */
    const int64_t rows = 67, k = 5 * QK, nb = k / QK;
    float *f = xmalloc((size_t)(rows * k) * sizeof(float));
    for (int64_t i = 0; i < rows * k; i++) f[i] = frand() * ldexpf(1.0f, (int)(i / QK % 20) - 10);
    q8_block *qa = xmalloc((size_t)(rows * nb) * sizeof *qa);
    q8_block *qb = xmalloc((size_t)(rows * nb) * sizeof *qb);
    CHECK(q8_quantize(f, Q8_DTYPE_F32, rows, k, qa) == Q8_OK, "rc");
    for (int64_t r = 0; r < rows; r++) q8_quantize_row_ref(f + r * k, qb + r * nb, k);
    CHECK(memcmp(qa, qb, (size_t)(rows * nb) * sizeof *qa) == 0, "threaded != row by row");
    int props = 1;
    for (int64_t b = 0; b < rows * nb; b++) {
        float amax = 0.0f;
        int hit = 0;
        for (int i = 0; i < QK; i++) amax = fmaxf(amax, fabsf(f[b * QK + i]));
        for (int i = 0; i < QK; i++) {
            props &= qa[b].qs[i] >= -127;
            hit |= abs(qa[b].qs[i]) == 127;
        }
        props &= hit && qa[b].d == q8_fp32_to_fp16(amax / 127.0f);
    }
    CHECK(props, "|q| <= 127, max |x| -> +-127, d = fp16(amax/127)");
    /* f16 and bf16 sources equal quantizing their float32 values; transposed equals transposing */
    uint16_t *h = xmalloc((size_t)(rows * k) * 2);
    float *hf = xmalloc((size_t)(rows * k) * sizeof(float));
    for (int dt = Q8_DTYPE_F16; dt <= Q8_DTYPE_BF16; dt++) {
        for (int64_t i = 0; i < rows * k; i++)
            h[i] = dt == Q8_DTYPE_F16 ? q8_fp32_to_fp16(f[i]) : (uint16_t)(f2u(f[i]) >> 16);
        CHECK(q8_convert_to_f32(h, dt, rows * k, hf) == Q8_OK, "convert rc");
        int conv = 1; /* bf16 is the top half of a float32; fp16 decoding is checked in fp16 */
        for (int64_t i = 0; i < rows * k; i++)
            conv &= f2u(hf[i]) == (dt == Q8_DTYPE_BF16 ? (uint32_t)h[i] << 16 : f2u(q8_fp16_to_fp32(h[i])));
        CHECK(conv, "q8_convert_to_f32 dtype %d", dt);
        CHECK(q8_quantize(h, dt, rows, k, qa) == Q8_OK && q8_quantize(hf, Q8_DTYPE_F32, rows, k, qb) == Q8_OK,
              "rc");
        CHECK(memcmp(qa, qb, (size_t)(rows * nb) * sizeof *qa) == 0, "dtype %d source", dt);
    }
    float *tr = xmalloc((size_t)(rows * k) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < k; i++) tr[i * rows + r] = f[r * k + i];
    CHECK(q8_quantize_transposed(tr, Q8_DTYPE_F32, k, rows, qa) == Q8_OK, "rc");
    CHECK(q8_quantize(f, Q8_DTYPE_F32, rows, k, qb) == Q8_OK, "rc");
    CHECK(memcmp(qa, qb, (size_t)(rows * nb) * sizeof *qa) == 0, "transposed f32");
    for (int64_t i = 0; i < rows * k; i++) h[i] = q8_fp32_to_fp16(tr[i]);
    for (int64_t i = 0; i < rows * k; i++) hf[i] = q8_fp16_to_fp32(h[i]);
    CHECK(q8_quantize_transposed(h, Q8_DTYPE_F16, k, rows, qa) == Q8_OK, "rc");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < k; i++) f[r * k + i] = hf[i * rows + r];
    CHECK(q8_quantize(f, Q8_DTYPE_F32, rows, k, qb) == Q8_OK, "rc");
    CHECK(memcmp(qa, qb, (size_t)(rows * nb) * sizeof *qa) == 0, "transposed f16");
    /* dequantize is d * q */
    CHECK(q8_dequantize(qa, rows, k, hf) == Q8_OK, "rc");
    int deq = 1;
    for (int64_t i = 0; i < rows * k; i++)
        deq &= hf[i] == q8_fp16_to_fp32(qa[i / QK].d) * (float)qa[i / QK].qs[i % QK];
    CHECK(deq, "dequantize");
    free(f), free(qa), free(qb), free(h), free(hf), free(tr);
    group_end();
}

/* ---- the packed layout ------------------------------------------------------------------------ */
/* Checks the packed matrix p (n rows, nb blocks) against the GGML rows w: every row where q8.h
 * puts it, padding rows d = 0 / quants 128, and nothing written past the last element. */
static int layout_ok(const q8x16 *p, const q8_block *w, int64_t n, int64_t nb) {
    const int64_t np = panels_of(n);
    for (int64_t r = 0; r < np * 16; r++)
        if (r < n ? !row_is(p, nb, r, w + r * nb) : !row_is_padding(p, nb, r)) return 0;
    return untouched(p + np * nb, sizeof *p);
}

/* Sums and scales of q8_act_prep, against its definition in q8_internal.h. */
static void check_act_prep(void) {
    const int64_t nb = 9;
    q8_block x[9];
    float f[9 * QK];
    fill_f32(f, nb * QK, 3.0f);
    for (int i = 0; i < QK; i++) f[i] = 0.0f, f[QK + i] = 1.0f, f[2 * QK + i] = -2.0f; /* 0, +127, -127 */
    f[3 * QK + 4] = NAN;                                                           /* a poisoned block */
    q8_quantize_row_ref(f, x, nb * QK);
    q8_act a[10];
    memset(a, GUARD, sizeof a);
    q8_act_prep(x, nb, a);
    int ok = untouched(&a[nb], sizeof a[nb]);
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int i = 0; i < QK; i++) s += x[b].qs[i];
        const float d = q8_fp16_to_fp32(x[b].d);
        ok &= memcmp(a[b].qs, x[b].qs, QK) == 0 && a[b].nsum == -128 * s &&
              (isnan(d) ? isnan(a[b].d) : memcmp(&a[b].d, &d, 4) == 0);
    }
    CHECK(ok && a[1].nsum == -128 * 127 * 32 && a[2].nsum == 128 * 127 * 32 && a[0].nsum == 0,
          "q8_act_prep: quants, scale, -128 * sum");
}

/* Quantizes rows [r0, r1) of f (n x k, or its transpose tr, k x n) into p with
 * q8_quantize_packed: the source handed over is just those rows (k x (r1 - r0) when
 * transposed, as a Conv1D slice would be). */
static int quantize_rows(const float *f, const float *tr, int transposed, int64_t n, int64_t k,
                         int64_t r0, int64_t r1, q8x16 *p) {
    const int64_t rows = r1 - r0;
    if (!transposed) return q8_quantize_packed(f + r0 * k, Q8_DTYPE_F32, rows, k, 0, p, n, r0);
    float *sub = xmalloc((size_t)(rows * k) * sizeof(float));
    for (int64_t i = 0; i < k; i++)
        for (int64_t r = 0; r < rows; r++) sub[i * rows + r] = tr[i * n + r0 + r];
    const int rc = q8_quantize_packed(sub, Q8_DTYPE_F32, rows, k, 1, p, n, r0);
    free(sub);
    return rc;
}

static void test_pack(void) {
    group("pack");
    check_act_prep();
    /* q8_pack puts every row where q8.h says, pads, and q8_unpack gives the same bytes back */
    static const int64_t NS[] = {1, 2, 5, 15, 16, 17, 31, 32, 33, 50};
    static const int64_t NBS_[] = {1, 2, 3, 8};
    for (int in = 0; in < LEN(NS); in++) {
        for (int ib = 0; ib < LEN(NBS_); ib++) {
            const int64_t n = NS[in], nb = NBS_[ib], k = nb * QK, count = q8_packed_count(n, k);
            CHECK(count == panels_of(n) * nb, "q8_packed_count(%lld, %lld) = %lld", (long long)n, (long long)k,
                  (long long)count);
            q8_block *w = xmalloc((size_t)(n * nb + 1) * sizeof *w), *back = xmalloc((size_t)(n * nb + 1) * sizeof *w);
            q8x16 *p = xmalloc((size_t)(count + 1) * sizeof *p);
            random_blocks(w, n, nb);
            memset(p, GUARD, (size_t)(count + 1) * sizeof *p);
            memset(back, GUARD, (size_t)(n * nb + 1) * sizeof *back);
            CHECK(q8_pack(w, n, k, p) == Q8_OK && layout_ok(p, w, n, nb), "q8_pack n=%lld nb=%lld: layout",
                  (long long)n, (long long)nb);
            CHECK(q8_unpack(p, n, k, back) == Q8_OK && memcmp(back, w, (size_t)(n * nb) * sizeof *w) == 0 &&
                      untouched(back + n * nb, sizeof *back),
                  "q8_unpack n=%lld nb=%lld: round trip", (long long)n, (long long)nb);
            /* dequantize_packed of any row range = q8_dequantize of those rows */
            float *want = xmalloc((size_t)(n * k) * sizeof(float)), *got = xmalloc((size_t)(n * k + 8) * sizeof(float));
            q8_dequantize(w, n, k, want);
            const int64_t rr[][2] = {{0, n}, {n - 1, 1}, {n / 2, n - n / 2}, {n > 17 ? 17 : 0, 1}, {n / 3, n / 3 + 1}};
            for (int i = 0; i < LEN(rr); i++) {
                const int64_t r0 = rr[i][0], rows = rr[i][1];
                memset(got, GUARD, (size_t)(n * k + 8) * sizeof(float));
                CHECK(q8_dequantize_packed(p, n, k, r0, rows, got) == Q8_OK &&
                          same_f32(got, want + r0 * k, rows * k) && untouched(got + rows * k, 8 * sizeof(float)),
                      "q8_dequantize_packed n=%lld nb=%lld rows [%lld, %lld)", (long long)n, (long long)nb,
                      (long long)r0, (long long)(r0 + rows));
            }
            free(w), free(back), free(p), free(want), free(got);
        }
    }
    /* q8_quantize_packed = q8_quantize + q8_pack: whole matrices of every dtype, plain and
     * transposed; then filled in row ranges, in order and backwards, where each call writes its
     * rows only (and the padding when it writes row n - 1). 3 threads: rows of one panel are
     * quantized by different workers. */
    q8_pool_init(3);
    static const int64_t QN[] = {1, 16, 48, 67, 83};
    for (int in = 0; in < LEN(QN); in++) {
        const int64_t n = QN[in], k = 5 * QK, nb = 5, count = q8_packed_count(n, k);
        const size_t pbytes = (size_t)count * sizeof(q8x16);
        float *f = xmalloc((size_t)(n * k) * sizeof(float)), *tr = xmalloc((size_t)(n * k) * sizeof(float));
        for (int64_t i = 0; i < n * k; i++) f[i] = frand() * ldexpf(1.0f, (int)(i / QK % 20) - 10);
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < k; i++) tr[i * n + r] = f[r * k + i];
        q8_block *g = xmalloc((size_t)(n * nb) * sizeof *g);
        CHECK(q8_quantize(f, Q8_DTYPE_F32, n, k, g) == Q8_OK, "rc");
        q8x16 *want = packed(g, n, k), *p = xmalloc(pbytes + sizeof(q8x16));
        for (int transposed = 0; transposed < 2; transposed++) {
            memset(p, GUARD, pbytes + sizeof(q8x16));
            CHECK(quantize_rows(f, tr, transposed, n, k, 0, n, p) == Q8_OK && memcmp(p, want, pbytes) == 0 &&
                      untouched(p + count, sizeof *p),
                  "q8_quantize_packed n=%lld transposed=%d: != q8_quantize + q8_pack", (long long)n, transposed);
            /* cuts: 0 | 5 | 21 | 40 | n (those below n) */
            int64_t cuts[6], nc = 0;
            cuts[nc++] = 0;
            for (int64_t c = 5; c < n; c = c == 5 ? 21 : c == 21 ? 40 : n) cuts[nc++] = c;
            cuts[nc++] = n;
            for (int backwards = 0; backwards < 2; backwards++) {
                memset(p, GUARD, pbytes + sizeof(q8x16));
                int ok = 1;
                int64_t done_lo = n, done_hi = n; /* backwards: rows [done_lo, n) are in */
                for (int64_t c = 0; c + 1 < nc; c++) {
                    const int64_t ci = backwards ? nc - 2 - c : c;
                    const int64_t r0 = cuts[ci], r1 = cuts[ci + 1];
                    ok &= quantize_rows(f, tr, transposed, n, k, r0, r1, p) == Q8_OK;
                    if (backwards) done_lo = r0;
                    else done_lo = 0, done_hi = r1;
                    for (int64_t r = 0; r < panels_of(n) * 16; r++) {
                        if (r >= n) ok &= done_hi == n ? row_is_padding(p, nb, r) : row_bytes_are(p, nb, r, GUARD);
                        else if (r >= done_lo && r < done_hi) ok &= row_is(p, nb, r, g + r * nb);
                        else ok &= row_bytes_are(p, nb, r, GUARD);
                    }
                    ok &= untouched(p + count, sizeof *p);
                }
                CHECK(ok && memcmp(p, want, pbytes) == 0,
                      "q8_quantize_packed n=%lld transposed=%d %s in row ranges", (long long)n, transposed,
                      backwards ? "backwards" : "forwards");
            }
        }
        /* f16 and bf16 sources (plain and transposed) equal q8_quantize of the same data */
        uint16_t *h = xmalloc((size_t)(n * k) * 2), *ht = xmalloc((size_t)(n * k) * 2);
        for (int dt = Q8_DTYPE_F16; dt <= Q8_DTYPE_BF16; dt++) {
            for (int64_t i = 0; i < n * k; i++)
                h[i] = dt == Q8_DTYPE_F16 ? q8_fp32_to_fp16(f[i]) : (uint16_t)(f2u(f[i]) >> 16);
            for (int64_t r = 0; r < n; r++)
                for (int64_t i = 0; i < k; i++) ht[i * n + r] = h[r * k + i];
            CHECK(q8_quantize(h, dt, n, k, g) == Q8_OK, "rc");
            q8x16 *w2 = packed(g, n, k);
            memset(p, GUARD, pbytes);
            CHECK(q8_quantize_packed(h, dt, n, k, 0, p, n, 0) == Q8_OK && memcmp(p, w2, pbytes) == 0,
                  "q8_quantize_packed dtype %d n=%lld", dt, (long long)n);
            memset(p, GUARD, pbytes);
            CHECK(q8_quantize_packed(ht, dt, n, k, 1, p, n, 0) == Q8_OK && memcmp(p, w2, pbytes) == 0,
                  "q8_quantize_packed dtype %d n=%lld transposed", dt, (long long)n);
            free(w2);
        }
        free(f), free(tr), free(g), free(want), free(p), free(h), free(ht);
    }
    q8_pool_init(0);
    group_end();
}

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
static void test_gemm_batches(void) {
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
            if (!isa_listed(all_tables[i].name)) continue;
            q8_isa_set(all_tables[i].name);
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

static void test_drivers(void) {
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

/* ---- argument checks --------------------------------------------------------------------------- */
#define EINV(call, out, bytes)                                                                     \
    do {                                                                                           \
        memset((out), GUARD, (bytes));                                                             \
        const int rc_ = (call);                                                                    \
        CHECK(rc_ == Q8_EINVAL && untouched((out), (bytes)), "%s -> %d%s", #call, rc_,             \
              untouched((out), (bytes)) ? "" : " (wrote output)");                               \
    } while (0)

static void test_args(void) {
    group("arguments");
    enum { N = 64, K = 64 };
    static q8_block w[N * K / QK];
    static float wf[N * K], x[4 * K], a[N * K], g[N * K], out[4 * N * K];
    q8_block qout[N * K / QK];
    static q8x16 wp[N / 16 * (K / QK)];
    q8x16 pout[N / 16 * (K / QK)];
    random_blocks(w, N, K / QK);
    CHECK(q8_pack(w, N, K, wp) == Q8_OK, "q8_pack");
    fill_f32(wf, N * K, 1.0f);
    fill_f32(x, 4 * K, 1.0f);
    fill_f32(a, N * K, 1.0f);
    fill_f32(g, N * K, 1.0f);
    const size_t OB = sizeof out, QB = sizeof qout, PB = sizeof pout;
    int64_t idx;
    float val;
    /* index and value outputs of the argmax entry points, guarded together */
    static struct {
        int64_t index;
        float value;
    } iv;
    const size_t IVB = sizeof iv;
    const int64_t bad_sizes[] = {0, -1, -64, INT64_MIN};
    const int64_t bad_k[] = {31, 33, 48, 1};

    const char *active = q8_isa_active();
    CHECK(q8_isa_set(NULL) == Q8_EINVAL && q8_isa_set("") == Q8_EINVAL && q8_isa_set("sse9") == Q8_EINVAL,
          "q8_isa_set bad names");
    CHECK(strcmp(q8_isa_active(), active) == 0, "a bad name changed the active path");
    CHECK(q8_alloc(0) == NULL && q8_alloc(SIZE_MAX) == NULL, "q8_alloc(0 / huge)");
    CHECK(q8_pool_init(-1) == Q8_EINVAL, "q8_pool_init(-1)");
    CHECK(q8_probe_read_bandwidth(0, 1) < 0 && q8_probe_read_bandwidth((size_t)1 << 20, 0) < 0, "probe");
    {
        unsigned char *rb = q8_alloc((size_t)3 << 20);
        CHECK(rb && q8_read_pass(NULL, (size_t)1 << 20) < 0 && q8_read_pass(rb, ((size_t)1 << 20) - 1) < 0 &&
                  q8_read_pass(rb + 1, (size_t)2 << 20) < 0 && q8_read_pass(rb, SIZE_MAX) < 0,
              "q8_read_pass bad arguments");
        if (rb) memset(rb, 1, (size_t)3 << 20);
        CHECK(rb && q8_read_pass(rb, ((size_t)3 << 20) - 5) > 0, "q8_read_pass");
        q8_free(rb);
    }
    CHECK(q8_abi_version() == Q8_ABI_VERSION, "abi %d, header %d", q8_abi_version(), Q8_ABI_VERSION);

    /* NULL pointers */
    EINV(q8_convert_to_f32(NULL, Q8_DTYPE_F32, K, out), out, OB);
    EINV(q8_convert_to_f32(x, Q8_DTYPE_F32, K, NULL), out, OB);
    EINV(q8_convert_to_f32(x, 3, K, out), out, OB);
    EINV(q8_convert_to_f32(x, -1, K, out), out, OB);
    EINV(q8_quantize(NULL, Q8_DTYPE_F32, 1, K, qout), qout, QB);
    EINV(q8_quantize(x, Q8_DTYPE_F32, 1, K, NULL), qout, QB);
    EINV(q8_quantize(x, 3, 1, K, qout), qout, QB);
    EINV(q8_quantize_transposed(NULL, Q8_DTYPE_F32, K, 1, qout), qout, QB);
    EINV(q8_quantize_transposed(x, Q8_DTYPE_F32, K, 1, NULL), qout, QB);
    EINV(q8_quantize_transposed(x, 7, K, 1, qout), qout, QB);
    EINV(q8_dequantize(NULL, 1, K, out), out, OB);
    EINV(q8_dequantize(w, 1, K, NULL), out, OB);
    EINV(q8_pack(NULL, N, K, pout), pout, PB);
    EINV(q8_pack(w, N, K, NULL), pout, PB);
    { /* a -128 quant anywhere (here the last one) is outside the contract: refused, unwritten */
        const int8_t keep = w[N * K / QK - 1].qs[QK - 1];
        w[N * K / QK - 1].qs[QK - 1] = -128;
        EINV(q8_pack(w, N, K, pout), pout, PB);
        w[N * K / QK - 1].qs[QK - 1] = keep;
    }
    EINV(q8_unpack(NULL, N, K, qout), qout, QB);
    EINV(q8_unpack(wp, N, K, NULL), qout, QB);
    EINV(q8_quantize_packed(NULL, Q8_DTYPE_F32, 1, K, 0, pout, N, 0), pout, PB);
    EINV(q8_quantize_packed(x, Q8_DTYPE_F32, 1, K, 0, NULL, N, 0), pout, PB);
    EINV(q8_quantize_packed(NULL, Q8_DTYPE_F32, 1, K, 1, pout, N, 0), pout, PB);
    EINV(q8_quantize_packed(x, 3, 1, K, 0, pout, N, 0), pout, PB);
    EINV(q8_quantize_packed(x, -1, 1, K, 1, pout, N, 0), pout, PB);
    EINV(q8_dequantize_packed(NULL, N, K, 0, 1, out), out, OB);
    EINV(q8_dequantize_packed(wp, N, K, 0, 1, NULL), out, OB);
    EINV(q8_gemv(NULL, N, K, x, NULL, out), out, OB);
    EINV(q8_gemv(wp, N, K, NULL, NULL, out), out, OB);
    EINV(q8_gemv(wp, N, K, x, NULL, NULL), out, OB);
    EINV(q8_gemm(NULL, N, K, x, 2, NULL, out), out, OB);
    EINV(q8_gemm(wp, N, K, NULL, 2, NULL, out), out, OB);
    EINV(q8_gemm(wp, N, K, x, 2, NULL, NULL), out, OB);
    EINV(q8_gemv_f32(NULL, N, K, x, NULL, out), out, OB);
    EINV(q8_gemv_f32(wf, N, K, NULL, NULL, out), out, OB);
    EINV(q8_gemv_f32(wf, N, K, x, NULL, NULL), out, OB);
    EINV(q8_gemm_f32(NULL, N, K, x, 2, NULL, out), out, OB);
    EINV(q8_gemm_f32(wf, N, K, NULL, 2, NULL, out), out, OB);
    EINV(q8_gemm_f32(wf, N, K, x, 2, NULL, NULL), out, OB);
    EINV(q8_lmhead(NULL, N, K, x, out), out, OB);
    EINV(q8_lmhead(wp, N, K, NULL, out), out, OB);
    EINV(q8_lmhead(wp, N, K, x, NULL), out, OB);
    EINV(q8_lmhead_f32(NULL, N, K, x, out), out, OB);
    EINV(q8_lmhead_f32(wf, N, K, NULL, out), out, OB);
    EINV(q8_lmhead_f32(wf, N, K, x, NULL), out, OB);
    EINV(q8_lmhead_argmax(NULL, N, K, x, &iv.index, &iv.value), &iv, IVB);
    EINV(q8_lmhead_argmax(wp, N, K, NULL, &iv.index, &iv.value), &iv, IVB);
    EINV(q8_lmhead_argmax(wp, N, K, x, NULL, &iv.value), &iv, IVB);
    EINV(q8_lmhead_argmax(wp, N, K, x, &iv.index, NULL), &iv, IVB);
    EINV(q8_lmhead_argmax_f32(NULL, N, K, x, &iv.index, &iv.value), &iv, IVB);
    EINV(q8_lmhead_argmax_f32(wf, N, K, NULL, &iv.index, &iv.value), &iv, IVB);
    EINV(q8_lmhead_argmax_f32(wf, N, K, x, NULL, &iv.value), &iv, IVB);
    EINV(q8_lmhead_argmax_f32(wf, N, K, x, &iv.index, NULL), &iv, IVB);
    EINV(q8_layernorm(NULL, g, a, 1, K, 1e-5f, out), out, OB);
    EINV(q8_layernorm(x, NULL, a, 1, K, 1e-5f, out), out, OB);
    EINV(q8_layernorm(x, g, NULL, 1, K, 1e-5f, out), out, OB);
    EINV(q8_layernorm(x, g, a, 1, K, 1e-5f, NULL), out, OB);
    EINV(q8_layernorm(x, g, a, 1, K, -1.0f, out), out, OB);
    EINV(q8_rmsnorm(NULL, g, 1, K, 1e-5f, 0.0f, out), out, OB);
    EINV(q8_rmsnorm(x, NULL, 1, K, 1e-5f, 0.0f, out), out, OB);
    EINV(q8_rmsnorm(x, g, 1, K, 1e-5f, 0.0f, NULL), out, OB);
    EINV(q8_gelu_tanh(NULL, K, out), out, OB);
    EINV(q8_gelu_tanh(x, K, NULL), out, OB);
    EINV(q8_geglu(NULL, g, K, out), out, OB);
    EINV(q8_geglu(x, NULL, K, out), out, OB);
    EINV(q8_geglu(x, g, K, NULL), out, OB);
    EINV(q8_add(NULL, g, K, out), out, OB);
    EINV(q8_add(x, NULL, K, out), out, OB);
    EINV(q8_add(x, g, K, NULL), out, OB);
    EINV(q8_scale(NULL, 2.0f, K, out), out, OB);
    EINV(q8_scale(x, 2.0f, K, NULL), out, OB);
    EINV(q8_softcap(NULL, 30.0f, K, out), out, OB);
    EINV(q8_softcap(x, 30.0f, K, NULL), out, OB);
    EINV(q8_softcap(x, 0.0f, K, out), out, OB);
    EINV(q8_softcap(x, -1.0f, K, out), out, OB);
    EINV(q8_softmax(NULL, 1, K, out), out, OB);
    EINV(q8_softmax(x, 1, K, NULL), out, OB);
    {
        const int64_t pos[4] = {0, 1, 2, 3}, negpos[4] = {0, 1, -2, 3};
        memcpy(out, x, 4 * K * sizeof(float));
        int bad = q8_rope(NULL, 4, 2, 32, pos, 10000.0f) != Q8_EINVAL;
        /* q8_rope works in place: x itself must be left as it was */
        bad |= q8_rope(out, 4, 2, 32, NULL, 10000.0f) != Q8_EINVAL;
        bad |= q8_rope(out, 4, 2, 31, pos, 10000.0f) != Q8_EINVAL;
        bad |= q8_rope(out, 4, 2, 2048, pos, 10000.0f) != Q8_EINVAL;
        bad |= q8_rope(out, 4, 2, 32, pos, 0.0f) != Q8_EINVAL;
        bad |= q8_rope(out, 4, 2, 32, negpos, 10000.0f) != Q8_EINVAL;
        for (int i = 0; i < LEN(bad_sizes); i++) {
            bad |= q8_rope(out, bad_sizes[i], 2, 32, pos, 10000.0f) != Q8_EINVAL;
            bad |= q8_rope(out, 4, bad_sizes[i], 32, pos, 10000.0f) != Q8_EINVAL;
            bad |= q8_rope(out, 4, 2, bad_sizes[i], pos, 10000.0f) != Q8_EINVAL;
        }
        CHECK(!bad && memcmp(out, x, 4 * K * sizeof(float)) == 0, "q8_rope bad arguments");
    }

    /* sizes: zero and negative everywhere, K % 32 where Q8_0 is involved */
    for (int i = 0; i < LEN(bad_sizes); i++) {
        const int64_t s = bad_sizes[i];
        EINV(q8_convert_to_f32(x, Q8_DTYPE_F32, s, out), out, OB);
        EINV(q8_quantize(x, Q8_DTYPE_F32, s, K, qout), qout, QB);
        EINV(q8_quantize(x, Q8_DTYPE_F32, 1, s, qout), qout, QB);
        EINV(q8_quantize_transposed(x, Q8_DTYPE_F32, s, 1, qout), qout, QB);
        EINV(q8_quantize_transposed(x, Q8_DTYPE_F32, K, s, qout), qout, QB);
        EINV(q8_dequantize(w, s, K, out), out, OB);
        EINV(q8_dequantize(w, 1, s, out), out, OB);
        CHECK(q8_packed_count(s, K) == -1 && q8_packed_count(N, s) == -1, "q8_packed_count size %lld",
              (long long)s);
        EINV(q8_pack(w, s, K, pout), pout, PB);
        EINV(q8_pack(w, N, s, pout), pout, PB);
        EINV(q8_unpack(wp, s, K, qout), qout, QB);
        EINV(q8_unpack(wp, N, s, qout), qout, QB);
        for (int tr = 0; tr < 2; tr++) {
            EINV(q8_quantize_packed(x, Q8_DTYPE_F32, s, K, tr, pout, N, 0), pout, PB);
            EINV(q8_quantize_packed(x, Q8_DTYPE_F32, 1, s, tr, pout, N, 0), pout, PB);
            EINV(q8_quantize_packed(x, Q8_DTYPE_F32, 1, K, tr, pout, s, 0), pout, PB);
            if (s < 0) EINV(q8_quantize_packed(x, Q8_DTYPE_F32, 1, K, tr, pout, N, s), pout, PB);
        }
        EINV(q8_dequantize_packed(wp, s, K, 0, 1, out), out, OB);
        EINV(q8_dequantize_packed(wp, N, s, 0, 1, out), out, OB);
        EINV(q8_dequantize_packed(wp, N, K, 0, s, out), out, OB);
        if (s < 0) EINV(q8_dequantize_packed(wp, N, K, s, 1, out), out, OB);
        EINV(q8_gemv(wp, s, K, x, NULL, out), out, OB);
        EINV(q8_gemv(wp, N, s, x, NULL, out), out, OB);
        EINV(q8_gemm(wp, s, K, x, 2, NULL, out), out, OB);
        EINV(q8_gemm(wp, N, s, x, 2, NULL, out), out, OB);
        EINV(q8_gemm(wp, N, K, x, s, NULL, out), out, OB);
        EINV(q8_gemv_f32(wf, s, K, x, NULL, out), out, OB);
        EINV(q8_gemv_f32(wf, N, s, x, NULL, out), out, OB);
        EINV(q8_gemm_f32(wf, s, K, x, 2, NULL, out), out, OB);
        EINV(q8_gemm_f32(wf, N, s, x, 2, NULL, out), out, OB);
        EINV(q8_gemm_f32(wf, N, K, x, s, NULL, out), out, OB);
        EINV(q8_lmhead(wp, s, K, x, out), out, OB);
        EINV(q8_lmhead(wp, N, s, x, out), out, OB);
        EINV(q8_lmhead_f32(wf, s, K, x, out), out, OB);
        EINV(q8_lmhead_f32(wf, N, s, x, out), out, OB);
        EINV(q8_lmhead_argmax(wp, s, K, x, &iv.index, &iv.value), &iv, IVB);
        EINV(q8_lmhead_argmax(wp, N, s, x, &iv.index, &iv.value), &iv, IVB);
        EINV(q8_lmhead_argmax_f32(wf, s, K, x, &iv.index, &iv.value), &iv, IVB);
        EINV(q8_lmhead_argmax_f32(wf, N, s, x, &iv.index, &iv.value), &iv, IVB);
        EINV(q8_layernorm(x, g, a, s, K, 1e-5f, out), out, OB);
        EINV(q8_layernorm(x, g, a, 1, s, 1e-5f, out), out, OB);
        EINV(q8_rmsnorm(x, g, s, K, 1e-5f, 1.0f, out), out, OB);
        EINV(q8_rmsnorm(x, g, 1, s, 1e-5f, 1.0f, out), out, OB);
        EINV(q8_gelu_tanh(x, s, out), out, OB);
        EINV(q8_geglu(x, g, s, out), out, OB);
        EINV(q8_add(x, g, s, out), out, OB);
        EINV(q8_scale(x, 2.0f, s, out), out, OB);
        EINV(q8_softcap(x, 30.0f, s, out), out, OB);
        EINV(q8_softmax(x, s, K, out), out, OB);
        EINV(q8_softmax(x, 1, s, out), out, OB);
    }
    for (int i = 0; i < LEN(bad_k); i++) {
        const int64_t kk = bad_k[i];
        EINV(q8_quantize(x, Q8_DTYPE_F32, 1, kk, qout), qout, QB);
        EINV(q8_quantize_transposed(x, Q8_DTYPE_F32, kk, 1, qout), qout, QB);
        EINV(q8_dequantize(w, 1, kk, out), out, OB);
        CHECK(q8_packed_count(N, kk) == -1, "q8_packed_count k=%lld", (long long)kk);
        EINV(q8_pack(w, N, kk, pout), pout, PB);
        EINV(q8_unpack(wp, N, kk, qout), qout, QB);
        EINV(q8_quantize_packed(x, Q8_DTYPE_F32, 1, kk, 0, pout, N, 0), pout, PB);
        EINV(q8_quantize_packed(x, Q8_DTYPE_F32, 1, kk, 1, pout, N, 0), pout, PB);
        EINV(q8_dequantize_packed(wp, N, kk, 0, 1, out), out, OB);
        EINV(q8_gemv(wp, N, kk, x, NULL, out), out, OB);
        EINV(q8_gemm(wp, N, kk, x, 2, NULL, out), out, OB);
        EINV(q8_lmhead(wp, N, kk, x, out), out, OB);
        EINV(q8_lmhead_argmax(wp, N, kk, x, &iv.index, &iv.value), &iv, IVB);
    }
    /* row ranges of a packed matrix: row0 + rows <= n, without overflowing */
    {
        static const int64_t bad_ranges[][2] = {{N, 1}, {N - 1, 2}, {1, N}, {0, N + 1}, {INT64_MAX, 1},
                                                {1, INT64_MAX}, {INT64_MAX, INT64_MAX}};
        for (int i = 0; i < LEN(bad_ranges); i++) {
            const int64_t r0 = bad_ranges[i][0], rows = bad_ranges[i][1];
            for (int tr = 0; tr < 2; tr++)
                EINV(q8_quantize_packed(x, Q8_DTYPE_F32, rows, K, tr, pout, N, r0), pout, PB);
            EINV(q8_dequantize_packed(wp, N, K, r0, rows, out), out, OB);
        }
        /* the edges that fit */
        CHECK(q8_quantize_packed(x, Q8_DTYPE_F32, 1, K, 0, pout, N, N - 1) == Q8_OK &&
              q8_quantize_packed(x, Q8_DTYPE_F32, 1, K, 1, pout, N, N - 1) == Q8_OK &&
              q8_dequantize_packed(wp, N, K, N - 1, 1, out) == Q8_OK &&
              q8_dequantize_packed(wp, N, K, 0, N, out) == Q8_OK, "row ranges that end at n");
    }
    /* sizes past the limits (q8_mat_ok) have no packed count */
    CHECK(q8_packed_count(((int64_t)1 << 31) + 1, 32) == -1 && q8_packed_count(1, ((int64_t)1 << 31) + 32) == -1 &&
          q8_packed_count((int64_t)1 << 31, (int64_t)1 << 12) == -1, "q8_packed_count too large");
    CHECK(q8_packed_count((int64_t)1 << 30, (int64_t)1 << 12) == ((int64_t)1 << 26) * 128 &&
          q8_packed_count(1, 32) == 1 && q8_packed_count(16, 32) == 1 && q8_packed_count(17, 64) == 4 &&
          q8_packed_count(33, 96) == 9, "q8_packed_count");
    /* the f32 paths take any k */
    CHECK(q8_gemv_f32(wf, 3, 5, x, NULL, out) == Q8_OK && q8_lmhead_argmax_f32(wf, 3, 5, x, &idx, &val) == Q8_OK,
          "f32 paths with k = 5");

    /* KV cache and attention */
    enum { NKV = 2, NH = 4, HD = 8, CAP = 4 };
    float kc[NKV * CAP * HD], vc[NKV * CAP * HD], q[2 * NH * HD];
    fill_f32(q, 2 * NH * HD, 1.0f);
    memset(kc, GUARD, sizeof kc);
    memset(vc, GUARD, sizeof vc);
    int kvbad = 0;
    kvbad |= q8_kv_write(NULL, x, 1, 0, kc, vc, NKV, CAP, HD) != Q8_EINVAL;
    kvbad |= q8_kv_write(x, NULL, 1, 0, kc, vc, NKV, CAP, HD) != Q8_EINVAL;
    kvbad |= q8_kv_write(x, x, 1, 0, NULL, vc, NKV, CAP, HD) != Q8_EINVAL;
    kvbad |= q8_kv_write(x, x, 1, 0, kc, NULL, NKV, CAP, HD) != Q8_EINVAL;
    kvbad |= q8_kv_write(x, x, 1, -1, kc, vc, NKV, CAP, HD) != Q8_EINVAL;
    for (int i = 0; i < LEN(bad_sizes); i++) {
        const int64_t s = bad_sizes[i];
        kvbad |= q8_kv_write(x, x, s, 0, kc, vc, NKV, CAP, HD) != Q8_EINVAL;
        kvbad |= q8_kv_write(x, x, 1, 0, kc, vc, s, CAP, HD) != Q8_EINVAL;
        kvbad |= q8_kv_write(x, x, 1, 0, kc, vc, NKV, s, HD) != Q8_EINVAL;
        kvbad |= q8_kv_write(x, x, 1, 0, kc, vc, NKV, CAP, s) != Q8_EINVAL;
    }
    CHECK(!kvbad && untouched(kc, sizeof kc) && untouched(vc, sizeof vc), "q8_kv_write bad arguments");
    fill_f32(kc, NKV * CAP * HD, 1.0f);
    fill_f32(vc, NKV * CAP * HD, 1.0f);
    const size_t AB = sizeof(float) * 2 * NH * HD;
    EINV(q8_attention(NULL, 1, 0, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, NULL, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, NULL, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, NULL), out, AB);
    EINV(q8_attention(q, 1, -1, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, 3, CAP, HD, 0, 1.0f, 0.0f, out), out, AB); /* 4 % 3 */
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, 513, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, HD, -1, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, HD, 0, NAN, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, HD, 0, INFINITY, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, -1.0f, out), out, AB);
    EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, NAN, out), out, AB);
    for (int i = 0; i < LEN(bad_sizes); i++) {
        const int64_t s = bad_sizes[i];
        EINV(q8_attention(q, s, 0, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
        EINV(q8_attention(q, 1, 0, kc, vc, s, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
        EINV(q8_attention(q, 1, 0, kc, vc, NH, s, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
        EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, s, HD, 0, 1.0f, 0.0f, out), out, AB);
        EINV(q8_attention(q, 1, 0, kc, vc, NH, NKV, CAP, s, 0, 1.0f, 0.0f, out), out, AB);
    }
    /* positions that are no longer in a ring of 4: p = 4 with all of history, or a window of 5 */
    EINV(q8_attention(q, 1, 4, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 1, 4, kc, vc, NH, NKV, CAP, HD, 5, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 2, 3, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out), out, AB);
    EINV(q8_attention(q, 2, 6, kc, vc, NH, NKV, CAP, HD, 4, 1.0f, 0.0f, out), out, AB);
    /* ... and the edges that still fit */
    CHECK(q8_attention(q, 1, 3, kc, vc, NH, NKV, CAP, HD, 0, 1.0f, 0.0f, out) == Q8_OK, "p = cap - 1");
    CHECK(q8_attention(q, 1, 9, kc, vc, NH, NKV, CAP, HD, 4, 1.0f, 0.0f, out) == Q8_OK, "window = cap");
    CHECK(q8_attention(q, 2, 6, kc, vc, NH, NKV, CAP, HD, 3, 1.0f, 0.0f, out) == Q8_OK, "t=2 window 3");
    group_end();
}

/* ---- attention --------------------------------------------------------------------------------- */
typedef struct {
    int64_t n_heads, n_kv, hd, cap, window;
    float scale, softcap;
} attn_cfg;

static double attn_worst; /* largest error seen, for the report */

/* Scalar double precision over the full history (position-major: pos x n_kv x hd). */
static void attn_ref(const attn_cfg *c, const float *q, int64_t t, int64_t pos0, const float *kh,
                     const float *vh, double *out) {
    const int64_t g = c->n_heads / c->n_kv;
    double *w = xmalloc((size_t)(pos0 + t) * sizeof(double));
    for (int64_t j = 0; j < t; j++) {
        const int64_t p = pos0 + j;
        const int64_t lo = c->window > 0 && p - c->window + 1 > 0 ? p - c->window + 1 : 0;
        for (int64_t h = 0; h < c->n_heads; h++) {
            const float *qv = q + (j * c->n_heads + h) * c->hd;
            const int64_t kvh = h / g;
            double m = -INFINITY, sum = 0.0;
            for (int64_t i = lo; i <= p; i++) {
                const float *kv = kh + (i * c->n_kv + kvh) * c->hd;
                double s = 0.0;
                for (int64_t d = 0; d < c->hd; d++) s += (double)qv[d] * kv[d];
                s *= c->scale;
                if (c->softcap > 0.0f) s = c->softcap * tanh(s / c->softcap);
                w[i] = s;
                m = s > m ? s : m;
            }
            for (int64_t i = lo; i <= p; i++) sum += (w[i] = exp(w[i] - m));
            double *o = out + (j * c->n_heads + h) * c->hd;
            for (int64_t d = 0; d < c->hd; d++) {
                double acc = 0.0;
                for (int64_t i = lo; i <= p; i++) acc += w[i] * vh[(i * c->n_kv + kvh) * c->hd + d];
                o[d] = acc / sum;
            }
        }
    }
    free(w);
}

/* Runs a schedule of (t) chunks through kv_write + attention and compares each result. The
 * error bound is relative to the magnitude of V, which the output is an average of. */
static void attn_run(const attn_cfg *c, const int64_t *chunks, int n_chunks, const char *tag) {
    int64_t total = 0;
    for (int i = 0; i < n_chunks; i++) total += chunks[i];
    const int64_t row = c->n_kv * c->hd, qrow = c->n_heads * c->hd;
    float *kh = xmalloc((size_t)(total * row) * sizeof(float));
    float *vh = xmalloc((size_t)(total * row) * sizeof(float));
    float *q = xmalloc((size_t)(total * qrow) * sizeof(float));
    float *kc = xmalloc((size_t)(c->cap * row) * sizeof(float));
    float *vc = xmalloc((size_t)(c->cap * row) * sizeof(float));
    float *out = xmalloc((size_t)(total * qrow) * sizeof(float));
    float *out1 = xmalloc((size_t)(total * qrow) * sizeof(float));
    double *ref = xmalloc((size_t)(total * qrow) * sizeof(double));
    fill_f32(kh, total * row, 1.0f);
    fill_f32(vh, total * row, 2.0f);
    fill_f32(q, total * qrow, 1.0f);
    memset(kc, 0, (size_t)(c->cap * row) * sizeof(float));
    memset(vc, 0, (size_t)(c->cap * row) * sizeof(float));
    const float vmax = 2.0f;
    double worst = 0.0;
    int64_t pos = 0;
    for (int i = 0; i < n_chunks; i++) {
        const int64_t t = chunks[i];
        int rc = q8_kv_write(kh + pos * row, vh + pos * row, t, pos, kc, vc, c->n_kv, c->cap, c->hd);
        rc |= q8_attention(q + pos * qrow, t, pos, kc, vc, c->n_heads, c->n_kv, c->cap, c->hd,
                           c->window, c->scale, c->softcap, out);
        CHECK(rc == Q8_OK, "%s: rc at pos %lld t %lld", tag, (long long)pos, (long long)t);
        /* one thread gives the same bits */
        const int th = q8_pool_threads();
        q8_pool_init(1);
        q8_attention(q + pos * qrow, t, pos, kc, vc, c->n_heads, c->n_kv, c->cap, c->hd, c->window,
                     c->scale, c->softcap, out1);
        q8_pool_init(th);
        CHECK(same_f32(out, out1, t * qrow), "%s: thread count changed the result at pos %lld", tag,
              (long long)pos);
        attn_ref(c, q + pos * qrow, t, pos, kh, vh, ref);
        double err = 0.0;
        for (int64_t e = 0; e < t * qrow; e++) {
            const double d = fabs(out[e] - ref[e]) / (fabs(ref[e]) + vmax);
            err = d > err || isnan(d) ? d : err;
        }
        CHECK(err <= 1e-5, "%s: error %.3g at pos %lld t %lld", tag, err, (long long)pos, (long long)t);
        worst = err > worst ? err : worst;
        pos += t;
    }
    free(kh), free(vh), free(q), free(kc), free(vc), free(out), free(out1), free(ref);
    attn_worst = worst > attn_worst ? worst : attn_worst;
}

static void test_attention(void) {
    group("attention");
    q8_pool_init(3);
    /* GQA (4 query heads per KV head), whole history: prefill, decode steps, another prefill */
    const attn_cfg gqa = {8, 2, 64, 64, 0, 0.125f, 0.0f};
    int64_t sched[40];
    int n = 0;
    sched[n++] = 5;
    for (int i = 0; i < 30; i++) sched[n++] = 1;
    sched[n++] = 7;
    sched[n++] = 1;
    attn_run(&gqa, sched, n, "gqa");
    /* multi-head, head_dim with a tail past 16, softcap, more than one 64-position block */
    const attn_cfg mha = {3, 3, 40, 160, 0, 0.3f, 5.0f};
    n = 0;
    sched[n++] = 70;
    sched[n++] = 1;
    sched[n++] = 66;
    sched[n++] = 1;
    attn_run(&mha, sched, n, "softcap");
    /* sliding window in a ring smaller than the context: decode, and chunks that just fit */
    const attn_cfg ring = {6, 3, 24, 8, 5, 0.2f, 0.0f};
    n = 0;
    sched[n++] = 3;
    for (int i = 0; i < 20; i++) sched[n++] = 1;
    sched[n++] = 4; /* t = 4, window 5, cap 8: the oldest position read is exactly the oldest kept */
    sched[n++] = 2;
    for (int i = 0; i < 10; i++) sched[n++] = 1;
    attn_run(&ring, sched, n, "ring+window");
    const attn_cfg ring_full = {2, 1, 16, 8, 8, 1.0f, 0.0f}; /* window == cap */
    n = 0;
    for (int i = 0; i < 20; i++) sched[n++] = 1;
    attn_run(&ring_full, sched, n, "window=cap");
    const attn_cfg hd1 = {2, 2, 1, 16, 0, 1.0f, 0.0f};
    n = 0;
    sched[n++] = 9;
    sched[n++] = 1;
    attn_run(&hd1, sched, n, "head_dim=1");
    /* in a ring of 8 with window 5, a chunk of 5 would overwrite a position its first query reads */
    {
        float kc[8 * 24], vc[8 * 24], q[5 * 24], out[5 * 24];
        fill_f32(kc, 8 * 24, 1.0f);
        fill_f32(vc, 8 * 24, 1.0f);
        fill_f32(q, 5 * 24, 1.0f);
        EINV(q8_attention(q, 5, 30, kc, vc, 1, 1, 8, 24, 5, 1.0f, 0.0f, out), out, sizeof out);
        CHECK(q8_attention(q, 4, 30, kc, vc, 1, 1, 8, 24, 5, 1.0f, 0.0f, out) == Q8_OK, "t=4 fits");
        EINV(q8_attention(q, 1, 30, kc, vc, 1, 1, 8, 24, 9, 1.0f, 0.0f, out), out, sizeof out);
        EINV(q8_attention(q, 1, 8, kc, vc, 1, 1, 8, 24, 0, 1.0f, 0.0f, out), out, sizeof out);
    }
    group_end();
    printf("     attention: largest error %.2g of (|ref| + max|v|)\n", attn_worst);
}

/* ---- thread pool ------------------------------------------------------------------------------- */
typedef struct {
    q8x16 *w;
    float *x, *want;
    int64_t n, k;
} gemv_case;

static gemv_case make_case(int64_t n, int64_t k) {
    q8_block *wg = xmalloc((size_t)(n * k / QK) * sizeof(q8_block));
    random_blocks(wg, n, k / QK);
    gemv_case g = {packed(wg, n, k), xmalloc((size_t)k * sizeof(float)), xmalloc((size_t)n * sizeof(float)), n, k};
    fill_f32(g.x, k, 1.0f);
    q8_block xq[16];
    q8_quantize_row_ref(g.x, xq, k);
    for (int64_t r = 0; r < n; r++) g.want[r] = spec_dot(wg + r * (k / QK), xq, k / QK);
    free(wg);
    return g;
}

static int gemv_matches(const gemv_case *g) {
    float *y = xmalloc((size_t)g->n * sizeof(float));
    const int ok = q8_gemv(g->w, g->n, g->k, g->x, NULL, y) == Q8_OK && same_f32(y, g->want, g->n);
    free(y);
    return ok;
}

static void test_pool(void) {
    group("pool");
    gemv_case g = make_case(999, 128);
    CHECK(q8_physical_cores() >= 1, "physical cores");
    CHECK(q8_pool_init(3) == Q8_OK && q8_pool_threads() == 3, "init 3");
    CHECK(q8_pool_warmup() == Q8_OK && gemv_matches(&g), "warm gemv");
    q8_pool_shutdown();
    CHECK(gemv_matches(&g), "gemv after shutdown (lazy restart)");
    CHECK(q8_pool_threads() == q8_physical_cores(), "restart size %d", q8_pool_threads());
    q8_pool_shutdown();
    CHECK(q8_pool_warmup() == Q8_OK && gemv_matches(&g), "warmup after shutdown");
    q8_pool_shutdown();
    q8_pool_shutdown(); /* twice is harmless */
    CHECK(q8_pool_init(0) == Q8_OK && q8_pool_threads() == q8_physical_cores(), "init 0");
    for (int th = 1; th <= 8; th++)
        CHECK(q8_pool_init(th) == Q8_OK && gemv_matches(&g) && q8_pool_warmup() == Q8_OK && gemv_matches(&g),
              "resize to %d", th);
    /* fork with a warm pool: the child has none of the parent's workers and must rebuild them.
     * Q8_TEST_NO_FORK=1 skips it under qemu-user, whose 7.2 release aborts when a child forked
     * from a threaded guest creates threads (a plain pthreads program does the same). */
    const char *nofork = getenv("Q8_TEST_NO_FORK");
    if (nofork && *nofork == '1') printf("skip pool/fork                  Q8_TEST_NO_FORK=1\n");
    for (int th = 1; th <= 4 && !(nofork && *nofork == '1'); th += 3) {
        q8_pool_init(th);
        q8_pool_warmup();
        CHECK(gemv_matches(&g), "parent before fork");
        fflush(NULL);
        const pid_t pid = fork();
        if (pid == 0) {
            alarm(30); /* a hang kills the child, so the parent sees a failure, not a stall */
            int ok = 1;
            for (int i = 0; i < 20; i++) ok &= gemv_matches(&g);
            ok &= q8_pool_threads() == th && q8_pool_warmup() == Q8_OK && gemv_matches(&g);
            _exit(ok ? 0 : 1);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child with %d threads: %s %d", th,
              WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        CHECK(gemv_matches(&g), "parent after fork");
    }
    free(g.w), free(g.x), free(g.want);
    group_end();
}

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
    if (n <= 64) { /* one attention block of scores */
        for (int cap = 0; cap < 2; cap++) {
            memcpy(ya, x, (size_t)n * 4);
            memcpy(yb, x, (size_t)n * 4);
            const float ma = b->block_scores(ya, n, 0.125f, cap ? 30.0f : 0.0f);
            const float mb = lp->block_scores(yb, n, 0.125f, cap ? 30.0f : 0.0f);
            CHECK(same_f32(ya, yb, n) && same_f32(&ma, &mb, 1), "%s block_scores n=%lld softcap=%d", lp->name,
                  (long long)n, cap);
        }
        b->block_exp(x, 8.0f, n, ya);
        lp->block_exp(x, 8.0f, n, yb);
        CHECK(same_f32(ya, yb, n), "%s block_exp n=%lld", lp->name, (long long)n);
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

static void test_loops(void) {
    static const int64_t NS[] = {1, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 100, 128, 191, 256, 768, 1000};
    const q8_loops *seen[N_TABLES];
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

/* ---- memory ------------------------------------------------------------------------------------ */
static void test_memory(void) {
    group("memory");
    unsigned char *small = q8_alloc(100), *big = q8_alloc((size_t)5 << 20);
    CHECK(small && (uintptr_t)small % 64 == 0, "small alignment");
    CHECK(big && (uintptr_t)big % ((size_t)2 << 20) == 0, "large alignment");
    if (small) memset(small, 1, 100);
    if (big) memset(big, 1, (size_t)5 << 20);
    q8_free(small);
    q8_free(big);
    q8_free(NULL);
    group_end();
}

static void test_gemm_batches_group(void) {
    group("gemm batches");
    test_gemm_batches();
    group_end();
}

/* The groups by name: `test_q8 NAME...` runs only those (make tsan runs the threaded ones). */
static const struct {
    const char *name;
    void (*run)(void);
} groups[] = {
    {"tables", test_tables},       {"fp16", test_fp16},           {"quantize", test_quantize},
    {"pack", test_pack},           {"drivers", test_drivers},     {"gemm", test_gemm_batches_group},
    {"args", test_args},           {"attention", test_attention}, {"pool", test_pool},
    {"memory", test_memory},       {"loops", test_loops},
};
enum { N_GROUPS = sizeof groups / sizeof groups[0] };

int main(int argc, char **argv) {
    const double t0 = now_s();
    printf("libq8 test: supported %s, active %s, %d physical cores\n", q8_isa_supported(),
           q8_isa_active(), q8_physical_cores());
    for (int a = 1; a < argc; a++) {
        int known = 0;
        for (int g = 0; g < N_GROUPS; g++) known |= !strcmp(argv[a], groups[g].name);
        if (!known) {
            fprintf(stderr, "unknown group %s\n", argv[a]);
            return 2;
        }
    }
    for (int g = 0; g < N_GROUPS; g++) {
        int run = argc == 1;
        for (int a = 1; a < argc; a++) run |= !strcmp(argv[a], groups[g].name);
        if (run) groups[g].run();
    }
    q8_pool_shutdown();
    printf("(%.1f s)\n%ld passed, %ld failed\n", now_s() - t0, n_pass, n_fail);
    return n_fail ? 1 : 0;
}
