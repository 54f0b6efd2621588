/* stress_pool: the thread pool under concurrent use (make tsan).
 *
 * Four threads submit pool jobs (q8_gemv, q8_lmhead_argmax, q8_quantize, q8_quantize_packed,
 * q8_attention) at the same time, while thread 0 also resizes the pool, warms it up and shuts it
 * down between its calls, and thread 2 forks now and then while the others' jobs run: the fork
 * handlers must wait for the running job and leave the child a pool it can use (the child stays
 * single-threaded: ThreadSanitizer does not support starting threads after a multi-threaded
 * fork; the release harness test_q8 covers the child restarting its workers). The packed
 * quantizer's workers write rows of the same 16-row panels (different bytes of one q8x16).
 * Every result must equal the one computed single-threaded before the threads start. Exit status
 * is non-zero on a mismatch; ThreadSanitizer reports races on its own. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "q8.h"

#define N_THREADS 4
#define ITERS 150
#define N_CASES 4

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 0x2545f4914f6cdd1dull) >> 40) * 0x1p-23f - 1.0f;
}

/* Sizes chosen so that every thread count from 1 to 4 splits them into several chunks. */
typedef struct {
    int64_t n, k;
    q8x16 *w; /* packed, from q8_quantize_packed */
    float *wf, *x;
    float *y_want;
    int64_t arg_want;
    float argval_want;
} mat_case;

enum { A_NH = 4, A_NKV = 2, A_HD = 32, A_CAP = 64, A_T = 3, A_POS0 = 20 };

static mat_case cases[N_CASES];
static float *att_q, *att_k, *att_v, *att_want;
static q8_block *quant_want;  /* q8_quantize of cases[3] */
static q8x16 *packed_want;    /* q8_quantize_packed of cases[3]: its panels' rows come from
                               * different workers */
static _Atomic long mismatches, calls;

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void setup(void) {
    static const int64_t shapes[N_CASES][2] = {{64, 64}, {100, 96}, {300, 32}, {517, 128}};
    for (int c = 0; c < N_CASES; c++) {
        mat_case *m = &cases[c];
        m->n = shapes[c][0], m->k = shapes[c][1];
        m->wf = xmalloc((size_t)(m->n * m->k) * sizeof(float));
        m->w = xmalloc((size_t)q8_packed_count(m->n, m->k) * sizeof(q8x16));
        m->x = xmalloc((size_t)m->k * sizeof(float));
        m->y_want = xmalloc((size_t)m->n * sizeof(float));
        for (int64_t i = 0; i < m->n * m->k; i++) m->wf[i] = frand();
        for (int64_t i = 0; i < m->k; i++) m->x[i] = frand();
    }
    const int64_t kv = A_NKV * A_CAP * A_HD, qn = A_T * A_NH * A_HD;
    att_k = xmalloc(kv * sizeof(float));
    att_v = xmalloc(kv * sizeof(float));
    att_q = xmalloc(qn * sizeof(float));
    att_want = xmalloc(qn * sizeof(float));
    for (int64_t i = 0; i < kv; i++) att_k[i] = frand(), att_v[i] = frand();
    for (int64_t i = 0; i < qn; i++) att_q[i] = frand();
    quant_want = xmalloc((size_t)(cases[3].n * cases[3].k / 32) * sizeof(q8_block));
    packed_want = xmalloc((size_t)q8_packed_count(cases[3].n, cases[3].k) * sizeof(q8x16));

    /* expected results on one thread */
    int rc = q8_pool_init(1);
    for (int c = 0; c < N_CASES; c++) {
        mat_case *m = &cases[c];
        rc |= q8_quantize_packed(m->wf, Q8_DTYPE_F32, m->n, m->k, 0, m->w, m->n, 0);
        rc |= q8_gemv(m->w, m->n, m->k, m->x, NULL, m->y_want);
        rc |= q8_lmhead_argmax(m->w, m->n, m->k, m->x, &m->arg_want, &m->argval_want);
    }
    rc |= q8_quantize(cases[3].wf, Q8_DTYPE_F32, cases[3].n, cases[3].k, quant_want);
    memcpy(packed_want, cases[3].w, (size_t)q8_packed_count(cases[3].n, cases[3].k) * sizeof(q8x16));
    rc |= q8_attention(att_q, A_T, A_POS0, att_k, att_v, A_NH, A_NKV, A_CAP, A_HD, 0, 0.17f, 0.0f,
                       att_want);
    if (rc != Q8_OK) {
        fprintf(stderr, "setup failed\n");
        exit(2);
    }
}

