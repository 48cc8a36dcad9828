"""Plain NumPy attention: the oracle for :func:`fastsoftmax.attention`.

It builds the whole ``(..., Hq, L, S)`` score matrix and follows the formula
``softmax(scale * q @ k^T + mask) @ v`` step by step, so a reader can check
it at a glance. Arguments are validated by the same code as the fast path,
and the semantics are the same:

* keys excluded by a False boolean mask entry, a ``-inf`` floating mask entry
  or the causal limit get the score ``-inf`` whatever ``q . k`` is;
* the weights are :func:`fastsoftmax.reference.softmax` of the scores (a NaN
  score makes the row NaN, ``+inf`` scores share the weight equally);
* the output sums ``weight * v`` over the keys whose score is above ``-inf``
  only, so ``0 * inf`` from an excluded key's v row never appears;
* a row whose scores are all ``-inf`` gets zeros and an lse of ``-inf``.

``threads`` is validated and ignored.
"""

import numpy as np

from .attention import (
    _CAUSAL_LOWER_RIGHT,
    _CAUSAL_NONE,
    _MASK_BOOL,
    _MASK_FLOAT,
    _check_out,
    _parse_arguments,
)
from .reference import logsumexp, softmax

__all__ = ["attention"]


def _allowed_keys(args):
    """Return the boolean ``(..., Hq, L, S)`` array of keys each query may use."""
    allowed = np.ones(args.batch + (args.q_heads, args.q_len, args.kv_len), bool)
    if args.mask_kind == _MASK_BOOL:
        allowed &= args.mask
    elif args.mask_kind == _MASK_FLOAT:
        allowed &= args.mask != -np.inf
    if args.causal != _CAUSAL_NONE:
        offset = args.kv_len - args.q_len if args.causal == _CAUSAL_LOWER_RIGHT else 0
        i = np.arange(args.q_len)[:, np.newaxis]
        j = np.arange(args.kv_len)[np.newaxis, :]
        allowed &= j <= i + offset
    return allowed


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
    """Compute ``softmax(scale * q @ k^T + mask) @ v`` with the full score matrix.

    Parameters and results are those of :func:`fastsoftmax.attention`.

    Parameters
    ----------
    q, k, v : array_like
        Queries ``(..., Hq, L, D)``, keys ``(..., Hkv, S, D)`` and values
        ``(..., Hkv, S, Dv)``, or 2-D ``(L, D)``, ``(S, D)``, ``(S, Dv)``.
    mask : array_like of bool or floating, optional
        Broadcastable to ``(..., Hq, L, S)``.
    causal : bool or {'lower_right', 'upper_left'}, optional
        Causal alignment, combined with ``mask`` by AND.
    scale : float, optional
        Factor applied to ``q @ k^T``; None means ``1 / sqrt(D)``.
    return_lse : bool, optional
        Also return the logsumexp of the scaled, masked scores.
    out : ndarray, optional
        Array of the result's shape and dtype to write the output into.
    threads : int, optional
        Accepted for signature compatibility and ignored.

    Returns
    -------
    out : ndarray
        The attention output, ``(..., Hq, L, Dv)`` or ``(L, Dv)``.
    lse : ndarray
        The logsumexp per query row, when ``return_lse`` is True.
    """
    args = _parse_arguments(q, k, v, mask, causal, scale, threads)
    if out is not None:
        _check_out(out, args.out_shape, args.result_dtype)

    # Grouped-query attention: query head h reads key/value head h // group.
    group = args.q_heads // args.kv_heads if args.kv_heads else 1
    k = np.repeat(args.k, group, axis=-3)
    v = np.repeat(args.v, group, axis=-3)

    with np.errstate(invalid="ignore", over="ignore"):
        scores = (args.q @ np.swapaxes(k, -1, -2)) * args.compute_dtype.type(args.scale)
        if args.mask_kind == _MASK_FLOAT:
            scores = scores + args.mask
    scores = np.where(_allowed_keys(args), scores, -np.inf)
    scores = np.broadcast_to(scores, args.batch + scores.shape[-3:])

    lse = logsumexp(scores, axis=-1)
    weights = softmax(scores, axis=-1)

    # weights @ v, but a v entry that is inf or NaN only meets the weights of
    # the keys whose score is above -inf.
    finite_v = np.isfinite(v)
    with np.errstate(invalid="ignore", over="ignore"):
        result = weights @ np.where(finite_v, v, 0)
        if not finite_v.all():
            nonfinite_v = np.where(finite_v, 0, v)
            taking_part = (scores > -np.inf)[..., np.newaxis]
            terms = weights[..., np.newaxis] * nonfinite_v[..., np.newaxis, :, :]
            result = result + np.where(taking_part, terms, 0).sum(axis=-2)
    result = np.where(np.isneginf(lse)[..., np.newaxis], 0, result)

    result = np.broadcast_to(result, args.batch + result.shape[-3:])
    result = result.reshape(args.out_shape).astype(args.result_dtype)
    lse = lse.reshape(args.lse_shape).astype(args.result_dtype)
    if out is not None:
        out[...] = result
        result = out
    if return_lse:
        return result, lse
    return result
