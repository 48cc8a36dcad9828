/* Tiled attention driver, written once and compiled once per dtype.
 * attention.c includes this file twice with these names defined:
 *
 *   REAL            element type
 *   GEMM_FN_TYPE    fsm_sgemm_fn or fsm_dgemm_fn
 *   GEMM_POINTER    the stored BLAS routine of that type
 *   SOFTMAX_KERNELS struct of softmax kernel pointers for this dtype
 *   TILE_FN(name)   name with the dtype suffix
 */

/* Per-thread scratch; every size is a block size, none depends on L or S.
 * Score-shaped buffers are keys x rows, see attention_softmax.h. */
typedef struct {
    REAL *q_pack;     /* block_q x head_dim, column-major */
    REAL *k_pack;     /* block_k x head_dim */
    REAL *v_pack;     /* block_k x value_dim */
    REAL *scores;     /* block_k x block_q_padded */
    REAL *probs;      /* block_k x block_q_padded */
    REAL *bias;       /* block_k x block_q_padded, the staged mask */
    REAL *acc;        /* block_q x value_dim_padded */
    REAL *row_max;    /* block_q_padded */
    REAL *row_sum;    /* block_q_padded */
    REAL *alpha;      /* block_q_padded */
    int64_t *bad_key; /* block_k, keys whose v row is not finite */
    void *memory;
} TILE_FN(workspace);

static int TILE_FN(workspace_alloc)(TILE_FN(workspace) * w,
                                    const fsm_attn_args *a,
                                    const attn_tiling *t)
{
    enum { BUFFERS = 11 };
    int64_t block_area = t->block_k * t->block_q_padded;
    int64_t counts[BUFFERS] = {
        t->block_q * a->head_dim,
        t->block_k * a->head_dim,
        t->block_k * a->value_dim,
        block_area,
        block_area,
        block_area,
        t->block_q * t->value_dim_padded,
        t->block_q_padded,
        t->block_q_padded,
        t->block_q_padded,
        t->block_k,
    };
    int64_t offsets[BUFFERS];
    int64_t total = 0;
    for (int i = 0; i < BUFFERS; i++) {
        int64_t element = i == BUFFERS - 1 ? sizeof(int64_t) : sizeof(REAL);
        offsets[i] = total;
        total += round_up(counts[i] * element, SCRATCH_ALIGN);
    }
    char *base = scratch_alloc(total);
    if (base == NULL) {
        return 0;
    }
    w->memory = base;
    w->q_pack = (REAL *)(base + offsets[0]);
    w->k_pack = (REAL *)(base + offsets[1]);
    w->v_pack = (REAL *)(base + offsets[2]);
    w->scores = (REAL *)(base + offsets[3]);
    w->probs = (REAL *)(base + offsets[4]);
    w->bias = (REAL *)(base + offsets[5]);
    w->acc = (REAL *)(base + offsets[6]);
    w->row_max = (REAL *)(base + offsets[7]);
    w->row_sum = (REAL *)(base + offsets[8]);
    w->alpha = (REAL *)(base + offsets[9]);
    w->bad_key = (int64_t *)(base + offsets[10]);
    return 1;
}

/* Return a BLAS view of a row-major block of `rows` x `cols` elements at
 * base with the given strides: base itself when the columns are contiguous
 * and the row stride is a valid leading dimension, else a copy in pack. The
 * leading dimension is written to *ld. */
static const REAL *TILE_FN(blas_view)(const REAL *base, int64_t rows,
                                      int64_t cols, int64_t row_stride,
                                      int64_t col_stride, REAL *pack, int *ld)
{
    int64_t min_ld = cols > 1 ? cols : 1;
    if (col_stride == 1 || cols <= 1) {
        if (rows <= 1) {
            *ld = (int)min_ld;
            return base;
        }
        if (row_stride >= min_ld && row_stride <= INT_MAX) {
            *ld = (int)row_stride;
            return base;
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            pack[r * cols + c] = base[r * row_stride + c * col_stride];
        }
    }
    *ld = (int)min_ld;
    return pack;
}

/* C = alpha op(A) op(B) + beta C through the stored BLAS routine. BLAS calls
 * with k = 0 are avoided because implementations differ in what they do. */
static void TILE_FN(gemm)(char transa, char transb, int64_t m, int64_t n,
                          int64_t k, REAL alpha, const REAL *a, int lda,
                          const REAL *b, int ldb, REAL beta, REAL *c, int ldc)
{
    if (m == 0 || n == 0) {
        return;
    }
    if (k == 0) {
        if (beta == 0) {
            for (int64_t j = 0; j < n; j++) {
                memset(c + j * ldc, 0, (size_t)m * sizeof(REAL));
            }
        }
        return;
    }
    int mi = (int)m;
    int ni = (int)n;
    int ki = (int)k;
    GEMM_POINTER(&transa, &transb, &mi, &ni, &ki, &alpha, (REAL *)a, &lda,
                 (REAL *)b, &ldb, &beta, c, &ldc);
}

