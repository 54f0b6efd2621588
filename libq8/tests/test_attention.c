/* test_q8, attention: attention against a double precision scalar version. */
#include "harness.h"

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

/* attn_run over a schedule written as runs {steps, t}: `steps` calls of t new tokens each. */
static void attn_runs(const attn_cfg *c, const int64_t runs[][2], int n_runs, const char *name) {
    int64_t sched[40];
    int n = 0;
    for (int r = 0; r < n_runs; r++)
        for (int64_t i = 0; i < runs[r][0]; i++) {
            if (n == LEN(sched)) {
                fprintf(stderr, "attention schedule %s: more than %d calls\n", name, LEN(sched));
                exit(2);
            }
            sched[n++] = runs[r][1];
        }
    attn_run(c, sched, n, name);
}

void test_attention(void) {
    group("attention");
    q8_pool_init(3);
    /* GQA (4 query heads per KV head), whole history: prefill, decode steps, another prefill */
    const attn_cfg gqa = {8, 2, 64, 64, 0, 0.125f, 0.0f};
    static const int64_t gqa_runs[][2] = {{1, 5}, {30, 1}, {1, 7}, {1, 1}};
    attn_runs(&gqa, gqa_runs, LEN(gqa_runs), "gqa");
    /* multi-head, head_dim with a tail past 16, softcap, more than one 64-position block */
    const attn_cfg mha = {3, 3, 40, 160, 0, 0.3f, 5.0f};
    static const int64_t mha_runs[][2] = {{1, 70}, {1, 1}, {1, 66}, {1, 1}};
    attn_runs(&mha, mha_runs, LEN(mha_runs), "softcap");
    /* sliding window in a ring smaller than the context: decode, and chunks that just fit (t = 4,
     * window 5, cap 8: the oldest position read is exactly the oldest kept) */
    const attn_cfg ring = {6, 3, 24, 8, 5, 0.2f, 0.0f};
    static const int64_t ring_runs[][2] = {{1, 3}, {20, 1}, {1, 4}, {1, 2}, {10, 1}};
    attn_runs(&ring, ring_runs, LEN(ring_runs), "ring+window");
    const attn_cfg ring_full = {2, 1, 16, 8, 8, 1.0f, 0.0f}; /* window == cap */
    static const int64_t ring_full_runs[][2] = {{20, 1}};
    attn_runs(&ring_full, ring_full_runs, LEN(ring_full_runs), "window=cap");
    const attn_cfg hd1 = {2, 2, 1, 16, 0, 1.0f, 0.0f};
    static const int64_t hd1_runs[][2] = {{1, 9}, {1, 1}};
    attn_runs(&hd1, hd1_runs, LEN(hd1_runs), "head_dim=1");
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
