/* Plans: a whole forward pass in one call (see q8.h). A GPT-2 step is ~130 calls into libq8;
 * made one by one from Python they cost ~3% of the step in the interpreter and cffi. Every op
 * goes through the public entry point it names, so a plan checks and computes exactly what
 * those calls would.
 *
 * The ops live here and only here: each is a function below and a line in OPS, its operands
 * described above it (x, y: float vectors of t rows of the per-row size; y may alias x where
 * the entry point allows it). A caller finds an op's kind by its name (q8_op_kind), so adding
 * an op is this file and the caller's one method (pyrustml/engine/plan.py). */
#include "q8_internal.h"

/* The rows of one run: row j is token tokens[j] of the sequence in cache slot slots[j] at
 * position pos[j]; marks (n_marks of them, or NULL) take MARK's clock readings. */
typedef struct {
    int64_t t;
    const int64_t *tokens, *slots, *pos;
    int64_t *marks, n_marks;
} plan_rows;

typedef int (*op_fn)(const q8_op *o, const plan_rows *r);
typedef int (*row_fn)(const q8_op *o, int64_t row, float *out);

static int row_q8(const q8_op *o, int64_t row, float *out) {
    return q8_dequantize_packed(o->p[0], o->i[0], o->i[1], row, 1, out);
}

static int row_q4(const q8_op *o, int64_t row, float *out) {
    return q8_q4_dequantize_packed(o->p[0], o->i[0], o->i[1], row, 1, out);
}

static int row_f32(const q8_op *o, int64_t row, float *out) {
    memcpy(out, (const float *)o->p[0] + row * o->i[1], (size_t)o->i[1] * sizeof(float));
    return Q8_OK;
}

/* y[j] = row tokens[j] of the i0 x i1 table p0 (0 <= token < i0). */
static int embed(const q8_op *o, const plan_rows *r, row_fn row) {
    const int64_t *i = o->i;
    Q8_CHECK(o->p[0] && o->y && q8_mat_ok(i[0], i[1]));
    for (int64_t j = 0; j < r->t; j++) {
        Q8_CHECK(r->tokens[j] >= 0 && r->tokens[j] < i[0]);
        const int rc = row(o, r->tokens[j], o->y + j * i[1]);
        if (rc != Q8_OK) return rc;
    }
    return Q8_OK;
}

/* embed_q8: p0 packed Q8_0 table; embed_q4: p0 packed Q4_0 table; embed_f32: p0 float table. */
static int op_embed_q8(const q8_op *o, const plan_rows *r) { return embed(o, r, row_q8); }
static int op_embed_q4(const q8_op *o, const plan_rows *r) { return embed(o, r, row_q4); }
static int op_embed_f32(const q8_op *o, const plan_rows *r) { return embed(o, r, row_f32); }

/* add_row: p0 float table (i0 rows x i1), p1 x: y[j] = x[j] + row pos[j] (pos < i0). */
static int op_add_row(const q8_op *o, const plan_rows *r) {
    const float *table = o->p[0], *x = o->p[1];
    const int64_t *i = o->i;
    Q8_CHECK(table && x && o->y && q8_mat_ok(i[0], i[1]));
    for (int64_t j = 0; j < r->t; j++) {
        Q8_CHECK(r->pos[j] < i[0]);
        const int rc = q8_add(x + j * i[1], table + r->pos[j] * i[1], i[1], o->y + j * i[1]);
        if (rc != Q8_OK) return rc;
    }
    return Q8_OK;
}

/* scale: p0 x, i0 n, f0 s. */
static int op_scale(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_scale(o->p[0], o->f[0], r->t * o->i[0], o->y);
}

/* layernorm: p0 x, p1 gamma, p2 beta, i0 rows, i1 n, f0 eps. */
static int op_layernorm(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_layernorm(o->p[0], o->p[1], o->p[2], r->t * o->i[0], o->i[1], o->f[0], o->y);
}

/* rmsnorm: p0 x, p1 w, i0 rows, i1 n, f0 eps, f1 offset. */
static int op_rmsnorm(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_rmsnorm(o->p[0], o->p[1], r->t * o->i[0], o->i[1], o->f[0], o->f[1], o->y);
}

/* gemv_q8 / gemv_q4 / gemv_f32: p0 W (i0 x i1: packed Q8_0, packed Q4_0, float), p1 x, p2 bias
 * or NULL; a GEMM when t > 1. */
static int op_gemv_q8(const q8_op *o, const plan_rows *r) {
    if (r->t == 1) return q8_gemv(o->p[0], o->i[0], o->i[1], o->p[1], o->p[2], o->y);
    return q8_gemm(o->p[0], o->i[0], o->i[1], o->p[1], r->t, o->p[2], o->y);
}

static int op_gemv_q4(const q8_op *o, const plan_rows *r) {
    if (r->t == 1) return q8_q4_gemv(o->p[0], o->i[0], o->i[1], o->p[1], o->p[2], o->y);
    return q8_q4_gemm(o->p[0], o->i[0], o->i[1], o->p[1], r->t, o->p[2], o->y);
}

static int op_gemv_f32(const q8_op *o, const plan_rows *r) {
    if (r->t == 1) return q8_gemv_f32(o->p[0], o->i[0], o->i[1], o->p[1], o->p[2], o->y);
    return q8_gemm_f32(o->p[0], o->i[0], o->i[1], o->p[1], r->t, o->p[2], o->y);
}

