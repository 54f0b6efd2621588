/* test_q8: the C-only harness of libq8 (make test / asan / ubsan).
 *
 * Every kernel table this CPU runs is compared bit for bit with the scalar reference on odd
 * sizes (the reference itself with the arithmetic kernels_ref.c specifies, on GGML blocks), with
 * guard floats around every output; fp16 conversions against the hardware; the quantizer on
 * known bytes; the packed weight layout against q8.h's description (pack, unpack,
 * quantize_packed, dequantize_packed); the public drivers against each other, across thread
 * counts and kernel paths; attention against a double precision scalar version; argument
 * checks; the pool's restart and fork paths; the element-wise loops of every vector width;
 * Q4_0 weights (quantizer, packing, drivers on every path incl. AMX).
 * Each concern has its file (test_kernels.c, test_quant.c, test_drivers.c, test_args.c,
 * test_attention.c, test_pool.c, test_loops.c; shared pieces in harness.c); this one runs them.
 * Exit status is non-zero on any failure; the last line is "N passed, M failed". */
#include <stdio.h>
#include <string.h>

#include "harness.h"

static void test_gemm_batches_group(void) {
    group("gemm batches");
    test_gemm_batches();
    group_end();
}

/* The groups by name: `test_q8 NAME...` runs only those (make tsan runs the threaded ones). */
static const struct {
    const char *name;
    void (*run)(void);
} groups[] = {
    {"tables", test_tables},       {"fp16", test_fp16},           {"quantize", test_quantize},
    {"pack", test_pack},           {"drivers", test_drivers},     {"q4quantize", test_q4_quantize},
    {"q4drivers", test_q4_drivers}, {"amx", test_amx_listing},    {"gemm", test_gemm_batches_group},
    {"args", test_args},           {"attention", test_attention}, {"llama", test_llama_ops},
    {"pool", test_pool},           {"memory", test_memory},       {"loops", test_loops},
};
enum { N_GROUPS = sizeof groups / sizeof groups[0] };

int main(int argc, char **argv) {
    const double t0 = now_s();
    printf("libq8 test: supported %s, active %s, %d physical cores\n", q8_isa_supported(),
           q8_isa_active(), q8_physical_cores());
    for (int a = 1; a < argc; a++) {
        int known = 0;
        for (int g = 0; g < N_GROUPS; g++) known |= !strcmp(argv[a], groups[g].name);
        if (!known) {
            fprintf(stderr, "unknown group %s\n", argv[a]);
            return 2;
        }
    }
    for (int g = 0; g < N_GROUPS; g++) {
        int run = argc == 1;
        for (int a = 1; a < argc; a++) run |= !strcmp(argv[a], groups[g].name);
        if (run) groups[g].run();
    }
    q8_pool_shutdown();
    printf("(%.1f s)\n%ld passed, %ld failed\n", now_s() - t0, n_pass, n_fail);
    return n_fail ? 1 : 0;
}