/* Fork; the child runs a gemv through the pool and exits 0 if it matches. Returns 1 on failure. */
static int fork_and_check(const mat_case *m, float *y) {
    const pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        alarm(10); /* a deadlocked child dies of SIGALRM instead of hanging the harness */
        const int ok = q8_pool_init(1) == Q8_OK && q8_gemv(m->w, m->n, m->k, m->x, NULL, y) == Q8_OK &&
                       memcmp(y, m->y_want, (size_t)m->n * sizeof(float)) == 0;
        _exit(ok ? 0 : 3);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 1;
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void *submitter(void *arg) {
    const int id = (int)(intptr_t)arg;
    float *y = xmalloc(1024 * sizeof(float));
    float *att = xmalloc(A_T * A_NH * A_HD * sizeof(float));
    q8_block *qb = xmalloc((size_t)(cases[3].n * cases[3].k / 32) * sizeof(q8_block));
    const size_t pbytes = (size_t)q8_packed_count(cases[3].n, cases[3].k) * sizeof(q8x16);
    q8x16 *pb = xmalloc(pbytes);
    long bad = 0;
    for (int it = 0; it < ITERS; it++) {
        const mat_case *m = &cases[(id + it) % N_CASES];
        if (q8_gemv(m->w, m->n, m->k, m->x, NULL, y) != Q8_OK ||
            memcmp(y, m->y_want, (size_t)m->n * sizeof(float)) != 0)
            bad++;
        switch (it % 4) {
        case 0: {
            int64_t idx = -1;
            float val = 0.0f;
            if (q8_lmhead_argmax(m->w, m->n, m->k, m->x, &idx, &val) != Q8_OK || idx != m->arg_want ||
                memcmp(&val, &m->argval_want, sizeof val) != 0)
                bad++;
            break;
        }
        case 1:
            if (q8_attention(att_q, A_T, A_POS0, att_k, att_v, A_NH, A_NKV, A_CAP, A_HD, 0, 0.17f, 0.0f,
                             att) != Q8_OK ||
                memcmp(att, att_want, A_T * A_NH * A_HD * sizeof(float)) != 0)
                bad++;
            break;
        case 2:
            if (q8_quantize(cases[3].wf, Q8_DTYPE_F32, cases[3].n, cases[3].k, qb) != Q8_OK ||
                memcmp(qb, quant_want, (size_t)(cases[3].n * cases[3].k / 32) * sizeof(q8_block)) != 0)
                bad++;
            if (q8_quantize_packed(cases[3].wf, Q8_DTYPE_F32, cases[3].n, cases[3].k, 0, pb, cases[3].n, 0) != Q8_OK ||
                memcmp(pb, packed_want, pbytes) != 0)
                bad++;
            break;
        default:
            if (q8_pool_threads() < 1) bad++;
            break;
        }
        /* thread 0 reconfigures the pool between its own jobs, racing the others' jobs */
        if (id == 0) {
            if (it % 5 == 0 && q8_pool_init(1 + (it / 5) % N_THREADS) != Q8_OK) bad++;
            if (it % 7 == 3 && q8_pool_warmup() != Q8_OK) bad++;
            if (it % 37 == 36) q8_pool_shutdown(); /* the next job restarts it */
        } else if (id == 1 && it % 11 == 0 && q8_pool_warmup() != Q8_OK) {
            bad++;
        } else if (id == 2 && it % 30 == 15) {
            bad += fork_and_check(m, y);
        }
        atomic_fetch_add(&calls, 1);
    }
    atomic_fetch_add(&mismatches, bad);
    free(y), free(att), free(qb), free(pb);
    return NULL;
}

int main(void) {
    setup();
    q8_pool_init(3);
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        if (pthread_create(&th[i], NULL, submitter, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 2;
        }
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    q8_pool_shutdown();
    const long bad = atomic_load(&mismatches);
    printf("stress_pool: %ld rounds on %d threads, %ld mismatches\n", atomic_load(&calls), N_THREADS, bad);
    printf("%ld passed, %ld failed\n", bad ? 0L : 1L, bad ? 1L : 0L);
    for (int c = 0; c < N_CASES; c++) free(cases[c].w), free(cases[c].wf), free(cases[c].x), free(cases[c].y_want);
    free(att_q), free(att_k), free(att_v), free(att_want), free(quant_want), free(packed_want);
    return bad ? 1 : 0;
}
