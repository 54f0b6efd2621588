/* The harness's shared pieces: bookkeeping, seeded data, the kernel tables, and the packed
 * layout as q8.h describes it (not as pack.c writes it). */
#include "harness.h"

/* ---- bookkeeping: one line per group, a failure's first lines in detail -------------------- */
long n_pass, n_fail;
static long grp_pass, grp_fail;
static char grp_name[96];

void group(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(grp_name, sizeof grp_name, fmt, ap);
    va_end(ap);
    grp_pass = grp_fail = 0;
}

void group_end(void) {
    if (grp_fail) printf("FAIL %-28s %ld of %ld checks failed\n", grp_name, grp_fail, grp_pass + grp_fail);
    else printf("ok   %-28s %ld checks\n", grp_name, grp_pass);
    fflush(stdout);
    n_pass += grp_pass;
    n_fail += grp_fail;
}

int check_at(int ok, int line, const char *fmt, ...) {
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
uint64_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
float frand(void) { return (float)(rnd() >> 40) * 0x1p-23f - 1.0f; } /* [-1, 1) */

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

void fill_f32(float *x, int64_t n, float mag) {
    for (int64_t i = 0; i < n; i++) x[i] = frand() * mag;
}

/* Exits when building test data failed: no check could mean anything after it. */
static void need(int ok, const char *what) {
    if (ok) return;
    fprintf(stderr, "%s failed while building test data\n", what);
    exit(2);
}

/* Floats for rows * nb blocks of assorted kinds: zero blocks, all-+-max blocks (quants +-127 or
 * the widest Q4_0 nibbles, the widest products), tiny and large scales. The caller frees them. */
static float *random_block_floats(int64_t rows, int64_t nb) {
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
    return f;
}

/* Those blocks, quantized by the library's own producer. */
void random_blocks(q8_block *dst, int64_t rows, int64_t nb) {
    float *f = random_block_floats(rows, nb);
    need(q8_quantize(f, Q8_DTYPE_F32, rows, nb * QK, dst) == Q8_OK, "q8_quantize");
    free(f);
}

/* The same kinds of blocks as Q4_0 weights, by the library's Q4_0 quantizer. */
void random_q4_blocks(q4_block *dst, int64_t rows, int64_t nb) {
    float *f = random_block_floats(rows, nb);
    need(q8_q4_quantize(f, Q8_DTYPE_F32, rows, nb * QK, dst) == Q8_OK, "q8_q4_quantize");
    free(f);
}

int same_f32(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

int64_t first_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) return i;
    return -1;
}

/* A byte pattern for "must stay untouched" checks. */
int untouched(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != GUARD) return 0;
    return 1;
}

/* ---- kernel tables -------------------------------------------------------------------------- */
const table_t all_tables[] = {
    {"ref", &q8_kernels_ref},
#if defined(__x86_64__)
    {"avx2", &q8_kernels_avx2},
    {"avx512", &q8_kernels_avx512},
    {"avx512vnni", &q8_kernels_avx512vnni},
    {"amx", &q8_kernels_amx},
#endif
#if defined(__aarch64__)
    {"neon", &q8_kernels_neon},
    {"neon_dotprod", &q8_kernels_neon_dotprod},
#endif
};
const int n_tables = (int)(sizeof all_tables / sizeof all_tables[0]);