/* Copy the mask entries of rows x keys into bias (keys x rows_padded) as
 * additive values: a boolean mask becomes 0 (may attend) or -inf, a floating
 * mask is copied. */
static void TILE_FN(stage_mask)(const fsm_attn_args *a, const char *first,
                                int64_t rows, int64_t keys, int64_t rows_padded,
                                REAL *bias)
{
    int64_t row_stride = a->mask.row_stride;
    int64_t col_stride = a->mask.col_stride;
    for (int64_t r = 0; r < rows; r++) {
        if (a->mask_kind == FSM_ATTN_MASK_BOOL) {
            const uint8_t *m = (const uint8_t *)first + r * row_stride;
            for (int64_t c = 0; c < keys; c++) {
                bias[c * rows_padded + r] =
                    m[c * col_stride] ? (REAL)0 : (REAL)-INFINITY;
            }
        } else {
            const REAL *m = (const REAL *)first + r * row_stride;
            for (int64_t c = 0; c < keys; c++) {
                bias[c * rows_padded + r] = m[c * col_stride];
            }
        }
    }
}

/* Store in bad_key the indices of the rows of v_block (keys rows) that hold
 * inf or NaN and return their number. */
static int64_t TILE_FN(find_bad_keys)(const fsm_attn_args *a,
                                      const SOFTMAX_KERNELS *rk,
                                      const REAL *v_block, int64_t keys,
                                      int64_t *bad_key)
{
    int64_t count = 0;
    for (int64_t c = 0; c < keys; c++) {
        const REAL *v_row = v_block + c * a->v.row_stride;
        int finite;
        if (a->v.col_stride == 1) {
            finite = rk->row_is_finite(v_row, a->value_dim);
        } else {
            finite = 1;
            for (int64_t d = 0; d < a->value_dim; d++) {
                REAL x = v_row[d * a->v.col_stride];
                finite &= (x - x) == 0;
            }
        }
        if (!finite) {
            bad_key[count++] = c;
        }
    }
    return count;
}

/* Set finite_blocks[(batch * kv_heads + kv_head) * k_blocks + block] to 1
 * when every v row of that key block is finite, else 0. Work is shared among
 * the threads of the enclosing parallel region. */
static void TILE_FN(find_finite_blocks)(const fsm_attn_args *a,
                                        const attn_tiling *t,
                                        const SOFTMAX_KERNELS *rk,
                                        int64_t *scratch,
                                        uint8_t *finite_blocks)
{
    int64_t count = a->batch * a->kv_heads * t->k_blocks;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t i = 0; i < count; i++) {
        int64_t block = i % t->k_blocks;
        int64_t kv_head = (i / t->k_blocks) % a->kv_heads;
        int64_t batch = i / t->k_blocks / a->kv_heads;
        int64_t j0 = block * t->block_k;
        int64_t keys =
            a->kv_len - j0 < t->block_k ? a->kv_len - j0 : t->block_k;
        const REAL *v_block = (const REAL *)a->v.data +
                              a->v.batch_offset[batch] +
                              kv_head * a->v.head_stride + j0 * a->v.row_stride;
        finite_blocks[i] =
            TILE_FN(find_bad_keys)(a, rk, v_block, keys, scratch) == 0;
    }
}

/* Compute one task: query rows [i0, i0 + rows) of one batch entry and head,
 * against every key block the causal limit leaves in reach. */
