/* Weight memory and the read-bandwidth probe that every speed figure is compared with.
 *
 * Large buffers are 2 MiB aligned and advised for transparent huge pages: a GEMV streams
 * megabytes per call, and with 4 KiB pages the TLB misses cost a visible share of bandwidth. */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "q8_internal.h"

#define HUGE_PAGE ((size_t)2 << 20)

void *q8_alloc(size_t bytes) {
    if (bytes == 0 || bytes > ((size_t)1 << 46)) return NULL;
    const size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : 64;
    const size_t rounded = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE) madvise(p, rounded, MADV_HUGEPAGE); /* advisory: failure is fine */
#endif
    return p;
}

void q8_free(void *p) { free(p); }

typedef struct {
    const unsigned char *buf;
    volatile uint64_t sink[Q8_MAX_THREADS]; /* per worker, so the reads cannot be optimized away */
} probe_job;

#define PROBE_CHUNK ((int64_t)1 << 20)

static void probe_task(void *ctx, int64_t begin, int64_t end, int worker) {
    probe_job *j = ctx;
    const unsigned char *p = j->buf + begin;
    const int64_t n = end - begin;
#if defined(__x86_64__)
    /* Four independent 16-byte accumulators: enough loads in flight to saturate a core. */
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm_add_epi64(a0, _mm_load_si128((const __m128i *)(p + i)));
        a1 = _mm_add_epi64(a1, _mm_load_si128((const __m128i *)(p + i + 16)));
        a2 = _mm_add_epi64(a2, _mm_load_si128((const __m128i *)(p + i + 32)));
        a3 = _mm_add_epi64(a3, _mm_load_si128((const __m128i *)(p + i + 48)));
    }
    const __m128i s = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
    j->sink[worker] += (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
#else
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const uint64_t *q = (const uint64_t *)p;
    for (int64_t i = 0; i + 4 <= n / 8; i += 4) {
        s0 += q[i];
        s1 += q[i + 1];
        s2 += q[i + 2];
        s3 += q[i + 3];
    }
    j->sink[worker] += s0 + s1 + s2 + s3;
#endif
}

double q8_read_pass(const void *buf, size_t bytes) {
    if (!buf || (uintptr_t)buf % 64 != 0 || bytes < (size_t)PROBE_CHUNK || bytes > ((size_t)1 << 46))
        return -1.0;
    bytes -= bytes % (size_t)PROBE_CHUNK;
    probe_job *j = calloc(1, sizeof *j);
    if (!j) return -1.0;
    j->buf = buf;
    const int64_t t0 = q8_now_ns();
    const int rc = q8_parallel_for((int64_t)bytes, PROBE_CHUNK, probe_task, j);
    const double gbs = rc == Q8_OK ? (double)bytes / (double)(q8_now_ns() - t0) : -1.0;
    free(j);
    return gbs;
}

double q8_probe_read_bandwidth(size_t bytes, int reps) {
    if (bytes < (size_t)PROBE_CHUNK || reps <= 0 || bytes > ((size_t)1 << 46)) return -1.0;
    unsigned char *buf = q8_alloc(bytes);
    if (!buf) return -1.0;
    for (size_t i = 0; i < bytes; i += 4096) buf[i] = (unsigned char)i; /* fault pages in */
    double best = 0.0;
    for (int r = 0; r < reps + 1 && best >= 0.0; r++) {
        const double gbs = q8_read_pass(buf, bytes);
        if (gbs < 0.0) best = -1.0;
        else if (r > 0 && gbs > best) best = gbs; /* pass 0 warms the pool and the TLB */
    }
    q8_free(buf);
    return best;
}
