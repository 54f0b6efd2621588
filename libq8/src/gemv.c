/* Threaded drivers for the weight passes: GEMV (decode), GEMM (prefill), and the tiled
 * vocabulary projection with its fused argmax. The arithmetic lives in the kernel tables;
 * here we only check arguments, quantize the activations once, and cut rows into chunks. */
#include <math.h>
#include <stdlib.h>

#include "q8_internal.h"

#define ROW_ALIGN 4        /* f32 row kernels work 4 rows at a time */
#define LMHEAD_TILE 256    /* vocabulary rows per tile: 1 KiB of logits, stays in L1 */

typedef struct {
    const q8_kernels *kt;
    const q8x16 *w;     /* packed Q8_0 weights, or NULL: */
    const q4x16 *w4;    /* packed Q4_0 weights, or NULL for f32 */
    const float *wf;    /* f32 weights */
    int64_t n, k, nb, t;
    const q8_act *xa;   /* prepared activations, t x nb */
    const float *x;     /* f32 activations, t x k */
    const float *bias;
    float *y; /* t x n */
} mat_job;

static void add_bias(const mat_job *j, int64_t r0, int64_t r1) {
    if (!j->bias) return;
    for (int64_t tt = 0; tt < j->t; tt++) {
        float *y = j->y + tt * j->n;
        for (int64_t r = r0; r < r1; r++) y[r] += j->bias[r];
    }
}

static void q8_task(void *ctx, int64_t p0, int64_t p1, int worker) {
    (void)worker;
    const mat_job *j = ctx;
    if (j->w4) j->kt->q4_panel_run(j->w4, j->nb, j->xa, j->t, p0, p1, j->n, j->y, j->n);
    else j->kt->panel_run(j->w, j->nb, j->xa, j->t, p0, p1, j->n, j->y, j->n);
    add_bias(j, p0 * PANEL, p1 * PANEL < j->n ? p1 * PANEL : j->n);
}

static void f32_task(void *ctx, int64_t r0, int64_t r1, int worker) {
    (void)worker;
    const mat_job *j = ctx;
    if (j->t == 1) j->kt->f32_rows(j->wf, j->k, j->x, r0, r1, j->y);
    else j->kt->f32_tile(j->wf, j->k, j->x, j->t, r0, r1, j->y, j->n);
    add_bias(j, r0, r1);
}

/* The activations of one call, quantized and prepared once for every thread: small ones (the
 * decode path) on the stack, big ones on the heap, spread over the pool when there are many. */
typedef struct {
    const q8_kernels *kt;
    const float *x;
    q8_block *xq; /* scratch: one quantized row per token */
    q8_act *xa;
    int64_t k, nb;
} prep_job;

static void prep_task(void *ctx, int64_t j0, int64_t j1, int worker) {
    (void)worker;
    const prep_job *p = ctx;
    for (int64_t j = j0; j < j1; j++) {
        p->kt->quantize_row(p->x + j * p->k, p->xq + j * p->nb, p->k);
        q8_act_prep(p->xq + j * p->nb, p->nb, p->xa + j * p->nb);
    }
}

#define STACK_BLOCKS 256          /* K up to 8192 for one token without a malloc */
#define PREP_SERIAL_BLOCKS 2048   /* below this a pool hand-off costs more than it saves */

typedef struct {
    q8_block q[STACK_BLOCKS];
    q8_act a[STACK_BLOCKS];
} act_stack;

/* Returns the prepared activations (st->a or a heap block the caller frees), NULL when out
 * of memory. */
static q8_act *prepare_acts(const q8_kernels *kt, const float *x, int64_t t, int64_t k,
                            act_stack *st) {
    const int64_t nb = k / QK, total = t * nb;
    const int small = total <= STACK_BLOCKS;
    q8_block *xq = small ? st->q : malloc((size_t)total * sizeof(q8_block));
    q8_act *xa = small ? st->a : aligned_alloc(64, ((size_t)total * sizeof(q8_act) + 63) / 64 * 64);
    if (!xq || !xa) {
        if (!small) {
            free(xq);
            free(xa);
        }
        return NULL;
    }
    prep_job p = {kt, x, xq, xa, k, nb};
    int rc = Q8_OK;
    if (total <= PREP_SERIAL_BLOCKS) prep_task(&p, 0, t, 0);
    else rc = q8_parallel_for(t, 1, prep_task, &p);
    if (!small) free(xq);
    if (rc != Q8_OK && !small) free(xa);
    return rc == Q8_OK ? xa : NULL;
}

