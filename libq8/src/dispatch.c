/* Runtime choice of the kernel table: what the CPU has (cpuid) AND what the OS saves on a
 * context switch (xgetbv), filled once; PYRUSTML_ISA=name forces a supported path. The
 * element-wise loops (loops.c) follow the table chosen: q8_loops_for. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "q8_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#define MAX_PATHS 8

static const q8_kernels *paths[MAX_PATHS]; /* supported, worst to best */
static int n_paths;
static char supported_names[128];
static _Atomic(const q8_kernels *) active;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(_M_X64)
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static void detect_x86(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    const int f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    const uint64_t xcr0 = xgetbv0();
    const int os_avx = (xcr0 & 0x6) == 0x6;       /* XMM and YMM state */
    const int os_avx512 = (xcr0 & 0xe6) == 0xe6;  /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (!os_avx || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    const int avx2 = (b >> 5) & 1;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    const int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    const int vnni = (c >> 11) & 1;
    if (avx2 && fma && f16c) paths[n_paths++] = &q8_kernels_avx2;
    else return;
    if (os_avx512 && avx512f && avx512dq && avx512bw && avx512vl) {
        paths[n_paths++] = &q8_kernels_avx512;
        if (vnni) paths[n_paths++] = &q8_kernels_avx512vnni;
        if (vnni && q8_amx_usable()) paths[n_paths++] = &q8_kernels_amx;
    }
}
#endif

static void detect(void) {
    paths[n_paths++] = &q8_kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
    detect_x86();
#endif
#if defined(__aarch64__)
    paths[n_paths++] = &q8_kernels_neon; /* Advanced SIMD is mandatory on AArch64 */
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) paths[n_paths++] = &q8_kernels_neon_dotprod;
#endif
#endif
    size_t len = 0;
    for (int i = 0; i < n_paths; i++) {
        const size_t l = strlen(paths[i]->name);
        if (len + l + 2 > sizeof supported_names) break;
        if (i) supported_names[len++] = ',';
        memcpy(supported_names + len, paths[i]->name, l);
        len += l;
    }
    supported_names[len] = '\0';
    const q8_kernels *choice = paths[n_paths - 1];
    const char *forced = getenv("PYRUSTML_ISA");
    if (forced && *forced) {
        for (int i = 0; i < n_paths; i++)
            if (strcmp(paths[i]->name, forced) == 0) choice = paths[i];
        /* An unsupported name leaves the best path active; the binding reports the mismatch. */
    }
    atomic_store(&active, choice);
}

const q8_kernels *q8_kernels_get(void) {
    pthread_once(&once, detect);
    return atomic_load_explicit(&active, memory_order_acquire);
}

const char *q8_isa_supported(void) {
    pthread_once(&once, detect);
    return supported_names;
}

const char *q8_isa_active(void) { return q8_kernels_get()->name; }

int q8_isa_set(const char *name) {
    pthread_once(&once, detect);
    Q8_CHECK(name);
    for (int i = 0; i < n_paths; i++) {
        if (strcmp(paths[i]->name, name) == 0) {
            atomic_store(&active, paths[i]);
            return Q8_OK;
        }
    }
    return Q8_EINVAL;
}

const q8_loops *q8_loops_for(const q8_kernels *kt) {
#if defined(__x86_64__) || defined(_M_X64)
    if (kt == &q8_kernels_avx2) return &q8_loops_avx2;
    /* Every other x86 path (avx512, avx512vnni, amx) is only offered with AVX-512F. */
    if (kt != &q8_kernels_ref) return &q8_loops_avx512;
#endif
    (void)kt;
    return &q8_loops_base;
}

int q8_abi_version(void) { return Q8_ABI_VERSION; }
