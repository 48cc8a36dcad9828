"""Plain NumPy softmax, log_softmax and logsumexp: the oracle for the fast kernels.

Each function follows the textbook formula with full-size temporaries, so a reader
can check it against ``exp(x - max) / sum(exp(x - max))`` at a glance. The
semantics (dtypes, axes, ``where``, ``out`` and every special value) are the same
as those of the functions in :mod:`fastsoftmax`; ``threads`` is accepted and
ignored. The fast path never imports this module.

Special values, per slice along the reduced axes:

* any NaN: the whole slice is NaN, and so is its logsumexp;
* ``+inf`` entries and no NaN: softmax is ``1/k`` on each of the ``k`` infinite
  entries and 0 elsewhere, log_softmax is ``-log(k)`` there and ``-inf``
  elsewhere, logsumexp is ``+inf``;
* all ``-inf``, all excluded by ``where``, or empty: softmax 0, log_softmax
  ``-inf``, logsumexp ``-inf``;
* entries excluded by ``where`` behave as ``-inf`` entries.
"""

import numbers

import numpy as np
from numpy.exceptions import AxisError

__all__ = ["softmax", "log_softmax", "logsumexp", "attention"]


def _result_dtype(x):
    """Return the dtype results are computed and returned in, or raise TypeError."""
    kind = x.dtype.kind
    if kind == "f" and x.dtype.itemsize in (2, 4, 8):
        return x.dtype.newbyteorder("=")
    if kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"x has unsupported dtype {x.dtype}; expected a floating, integer or bool dtype"
    )


def _normalize_axes(axis, ndim):
    """Return the reduced axes as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        items = axis
    else:
        items = (axis,)
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


def _prepare(x, axis, where):
    """Return the working array with excluded entries at -inf, the axes and dtype."""
    masked = np.ma.getmask(x) if isinstance(x, np.ma.MaskedArray) else np.ma.nomask
    x = np.asarray(x)
    x_shape = x.shape
    dtype = _result_dtype(x)
    work_dtype = np.float32 if dtype == np.float16 else dtype
    if x.ndim == 0:
        # A 0-d input is a one-element slice; any axis valid for shape (1,) works.
        x = x.reshape(1)
    axes = _normalize_axes(axis, x.ndim)
    work = x.astype(work_dtype)
    if where is not None:
        where = np.asarray(where)
        if where.dtype != np.bool_:
            raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
        try:
            where = np.broadcast_to(where, work.shape)
        except ValueError:
            raise ValueError(
                f"where has shape {where.shape}, which cannot be broadcast to "
                f"the shape of x, {x_shape}"
            ) from None
    if masked is not np.ma.nomask:
        # Masked entries of a MaskedArray are excluded like where=False.
        unmasked = ~np.asarray(masked).reshape(work.shape)
        where = unmasked if where is None else where & unmasked
    if where is not None:
        work = np.where(where, work, -np.inf).astype(work_dtype)
    return work, axes, dtype


def _slice_stats(work, axes):
    """Return the slice maxima and the sums of exp(x - max), keeping the axes."""
    m = np.max(work, axis=axes, keepdims=True, initial=-np.inf)
    finite_m = np.isfinite(m)
    shift = np.where(finite_m, m, 0).astype(work.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(work - shift)
    # A slice whose maximum is +inf shares among its +inf entries only.
    e = np.where(np.isposinf(m), (work == np.inf).astype(work.dtype), e)
    s = np.sum(e, axis=axes, keepdims=True)
    return m, shift, e, s


def _store(result, out, dtype, shape):
    """Cast ``result`` to ``dtype`` and return it, written into ``out`` if given."""
    with np.errstate(over="ignore"):
        result = result.reshape(shape).astype(dtype)
    if out is None:
        return result[()] if shape == () else result
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != result.shape:
        raise ValueError(f"out has shape {out.shape}, expected {result.shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    out[...] = result
    return out


def _check_threads(threads):
    if threads is None:
        return
    if isinstance(threads, (bool, np.bool_)) or not isinstance(
        threads, numbers.Integral
    ):
        raise TypeError(f"threads must be an int or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")


def softmax(x, axis=-1, *, where=None, out=None, threads=None):
    """Compute ``exp(x - max) / sum(exp(x - max))`` over ``axis`` in plain NumPy.

    Parameters
    ----------
    x : array_like
        Input scores.
    axis : int, tuple of ints or None, optional
        Axes of each slice; None means all axes.
    where : array_like of bool, optional
        Entries that take part; excluded entries get 0.
    out : ndarray, optional
        Array of the result's shape and dtype to write into.
    threads : int, optional
        Accepted for signature compatibility and ignored.

    Returns
    -------
    ndarray
        Proportions that sum to 1 along ``axis``.
    """
    _check_threads(threads)
    shape = np.shape(x)
    work, axes, dtype = _prepare(x, axis, where)
    m, shift, e, s = _slice_stats(work, axes)
    with np.errstate(invalid="ignore"):
        # An all -inf slice has s == 0 and gets zeros.
        result = np.where(s == 0, 0, e / np.where(s == 0, 1, s))
    return _store(result, out, dtype, shape)


def log_softmax(x, axis=-1, *, where=None, out=None, threads=None):
    """Compute ``(x - max) - log(sum(exp(x - max)))`` over ``axis`` in plain NumPy.

    Parameters
    ----------
    x : array_like
        Input scores.
    axis : int, tuple of ints or None, optional
        Axes of each slice; None means all axes.
    where : array_like of bool, optional
        Entries that take part; excluded entries get ``-inf``.
    out : ndarray, optional
        Array of the result's shape and dtype to write into.
    threads : int, optional
        Accepted for signature compatibility and ignored.

    Returns
    -------
    ndarray
        Log-proportions along ``axis``.
    """
    _check_threads(threads)
    shape = np.shape(x)
    work, axes, dtype = _prepare(x, axis, where)
    m, shift, e, s = _slice_stats(work, axes)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        finite = (work - shift) - np.log(s)
        # k entries at +inf each get -log(k), the others -inf.
        at_inf = np.where(work == np.inf, -np.log(s), -np.inf)
    result = np.where(np.isposinf(m), at_inf, finite)
    result = np.where(np.isneginf(m), -np.inf, result)
    return _store(result, out, dtype, shape)


def logsumexp(x, axis=-1, *, keepdims=False, where=None, out=None, threads=None):
    """Compute ``max + log(sum(exp(x - max)))`` over ``axis`` in plain NumPy.

    Parameters
    ----------
    x : array_like
        Input scores.
    axis : int, tuple of ints or None, optional
        Axes to reduce; None means all axes.
    keepdims : bool, optional
        Keep the reduced axes with length one.
    where : array_like of bool, optional
        Entries that take part in the sum.
    out : ndarray, optional
        Array of the result's shape and dtype to write into.
    threads : int, optional
        Accepted for signature compatibility and ignored.

    Returns
    -------
    ndarray
        The log of the sum of exponentials of each slice.
    """
    _check_threads(threads)
    x_shape = np.shape(x)
    work, axes, dtype = _prepare(x, axis, where)
    m, shift, e, s = _slice_stats(work, axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = shift + np.log(s)
    # A NaN maximum gives NaN without help; the other special slices need their
    # values stated.
    result = np.where(np.isposinf(m), np.inf, result)
    result = np.where(np.isneginf(m), -np.inf, result)
    if len(x_shape) == 0:
        shape = ()
    elif keepdims:
        shape = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
    else:
        shape = tuple(n for i, n in enumerate(x_shape) if i not in axes)
    return _store(result, out, dtype, shape)


from ._reference_attention import attention  # noqa: E402
