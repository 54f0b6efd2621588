/* The thread pool: one per process, created lazily, the caller thread works too.
 *
 * A job is a range cut into chunks; threads take chunks from an atomic counter, so every
 * output row has one writer and results cannot depend on the thread count. Idle workers spin
 * for a bounded time (a decode step makes dozens of calls microseconds apart, and a sleeping
 * worker costs tens of microseconds to wake), then sleep on a condition variable.
 * fork(): the prepare handler waits for the running job, the child forgets the parent's threads
 * (they do not exist there) and restarts the pool on its first job. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#include "q8_internal.h"

#define MAX_THREADS 256
#define DEFAULT_SPIN_US 2000

typedef struct {
    /* the job being run; written by the submitter before it bumps `generation` */
    q8_task_fn fn;
    void *ctx;
    int64_t total, chunk;
    int warm; /* warmup job: every worker touches its stack */
    _Atomic int64_t next;
    _Atomic int pending; /* workers that have not finished the current job */
    _Atomic uint64_t generation;
    _Atomic int stop;
    pthread_mutex_t sleep_mu;
    pthread_cond_t sleep_cv;
    int threads; /* including the caller */
    int started; /* worker threads created */
    pthread_t tid[MAX_THREADS];
    int ids[MAX_THREADS];
    long spin_ns;
} pool_t;

static pool_t P = {.sleep_mu = PTHREAD_MUTEX_INITIALIZER, .sleep_cv = PTHREAD_COND_INITIALIZER};
/* Serializes jobs and (re)configuration; held by fork's prepare handler. */
static pthread_mutex_t submit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int wanted_threads; /* 0: not configured yet */

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void run_chunks(int worker) {
    const int64_t total = P.total, chunk = P.chunk;
    for (;;) {
        const int64_t b = atomic_fetch_add_explicit(&P.next, chunk, memory_order_relaxed);
        if (b >= total) break;
        P.fn(P.ctx, b, b + chunk < total ? b + chunk : total, worker);
    }
}

/* Touch a good slice of the stack so its pages are mapped before the first real job. */
static void touch_stack(void) {
    volatile unsigned char buf[64 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 4096) buf[i] = (unsigned char)i;
}

static void *worker_main(void *arg) {
    const int id = *(const int *)arg;
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = atomic_load_explicit(&P.generation, memory_order_acquire);
        if (gen == seen && !atomic_load(&P.stop)) {
            const long deadline = now_ns() + P.spin_ns;
            for (unsigned i = 1;; i++) {
                gen = atomic_load_explicit(&P.generation, memory_order_acquire);
                if (gen != seen || atomic_load(&P.stop)) break;
                CPU_RELAX();
                if ((i & 255) == 0 && now_ns() > deadline) break;
            }
        }
        if (gen == seen && !atomic_load(&P.stop)) {
            pthread_mutex_lock(&P.sleep_mu);
            while ((gen = atomic_load(&P.generation)) == seen && !atomic_load(&P.stop))
                pthread_cond_wait(&P.sleep_cv, &P.sleep_mu);
            pthread_mutex_unlock(&P.sleep_mu);
        }
        if (atomic_load(&P.stop)) break;
        seen = gen;
        if (P.warm) touch_stack();
        if (P.fn) run_chunks(id);
        atomic_fetch_sub_explicit(&P.pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

static void stop_workers(void) {
    atomic_store(&P.stop, 1);
    pthread_mutex_lock(&P.sleep_mu);
    pthread_cond_broadcast(&P.sleep_cv);
    pthread_mutex_unlock(&P.sleep_mu);
    for (int i = 0; i < P.started; i++) pthread_join(P.tid[i], NULL);
    P.started = 0;
    atomic_store(&P.stop, 0);
}

static void fork_prepare(void) { pthread_mutex_lock(&submit_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&submit_mu); }
static void fork_child(void) {
    /* Only the forking thread exists here: forget the workers, rebuild the sync objects. */
    P.started = 0;
    atomic_store(&P.stop, 0);
    atomic_store(&P.pending, 0);
    pthread_mutex_init(&P.sleep_mu, NULL);
    pthread_cond_init(&P.sleep_cv, NULL);
    pthread_mutex_init(&submit_mu, NULL);
}

static void install_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

int q8_physical_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int logical = CPU_COUNT(&set), cores = 0;
    /* A core is counted through the first CPU of its sibling list. */
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list",
                 cpu);
        FILE *f = fopen(path, "r");
        if (!f) return logical > 0 ? logical : 1;
        int first = -1;
        if (fscanf(f, "%d", &first) != 1) first = cpu;
        fclose(f);
        if (first == cpu || !CPU_ISSET(first, &set)) cores++;
    }
    return cores > 0 ? cores : (logical > 0 ? logical : 1);
}

