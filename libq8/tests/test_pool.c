/* test_q8, pool: the pool's restart and fork paths; aligned allocation. */
#include "harness.h"

/* ---- thread pool ------------------------------------------------------------------------------- */
typedef struct {
    q8x16 *w;
    float *x, *want;
    int64_t n, k;
} gemv_case;

static gemv_case make_case(int64_t n, int64_t k) {
    q8_block *wg = xmalloc((size_t)(n * k / QK) * sizeof(q8_block));
    random_blocks(wg, n, k / QK);
    gemv_case g = {packed(wg, n, k), xmalloc((size_t)k * sizeof(float)), xmalloc((size_t)n * sizeof(float)), n, k};
    fill_f32(g.x, k, 1.0f);
    q8_block xq[16];
    q8_quantize_row_ref(g.x, xq, k);
    for (int64_t r = 0; r < n; r++) g.want[r] = spec_dot(wg + r * (k / QK), xq, k / QK);
    free(wg);
    return g;
}

static int gemv_matches(const gemv_case *g) {
    float *y = xmalloc((size_t)g->n * sizeof(float));
    const int ok = q8_gemv(g->w, g->n, g->k, g->x, NULL, y) == Q8_OK && same_f32(y, g->want, g->n);
    free(y);
    return ok;
}

void test_pool(void) {
    group("pool");
    gemv_case g = make_case(999, 128);
    CHECK(q8_physical_cores() >= 1, "physical cores");
    CHECK(q8_pool_init(3) == Q8_OK && q8_pool_threads() == 3, "init 3");
    CHECK(q8_pool_warmup() == Q8_OK && gemv_matches(&g), "warm gemv");
    q8_pool_shutdown();
    CHECK(gemv_matches(&g), "gemv after shutdown (lazy restart)");
    CHECK(q8_pool_threads() == q8_physical_cores(), "restart size %d", q8_pool_threads());
    q8_pool_shutdown();
    CHECK(q8_pool_warmup() == Q8_OK && gemv_matches(&g), "warmup after shutdown");
    q8_pool_shutdown();
    q8_pool_shutdown(); /* twice is harmless */
    CHECK(q8_pool_init(0) == Q8_OK && q8_pool_threads() == q8_physical_cores(), "init 0");
    for (int th = 1; th <= 8; th++)
        CHECK(q8_pool_init(th) == Q8_OK && gemv_matches(&g) && q8_pool_warmup() == Q8_OK && gemv_matches(&g),
              "resize to %d", th);
    /* fork with a warm pool: the child has none of the parent's workers and must rebuild them.
     * Q8_TEST_NO_FORK=1 skips it under qemu-user, whose 7.2 release aborts when a child forked
     * from a threaded guest creates threads (a plain pthreads program does the same). */
    const char *nofork = getenv("Q8_TEST_NO_FORK");
    if (nofork && *nofork == '1') printf("skip pool/fork                  Q8_TEST_NO_FORK=1\n");
    for (int th = 1; th <= 4 && !(nofork && *nofork == '1'); th += 3) {
        q8_pool_init(th);
        q8_pool_warmup();
        CHECK(gemv_matches(&g), "parent before fork");
        fflush(NULL);
        const pid_t pid = fork();
        if (pid == 0) {
            alarm(30); /* a hang kills the child, so the parent sees a failure, not a stall */
            int ok = 1;
            for (int i = 0; i < 20; i++) ok &= gemv_matches(&g);
            ok &= q8_pool_threads() == th && q8_pool_warmup() == Q8_OK && gemv_matches(&g);
            _exit(ok ? 0 : 1);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child with %d threads: %s %d", th,
              WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        CHECK(gemv_matches(&g), "parent after fork");
    }
    free(g.w), free(g.x), free(g.want);
    group_end();
}

/* ---- memory ------------------------------------------------------------------------------------ */
void test_memory(void) {
    group("memory");
    unsigned char *small = q8_alloc(100), *big = q8_alloc((size_t)5 << 20);
    CHECK(small && (uintptr_t)small % 64 == 0, "small alignment");
    CHECK(big && (uintptr_t)big % ((size_t)2 << 20) == 0, "large alignment");
    if (small) memset(small, 1, 100);
    if (big) memset(big, 1, (size_t)5 << 20);
    q8_free(small);
    q8_free(big);
    q8_free(NULL);
    group_end();
}
