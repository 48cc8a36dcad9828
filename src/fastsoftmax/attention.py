"""Fused scaled-dot-product attention.

``attention`` validates and normalises its arguments here, then calls the
tiled C kernel in :mod:`fastsoftmax._attention` with the GIL released. The
argument handling (:func:`_parse_arguments`, :func:`_check_out`) is shared
with :func:`fastsoftmax.reference.attention`, so both raise the same errors.
The design of the kernel is described in ``docs/attention.md``.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._api import _check_out

__all__ = ["attention"]

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

# Codes shared with csrc/attention.h.
_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}
_MASK_NONE, _MASK_BOOL, _MASK_FLOAT = 0, 1, 2
_CAUSAL_NONE, _CAUSAL_LOWER_RIGHT, _CAUSAL_UPPER_LEFT = 0, 1, 2
_CAUSAL_MODES = {"lower_right": _CAUSAL_LOWER_RIGHT, "upper_left": _CAUSAL_UPPER_LEFT}

_blas_loaded = False


@dataclass
class _Arguments:
    """Validated attention arguments.

    ``q``, ``k`` and ``v`` are in the compute dtype and have at least three
    dimensions ``(..., H, rows, cols)``; ``mask`` is None, or a bool or
    compute-dtype array broadcast to ``batch + (q_heads, q_len, kv_len)``.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    mask: np.ndarray | None
    mask_kind: int
    causal: int
    scale: float
    threads: int | None
    batch: tuple
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    value_dim: int
    result_dtype: np.dtype
    compute_dtype: np.dtype
    out_shape: tuple
    lse_shape: tuple


def _input_dtype(name, array):
    """Return the floating dtype ``array`` is computed in, or raise TypeError."""
    dtype = array.dtype
    if dtype.newbyteorder("=") in _FLOAT_DTYPES:
        return dtype.newbyteorder("=")
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} has unsupported dtype {dtype}; expected a floating, integer or "
        "bool dtype"
    )


def _parse_scale(scale, head_dim):
    if scale is None:
        if head_dim == 0:
            raise ValueError(
                "scale=None means 1/sqrt(D), which needs D >= 1; q has D = 0, "
                "so pass scale explicitly"
            )
        return 1.0 / math.sqrt(head_dim)
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number or None, got {scale!r}")
    value = float(scale)
    if not math.isfinite(value):
        raise ValueError(f"scale must be finite, got {scale!r}")
    return value


def _parse_causal(causal):
    if isinstance(causal, (bool, np.bool_)):
        return _CAUSAL_LOWER_RIGHT if causal else _CAUSAL_NONE
    if isinstance(causal, str):
        if causal in _CAUSAL_MODES:
            return _CAUSAL_MODES[causal]
        raise ValueError(
            f"causal must be False, True, 'lower_right' or 'upper_left', got {causal!r}"
        )
    raise TypeError(
        f"causal must be a bool, 'lower_right' or 'upper_left', got {causal!r}"
    )


