/*
 * fastsoftmax C interface: softmax, log_softmax and logsumexp over slices of a
 * strided array.
 *
 * The caller (the Cython bridge) describes the input as a batch of slices: each
 * slice has `n` elements `step` bytes apart, and the slices are laid out over an
 * outer index space of up to FSM_MAX_DIMS dimensions with byte strides. The
 * output of softmax and log_softmax has the same slice layout with its own
 * strides; the output of logsumexp has one element per slice. An optional mask
 * of bytes (1 = the entry takes part) has its own strides, which may be 0 for
 * broadcast dimensions.
 *
 * Every pointer must be aligned for its element type; the bridge copies
 * unaligned arrays first.
 */
#ifndef FASTSOFTMAX_H
#define FASTSOFTMAX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FSM_MAX_DIMS 64

typedef enum { FSM_SOFTMAX = 0, FSM_LOG_SOFTMAX = 1, FSM_LOGSUMEXP = 2 } fsm_op;

typedef enum { FSM_FLOAT32 = 0, FSM_FLOAT64 = 1 } fsm_dtype;

/* SIMD paths, in increasing order of preference. */
typedef enum { FSM_GENERIC = 0, FSM_AVX2 = 1, FSM_AVX512 = 2 } fsm_isa;

/* Return codes of fsm_run. */
enum { FSM_OK = 0, FSM_ENOMEM = 1, FSM_EINVAL = 2 };

typedef struct {
    fsm_op op;
    fsm_dtype dtype; /* of both input and output */
    const char *x;
    char *out;
    const unsigned char *mask; /* NULL when every entry takes part */

    ptrdiff_t n; /* slice length, >= 0 */
    ptrdiff_t x_step, out_step, mask_step; /* byte strides along a slice */

    int outer_ndim; /* 0 <= outer_ndim <= FSM_MAX_DIMS */
    ptrdiff_t outer_shape[FSM_MAX_DIMS];
    ptrdiff_t x_outer[FSM_MAX_DIMS]; /* byte strides of the outer dimensions */
    ptrdiff_t out_outer[FSM_MAX_DIMS];
    ptrdiff_t mask_outer[FSM_MAX_DIMS];
} fsm_call;

/*
 * Compute `call` on up to `threads` threads. Returns FSM_OK, FSM_ENOMEM when a
 * scratch buffer could not be allocated, or FSM_EINVAL for a malformed call.
 * Does not touch the Python interpreter, so the caller may release the GIL.
 */
int fsm_run(const fsm_call *call, int threads);

/* SIMD paths this CPU and build can run, as a bit set of (1 << fsm_isa). */
unsigned fsm_supported_isas(void);

/* The path fsm_run uses now. */
fsm_isa fsm_get_isa(void);

/* Select a supported path; returns 0, or -1 if `isa` is not supported. */
int fsm_set_isa(fsm_isa isa);

/* Non-zero when the library was built with OpenMP. */
int fsm_has_openmp(void);

#ifdef __cplusplus
}
#endif

#endif /* FASTSOFTMAX_H */
