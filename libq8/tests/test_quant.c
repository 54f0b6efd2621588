/* test_q8, quant: fp16 conversions against the hardware, the quantizer on known bytes, the packed
 * weight layout against q8.h's description (pack, unpack, quantize_packed, dequantize_packed). */
#include "harness.h"

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

/* n floats as dtype dt: F16 rounded by the library's converter, BF16 the top half (truncated). */
static void to_half(const float *f, int64_t n, int dt, uint16_t *h) {
    for (int64_t i = 0; i < n; i++) h[i] = dt == Q8_DTYPE_F16 ? q8_fp32_to_fp16(f[i]) : (uint16_t)(f2u(f[i]) >> 16);
}

/* Checks that the pool's quantizer (Q4_0 when q4, else Q8_0) gives qa the bytes the reference
 * gives qb row by row. */
static void check_threaded_is_row_by_row(const float *f, int64_t rows, int64_t k, int q4, void *qa, void *qb) {
    const int64_t nb = k / QK;
    const size_t bs = q4 ? sizeof(q4_block) : sizeof(q8_block);
    CHECK((q4 ? q8_q4_quantize(f, Q8_DTYPE_F32, rows, k, qa) : q8_quantize(f, Q8_DTYPE_F32, rows, k, qa)) == Q8_OK,
          "rc");
    for (int64_t r = 0; r < rows; r++) {
        void *out = (unsigned char *)qb + (size_t)(r * nb) * bs;
        if (q4) q8_q4_quantize_row_ref(f + r * k, out, k);
        else q8_quantize_row_ref(f + r * k, out, k);
    }
    CHECK(memcmp(qa, qb, (size_t)(rows * nb) * bs) == 0, "threaded != row by row");
}

/* The quantizer checks' source rows: n floats, block scales 2^-10 .. 2^9 in turn. */
static float *random_rows(int64_t n) {
    float *f = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) f[i] = frand() * ldexpf(1.0f, (int)(i / QK % 20) - 10);
    return f;
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
typedef union {
    __fp16 h;
    uint16_t u;
} half_bits;
static uint16_t hw_to_half(float f) { return (half_bits){.h = (__fp16)f}.u; }
static float hw_to_float(uint16_t u) { return (float)(half_bits){.u = u}.h; }
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

