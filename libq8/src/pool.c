/* The thread pool: one per process, created lazily, the caller thread works too.
 *
 * A job is a range cut into chunks (one big contiguous chunk per thread, then small ones, see
 * cut_for); threads take chunks from an atomic counter, so every output row has one writer and
 * results cannot depend on the thread count. The caller claims first, so from step to step each
 * thread tends to get the same big chunk: the same rows. Idle workers spin
 * for a bounded time (a decode step makes dozens of calls microseconds apart, and a sleeping
 * worker costs tens of microseconds to wake), then sleep on a condition variable.
 * fork(): the prepare handler waits for the running job, the child forgets the parent's threads
 * (they do not exist there) and restarts the pool on its first job.
 * Exit and unload: a destructor (run by dlclose and by exit()) parks and joins the workers, and
 * from then on every job runs on the caller's thread, so no worker is left spinning in code that
 * is about to be unmapped, whatever PYRUSTML_SPIN_US says. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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

#define DEFAULT_SPIN_US 2000
#define MAX_SPIN_US 10000000L /* 10 s: PYRUSTML_SPIN_US beyond it is clamped (and cannot overflow) */
#define FINI_WAIT_S 2 /* how long the destructor waits for a job in flight before it gives up */

typedef struct {
    /* The job being run. Fields are written by the submitter before it publishes a new
     * generation, and read by workers after they acquire it; they are relaxed atomics because a
     * worker that wakes late may read them while the next job is being written (its chunk
     * claims then fail, see claim_chunks). */
    _Atomic(q8_task_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int64_t total, chunk, n_chunks;
    _Atomic int64_t head, n_head; /* the first n_head chunks hold `head` items each */
    _Atomic int warm; /* warmup job: every worker touches its stack and checks in */
    /* (generation tag << 32) | next chunk index: a claim succeeds only for the current job. */
    _Atomic uint64_t claim;
    _Atomic int64_t done;       /* chunks finished in the current job */
    _Atomic int warmed;         /* workers that checked in for a warmup job */
    _Atomic uint64_t generation;
    _Atomic int sleepers;
    _Atomic int stop;
    pthread_mutex_t sleep_mu;
    pthread_cond_t sleep_cv;
    uint64_t start_gen; /* generation when the workers were created: their first "seen" */
    int threads; /* including the caller */
    int started; /* worker threads created */
    pthread_t tid[Q8_MAX_THREADS];
    int ids[Q8_MAX_THREADS];
    long spin_ns;
} pool_t;

static pool_t P = {.sleep_mu = PTHREAD_MUTEX_INITIALIZER, .sleep_cv = PTHREAD_COND_INITIALIZER};
/* Serializes jobs and (re)configuration; held by fork's prepare handler. */
static pthread_mutex_t submit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int wanted_threads; /* 0: not configured yet */
static _Atomic int closed; /* set by the destructor: no worker is (re)started any more */

/* Run chunks of job `gen` until none are left. Nobody waits for a thread that claims nothing,
 * so a worker the OS has not scheduled yet cannot stall the job. */
static void claim_chunks(uint64_t gen, int worker) {
    const uint64_t tag = (gen & 0xffffffffu) << 32;
    const q8_task_fn fn = atomic_load_explicit(&P.fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&P.ctx, memory_order_relaxed);
    const int64_t total = atomic_load_explicit(&P.total, memory_order_relaxed);
    const int64_t chunk = atomic_load_explicit(&P.chunk, memory_order_relaxed);
    const int64_t n_chunks = atomic_load_explicit(&P.n_chunks, memory_order_relaxed);
    const int64_t head = atomic_load_explicit(&P.head, memory_order_relaxed);
    const int64_t n_head = atomic_load_explicit(&P.n_head, memory_order_relaxed);
    uint64_t c = atomic_load_explicit(&P.claim, memory_order_acquire);
    for (;;) {
        if ((c & ~(uint64_t)0xffffffffu) != tag) return; /* another job: what we read is stale */
        const int64_t idx = (int64_t)(c & 0xffffffffu);
        if (idx >= n_chunks || !fn) return;
        if (!atomic_compare_exchange_weak_explicit(&P.claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* c was reloaded */
        const int64_t b = idx < n_head ? idx * head : n_head * head + (idx - n_head) * chunk;
        const int64_t e = idx < n_head ? b + head : b + chunk;
        fn(ctx, b, e < total ? e : total, worker);
        atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
        c = atomic_load_explicit(&P.claim, memory_order_acquire);
    }
}

/* Touch a good slice of the stack so its pages are mapped before the first real job. */
static void touch_stack(void) {
    volatile unsigned char buf[64 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 4096) buf[i] = (unsigned char)i;
}

static void *worker_main(void *arg) {
    const int id = *(const int *)arg;
    /* start_gen was recorded under submit_mu before this thread existed: no job can have been
     * published in between, so the worker neither misses one nor replays an old one. */
    uint64_t seen = P.start_gen;
    for (;;) {
        uint64_t gen = atomic_load_explicit(&P.generation, memory_order_acquire);
        if (gen == seen && !atomic_load(&P.stop)) {
            /* Spin briefly (calls of a decode step come microseconds apart), yielding the core
             * after a while so an oversubscribed machine is not starved, then sleep. */
            const int64_t start = q8_now_ns();
            for (unsigned i = 1;; i++) {
                gen = atomic_load_explicit(&P.generation, memory_order_acquire);
                if (gen != seen || atomic_load(&P.stop)) break;
                CPU_RELAX();
                if ((i & 255) == 0) {
                    const int64_t t = q8_now_ns() - start;
                    if (t > P.spin_ns) break;
                    if (t > 50000) sched_yield();
                }
            }
        }
        if (gen == seen && !atomic_load(&P.stop)) {
            pthread_mutex_lock(&P.sleep_mu);
            atomic_fetch_add(&P.sleepers, 1);
            while ((gen = atomic_load(&P.generation)) == seen && !atomic_load(&P.stop))
                pthread_cond_wait(&P.sleep_cv, &P.sleep_mu);
            atomic_fetch_sub(&P.sleepers, 1);
            pthread_mutex_unlock(&P.sleep_mu);
        }
        if (atomic_load(&P.stop)) break;
        seen = gen;
        if (atomic_load_explicit(&P.warm, memory_order_relaxed)) {
            touch_stack();
            atomic_fetch_add_explicit(&P.warmed, 1, memory_order_release);
        }
        claim_chunks(gen, id);
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
    atomic_store(&P.sleepers, 0);
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

static long spin_us_from_env(void) {
    const char *spin = getenv("PYRUSTML_SPIN_US");
    if (!spin || !*spin) return DEFAULT_SPIN_US;
    char *end = NULL;
    errno = 0;
    long us = strtol(spin, &end, 10);
    if (end == spin || errno == ERANGE) return DEFAULT_SPIN_US;
    if (us < 0) us = 0;
    return us > MAX_SPIN_US ? MAX_SPIN_US : us;
}

/* Called with submit_mu held. */
static int start_locked(int threads) {
    if (threads <= 0) threads = q8_physical_cores();
    if (threads > Q8_MAX_THREADS) threads = Q8_MAX_THREADS;
    if (P.started) stop_workers();
    if (atomic_load(&closed)) threads = 1; /* after the destructor: the caller's thread only */
    P.spin_ns = spin_us_from_env() * 1000L;
    P.threads = threads;
    atomic_store(&P.fn, NULL);
    P.start_gen = atomic_load(&P.generation);
    /* Workers are created with every signal blocked (they inherit the mask): a Ctrl-C must reach
     * a thread that can act on it. Delivered to a worker, the caller's handler would run there
     * while the main thread sat in select() waiting for input, and the signal would be lost. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = Q8_OK;
    for (int i = 1; i < threads; i++) {
        P.ids[i - 1] = i;
        if (pthread_create(&P.tid[i - 1], NULL, worker_main, &P.ids[i - 1]) != 0) {
            rc = Q8_ESTATE;
            break;
        }
        P.started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != Q8_OK) {
        stop_workers();
        P.threads = 1;
        return rc;
    }
    wanted_threads = threads;
    return Q8_OK;
}

static int ensure_locked(void) {
    pthread_once(&atfork_once, install_atfork);
    if (atomic_load(&closed)) {
        P.threads = 1;
        return Q8_OK;
    }
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

/* Publish the job, work on it, and return when every chunk is done. With submit_mu held. */
static void run_job_locked(q8_task_fn fn, void *ctx, int64_t total, int64_t head, int64_t n_head,
                           int64_t chunk, int warm) {
    const uint64_t gen = atomic_load_explicit(&P.generation, memory_order_relaxed) + 1;
    const int64_t n_chunks = fn ? n_head + (total - n_head * head + chunk - 1) / chunk : 0;
    /* Retag the claim counter first: a late worker of the previous job that reads the fields
     * below half-written can no longer claim anything. */
    atomic_store_explicit(&P.claim, (gen & 0xffffffffu) << 32, memory_order_relaxed);
    atomic_store_explicit(&P.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&P.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&P.total, total, memory_order_relaxed);
    atomic_store_explicit(&P.chunk, chunk, memory_order_relaxed);
    atomic_store_explicit(&P.n_chunks, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&P.head, head, memory_order_relaxed);
    atomic_store_explicit(&P.n_head, n_head, memory_order_relaxed);
    atomic_store_explicit(&P.warm, warm, memory_order_relaxed);
    atomic_store_explicit(&P.done, 0, memory_order_relaxed);
    atomic_store_explicit(&P.warmed, 0, memory_order_relaxed);
    atomic_store(&P.generation, gen); /* seq_cst: pairs with the sleepers check below */
    if (atomic_load(&P.sleepers) > 0) {
        pthread_mutex_lock(&P.sleep_mu);
        pthread_cond_broadcast(&P.sleep_cv);
        pthread_mutex_unlock(&P.sleep_mu);
    }
    if (warm) touch_stack();
    claim_chunks(gen, 0);
    while (atomic_load_explicit(&P.done, memory_order_acquire) < n_chunks) CPU_RELAX();
    if (warm)
        while (atomic_load_explicit(&P.warmed, memory_order_acquire) < P.started) CPU_RELAX();
}

/* How a job is cut: first one big contiguous chunk per thread, then small ones for the rest.
 * A thread streams its big chunk as one run (each new run costs the hardware prefetcher a
 * ramp-up: at 60 GB/s a GPT-2 decode step was ~10% slower with 8 equal chunks per thread than
 * with one), and the small tail chunks still balance a thread that starts late or is
 * preempted. Multiples of `align`; total <= one small chunk means no hand-off at all. */
#define HEAD_PERCENT 75
typedef struct {
    int64_t head, n_head, chunk;
} cut_t;

static cut_t cut_for(int64_t total, int64_t align, int threads) {
    cut_t c = {0, 0, 0};
    int64_t small = total / ((int64_t)threads * 8);
    small = (small + align - 1) / align * align;
    c.chunk = small < align ? align : small;
    const int64_t head = total * HEAD_PERCENT / 100 / threads / align * align;
    if (threads > 1 && head > c.chunk) {
        c.head = head;
        c.n_head = threads;
    }
    return c;
}

int q8_parallel_for(int64_t total, int64_t align, q8_task_fn fn, void *ctx) {
    if (total <= 0) return Q8_OK;
    if (align <= 0) align = 1;
    pthread_mutex_lock(&submit_mu);
    const int rc = ensure_locked();
    const cut_t cut = cut_for(total, align, P.threads > 0 ? P.threads : 1);
    if (rc != Q8_OK || P.started == 0 || total <= cut.chunk) {
        /* One thread, or one chunk: no hand-off is cheaper than doing it here. */
        for (int64_t b = 0; b < total; b += cut.chunk)
            fn(ctx, b, b + cut.chunk < total ? b + cut.chunk : total, 0);
    } else {
        run_job_locked(fn, ctx, total, cut.head, cut.n_head, cut.chunk, 0);
    }
    pthread_mutex_unlock(&submit_mu);
    return Q8_OK;
}

int q8_pool_warmup(void) {
    pthread_mutex_lock(&submit_mu);
    const int rc = ensure_locked();
    if (rc == Q8_OK) run_job_locked(NULL, NULL, 0, 0, 0, 1, 1);
    pthread_mutex_unlock(&submit_mu);
    return rc;
}

/* Unload or exit: park and join the workers before the code they spin in can go away. A job in
 * flight (a daemon thread of the host program) finishes first; if it does not within
 * FINI_WAIT_S, the workers are still told to stop, and the process is exiting anyway. */
__attribute__((destructor)) static void pool_fini(void) {
    atomic_store(&closed, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += FINI_WAIT_S;
    if (pthread_mutex_timedlock(&submit_mu, &until) != 0) {
        atomic_store(&P.stop, 1);
        pthread_mutex_lock(&P.sleep_mu);
        pthread_cond_broadcast(&P.sleep_cv);
        pthread_mutex_unlock(&P.sleep_mu);
        return;
    }
    if (P.started) stop_workers();
    P.threads = 1;
    pthread_mutex_unlock(&submit_mu);
}
