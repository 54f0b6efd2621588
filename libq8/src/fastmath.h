/* tanh for the activations and softcaps: glibc's tanhf is a scalar call (~20 ns), and GELU/GeGLU
 * evaluate it for every FFN element of every token (Gemma 3 1B: 180k per decode step). This one
 * is branch-free float arithmetic that the compiler vectorizes; with -ffp-contract=off it rounds
 * the same on every machine, so results stay identical across kernel paths. Error: at most 1.34
 * ulp over every float (tools/check_fastmath.c checks all 2^31 non-negative floats). */
#ifndef Q8_FASTMATH_H
#define Q8_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^c = 2^k p: c = k ln2 + r, |r| <= ln2 / 2, p = e^r by its degree-7 Taylor polynomial
 * (truncation < 6e-9 relative). Returns p and stores k (an integer in a float). */
static inline float q8_exp_reduce(float c, float *k_out) {
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float k = (c * 1.44269504f + round_magic) - round_magic;
    const float r = (c - k * 0.693145752f) - k * 1.42860677e-06f; /* ln2 split hi + lo */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    *k_out = k;
    return p;
}

/* 2^k as a float, for -126 <= k <= 127, by building the exponent bits. */
static inline float q8_pow2i(int32_t k) {
    const int32_t bits = (k + 127) * (1 << 23);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* e^y for 0 <= y <= 24. */
static inline float q8_exp_pos(float y) {
    float k;
    const float p = q8_exp_reduce(y, &k);
    return p * q8_pow2i((int32_t)k);
}

/* e^y for y <= 0 (a softmax's exp(s - max)): the same reduction and polynomial, with 2^k applied
 * in two halves so results down in the subnormals round once, as a correctly rounded exp would.
 * Below -104 the result is 0 (true value under half the least subnormal); NaN stays NaN. Error: at
 * most 1.5 ulp for every float in [-104, 0] (tools/check_fastmath.c checks them all). */
static inline float q8_exp_neg(float y) {
    const float c = y > -104.0f ? y : -104.0f; /* selects, not fmaxf: they vectorize */
    float k;
    const float p = q8_exp_reduce(c, &k);
    const int32_t k1 = (int32_t)k / 2, k2 = (int32_t)k - k1; /* each >= -75: 2^k1, 2^k2 normal */
    const float e = (p * q8_pow2i(k1)) * q8_pow2i(k2);
    return y != y ? y : (y > -104.0f ? e : 0.0f);
}

/* |x| < 0.625: x + x^3 c(x^2), c a least-squares fit of (tanh x - x) / x^3 (relative weights);
 * otherwise 1 - 2 / (e^2|x| + 1) with the sign of x (2|x| clamped at 24, where it is 1.0f). */
static inline float q8_tanh(float x) {
    const float ax = fabsf(x);
    const float u = x * x;
    float c = -8.034644998e-04f;
    c = c * u + 3.229211317e-03f;
    c = c * u + -8.751766756e-03f;
    c = c * u + 2.185015380e-02f;
    c = c * u + -5.396643281e-02f;
    c = c * u + 1.333332509e-01f;
    c = c * u + -3.333333433e-01f;
    const float small = x + x * u * c;
    const float y = 2.0f * ax;
    const float e = q8_exp_pos(y < 24.0f ? y : 24.0f); /* a select, not fminf: it vectorizes */
    const float big = copysignf(1.0f - 2.0f / (e + 1.0f), x);
    const float t = ax < 0.625f ? small : big;
    return x != x ? x : t; /* NaN stays NaN (the clamp above sent it to 24) */
}

#endif
