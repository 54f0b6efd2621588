/* KV cache writes and causal attention (decode: t = 1; prefill: t > 1).
 *
 * The arithmetic of one (query row, head): the visible positions are cut into blocks of
 * POS_BLOCK from the first one; each block gets its own softmax part (its max m, sum l of
 * exp(s - m), and the values weighted by those exps), and the parts are folded in block order
 * into the running (M, L, O), O rescaled by exp(M - M') and the part by exp(m - M'). Nothing
 * grows with the context, and the blocks are independent, so a decode step spreads them over
 * the pool (one item per query head and block, a block's query heads side by side so that its
 * keys and values stream once for all of them) and folds them afterwards, while a prefill
 * gives one item per (row, head) that folds as it goes. Both compute the same parts and fold
 * them in the same order: the bits do not depend on how many rows a call has, nor on the
 * thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastmath.h"
#include "q8_internal.h"

#define POS_BLOCK 64

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
    const q8_loops *lp; /* the element-wise loops of kt's vector width */
    const float *q, *k, *v;
    float *out;
    int64_t pos0, n_heads, group, cap, hd, window;
    float scale, softcap;
    /* Rows of several sequences (q8_attention_rows): row j is at pos[j] in the cache of slot
     * slot[j], slot_stride floats apart. NULL: every row in the one cache at pos0 + j. */
    const int64_t *slot, *pos;
    int64_t slot_stride;
} attn_job;


/* One block's softmax part for one query: its max (returned), l = sum of exp(s - max), and
 * o = the values weighted by those exps. */
static float block_part(const attn_job *a, const float *qv, const float *kh, const float *vh,
                        int64_t b0, int64_t nb, double *l, float *o) {
    float s[POS_BLOCK], e[POS_BLOCK];
    /* One row kernel call over contiguous cache rows is bitwise a dot_f32 per key. */
    const int64_t s0 = b0 % a->cap;
    if (s0 + nb <= a->cap) a->kt->f32_rows(kh + s0 * a->hd, a->hd, qv, 0, nb, s);
    else
        for (int64_t i = 0; i < nb; i++) s[i] = a->kt->dot_f32(qv, kh + ((b0 + i) % a->cap) * a->hd, a->hd);
    const float m = a->lp->block_scores(s, nb, a->scale, a->softcap);
    a->lp->block_exp(s, m, nb, e);
    double sum = 0.0;
    for (int64_t i = 0; i < nb; i++) sum += e[i];
    *l = sum;
    for (int64_t d = 0; d < a->hd; d++) o[d] = 0.0f;
    a->lp->block_values(e, vh, b0, nb, a->cap, a->hd, o);
    return m;
}

/* The running (M, L, O) of one query after the part (m, l, o) of its next block. */
static void fold(const q8_loops *lp, float *M, double *L, float *O, float m, double l, const float *o,
                 int64_t hd, int first) {
    if (first) {
        *M = m;
        *L = l;
        for (int64_t d = 0; d < hd; d++) O[d] = o[d];
        return;
    }
    const float nm = m > *M || isnan(m) ? m : *M;
    const float fa = q8_exp_neg(*M - nm), fb = q8_exp_neg(m - nm);
    *L = *L * fa + l * fb;
    lp->fold_values(O, fa, o, fb, hd);
    *M = nm;
}

static void finish(const attn_job *a, int64_t j, int64_t h, double L, const float *O) {
    float *out = a->out + (j * a->n_heads + h) * a->hd;
    const float inv = (float)(1.0 / L);
    for (int64_t d = 0; d < a->hd; d++) out[d] = O[d] * inv;
}

static int64_t first_visible(const attn_job *a, int64_t p) {
    return a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
}

/* Positions in the block that starts at b0, for a query at p. */
static int64_t block_len(int64_t p, int64_t b0) {
    return p - b0 + 1 < POS_BLOCK ? p - b0 + 1 : POS_BLOCK;
}

/* KV head kvh's keys and values in the cache that starts `base` floats in. */
static void kv_head(const attn_job *a, int64_t base, int64_t kvh, const float **kh, const float **vh) {
    *kh = a->k + base + kvh * a->cap * a->hd;
    *vh = a->v + base + kvh * a->cap * a->hd;
}

/* Row item: query row j, head h, blocks in order, folded as they come. */
static void attend_row(const attn_job *a, int64_t j, int64_t h) {
    const int64_t p = a->pos ? a->pos[j] : a->pos0 + j, lo = first_visible(a, p);
    const float *kh, *vh;
    kv_head(a, a->slot ? a->slot[j] * a->slot_stride : 0, h / a->group, &kh, &vh);
    const float *qv = a->q + (j * a->n_heads + h) * a->hd;
    float O[Q8_MAX_HEAD_DIM], o[Q8_MAX_HEAD_DIM], M = 0.0f;
    double L = 0.0;
    for (int64_t b0 = lo; b0 <= p; b0 += POS_BLOCK) {
        double l;
        const float m = block_part(a, qv, kh, vh, b0, block_len(p, b0), &l, o);
        fold(a->lp, &M, &L, O, m, l, o, a->hd, b0 == lo);
    }
    finish(a, j, h, L, O);
}