/* rope: y in place, i0 heads, i1 head_dim, f0 theta, at pos[j]. */
static int op_rope(const q8_op *o, const plan_rows *r) {
    return q8_rope(o->y, r->t, o->i[0], o->i[1], r->pos, o->f[0]);
}

/* rope_freq: y in place, p0 inv_freq (i1 / 2 floats), i0 heads, i1 head_dim, at pos[j]. */
static int op_rope_freq(const q8_op *o, const plan_rows *r) {
    return q8_rope_freq(o->y, r->t, o->i[0], o->i[1], r->pos, o->p[0]);
}

/* kv_write: p0 k, p1 v, p2 key cache, p3 value cache, i0 n_kv, i1 cap, i2 head_dim, i3 n_slots
 * (q8_kv_write_rows). */
static int op_kv_write(const q8_op *o, const plan_rows *r) {
    const int64_t *i = o->i;
    return q8_kv_write_rows(o->p[0], o->p[1], r->t, r->slots, r->pos, (float *)o->p[2],
                            (float *)o->p[3], i[3], i[0], i[1], i[2]);
}

/* attention: p0 q, p1 key cache, p2 value cache, i0 heads, i1 n_kv, i2 cap, i3 head_dim,
 * i4 window, i5 n_slots, f0 scale, f1 softcap (q8_attention_rows). */
static int op_attention(const q8_op *o, const plan_rows *r) {
    const int64_t *i = o->i;
    return q8_attention_rows(o->p[0], r->t, r->slots, r->pos, o->p[1], o->p[2], i[5], i[0], i[1],
                             i[2], i[3], i[4], o->f[0], o->f[1], o->y);
}

/* add: p0 a, p1 b, i0 n. */
static int op_add(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_add(o->p[0], o->p[1], r->t * o->i[0], o->y);
}

/* gelu: p0 x, i0 n. */
static int op_gelu(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_gelu_tanh(o->p[0], r->t * o->i[0], o->y);
}

/* geglu_rows / swiglu_rows: p0 gate|up, i0 rows, i1 n. */
static int op_geglu_rows(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_geglu_rows(o->p[0], r->t * o->i[0], o->i[1], o->y);
}

static int op_swiglu_rows(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(q8_mat_ok(r->t, o->i[0]));
    return q8_swiglu_rows(o->p[0], r->t * o->i[0], o->i[1], o->y);
}

/* copy_cols: p0 x (rows of i0), i1 c0, i2 width: y[j] = x[j][c0 .. c0 + width). */
static int op_copy_cols(const q8_op *o, const plan_rows *r) {
    return q8_copy_cols(o->p[0], r->t, o->i[0], o->i[1], o->i[2], o->y);
}

/* mark: marks[i0] = CLOCK_MONOTONIC now in ns, when marks is not NULL (i0 < n_marks). */
static int op_mark(const q8_op *o, const plan_rows *r) {
    Q8_CHECK(o->i[0] >= 0 && (!r->marks || o->i[0] < r->n_marks));
    if (r->marks) r->marks[o->i[0]] = q8_now_ns();
    return Q8_OK;
}

/* An op's kind is its index here plus one (0 is no op). */
static const struct {
    const char *name;
    op_fn run;
} OPS[] = {
    {"embed_q8", op_embed_q8},       {"embed_q4", op_embed_q4},   {"embed_f32", op_embed_f32},
    {"add_row", op_add_row},         {"scale", op_scale},         {"layernorm", op_layernorm},
    {"rmsnorm", op_rmsnorm},         {"gemv_q8", op_gemv_q8},     {"gemv_q4", op_gemv_q4},
    {"gemv_f32", op_gemv_f32},       {"rope", op_rope},           {"rope_freq", op_rope_freq},
    {"kv_write", op_kv_write},       {"attention", op_attention}, {"add", op_add},
    {"gelu", op_gelu},               {"geglu_rows", op_geglu_rows}, {"swiglu_rows", op_swiglu_rows},
    {"copy_cols", op_copy_cols},     {"mark", op_mark},
};
enum { N_OPS = (int)(sizeof OPS / sizeof OPS[0]) };

int32_t q8_op_kind(const char *name) {
    if (!name) return Q8_EINVAL;
    for (int k = 0; k < N_OPS; k++)
        if (strcmp(OPS[k].name, name) == 0) return k + 1;
    return Q8_EINVAL;
}

int q8_plan_run(const q8_op *ops, int64_t n_ops, int64_t t, const int64_t *tokens,
                const int64_t *slots, const int64_t *pos, int64_t *marks, int64_t n_marks) {
    Q8_CHECK(ops && n_ops > 0 && tokens && slots && pos && t > 0 && t <= Q8_PLAN_MAX_ROWS);
    Q8_CHECK(!marks || n_marks > 0);
    for (int64_t j = 0; j < t; j++) Q8_CHECK(pos[j] >= 0 && pos[j] <= Q8_MAX_DIM && slots[j] >= 0);
    const plan_rows rows = {t, tokens, slots, pos, marks, n_marks};
    for (int64_t k = 0; k < n_ops; k++) {
        const q8_op *o = &ops[k];
        Q8_CHECK(o->reserved == 0 && o->kind >= 1 && o->kind <= N_OPS);
        const int rc = OPS[o->kind - 1].run(o, &rows);
        if (rc != Q8_OK) return rc;
    }
    return Q8_OK;
}