int isa_listed(const char *name) {
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

int use_table(int i) {
    if (!isa_listed(all_tables[i].name)) return 0;
    q8_isa_set(all_tables[i].name);
    return 1;
}

const int64_t ROWS[6] = {1, 2, 3, 5, 31, 33};
const int64_t KS[7] = {1, 15, 16, 17, 33, 100, 768};
const int64_t TS[6] = {1, 2, 3, 4, 5, 7};

/* Row ranges to ask for: all rows, and one starting off the 4-row grid. */
void ranges(int64_t R, int64_t rr[2][2]) {
    rr[0][0] = 0, rr[0][1] = R;
    rr[1][0] = R > 1 ? 1 : 0, rr[1][1] = R > 4 ? R - 1 : R;
}

/* ---- the packed layout, written from q8.h's description (not from pack.c) -------------------
 * Row 16p + i, column 32b + 4j + e of an n x k matrix lives in element p * nb + b:
 * d[i] is its scale and qs[64j + 4i + e] its quant + 128; rows n .. 16 * ceil(n / 16) - 1 are
 * d = 0, qs = 128. */
int64_t panels_of(int64_t n) { return (n + 15) / 16; }

/* Whether row r of the packed matrix p (nb blocks per row) holds the GGML row `row`. */
int row_is(const q8x16 *p, int64_t nb, int64_t r, const q8_block *row) {
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
int row_bytes_are(const q8x16 *p, int64_t nb, int64_t r, unsigned char byte) {
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
int row_is_padding(const q8x16 *p, int64_t nb, int64_t r) {
    const q8x16 *pb = p + r / 16 * nb;
    const int i = (int)(r % 16);
    for (int64_t b = 0; b < nb; b++) {
        if (pb[b].d[i] != 0) return 0;
        for (int c = 0; c < QK; c++)
            if (pb[b].qs[64 * (c / 4) + 4 * i + c % 4] != 128) return 0;
    }
    return 1;
}

/* A GUARD-filled buffer of count panel blocks of `size` bytes, count as the library's packed
 * count gave it for an n x k matrix. */
static void *panel_buffer(int64_t count, size_t size, int64_t n, int64_t k) {
    if (count <= 0) {
        fprintf(stderr, "packed count(%lld, %lld) = %lld\n", (long long)n, (long long)k, (long long)count);
        exit(2);
    }
    void *p = xmalloc((size_t)count * size);
    memset(p, GUARD, (size_t)count * size);
    return p;
}

/* The packed copy of n x k GGML blocks (q8_pack), in a buffer of its own. */
q8x16 *packed(const q8_block *w, int64_t n, int64_t k) {
    q8x16 *p = panel_buffer(q8_packed_count(n, k), sizeof *p, n, k);
    need(q8_pack(w, n, k, p) == Q8_OK, "q8_pack");
    return p;
}

/* The prepared activations of t quantized rows (nb blocks each). */
q8_act *acts(const q8_block *x, int64_t t, int64_t nb) {
    q8_act *a = xmalloc((size_t)(t * nb) * sizeof *a);
    for (int64_t j = 0; j < t; j++) q8_act_prep(x + j * nb, nb, a + j * nb);
    return a;
}

/* The specification of a Q8_0 row product (kernels_ref.c), on GGML blocks: one float
 * accumulator over the blocks in order, acc = fmaf(dw * dx, exact int dot, acc). */
float spec_dot(const q8_block *w, const q8_block *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int c = 0; c < QK; c++) s += (int32_t)w[b].qs[c] * (int32_t)x[b].qs[c];
        acc = fmaf(q8_fp16_to_fp32(w[b].d) * q8_fp16_to_fp32(x[b].d), (float)s, acc);
    }
    return acc;
}

/* Seconds on the monotonic clock, for the run time line. */
double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

q4x16 *packed4(const q4_block *w, int64_t n, int64_t k) {
    q4x16 *p = panel_buffer(q8_q4_packed_count(n, k), sizeof *p, n, k);
    need(q8_q4_pack(w, n, k, p) == Q8_OK, "q8_q4_pack");
    return p;
}

/* The specification of a Q4_0 row product on GGML blocks: the same chain, with the signed
 * quants nibble - 8 (qs[c] low: column c, high: column c + 16). */
float spec_dot4(const q4_block *w, const q8_block *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int c = 0; c < QK / 2; c++) {
            s += ((int32_t)(w[b].qs[c] & 15) - 8) * (int32_t)x[b].qs[c];
            s += ((int32_t)(w[b].qs[c] >> 4) - 8) * (int32_t)x[b].qs[c + QK / 2];
        }
        acc = fmaf(q8_fp16_to_fp32(w[b].d) * q8_fp16_to_fp32(x[b].d), (float)s, acc);
    }
    return acc;
}
