/* What a sampler needs from a logits vector without copying it out: the k largest entries
 * (top-k / top-p / min-p candidates) and the softmax normalizer over all of them. Both scan
 * the vector once on the caller's thread (a few hundred microseconds for 262144 entries). */
#include <math.h>

#include "q8_internal.h"

/* a ranks before b: larger value, or equal value and smaller index (a stable descending sort) */
static int before(float va, int64_t ia, float vb, int64_t ib) {
    return va > vb || (va == vb && ia < ib);
}

static void swap(int64_t *idx, float *val, int64_t a, int64_t b) {
    const float tv = val[a];
    const int64_t ti = idx[a];
    val[a] = val[b];
    idx[a] = idx[b];
    val[b] = tv;
    idx[b] = ti;
}

/* Restore the heap below slot i; the root holds the entry that ranks last. */
static void sift_down(int64_t *idx, float *val, int64_t size, int64_t i) {
    for (;;) {
        int64_t worst = i;
        const int64_t l = 2 * i + 1, r = l + 1;
        if (l < size && before(val[worst], idx[worst], val[l], idx[l])) worst = l;
        if (r < size && before(val[worst], idx[worst], val[r], idx[r])) worst = r;
        if (worst == i) return;
        swap(idx, val, i, worst);
        i = worst;
    }
}

static void sift_up(int64_t *idx, float *val, int64_t i) {
    while (i > 0) {
        const int64_t parent = (i - 1) / 2;
        if (!before(val[parent], idx[parent], val[i], idx[i])) return;
        swap(idx, val, i, parent);
        i = parent;
    }
}

int q8_topk(const float *x, int64_t n, int64_t k, int64_t *idx, float *val) {
    Q8_CHECK(x && idx && val && n > 0 && k > 0 && k <= n);
    int64_t size = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (!isfinite(v)) return Q8_ENONFINITE;
        if (size < k) {
            idx[size] = i;
            val[size] = v;
            sift_up(idx, val, size++);
        } else if (v > val[0]) {  /* a later index never wins a tie: the earlier one stays */
            idx[0] = i;
            val[0] = v;
            sift_down(idx, val, k, 0);
        }
    }
    /* Heap sort: move the last-ranked root to the end until the array runs best to worst. */
    for (int64_t end = k - 1; end > 0; end--) {
        swap(idx, val, 0, end);
        sift_down(idx, val, end, 0);
    }
    return Q8_OK;
}

double q8_expsum(const float *x, int64_t n, float max, float inv_temp) {
    if (!x || n <= 0 || !isfinite(max) || !(inv_temp > 0.0f) || !isfinite(inv_temp)) return -1.0;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += exp(((double)x[i] - (double)max) * (double)inv_temp);
    return sum;
}
