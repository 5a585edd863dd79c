"""Kernels of the active-selection hot path: Triton on CUDA tensors, plain PyTorch elsewhere.

Each public function here dispatches to :mod:`avlib.kernels.triton_kernels` (when every tensor
is on a CUDA device and Triton imports) or to :mod:`avlib.kernels.reference` (CPU tensors, or no
Triton).  Both modules expose the same signatures, so tests compare them one to one; under
``TRITON_INTERPRET=1`` the Triton launch functions also run on CPU tensors (call them directly).

* :func:`sqdist_min_update`, :func:`sqdist_min_update_factored` -- squared distances of the pool
  to a block of new centres, reduced into the running minimum (bounds refresh, k-center).
* :func:`inverse_cdf` -- the D^2 draw of a buffer of proposals from a float64 prefix sum.
* :func:`badge_grad` -- BADGE's softmax over the dictionary minus the pseudo-label item.
* :func:`sqdist_dense`, :func:`sqdist_factored` -- the (N, C) matrices themselves (reference only:
  used on small blocks, e.g. a buffer of proposals against the centres chosen since a refresh).

Sequential picks on GPU: the rejection sampler in :mod:`avlib.active.selectors` draws a whole
buffer of proposals with one ``inverse_cdf`` launch and accepts/rejects them on the host against
the buffer's own (M, M) distance matrix, so picks are blocked (a handful of launches per ~M picks,
not per pick).  The remaining per-buffer launches are fixed-shape and could be captured in a
CUDA graph; that has not been done (no GPU was available to measure it).
"""

from __future__ import annotations

import torch

from avlib.kernels import reference
from avlib.kernels.reference import ZERO_TOL_ULPS, default_zero_tol, sqdist_dense, sqdist_factored

try:  # Triton is optional at import time (CPU-only installs)
    from avlib.kernels import triton_kernels as _triton
except Exception:  # pragma: no cover - depends on the install
    _triton = None

__all__ = [
    "ZERO_TOL_ULPS",
    "native_bf16",
    "badge_grad",
    "default_zero_tol",
    "inverse_cdf",
    "sqdist_dense",
    "sqdist_factored",
    "sqdist_min_update",
    "sqdist_min_update_factored",
    "triton_available",
    "use_triton",
]


def triton_available() -> bool:
    """True when the Triton kernels imported and a CUDA device exists."""
    return _triton is not None and torch.cuda.is_available()


def use_triton(*tensors: torch.Tensor) -> bool:
    """Dispatch rule: Triton iff it imported and every tensor is a float32 CUDA tensor."""
    return _triton is not None and all(t.is_cuda and t.dtype == torch.float32 for t in tensors)


def sqdist_min_update(x, x_sqnorm, c, c_sqnorm, running_min, zero_tol=None):
    """``min(running_min_i, min_j |x_i - c_j|^2)``; see :func:`avlib.kernels.reference.sqdist_min_update`."""
    impl = _triton if use_triton(x, x_sqnorm, c, c_sqnorm, running_min) else reference
    return impl.sqdist_min_update(x, x_sqnorm, c, c_sqnorm, running_min, zero_tol)


def sqdist_min_update_factored(g, h, sqnorm, gc, hc, c_sqnorm, running_min, zero_tol=None):
    """Outer-product form of :func:`sqdist_min_update`; see the reference module."""
    impl = _triton if use_triton(g, h, sqnorm, gc, hc, c_sqnorm, running_min) else reference
    return impl.sqdist_min_update_factored(g, h, sqnorm, gc, hc, c_sqnorm, running_min, zero_tol)


def inverse_cdf(cumsum, values):
    """First index with ``cumsum > value`` per value; see :func:`avlib.kernels.reference.inverse_cdf`."""
    on_cuda = _triton is not None and cumsum.is_cuda and values.is_cuda and cumsum.dtype == values.dtype
    impl = _triton if on_cuda else reference
    return impl.inverse_cdf(cumsum, values)


def badge_grad(z, dictionary, temperature):
    """BADGE gradient and pseudo-labels; see :func:`avlib.kernels.reference.badge_grad`."""
    impl = _triton if use_triton(z, dictionary) and z.shape[1] <= 1024 else reference
    return impl.badge_grad(z, dictionary, temperature)


def native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (avx512_bf16 / AMX).  Without them bf16 on the CPU is
    emulated and slower than float32: the selectors' bf16 bounds and the study's bf16 runs pay only with them."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - depends on the build
        return False
