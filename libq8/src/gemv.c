/* Threaded drivers for the weight passes: GEMV (decode), GEMM (prefill), and the tiled
 * vocabulary projection with its fused argmax. The arithmetic lives in the kernel tables;
 * here we only check arguments, quantize the activations once, and cut rows into chunks. */
#include <math.h>
#include <stdlib.h>

#include "q8_internal.h"

#define ROW_ALIGN 4        /* row kernels work 4 rows at a time */
#define LMHEAD_TILE 256    /* vocabulary rows per tile: 1 KiB of logits, stays in L1 */

typedef struct {
    const q8_kernels *kt;
    const q8_block *w;  /* Q8_0 weights, or NULL for f32 */
    const float *wf;    /* f32 weights */
    int64_t n, k, nb, t;
    const q8_block *xq; /* quantized activations, t x nb */
    const void *table;  /* the tile kernels' prepared activations, or NULL */
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

static void q8_task(void *ctx, int64_t r0, int64_t r1, int worker) {
    (void)worker;
    const mat_job *j = ctx;
    if (j->table) j->kt->tile_run(j->w, j->nb, j->table, j->t, r0, r1, j->y, j->n);
    else if (j->t == 1) j->kt->q8_rows(j->w, j->nb, j->xq, r0, r1, j->y);
    else j->kt->q8_tile(j->w, j->nb, j->xq, j->t, r0, r1, j->y, j->n);
    add_bias(j, r0, r1);
}

static void f32_task(void *ctx, int64_t r0, int64_t r1, int worker) {
    (void)worker;
    const mat_job *j = ctx;
    if (j->t == 1) j->kt->f32_rows(j->wf, j->k, j->x, r0, r1, j->y);
    else j->kt->f32_tile(j->wf, j->k, j->x, j->t, r0, r1, j->y, j->n);
    add_bias(j, r0, r1);
}

/* Quantize t activation rows; small ones on the stack (the decode path), big ones on the heap. */
#define STACK_BLOCKS 512
static q8_block *quantize_acts(const q8_kernels *kt, const float *x, int64_t t, int64_t k,
                               q8_block *stack) {
    const int64_t nb = k / QK;
    q8_block *xq = t * nb <= STACK_BLOCKS ? stack : malloc((size_t)(t * nb) * sizeof(q8_block));
    if (!xq) return NULL;
    for (int64_t i = 0; i < t; i++) kt->quantize_row(x + i * k, xq + i * nb, k);
    return xq;
}

/* Batched activations for the tile kernels: each token quantized and prepared once per call
 * (not once per row chunk), spread over the pool when there is enough of it. */
typedef struct {
    const q8_kernels *kt;
    const float *x;
    q8_block *xq;
    void *table;
    int64_t k, nb, t;
} prep_job;

static void prep_task(void *ctx, int64_t j0, int64_t j1, int worker) {
    (void)worker;
    const prep_job *p = ctx;
    for (int64_t j = j0; j < j1; j++) {
        p->kt->quantize_row(p->x + j * p->k, p->xq + j * p->nb, p->k);
        p->kt->tile_prep(p->xq + j * p->nb, p->nb, p->t, j, p->table);
    }
}

#define PREP_SERIAL_BLOCKS 2048 /* below this a pool hand-off costs more than it saves */

static int q8_matmul(const q8_block *w, int64_t n, int64_t k, const float *x, int64_t t,
                     const float *bias, float *y) {
    Q8_CHECK(w && x && y && q8_mat_ok(n, k) && q8_mat_ok(t, k) && q8_mat_ok(t, n));
    Q8_CHECK(k % QK == 0);
    const q8_kernels *kt = q8_kernels_get();
    const int64_t nb = k / QK;
    q8_block stack[STACK_BLOCKS];
    void *table = NULL;
    q8_block *xq;
    /* Also at t = 1 (decode): the tile kernel's 4-row stretches with in-order prefetch
     * streamed 3-25% faster from DRAM than the one-row kernel at 2 threads (PERF_NOTES). */
    if (kt->tile_prep) {
        xq = t * nb <= STACK_BLOCKS ? stack : malloc((size_t)(t * nb) * sizeof(q8_block));
        table = xq ? aligned_alloc(64, (size_t)kt->tile_table_bytes(nb, t)) : NULL;
        if (!table) {
            if (xq != stack) free(xq);
            return Q8_ENOMEM;
        }
        prep_job p = {kt, x, xq, table, k, nb, t};
        if (t * nb <= PREP_SERIAL_BLOCKS) prep_task(&p, 0, t, 0);
        else q8_parallel_for(t, 1, prep_task, &p);
    } else {
        xq = quantize_acts(kt, x, t, k, stack);
        if (!xq) return Q8_ENOMEM;
    }
    mat_job j = {kt, w, NULL, n, k, nb, t, xq, table, NULL, bias, y};
    const int rc = q8_parallel_for(n, ROW_ALIGN, q8_task, &j);
    free(table);
    if (xq != stack) free(xq);
    return rc;
}

int q8_gemv(const q8_block *w, int64_t n, int64_t k, const float *x, const float *bias,
            float *y) {
    return q8_matmul(w, n, k, x, 1, bias, y);
}

int q8_gemm(const q8_block *w, int64_t n, int64_t k, const float *x, int64_t t,
            const float *bias, float *y) {
    return q8_matmul(w, n, k, x, t, bias, y);
}

static int f32_matmul(const float *w, int64_t n, int64_t k, const float *x, int64_t t,
                      const float *bias, float *y) {
    Q8_CHECK(w && x && y && q8_mat_ok(n, k) && q8_mat_ok(t, k) && q8_mat_ok(t, n));
    mat_job j = {q8_kernels_get(), NULL, w, n, k, 0, t, NULL, NULL, x, bias, y};
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

#define MAX_WORKERS 256
typedef struct {
    mat_job m;
    best_t best[MAX_WORKERS];
} lm_job;

static void lm_tile(const mat_job *m, int64_t r0, int64_t r1, float *tile) {
    /* Rows r0..r1 of W seen as a matrix of their own, so tile[0] is row r0. */
    if (m->w && m->table) m->kt->tile_run(m->w + r0 * m->nb, m->nb, m->table, 1, 0, r1 - r0, tile, 0);
    else if (m->w) m->kt->q8_rows(m->w + r0 * m->nb, m->nb, m->xq, 0, r1 - r0, tile);
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

static int lmhead_common(const q8_block *w, const float *wf, int64_t n, int64_t k,
                         const float *x, float *y, int64_t *index, float *value) {
    Q8_CHECK((w || wf) && x && q8_mat_ok(n, k) && (y || (index && value)));
    Q8_CHECK(!w || k % QK == 0);
    const q8_kernels *kt = q8_kernels_get();
    q8_block stack[STACK_BLOCKS];
    q8_block *xq = NULL;
    if (w && !(xq = quantize_acts(kt, x, 1, k, stack))) return Q8_ENOMEM;
    lm_job *j = malloc(sizeof *j);
    if (!j) {
        if (xq != stack) free(xq);
        return Q8_ENOMEM;
    }
    /* The tile kernel at t = 1, as in q8_gemv (see q8_matmul). */
    void *table = xq && kt->tile_prep ? aligned_alloc(64, (size_t)kt->tile_table_bytes(k / QK, 1)) : NULL;
    if (table) kt->tile_prep(xq, k / QK, 1, 0, table);
    j->m = (mat_job){kt, w, wf, n, k, k / QK, 1, xq, table, x, NULL, y};
    for (int i = 0; i < MAX_WORKERS; i++) j->best[i] = (best_t){0.0f, -1};
    int rc = q8_parallel_for(n, LMHEAD_TILE, y ? lm_task : argmax_task, j);
    if (rc == Q8_OK && !y) {
        best_t b = {0.0f, -1};
        for (int i = 0; i < MAX_WORKERS; i++)
            if (j->best[i].index >= 0 && better(j->best[i].value, j->best[i].index, b))
                b = j->best[i];
        *index = b.index;
        *value = b.value;
    }
    free(j);
    free(table);
    if (xq && xq != stack) free(xq);
    return rc;
}

int q8_lmhead(const q8_block *w, int64_t n, int64_t k, const float *x, float *y) {
    Q8_CHECK(w && y);
    return lmhead_common(w, NULL, n, k, x, y, NULL, NULL);
}

int q8_lmhead_f32(const float *w, int64_t n, int64_t k, const float *x, float *y) {
    Q8_CHECK(w && y);
    return lmhead_common(NULL, w, n, k, x, y, NULL, NULL);
}

int q8_lmhead_argmax(const q8_block *w, int64_t n, int64_t k, const float *x,
                     int64_t *index, float *value) {
    Q8_CHECK(w && index && value);
    return lmhead_common(w, NULL, n, k, x, NULL, index, value);
}

int q8_lmhead_argmax_f32(const float *w, int64_t n, int64_t k, const float *x,
                         int64_t *index, float *value) {
    Q8_CHECK(w && index && value);
    return lmhead_common(NULL, w, n, k, x, NULL, index, value);
}
