/*
 * Internal interface between the dispatcher (dispatch.c) and the per-ISA
 * kernels (kernel_generic.c, kernel_avx2.c, kernel_avx512.c), and the scalar
 * steps every path shares so that they round alike.
 */
#ifndef FASTSOFTMAX_KERNEL_H
#define FASTSOFTMAX_KERNEL_H

#include <stddef.h>

#include "fastsoftmax.h"

/* How the slices of a call are walked. */
typedef enum {
    FSM_MODE_ROWS = 0,    /* contiguous slices, no mask: read and written in place */
    FSM_MODE_GATHER = 1,  /* any other slice: copied to scratch, computed, copied back */
    FSM_MODE_COLUMNS = 2, /* slices side by side along a contiguous outer dimension:
                             one vector lane per slice */
} fsm_mode;

/*
 * Elements per chunk of a long slice. A slice of at most FSM_CHUNK elements
 * stays in cache between its passes. A longer one is summed chunk by chunk
 * with an online rescaling, so it is read from memory at most twice.
 */
#define FSM_CHUNK 4096

/*
 * Partial sums per slice. Element i of a slice is added to partial sum
 * i % FSM_PARTIALS whatever the mode, which is what makes a slice's result
 * independent of the mode, the thread and the batch it is computed in.
 */
#define FSM_PARTIALS 8

/*
 * Bytes per row of a block in FSM_MODE_COLUMNS: 64 float32 or 32 float64
 * lanes. Strided rows of a few cache lines read and write much faster than
 * rows of one line, and a chunk of FSM_CHUNK such rows (1 MiB) still fits in
 * a typical L2 cache.
 */
#define FSM_COLUMN_BYTES 256

/* Work units of a call (slices, or blocks of columns) and their offsets. */
ptrdiff_t fsm_unit_count(const fsm_call *call, fsm_mode mode);
void fsm_unit_offsets(const fsm_call *call, fsm_mode mode, ptrdiff_t unit,
                      ptrdiff_t *x_offset, ptrdiff_t *out_offset,
                      ptrdiff_t *mask_offset, ptrdiff_t *lanes);

/* A sum of exponentials as an unevaluated pair hi + lo, |lo| <= ulp(hi). */
typedef struct {
    double hi;
    double lo;
} fsm_sum;

/*
 * Add the FSM_PARTIALS partial sums (sums[k] + compensations[k]) in a fixed
 * pairwise tree whose additions keep their rounding errors (TwoSum).
 */
fsm_sum fsm_reduce_partials(const double *sums, const double *compensations);

/* The same tree without error terms, for sums that need only their leading
   digits (float32 softmax). */
fsm_sum fsm_reduce_partials_plain(const double *sums);

/*
 * Fold the sum `chunk` of exp(x - chunk_max) over one chunk into the running
 * (*max, *sum) of exp(x - *max). Both maxima must be finite.
 */
void fsm_combine_chunk(double *max, fsm_sum *sum, double chunk_max, fsm_sum chunk);

/* exp(a - b) for a <= b, with a - b taken exactly. */
double fsm_exp_difference(double a, double b);

/*
 * Chunks of a long float32 softmax slice whose exponentials are stored and
 * rescaled chunk by chunk, so each element is exponentiated once. A longer
 * slice (more than FSM_STORED_CHUNKS * FSM_CHUNK elements) exponentiates again
 * in its final pass instead.
 */
#define FSM_STORED_CHUNKS 256

/* log(hi + lo) for a sum that is at least 1, accurate also when it is near 1. */
double fsm_log_sum(fsm_sum sum);

/*
 * logsumexp of a slice whose max + log(sum) cancels: whether the fast result
 * `lse` of a `dtype` slice needs it, and the slice's value from a
 * double-double sum. x is byte-strided; excluded entries must already be -inf.
 */
int fsm_logsumexp_cancels(double log_sum, double lse, fsm_dtype dtype);
double fsm_logsumexp_precise(const char *x, ptrdiff_t step, ptrdiff_t n, double max,
                             fsm_dtype dtype);

typedef int (*fsm_kernel_fn)(const fsm_call *call, fsm_mode mode, ptrdiff_t begin,
                             ptrdiff_t end, void *scratch);

int fsm_kernel_generic(const fsm_call *call, fsm_mode mode, ptrdiff_t begin,
                       ptrdiff_t end, void *scratch);
#if defined(__x86_64__) || defined(__i386__)
int fsm_kernel_avx2(const fsm_call *call, fsm_mode mode, ptrdiff_t begin,
                    ptrdiff_t end, void *scratch);
int fsm_kernel_avx512(const fsm_call *call, fsm_mode mode, ptrdiff_t begin,
                      ptrdiff_t end, void *scratch);
#endif

#endif /* FASTSOFTMAX_KERNEL_H */
