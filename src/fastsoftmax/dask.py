"""Softmax, log_softmax, logsumexp and attention for Dask arrays.

Install with ``pip install "fastsoftmax[dask]"``, or ``pip install ".[dask]"`` from a
clone. The functions take the arguments of their NumPy counterparts in
:mod:`fastsoftmax`, return lazy ``dask.array.Array`` objects, and follow the same
dtype, ``where`` and special-value rules.

Plan of a reduction over ``axis``:

* When every reduced axis lies in a single chunk, each block goes through the C
  kernel as it is (``map_blocks``).
* Otherwise the axis spans chunks and is never gathered into one chunk.

  Stage 1 turns each block into a per-slice partial ``(shift, rest)``: ``shift`` is
  the block's maximum and ``rest`` the sum of ``exp(x - shift)`` without the 1 of one
  maximum entry, so the block's sum of exponentials is ``(1 + rest) * exp(shift)``.

  Stage 2 combines the partials in a tree reduction (``dask.array.reduction``) with
  the online-normaliser rule: ``M = max(shift_i)`` and
  ``1 + rest = sum((1 + rest_i) * exp(shift_i - M))``, the 1 of one partial at ``M``
  again kept out of the sum.

  Stage 3 writes ``exp(x - M) / (1 + rest)`` or ``(x - M) - log1p(rest)`` block by
  block.

Accuracy. Stages 1 to 3 run in NumPy in float64 for every input dtype, and the
result is rounded once to the output dtype. ``M`` and ``rest`` stay separate for
two reasons. Folding them into one float ``lse = M + log(1 + rest)``, the form the
C kernel's logsumexp returns, would cost ``|lse|`` times the unit roundoff as an
absolute error, which ``exp(x - lse)`` turns into a relative error of the same
size. And log_softmax of a dominant entry is ``-log1p(rest)`` with ``rest`` tiny,
which only an explicit ``rest`` gives to full relative accuracy. For float64 inputs
each rounded difference ``x - M`` is also corrected by its exact error term (Knuth's
TwoSum), so ``exp(x - M)`` keeps full relative accuracy for large ``|x - M|``.

Special values carry over. A NaN anywhere in a slice makes its ``M`` NaN. A slice
with ``k`` entries at ``+inf``, counted across chunks, gets ``M = +inf`` and
``rest = k - 1``, so each of them gets ``1/k``. A slice whose entries are all
``-inf``, excluded or missing gets ``M = -inf`` and ``rest = -1``. Entries excluded
by ``where`` are set to ``-inf`` before stage 1.
"""

import functools
import math
import numbers

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastsoftmax.dask needs Dask; install it with "
        "'pip install \"fastsoftmax[dask]\"' "
        "(or 'pip install \".[dask]\"' from a clone)"
    ) from error

import fastsoftmax

from ._api import _normalize_axes
from ._merge import merge_attention

__all__ = ["softmax", "log_softmax", "logsumexp", "attention"]

# Per-slice partial of a block: the slice's sum of exponentials is
# (1 + rest) * exp(shift).
_PARTIAL = np.dtype([("shift", np.float64), ("rest", np.float64)])

# Number of shard results merged by one task when attention merges many shards.
_MERGE_FAN_IN = 8

# Entries per slab in the chunk-spanning passes: 2 MiB of float64 scratch.
_SLAB_ITEMS = 1 << 18


# --- argument checks ---------------------------------------------------------


def _result_dtype(dtype, name="x"):
    """Return the dtype results are returned in, or raise TypeError."""
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return np.dtype(dtype).newbyteorder("=")
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} has unsupported dtype {dtype}; expected a floating, integer or "
        "bool dtype"
    )


def _task_threads(threads):
    """Return the kernel threads of one task: 1 unless ``threads`` is given.

    Dask already runs one task per core, so more kernel threads per task would
    oversubscribe the cores.
    """
    return 1 if threads is None else threads


def _check_threads(threads):
    if threads is None:
        return
    if isinstance(threads, (bool, np.bool_)) or not isinstance(
        threads, numbers.Integral
    ):
        raise TypeError(f"threads must be an int or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")


