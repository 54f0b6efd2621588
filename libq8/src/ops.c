/* Element-wise and per-row operations of a layer. They touch O(hidden) floats per token, so
 * they run on the caller's thread (activations over a prefill's rows excepted); reductions
 * accumulate in double so the result is close to the exact one whatever the reference's
 * summation order. Their inner loops come from the active vector width's table (loops.c). */
#include <math.h>

#include "fastmath.h"
#include "q8_internal.h"

static int rows_ok(int64_t rows, int64_t n) { return q8_mat_ok(rows, n); }


int q8_layernorm(const float *x, const float *gamma, const float *beta, int64_t rows,
                 int64_t n, float eps, float *y) {
    Q8_CHECK(x && gamma && beta && y && rows_ok(rows, n) && eps >= 0.0f);
    const q8_loops *lp = q8_loops_for(q8_kernels_get());
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        const double mean = lp->sum_f64(xr, n, 0.0, 0) / (double)n;
        const double var = lp->sum_f64(xr, n, mean, 1) / (double)n;
        const float inv = (float)(1.0 / sqrt(var + (double)eps));
        lp->layernorm_row(xr, gamma, beta, n, (float)mean, inv, y + r * n);
    }
    return Q8_OK;
}

int q8_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float offset,
               float *y) {
    Q8_CHECK(x && w && y && rows_ok(rows, n) && eps >= 0.0f);
    const q8_loops *lp = q8_loops_for(q8_kernels_get());
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        const double ss = lp->sum_f64(xr, n, 0.0, 1);
        const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        lp->rmsnorm_row(xr, w, n, inv, offset, y + r * n);
    }
    return Q8_OK;
}

/* Activations over a prefill's rows (hundreds of thousands of elements) are spread over the
 * pool; a decode step's few thousand stay on the caller's thread, where a pool round trip would
 * cost more than the work. Element-wise, so the split never changes a result. */
#define ACT_PARALLEL_MIN 32768
#define ACT_ALIGN 1024

typedef struct {
    const q8_loops *lp;
    const float *x;  /* gelu input, the gate values, or (fused) the gate|up rows */
    const float *up; /* geglu: the up values (NULL: plain gelu, or fused) */
    float *y;
    int64_t n;       /* fused: elements per row of y; the source rows hold 2n (gate | up) */
    int fused;       /* 1 (q8_geglu_rows, q8_swiglu_rows): x holds rows of gate | up; 0: x and up are flat arrays */
    int silu;        /* fused: SwiGLU (silu(gate) * up) instead of GeGLU */
} act_job;

static void act_task(void *ctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    const act_job *j = ctx;
    if (j->fused) {
        /* y[r, c] = act(src[r, c]) * src[r, n + c], src rows of 2n (the fused gate|up output) */
        for (int64_t i = begin; i < end;) { /* row by row, so the inner loop is contiguous */
            const int64_t r = i / j->n, c0 = i % j->n;
            const int64_t c1 = c0 + (end - i) < j->n ? c0 + (end - i) : j->n;
            const float *gate = j->x + r * 2 * j->n;
            (j->silu ? j->lp->swiglu : j->lp->geglu)(gate + c0, gate + j->n + c0, c1 - c0, j->y + r * j->n + c0);
            i += c1 - c0;
        }
    } else if (j->up) {
        j->lp->geglu(j->x + begin, j->up + begin, end - begin, j->y + begin);
    } else {
        j->lp->gelu(j->x + begin, end - begin, j->y + begin);
    }
}

static int run_act(const act_job *j, int64_t total) {
    if (total < ACT_PARALLEL_MIN) {
        act_task((void *)j, 0, total, 0);
        return Q8_OK;
    }
    return q8_parallel_for(total, ACT_ALIGN, act_task, (void *)j);
}

int q8_gelu_tanh(const float *x, int64_t n, float *y) {
    Q8_CHECK(x && y && rows_ok(1, n));
    const act_job j = {q8_loops_for(q8_kernels_get()), x, NULL, y, n, 0, 0};
    return run_act(&j, n);
}

int q8_geglu(const float *gate, const float *up, int64_t n, float *y) {
    Q8_CHECK(gate && up && y && rows_ok(1, n));
    const act_job j = {q8_loops_for(q8_kernels_get()), gate, up, y, n, 0, 0};
    return run_act(&j, n);
}

