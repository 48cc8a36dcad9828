"""Python API of the fast kernels: argument checks, array layout, the C call.

Every argument is validated here, before the C kernel runs, so the kernel can
trust its input. The kernel works on a batch of slices: the reduced axes are
merged into one slice axis (a view when the strides allow it) and the other
axes form the outer index space. No input is copied unless its dtype, byte
order or alignment needs converting, or several reduced axes cannot be merged
into one strided axis (for example a non-adjacent tuple of axes of a C array).
In those cases a contiguous copy is made.
"""

import logging
import numbers
import os

import numpy as np
from numpy.exceptions import AxisError

from . import _core

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "get_config",
    "show_config",
    "set_simd",
]

logger = logging.getLogger("fastsoftmax")

_SOFTMAX, _LOG_SOFTMAX, _LOGSUMEXP = 0, 1, 2
_KERNEL_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}


# --- Configuration ------------------------------------------------------------


_warned_settings = set()


def _warn_once(message, *args):
    """Log a warning about an environment setting once per distinct message."""
    key = message % args
    if key not in _warned_settings:
        _warned_settings.add(key)
        logger.warning(message, *args)


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _default_threads():
    """Return FASTSOFTMAX_NUM_THREADS, else the number of CPUs this process may use.

    An invalid FASTSOFTMAX_NUM_THREADS is logged once and ignored, as an
    unsupported FASTSOFTMAX_SIMD is.
    """
    value = os.environ.get("FASTSOFTMAX_NUM_THREADS", "").strip()
    if not value:
        return _cpu_count()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        _warn_once(
            "FASTSOFTMAX_NUM_THREADS=%r is not a positive integer; using %d threads",
            value,
            _cpu_count(),
        )
        return _cpu_count()
    return min(threads, 1024)


def _apply_simd_env():
    """Lower the SIMD path to FASTSOFTMAX_SIMD when that variable is set."""
    requested = os.environ.get("FASTSOFTMAX_SIMD", "").strip().lower()
    if requested and requested not in _core.ISA_NAMES:
        _warn_once(
            "FASTSOFTMAX_SIMD=%s is not a SIMD path name (expected one of %s); "
            "using %s",
            requested,
            ", ".join(_core.ISA_NAMES),
            _core.get_isa(),
        )
    elif requested:
        try:
            _core.set_isa(requested)
        except ValueError:
            _warn_once(
                "FASTSOFTMAX_SIMD=%s is not supported on this CPU (supported: %s); "
                "using %s",
                requested,
                ", ".join(_core.supported_isas()),
                _core.get_isa(),
            )
    logger.debug("fastsoftmax SIMD path: %s", _core.get_isa())


def get_config():
    """Return the build and run-time configuration as a dict.

    Returns
    -------
    dict
        ``simd`` (the SIMD path in use), ``simd_supported`` (the paths this CPU
        runs, lowest first), ``openmp`` (built with OpenMP), ``threads`` (the
        default thread count) and ``version``.
    """
    from . import __version__

    return {
        "version": __version__,
        "simd": _core.get_isa(),
        "simd_supported": _core.supported_isas(),
        "openmp": _core.has_openmp(),
        "threads": _default_threads() if _core.has_openmp() else 1,
    }


def show_config():
    """Print the configuration returned by :func:`get_config`."""
    config = get_config()
    print(f"fastsoftmax {config['version']}")
    print(f"  SIMD path:       {config['simd']}")
    print(f"  SIMD supported:  {', '.join(config['simd_supported'])}")
    print(f"  OpenMP:          {'yes' if config['openmp'] else 'no'}")
    print(f"  default threads: {config['threads']}")


