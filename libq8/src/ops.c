/* Element-wise and per-row operations of a layer. They touch O(hidden) floats per token, so
 * they run on the caller's thread; reductions accumulate in double so the result is close to
 * the exact one whatever the reference's summation order. */
#include <math.h>

#include "fastmath.h"
#include "q8_internal.h"

#define SQRT_2_OVER_PI 0.7978845608028654f

static int rows_ok(int64_t rows, int64_t n) { return q8_mat_ok(rows, n); }

int q8_layernorm(const float *x, const float *gamma, const float *beta, int64_t rows,
                 int64_t n, float eps, float *y) {
    Q8_CHECK(x && gamma && beta && y && rows_ok(rows, n) && eps >= 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += xr[i];
        const double mean = sum / (double)n;
        double var = 0.0;
        for (int64_t i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const float inv = (float)(1.0 / sqrt(var / (double)n + (double)eps));
        const float m = (float)mean;
        for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - m) * inv * gamma[i] + beta[i];
    }
    return Q8_OK;
}

int q8_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float offset,
               float *y) {
    Q8_CHECK(x && w && y && rows_ok(rows, n) && eps >= 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * inv * (offset + w[i]);
    }
    return Q8_OK;
}

static inline float gelu_tanh1(float v) {
    return 0.5f * v * (1.0f + q8_tanh(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)));
}

int q8_gelu_tanh(const float *x, int64_t n, float *y) {
    Q8_CHECK(x && y && rows_ok(1, n));
    for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh1(x[i]);
    return Q8_OK;
}

int q8_geglu(const float *gate, const float *up, int64_t n, float *y) {
    Q8_CHECK(gate && up && y && rows_ok(1, n));
    for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh1(gate[i]) * up[i];
    return Q8_OK;
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
