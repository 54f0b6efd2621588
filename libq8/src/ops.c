/* Element-wise and per-row operations of a layer. They touch O(hidden) floats per token, so
 * they run on the caller's thread (activations over a prefill's rows excepted); reductions
 * accumulate in double so the result is close to the exact one whatever the reference's
 * summation order. Their loops are cloned per vector width (Q8_CLONES): GeGLU's tanh was ~12%
 * of a GPT-2 prefill with the baseline's SSE2. */
#include <math.h>

#include "fastmath.h"
#include "q8_internal.h"

#define SQRT_2_OVER_PI 0.7978845608028654f

static int rows_ok(int64_t rows, int64_t n) { return q8_mat_ok(rows, n); }

/* Row reductions in double over 8 independent partial sums: the cloned loops keep them in one
 * vector register (a single chain of scalar double adds was most of a 4.5 us LayerNorm of 768).
 * The order is fixed, so every clone gives the same bits. */
#define NORM_LANES 8

Q8_CLONES static double sum_f64(const float *x, int64_t n, double center, int squares) {
    double s[NORM_LANES] = {0};
    int64_t i = 0;
    if (squares) {
        for (; i + NORM_LANES <= n; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) {
                const double d = (double)x[i + l] - center;
                s[l] += d * d;
            }
        for (; i < n; i++) {
            const double d = (double)x[i] - center;
            s[i % NORM_LANES] += d * d;
        }
    } else {
        for (; i + NORM_LANES <= n; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) s[l] += (double)x[i + l];
        for (; i < n; i++) s[i % NORM_LANES] += (double)x[i];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

Q8_CLONES static void layernorm_row(const float *x, const float *gamma, const float *beta,
                                     int64_t n, float m, float inv, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * inv * gamma[i] + beta[i];
}

Q8_CLONES static void rmsnorm_row(const float *x, const float *w, int64_t n, float inv,
                                   float offset, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv * (offset + w[i]);
}

int q8_layernorm(const float *x, const float *gamma, const float *beta, int64_t rows,
                 int64_t n, float eps, float *y) {
    Q8_CHECK(x && gamma && beta && y && rows_ok(rows, n) && eps >= 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        const double mean = sum_f64(xr, n, 0.0, 0) / (double)n;
        const double var = sum_f64(xr, n, mean, 1) / (double)n;
        const float inv = (float)(1.0 / sqrt(var + (double)eps));
        layernorm_row(xr, gamma, beta, n, (float)mean, inv, y + r * n);
    }
    return Q8_OK;
}

int q8_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float offset,
               float *y) {
    Q8_CHECK(x && w && y && rows_ok(rows, n) && eps >= 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        const double ss = sum_f64(xr, n, 0.0, 1);
        const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        rmsnorm_row(xr, w, n, inv, offset, y + r * n);
    }
    return Q8_OK;
}

static inline float gelu_tanh1(float v) {
    return 0.5f * v * (1.0f + q8_tanh(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)));
}

/* Activations over a prefill's rows (hundreds of thousands of elements) are spread over the
 * pool; a decode step's few thousand stay on the caller's thread, where a pool round trip would
 * cost more than the work. Element-wise, so the split never changes a result. */
#define ACT_PARALLEL_MIN 32768
#define ACT_ALIGN 1024

typedef struct {
    const float *x;  /* gelu input, the gate values, or (fused) the gate|up rows */
    const float *up; /* geglu: the up values (NULL: plain gelu, or fused) */
    float *y;
    int64_t n;       /* fused: elements per row of y; the source rows hold 2n (gate | up) */
    int fused;       /* 1 (q8_geglu_rows): x holds rows of gate | up; 0: x and up are flat arrays */
} act_job;


Q8_CLONES static void gelu_range(const act_job *j, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) j->y[i] = gelu_tanh1(j->x[i]);
}

Q8_CLONES static void geglu_range(const act_job *j, int64_t b, int64_t e) {
    if (j->fused) {
        /* y[r, c] = gelu(src[r, c]) * src[r, n + c], src rows of 2n (the fused gate|up output) */
        for (int64_t i = b; i < e;) {  /* row by row, so the inner loop is contiguous */
            const int64_t r = i / j->n, c0 = i % j->n;
            const int64_t c1 = c0 + (e - i) < j->n ? c0 + (e - i) : j->n;
            const float *gate = j->x + r * 2 * j->n, *up = gate + j->n;
            float *y = j->y + r * j->n;
            for (int64_t c = c0; c < c1; c++) y[c] = gelu_tanh1(gate[c]) * up[c];
            i += c1 - c0;
        }
    } else {
        for (int64_t i = b; i < e; i++) j->y[i] = gelu_tanh1(j->x[i]) * j->up[i];
    }
}

static void act_task(void *ctx, int64_t begin, int64_t end, int worker) {
    (void)worker;
    const act_job *j = ctx;
    if (j->up || j->fused) geglu_range(j, begin, end);
    else gelu_range(j, begin, end);
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
    const act_job j = {x, NULL, y, n, 0};
    return run_act(&j, n);
}

int q8_geglu(const float *gate, const float *up, int64_t n, float *y) {
    Q8_CHECK(gate && up && y && rows_ok(1, n));
    const act_job j = {gate, up, y, n, 0};
    return run_act(&j, n);
}

int q8_geglu_rows(const float *gate_up, int64_t rows, int64_t n, float *y) {
    Q8_CHECK(gate_up && y && rows_ok(rows, n) && rows_ok(rows, 2 * n));
    const act_job j = {gate_up, NULL, y, n, 1};
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

int q8_rope(float *x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t *pos,
            float theta) {
    Q8_CHECK(x && pos && rows_ok(rows, n_heads) && rows_ok(rows * n_heads, head_dim));
    Q8_CHECK(head_dim % 2 == 0 && head_dim <= 1024 && theta > 0.0f);
    const int64_t half = head_dim / 2;
    float inv_freq[512];
    /* As transformers computes it in float32: 1 / theta^(2i / d). */
    for (int64_t i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
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

int q8_copy_cols(const float *x, int64_t rows, int64_t n, int64_t c0, int64_t width, float *y) {
    Q8_CHECK(x && y && q8_mat_ok(rows, n) && c0 >= 0 && width > 0 && c0 + width <= n);
    for (int64_t r = 0; r < rows; r++) memmove(y + r * width, x + r * n + c0, (size_t)width * sizeof(float));
    return Q8_OK;
}