static int q8_matmul(const q8x16 *w, const q4x16 *w4, int64_t n, int64_t k, const float *x,
                     int64_t t, const float *bias, float *y) {
    Q8_CHECK((w || w4) && x && y && q8_mat_ok(n, k) && q8_mat_ok(t, k) && q8_mat_ok(t, n));
    Q8_CHECK(k % QK == 0);
    const q8_kernels *kt = q8_kernels_get();
    act_stack st;
    q8_act *xa = prepare_acts(kt, x, t, k, &st);
    if (!xa) return Q8_ENOMEM;
    mat_job j = {kt, w, w4, NULL, n, k, k / QK, t, xa, NULL, bias, y};
    const int rc = q8_parallel_for((n + PANEL - 1) / PANEL, 1, q8_task, &j);
    if (xa != st.a) free(xa);
    return rc;
}

/* q8_matmul checks the weights: exactly one of w (Q8_0) and w4 (Q4_0) is passed. */
int q8_gemv(const q8x16 *w, int64_t n, int64_t k, const float *x, const float *bias, float *y) {
    return q8_matmul(w, NULL, n, k, x, 1, bias, y);
}

int q8_gemm(const q8x16 *w, int64_t n, int64_t k, const float *x, int64_t t, const float *bias, float *y) {
    return q8_matmul(w, NULL, n, k, x, t, bias, y);
}

int q8_q4_gemv(const q4x16 *w, int64_t n, int64_t k, const float *x, const float *bias, float *y) {
    return q8_matmul(NULL, w, n, k, x, 1, bias, y);
}

int q8_q4_gemm(const q4x16 *w, int64_t n, int64_t k, const float *x, int64_t t, const float *bias, float *y) {
    return q8_matmul(NULL, w, n, k, x, t, bias, y);
}

static int f32_matmul(const float *w, int64_t n, int64_t k, const float *x, int64_t t,
                      const float *bias, float *y) {
    Q8_CHECK(w && x && y && q8_mat_ok(n, k) && q8_mat_ok(t, k) && q8_mat_ok(t, n));
    mat_job j = {q8_kernels_get(), NULL, NULL, w, n, k, 0, t, NULL, x, bias, y};
    return q8_parallel_for(n, ROW_ALIGN, f32_task, &j);
}

int q8_gemv_f32(const float *w, int64_t n, int64_t k, const float *x, const float *bias,
                float *y) {
    return f32_matmul(w, n, k, x, 1, bias, y);
}

int q8_gemm_f32(const float *w, int64_t n, int64_t k, const float *x, int64_t t,
                const float *bias, float *y) {
    return f32_matmul(w, n, k, x, t, bias, y);
}

/* ---- vocabulary projection ------------------------------------------------------------- */
typedef struct {
    float value;
    int64_t index; /* -1: this worker saw nothing */
} best_t;

/* Total order for the argmax: NaN above everything, then larger value, then lower index. */
static int better(float v, int64_t i, best_t b) {
    if (b.index < 0) return 1;
    const int vn = isnan(v), bn = isnan(b.value);
    if (vn != bn) return vn;
    if (!vn && v != b.value) return v > b.value;
    return i < b.index;
}

typedef struct {
    mat_job m;
    best_t best[Q8_MAX_THREADS];
} lm_job;

/* One tile of the vocabulary: rows [r0, r1) into tile[0 ..). Q8 tiles are whole panels. */
static void lm_tile(const mat_job *m, int64_t r0, int64_t r1, float *tile) {
    if (m->w4) m->kt->q4_panel_run(m->w4 + r0 / PANEL * m->nb, m->nb, m->xa, 1, 0,
                                   (r1 - r0 + PANEL - 1) / PANEL, m->n - r0, tile, 0);
    else if (m->w) m->kt->panel_run(m->w + r0 / PANEL * m->nb, m->nb, m->xa, 1, 0, (r1 - r0 + PANEL - 1) / PANEL,
                               m->n - r0, tile, 0);
    else m->kt->f32_rows(m->wf + r0 * m->k, m->k, m->x, 0, r1 - r0, tile);
}

