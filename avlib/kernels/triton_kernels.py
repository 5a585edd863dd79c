"""Triton kernels of the active-selection hot path, each with a launch function of the SAME
signature as its PyTorch reference in :mod:`avlib.kernels.reference`.

The launch functions are callable directly (tests run them on CPU tensors under
``TRITON_INTERPRET=1``); :mod:`avlib.kernels` calls them for CUDA tensors only.

Kernels:

* ``sqdist_min_update`` / ``sqdist_min_update_factored``: squared distances of a tile of pool
  rows to a block of centres (``tl.dot`` over D, and over H for the outer-product form), zero
  snap, reduction into the running minimum -- the (N, C) distance matrix never reaches memory.
  One launch refreshes all bounds against all centres chosen since the last refresh.
* ``inverse_cdf``: the D^2 draw, a vectorised binary search of M values in the float64 prefix
  sum; the rejection sampler draws a whole buffer of proposals with one launch.
* ``badge_grad``: the BADGE embedding, attention-like: per candidate, an online softmax over
  the dictionary (running max / sum, rescaled accumulator of ``p @ dictionary``, running argmax
  for the pseudo-label), then ``(acc / sum - dictionary[label]) / tau``; one pass over the
  dictionary, logits never written out.

Dot products use ``input_precision="ieee"``: TF32 would leave ~1e-3 relative error, far above the
zero snap tolerance, and would make duplicates of chosen centres look distinct.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


def _pow2(n: int, lo: int = 16, hi: int | None = None) -> int:
    p = max(lo, triton.next_power_of_2(max(int(n), 1)))
    return min(p, hi) if hi is not None else p


# ----------------------------------------------------------------------------------------------
# (1) fused distance update
# ----------------------------------------------------------------------------------------------


@triton.jit
def _sqdist_min_dense_kernel(
    x_ptr, xn_ptr, c_ptr, cn_ptr, u_in_ptr, u_out_ptr,
    N, C, D,
    stride_xn, stride_xd, stride_cn, stride_cd,
    tol,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    xn = tl.load(xn_ptr + rows, mask=rmask, other=0.0)
    best = tl.load(u_in_ptr + rows, mask=rmask, other=0.0)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        cmask = cols < C
        acc = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            dmask = dd < D
            xt = tl.load(x_ptr + rows[:, None] * stride_xn + dd[None, :] * stride_xd,
                         mask=rmask[:, None] & dmask[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
            ct = tl.load(c_ptr + cols[None, :] * stride_cn + dd[:, None] * stride_cd,
                         mask=dmask[:, None] & cmask[None, :], other=0.0)  # (BLOCK_D, BLOCK_C)
            acc += tl.dot(xt, ct, input_precision="ieee")  # (BLOCK_N, BLOCK_D) @ (BLOCK_D, BLOCK_C)
        cn = tl.load(cn_ptr + cols, mask=cmask, other=0.0)
        s = xn[:, None] + cn[None, :]
        d = s - 2.0 * acc
        d = tl.where(d > tol * s, d, 0.0)
        d = tl.where(cmask[None, :], d, float("inf"))
        best = tl.minimum(best, tl.min(d, axis=1))
    tl.store(u_out_ptr + rows, best, mask=rmask)


@triton.jit
def _sqdist_min_factored_kernel(
    g_ptr, h_ptr, n_ptr, gc_ptr, hc_ptr, cn_ptr, u_in_ptr, u_out_ptr,
    N, C, D, H,
    stride_gn, stride_gd, stride_hn, stride_hd,
    stride_gcn, stride_gcd, stride_hcn, stride_hcd,
    tol,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    xn = tl.load(n_ptr + rows, mask=rmask, other=0.0)
    best = tl.load(u_in_ptr + rows, mask=rmask, other=0.0)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        cmask = cols < C
        gg = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            dmask = dd < D
            gt = tl.load(g_ptr + rows[:, None] * stride_gn + dd[None, :] * stride_gd,
                         mask=rmask[:, None] & dmask[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
            gct = tl.load(gc_ptr + cols[None, :] * stride_gcn + dd[:, None] * stride_gcd,
                          mask=dmask[:, None] & cmask[None, :], other=0.0)  # (BLOCK_D, BLOCK_C)
            gg += tl.dot(gt, gct, input_precision="ieee")
        hh = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)
        for e0 in range(0, H, BLOCK_D):
            ee = e0 + tl.arange(0, BLOCK_D)
            emask = ee < H
            ht = tl.load(h_ptr + rows[:, None] * stride_hn + ee[None, :] * stride_hd,
                         mask=rmask[:, None] & emask[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
            hct = tl.load(hc_ptr + cols[None, :] * stride_hcn + ee[:, None] * stride_hcd,
                          mask=emask[:, None] & cmask[None, :], other=0.0)  # (BLOCK_D, BLOCK_C)
            hh += tl.dot(ht, hct, input_precision="ieee")
        cn = tl.load(cn_ptr + cols, mask=cmask, other=0.0)
        s = xn[:, None] + cn[None, :]
        d = s - 2.0 * gg * hh
        d = tl.where(d > tol * s, d, 0.0)
        d = tl.where(cmask[None, :], d, float("inf"))
        best = tl.minimum(best, tl.min(d, axis=1))
    tl.store(u_out_ptr + rows, best, mask=rmask)


def _check_f32(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.dtype != torch.float32:
            raise ValueError(f"the Triton kernels take float32 tensors, got {t.dtype}")


def sqdist_min_update(x, x_sqnorm, c, c_sqnorm, running_min, zero_tol=None):
    """Triton twin of :func:`avlib.kernels.reference.sqdist_min_update`."""
    _check_f32(x, x_sqnorm, c, c_sqnorm, running_min)
    n, dim = x.shape
    out = torch.empty_like(running_min)
    if c.shape[0] == 0:
        return out.copy_(running_min)
    tol = 256 * torch.finfo(x.dtype).eps if zero_tol is None else zero_tol
    block_n, block_c, block_d = 64, _pow2(c.shape[0], 16, 32), _pow2(dim, 16, 64)
    grid = (triton.cdiv(n, block_n),)
    _sqdist_min_dense_kernel[grid](
        x, x_sqnorm.contiguous(), c, c_sqnorm.contiguous(), running_min.contiguous(), out,
        n, c.shape[0], dim,
        x.stride(0), x.stride(1), c.stride(0), c.stride(1),
        float(tol),
        BLOCK_N=block_n, BLOCK_C=block_c, BLOCK_D=block_d,
    )
    return out


def sqdist_min_update_factored(g, h, sqnorm, gc, hc, c_sqnorm, running_min, zero_tol=None):
    """Triton twin of :func:`avlib.kernels.reference.sqdist_min_update_factored`."""
    _check_f32(g, h, sqnorm, gc, hc, c_sqnorm, running_min)
    n, dim_g = g.shape
    dim_h = h.shape[1]
    out = torch.empty_like(running_min)
    if gc.shape[0] == 0:
        return out.copy_(running_min)
    tol = 256 * torch.finfo(g.dtype).eps if zero_tol is None else zero_tol
    block_n, block_c, block_d = 64, _pow2(gc.shape[0], 16, 32), _pow2(max(dim_g, dim_h), 16, 64)
    grid = (triton.cdiv(n, block_n),)
    _sqdist_min_factored_kernel[grid](
        g, h, sqnorm.contiguous(), gc, hc, c_sqnorm.contiguous(), running_min.contiguous(), out,
        n, gc.shape[0], dim_g, dim_h,
        g.stride(0), g.stride(1), h.stride(0), h.stride(1),
        gc.stride(0), gc.stride(1), hc.stride(0), hc.stride(1),
        float(tol),
        BLOCK_N=block_n, BLOCK_C=block_c, BLOCK_D=block_d,
    )
    return out


# ----------------------------------------------------------------------------------------------
# (2) D^2 draw: inverse CDF by binary search in the float64 prefix sum
# ----------------------------------------------------------------------------------------------


@triton.jit
def _inverse_cdf_kernel(cum_ptr, v_ptr, out_ptr, N, M, n_iters, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    lo = tl.zeros((BLOCK,), dtype=tl.int64)
    hi = tl.zeros((BLOCK,), dtype=tl.int64) + N
    # invariant: cum[j] <= v for j < lo, cum[j] > v for j >= hi; answer = lo once lo == hi
    for _ in range(n_iters):
        active = lo < hi
        mid = (lo + hi) // 2
        c = tl.load(cum_ptr + mid, mask=mask & active, other=0.0)
        right = c <= v
        lo = tl.where(active & right, mid + 1, lo)
        hi = tl.where(active & (c > v), mid, hi)
    lo = tl.minimum(lo, N - 1)
    tl.store(out_ptr + offs, lo, mask=mask)


def inverse_cdf(cumsum, values):
    """Triton twin of :func:`avlib.kernels.reference.inverse_cdf` (one launch for M draws)."""
    if cumsum.dtype != values.dtype:
        raise ValueError(f"cumsum and values must share a dtype, got {cumsum.dtype} and {values.dtype}")
    n, m = cumsum.shape[0], values.shape[0]
    out = torch.empty(m, dtype=torch.int64, device=values.device)
    if m == 0:
        return out
    block = 128
    n_iters = int(math.ceil(math.log2(n + 1))) + 1
    _inverse_cdf_kernel[(triton.cdiv(m, block),)](cumsum.contiguous(), values.contiguous(), out, n, m, n_iters,
                                                  BLOCK=block)
    return out


# ----------------------------------------------------------------------------------------------
# (3) BADGE embedding: online softmax over the dictionary (flash-attention style)
# ----------------------------------------------------------------------------------------------


@triton.jit
def _badge_grad_kernel(
    z_ptr, dict_ptr, g_ptr, label_ptr,
    N, M, D,
    stride_zn, stride_zd, stride_mn, stride_md, stride_gn, stride_gd,
    inv_tau,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    dd = tl.arange(0, BLOCK_D)  # BLOCK_D >= D: a whole row in one tile
    dmask = dd < D
    z = tl.load(z_ptr + rows[:, None] * stride_zn + dd[None, :] * stride_zd,
                mask=rmask[:, None] & dmask[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
    run_max = tl.zeros((BLOCK_N,), dtype=tl.float32) - float("inf")
    run_arg = tl.zeros((BLOCK_N,), dtype=tl.int64)
    run_sum = tl.zeros((BLOCK_N,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        cols = m0 + tl.arange(0, BLOCK_M)
        cmask = cols < M
        dk = tl.load(dict_ptr + cols[:, None] * stride_mn + dd[None, :] * stride_md,
                     mask=cmask[:, None] & dmask[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)
        logits = tl.dot(z, tl.trans(dk), input_precision="ieee") * inv_tau  # (BLOCK_N, BLOCK_M)
        logits = tl.where(cmask[None, :], logits, float("-inf"))
        blk_max = tl.max(logits, axis=1)
        # first column reaching the block max (ties -> lowest index, like torch.argmax)
        is_max = logits == blk_max[:, None]
        blk_arg = tl.min(tl.where(is_max, cols[None, :], M), axis=1).to(tl.int64)
        new_max = tl.maximum(run_max, blk_max)
        run_arg = tl.where(blk_max > run_max, blk_arg, run_arg)  # strict: earlier block wins ties
        scale = tl.exp(run_max - new_max)
        p = tl.exp(logits - new_max[:, None])  # (BLOCK_N, BLOCK_M)
        run_sum = run_sum * scale + tl.sum(p, axis=1)
        acc = acc * scale[:, None] + tl.dot(p, dk, input_precision="ieee")  # (BLOCK_N, BLOCK_M) @ (BLOCK_M, BLOCK_D)
        run_max = new_max
    label_row = tl.load(dict_ptr + run_arg[:, None] * stride_mn + dd[None, :] * stride_md,
                        mask=rmask[:, None] & dmask[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
    g = (acc / run_sum[:, None] - label_row) * inv_tau
    tl.store(g_ptr + rows[:, None] * stride_gn + dd[None, :] * stride_gd, g, mask=rmask[:, None] & dmask[None, :])
    tl.store(label_ptr + rows, run_arg, mask=rmask)


def badge_grad(z, dictionary, temperature):
    """Triton twin of :func:`avlib.kernels.reference.badge_grad`; D up to 1024 (one row per tile)."""
    _check_f32(z, dictionary)
    n, dim = z.shape
    m = dictionary.shape[0]
    if dim > 1024:
        raise ValueError(f"badge_grad's Triton kernel holds a whole row per tile: D <= 1024, got {dim}")
    g = torch.empty_like(z)
    label = torch.empty(n, dtype=torch.int64, device=z.device)
    block_d = _pow2(dim, 16)
    block_n = 32 if block_d <= 256 else 16
    block_m = 32 if block_d <= 256 else 16
    _badge_grad_kernel[(triton.cdiv(n, block_n),)](
        z, dictionary, g, label,
        n, m, dim,
        z.stride(0), z.stride(1), dictionary.stride(0), dictionary.stride(1), g.stride(0), g.stride(1),
        1.0 / float(temperature),
        BLOCK_N=block_n, BLOCK_M=block_m, BLOCK_D=block_d,
    )
    return g, label
