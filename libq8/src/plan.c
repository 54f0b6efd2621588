/* Decode plans: the ops of one decode step run back to back in C (see q8.h). A GPT-2 step is
 * ~130 calls into libq8; made one by one from Python they cost ~3% of the step in the
 * interpreter and cffi. Every op goes through the public entry point it names, so a plan
 * checks and computes exactly what those calls would. */
#include "q8_internal.h"

/* One op over t rows; `rows` holds the rows' tokens, slots and positions. */
typedef struct {
    int64_t t;
    const int64_t *tokens, *slots, *pos;
} plan_rows;

/* Row `token` of the i[0] x i[1] embedding table p[0] (packed Q8_0, packed Q4_0 or f32) to out. */
static int embed_row(const q8_op *o, int64_t token, float *out) {
    const int64_t *i = o->i;
    switch (o->kind) {
    case Q8_OP_EMBED_Q8:
        return q8_dequantize_packed(o->p[0], i[0], i[1], token, 1, out);
    case Q8_OP_EMBED_Q4:
        return q8_q4_dequantize_packed(o->p[0], i[0], i[1], token, 1, out);
    default:
        memcpy(out, (const float *)o->p[0] + token * i[1], (size_t)i[1] * sizeof(float));
        return Q8_OK;
    }
}

static int run_op(const q8_op *o, const plan_rows *r, int64_t *marks, int64_t n_marks) {
    const float *x = o->p[0], *b = o->p[1], *c = o->p[2];
    const int64_t *i = o->i, t = r->t;
    switch (o->kind) {
    case Q8_OP_EMBED_Q8:
    case Q8_OP_EMBED_Q4:
    case Q8_OP_EMBED_F32:
        Q8_CHECK(o->p[0] && o->y && q8_mat_ok(i[0], i[1]));
        for (int64_t j = 0; j < t; j++) {
            Q8_CHECK(r->tokens[j] >= 0 && r->tokens[j] < i[0]);
            const int rc = embed_row(o, r->tokens[j], o->y + j * i[1]);
            if (rc != Q8_OK) return rc;
        }
        return Q8_OK;
    case Q8_OP_ADD_ROW:
        Q8_CHECK(o->p[0] && b && o->y && q8_mat_ok(i[0], i[1]));
        for (int64_t j = 0; j < t; j++) {
            Q8_CHECK(r->pos[j] < i[0]);
            const int rc = q8_add(b + j * i[1], x + r->pos[j] * i[1], i[1], o->y + j * i[1]);
            if (rc != Q8_OK) return rc;
        }
        return Q8_OK;
    case Q8_OP_SCALE:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_scale(x, o->f[0], t * i[0], o->y);
    case Q8_OP_LAYERNORM:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_layernorm(x, b, c, t * i[0], i[1], o->f[0], o->y);
    case Q8_OP_RMSNORM:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_rmsnorm(x, b, t * i[0], i[1], o->f[0], o->f[1], o->y);
    case Q8_OP_GEMV_Q8:
        if (t == 1) return q8_gemv(o->p[0], i[0], i[1], b, c, o->y);
        return q8_gemm(o->p[0], i[0], i[1], b, t, c, o->y);
    case Q8_OP_GEMV_Q4:
        if (t == 1) return q8_q4_gemv(o->p[0], i[0], i[1], b, c, o->y);
        return q8_q4_gemm(o->p[0], i[0], i[1], b, t, c, o->y);
    case Q8_OP_GEMV_F32:
        if (t == 1) return q8_gemv_f32(x, i[0], i[1], b, c, o->y);
        return q8_gemm_f32(x, i[0], i[1], b, t, c, o->y);
    case Q8_OP_ROPE:
        return q8_rope(o->y, t, i[0], i[1], r->pos, o->f[0]);
    case Q8_OP_KV_WRITE:
        return q8_kv_write_rows(x, b, t, r->slots, r->pos, (float *)o->p[2], (float *)o->p[3], i[3],
                                i[0], i[1], i[2]);
    case Q8_OP_ATTENTION:
        return q8_attention_rows(x, t, r->slots, r->pos, b, c, i[5], i[0], i[1], i[2], i[3], i[4],
                                 o->f[0], o->f[1], o->y);
    case Q8_OP_ADD:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_add(x, b, t * i[0], o->y);
    case Q8_OP_GELU:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_gelu_tanh(x, t * i[0], o->y);
    case Q8_OP_GEGLU_ROWS:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_geglu_rows(x, t * i[0], i[1], o->y);
    case Q8_OP_SWIGLU_ROWS:
        Q8_CHECK(q8_mat_ok(t, i[0]));
        return q8_swiglu_rows(x, t * i[0], i[1], o->y);
    case Q8_OP_ROPE_FREQ:
        return q8_rope_freq(o->y, t, i[0], i[1], r->pos, x);
    case Q8_OP_COPY_COLS:
        return q8_copy_cols(x, t, i[0], i[1], i[2], o->y);
    case Q8_OP_MARK:
        Q8_CHECK(i[0] >= 0 && (!marks || i[0] < n_marks));
        if (marks) marks[i[0]] = q8_now_ns();
        return Q8_OK;
    default:
        return Q8_EINVAL;
    }
}

int q8_plan_run(const q8_op *ops, int64_t n_ops, int64_t t, const int64_t *tokens,
                const int64_t *slots, const int64_t *pos, int64_t *marks, int64_t n_marks) {
    Q8_CHECK(ops && n_ops > 0 && tokens && slots && pos && t > 0 && t <= Q8_PLAN_MAX_ROWS);
    Q8_CHECK(!marks || n_marks > 0);
    for (int64_t j = 0; j < t; j++) Q8_CHECK(pos[j] >= 0 && pos[j] <= Q8_MAX_DIM && slots[j] >= 0);
    const plan_rows rows = {t, tokens, slots, pos};
    for (int64_t k = 0; k < n_ops; k++) {
        Q8_CHECK(ops[k].reserved == 0);
        const int rc = run_op(&ops[k], &rows, marks, n_marks);
        if (rc != Q8_OK) return rc;
    }
    return Q8_OK;
}