def set_simd(name):
    """Select the SIMD path used by every later call.

    Parameters
    ----------
    name : str
        One of ``get_config()["simd_supported"]``, in any letter case.

    Returns
    -------
    str
        The previous path, so that it can be restored.

    Raises
    ------
    ValueError
        If this CPU does not support ``name``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    name = name.strip().lower()
    previous = _core.get_isa()
    _core.set_isa(name)
    if name != previous:
        logger.info("fastsoftmax SIMD path set to %s", name)
    return previous


_apply_simd_env()


# --- Argument checks ----------------------------------------------------------


def _resolve_threads(threads):
    if threads is None:
        return _default_threads()
    if isinstance(threads, (bool, np.bool_)) or not isinstance(
        threads, numbers.Integral
    ):
        raise TypeError(f"threads must be an int or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return min(int(threads), 1024)


def _result_dtype(x):
    """Return the dtype of the result; raise TypeError for unsupported inputs."""
    if x.dtype.kind == "f" and x.dtype.itemsize in (2, 4, 8):
        return x.dtype.newbyteorder("=")
    if x.dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"x has unsupported dtype {x.dtype}; expected a floating, integer or bool dtype"
    )


def _normalize_axes(axis, ndim):
    """Return the reduced axes as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    axes = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise TypeError(
                f"axis must be an int, a tuple of ints or None, got {axis!r}"
            )
        if not -ndim <= item < ndim:
            raise AxisError(int(item), ndim)
        axes.append(int(item) % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis contains a repeated axis: {axis!r}")
    return tuple(sorted(axes))


def _check_out(out, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


# --- Layout -------------------------------------------------------------------


def _merged_stride(shape, strides, order):
    """Return the stride of ``order``'s axes merged into one, or None if impossible.

    The axes merge when each one steps exactly over the next (axes of length 1
    are ignored), so the merged axis visits the same elements in row-major
    order of ``order``.
    """
    stride = None
    for axis in reversed(order):
        if shape[axis] == 1:
            continue
        if stride is None:
            stride, span = strides[axis], strides[axis] * shape[axis]
        elif strides[axis] != span:
            return None
        else:
            span = strides[axis] * shape[axis]
    return 0 if stride is None else stride


class _Slices:
    """Byte strides of one array seen as outer dimensions times one slice axis."""

    def __init__(self, arr, outer_axes, order):
        self.array = arr
        self.step = _merged_stride(arr.shape, arr.strides, order)
        self.outer = [arr.strides[a] for a in outer_axes]

    @property
    def address(self):
        return self.array.__array_interface__["data"][0]


def _is_same_view(a, b):
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )


def _compute(op, x, axis, where, out, threads, keepdims=False):
    threads = _resolve_threads(threads)
    masked = np.ma.getmask(x) if isinstance(x, np.ma.MaskedArray) else np.ma.nomask
    x = np.asarray(x)
    dtype = _result_dtype(x)
    work_dtype = np.dtype(np.float32) if dtype == np.float16 else dtype
    is_scalar = x.ndim == 0
    shaped = x.reshape(1) if is_scalar else x
    axes = _normalize_axes(axis, shaped.ndim)

    mask = None
    if where is not None:
        where = np.asarray(where)
        if where.dtype != np.bool_:
            raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
        try:
            mask = np.broadcast_to(where, shaped.shape)
        except ValueError:
            raise ValueError(
                f"where has shape {where.shape}, which cannot be broadcast to the "
                f"shape of x, {x.shape}"
            ) from None
    if masked is not np.ma.nomask:
        # Masked entries of a MaskedArray are excluded like where=False.
        unmasked = ~np.asarray(masked).reshape(shaped.shape)
        mask = unmasked if mask is None else mask & unmasked

    if op != _LOGSUMEXP:
        result_shape = x.shape
    elif is_scalar:
        result_shape = ()
    elif keepdims:
        result_shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    else:
        result_shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    if out is not None:
        _check_out(out, result_shape, dtype)

    work = shaped
    if work.dtype != work_dtype or not work.flags.aligned:
        work = work.astype(work_dtype)

    direct = (
        out is not None
        and out.dtype == work_dtype
        and out.flags.aligned
        and _safe_to_write(
            op, out.reshape(work.shape) if is_scalar else out, work, mask
        )
    )
    target = out if direct else np.empty(result_shape, work_dtype)

    if op == _LOGSUMEXP:
        if is_scalar:
            target_full = target.reshape(1)
        elif keepdims:
            target_full = target
        else:
            target_full = np.expand_dims(target, axes)
    else:
        target_full = target.reshape(work.shape) if is_scalar else target

    if work.size == 0 or any(shaped.shape[a] == 0 for a in axes):
        # Empty slices: logsumexp is -inf, softmax has nothing to write.
        if op == _LOGSUMEXP:
            target[...] = -np.inf
        return _finish(target, out, direct, result_shape, dtype)

    _run_kernel(op, work, mask, target_full, axes, threads)
    return _finish(target, out, direct, result_shape, dtype)


def _finish(target, out, direct, result_shape, dtype):
    # Casting float32 results to float16 may overflow to -inf (log_softmax
    # below -65504), which is the correctly rounded float16 value.
    with np.errstate(over="ignore"):
        if out is None:
            result = target.astype(dtype, copy=False)
            return result[()] if result_shape == () else result
        if not direct:
            np.copyto(out, target, casting="same_kind")
    return out


def _safe_to_write(op, out, work, mask):
    """Return True if the kernel may write ``out`` while it reads ``work``.

    In place (``out`` is the very same view as ``work``) is safe for softmax
    and log_softmax, because the kernel reads each element before it writes
    that element and no other. Any other overlap goes through a temporary.
    """
    if mask is not None and np.may_share_memory(out, mask):
        return False
    if not np.may_share_memory(out, work):
        return True
    return op != _LOGSUMEXP and _is_same_view(out, work)


def _empty_in_order(shape, dtype, outer_axes, order):
    """Return an empty array of ``shape`` whose ``order`` axes merge into one.

    Its memory is C-contiguous in the axis order ``outer_axes + order``; the
    returned view has the axes in their original order.
    """
    permutation = list(outer_axes) + list(order)
    buffer = np.empty([shape[a] for a in permutation], dtype)
    return buffer.transpose(np.argsort(permutation))


def _copy_in_order(arr, outer_axes, order):
    copy = _empty_in_order(arr.shape, arr.dtype, outer_axes, order)
    copy[...] = arr
    return copy


def _run_kernel(op, work, mask, target_full, axes, threads):
    ndim = work.ndim
    outer_axes = [a for a in range(ndim) if a not in axes]
    # Visit the reduced axes from the largest stride to the smallest, so that
    # the merged slice axis follows memory order when it can.
    order = sorted(axes, key=lambda a: -abs(work.strides[a]))

    # NOTE: reduced axes that do not merge into one strided axis (such as a
    # non-adjacent tuple of axes of a C array) are copied first.
    if _merged_stride(work.shape, work.strides, order) is None:
        work = _copy_in_order(work, outer_axes, order)
    if mask is not None and _merged_stride(mask.shape, mask.strides, order) is None:
        mask = _copy_in_order(mask, outer_axes, order)
    if op != _LOGSUMEXP and (
        _merged_stride(target_full.shape, target_full.strides, order) is None
    ):
        temporary = _empty_in_order(work.shape, work.dtype, outer_axes, order)
        _run_kernel(op, work, mask, temporary, axes, threads)
        target_full[...] = temporary
        return

    x_slices = _Slices(work, outer_axes, order)
    out_slices = _Slices(target_full, outer_axes, order)
    if op == _LOGSUMEXP:
        out_slices.step = 0
    mask_slices = _Slices(mask, outer_axes, order) if mask is not None else None

    n = 1
    for a in axes:
        n *= work.shape[a]

    # Outer dimensions of length 1 carry no offset and are dropped. The others
    # go from the largest input stride to the smallest, so a unit-stride
    # dimension comes last, where the kernel can run its slices side by side.
    dims = [i for i, a in enumerate(outer_axes) if work.shape[a] != 1]
    dims.sort(key=lambda i: -abs(x_slices.outer[i]))
    shape = [work.shape[outer_axes[i]] for i in dims]
    x_outer = [x_slices.outer[i] for i in dims]
    out_outer = [out_slices.outer[i] for i in dims]
    mask_outer = (
        [mask_slices.outer[i] for i in dims] if mask is not None else [0] * len(dims)
    )

    _core.run(
        op,
        _KERNEL_DTYPE_CODES[work.dtype],
        x_slices.address,
        out_slices.address,
        mask_slices.address if mask is not None else 0,
        n,
        x_slices.step,
        out_slices.step,
        mask_slices.step if mask is not None else 0,
        shape,
        x_outer,
        out_outer,
        mask_outer,
        threads,
    )


# --- Public functions ---------------------------------------------------------


def softmax(x, axis=-1, *, where=None, out=None, threads=None):
    """Compute ``exp(x - max) / sum(exp(x - max))`` over each slice.

    Parameters
    ----------
    x : array_like
        Input scores. float32 and float64 are computed in their own type,
        float16 in float32, bool and integers in float64.
    axis : int, tuple of ints or None, optional
        Axes that form each slice; None means all axes. Default -1.
    where : array_like of bool, optional
        Entries that take part, broadcast to the shape of ``x``; the others
        are treated as ``-inf``.
    out : ndarray, optional
        Array of the result's exact shape and dtype to write into. It may be
        ``x`` itself; any other overlap with the input is handled with a
        temporary.
    threads : int, optional
        Threads to use. Default: ``FASTSOFTMAX_NUM_THREADS``, else the number
        of CPUs available to the process. Results do not depend on it.

    Returns
    -------
    ndarray
        Proportions that sum to 1 over each slice, in the shape of ``x``.
        A slice with a NaN is all NaN. A slice with ``k`` entries at ``+inf``
        gives ``1/k`` to each of them and 0 elsewhere. A slice with no finite
        or ``+inf`` entry (all ``-inf``, all excluded, or empty) is all 0.

    Raises
    ------
    TypeError
        For an unsupported dtype of ``x`` or ``where``, a wrong type of
        ``axis`` or ``threads``, or ``out`` of the wrong dtype.
    ValueError
        For a repeated axis, ``where`` that does not broadcast, ``out`` of
        the wrong shape or read-only, or ``threads`` < 1.
    numpy.exceptions.AxisError
        For an axis out of range.

    Examples
    --------
    >>> import fastsoftmax
    >>> fastsoftmax.softmax([2.0, 1.0, 0.1]).round(3)
    array([0.659, 0.242, 0.099])
    """
    return _compute(_SOFTMAX, x, axis, where, out, threads)


def log_softmax(x, axis=-1, *, where=None, out=None, threads=None):
    """Compute ``(x - max) - log(sum(exp(x - max)))`` over each slice.

    Parameters
    ----------
    x : array_like
        Input scores. float32 and float64 are computed in their own type,
        float16 in float32, bool and integers in float64.
    axis : int, tuple of ints or None, optional
        Axes that form each slice; None means all axes. Default -1.
    where : array_like of bool, optional
        Entries that take part, broadcast to the shape of ``x``; the others
        are treated as ``-inf``.
    out : ndarray, optional
        Array of the result's exact shape and dtype to write into. It may be
        ``x`` itself; any other overlap with the input is handled with a
        temporary.
    threads : int, optional
        Threads to use. Default: ``FASTSOFTMAX_NUM_THREADS``, else the number
        of CPUs available to the process. Results do not depend on it.

    Returns
    -------
    ndarray
        Log-proportions over each slice, in the shape of ``x``. A slice with
        a NaN is all NaN. A slice with ``k`` entries at ``+inf`` gives
        ``-log(k)`` to each of them and ``-inf`` elsewhere. A slice with no
        finite or ``+inf`` entry is all ``-inf``.

    Raises
    ------
    TypeError, ValueError, numpy.exceptions.AxisError
        As for :func:`softmax`.

    Examples
    --------
    >>> import fastsoftmax
    >>> fastsoftmax.log_softmax([2.0, 1.0, 0.1]).round(3)
    array([-0.417, -1.417, -2.317])
    """
    return _compute(_LOG_SOFTMAX, x, axis, where, out, threads)


def logsumexp(x, axis=-1, *, keepdims=False, where=None, out=None, threads=None):
    """Compute ``log(sum(exp(x)))`` over each slice without overflow.

    Parameters
    ----------
    x : array_like
        Input scores. float32 and float64 are computed in their own type,
        float16 in float32, bool and integers in float64.
    axis : int, tuple of ints or None, optional
        Axes that form each slice; None means all axes. Default -1.
    where : array_like of bool, optional
        Entries that take part, broadcast to the shape of ``x``; the others
        are treated as ``-inf``.
    out : ndarray, optional
        Array of the result's exact shape and dtype to write into. It may be
        ``x`` itself; any other overlap with the input is handled with a
        temporary.
    threads : int, optional
        Threads to use. Default: ``FASTSOFTMAX_NUM_THREADS``, else the number
        of CPUs available to the process. Results do not depend on it.
    keepdims : bool, optional
        Keep the reduced axes with length 1. Default False.

    Returns
    -------
    ndarray or numpy scalar
        One value per slice: NaN if the slice has a NaN, ``+inf`` if it has a
        ``+inf`` entry, ``-inf`` if it has no finite or ``+inf`` entry (empty
        slices included). A numpy scalar when the result has shape ().

    Raises
    ------
    TypeError, ValueError, numpy.exceptions.AxisError
        As for :func:`softmax`.

    Examples
    --------
    >>> import fastsoftmax
    >>> round(float(fastsoftmax.logsumexp([1000.0, 1000.0])), 6)
    1000.693147
    """
    return _compute(_LOGSUMEXP, x, axis, where, out, threads, keepdims=keepdims)
