/* q8.h: the public ABI of libq8.
 *
 * Everything between the cdef markers is plain C that cffi parses as its cdef (the Python
 * binding reads this very file), so it holds only typedefs, structs and prototypes.
 *
 * Conventions for every entry point:
 *  - sizes are int64_t; a negative or zero size, a NULL pointer or K % 32 != 0 where Q8_0 is
 *    involved returns Q8_EINVAL and writes nothing;
 *  - matrices are row-major; a Q8_0 matrix of N rows and K columns is N * (K / 32) blocks
 *    in GGML's layout (q8_block), or ceil(N / 16) * (K / 32) q8x16 in the packed layout the
 *    products read (weights are packed once, at load);
 *  - results never depend on the thread count: every output row has exactly one writer and
 *    the arithmetic of a row is fixed by the scalar reference (see src/kernels_ref.c);
 *  - functions that spread work over the pool say so; the others run on the caller's thread.
 */
#ifndef PYRUSTML_Q8_H
#define PYRUSTML_Q8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cdef-begin */

/* GGML block_q8_0: fp16 scale d, then 32 signed 8-bit quants. x[i] = d * qs[i]. */
typedef struct {
    uint16_t d;
    int8_t qs[32];
} q8_block;

/* The packed weight layout: 16 rows ("a panel") x one Q8_0 block, so one 64-byte load holds
 * the same 4 columns of 16 rows and a 32-bit lane is one row. Panel p, block b of an N x K
 * matrix is element p * (K / 32) + b. For row 16p + i and column 32b + 4j + e:
 *   d[i] = that row's fp16 block scale, qs[64j + 4i + e] = quant + 128 (so the integer
 *   products can take the weights as their unsigned operand);
 * rows N .. 16 * ceil(N / 16) - 1 of the last panel are zero (d = 0, qs = 128). */
typedef struct {
    uint16_t d[16];
    uint8_t qs[512];
} q8x16;

/* GGML block_q4_0: fp16 scale d, then 32 4-bit quants in 16 bytes: qs[c] holds column c in its
 * low nibble and column c + 16 in its high nibble. x[i] = d * (nibble - 8). */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} q4_block;

/* The packed Q4_0 layout, chosen like q8x16's: 16 rows x one block, so that one 64-byte load
 * holds 4 columns of 16 rows in its low nibbles and the 4 columns 16 further in its high ones.
 * Panel p, block b of an N x K matrix is element p * (K / 32) + b. For row 16p + i:
 *   d[i] = that row's fp16 scale, qs[64j + 4i + e] = the row's GGML byte qs[4j + e]
 *   (j < 4, e < 4: column 4j + e low, column 16 + 4j + e high);
 * rows N .. 16 * ceil(N / 16) - 1 of the last panel are zero (d = 0, bytes 0x88). */
typedef struct {
    uint16_t d[16];
    uint8_t qs[256];
} q4x16;

enum {
    Q8_OK = 0,
    Q8_EINVAL = -1,  /* bad argument: NULL, size <= 0, K not a multiple of 32, unknown name */
    Q8_ENOMEM = -2,  /* allocation failed */
    Q8_ESTATE = -3,  /* the thread pool could not be (re)started */
    Q8_ENONFINITE = -4  /* the input holds NaN or Inf */
};

/* Source element types for the loader's converters. */
enum {
    Q8_DTYPE_F32 = 0,
    Q8_DTYPE_F16 = 1,
    Q8_DTYPE_BF16 = 2
};

/* ---- library facts ---------------------------------------------------------------------- */
/* The ABI this header describes; q8_abi_version() returns the one the library was built with,
 * and the binding refuses a library whose number differs from its header's. */
enum { Q8_ABI_VERSION = 8 };
int q8_abi_version(void);
/* Comma-separated kernel paths this CPU and OS can run, best last ("ref,avx2,avx512,...").
 * "amx" (x86-64) is avx512vnni plus AMX-INT8 tiles for the batched products (16 tokens and
 * more); it is listed only when cpuid, XCR0 and the kernel's permission all allow tiles. */
const char *q8_isa_supported(void);
const char *q8_isa_active(void);
/* Force a kernel path by name; Q8_EINVAL if unknown or not supported here. The environment
 * variable PYRUSTML_ISA does the same when the library is first used. */
int q8_isa_set(const char *name);

/* ---- memory --------------------------------------------------------------------------------- */
/* 64-byte aligned allocation, 2 MiB aligned and advised for transparent huge pages when large.
 * Returns NULL on failure or bytes == 0. Free with q8_free. */
void *q8_alloc(size_t bytes);
void q8_free(void *p);

