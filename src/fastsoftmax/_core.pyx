# cython: language_level=3
"""Bridge from the Python API to the C kernels in csrc/.

The Python layer validates every argument and lays the arrays out as a batch
of slices; this module only copies that description into a C struct and runs
the kernel with the GIL released.
"""

from libc.stdint cimport uintptr_t


cdef extern from "fastsoftmax.h" nogil:
    int FSM_MAX_DIMS
    int FSM_OK
    int FSM_ENOMEM
    int FSM_EINVAL

    ctypedef enum fsm_op:
        pass

    ctypedef enum fsm_dtype:
        pass

    ctypedef enum fsm_isa:
        pass

    ctypedef struct fsm_call:
        fsm_op op
        fsm_dtype dtype
        const char *x
        char *out
        const unsigned char *mask
        Py_ssize_t n
        Py_ssize_t x_step
        Py_ssize_t out_step
        Py_ssize_t mask_step
        int outer_ndim
        Py_ssize_t outer_shape[64]
        Py_ssize_t x_outer[64]
        Py_ssize_t out_outer[64]
        Py_ssize_t mask_outer[64]

    int fsm_run(const fsm_call *call, int threads)
    unsigned fsm_supported_isas()
    fsm_isa fsm_get_isa()
    int fsm_set_isa(fsm_isa isa)
    int fsm_has_openmp()


ISA_NAMES = ("generic", "avx2", "avx512")
MAX_OUTER_DIMS = FSM_MAX_DIMS


def run(int op, int dtype, uintptr_t x, uintptr_t out, uintptr_t mask,
        Py_ssize_t n, Py_ssize_t x_step, Py_ssize_t out_step, Py_ssize_t mask_step,
        shape, x_strides, out_strides, mask_strides, int threads):
    """Run one kernel call; pointers are addresses, strides are in bytes."""
    cdef fsm_call call
    cdef int rc
    cdef int d
    cdef int ndim = len(shape)

    if ndim > FSM_MAX_DIMS:
        raise ValueError(f"at most {FSM_MAX_DIMS} outer dimensions are supported")
    call.op = <fsm_op>op
    call.dtype = <fsm_dtype>dtype
    call.x = <const char *>x
    call.out = <char *>out
    call.mask = <const unsigned char *>mask
    call.n = n
    call.x_step = x_step
    call.out_step = out_step
    call.mask_step = mask_step
    call.outer_ndim = ndim
    for d in range(ndim):
        call.outer_shape[d] = shape[d]
        call.x_outer[d] = x_strides[d]
        call.out_outer[d] = out_strides[d]
        call.mask_outer[d] = mask_strides[d]

    with nogil:
        rc = fsm_run(&call, threads)
    if rc == FSM_ENOMEM:
        raise MemoryError("fastsoftmax could not allocate its scratch buffer")
    if rc != FSM_OK:
        raise RuntimeError(f"fastsoftmax kernel rejected its arguments (code {rc})")


def supported_isas():
    """Return the names of the SIMD paths this CPU and build can run."""
    cdef unsigned bits = fsm_supported_isas()
    return [name for i, name in enumerate(ISA_NAMES) if bits & (1u << i)]


def get_isa():
    """Return the name of the SIMD path in use."""
    return ISA_NAMES[<int>fsm_get_isa()]


def set_isa(name):
    """Select the SIMD path ``name``; raise ValueError if it is not supported."""
    cdef int index = ISA_NAMES.index(name) if name in ISA_NAMES else -1
    if index < 0 or fsm_set_isa(<fsm_isa>index) != 0:
        raise ValueError(
            f"SIMD path {name!r} is not supported here; "
            f"expected one of {supported_isas()}"
        )


def has_openmp():
    """Return True if the kernels were built with OpenMP."""
    return fsm_has_openmp() != 0