void test_fp16(void) {
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
void test_quantize(void) {
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
    float *f = random_rows(rows * k);
    q8_block *qa = xmalloc((size_t)(rows * nb) * sizeof *qa);
    q8_block *qb = xmalloc((size_t)(rows * nb) * sizeof *qb);
    check_threaded_is_row_by_row(f, rows, k, 0, qa, qb);
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
        to_half(f, rows * k, dt, h);
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

void test_pack(void) {
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
        float *f = random_rows(n * k), *tr = xmalloc((size_t)(n * k) * sizeof(float));
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
            to_half(f, n * k, dt, h);
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

/* ---- Q4_0 ------------------------------------------------------------------------------------ */
/* Row r of a packed Q4_0 matrix against q8.h's description: d[i], qs[64j + 4i + e] = the GGML
 * byte qs[4j + e]; a padding row has d = 0 and bytes 0x88. */
static int row4_is(const q4x16 *p, int64_t nb, int64_t r, const q4_block *row) {
    const q4x16 *pb = p + r / 16 * nb;
    const int i = (int)(r % 16);
    for (int64_t b = 0; b < nb; b++) {
        uint16_t d = row ? row[b].d : 0;
        if (pb[b].d[i] != d) return 0;
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++)
                if (pb[b].qs[64 * j + 4 * i + e] != (row ? row[b].qs[4 * j + e] : 0x88)) return 0;
    }
    return 1;
}

void test_q4_quantize(void) {
    group("q4/quantize");
    float x[4 * QK];
    q4_block q[4];
    /* zero blocks: d = -0.0 (0 / -8), nibbles 8; starting with -0.0, d = +0.0 (gguf's argmax) */
    memset(x, 0, sizeof x);
    x[QK] = -0.0f;
    memset(q, GUARD, sizeof q);
    CHECK(q8_q4_quantize(x, Q8_DTYPE_F32, 1, 2 * QK, q) == Q8_OK, "rc");
    int eights = 1;
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 16; i++) eights &= q[b].qs[i] == 0x88;
    CHECK(q[0].d == 0x8000 && q[1].d == 0x0000 && eights, "zero blocks: d=0x%04x, 0x%04x", q[0].d, q[1].d);
    CHECK(untouched(&q[2], sizeof q[2]), "wrote past two blocks");
    /* max +8 first: d = -1 exactly, x * id = -x exactly; nibble = min(15, trunc(-x + 8.5)) */
    static const float known[QK] = {8, -8, 7, -7, 0.5f, -0.5f, 1.5f, -1.5f, 0.49f, -0.51f, 0, -0.0f, 3.25f, -3.75f, 8, 2};
    for (int i = 0; i < QK; i++) x[i] = known[i];
    CHECK(q8_q4_quantize(x, Q8_DTYPE_F32, 1, QK, q) == Q8_OK && q[0].d == 0xbc00, "d = -1: 0x%04x", q[0].d);
    int ok = 1;
    for (int c = 0; c < QK; c++) {
        const int want = (int)(-known[c] + 8.5f) < 15 ? (int)(-known[c] + 8.5f) : 15;
        const int got = c < 16 ? q[0].qs[c] & 15 : q[0].qs[c - 16] >> 4;
        ok &= got == want;
    }
    CHECK(ok, "nibbles of known values");
    CHECK((q[0].qs[1] & 15) == 15 && (q[0].qs[0] & 15) == 0, "-max -> 16 clamps to 15, max -> 0");
    /* a non-finite value poisons its own block: d = NaN, nibbles 8 */
    for (int kind = 0; kind < 3; kind++) {
        fill_f32(x, 4 * QK, 5.0f);
        x[2 * QK + 3] = kind == 0 ? INFINITY : kind == 1 ? -INFINITY : NAN;
        CHECK(q8_q4_quantize(x, Q8_DTYPE_F32, 1, 4 * QK, q) == Q8_OK, "rc");
        int e8 = 1;
        for (int i = 0; i < 16; i++) e8 &= q[2].qs[i] == 0x88;
        CHECK(q[2].d == 0x7e00 && e8 && !h_isnan(q[1].d) && !h_isnan(q[3].d), "non-finite kind %d", kind);
    }
    /* tiny blocks (1/d overflows): d stores -0 / +0, nibbles 8 */
    for (int i = 0; i < QK; i++) x[i] = (i == 3 ? 1e-38f : 0.0f);
    CHECK(q8_q4_quantize(x, Q8_DTYPE_F32, 1, QK, q) == Q8_OK && (q[0].d & 0x7fff) == 0 && q[0].qs[3] == 0x88,
          "tiny block: d=0x%04x qs[3]=0x%02x", q[0].d, q[0].qs[3]);
    /* random rows: threaded = row by row; properties; dtypes; transposed; dequantize */
    const int64_t rows = 67, k = 5 * QK, nb = k / QK;
    float *f = random_rows(rows * k), *tr = xmalloc((size_t)(rows * k) * sizeof(float));
    q4_block *qa = xmalloc((size_t)(rows * nb) * sizeof *qa), *qb = xmalloc((size_t)(rows * nb) * sizeof *qb);
    q8_pool_init(3);
    check_threaded_is_row_by_row(f, rows, k, 1, qa, qb);
    int props = 1;
    for (int64_t b = 0; b < rows * nb; b++) {
        float m = 0.0f;
        int im = 0;
        for (int i = 0; i < QK; i++)
            if (fabsf(f[b * QK + i]) > fabsf(m)) m = f[b * QK + i], im = i;
        const int nib = im < 16 ? qa[b].qs[im] & 15 : qa[b].qs[im - 16] >> 4;
        props &= qa[b].d == q8_fp32_to_fp16(m / -8.0f) && nib == 0;
    }
    CHECK(props, "d = fp16(m / -8), the largest value -> nibble 0");
    uint16_t *h = xmalloc((size_t)(rows * k) * 2);
    float *hf = xmalloc((size_t)(rows * k) * sizeof(float));
    for (int dt = Q8_DTYPE_F16; dt <= Q8_DTYPE_BF16; dt++) {
        to_half(f, rows * k, dt, h);
        q8_convert_to_f32(h, dt, rows * k, hf);
        CHECK(q8_q4_quantize(h, dt, rows, k, qa) == Q8_OK && q8_q4_quantize(hf, Q8_DTYPE_F32, rows, k, qb) == Q8_OK &&
                  memcmp(qa, qb, (size_t)(rows * nb) * sizeof *qa) == 0,
              "dtype %d source", dt);
    }
    CHECK(q8_q4_quantize(f, Q8_DTYPE_F32, rows, k, qa) == Q8_OK && q8_q4_dequantize(qa, rows, k, hf) == Q8_OK, "rc");
    int deq = 1;
    for (int64_t i = 0; i < rows * k; i++) {
        const q4_block *bl = &qa[i / QK];
        const int c = (int)(i % QK), nib = c < 16 ? bl->qs[c] & 15 : bl->qs[c - 16] >> 4;
        deq &= hf[i] == q8_fp16_to_fp32(bl->d) * (float)(nib - 8);
    }
    CHECK(deq, "dequantize = d * (nibble - 8)");
    /* packed: q8_q4_pack puts rows where q8.h says and pads; unpack round trip; quantize_packed
     * (plain, transposed, in row ranges) = quantize + pack; dequantize_packed = dequantize */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < k; i++) tr[i * rows + r] = f[r * k + i];
    const int64_t count = q8_q4_packed_count(rows, k);
    CHECK(count == panels_of(rows) * nb, "q8_q4_packed_count");
    q4x16 *p = xmalloc((size_t)(count + 1) * sizeof *p), *p2 = xmalloc((size_t)(count + 1) * sizeof *p2);
    memset(p, GUARD, (size_t)(count + 1) * sizeof *p);
    CHECK(q8_q4_pack(qa, rows, k, p) == Q8_OK && untouched(p + count, sizeof *p), "rc");
    int lay = 1;
    for (int64_t r = 0; r < panels_of(rows) * 16; r++) lay &= row4_is(p, nb, r, r < rows ? qa + r * nb : NULL);
    CHECK(lay, "q8_q4_pack layout and padding");
    memset(qb, GUARD, (size_t)(rows * nb) * sizeof *qb);
    CHECK(q8_q4_unpack(p, rows, k, qb) == Q8_OK && memcmp(qa, qb, (size_t)(rows * nb) * sizeof *qa) == 0, "unpack");
    for (int transposed = 0; transposed < 2; transposed++) {
        memset(p2, GUARD, (size_t)(count + 1) * sizeof *p2);
        CHECK(q8_q4_quantize_packed(transposed ? (const void *)tr : (const void *)f, Q8_DTYPE_F32, rows, k,
                                    transposed, p2, rows, 0) == Q8_OK &&
                  memcmp(p, p2, (size_t)count * sizeof *p) == 0 && untouched(p2 + count, sizeof *p2),
              "q8_q4_quantize_packed transposed=%d", transposed);
    }
    memset(p2, GUARD, (size_t)(count + 1) * sizeof *p2);
    int parts = q8_q4_quantize_packed(f + 40 * k, Q8_DTYPE_F32, rows - 40, k, 0, p2, rows, 40) == Q8_OK;
    for (int64_t r = 0; r < 40; r++) parts &= row4_is(p2, nb, r, NULL) == 0; /* not yet written */
    parts &= q8_q4_quantize_packed(f, Q8_DTYPE_F32, 40, k, 0, p2, rows, 0) == Q8_OK;
    CHECK(parts && memcmp(p, p2, (size_t)count * sizeof *p) == 0, "q8_q4_quantize_packed in two row ranges");
    float *want = xmalloc((size_t)(rows * k) * sizeof(float)), *got = xmalloc((size_t)(rows * k + 8) * sizeof(float));
    q8_q4_dequantize(qa, rows, k, want);
    const int64_t rr[][2] = {{0, rows}, {rows - 1, 1}, {17, 20}};
    for (int i = 0; i < LEN(rr); i++) {
        memset(got, GUARD, (size_t)(rows * k + 8) * sizeof(float));
        CHECK(q8_q4_dequantize_packed(p, rows, k, rr[i][0], rr[i][1], got) == Q8_OK &&
                  same_f32(got, want + rr[i][0] * k, rr[i][1] * k) && untouched(got + rr[i][1] * k, 8 * sizeof(float)),
              "q8_q4_dequantize_packed rows [%lld, +%lld)", (long long)rr[i][0], (long long)rr[i][1]);
    }
    q8_pool_init(0);
    free(f), free(tr), free(qa), free(qb), free(h), free(hf), free(p), free(p2), free(want), free(got);
    group_end();
}