/* ---- fp16 / bf16 ---------------------------------------------------------------------------- */
uint16_t q8_fp32_to_fp16(float f);   /* round to nearest even, overflow to inf, NaN kept */
float q8_fp16_to_fp32(uint16_t h);
/* n elements of dtype (Q8_DTYPE_*) at src converted to float32. Caller's thread. */
int q8_convert_to_f32(const void *src, int dtype, int64_t n, float *dst);

/* ---- Q8_0 quantization (byte-identical to ggml's quantize_row_q8_0_ref) -------------------- */
/* rows x k source elements of dtype at src -> rows * k/32 blocks. Spread over the pool. */
int q8_quantize(const void *src, int dtype, int64_t rows, int64_t k, q8_block *dst);
/* Transposed source: src is k x rows (HF Conv1D [in, out] layout); dst gets rows x k. */
int q8_quantize_transposed(const void *src, int dtype, int64_t k, int64_t rows, q8_block *dst);
int q8_dequantize(const q8_block *src, int64_t rows, int64_t k, float *dst);

/* ---- the packed layout (q8x16) ------------------------------------------------------------- */
/* q8x16 elements of a packed n x k matrix: ceil(n / 16) * (k / 32); -1 on bad sizes. */
int64_t q8_packed_count(int64_t n, int64_t k);
/* Quantize `rows` source rows (src rows x k, or k x rows when transposed: HF Conv1D) straight
 * into rows row0 .. row0 + rows - 1 of the packed n x k matrix dst, with bytes equal to
 * q8_quantize's. The call that writes row n - 1 also writes the padding rows. Spread over the
 * pool. */
int q8_quantize_packed(const void *src, int dtype, int64_t rows, int64_t k, int transposed,
                       q8x16 *dst, int64_t n, int64_t row0);
/* GGML blocks (n x k) to the packed layout, padding included, and back. q8_pack refuses
 * (Q8_EINVAL, nothing written) a quant of -128, which no ggml quantizer produces: the products
 * rely on every weight quant lying in [-127, 127]. */
int q8_pack(const q8_block *src, int64_t n, int64_t k, q8x16 *dst);
int q8_unpack(const q8x16 *src, int64_t n, int64_t k, q8_block *dst);
/* Rows row0 .. row0 + rows - 1 of the packed n x k matrix as float32 (rows x k). */
int q8_dequantize_packed(const q8x16 *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                         float *dst);

/* ---- Q4_0 (GGML block_q4_0; byte-identical to ggml's quantize_row_q4_0_ref and gguf's) ----
 * Per block: m = the value of largest magnitude (the first one on ties), d = m / -8 in float32,
 * id = 1 / d (0 when d is 0 or 1 / d overflows), nibble = min(15, trunc(x * id + 8.5)), d stored
 * as fp16 (an all-zero block stores -0.0: 0x8000). A block holding NaN or Inf gets d = NaN and
 * nibbles 8, as Q8_0's. Same shapes and conventions as the Q8_0 functions above. */
int q8_q4_quantize(const void *src, int dtype, int64_t rows, int64_t k, q4_block *dst);
int q8_q4_dequantize(const q4_block *src, int64_t rows, int64_t k, float *dst);
int64_t q8_q4_packed_count(int64_t n, int64_t k);
int q8_q4_quantize_packed(const void *src, int dtype, int64_t rows, int64_t k, int transposed,
                          q4x16 *dst, int64_t n, int64_t row0);
int q8_q4_pack(const q4_block *src, int64_t n, int64_t k, q4x16 *dst);
int q8_q4_unpack(const q4x16 *src, int64_t n, int64_t k, q4_block *dst);
int q8_q4_dequantize_packed(const q4x16 *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                            float *dst);
/* Products with packed Q4_0 weights; x is quantized to Q8_0 as for q8_gemv, and row r of y is
 * sum over blocks b in order of fmaf(dw * dx, exact int dot of (nibble - 8) and x's quants). */
int q8_q4_gemv(const q4x16 *w, int64_t n, int64_t k, const float *x, const float *bias,
               float *y);
int q8_q4_gemm(const q4x16 *w, int64_t n, int64_t k, const float *x, int64_t t,
               const float *bias, float *y);
int q8_q4_lmhead(const q4x16 *w, int64_t n, int64_t k, const float *x, float *y);
int q8_q4_lmhead_argmax(const q4x16 *w, int64_t n, int64_t k, const float *x,
                        int64_t *index, float *value);

/* ---- matrix-vector and matrix-matrix products --------------------------------------------- */
/* y[n] = sum_k W[n,k] x[k] (+ bias[n] when bias != NULL). W is n x k Q8_0, packed; x is
 * quantized to Q8_0 once per call (non-finite x makes every output NaN). Spread over the pool. */
int q8_gemv(const q8x16 *w, int64_t n, int64_t k, const float *x, const float *bias,
            float *y);