def _as_where(where, x):
    """Return ``where`` as a bool dask array of x's shape and chunks, or None."""
    if where is None:
        return None
    where = da.asarray(where)
    if where.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    try:
        shape = np.broadcast_shapes(where.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"where has shape {where.shape}, which does not broadcast to the shape "
            f"{x.shape} of x"
        )
    return da.broadcast_to(where, x.shape).rechunk(x.chunks)


def _store(result, out):
    """Return ``result``, rebinding the dask array ``out`` to it if given.

    Dask arrays are immutable graphs, so ``out`` follows Dask's own convention:
    its graph is replaced by the result's.
    """
    if out is None:
        return result
    if not isinstance(out, da.Array):
        raise TypeError(f"out must be a dask.array.Array, got {type(out).__name__}")
    if out.shape != result.shape:
        raise ValueError(f"out has shape {out.shape}, expected {result.shape}")
    if out.dtype != result.dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {result.dtype}")
    out._chunks = result.chunks
    out.dask = result.dask
    out._meta = result._meta
    out._name = result.name
    return out


def _prepare(x, axis, where, threads):
    """Validate the arguments; return x (at least 1-d), where, axes, dtype, shape."""
    _check_threads(threads)
    x = da.asarray(x)
    if any(np.isnan(size) for size in x.shape):
        raise ValueError(
            f"x has unknown chunk sizes (shape {x.shape}); call "
            "x.compute_chunk_sizes() first"
        )
    shape = x.shape
    dtype = _result_dtype(x.dtype)
    if x.dtype != dtype and dtype == np.float64:
        # Integers and bools are promoted once, so every later step gets float64.
        x = x.astype(np.float64)
    where = _as_where(where, x)
    if x.ndim == 0:
        # A 0-d input is a one-element slice; any axis valid for shape (1,) works.
        x = x.reshape(1)
        if where is not None:
            where = where.reshape(1)
    axes = _normalize_axes(axis, x.ndim)
    return x, where, axes, dtype, shape


def _spans_chunks(x, axes):
    return any(x.numblocks[ax] > 1 for ax in axes)


def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype=dtype)


# --- axes within single chunks: the C kernel per block -----------------------


def _core_block(x, where=None, *, function, **kwargs):
    """Run a :mod:`fastsoftmax` function on one block."""
    return function(x, where=where, **kwargs)


def _map_core(function, x, where, dtype, **kwargs):
    """Map ``function`` over the blocks of x (and where) with map_blocks."""
    arrays = (x,) if where is None else (x, where)
    return da.map_blocks(
        _core_block,
        *arrays,
        function=function,
        dtype=dtype,
        meta=_meta(x.ndim, dtype),
        **kwargs,
    )


# --- axes spanning chunks: stage 1, partials per block -----------------------


def _exp_diff(a, b):
    """Return ``exp(a - b)`` for float64 arrays, with ``a - b`` taken exactly.

    The rounding error of ``a - b`` is recovered exactly (Knuth's TwoSum) and
    applied to first order, so the relative error of the result does not grow
    with ``|a - b|``.
    """
    diff = a - b
    result = np.exp(diff)
    result += result * _diff_error(a, b, diff)
    return result


def _diff_error(a, b, diff):
    """Return the exact rounding error of ``diff = a - b`` (0 where not finite)."""
    back = diff - a
    error = (a - (diff - back)) + (-b - back)
    return np.where(np.isfinite(diff), error, 0.0)