static void lm_task(void *ctx, int64_t r0, int64_t r1, int worker) {
    (void)worker;
    const mat_job *m = ctx;
    for (int64_t t0 = r0; t0 < r1; t0 += LMHEAD_TILE) {
        const int64_t t1 = t0 + LMHEAD_TILE < r1 ? t0 + LMHEAD_TILE : r1;
        lm_tile(m, t0, t1, m->y + t0);
    }
}

static void argmax_task(void *ctx, int64_t r0, int64_t r1, int worker) {
    lm_job *j = ctx;
    float tile[LMHEAD_TILE];
    best_t b = j->best[worker];
    for (int64_t t0 = r0; t0 < r1; t0 += LMHEAD_TILE) {
        const int64_t t1 = t0 + LMHEAD_TILE < r1 ? t0 + LMHEAD_TILE : r1;
        lm_tile(&j->m, t0, t1, tile);
        for (int64_t r = t0; r < t1; r++)
            if (better(tile[r - t0], r, b)) b = (best_t){tile[r - t0], r};
    }
    j->best[worker] = b;
}

static int lmhead_common(const q8x16 *w, const q4x16 *w4, const float *wf, int64_t n, int64_t k,
                         const float *x, float *y, int64_t *index, float *value) {
    Q8_CHECK((w || w4 || wf) && x && q8_mat_ok(n, k) && (y || (index && value)));
    Q8_CHECK(wf || k % QK == 0);
    const q8_kernels *kt = q8_kernels_get();
    act_stack st;
    q8_act *xa = NULL;
    if (!wf && !(xa = prepare_acts(kt, x, 1, k, &st))) return Q8_ENOMEM;
    lm_job *j = malloc(sizeof *j);
    if (!j) {
        if (xa != st.a) free(xa);
        return Q8_ENOMEM;
    }
    j->m = (mat_job){kt, w, w4, wf, n, k, k / QK, 1, xa, x, NULL, y};
    for (int i = 0; i < Q8_MAX_THREADS; i++) j->best[i] = (best_t){0.0f, -1};
    /* Tiles start at multiples of LMHEAD_TILE (a whole number of panels); the last may be
     * short, and its rows past n are never written. */
    int rc = q8_parallel_for(n, LMHEAD_TILE, y ? lm_task : argmax_task, j);
    if (rc == Q8_OK && !y) {
        best_t b = {0.0f, -1};
        for (int i = 0; i < Q8_MAX_THREADS; i++)
            if (j->best[i].index >= 0 && better(j->best[i].value, j->best[i].index, b))
                b = j->best[i];
        *index = b.index;
        *value = b.value;
    }
    free(j);
    if (xa && xa != st.a) free(xa);
    return rc;
}

/* lmhead_common checks the weights (exactly one of w, w4, wf is passed) and the outputs (y, or
 * index and value for the argmax). */
int q8_lmhead(const q8x16 *w, int64_t n, int64_t k, const float *x, float *y) {
    return lmhead_common(w, NULL, NULL, n, k, x, y, NULL, NULL);
}

int q8_lmhead_f32(const float *w, int64_t n, int64_t k, const float *x, float *y) {
    return lmhead_common(NULL, NULL, w, n, k, x, y, NULL, NULL);
}

int q8_q4_lmhead(const q4x16 *w, int64_t n, int64_t k, const float *x, float *y) {
    return lmhead_common(NULL, w, NULL, n, k, x, y, NULL, NULL);
}

int q8_lmhead_argmax(const q8x16 *w, int64_t n, int64_t k, const float *x, int64_t *index, float *value) {
    return lmhead_common(w, NULL, NULL, n, k, x, NULL, index, value);
}

int q8_lmhead_argmax_f32(const float *w, int64_t n, int64_t k, const float *x, int64_t *index, float *value) {
    return lmhead_common(NULL, NULL, w, n, k, x, NULL, index, value);
}

int q8_q4_lmhead_argmax(const q4x16 *w, int64_t n, int64_t k, const float *x, int64_t *index, float *value) {
    return lmhead_common(NULL, w, NULL, n, k, x, NULL, index, value);
}
