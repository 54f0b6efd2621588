/* What the files of test_q8 share (harness.c): one line per group of checks, seeded data, the
 * kernel tables, and the packed layout written from q8.h's description. */
#ifndef Q8_TEST_HARNESS_H
#define Q8_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "q8.h"
#include "q8_internal.h"

/* ---- bookkeeping: one line per group, a failure's first lines in detail ---- */
extern long n_pass, n_fail;
void group(const char *fmt, ...);
void group_end(void);
#define CHECK(cond, ...) check_at(!!(cond), __LINE__, __VA_ARGS__)
int check_at(int ok, int line, const char *fmt, ...);
double now_s(void);

/* ---- data: xorshift64* with a fixed seed, so a failure reproduces ---- */
uint64_t rnd(void);
float frand(void); /* [-1, 1) */
void *xmalloc(size_t n);
void fill_f32(float *x, int64_t n, float mag);
void random_blocks(q8_block *dst, int64_t rows, int64_t nb);
void random_q4_blocks(q4_block *dst, int64_t rows, int64_t nb); /* the same kinds, as Q4_0 */
int same_f32(const float *a, const float *b, int64_t n);
int64_t first_diff(const float *a, const float *b, int64_t n);
/* A byte pattern for "must stay untouched" checks. */
#define GUARD 0xa5
int untouched(const void *p, size_t n);
/* call must return Q8_EINVAL and leave bytes of out untouched */
#define EINV(call, out, bytes) EINV_AS("", call, out, bytes)
/* The same, with the entry point's name first in the message (for calls through a table). */
#define EINV_AS(name, call, out, bytes)                                                            \
    do {                                                                                           \
        memset((out), GUARD, (bytes));                                                             \
        const int rc_ = (call);                                                                    \
        CHECK(rc_ == Q8_EINVAL && untouched((out), (bytes)), "%s%s -> %d%s", (name), #call, rc_,   \
              untouched((out), (bytes)) ? "" : " (wrote output)");                               \
    } while (0)

/* ---- kernel tables ---- */
typedef struct {
    const char *name;
    const q8_kernels *kt;
} table_t;
extern const table_t all_tables[];
extern const int n_tables;
#define N_TABLES n_tables
#define MAX_TABLES 8
int isa_listed(const char *name); /* whether q8_isa_supported() lists this name */
int use_table(int i); /* makes all_tables[i] the active path if it is listed; returns whether */

extern const int64_t ROWS[6], KS[7], TS[6];
#define LEN(a) (int)(sizeof(a) / sizeof((a)[0]))
void ranges(int64_t R, int64_t rr[2][2]);

/* ---- the packed layout, written from q8.h's description (not from pack.c) ---- */
int64_t panels_of(int64_t n);
int row_is(const q8x16 *p, int64_t nb, int64_t r, const q8_block *row);
int row_bytes_are(const q8x16 *p, int64_t nb, int64_t r, unsigned char byte);
int row_is_padding(const q8x16 *p, int64_t nb, int64_t r);
q8x16 *packed(const q8_block *w, int64_t n, int64_t k);
q8_act *acts(const q8_block *x, int64_t t, int64_t nb);
float spec_dot(const q8_block *w, const q8_block *x, int64_t nb);
/* Q4_0 counterparts: packed panels and the row product on GGML blocks */
q4x16 *packed4(const q4_block *w, int64_t n, int64_t k);
float spec_dot4(const q4_block *w, const q8_block *x, int64_t nb);

/* ---- the groups, one file each ---- */
void test_tables(void);        /* test_kernels.c */
void test_amx_listing(void);   /* test_kernels.c */
void test_fp16(void);          /* test_quant.c */
void test_quantize(void);      /* test_quant.c */
void test_pack(void);          /* test_quant.c */
void test_q4_quantize(void);   /* test_quant.c */
void test_drivers(void);       /* test_drivers.c */
void test_gemm_batches(void);  /* test_drivers.c */
void test_q4_drivers(void);    /* test_drivers.c */
void test_args(void);          /* test_args.c */
void test_attention(void);     /* test_attention.c */
void test_pool(void);          /* test_pool.c */
void test_memory(void);        /* test_pool.c */
void test_loops(void);         /* test_loops.c */
void test_llama_ops(void);     /* test_loops.c: RoPE from a table, SwiGLU rows */

#endif
