"""Candidate sets for the selectors: dense rows ``x_i`` (N, D) or outer products ``g_i (x) h_i``.

The outer product (BADGE's gradient of the last layer's weights) is never materialised: every
squared distance factorises,

    |g_i h_i^T - g_j h_j^T|_F^2 = |g_i|^2 |h_i|^2 + |g_j|^2 |h_j|^2 - 2 (g_i . g_j)(h_i . h_j),

so a block of centres costs two small matrix products (over D and over H) instead of one over
D * H.  Selectors only ever see :class:`Points`: ``take`` rows, ``sqdist`` to another set,
``min_update`` of a running minimum (the fused kernel of :mod:`avlib.kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avlib import kernels


@dataclass(frozen=True)
class Points:
    """N candidates: ``x`` (N, D) if dense, else the pair ``g`` (N, D), ``h`` (N, H).

    ``sqnorm`` (N,) is ``|x_i|^2`` (or ``|g_i|^2 |h_i|^2``), computed once and reused by every
    distance evaluation of the expanded form.
    """

    x: torch.Tensor | None
    g: torch.Tensor | None
    h: torch.Tensor | None
    sqnorm: torch.Tensor
    zero_tol: float

    @staticmethod
    def dense(x: torch.Tensor, zero_tol: float | None = None) -> "Points":
        tol = kernels.default_zero_tol(x.dtype) if zero_tol is None else zero_tol
        return Points(x, None, None, torch.linalg.vecdot(x, x), tol)

    @staticmethod
    def factored(g: torch.Tensor, h: torch.Tensor, zero_tol: float | None = None) -> "Points":
        tol = kernels.default_zero_tol(g.dtype) if zero_tol is None else zero_tol
        return Points(None, g, h, torch.linalg.vecdot(g, g) * torch.linalg.vecdot(h, h), tol)

    @property
    def is_factored(self) -> bool:
        return self.x is None

    @property
    def n(self) -> int:
        return self.sqnorm.shape[0]

    @property
    def device(self) -> torch.device:
        return self.sqnorm.device

    @property
    def dtype(self) -> torch.dtype:
        return self.sqnorm.dtype

    def take(self, idx: torch.Tensor | list[int]) -> "Points":
        """The rows ``idx`` (a copy), as a new :class:`Points`."""
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(idx, dtype=torch.long)
        idx = idx.to(self.device)
        if self.is_factored:
            return Points(None, self.g[idx], self.h[idx], self.sqnorm[idx], self.zero_tol)
        return Points(self.x[idx], None, None, self.sqnorm[idx], self.zero_tol)

    def sqdist(self, other: "Points") -> torch.Tensor:
        """(self.n, other.n) squared distances (expanded form, zero snap; see avlib.kernels.reference)."""
        if self.is_factored:
            return kernels.sqdist_factored(self.g, self.h, self.sqnorm, other.g, other.h, other.sqnorm, self.zero_tol)
        return kernels.sqdist_dense(self.x, self.sqnorm, other.x, other.sqnorm, self.zero_tol)

    def min_update(self, centres: "Points", running_min: torch.Tensor) -> torch.Tensor:
        """``min(running_min_i, min_j d(i, centre_j))`` (N,): one fused pass over the pool."""
        if self.is_factored:
            return kernels.sqdist_min_update_factored(
                self.g, self.h, self.sqnorm, centres.g, centres.h, centres.sqnorm, running_min, self.zero_tol
            )
        return kernels.sqdist_min_update(self.x, self.sqnorm, centres.x, centres.sqnorm, running_min, self.zero_tol)

    def potential(self, idx: torch.Tensor, chunk: int = 4096) -> float:
        """k-means potential of the selection ``idx``: sum_i min_j d(i, idx_j), accumulated in float64."""
        centres = self.take(idx)
        total = 0.0
        for start in range(0, self.n, chunk):
            part = self.take(torch.arange(start, min(start + chunk, self.n), device=self.device))
            total += part.sqdist(centres).amin(dim=1).double().sum().item()
        return total


def _round_up_bf16(v: torch.Tensor) -> torch.Tensor:
    """A bf16 value >= v (any sign): nearest-rounding of v + |v| 2^-7 (bf16's unit roundoff is 2^-8)."""
    return (v + v.abs() * 2.0**-7).to(torch.bfloat16)


class Bf16Bounds:
    """Rigorous upper bounds of D^2 from ONE bf16 matrix product (AMX / AVX512-BF16 on CPU).

    The rejection sampler only needs u_i >= d_i; the exact float32 d_i of the few proposals is
    computed separately, so the distribution stays exactly D^2 however loose u is.  A bf16 GEMM is
    ~10x faster than float32 on CPUs with AMX, so bounds refreshes use it, with every rounding
    error bounded and added:

    * rows are centred on the pool mean (distances are translation invariant; this shrinks the
      norms the errors scale with), then rounded to bf16: |x.c - x~.c~| <= rho |x| |c| with
      rho = 2^-7 + 2^-14 (two relative roundings of 2^-8, plus the centring);
    * the float32 distance used by the acceptance test deviates from the true one by at most
      gamma (|x|^2 + |c|^2) on the uncentred norms, gamma = (2D + 8) 2^-24;
    * the row and column terms R = (|x - m|^2 + gamma |x|^2)(1 + 4(D + 8) 2^-24) (which also
      covers the GEMM's float32 accumulation) enter the product as hi + lo bf16 pairs rounded up,
      and the margin 2 rho |x||c| as a product of two rounded-up bf16 columns;
    * the product is written in bf16 (one more relative rounding 2^-8): the minimum over centres
      is multiplied by 1 + 2^-7.

    So the product of ``[x~_i, A_i, Rhi_i, Rlo_i, 1, 1]`` with ``[-2 x~_c, B_c, 1, 1, Rhi_c, Rlo_c]``
    is >= the float32 distance for every pair (checked in tests on adversarial inputs).
    """

    def __init__(self, x: torch.Tensor, sqnorm: torch.Tensor, zero_tol: float | None = None, chunk: int = 4096):
        n, dim = x.shape
        width = -(-(dim + 5) // 16) * 16  # padded to a multiple of 16 (zeros): faster GEMM
        self.dim = dim
        self.rows = torch.empty(n, width, dtype=torch.bfloat16)  # [x~, A, Rhi, Rlo, 1, 1, 0...]
        self.margin = torch.empty(n, dtype=torch.bfloat16)  # B = 2 rho |x - m|, rounded up
        self.norm = torch.empty(n, dtype=torch.float32)  # |x - m| (upper bound)
        self.err = torch.empty(n, dtype=torch.float32)  # per-row error terms of approx(), see there
        self.rho = 2.0**-7 + 2.0**-14
        tol = kernels.default_zero_tol(torch.float32) if zero_tol is None else zero_tol
        # any shift m is valid; the mean of a strided subsample is cheap and shrinks the norms
        sub = x[:: max(1, n // 1024)]
        mean = (torch.ones(1, sub.shape[0], dtype=x.dtype) @ sub)[0] / sub.shape[0]  # (1, n') @ (n', D)
        rho = 2.0**-7 + 2.0**-14
        gamma = (2 * dim + 8) * 2.0**-24
        grow = 1.0 + 4 * (dim + 8) * 2.0**-24
        scratch = torch.empty(min(chunk, n), dim, dtype=x.dtype)  # reused: fresh allocations page-fault
        for s in range(0, n, chunk):
            xc = torch.sub(x[s : s + chunk], mean, out=scratch[: min(chunk, n - s)])  # (c, D) centred
            nb = torch.linalg.vecdot(xc, xc)  # (c,) |x - m|^2
            a = nb.sqrt() * (1.0 + dim * 2.0**-24)
            r = (nb + gamma * sqnorm[s : s + chunk]) * grow
            r_hi = r.to(torch.bfloat16)
            rows = self.rows[s : s + chunk]
            rows[:, :dim] = xc
            rows[:, dim] = _round_up_bf16(a)
            rows[:, dim + 1] = r_hi
            rows[:, dim + 2] = _round_up_bf16(r - r_hi.float())
            rows[:, dim + 3 : dim + 5] = 1.0
            rows[:, dim + 5 :] = 0.0
            self.margin[s : s + chunk] = _round_up_bf16(2.0 * rho * a)
            self.norm[s : s + chunk] = a
            self.err[s : s + chunk] = (r - nb) + (2.0**-14 + 3 * width * 2.0**-24) * r + (tol + gamma) * sqnorm[s : s + chunk]

    def columns(self, centres: torch.Tensor) -> torch.Tensor:
        """(C, width) column form ``[-2 x~_c, B_c, 1, 1, Rhi_c, Rlo_c, 0...]`` of pool rows ``centres``."""
        dim, rows = self.dim, self.rows[centres]
        cols = torch.zeros_like(rows)
        cols[:, :dim] = rows[:, :dim] * -2.0  # exact in bf16
        cols[:, dim] = self.margin[centres]
        cols[:, dim + 1 : dim + 3] = 1.0
        cols[:, dim + 3 : dim + 5] = rows[:, dim + 1 : dim + 3]
        return cols

    def min_update(self, centres: torch.Tensor, running_min: torch.Tensor) -> torch.Tensor:
        """``min(running_min, bound)`` (N,) against the pool rows ``centres`` (C,) (indices)."""
        prod = self.rows @ self.columns(centres).T  # (N, W) @ (W, C) -> (N, C), bf16
        bound = prod.amin(dim=1).float().clamp_min_(0.0).mul_(1.0 + 2.0**-7)
        return torch.minimum(running_min, bound)

    def approx(self, centres: torch.Tensor) -> torch.Tensor:
        """(N, C) float32 approximations D~ of the squared distances to pool rows ``centres`` (no margin).

        Rigorous error: ``|D~_ic - d_ic| <= self.error(centres, D~)`` (see :meth:`error`), where d is
        the float32 distance of ``Points.sqdist`` (zero snap included).
        """
        cols = self.columns(centres)
        cols[:, self.dim] = 0.0  # drop the margin column: an approximation, not a bound
        return (self.rows @ cols.T).float()  # (N, W) @ (W, C) -> (N, C)

    def error(self, centre: int, approx_column: torch.Tensor) -> torch.Tensor:
        """(N,) bound on |D~_ic - d_ic| for one centre c: input rounding 2 rho |x_i||x_c|, the row and
        column terms' slack and float32 deviations (err_i + err_c), the bf16 output rounding 2^-7 |D~|."""
        e = self.norm * (2.0 * self.rho * self.norm[centre].item())
        return e.add_(self.err).add_(self.err[centre].item()).add_(approx_column.abs().mul_(2.0**-7))