static void TILE_FN(attention_task)(const fsm_attn_args *a,
                                    const attn_tiling *t,
                                    const SOFTMAX_KERNELS *rk,
                                    TILE_FN(workspace) * w,
                                    const uint8_t *finite_blocks, int64_t task)
{
    /* Step 1: locate the task and the keys in reach of its last row. */
    int64_t q_block = task % t->q_blocks;
    int64_t head = (task / t->q_blocks) % a->q_heads;
    int64_t batch = task / t->q_blocks / a->q_heads;
    int64_t kv_head = head / (a->q_heads / a->kv_heads);
    int64_t i0 = q_block * t->block_q;
    int64_t rows = a->q_len - i0 < t->block_q ? a->q_len - i0 : t->block_q;
    int64_t diagonal = causal_offset(a);
    int64_t key_end = a->kv_len;
    if (a->causal != FSM_ATTN_CAUSAL_NONE) {
        key_end = clamp(i0 + rows + diagonal, 0, a->kv_len);
    }
    int64_t head_dim = a->head_dim;
    int64_t value_dim = a->value_dim;
    int64_t rows_pad = t->block_q_padded;
    int64_t dv_pad = t->value_dim_padded;
    const REAL scale = (REAL)a->scale;

    const REAL *q = (const REAL *)a->q.data + a->q.batch_offset[batch] +
                    head * a->q.head_stride + i0 * a->q.row_stride;
    const REAL *k = (const REAL *)a->k.data + a->k.batch_offset[batch] +
                    kv_head * a->k.head_stride;
    const REAL *v = (const REAL *)a->v.data + a->v.batch_offset[batch] +
                    kv_head * a->v.head_stride;
    const char *mask_rows = NULL;
    if (a->mask_kind != FSM_ATTN_MASK_NONE) {
        int64_t elem = a->mask_kind == FSM_ATTN_MASK_BOOL ? 1 : sizeof(REAL);
        mask_rows =
            (const char *)a->mask.data +
            elem * (a->mask.batch_offset[batch] + head * a->mask.head_stride +
                    i0 * a->mask.row_stride);
    }

    for (int64_t r = 0; r < rows_pad; r++) {
        w->row_max[r] = -INFINITY;
        w->row_sum[r] = 0;
    }
    memset(w->acc, 0, (size_t)(rows * dv_pad) * sizeof(REAL));

    /* The Q block is packed column-major (rows x head_dim), the form the
     * score GEMM below needs. */
    for (int64_t d = 0; d < head_dim; d++) {
        const REAL *q_col = q + d * a->q.col_stride;
        REAL *pack_col = w->q_pack + d * rows;
        for (int64_t r = 0; r < rows; r++) {
            pack_col[r] = q_col[r * a->q.row_stride];
        }
    }

    for (int64_t j0 = 0; j0 < key_end; j0 += t->block_k) {
        int64_t keys = key_end - j0 < t->block_k ? key_end - j0 : t->block_k;

        /* Step 2: raw scores, keys x rows with row stride rows_pad. In
         * column-major terms that is the rows x keys matrix Q K^T, with Q
         * packed column-major and K's row-major storage read as K^T. */
        int ld_k;
        const REAL *k_block = TILE_FN(blas_view)(
            k + j0 * a->k.row_stride, keys, head_dim, a->k.row_stride,
            a->k.col_stride, w->k_pack, &ld_k);
        TILE_FN(gemm)('N', 'N', rows, keys, head_dim, 1, w->q_pack, (int)rows,
                      k_block, ld_k, 0, w->scores, (int)rows_pad);

        /* Step 3: online softmax fused with scale, mask and causal limit,
         * then each accumulator row rescaled by its alpha. Row r may attend
         * key j0 + c when j0 + c <= i0 + r + diagonal. */
        const REAL *bias = NULL;
        if (mask_rows != NULL) {
            int64_t elem =
                a->mask_kind == FSM_ATTN_MASK_BOOL ? 1 : sizeof(REAL);
            TILE_FN(stage_mask)(a, mask_rows + elem * j0 * a->mask.col_stride,
                                rows, keys, rows_pad, w->bias);
            bias = w->bias;
        }
        int64_t causal_shift = -keys;
        if (a->causal != FSM_ATTN_CAUSAL_NONE) {
            causal_shift = clamp(j0 - i0 - diagonal, -keys, rows_pad);
        }
        rk->softmax_block(w->scores, w->probs, bias, keys, rows_pad,
                          causal_shift, scale, w->row_max, w->row_sum,
                          w->alpha);
        rk->rescale_rows(w->acc, rows, dv_pad, w->alpha);

        /* Step 4: find keys whose v row contains inf or NaN. A probability of 0
         * times such a row would be NaN, so these rows are zeroed for the
         * GEMM and added back below only where their score is above -inf.
         * finite_blocks, when present, marks the blocks that need no search. */
        const REAL *v_block = v + j0 * a->v.row_stride;
        int64_t bad_keys = 0;
        int block_finite = 0;
        if (finite_blocks != NULL) {
            int64_t kv_index = batch * a->kv_heads + kv_head;
            block_finite =
                finite_blocks[kv_index * t->k_blocks + j0 / t->block_k];
        }
        if (!block_finite) {
            bad_keys = TILE_FN(find_bad_keys)(a, rk, v_block, keys, w->bad_key);
        }

        /* Step 5: acc += P V, in column-major terms acc^T += V^T P^T with
         * the probabilities (keys x rows) read as the column-major P. */
        int ld_v;
        if (bad_keys == 0) {
            v_block =
                TILE_FN(blas_view)(v_block, keys, value_dim, a->v.row_stride,
                                   a->v.col_stride, w->v_pack, &ld_v);
        } else {
            for (int64_t c = 0; c < keys; c++) {
                for (int64_t d = 0; d < value_dim; d++) {
                    w->v_pack[c * value_dim + d] =
                        v_block[c * a->v.row_stride + d * a->v.col_stride];
                }
            }
            for (int64_t i = 0; i < bad_keys; i++) {
                memset(w->v_pack + w->bad_key[i] * value_dim, 0,
                       (size_t)value_dim * sizeof(REAL));
            }
            ld_v = value_dim > 1 ? (int)value_dim : 1;
            v_block = w->v_pack;
        }
        TILE_FN(gemm)('N', 'T', value_dim, rows, keys, 1, v_block, ld_v,
                      w->probs, (int)rows_pad, 1, w->acc, (int)dv_pad);

        /* Step 6: add the zeroed rows back for the scores above -inf. */
        const REAL *v_original = v + j0 * a->v.row_stride;
        for (int64_t i = 0; i < bad_keys; i++) {
            int64_t c = w->bad_key[i];
            const REAL *v_row = v_original + c * a->v.row_stride;
            for (int64_t r = 0; r < rows; r++) {
                if (!(w->scores[c * rows_pad + r] > -INFINITY)) {
                    continue;
                }
                REAL p = w->probs[c * rows_pad + r];
                REAL *acc_row = w->acc + r * dv_pad;
                for (int64_t d = 0; d < value_dim; d++) {
                    acc_row[d] += p * v_row[d * a->v.col_stride];
                }
            }
        }
    }

    /* Step 7: normalise once; a row with no weight gives zeros, lse -inf. */
    REAL *out = (REAL *)a->out.data + a->out.batch_offset[batch] +
                head * a->out.head_stride + i0 * a->out.row_stride;
    REAL *lse = NULL;
    if (a->lse.data != NULL) {
        lse = (REAL *)a->lse.data + a->lse.batch_offset[batch] +
              head * a->lse.head_stride + i0 * a->lse.row_stride;
    }
    rk->normalize_rows(w->acc, rows, dv_pad, w->row_max, w->row_sum);
    for (int64_t r = 0; r < rows; r++) {
        REAL *out_row = out + r * a->out.row_stride;
        const REAL *acc_row = w->acc + r * dv_pad;
        if (a->out.col_stride == 1) {
            memcpy(out_row, acc_row, (size_t)value_dim * sizeof(REAL));
        } else {
            for (int64_t d = 0; d < value_dim; d++) {
                out_row[d * a->out.col_stride] = acc_row[d];
            }
        }
        if (lse != NULL) {
            /* m + log(l) is also right for m = +inf (l counts the +inf
             * scores) and m = NaN. */
            REAL m = w->row_max[r];
            REAL l = w->row_sum[r];
            REAL value = m == -INFINITY ? (REAL)-INFINITY
                                        : (REAL)((double)m + log((double)l));
            lse[r * a->lse.row_stride] = value;
        }
    }
}

