/* Exhaustive accuracy check of libq8's q8_tanh (src/fastmath.h) against double tanh: every
 * non-negative float (the function is odd). Prints the worst error in ulps of the result.
 *   cc -O2 -ffp-contract=off -Ilibq8/src tools/check_tanh.c -lm -o /tmp/check_tanh && /tmp/check_tanh */
#include <stdio.h>

#include "fastmath.h"

int main(void) {
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