def _parse_threads(threads):
    if threads is None:
        return None
    if isinstance(threads, (bool, np.bool_)) or not isinstance(
        threads, numbers.Integral
    ):
        raise TypeError(f"threads must be an int or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    # The same cap as the softmax functions: more threads than that only add
    # start-up cost.
    return min(int(threads), 1024)


def _parse_mask(mask, full_shape, compute_dtype):
    """Return the mask broadcast to ``full_shape`` and its kind code."""
    if mask is None:
        return None, _MASK_NONE
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        kind = _MASK_BOOL
    elif mask.dtype.newbyteorder("=") in _FLOAT_DTYPES:
        kind = _MASK_FLOAT
        # A float64 mask entry beyond the float32 range becomes +-inf, the
        # correctly rounded value, without a warning.
        with np.errstate(over="ignore"):
            mask = mask.astype(compute_dtype, copy=False)
    else:
        raise TypeError(
            f"mask has unsupported dtype {mask.dtype}; expected bool or a "
            "floating dtype"
        )
    try:
        mask = np.broadcast_to(mask, full_shape)
    except ValueError:
        raise ValueError(
            f"mask with shape {mask.shape} is not broadcastable to the score "
            f"shape {full_shape} (..., Hq, L, S)"
        ) from None
    return mask, kind


def _parse_arguments(q, k, v, mask, causal, scale, threads):
    """Validate the arguments of ``attention`` and return an ``_Arguments``."""
    q = np.asarray(q)
    k = np.asarray(k)
    v = np.asarray(v)
    for name, array in (("q", q), ("k", k), ("v", v)):
        if array.ndim < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., L, D), got shape "
                f"{array.shape}"
            )
    result_dtype = np.result_type(
        _input_dtype("q", q), _input_dtype("k", k), _input_dtype("v", v)
    )
    compute_dtype = np.dtype(np.float32) if result_dtype == np.float16 else result_dtype
    all_2d = q.ndim == k.ndim == v.ndim == 2
    q, k, v = (x[np.newaxis] if x.ndim == 2 else x for x in (q, k, v))
    q, k, v = (x.astype(compute_dtype, copy=False) for x in (q, k, v))

    q_heads, q_len, head_dim = q.shape[-3:]
    kv_heads, kv_len, k_dim = k.shape[-3:]
    v_heads, v_len, value_dim = v.shape[-3:]
    if k_dim != head_dim:
        raise ValueError(
            f"q and k must have the same last dimension D, got q shape {q.shape} "
            f"and k shape {k.shape}"
        )
    if (v_heads, v_len) != (kv_heads, kv_len):
        raise ValueError(
            f"k and v must have the same heads and keys (Hkv, S), got k shape "
            f"{k.shape} and v shape {v.shape}"
        )
    if (kv_heads == 0 and q_heads != 0) or (kv_heads and q_heads % kv_heads):
        raise ValueError(
            f"the query heads Hq = {q_heads} must be a multiple of the key/value "
            f"heads Hkv = {kv_heads}, got q shape {q.shape} and k shape {k.shape}"
        )
    try:
        batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the leading dimensions of q, k and v do not broadcast: q shape "
            f"{q.shape}, k shape {k.shape}, v shape {v.shape}"
        ) from None

    mask, mask_kind = _parse_mask(mask, batch + (q_heads, q_len, kv_len), compute_dtype)
    if all_2d:
        out_shape, lse_shape = (q_len, value_dim), (q_len,)
    else:
        out_shape = batch + (q_heads, q_len, value_dim)
        lse_shape = batch + (q_heads, q_len)
    return _Arguments(
        q=q,
        k=k,
        v=v,
        mask=mask,
        mask_kind=mask_kind,
        causal=_parse_causal(causal),
        scale=_parse_scale(scale, head_dim),
        threads=_parse_threads(threads),
        batch=batch,
        q_heads=q_heads,
        kv_heads=kv_heads,
        q_len=q_len,
        kv_len=kv_len,
        head_dim=head_dim,
        value_dim=value_dim,
        result_dtype=result_dtype,
        compute_dtype=compute_dtype,
        out_shape=out_shape,
        lse_shape=lse_shape,
    )


def _ensure_blas(kernel):
    """Load SciPy's GEMM routines into the kernel on first use."""
    global _blas_loaded
    if _blas_loaded:
        return
    try:
        from scipy.linalg import cython_blas
    except ImportError as error:
        raise ImportError(
            "fastsoftmax.attention needs SciPy for its BLAS; install scipy>=1.10"
        ) from error
    capsules = cython_blas.__pyx_capi__
    kernel.load_blas(capsules["sgemm"], capsules["dgemm"])
    _blas_loaded = True


def _kernel_array(x, dtype):
    """Return ``x`` as an aligned, native ``dtype`` array with element strides."""
    x = x.astype(dtype, copy=False)
    if not x.flags.aligned or any(s % x.itemsize for s in x.strides):
        x = np.ascontiguousarray(x)
    return x