/* Run every task, in parallel over (batch, head, query block) when OpenMP is
 * available. Each output row belongs to one task, so the result does not
 * depend on the thread count or the schedule. */
static int TILE_FN(attention_run)(const fsm_attn_args *a, const attn_tiling *t,
                                  const SOFTMAX_KERNELS *rk)
{
    int64_t tasks = a->batch * a->q_heads * t->q_blocks;
    if (tasks == 0) {
        return FSM_ATTN_OK;
    }
    int threads = a->threads;
    if (threads < 1) {
        threads = 1;
    }
    if (tasks < threads) {
        threads = (int)tasks;
    }
    int status = FSM_ATTN_OK;

    /* When several tasks read each key block, search v for inf and NaN once
     * per block up front instead of once per task. */
    uint8_t *finite_blocks = NULL;
    int64_t readers = t->q_blocks * (a->q_heads / a->kv_heads);
    if (readers > 1 && t->k_blocks > 0) {
        finite_blocks = malloc((size_t)(a->batch * a->kv_heads * t->k_blocks));
        if (finite_blocks == NULL) {
            return FSM_ATTN_NO_MEMORY;
        }
    }

#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        TILE_FN(workspace) w = {0};
        int have_workspace = TILE_FN(workspace_alloc)(&w, a, t);
        if (!have_workspace) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            status = FSM_ATTN_NO_MEMORY;
        }
        if (finite_blocks != NULL) {
            /* Without a workspace every block counts as not finite, which is
             * safe, and the call fails anyway. */
            if (have_workspace) {
                TILE_FN(find_finite_blocks)(a, t, rk, w.bad_key, finite_blocks);
            } else {
                memset(finite_blocks, 0,
                       (size_t)(a->batch * a->kv_heads * t->k_blocks));
            }
        }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t task = 0; task < tasks; task++) {
            if (have_workspace) {
                TILE_FN(attention_task)(a, t, rk, &w, finite_blocks, task);
            }
        }
        if (have_workspace) {
            scratch_free(w.memory);
        }
    }
    free(finite_blocks);
    return status;
}