/* T activations at once: x is t x k, y is t x n (row-major). Each weight row is read once for
 * a tile of tokens; y[t] is bitwise equal to q8_gemv on x[t]. */
int q8_gemm(const q8x16 *w, int64_t n, int64_t k, const float *x, int64_t t,
            const float *bias, float *y);
/* Full-precision counterparts: W is n x k float32. */
int q8_gemv_f32(const float *w, int64_t n, int64_t k, const float *x, const float *bias,
                float *y);
int q8_gemm_f32(const float *w, int64_t n, int64_t k, const float *x, int64_t t,
                const float *bias, float *y);

/* The vocabulary projection, tiled over the vocabulary: equal to q8_gemv bit for bit. */
int q8_lmhead(const q8x16 *w, int64_t n, int64_t k, const float *x, float *y);
int q8_lmhead_f32(const float *w, int64_t n, int64_t k, const float *x, float *y);
/* Fused greedy path: the logits stay in C. Writes the index of the largest logit (lowest index
 * on ties; a NaN logit counts as largest, so NaN is reported, never hidden) and its value. */
int q8_lmhead_argmax(const q8x16 *w, int64_t n, int64_t k, const float *x,
                     int64_t *index, float *value);
int q8_lmhead_argmax_f32(const float *w, int64_t n, int64_t k, const float *x,
                         int64_t *index, float *value);

/* ---- per-layer operations (caller's thread; rows x n, row-major, in place allowed) -------- */
int q8_layernorm(const float *x, const float *gamma, const float *beta, int64_t rows,
                 int64_t n, float eps, float *y);
/* y = x / rms(x) * (w + offset): offset 0 for Llama-style, 1 for Gemma's (1 + w). */
int q8_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps,
               float offset, float *y);
int q8_gelu_tanh(const float *x, int64_t n, float *y);
/* y = gelu_tanh(gate) * up */
int q8_geglu(const float *gate, const float *up, int64_t n, float *y);
/* Row-wise GeGLU over a fused gate|up output: gate_up is rows x 2n (gate, then up), y is
 * rows x n, y[r, i] = gelu_tanh(gate_up[r, i]) * gate_up[r, n + i]. */
int q8_geglu_rows(const float *gate_up, int64_t rows, int64_t n, float *y);
/* Row-wise SwiGLU, the same layout: y[r, i] = silu(gate_up[r, i]) * gate_up[r, n + i] with
 * silu(v) = v * sigmoid(v) (Llama, Mistral, Qwen). */
int q8_swiglu_rows(const float *gate_up, int64_t rows, int64_t n, float *y);
int q8_add(const float *a, const float *b, int64_t n, float *y);
int q8_scale(const float *x, float s, int64_t n, float *y);
/* y = cap * tanh(x / cap) */
int q8_softcap(const float *x, float cap, int64_t n, float *y);
int q8_softmax(const float *x, int64_t rows, int64_t n, float *y);
/* Rotary embedding, "rotate half" layout (pairs i and i + head_dim/2), in place on x of
 * rows x n_heads x head_dim; row r is at position pos[r]. */
int q8_rope(float *x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t *pos,
            float theta);
/* The same rotation with the head_dim / 2 frequencies given (finite, >= 0): the angle of pair i
 * at position p is p * inv_freq[i]. Scaled RoPE variants (llama3, linear) are tables the caller
 * computes once, so scaling is data, not code. */
int q8_rope_freq(float *x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t *pos,
                 const float *inv_freq);

/* ---- KV cache and attention ------------------------------------------------------------ */
/* Cache layout per layer: k and v are n_kv x cap x head_dim float32; position p lives in slot
 * p % cap (a ring when cap is smaller than the context). kv_write stores t new rows
 * (t x n_kv x head_dim each) for positions pos0 .. pos0 + t - 1. */
int q8_kv_write(const float *k_new, const float *v_new, int64_t t, int64_t pos0, float *k,
                float *v, int64_t n_kv, int64_t cap, int64_t head_dim);
/* Causal attention for t queries at positions pos0 .. pos0 + t - 1 (t = 1: a decode step).
 * q and out are t x n_heads x head_dim; query head h reads KV head h / (n_heads / n_kv).
 * Query at position p sees positions max(0, p - window + 1) .. p (window 0: all of them),
 * which must all be in the cache (window <= cap, or cap > p). scale multiplies q.k;
 * softcap > 0 applies cap * tanh(s / cap) to the scores. Spread over the pool (heads x t).
 * head_dim is at most Q8_MAX_HEAD_DIM. */
enum { Q8_MAX_HEAD_DIM = 512 };
int q8_attention(const float *q, int64_t t, int64_t pos0, const float *k, const float *v,
                 int64_t n_heads, int64_t n_kv, int64_t cap, int64_t head_dim, int64_t window,
                 float scale, float softcap, float *out);

