# cython: language_level=3
"""Bridge from fastsoftmax.attention to the C attention kernel.

The Python layer validates every argument and passes arrays that the kernel
may trust: compute dtype (float32 or float64), native byte order, aligned,
strides in whole elements. This module only copies the description into the
C struct and releases the GIL around the call.
"""

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.stdint cimport int64_t

cdef extern from "attention.h" nogil:
    ctypedef void fsm_sgemm_fn(char *, char *, int *, int *, int *, float *,
                               float *, int *, float *, int *, float *,
                               float *, int *)
    ctypedef void fsm_dgemm_fn(char *, char *, int *, int *, int *, double *,
                               double *, int *, double *, int *, double *,
                               double *, int *)

    ctypedef struct fsm_attn_operand:
        const void *data
        const int64_t *batch_offset
        int64_t head_stride
        int64_t row_stride
        int64_t col_stride

    ctypedef struct fsm_attn_args:
        int dtype
        int64_t batch
        int64_t q_heads
        int64_t kv_heads
        int64_t q_len
        int64_t kv_len
        int64_t head_dim
        int64_t value_dim
        fsm_attn_operand q
        fsm_attn_operand k
        fsm_attn_operand v
        fsm_attn_operand mask
        fsm_attn_operand out
        fsm_attn_operand lse
        int mask_kind
        int causal
        double scale
        int threads

    int FSM_ATTN_OK
    int FSM_ATTN_NO_MEMORY
    int FSM_ATTN_NO_BLAS

    void fsm_attn_set_blas(fsm_sgemm_fn *sgemm, fsm_dgemm_fn *dgemm)
    int fsm_attention(const fsm_attn_args *args)
    const char *fsm_attn_simd_name()
    int fsm_attn_simd_supported(const char **names)
    int fsm_attn_set_simd(const char *name)
    int fsm_attn_has_openmp()


def load_blas(sgemm_capsule, dgemm_capsule):
    """Store the GEMM routines of two ``scipy.linalg.cython_blas`` capsules."""
    cdef void *sgemm = PyCapsule_GetPointer(
        sgemm_capsule, PyCapsule_GetName(sgemm_capsule)
    )
    cdef void *dgemm = PyCapsule_GetPointer(
        dgemm_capsule, PyCapsule_GetName(dgemm_capsule)
    )
    fsm_attn_set_blas(<fsm_sgemm_fn *>sgemm, <fsm_dgemm_fn *>dgemm)


def simd_name():
    """Return the name of the SIMD path the row kernels use."""
    return fsm_attn_simd_name().decode()


def simd_supported():
    """Return the names of the SIMD paths this CPU runs, lowest first."""
    cdef const char *names[3]
    cdef int count = fsm_attn_simd_supported(names)
    return [names[i].decode() for i in range(count)]


def set_simd(name):
    """Select the SIMD path ``name`` and return the previous one."""
    previous = simd_name()
    if fsm_attn_set_simd(name.encode()) != 0:
        raise ValueError(
            f"SIMD path {name!r} is not supported here; expected one of "
            f"{simd_supported()}"
        )
    return previous


def has_openmp():
    """Return True if the kernel was built with OpenMP."""
    return fsm_attn_has_openmp() != 0


cdef void fill_operand(fsm_attn_operand *operand, spec) except *:
    """Copy ``(address, batch_offsets, head, row, col strides)`` to operand."""
    cdef const int64_t[::1] offsets
    if spec is None:
        operand.data = NULL
        operand.batch_offset = NULL
        operand.head_stride = 0
        operand.row_stride = 0
        operand.col_stride = 0
        return
    address, batch_offsets, head_stride, row_stride, col_stride = spec
    offsets = batch_offsets
    operand.data = <const void *><size_t>address
    operand.batch_offset = &offsets[0] if offsets.shape[0] > 0 else NULL
    operand.head_stride = head_stride
    operand.row_stride = row_stride
    operand.col_stride = col_stride


def run(int dtype, tuple dims, q, k, v, mask, out, lse, int mask_kind,
        int causal, double scale, int threads):
    """Run the kernel on operands described as in ``fill_operand``.

    ``dims`` is ``(batch, q_heads, kv_heads, q_len, kv_len, head_dim,
    value_dim)``. The arrays behind every operand must stay alive until this
    call returns.
    """
    cdef fsm_attn_args args
    cdef int status
    args.dtype = dtype
    (args.batch, args.q_heads, args.kv_heads, args.q_len, args.kv_len,
     args.head_dim, args.value_dim) = dims
    fill_operand(&args.q, q)
    fill_operand(&args.k, k)
    fill_operand(&args.v, v)
    fill_operand(&args.mask, mask)
    fill_operand(&args.out, out)
    fill_operand(&args.lse, lse)
    args.mask_kind = mask_kind
    args.causal = causal
    args.scale = scale
    args.threads = threads
    with nogil:
        status = fsm_attention(&args)
    if status == FSM_ATTN_NO_MEMORY:
        raise MemoryError("attention could not allocate its per-thread scratch")
    if status == FSM_ATTN_NO_BLAS:
        raise RuntimeError("attention was called before its BLAS was loaded")


# Detect the SIMD path at import, while the GIL serialises callers.
simd_name()