static void attn_rows_task(void *ctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    const attn_job *a = ctx;
    for (int64_t it = begin; it < end; it++) attend_row(a, it / a->n_heads, it % a->n_heads);
}

/* Decode: the parts of every (head, block), then the folds. */
typedef struct {
    const attn_job *a;
    int64_t lo, nblocks;
    float *m, *o; /* [head][block], o: head_dim per part */
    double *l;
} step_job;

/* Item it is query head g of KV head kvh's block b, it = (kvh * nblocks + b) * group + g: a
 * block's query heads are neighbours, so a thread's contiguous chunk streams the block's keys
 * and values once for all of them, and a step with few blocks (Gemma 3 1B: one KV head, 3
 * blocks at 160 positions) still has one item per query head to spread. */
static void step_parts_task(void *ctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    const step_job *sj = ctx;
    const attn_job *a = sj->a;
    const int64_t p = a->pos0;
    for (int64_t it = begin; it < end; it++) {
        const int64_t g = it % a->group, kb = it / a->group, kvh = kb / sj->nblocks, b = kb % sj->nblocks;
        const int64_t b0 = sj->lo + b * POS_BLOCK, nb = block_len(p, b0);
        const int64_t h = kvh * a->group + g, at = h * sj->nblocks + b;
        const float *kh, *vh;
        kv_head(a, 0, kvh, &kh, &vh);
        sj->m[at] = block_part(a, a->q + h * a->hd, kh, vh, b0, nb, &sj->l[at], sj->o + at * a->hd);
    }
}

static void step_fold_task(void *ctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    const step_job *sj = ctx;
    for (int64_t h = begin; h < end; h++) {
        float O[Q8_MAX_HEAD_DIM], M = 0.0f;
        double L = 0.0;
        for (int64_t b = 0; b < sj->nblocks; b++) {
            const int64_t at = h * sj->nblocks + b;
            fold(sj->a->lp, &M, &L, O, sj->m[at], sj->l[at], sj->o + at * sj->a->hd, sj->a->hd, b == 0);
        }
        finish(sj->a, 0, h, L, O);
    }
}

/* The parts of a decode step stay on the stack up to these sizes (68 KiB). */
#define STEP_STACK_PARTS 512
#define STEP_STACK_FLOATS 16384
/* Folding up to this many part floats costs about what a pool hand-off does: the caller does
 * it alone (a Gemma 3 1B step's 4 heads x 3 blocks x 256; ~1 us saved of a ~17 us call). */
#define FOLD_SERIAL_FLOATS 16384

static int attend_step(const attn_job *a) {
    const int64_t lo = first_visible(a, a->pos0);
    const int64_t nblocks = (a->pos0 - lo) / POS_BLOCK + 1;
    const int64_t parts = a->n_heads * nblocks, floats = parts * (1 + a->hd); /* m and o */
    double l_stack[STEP_STACK_PARTS];
    float f_stack[STEP_STACK_FLOATS];
    const int small = parts <= STEP_STACK_PARTS && floats <= STEP_STACK_FLOATS;
    double *l = small ? l_stack : malloc((size_t)parts * sizeof(double));
    float *f = small ? f_stack : malloc((size_t)floats * sizeof(float));
    int rc = l && f ? Q8_OK : Q8_ENOMEM;
    step_job sj = {a, lo, nblocks, f, f + parts, l};
    if (rc == Q8_OK) rc = q8_parallel_for(a->n_heads * nblocks, 1, step_parts_task, &sj);
    if (rc == Q8_OK && parts * a->hd <= FOLD_SERIAL_FLOATS) step_fold_task(&sj, 0, a->n_heads, 0);
    else if (rc == Q8_OK) rc = q8_parallel_for(a->n_heads, 1, step_fold_task, &sj);
    if (!small) {
        free(l);
        free(f);
    }
    return rc;
}