/* Rows of several sequences at once (continuous batching): row j belongs to the sequence in
 * cache slot slot[j] at position pos[j]. A layer's caches hold n_slots sequences, slot s at
 * k + s * n_kv * cap * head_dim (likewise v), each laid out as above. The writes of all rows
 * come first, then each row attends over its own slot exactly as q8_attention computes a query
 * at that position, so a row's bits do not depend on the other rows of the call. A slot's rows
 * must leave every position its queries read in the ring (as q8_attention checks). */
int q8_kv_write_rows(const float *k_new, const float *v_new, int64_t t, const int64_t *slot,
                     const int64_t *pos, float *k, float *v, int64_t n_slots, int64_t n_kv,
                     int64_t cap, int64_t head_dim);
int q8_attention_rows(const float *q, int64_t t, const int64_t *slot, const int64_t *pos,
                      const float *k, const float *v, int64_t n_slots, int64_t n_heads,
                      int64_t n_kv, int64_t cap, int64_t head_dim, int64_t window, float scale,
                      float softcap, float *out);
/* Copy columns c0 .. c0 + width - 1 of each of the rows x n rows of x into the rows x width y
 * (the q, k and v parts of fused QKV rows). */
int q8_copy_cols(const float *x, int64_t rows, int64_t n, int64_t c0, int64_t width, float *y);

/* ---- plans: a whole forward pass in one call ---------------------------------------------- */
/* A plan is the op list of a forward pass, written once by the caller after its buffers and
 * weights exist, with per-row sizes; q8_plan_run executes it for t rows: row j is token
 * tokens[j] of the sequence in cache slot slots[j] at position pos[j] (one decode step of t
 * sequences, one prefill chunk of one sequence, or a mix). Each op calls the entry point of the
 * same name above with the same checks, so a plan computes exactly what the calls would. The
 * ops, and what each reads from an op's p (pointers), y (output), i (sizes) and f (scalars),
 * are listed in src/plan.c, their one home: a caller finds an op's kind by its name. */

/* The kind of the op called `name` ("add", "rmsnorm", "attention", ...: src/plan.c), > 0; or
 * Q8_EINVAL for a name libq8 does not know. */
int32_t q8_op_kind(const char *name);

typedef struct {
    int32_t kind;
    int32_t reserved; /* 0 */
    const void *p[4];
    float *y;
    int64_t i[6];
    float f[2];
} q8_op;

/* Run ops[0 .. n_ops) in order for t rows (1 <= t <= Q8_PLAN_MAX_ROWS; the caller's buffers
 * must hold t rows of every operand). Stops at the first op that fails and returns its code
 * (Q8_EINVAL for an unknown kind or an operand out of range). */
enum { Q8_PLAN_MAX_ROWS = 4096 };
int q8_plan_run(const q8_op *ops, int64_t n_ops, int64_t t, const int64_t *tokens,
                const int64_t *slots, const int64_t *pos, int64_t *marks, int64_t n_marks);

/* ---- sampling support (caller's thread) ---------------------------------------------------- */
/* The k largest of x[0..n) in descending order into idx/val; equal values keep the lower
 * index first. Q8_ENONFINITE if x holds NaN or Inf. */
int q8_topk(const float *x, int64_t n, int64_t k, int64_t *idx, float *val);
/* sum over i of exp((x[i] - max) * inv_temp), accumulated in double; -1.0 on bad arguments. */
double q8_expsum(const float *x, int64_t n, float max, float inv_temp);

/* ---- thread pool ------------------------------------------------------------------------ */
int q8_physical_cores(void);
/* Most threads the pool runs, the caller included: q8_pool_init clamps a larger request. */
enum { Q8_MAX_THREADS = 256 };
/* (Re)start the pool with this many threads including the caller (0: physical cores). */
int q8_pool_init(int threads);
int q8_pool_threads(void);
/* Wake every worker, let it touch its stack and run an empty job; returns Q8_OK. */
int q8_pool_warmup(void);
void q8_pool_shutdown(void);

/* ---- measurement ----------------------------------------------------------------------- */
/* Read bandwidth of this machine in GB/s (1e9 bytes/s): the best of reps passes of all pool
 * threads summing a bytes-long buffer from q8_alloc. Returns a negative value on failure. */
double q8_probe_read_bandwidth(size_t bytes, int reps);
/* One such pass over the caller's buffer (64-byte aligned, at least 1 MiB; read up to a multiple
 * of 1 MiB), in GB/s: a fixed amount of work to time next to decode steps. Negative on bad
 * arguments. */
double q8_read_pass(const void *buf, size_t bytes);

/* cdef-end */

#ifdef __cplusplus
}
#endif

#endif /* PYRUSTML_Q8_H */