int q8_geglu_rows(const float *gate_up, int64_t rows, int64_t n, float *y) {
    Q8_CHECK(gate_up && y && rows_ok(rows, n) && rows_ok(rows, 2 * n));
    const act_job j = {q8_loops_for(q8_kernels_get()), gate_up, NULL, y, n, 1, 0};
    return run_act(&j, rows * n);
}

int q8_swiglu_rows(const float *gate_up, int64_t rows, int64_t n, float *y) {
    Q8_CHECK(gate_up && y && rows_ok(rows, n) && rows_ok(rows, 2 * n));
    const act_job j = {q8_loops_for(q8_kernels_get()), gate_up, NULL, y, n, 1, 1};
    return run_act(&j, rows * n);
}

int q8_add(const float *a, const float *b, int64_t n, float *y) {
    Q8_CHECK(a && b && y && rows_ok(1, n));
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return Q8_OK;
}

int q8_scale(const float *x, float s, int64_t n, float *y) {
    Q8_CHECK(x && y && rows_ok(1, n));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s;
    return Q8_OK;
}

int q8_softcap(const float *x, float cap, int64_t n, float *y) {
    Q8_CHECK(x && y && rows_ok(1, n) && cap > 0.0f && isfinite(cap));
    for (int64_t i = 0; i < n; i++) y[i] = cap * q8_tanh(x[i] / cap);
    return Q8_OK;
}

int q8_softmax(const float *x, int64_t rows, int64_t n, float *y) {
    Q8_CHECK(x && y && rows_ok(rows, n));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float m = xr[0];
        for (int64_t i = 1; i < n; i++) m = xr[i] > m || isnan(xr[i]) ? xr[i] : m;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            yr[i] = expf(xr[i] - m);
            sum += yr[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++) yr[i] *= inv;
    }
    return Q8_OK;
}

/* Rotate each head's pairs (i, i + half) of rows x n_heads x head_dim by pos[r] * inv_freq[i],
 * as transformers does in float32: the angle is one product, cos and sin of it, then
 * a c - b s and b c + a s. */
static int rope_apply(float *x, int64_t rows, int64_t n_heads, int64_t head_dim,
                      const int64_t *pos, const float *inv_freq) {
    const int64_t half = head_dim / 2;
    for (int64_t r = 0; r < rows; r++)
        Q8_CHECK(pos[r] >= 0 && pos[r] < ((int64_t)1 << 24)); /* exact as float32 */
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < half; i++) {
            const float f = (float)pos[r] * inv_freq[i];
            const float c = cosf(f), s = sinf(f);
            for (int64_t h = 0; h < n_heads; h++) {
                float *xh = x + (r * n_heads + h) * head_dim;
                const float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
    return Q8_OK;
}

static int rope_shape_ok(const float *x, const int64_t *pos, int64_t rows, int64_t n_heads,
                         int64_t head_dim) {
    return x && pos && rows_ok(rows, n_heads) && rows_ok(rows * n_heads, head_dim) &&
           head_dim % 2 == 0 && head_dim <= 1024;
}

int q8_rope(float *x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t *pos,
            float theta) {
    Q8_CHECK(rope_shape_ok(x, pos, rows, n_heads, head_dim) && theta > 0.0f);
    const int64_t half = head_dim / 2;
    float inv_freq[512];
    /* As transformers computes it in float32: 1 / theta^(2i / d). */
    for (int64_t i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
    return rope_apply(x, rows, n_heads, head_dim, pos, inv_freq);
}

int q8_rope_freq(float *x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t *pos,
                 const float *inv_freq) {
    Q8_CHECK(rope_shape_ok(x, pos, rows, n_heads, head_dim) && inv_freq);
    for (int64_t i = 0; i < head_dim / 2; i++)
        Q8_CHECK(isfinite(inv_freq[i]) && inv_freq[i] >= 0.0f);
    return rope_apply(x, rows, n_heads, head_dim, pos, inv_freq);
}

int q8_copy_cols(const float *x, int64_t rows, int64_t n, int64_t c0, int64_t width, float *y) {
    Q8_CHECK(x && y && q8_mat_ok(rows, n) && c0 >= 0 && width > 0 && c0 + width <= n);
    for (int64_t r = 0; r < rows; r++) memmove(y + r * width, x + r * n + c0, (size_t)width * sizeof(float));
    return Q8_OK;
}