def _operand(array, batch, core_ndim=3):
    """Describe ``array``, broadcastable to ``batch + core``, for the kernel.

    The core is the last ``core_ndim`` dimensions, ``(H, rows, cols)`` or
    ``(H, rows)``, and must match exactly. Returns ``(address, batch_offsets,
    head, row, col strides)`` with strides in elements; a batch dimension that
    ``array`` lacks or has as 1 gets stride 0.
    """
    item = array.itemsize
    core_strides = [s // item for s in array.strides[array.ndim - core_ndim :]]
    core_strides += [0] * (3 - core_ndim)
    offsets = np.zeros(batch, dtype=np.int64)
    array_batch = array.shape[: array.ndim - core_ndim]
    array_strides = array.strides[: array.ndim - core_ndim]
    missing = len(batch) - len(array_batch)
    for axis, length in enumerate(batch):
        if axis < missing or array_batch[axis - missing] == 1:
            continue
        stride = array_strides[axis - missing] // item
        shape = [1] * len(batch)
        shape[axis] = length
        steps = np.arange(length, dtype=np.int64) * stride
        offsets = offsets + steps.reshape(shape)
    address = array.__array_interface__["data"][0]
    return (address, offsets.reshape(-1), *core_strides)


def attention(
    q,
    k,
    v,
    *,
    mask=None,
    causal=False,
    scale=None,
    return_lse=False,
    out=None,
    threads=None,
):
    """Compute ``softmax(scale * q @ k^T + mask) @ v`` without the score matrix.

    Parameters
    ----------
    q : array_like, shape (..., Hq, L, D) or (L, D)
        Queries.
    k : array_like, shape (..., Hkv, S, D) or (S, D)
        Keys. Hq must be a multiple of Hkv; query head ``h`` uses key/value
        head ``h // (Hq // Hkv)`` (grouped-query attention).
    v : array_like, shape (..., Hkv, S, Dv) or (S, Dv)
        Values. The leading dimensions of q, k and v broadcast.
    mask : array_like of bool or floating, optional
        Broadcastable to ``(..., Hq, L, S)``. True (bool) means the query may
        attend to the key; a floating mask is added to the scaled scores, and
        a ``-inf`` entry excludes the key like False.
    causal : bool or {'lower_right', 'upper_left'}, optional
        True means 'lower_right': query ``i`` may attend key ``j`` when
        ``j <= i + S - L``. 'upper_left' allows ``j <= i``. Combined with
        ``mask`` by AND.
    scale : float, optional
        Factor applied to ``q @ k^T``; None means ``1 / sqrt(D)``.
    return_lse : bool, optional
        Also return the log of the sum of exp of the scaled, masked scores.
    out : ndarray, optional
        Array of the result's shape and dtype to write the output into.
    threads : int, optional
        Number of threads; None means FASTSOFTMAX_NUM_THREADS, else the CPUs
        available to the process. The result does not depend on it.

    Returns
    -------
    out : ndarray, shape (..., Hq, L, Dv), or (L, Dv) for 2-D inputs
        The attention output. A query row with no key it may attend gets
        zeros. Keys excluded by ``mask`` or ``causal`` never affect the
        result, even when their k or v rows hold NaN or inf.
    lse : ndarray, shape (..., Hq, L), or (L,) for 2-D inputs
        Returned when ``return_lse`` is True; ``-inf`` for rows with no key.

    Raises
    ------
    TypeError
        For an unsupported dtype of q, k, v, mask or out.
    ValueError
        For incompatible shapes, a non-finite ``scale``, an unknown ``causal``
        mode, ``threads < 1`` or a wrong ``out`` shape.
    """
    args = _parse_arguments(q, k, v, mask, causal, scale, threads)
    if out is not None:
        _check_out(out, args.out_shape, args.result_dtype)

    from . import _attention, _core
    from ._api import _default_threads

    _ensure_blas(_attention)
    # Follow the SIMD path of fastsoftmax.set_simd when this kernel has it.
    path = _core.get_isa()
    if path != _attention.simd_name() and path in _attention.simd_supported():
        _attention.set_simd(path)
    dtype = args.compute_dtype
    batch = args.batch
    full_out_shape = batch + (args.q_heads, args.q_len, args.value_dim)

    # Write straight into `out` when the kernel can, else into a buffer.
    inputs = (q, k, v, mask)
    if (
        out is not None
        and out.dtype == dtype
        and out.flags.aligned
        and not any(s % out.itemsize for s in out.strides)
        and not any(np.may_share_memory(out, x) for x in inputs if x is not None)
    ):
        result = out[np.newaxis] if len(args.out_shape) == 2 else out
    else:
        result = np.empty(full_out_shape, dtype=dtype)
    lse = None
    if return_lse:
        lse = np.empty(batch + (args.q_heads, args.q_len), dtype=dtype)

    threads = args.threads if args.threads is not None else _default_threads()
    q_arr = _kernel_array(args.q, dtype)
    k_arr = _kernel_array(args.k, dtype)
    v_arr = _kernel_array(args.v, dtype)
    mask_spec = None
    if args.mask is not None:
        mask_arr = _kernel_array(args.mask, args.mask.dtype)
        mask_spec = _operand(mask_arr, batch)
    _attention.run(
        _DTYPE_CODES[dtype],
        (
            math.prod(batch),
            args.q_heads,
            args.kv_heads,
            args.q_len,
            args.kv_len,
            args.head_dim,
            args.value_dim,
        ),
        _operand(q_arr, batch),
        _operand(k_arr, batch),
        _operand(v_arr, batch),
        mask_spec,
        _operand(result, batch),
        _operand(lse, batch, core_ndim=2) if return_lse else None,
        args.mask_kind,
        args.causal,
        args.scale,
        threads,
    )

    result = result.reshape(args.out_shape)
    # Casting float32 results to float16 may overflow to +-inf, the correctly
    # rounded value, which should not warn.
    with np.errstate(over="ignore"):
        if out is not None:
            if not np.may_share_memory(result, out):
                out[...] = result
            result = out
        elif args.result_dtype != dtype:
            result = result.astype(args.result_dtype)
        if return_lse:
            return result, lse.reshape(args.lse_shape).astype(args.result_dtype)
    return result