int q8_attention(const float *q, int64_t t, int64_t pos0, const float *k, const float *v,
                 int64_t n_heads, int64_t n_kv, int64_t cap, int64_t head_dim, int64_t window,
                 float scale, float softcap, float *out) {
    Q8_CHECK(q && k && v && out && t > 0 && pos0 >= 0 && pos0 <= Q8_MAX_DIM);
    Q8_CHECK(q8_mat_ok(t, n_heads) && q8_mat_ok(t * n_heads, head_dim));
    Q8_CHECK(q8_mat_ok(n_kv, cap) && q8_mat_ok(n_kv * cap, head_dim));
    Q8_CHECK(head_dim <= Q8_MAX_HEAD_DIM && n_heads % n_kv == 0 && window >= 0);
    Q8_CHECK(isfinite(scale) && softcap >= 0.0f && isfinite(softcap));
    /* Every position a query reads must still be in the cache after the t writes. */
    const int64_t last = pos0 + t - 1;
    const int64_t lo0 = window > 0 && pos0 - window + 1 > 0 ? pos0 - window + 1 : 0;
    Q8_CHECK(last < cap || lo0 >= last - cap + 1);
    const q8_kernels *kt = q8_kernels_get();
    attn_job a = {kt, q8_loops_for(kt), q, k, v, out, pos0, n_heads, n_heads / n_kv, cap, head_dim,
                  window, scale, softcap, NULL, NULL, 0};
    /* Both ways give the same bits; blocks as items pay off where query heads share a KV head
     * (Gemma: one KV head for 4 query heads, otherwise 4 items on 2 threads). */
    if (t == 1 && a.group > 1) return attend_step(&a);
    return q8_parallel_for(t * n_heads, 1, attn_rows_task, &a);
}

/* The rows' slots and positions are in range, and each query's window is still in its slot's
 * ring once every row of the call has been written: the largest position written to a slot
 * bounds what the ring still holds. */
static int rows_ok(int64_t t, const int64_t *slot, const int64_t *pos, int64_t n_slots, int64_t cap,
                   int64_t window) {
    for (int64_t j = 0; j < t; j++)
        if (slot[j] < 0 || slot[j] >= n_slots || pos[j] < 0 || pos[j] > Q8_MAX_DIM) return 0;
    for (int64_t j = 0; j < t; j++) {
        int64_t last = pos[j];
        for (int64_t r = 0; r < t; r++)
            if (slot[r] == slot[j] && pos[r] > last) last = pos[r];
        const int64_t lo = window > 0 && pos[j] - window + 1 > 0 ? pos[j] - window + 1 : 0;
        if (!(last < cap || lo >= last - cap + 1)) return 0;
    }
    return 1;
}

int q8_kv_write_rows(const float *k_new, const float *v_new, int64_t t, const int64_t *slot,
                     const int64_t *pos, float *k, float *v, int64_t n_slots, int64_t n_kv,
                     int64_t cap, int64_t head_dim) {
    Q8_CHECK(k_new && v_new && k && v && slot && pos && t > 0 && q8_mat_ok(t, n_kv));
    Q8_CHECK(q8_mat_ok(n_slots, n_kv) && q8_mat_ok(n_slots * n_kv, cap));
    Q8_CHECK(q8_mat_ok(n_slots * n_kv * cap, head_dim));
    for (int64_t j = 0; j < t; j++)
        Q8_CHECK(slot[j] >= 0 && slot[j] < n_slots && pos[j] >= 0 && pos[j] <= Q8_MAX_DIM);
    const int64_t stride = n_kv * cap * head_dim, row = n_kv * head_dim;
    for (int64_t j = 0; j < t; j++) {
        const int rc = q8_kv_write(k_new + j * row, v_new + j * row, 1, pos[j], k + slot[j] * stride,
                                   v + slot[j] * stride, n_kv, cap, head_dim);
        if (rc != Q8_OK) return rc;
    }
    return Q8_OK;
}

int q8_attention_rows(const float *q, int64_t t, const int64_t *slot, const int64_t *pos,
                      const float *k, const float *v, int64_t n_slots, int64_t n_heads,
                      int64_t n_kv, int64_t cap, int64_t head_dim, int64_t window, float scale,
                      float softcap, float *out) {
    Q8_CHECK(q && k && v && out && slot && pos && t > 0);
    Q8_CHECK(q8_mat_ok(t, n_heads) && q8_mat_ok(t * n_heads, head_dim));
    Q8_CHECK(q8_mat_ok(n_slots, n_kv) && q8_mat_ok(n_slots * n_kv, cap));
    Q8_CHECK(q8_mat_ok(n_slots * n_kv * cap, head_dim));
    Q8_CHECK(head_dim <= Q8_MAX_HEAD_DIM && n_heads % n_kv == 0 && window >= 0);
    Q8_CHECK(isfinite(scale) && softcap >= 0.0f && isfinite(softcap));
    Q8_CHECK(rows_ok(t, slot, pos, n_slots, cap, window));
    const int64_t stride = n_kv * cap * head_dim;
    if (t == 1) /* one sequence's decode step: the single-cache path (same bits, block items) */
        return q8_attention(q, 1, pos[0], k + slot[0] * stride, v + slot[0] * stride, n_heads, n_kv,
                            cap, head_dim, window, scale, softcap, out);
    const q8_kernels *kt = q8_kernels_get();
    attn_job a = {kt, q8_loops_for(kt), q, k, v, out, 0, n_heads, n_heads / n_kv, cap, head_dim,
                  window, scale, softcap, slot, pos, stride};
    return q8_parallel_for(t * n_heads, 1, attn_rows_task, &a);
}