def _slabs(shape):
    """Yield slices along axis 0 that cover about ``_SLAB_ITEMS`` entries each."""
    row_items = max(1, math.prod(shape[1:]))
    step = max(1, _SLAB_ITEMS // row_items)
    for start in range(0, shape[0], step):
        yield slice(start, min(start + step, shape[0]))


def _rows(array, rows):
    """Return ``array[rows]``, or all of ``array`` where axis 0 is broadcast."""
    return array[rows] if array.shape[0] > 1 else array


def _exp_shifted(part, shift, scratch):
    """Return ``exp(part - shift)`` in float64, in ``scratch`` where possible.

    Narrower inputs are converted as they are subtracted: the difference of two
    float32 values is then exact or far more precise than the output needs.
    float64 inputs take the compensated path and allocate their own result.
    """
    if part.dtype == np.float64:
        return _exp_diff(part, shift)
    buffer = scratch[: part.shape[0]]
    np.subtract(part, shift, out=buffer)
    return np.exp(buffer, out=buffer)


def _scratch(block):
    """Return a float64 buffer for one slab of ``block``."""
    rows = next(_slabs(block.shape), slice(0, 0))
    return np.empty((rows.stop - rows.start,) + block.shape[1:], dtype=np.float64)


def _block_partial(block, axis, keepdims, computing_meta=False):
    """Return the ``(shift, rest)`` partial of each slice of one block.

    ``shift`` is the slice maximum and ``rest`` the sum of ``exp(x - shift)``
    over all entries but one maximum entry, whose term would be exactly 1.
    """
    shape = tuple(1 if i in axis else n for i, n in enumerate(block.shape))
    partial = np.empty(shape, dtype=_PARTIAL)
    if computing_meta or partial.size == 0:
        return partial

    shift = np.max(block, axis=axis, keepdims=True, initial=-np.inf)
    shift = shift.astype(np.float64)
    finite_shift = np.where(np.isfinite(shift), shift, 0.0)
    rest = np.zeros(shape)
    peak_count = np.zeros(shape)
    scratch = _scratch(block)
    # Slabs keep the float64 work in one reused buffer: a new full-size array
    # per block costs more in page faults than the arithmetic.
    for rows in _slabs(block.shape):
        part = block[rows]
        at_peak = part == _rows(shift, rows)
        with np.errstate(over="ignore", invalid="ignore"):
            terms = _exp_shifted(part, _rows(finite_shift, rows), scratch)
            terms[at_peak] = 0.0
            _rows(rest, rows)[...] += np.sum(terms, axis=axis, keepdims=True)
        _rows(peak_count, rows)[...] += np.sum(at_peak, axis=axis, keepdims=True)
    rest += peak_count - 1

    # A +inf slice counts its +inf entries, an all -inf slice sums to 0.
    rest = np.where(np.isposinf(shift), peak_count - 1, rest)
    rest = np.where(np.isneginf(shift), -1.0, rest)
    partial["shift"] = shift
    partial["rest"] = np.where(np.isnan(shift), np.nan, rest)
    return partial


# --- stage 2, online-normaliser combination ----------------------------------


def _combine_partials(partials, axis, keepdims):
    """Combine partials along ``axis`` into one ``(M, rest)`` partial per slice.

    Partials at the peak ``M`` contribute ``1 + rest_i`` each, and the others
    ``(1 + rest_i) * exp(shift_i - M)``. The 1 of one peak partial is left out
    of the sum, so ``rest`` keeps its relative accuracy when it is tiny.
    """
    shift = partials["shift"]
    rest = partials["rest"]
    peak = np.max(shift, axis=axis, keepdims=True, initial=-np.inf)
    at_peak = shift == peak
    with np.errstate(over="ignore", invalid="ignore"):
        finite_peak = np.where(np.isfinite(peak), peak, 0.0)
        weight = _exp_diff(shift, finite_peak)
        # Under a +inf peak only the +inf partials count.
        weight = np.where(np.isposinf(peak), 0.0, weight)
        terms = np.where(at_peak, rest, (1.0 + rest) * weight)
        peak_count = np.sum(at_peak, axis=axis, keepdims=True)
        total_rest = np.sum(terms, axis=axis, keepdims=True) + (peak_count - 1)

    combined = np.empty(peak.shape, dtype=_PARTIAL)
    combined["shift"] = peak
    combined["rest"] = np.where(np.isnan(peak), np.nan, total_rest)
    if not keepdims:
        combined = combined.squeeze(axis=axis)
    return combined


def _slice_stats(x, axes):
    """Return the combined ``(M, rest)`` partial of each slice, keeping the axes."""
    return da.reduction(
        x,
        chunk=_block_partial,
        combine=_combine_partials,
        aggregate=_combine_partials,
        axis=axes,
        keepdims=True,
        dtype=_PARTIAL,
        meta=_meta(x.ndim, _PARTIAL),
    )


# --- stage 3, outputs per block ----------------------------------------------


def _softmax_block(block, stats, dtype):
    """Write ``exp(x - M) / (1 + rest)`` for one block, with the special rules."""
    peak = stats["shift"]
    finite = np.isfinite(peak)
    shift = np.where(finite, peak, 0.0)
    total = 1.0 + stats["rest"]
    result = np.empty(block.shape, dtype=dtype)
    scratch = _scratch(block)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for rows in _slabs(block.shape):
            terms = _exp_shifted(block[rows], _rows(shift, rows), scratch)
            # One rounding from float64 to the output dtype.
            np.divide(terms, _rows(total, rows), out=result[rows], casting="same_kind")
        if not finite.all():
            # k entries at +inf share the slice equally; an all -inf slice gets 0.
            at_inf = (block == np.inf) / total
            result = np.where(np.isposinf(peak), at_inf, result).astype(dtype)
            result[np.broadcast_to(np.isneginf(peak), block.shape)] = 0.0
    return result


def _log_softmax_block(block, stats, dtype):
    """Write ``(x - M) - log1p(rest)`` for one block, with the special rules."""
    peak = stats["shift"]
    finite = np.isfinite(peak)
    shift = np.where(finite, peak, 0.0)
    result = np.empty(block.shape, dtype=dtype)
    scratch = _scratch(block)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_total = np.log1p(stats["rest"])
        for rows in _slabs(block.shape):
            part = block[rows]
            part_shift = _rows(shift, rows)
            if block.dtype == np.float64:
                diff = part - part_shift
                values = diff - _rows(log_total, rows)
                values += _diff_error(part, part_shift, diff)
            else:
                values = scratch[: part.shape[0]]
                np.subtract(part, part_shift, out=values)
                values -= _rows(log_total, rows)
            result[rows] = values
        if not finite.all():
            at_inf = np.where(block == np.inf, -log_total, -np.inf)
            result = np.where(np.isposinf(peak), at_inf, result).astype(dtype)
            result[np.broadcast_to(np.isneginf(peak), block.shape)] = -np.inf
    return result


def _logsumexp_block(stats, dtype):
    """Return ``M + log1p(rest)`` of each slice."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats["shift"] + np.log1p(stats["rest"])
    return result.astype(dtype)


def _normalize_spanning(block_function, x, where, axes, dtype):
    """Run stages 1 to 3 for softmax or log_softmax over chunk-spanning axes."""
    if where is not None:
        x = da.where(where, x, -np.inf)
    stats = _slice_stats(x, axes)
    return da.map_blocks(
        block_function, x, stats, dtype=dtype, meta=_meta(x.ndim, dtype)
    )


# --- public functions --------------------------------------------------------


def _normalize(core_function, block_function, x, axis, where, out, threads):
    """Run softmax or log_softmax: the core function per block, or two stages."""
    x, where, axes, dtype, shape = _prepare(x, axis, where, threads)
    if _spans_chunks(x, axes):
        result = _normalize_spanning(
            functools.partial(block_function, dtype=dtype), x, where, axes, dtype
        )
    else:
        result = _map_core(
            core_function,
            x,
            where,
            dtype,
            axis=axes,
            threads=_task_threads(threads),
        )
    return _store(result.reshape(shape), out)


def softmax(x, axis=-1, *, where=None, out=None, threads=None):
    """Compute the softmax of a Dask array over ``axis``.

    Same semantics as :func:`fastsoftmax.softmax`; the result is lazy.

    Parameters
    ----------
    x : dask.array.Array or array_like
        Input scores; other array-likes are wrapped with ``dask.array.asarray``.
    axis : int, tuple of ints or None, optional
        Axes of each slice; None means all axes. The axes may span chunks.
    where : array_like of bool, optional
        Entries that take part, broadcastable to x; excluded entries get 0.
    out : dask.array.Array, optional
        Dask array of the result's shape and dtype; following Dask's convention
        it is rebound to the result's graph and returned.
    threads : int, optional
        Threads of each C kernel call inside one Dask task. None means 1,
        because Dask runs tasks in parallel already. The chunk-spanning path
        runs in NumPy and ignores it.

    Returns
    -------
    dask.array.Array
        Proportions that sum to 1 along ``axis``, chunked like ``x``.

    Raises
    ------
    TypeError
        If x has an unsupported dtype, where is not boolean or out is not a
        Dask array of the result's dtype.
    ValueError
        If where does not broadcast to x, threads is below 1 or out has the
        wrong shape.
    numpy.exceptions.AxisError
        If an axis is out of range.
    """
    return _normalize(fastsoftmax.softmax, _softmax_block, x, axis, where, out, threads)


def log_softmax(x, axis=-1, *, where=None, out=None, threads=None):
    """Compute the log_softmax of a Dask array over ``axis``.

    Same semantics as :func:`fastsoftmax.log_softmax`; the result is lazy.

    Parameters
    ----------
    x : dask.array.Array or array_like
        Input scores; other array-likes are wrapped with ``dask.array.asarray``.
    axis : int, tuple of ints or None, optional
        Axes of each slice; None means all axes. The axes may span chunks.
    where : array_like of bool, optional
        Entries that take part, broadcastable to x; excluded entries get
        ``-inf``.
    out : dask.array.Array, optional
        Dask array of the result's shape and dtype; following Dask's convention
        it is rebound to the result's graph and returned.
    threads : int, optional
        Threads of each C kernel call inside one Dask task. None means 1,
        because Dask runs tasks in parallel already. The chunk-spanning path
        runs in NumPy and ignores it.

    Returns
    -------
    dask.array.Array
        Log-proportions along ``axis``, chunked like ``x``.

    Raises
    ------
    TypeError
        If x has an unsupported dtype, where is not boolean or out is not a
        Dask array of the result's dtype.
    ValueError
        If where does not broadcast to x, threads is below 1 or out has the
        wrong shape.
    numpy.exceptions.AxisError
        If an axis is out of range.
    """
    return _normalize(
        fastsoftmax.log_softmax, _log_softmax_block, x, axis, where, out, threads
    )


def logsumexp(x, axis=-1, *, keepdims=False, where=None, out=None, threads=None):
    """Compute the logsumexp of a Dask array over ``axis``.

    Same semantics as :func:`fastsoftmax.logsumexp`; the result is lazy.

    Parameters
    ----------
    x : dask.array.Array or array_like
        Input scores; other array-likes are wrapped with ``dask.array.asarray``.
    axis : int, tuple of ints or None, optional
        Axes to reduce; None means all axes. The axes may span chunks.
    keepdims : bool, optional
        Keep the reduced axes with length one.
    where : array_like of bool, optional
        Entries that take part in the sum, broadcastable to x.
    out : dask.array.Array, optional
        Dask array of the result's shape and dtype; following Dask's convention
        it is rebound to the result's graph and returned.
    threads : int, optional
        Threads of each C kernel call inside one Dask task. None means 1,
        because Dask runs tasks in parallel already. The chunk-spanning path
        runs in NumPy and ignores it.

    Returns
    -------
    dask.array.Array
        The log of the sum of exponentials of each slice.

    Raises
    ------
    TypeError
        If x has an unsupported dtype, where is not boolean or out is not a
        Dask array of the result's dtype.
    ValueError
        If where does not broadcast to x, threads is below 1 or out has the
        wrong shape.
    numpy.exceptions.AxisError
        If an axis is out of range.
    """
    x, where, axes, dtype, shape = _prepare(x, axis, where, threads)
    if _spans_chunks(x, axes):
        if where is not None:
            x = da.where(where, x, -np.inf)
        stats = _slice_stats(x, axes)
        # NOTE: where the maximum and the log-sum nearly cancel (a result near
        # 0), this float64 combination keeps about one ulp of the log-sum as
        # absolute error. The in-memory kernel's double-double resum would need
        # the whole slice.
        result = da.map_blocks(
            functools.partial(_logsumexp_block, dtype=dtype),
            stats,
            dtype=dtype,
            meta=_meta(x.ndim, dtype),
        )
        if not keepdims:
            result = result.squeeze(axis=axes)
    else:
        kept_chunks = tuple((1,) if i in axes else c for i, c in enumerate(x.chunks))
        result = _map_core(
            fastsoftmax.logsumexp,
            x,
            where,
            dtype,
            axis=axes,
            keepdims=True,
            threads=_task_threads(threads),
            chunks=kept_chunks,
        )
        if not keepdims:
            result = result.squeeze(axis=axes)
    if len(shape) == 0:
        result = result.reshape(())
    return _store(result, out)


# --- attention over key/value shards -----------------------------------------


def _slice_mask(mask, rows, keys):
    """Return ``mask[..., rows, keys]``, leaving broadcast (length-1) axes whole."""
    if mask is None:
        return None
    row_index = rows if mask.shape[-2] > 1 else slice(None)
    key_index = keys if mask.shape[-1] > 1 else slice(None)
    return mask[..., row_index, key_index]


def _attend_shard(q, k, v, mask, *, reach, scale, threads, dtype):
    """Return ``(out, lse)`` of q's rows against one key shard, in ``dtype``.

    With ``reach`` None every key may be attended. Otherwise query row ``i`` of
    the block may attend key ``j`` of the shard when ``j <= i + reach``, which is
    the causal rule in the block's own indices. The C kernel only applies the
    upper-left rule ``j <= i``, so the shard is cut where that rule fits.
    """
    # float16 inputs are computed in float32 as in memory, and the shard results
    # stay in float32 until the merge.
    q, k, v = (array.astype(dtype, copy=False) for array in (q, k, v))
    options = {"scale": scale, "return_lse": True, "threads": threads}
    rows, keys = q.shape[-2], k.shape[-2]
    if reach is None or reach >= keys - 1:
        return fastsoftmax.attention(q, k, v, mask=mask, **options)
    if reach >= 0:
        # Keys before `reach` are within every row's reach; from there on the
        # rule is upper-left in the shifted key index.
        parts = [
            fastsoftmax.attention(
                q,
                k[..., reach:, :],
                v[..., reach:, :],
                mask=_slice_mask(mask, slice(None), slice(reach, None)),
                causal="upper_left",
                **options,
            )
        ]
        if reach > 0:
            parts.append(
                fastsoftmax.attention(
                    q,
                    k[..., :reach, :],
                    v[..., :reach, :],
                    mask=_slice_mask(mask, slice(None), slice(None, reach)),
                    **options,
                )
            )
        return merge_attention(parts)
    # reach < 0: the first -reach rows attend no key of this shard, and the
    # others follow the upper-left rule in the shifted row index.
    skipped = min(-reach, rows)
    out, lse = fastsoftmax.attention(
        q[..., skipped:, :],
        k,
        v,
        mask=_slice_mask(mask, slice(skipped, None), slice(None)),
        causal="upper_left",
        **options,
    )
    empty_out = np.zeros(out.shape[:-2] + (skipped, out.shape[-1]), dtype=out.dtype)
    empty_lse = np.full(lse.shape[:-1] + (skipped,), -np.inf, dtype=lse.dtype)
    return (
        np.concatenate([empty_out, out], axis=-2),
        np.concatenate([empty_lse, lse], axis=-1),
    )


def _merge_tree(parts):
    """Merge delayed ``(out, lse)`` results in a tree of merge_attention tasks."""
    merge = dask.delayed(merge_attention, nout=2, pure=True)
    while len(parts) > 1:
        parts = [
            merge(parts[start : start + _MERGE_FAN_IN])
            for start in range(0, len(parts), _MERGE_FAN_IN)
        ]
    return parts[0]


def _unmasked_block(out_shape, lse_shape, out_dtype, lse_dtype):
    """Return the result of query rows that attend no key: zeros and -inf."""
    return np.zeros(out_shape, out_dtype), np.full(lse_shape, -np.inf, lse_dtype)


def _cast_result(result, out_dtype, lse_dtype):
    """Return the merged ``(out, lse)`` in the dtypes of the in-memory call."""
    out, lse = result
    return out.astype(out_dtype, copy=False), lse.astype(lse_dtype, copy=False)


def _attention_arrays(q, k, v, mask):
    """Validate the shapes; return q, k, v and mask as dask arrays of equal rank.

    Batch axes are broadcast to their common shape, and 2-D inputs gain a head
    axis of length 1. Also returns whether all of q, k and v were 2-D.
    """
    arrays = {"q": da.asarray(q), "k": da.asarray(k), "v": da.asarray(v)}
    for name, array in arrays.items():
        if array.ndim < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., L, D), got shape "
                f"{array.shape}"
            )
    all_2d = all(array.ndim == 2 for array in arrays.values())
    q, k, v = (
        array[np.newaxis] if array.ndim == 2 else array for array in arrays.values()
    )
    shapes = f"q {q.shape}, k {k.shape}, v {v.shape}"
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"shapes {shapes} do not match: q and k need the same D, k and v the same S"
        )
    if k.shape[-3] != v.shape[-3] or q.shape[-3] % k.shape[-3] != 0:
        raise ValueError(
            f"shapes {shapes} do not match: k and v need the same number of heads, "
            "and q's number of heads must be a multiple of it"
        )
    try:
        batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    except ValueError:
        raise ValueError(f"batch axes of {shapes} do not broadcast") from None

    heads, length, keys = q.shape[-3], q.shape[-2], k.shape[-2]
    q = da.broadcast_to(q, batch + q.shape[-3:])
    k = da.broadcast_to(k, batch + k.shape[-3:])
    v = da.broadcast_to(v, batch + v.shape[-3:])
    if mask is not None:
        mask = da.asarray(mask)
        if mask.dtype != np.bool_ and mask.dtype.kind != "f":
            raise TypeError(
                f"mask has unsupported dtype {mask.dtype}; expected bool or a "
                "floating dtype"
            )
        full = batch + (heads, length, keys)
        try:
            fits = np.broadcast_shapes(mask.shape, full) == full
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"mask has shape {mask.shape}, which does not broadcast to {full}"
            )
        mask = mask.reshape((1,) * (len(full) - mask.ndim) + mask.shape)
        mask = da.broadcast_to(mask, batch + mask.shape[-3:])
    return q, k, v, mask, all_2d


def _align_chunks(q, k, v, mask):
    """Rechunk so that blocks pair up: shards of S, blocks of batch and L."""
    nbatch = q.ndim - 3
    batch_chunks = tuple(
        max((a.chunks[i] for a in (q, k, v)), key=len) for i in range(nbatch)
    )
    q = q.rechunk(batch_chunks + (-1, q.chunks[-2], -1))
    k = k.rechunk(batch_chunks + (-1, k.chunks[-2], -1))
    v = v.rechunk(batch_chunks + (-1, k.chunks[-2], -1))
    if mask is not None:
        tail = (
            -1,
            q.chunks[-2] if mask.shape[-2] > 1 else -1,
            k.chunks[-2] if mask.shape[-1] > 1 else -1,
        )
        mask = mask.rechunk(batch_chunks + tail)
    return q, k, v, mask


def _probe_dtypes(q, k, v, mask, causal, scale, threads):
    """Return the out and lse dtypes of the C kernel for these arguments.

    The call on one query and one key also validates the dtypes, ``causal``,
    ``scale`` and ``threads`` with the in-memory function's own errors.
    """
    tiny = [np.zeros((1, 1, a.shape[-1]), dtype=a.dtype) for a in (q, k, v)]
    tiny_mask = None if mask is None else np.zeros((1, 1, 1), dtype=mask.dtype)
    out, lse = fastsoftmax.attention(
        *tiny,
        mask=tiny_mask,
        causal=causal,
        scale=scale,
        return_lse=True,
        threads=threads,
    )
    return out.dtype, lse.dtype


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
    """Compute scaled dot-product attention with keys and values split along S.

    Same semantics as :func:`fastsoftmax.attention`; the result is lazy. Each
    chunk of k along the key axis S is a shard. Every block of queries runs
    through the C kernel against each shard, and
    :func:`fastsoftmax.merge_attention` merges the shard results, so no task
    needs more than one shard of keys.

    Parameters
    ----------
    q : dask.array.Array or array_like
        Queries, shape ``(..., Hq, L, D)`` or ``(L, D)``.
    k : dask.array.Array or array_like
        Keys, shape ``(..., Hkv, S, D)`` or ``(S, D)``; its chunks along S are
        the shards.
    v : dask.array.Array or array_like
        Values, shape ``(..., Hkv, S, Dv)`` or ``(S, Dv)``; rechunked to k's
        shards.
    mask : dask.array.Array or array_like, optional
        Boolean (True = may attend) or floating (added to the scaled scores),
        broadcastable to ``(..., Hq, L, S)``.
    causal : bool or {"lower_right", "upper_left"}, optional
        Causal rule in global key indices: query i may attend key j when
        ``j <= i + S - L`` (lower-right, also ``True``) or ``j <= i``
        (upper-left). Shards out of every query's reach are skipped.
    scale : float, optional
        Factor applied to the scores; None means ``1 / sqrt(D)``.
    return_lse : bool, optional
        Also return the logsumexp of each row's scores, shape ``(..., Hq, L)``.
    out : dask.array.Array, optional
        Dask array of the output's shape and dtype; following Dask's convention
        it is rebound to the result's graph and returned.
    threads : int, optional
        Threads of each C kernel call inside one Dask task. None means 1,
        because Dask runs tasks in parallel already.

    Returns
    -------
    out : dask.array.Array
        Attention output, shape ``(..., Hq, L, Dv)``, chunked like q along the
        batch axes and L.
    lse : dask.array.Array
        Only with ``return_lse``: the logsumexp of each row's scores.

    Raises
    ------
    TypeError
        If an array has an unsupported dtype.
    ValueError
        If the shapes do not match, causal or scale is invalid, or threads is
        below 1.
    """
    q, k, v, mask, all_2d = _attention_arrays(q, k, v, mask)
    out_dtype, lse_dtype = _probe_dtypes(q, k, v, mask, causal, scale, threads)
    compute_dtype = np.float32 if out_dtype == np.float16 else out_dtype
    if isinstance(causal, str):
        causal_mode = causal
    else:
        causal_mode = "lower_right" if causal else None
    q, k, v, mask = _align_chunks(q, k, v, mask)
    length, keys, heads, dv = q.shape[-2], k.shape[-2], q.shape[-3], v.shape[-1]
    shift = keys - length if causal_mode == "lower_right" else 0

    q_blocks, k_blocks, v_blocks = q.to_delayed(), k.to_delayed(), v.to_delayed()
    m_blocks = None if mask is None else mask.to_delayed()
    row_starts = np.cumsum((0,) + q.chunks[-2])
    key_starts = np.cumsum((0,) + k.chunks[-2])
    attend = dask.delayed(_attend_shard, nout=2, pure=True)
    empty = dask.delayed(_unmasked_block, nout=2, pure=True)
    cast = dask.delayed(_cast_result, nout=2, pure=True)

    grid = q.numblocks[:-3] + (q.numblocks[-2],)
    out_grid = np.empty(q.numblocks, dtype=object)
    lse_grid = np.empty(q.numblocks[:-1], dtype=object)
    for index in np.ndindex(*grid):
        batch_index, row_block = index[:-1], index[-1]
        batch_shape = tuple(q.chunks[i][b] for i, b in enumerate(batch_index))
        rows = q.chunks[-2][row_block]
        row_start = row_starts[row_block]
        parts = []
        for key_block in range(k.numblocks[-2]):
            reach = None
            if causal_mode is not None:
                reach = row_start + shift - key_starts[key_block]
                if reach + rows - 1 < 0:
                    continue  # no query row of the block reaches this shard
            mask_block = None
            if m_blocks is not None:
                mask_index = (
                    0 if mask.numblocks[-2] == 1 else row_block,
                    0 if mask.numblocks[-1] == 1 else key_block,
                )
                mask_block = m_blocks[batch_index + (0,) + mask_index]
            parts.append(
                attend(
                    q_blocks[batch_index + (0, row_block, 0)],
                    k_blocks[batch_index + (0, key_block, 0)],
                    v_blocks[batch_index + (0, key_block, 0)],
                    mask_block,
                    reach=reach,
                    scale=scale,
                    threads=_task_threads(threads),
                    dtype=compute_dtype,
                )
            )
        out_shape = batch_shape + (heads, rows, dv)
        if parts:
            block_out, block_lse = cast(_merge_tree(parts), out_dtype, lse_dtype)
        else:
            block_out, block_lse = empty(
                out_shape, out_shape[:-1], out_dtype, lse_dtype
            )
        out_grid[batch_index + (0, row_block, 0)] = da.from_delayed(
            block_out, out_shape, dtype=out_dtype
        )
        lse_grid[batch_index + (0, row_block)] = da.from_delayed(
            block_lse, out_shape[:-1], dtype=lse_dtype
        )

    result = da.block(out_grid.tolist())
    lse = da.block(lse_grid.tolist())
    if all_2d:
        result, lse = result[0], lse[0]
    result = _store(result, out)
    return (result, lse) if return_lse else result
