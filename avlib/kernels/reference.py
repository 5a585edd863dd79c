"""Plain-PyTorch references of the active-selection kernels (the CPU path, and the test oracle).

Every function here has the same signature as its Triton twin in :mod:`avlib.kernels.triton_kernels`;
:mod:`avlib.kernels` dispatches between the two (Triton for CUDA tensors, these for the rest).

Squared distances use the expanded form ``|x|^2 + |c|^2 - 2 x.c`` (one matrix product against a
block of centres instead of a pass over the pool per centre).  Its cancellation error is about
``sqrt(D) * eps * (|x|^2 + |c|^2)``, so a duplicate of a centre would come out as a tiny positive
number (or a negative one) rather than 0.  Values ``<= zero_tol * (|x|^2 + |c|^2)`` are therefore
snapped to exactly 0 (this also clamps negatives): a numerical duplicate of a chosen centre gets
D^2 weight 0 and is never picked by D^2 sampling, as an exact duplicate must not be.
"""

from __future__ import annotations

import torch

#: Relative tolerance of the zero snap, in units of the dtype's machine epsilon (see module doc).
ZERO_TOL_ULPS = 256


def default_zero_tol(dtype: torch.dtype) -> float:
    """``ZERO_TOL_ULPS * eps(dtype)``: ~3e-5 for float32, ~6e-14 for float64."""
    return ZERO_TOL_ULPS * torch.finfo(dtype).eps


def _snap(d: torch.Tensor, s: torch.Tensor, zero_tol: float) -> torch.Tensor:
    """``d`` where ``d > zero_tol * s`` else 0 (in place on ``d``); ``s = |x|^2 + |c|^2``."""
    return d.masked_fill_(d <= s.mul_(zero_tol), 0.0)


def sqdist_dense(x: torch.Tensor, x_sqnorm: torch.Tensor, c: torch.Tensor, c_sqnorm: torch.Tensor,
                 zero_tol: float | None = None) -> torch.Tensor:
    """All squared distances between rows of ``x`` (N, D) and rows of ``c`` (C, D) -> (N, C)."""
    tol = default_zero_tol(x.dtype) if zero_tol is None else zero_tol
    s = x_sqnorm[:, None] + c_sqnorm[None, :]  # (N, 1) + (1, C) -> (N, C)
    d = torch.addmm(s, x, c.T, alpha=-2.0)  # (N, C) - 2 (N, D) @ (D, C) -> (N, C)
    return _snap(d, s, tol)


def sqdist_factored(g: torch.Tensor, h: torch.Tensor, sqnorm: torch.Tensor,
                    gc: torch.Tensor, hc: torch.Tensor, c_sqnorm: torch.Tensor,
                    zero_tol: float | None = None) -> torch.Tensor:
    """Squared distances between never-materialised outer products ``g_i (x) h_i`` -> (N, C).

    ``|g_i h_i^T - g_j h_j^T|_F^2 = |g_i|^2 |h_i|^2 + |g_j|^2 |h_j|^2 - 2 (g_i.g_j)(h_i.h_j)``;
    ``sqnorm = |g|^2 |h|^2`` per row.  g (N, D), h (N, H), gc (C, D), hc (C, H).
    """
    tol = default_zero_tol(g.dtype) if zero_tol is None else zero_tol
    s = sqnorm[:, None] + c_sqnorm[None, :]  # (N, 1) + (1, C) -> (N, C)
    gg = g @ gc.T  # (N, D) @ (D, C) -> (N, C)
    hh = h @ hc.T  # (N, H) @ (H, C) -> (N, C)
    d = torch.addcmul(s, gg, hh, value=-2.0)  # (N, C)
    return _snap(d, s, tol)


def sqdist_min_update(x: torch.Tensor, x_sqnorm: torch.Tensor, c: torch.Tensor, c_sqnorm: torch.Tensor,
                      running_min: torch.Tensor, zero_tol: float | None = None) -> torch.Tensor:
    """``min(running_min, min_j |x_i - c_j|^2)`` per row: (N,).  Returns a new tensor.

    The fused update of k-means++ / k-center bounds after a block of C new centres.
    x (N, D), x_sqnorm (N,), c (C, D), c_sqnorm (C,), running_min (N,).
    """
    if c.shape[0] == 0:
        return running_min.clone()
    return torch.minimum(running_min, sqdist_dense(x, x_sqnorm, c, c_sqnorm, zero_tol).amin(dim=1))


def sqdist_min_update_factored(g: torch.Tensor, h: torch.Tensor, sqnorm: torch.Tensor,
                               gc: torch.Tensor, hc: torch.Tensor, c_sqnorm: torch.Tensor,
                               running_min: torch.Tensor, zero_tol: float | None = None) -> torch.Tensor:
    """:func:`sqdist_min_update` for outer-product points ``g_i (x) h_i`` (see :func:`sqdist_factored`)."""
    if gc.shape[0] == 0:
        return running_min.clone()
    d = sqdist_factored(g, h, sqnorm, gc, hc, c_sqnorm, zero_tol)  # (N, C)
    return torch.minimum(running_min, d.amin(dim=1))


def inverse_cdf(cumsum: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """D^2 draw by inverse CDF: for each value v, the first index i with ``cumsum[i] > v`` (int64).

    ``cumsum`` (N,) is the inclusive prefix sum of the non-negative weights (float64, so that every
    weight keeps ~1e-16 relative precision in its bucket); ``values`` (M,) are ``U * cumsum[-1]``
    with ``U ~ Uniform[0, 1)``.  Zero-weight entries own an empty bucket and are never returned,
    except that an index past the end (v rounded up to the total) is clamped to N - 1.
    """
    idx = torch.searchsorted(cumsum, values, right=True)
    return idx.clamp_(max=cumsum.shape[0] - 1)


def badge_grad(z: torch.Tensor, dictionary: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy gradient w.r.t. each candidate, with its most similar dictionary item as label.

    logits = z @ dictionary.T / tau; y = argmax (first on ties); returns
    ``g = (softmax(logits) @ dictionary - dictionary[y]) / tau`` (N, D) and y (N,) int64.
    z (N, D), dictionary (M, D).
    """
    logits = (z @ dictionary.T) / temperature  # (N, D) @ (D, M) -> (N, M)
    label = logits.argmax(dim=1)
    p = torch.softmax(logits, dim=1)  # (N, M)
    g = (p @ dictionary - dictionary[label]) / temperature  # (N, M) @ (M, D) -> (N, D)
    return g, label
