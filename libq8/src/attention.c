/* KV cache writes and causal attention (decode: t = 1; prefill: t > 1).
 *
 * One work item is one (query row, head): it streams that head's keys and values once with an
 * online softmax over blocks of positions, so no score buffer grows with the context and each
 * output has one writer. Dot products and the V accumulation use the dispatched kernels. */
#include <math.h>

#include "fastmath.h"
#include "q8_internal.h"

#define POS_BLOCK 64
#define MAX_HEAD_DIM 512

int q8_kv_write(const float *k_new, const float *v_new, int64_t t, int64_t pos0, float *k,
                float *v, int64_t n_kv, int64_t cap, int64_t head_dim) {
    Q8_CHECK(k_new && v_new && k && v && t > 0 && pos0 >= 0 && pos0 <= Q8_MAX_DIM);
    Q8_CHECK(q8_mat_ok(n_kv, cap) && q8_mat_ok(n_kv * cap, head_dim) && q8_mat_ok(t, n_kv));
    for (int64_t j = 0; j < t; j++) {
        const int64_t slot = (pos0 + j) % cap;
        for (int64_t h = 0; h < n_kv; h++) {
            const float *ks = k_new + (j * n_kv + h) * head_dim;
            const float *vs = v_new + (j * n_kv + h) * head_dim;
            float *kd = k + (h * cap + slot) * head_dim, *vd = v + (h * cap + slot) * head_dim;
            for (int64_t d = 0; d < head_dim; d++) {
                kd[d] = ks[d];
                vd[d] = vs[d];
            }
        }
    }
    return Q8_OK;
}

typedef struct {
    const q8_kernels *kt;
    const float *q, *k, *v;
    float *out;
    int64_t pos0, n_heads, group, cap, hd, window;
    float scale, softcap;
} attn_job;

/* The per-position loops of a block, cloned per vector width (picked by cpuid at load). They
 * are element-wise without contraction, so every clone rounds the same. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define ATT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ATT_CLONES
#endif

/* Scores scaled and soft-capped in place; returns their max (NaN if one is NaN). */
ATT_CLONES static float block_scores(float *s, int64_t nb, float scale, float softcap) {
    if (softcap > 0.0f)
        for (int64_t i = 0; i < nb; i++) s[i] = softcap * q8_tanh(s[i] * scale / softcap);
    else
        for (int64_t i = 0; i < nb; i++) s[i] = s[i] * scale;
    float bm = -INFINITY;
    for (int64_t i = 0; i < nb; i++)
        if (s[i] > bm || isnan(s[i])) bm = s[i];
    return bm;
}

ATT_CLONES static void block_exp(const float *s, float m, int64_t nb, float *e) {
    for (int64_t i = 0; i < nb; i++) e[i] = q8_exp_neg(s[i] - m);
}

/* o += e[i] * value row i, rows in order: each element rounds as a->kt->axpy_f32 would. */
ATT_CLONES static void block_values(const float *e, const float *vh, int64_t b0, int64_t nb,
                                    int64_t cap, int64_t hd, float *o) {
    int64_t slot = b0 % cap;
    for (int64_t i = 0; i < nb; i++) {
        const float *vr = vh + slot * hd;
        const float w = e[i];
        for (int64_t d = 0; d < hd; d++) o[d] = o[d] + w * vr[d];
        slot = slot + 1 == cap ? 0 : slot + 1;
    }
}

static void attend_one(const attn_job *a, int64_t j, int64_t h) {
    const int64_t p = a->pos0 + j;
    const int64_t lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    const int64_t kvh = h / a->group;
    const float *qv = a->q + (j * a->n_heads + h) * a->hd;
    const float *kh = a->k + kvh * a->cap * a->hd;
    const float *vh = a->v + kvh * a->cap * a->hd;
    float o[MAX_HEAD_DIM];
    for (int64_t d = 0; d < a->hd; d++) o[d] = 0.0f;
    float s[POS_BLOCK], e[POS_BLOCK];
    float m = -INFINITY;
    double l = 0.0;
    for (int64_t b0 = lo; b0 <= p; b0 += POS_BLOCK) {
        const int64_t nb = p - b0 + 1 < POS_BLOCK ? p - b0 + 1 : POS_BLOCK;
        /* The block's scores: one row kernel call over contiguous cache rows (bitwise the
         * same as a dot_f32 per key, with the query's loads shared by 4 keys at a time). */
        const int64_t s0 = b0 % a->cap;
        if (s0 + nb <= a->cap) a->kt->f32_rows(kh + s0 * a->hd, a->hd, qv, 0, nb, s);
        else
            for (int64_t i = 0; i < nb; i++) s[i] = a->kt->dot_f32(qv, kh + ((b0 + i) % a->cap) * a->hd, a->hd);
        const float bm = block_scores(s, nb, a->scale, a->softcap);
        if (bm > m || isnan(bm)) {
            /* New running max: rescale what was accumulated so far. */
            const float f = m == -INFINITY ? 0.0f : q8_exp_neg(m - bm);
            for (int64_t d = 0; d < a->hd; d++) o[d] *= f;
            l *= f;
            m = bm;
        }
        block_exp(s, m, nb, e);
        for (int64_t i = 0; i < nb; i++) l += e[i];
        block_values(e, vh, b0, nb, a->cap, a->hd, o);
    }
    float *out = a->out + (j * a->n_heads + h) * a->hd;
    const float inv = (float)(1.0 / l);
    for (int64_t d = 0; d < a->hd; d++) out[d] = o[d] * inv;
}

static void attn_task(void *ctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    const attn_job *a = ctx;
    for (int64_t it = begin; it < end; it++) attend_one(a, it / a->n_heads, it % a->n_heads);
}

int q8_attention(const float *q, int64_t t, int64_t pos0, const float *k, const float *v,
                 int64_t n_heads, int64_t n_kv, int64_t cap, int64_t head_dim, int64_t window,
                 float scale, float softcap, float *out) {
    Q8_CHECK(q && k && v && out && t > 0 && pos0 >= 0 && pos0 <= Q8_MAX_DIM);
    Q8_CHECK(q8_mat_ok(t, n_heads) && q8_mat_ok(t * n_heads, head_dim));
    Q8_CHECK(q8_mat_ok(n_kv, cap) && q8_mat_ok(n_kv * cap, head_dim));
    Q8_CHECK(head_dim <= MAX_HEAD_DIM && n_heads % n_kv == 0 && window >= 0);
    Q8_CHECK(isfinite(scale) && softcap >= 0.0f && isfinite(softcap));
    /* Every position a query reads must still be in the cache after the t writes. */
    const int64_t last = pos0 + t - 1;
    const int64_t lo0 = window > 0 && pos0 - window + 1 > 0 ? pos0 - window + 1 : 0;
    Q8_CHECK(last < cap || lo0 >= last - cap + 1);
    attn_job a = {q8_kernels_get(), q, k, v, out, pos0, n_heads, n_heads / n_kv, cap, head_dim,
                  window, scale, softcap};
    return q8_parallel_for(t * n_heads, 1, attn_task, &a);
}
