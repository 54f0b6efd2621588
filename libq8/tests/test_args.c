/* test_q8, args: every entry point refuses bad pointers, shapes and sizes without writing. */
#include "harness.h"

/* ---- argument checks --------------------------------------------------------------------------- */
enum { N = 64, K = 64 };

/* The products in one shape, weights w, input x, output y (N x K weights; the GEMMs take 2
 * tokens), so that one loop gives each of the three pointers NULL in turn. */
typedef int (*product_fn)(const void *w, const float *x, float *y);
static int gemv(const void *w, const float *x, float *y) { return q8_gemv(w, N, K, x, NULL, y); }
static int gemm(const void *w, const float *x, float *y) { return q8_gemm(w, N, K, x, 2, NULL, y); }
static int gemv_f32(const void *w, const float *x, float *y) { return q8_gemv_f32(w, N, K, x, NULL, y); }
static int gemm_f32(const void *w, const float *x, float *y) { return q8_gemm_f32(w, N, K, x, 2, NULL, y); }
static int lmhead(const void *w, const float *x, float *y) { return q8_lmhead(w, N, K, x, y); }
static int lmhead_f32(const void *w, const float *x, float *y) { return q8_lmhead_f32(w, N, K, x, y); }

void test_args(void) {
    group("arguments");
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
    const struct {
        const char *name;
        product_fn f;
        const void *w;
    } products[] = {{"q8_gemv: ", gemv, wp},         {"q8_gemm: ", gemm, wp},
                    {"q8_gemv_f32: ", gemv_f32, wf}, {"q8_gemm_f32: ", gemm_f32, wf},
                    {"q8_lmhead: ", lmhead, wp},     {"q8_lmhead_f32: ", lmhead_f32, wf}};
    for (int i = 0; i < LEN(products); i++) {
        EINV_AS(products[i].name, products[i].f(NULL, x, out), out, OB);
        EINV_AS(products[i].name, products[i].f(products[i].w, NULL, out), out, OB);
        EINV_AS(products[i].name, products[i].f(products[i].w, x, NULL), out, OB);
    }
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
    EINV(q8_swiglu_rows(NULL, 1, K / 2, out), out, OB);
    EINV(q8_swiglu_rows(x, 1, K / 2, NULL), out, OB);
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
        float tab[16];
        for (int i = 0; i < 16; i++) tab[i] = 0.5f;
        bad = q8_rope_freq(out, 4, 2, 32, pos, NULL) != Q8_EINVAL;
        bad |= q8_rope_freq(NULL, 4, 2, 32, pos, tab) != Q8_EINVAL;
        bad |= q8_rope_freq(out, 4, 2, 32, NULL, tab) != Q8_EINVAL;
        bad |= q8_rope_freq(out, 4, 2, 31, pos, tab) != Q8_EINVAL;
        bad |= q8_rope_freq(out, 4, 2, 32, negpos, tab) != Q8_EINVAL;
        tab[7] = NAN;
        bad |= q8_rope_freq(out, 4, 2, 32, pos, tab) != Q8_EINVAL;
        tab[7] = -1.0f;
        bad |= q8_rope_freq(out, 4, 2, 32, pos, tab) != Q8_EINVAL;
        tab[7] = INFINITY;
        bad |= q8_rope_freq(out, 4, 2, 32, pos, tab) != Q8_EINVAL;
        for (int i = 0; i < LEN(bad_sizes); i++)
            bad |= q8_rope_freq(out, bad_sizes[i], 2, 32, pos, tab) != Q8_EINVAL;
        CHECK(!bad && memcmp(out, x, 4 * K * sizeof(float)) == 0, "q8_rope_freq bad arguments");
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
