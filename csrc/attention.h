/* Fused scaled-dot-product attention: the interface between the Cython bridge
 * and the C kernel. The design notes are at the top of attention.c.
 */
#ifndef FASTSOFTMAX_ATTENTION_H
#define FASTSOFTMAX_ATTENTION_H

#include <stdint.h>

enum fsm_attn_dtype { FSM_ATTN_FLOAT32 = 0, FSM_ATTN_FLOAT64 = 1 };

enum fsm_attn_mask_kind {
    FSM_ATTN_MASK_NONE = 0,
    FSM_ATTN_MASK_BOOL = 1,  /* uint8 elements, nonzero = may attend */
    FSM_ATTN_MASK_FLOAT = 2, /* elements of the computation dtype, added */
};

enum fsm_attn_causal {
    FSM_ATTN_CAUSAL_NONE = 0,
    FSM_ATTN_CAUSAL_LOWER_RIGHT = 1, /* key j allowed when j <= i + S - L */
    FSM_ATTN_CAUSAL_UPPER_LEFT = 2,  /* key j allowed when j <= i */
};

enum fsm_attn_status {
    FSM_ATTN_OK = 0,
    FSM_ATTN_NO_MEMORY = 1,
    FSM_ATTN_NO_BLAS = 2,
};

/* Fortran-convention GEMM, as exported by scipy.linalg.cython_blas: column
 * major, every argument passed by pointer. `real` is float or double. */
typedef void fsm_sgemm_fn(char *transa, char *transb, int *m, int *n, int *k,
                          float *alpha, float *a, int *lda, float *b, int *ldb,
                          float *beta, float *c, int *ldc);
typedef void fsm_dgemm_fn(char *transa, char *transb, int *m, int *n, int *k,
                          double *alpha, double *a, int *lda, double *b,
                          int *ldb, double *beta, double *c, int *ldc);

/* One strided 4-D operand (batch, head, row, column). Strides count elements
 * and may be zero or negative. batch_offset[b] is the element offset of batch
 * entry b from data. */
typedef struct {
    const void *data;
    const int64_t *batch_offset;
    int64_t head_stride;
    int64_t row_stride;
    int64_t col_stride;
} fsm_attn_operand;

typedef struct {
    int dtype; /* enum fsm_attn_dtype, for q, k, v, a float mask, out, lse */
    int64_t batch;
    int64_t q_heads;
    int64_t kv_heads; /* q_heads is a multiple of kv_heads */
    int64_t q_len;
    int64_t kv_len;
    int64_t head_dim;
    int64_t value_dim;
    fsm_attn_operand q; /* (batch, q_heads, q_len, head_dim) */
    fsm_attn_operand k; /* (batch, kv_heads, kv_len, head_dim) */
    fsm_attn_operand v; /* (batch, kv_heads, kv_len, value_dim) */
    fsm_attn_operand
        mask; /* (batch, q_heads, q_len, kv_len), data NULL if none */
    fsm_attn_operand out; /* (batch, q_heads, q_len, value_dim), written */
    fsm_attn_operand
        lse;       /* (batch, q_heads, q_len), written; data NULL if unused */
    int mask_kind; /* enum fsm_attn_mask_kind */
    int causal;    /* enum fsm_attn_causal */
    double scale;
    int threads;
} fsm_attn_args;

/* Store the GEMM routines used by every later call; either may be NULL. */
void fsm_attn_set_blas(fsm_sgemm_fn *sgemm, fsm_dgemm_fn *dgemm);

/* Compute the attention described by args. Returns an enum fsm_attn_status;
 * on failure the contents of out and lse are unspecified. */
int fsm_attention(const fsm_attn_args *args);

/* SIMD paths for the block softmax: "generic", "avx2", "avx512". */
const char *fsm_attn_simd_name(void);
/* Number of path names this CPU runs, written to names (at most 3). */
int fsm_attn_simd_supported(const char **names);
/* Select a supported path by name; returns 0, or -1 if unsupported. */
int fsm_attn_set_simd(const char *name);
/* 1 if built with OpenMP, else 0. */
int fsm_attn_has_openmp(void);

#endif