/* Called with submit_mu held. */
static int start_locked(int threads) {
    if (threads <= 0) threads = q8_physical_cores();
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (P.started) stop_workers();
    const char *spin = getenv("PYRUSTML_SPIN_US");
    P.spin_ns = (spin && *spin ? atol(spin) : DEFAULT_SPIN_US) * 1000L;
    P.threads = threads;
    P.fn = NULL;
    for (int i = 1; i < threads; i++) {
        P.ids[i - 1] = i;
        if (pthread_create(&P.tid[i - 1], NULL, worker_main, &P.ids[i - 1]) != 0) {
            stop_workers();
            P.threads = 1;
            return Q8_ESTATE;
        }
        P.started++;
    }
    wanted_threads = threads;
    return Q8_OK;
}

static int ensure_locked(void) {
    pthread_once(&atfork_once, install_atfork);
    if (wanted_threads == 0) return start_locked(0);
    if (P.started + 1 != P.threads) return start_locked(wanted_threads); /* after fork */
    return Q8_OK;
}

int q8_pool_init(int threads) {
    if (threads < 0) return Q8_EINVAL;
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&submit_mu);
    const int rc = start_locked(threads);
    pthread_mutex_unlock(&submit_mu);
    return rc;
}

int q8_pool_threads(void) {
    pthread_mutex_lock(&submit_mu);
    const int rc = ensure_locked();
    const int n = rc == Q8_OK ? P.threads : 1;
    pthread_mutex_unlock(&submit_mu);
    return n;
}

void q8_pool_shutdown(void) {
    pthread_mutex_lock(&submit_mu);
    if (P.started) stop_workers();
    P.threads = 1;
    wanted_threads = 0;
    pthread_mutex_unlock(&submit_mu);
}

/* Publish the job and wait for every worker to acknowledge it. Called with submit_mu held. */
static void run_job_locked(q8_task_fn fn, void *ctx, int64_t total, int64_t chunk, int warm) {
    P.fn = fn;
    P.ctx = ctx;
    P.total = total;
    P.chunk = chunk;
    P.warm = warm;
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    atomic_store_explicit(&P.pending, P.started, memory_order_relaxed);
    atomic_fetch_add_explicit(&P.generation, 1, memory_order_release);
    /* A worker checks the generation under sleep_mu before waiting, so this cannot be lost. */
    pthread_mutex_lock(&P.sleep_mu);
    pthread_cond_broadcast(&P.sleep_cv);
    pthread_mutex_unlock(&P.sleep_mu);
    if (warm) touch_stack();
    if (fn) run_chunks(0);
    while (atomic_load_explicit(&P.pending, memory_order_acquire) > 0) CPU_RELAX();
}

/* Chunks that give each thread several (for balance), a multiple of `align`. */
static int64_t chunk_for(int64_t total, int64_t align, int threads) {
    int64_t c = total / ((int64_t)threads * 8);
    c = (c + align - 1) / align * align;
    return c < align ? align : c;
}

int q8_parallel_for(int64_t total, int64_t align, q8_task_fn fn, void *ctx) {
    if (total <= 0) return Q8_OK;
    if (align <= 0) align = 1;
    pthread_mutex_lock(&submit_mu);
    const int rc = ensure_locked();
    const int64_t chunk = chunk_for(total, align, P.threads > 0 ? P.threads : 1);
    if (rc != Q8_OK || P.started == 0 || total <= chunk) {
        /* One thread, or one chunk: no hand-off is cheaper than doing it here. */
        for (int64_t b = 0; b < total; b += chunk) fn(ctx, b, b + chunk < total ? b + chunk : total, 0);
    } else {
        run_job_locked(fn, ctx, total, chunk, 0);
    }
    pthread_mutex_unlock(&submit_mu);
    return Q8_OK;
}

int q8_pool_warmup(void) {
    pthread_mutex_lock(&submit_mu);
    const int rc = ensure_locked();
    if (rc == Q8_OK) run_job_locked(NULL, NULL, 0, 1, 1);
    pthread_mutex_unlock(&submit_mu);
    return rc;
}
