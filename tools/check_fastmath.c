/* Exhaustive accuracy checks of libq8's own transcendentals (src/fastmath.h) against double
 * precision: q8_tanh on every non-negative float (it is odd), q8_exp_neg on every float in
 * [-104, 0]. Prints the worst error of each in ulps of the result.
 *   cc -O2 -ffp-contract=off -Ilibq8/src tools/check_fastmath.c -lm -o /tmp/check_fastmath && /tmp/check_fastmath */
#include <stdio.h>

#include "fastmath.h"

/* Worst error of q8_exp_neg over [-104, 0] in ulps; results that round to a subnormal are
 * measured in ulps of the subnormal grid. -1 if a special value is wrong. */
static double check_exp(void) {
    double worst = 0.0;
    float at = 0.0f;
    for (uint32_t b = 0x80000000u; b <= 0xc2d00000u; b++) { /* -0.0 .. -104.0 */
        float x;
        memcpy(&x, &b, sizeof x);
        const double ref = exp((double)x);
        const float got = q8_exp_neg(x);
        const float r32 = (float)ref;
        const double ulp = (double)nextafterf(r32, INFINITY) - (double)r32;
        const double err = fabs((double)got - ref) / ulp;
        if (err > worst) {
            worst = err;
            at = x;
        }
    }
    if (q8_exp_neg(-INFINITY) != 0.0f || !isnan(q8_exp_neg(NAN)) || q8_exp_neg(-200.0f) != 0.0f ||
        q8_exp_neg(0.0f) != 1.0f)
        return -1.0;
    printf("q8_exp_neg: worst error %.3f ulp at x = %.9g\n", worst, (double)at);
    return worst;
}

int main(void) {
    const double exp_worst = check_exp();
    if (exp_worst < 0.0 || exp_worst > 1.5) {
        printf("q8_exp_neg: out of bounds (%.3f)\n", exp_worst);
        return 1;
    }
    double worst = 0.0;
    float at = 0.0f;
    for (uint32_t b = 0; b < 0x7f800000u; b++) {
        float x;
        memcpy(&x, &b, sizeof x);
        const double ref = tanh((double)x);
        const float got = q8_tanh(x);
        const float r32 = (float)ref;
        if (r32 == 0.0f) {
            if (got != 0.0f) {
                printf("tanh(%g) = %g, expected 0\n", (double)x, (double)got);
                return 1;
            }
            continue;
        }
        const double ulp = (double)nextafterf(r32, INFINITY) - (double)r32;
        const double err = fabs((double)got - ref) / ulp;
        if (err > worst) {
            worst = err;
            at = x;
        }
    }
    const float specials[] = {INFINITY, -INFINITY, NAN};
    if (q8_tanh(specials[0]) != 1.0f || q8_tanh(specials[1]) != -1.0f || !isnan(q8_tanh(specials[2]))) {
        printf("special values wrong\n");
        return 1;
    }
    printf("q8_tanh: worst error %.3f ulp at x = %.9g\n", worst, (double)at);
    return worst <= 1.5 ? 0 : 1;
}
