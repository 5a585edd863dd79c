"""Active selection of k diverse candidates: the selection layer of CM-ACC (Ma et al., ICLR 2021).

CM-ACC (Sec. 3.2, "active sampling") embeds every candidate negative by the gradient it would
induce in the contrastive loss and keeps the candidates that k-means++-style seeding (BADGE, Ash
et al., ICLR 2020, Sec. 3) spreads over that gradient space: large gradients (uncertain,
informative negatives) AND diversity.  :func:`select` is that step, given candidate embeddings
from :mod:`avlib.active.embeddings`.

Selectors (``selector=...``):

* ``kmeanspp`` (default) -- exact k-means++ seeding: first centre uniform, each next one drawn
  with probability proportional to D^2(x), the squared distance to the nearest centre so far.
  The default algorithm is an EXACT rejection sampler that touches the pool a handful of times
  instead of once per pick (see :func:`_kmeanspp_rejection`); ``algorithm="plain"`` is the
  one-pass-per-pick reference; ``greedy_trials`` gives scikit-learn's greedy variant.
* ``kcenter`` -- greedy farthest-point traversal (first uniform or ``first=``).
* ``lloyd_nearest`` -- what the official CM-ACC code does: k-means (seeds drawn with probability
  proportional to the plain, not squared, distance to the nearest seed so far; then Lloyd
  iterations until the assignment stops changing, capped at ``lloyd_iters``) and, for each
  centroid in turn, the nearest candidate not yet taken.  ``seeding="d2"`` uses k-means++ seeds.
* ``random`` -- uniform without replacement (the control).

What this fixes relative to the official CM-ACC code: its k-means runs as Python loops over
points and centres inside every training step; here Lloyd's assignment is one matrix product per
iteration and the update one ``index_add_`` (no Python loop over points), and the seeding is the
blocked rejection sampler below.  (The official momentum-encoder update reads one slice of each
parameter instead of the whole tensor; that bug is not reproduced in avlib -- the momentum update
lives elsewhere and updates whole tensors.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from avlib import kernels
from avlib.active.points import Bf16Bounds, Points

__all__ = ["SELECTORS", "select", "kmeanspp_potential"]


# ----------------------------------------------------------------------------------------------
# random numbers: always drawn from the caller's generator (on its device), then moved
# ----------------------------------------------------------------------------------------------


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n float64 uniforms in [0, 1) from ``generator``, on ``device``."""
    u = torch.rand(n, dtype=torch.float64, generator=generator, device=_gen_device(generator))
    return u.to(device)


def _randint(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(n, (1,), generator=generator, device=_gen_device(generator)).item())


def _fill_uniform(chosen: list[int], n: int, k: int, generator: torch.Generator | None) -> list[int]:
    """Complete ``chosen`` to k distinct indices with a uniform draw among the unchosen ones.

    Used when every remaining candidate is at distance 0 from the chosen ones (duplicates, or an
    all-identical pool): D^2 is then 0 everywhere and k-means++ is undefined; uniform is the
    natural limit and keeps the picks distinct.
    """
    free = np.ones(n, dtype=bool)
    free[chosen] = False
    rest = np.flatnonzero(free)
    perm = torch.randperm(len(rest), generator=generator, device=_gen_device(generator))[: k - len(chosen)]
    return chosen + rest[perm.cpu().numpy()].tolist()


def _first(points: Points, first: int | None, generator: torch.Generator | None) -> int:
    if first is None:
        return _randint(points.n, generator)
    if not (isinstance(first, (int, np.integer)) and 0 <= first < points.n):
        raise ValueError(f"first must be None or an int in [0, {points.n}), got {first!r}")
    return int(first)


def _exact_d2(points: Points, c: int) -> torch.Tensor:
    """Squared distance of every candidate to candidate c (N,), with d[c] = 0 exactly."""
    inf = torch.full((points.n,), float("inf"), dtype=points.dtype, device=points.device)
    d = points.min_update(points.take([c]), inf)
    d[c] = 0.0
    return d


# ----------------------------------------------------------------------------------------------
# k-means++ (D^2) seeding
# ----------------------------------------------------------------------------------------------


def _kmeanspp_plain(points: Points, k: int, generator, first=None) -> list[int]:
    """Reference D^2 seeding: one fused pass over the pool per pick (exact, simple, slow)."""
    chosen = [_first(points, first, generator)]
    return _d2_picks(points, k, generator, chosen, _exact_d2(points, chosen[0]))


def _d2_picks(points: Points, k: int, generator, chosen: list[int], d: torch.Tensor) -> list[int]:
    """Continue D^2 sampling from ``chosen`` until k picks, ``d`` (N,) being each candidate's squared
    distance to the nearest centre so far (0 for the chosen ones and for duplicates of a centre)."""
    while len(chosen) < k:
        cum = d.double().cumsum(0)  # (N,) float64 prefix sum of D^2
        total = cum[-1].item()
        if total <= 0.0:
            return _fill_uniform(chosen, points.n, k, generator)
        i = int(kernels.inverse_cdf(cum, _rand(1, generator, points.device) * total).item())
        if d[i] <= 0:  # only when U * total rounded up to the total: redraw
            continue
        chosen.append(i)
        d = points.min_update(points.take([i]), d)
        d[i] = 0.0
    return chosen


def _kmeanspp_rejection(points: Points, k: int, generator, first=None, refresh_every: int | None = None,
                        min_accept: float = 0.5, max_buffer: int = 256, bounds: str = "auto") -> list[int]:
    """Exact D^2 seeding by rejection from stale upper bounds, picks processed in blocks.

    State: ``u`` (N,) with ``u_i >= d_i`` = D^2 of i w.r.t. ALL centres chosen so far; ``u`` accounts
    for the centres ``chosen[:refreshed]`` and ignores the later "stale" ones.  Its float64 prefix
    sum is the proposal distribution q_i = u_i / sum(u).

    One round draws a BUFFER of M i.i.d. proposals i ~ q (one ``inverse_cdf`` launch), computes their
    exact float32 d against all chosen centres (an (M, t) product) and among themselves (an (M, M)
    product), and then scans them in order: proposal p is accepted iff ``U_p * u_p < d_p`` where
    d_p includes the centres accepted earlier in the scan (a row of the (M, M) matrix).  Each
    proposal is an independent trial that, when accepted, returns i with probability proportional
    to q_i * d_i / u_i, i.e. to d_i: exactly D^2 sampling.  Proposals after an accepted one were
    drawn independently of that decision, so they serve the next pick (a stopping-time argument);
    proposals left when k is reached are discarded.  Chosen points have d = 0 and are never
    accepted again, so picks are distinct.

    The acceptance rate is sum(d) / sum(u), estimated without bias at the end of each buffer by
    the mean of d_p / u_p over the buffer.  When it falls below ``min_accept`` (or every
    ``refresh_every`` picks, if set), the bounds are refreshed by ONE matrix product of the pool
    against the stale centres: in bf16 with rigorous error margins (:class:`Bf16Bounds`, ~10x
    faster than float32 on CPUs with AMX) or in float32 (``Points.min_update``, the Triton kernel
    on GPU).  If right after a bf16 refresh the bounds are too loose (acceptance < ``min_accept``,
    e.g. clusters much tighter than their distance to the mean), later refreshes use float32.
    The refresh policy and the buffer size depend only on the past, so exactness is unaffected.

    If the exact total D^2 is 0 (all remaining candidates duplicate chosen centres), the rest is
    filled uniformly among the unchosen candidates.
    """
    if bounds not in ("auto", "bf16", "fp32"):
        raise ValueError(f"bounds must be one of ['auto', 'bf16', 'fp32'], got {bounds!r}")
    n, device = points.n, points.device
    use_bf16 = (not points.is_factored and device.type == "cpu" and points.dtype == torch.float32
                and (bounds == "bf16" or (bounds == "auto" and kernels.native_bf16())))
    bf16: Bf16Bounds | None = None
    chosen = [_first(points, first, generator)]
    is_chosen = torch.zeros(n, dtype=torch.bool, device=device)
    is_chosen[chosen[0]] = True
    u = _exact_d2(points, chosen[0])  # (N,) bounds; exact w.r.t. chosen[0]
    refreshed = 1  # u accounts for chosen[:refreshed]
    u_exact = True  # u is the float32 D^2 itself (not a looser bound)
    cum = u.double().cumsum(0)  # (N,) float64
    total = cum[-1].item()
    accept_rate, just_refreshed_bf16 = 1.0, False
    while len(chosen) < k:
        t = len(chosen)
        stale = t - refreshed
        if (stale or not u_exact) and (accept_rate < min_accept or total <= 0.0
                                       or (refresh_every is not None and stale >= refresh_every)):
            if use_bf16 and (stale or not u_exact):
                if bf16 is None:
                    bf16 = Bf16Bounds(points.x, points.sqnorm)
                u = bf16.min_update(torch.as_tensor(chosen[refreshed:]), u)
                u_exact, just_refreshed_bf16 = False, True
            else:  # float32: exact against every centre not yet in u
                since = refreshed if u_exact else 0
                u = points.min_update(points.take(chosen[since:]), u if u_exact else torch.full_like(u, float("inf")))
                u_exact = True
            u.masked_fill_(is_chosen, 0.0)
            refreshed, stale = t, 0
            cum = u.double().cumsum(0)
            total = cum[-1].item()
            accept_rate = 1.0
        if total <= 0.0:  # u is exact here: every remaining D^2 is 0
            return _fill_uniform(chosen, n, k, generator)

        m = int(min(max_buffer, max(8, math.ceil(1.25 * (k - t) / max(accept_rate, 1e-3)) + 4)))
        idx = kernels.inverse_cdf(cum, _rand(m, generator, device) * total)  # (M,) proposals ~ u
        buf = points.take(idx)
        ub = u[idx]  # (M,) proposal bounds
        if u_exact and not stale:
            db = ub.clone()
        else:  # exact float32 D^2 of the proposals: (M, D) @ (D, t) (or the factored pair)
            db = buf.sqdist(points.take(chosen)).amin(dim=1)
            torch.minimum(db, ub, out=db)  # equal up to float rounding of the two GEMMs
        db.masked_fill_(is_chosen[idx], 0.0)
        among = buf.sqdist(buf)  # (M, M): d between proposals, for those accepted during the scan
        among.masked_fill_(idx[:, None] == idx[None, :], 0.0)
        thresholds = _rand(m, generator, device) * ub.double()  # U_p * u_p

        # host-side scan (M scalars): accept p iff U_p u_p < d_p, d updated by each accepted row
        d_now = db.double().cpu().numpy()
        ub_np = ub.double().cpu().numpy()
        positive = ub_np > 0
        if just_refreshed_bf16:  # tightness of fresh bf16 bounds: fall back to float32 if poor
            tight = float(np.mean(np.divide(d_now, ub_np, out=np.zeros_like(d_now), where=positive)))
            if tight < min_accept:
                use_bf16 = False
            just_refreshed_bf16 = False
        thr = thresholds.cpu().numpy()
        among_np = among.double().cpu().numpy()
        idx_np = idx.cpu().numpy()
        accepted: list[int] = []
        p = 0
        while len(chosen) + len(accepted) < k:
            hits = np.flatnonzero(thr[p:] < d_now[p:])
            if hits.size == 0:
                break
            p += int(hits[0])
            accepted.append(int(idx_np[p]))
            np.minimum(d_now, among_np[p], out=d_now)
            p += 1
        accept_rate = float(np.mean(np.divide(d_now, ub_np, out=np.zeros_like(d_now), where=positive)))
        if accepted:
            chosen.extend(accepted)
            is_chosen[torch.as_tensor(accepted, device=device)] = True
    return chosen


def _kmeanspp_greedy(points: Points, k: int, generator, first=None, trials: int = 2,
                     bounds: str = "auto") -> list[int]:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007; scikit-learn's default): per pick draw
    ``trials`` candidates by exact D^2 and keep the one that minimises the potential.

    The trials are batched: ONE (N, D) @ (D, trials) product per pick gives every candidate's
    distance to every trial, the potentials are column sums of ``min(d, that)``.  On CPUs with
    fast bf16 (``bounds`` "auto"/"bf16", dense input) that product is a bf16 GEMM of centred rows
    (:meth:`Bf16Bounds.approx`): it only RANKS the trials; the D^2 vector stays exact float32, updated
    for the points whose exact distance to the chosen trial may be below their current D^2 by the
    rigorous error bound of the approximation (usually a small fraction of the pool).
    """
    use_bf16 = (not points.is_factored and points.device.type == "cpu" and points.dtype == torch.float32
                and (bounds == "bf16" or (bounds == "auto" and kernels.native_bf16())))
    approx = Bf16Bounds(points.x, points.sqnorm, points.zero_tol) if use_bf16 else None
    chosen = [_first(points, first, generator)]
    d = _exact_d2(points, chosen[0])
    while len(chosen) < k:
        cum = d.double().cumsum(0)
        total = cum[-1].item()
        if total <= 0.0:
            return _fill_uniform(chosen, points.n, k, generator)
        idx = kernels.inverse_cdf(cum, _rand(trials, generator, points.device) * total)  # (L,)
        if approx is not None:
            dist = approx.approx(idx)  # (N, L) bf16 GEMM, float32 out
        else:
            dist = points.sqdist(points.take(idx))  # (N, L): one GEMM over the pool
        pot = torch.minimum(dist, d[:, None]).sum(dim=0, dtype=torch.float64)  # (L,) potential with trial l
        pot.masked_fill_(d[idx] <= 0, float("inf"))  # a zero-weight draw (end-of-CDF rounding)
        best = int(pot.argmin().item())
        if not math.isfinite(pot[best].item()):
            continue
        c = int(idx[best].item())
        chosen.append(c)
        if approx is None:
            d = torch.minimum(d, dist[:, best])
        else:  # exact update where the chosen trial may be closer than the current D^2
            col = dist[:, best]
            maybe = torch.nonzero(col - approx.error(c, col) < d).squeeze(1)
            exact = points.take(maybe).sqdist(points.take([c]))[:, 0]  # (|S|, D) @ (D, 1)
            d[maybe] = torch.minimum(d[maybe], exact)
        d[c] = 0.0
    return chosen


def _greedy_trials(value, k: int) -> int | None:
    if value is None:
        return None
    if value == "auto":
        return 2 + int(math.log(k))  # scikit-learn's default n_local_trials
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"greedy_trials must be None, 'auto' or an int >= 1, got {value!r}")


def _select_kmeanspp(points: Points, k: int, generator, greedy_trials=None, algorithm: str = "auto",
                     first: int | None = None, refresh_every: int | None = None, min_accept: float = 0.5,
                     max_buffer: int = 256, bounds: str = "auto") -> list[int]:
    trials = _greedy_trials(greedy_trials, k)
    if bounds not in ("auto", "bf16", "fp32"):
        raise ValueError(f"bounds must be one of ['auto', 'bf16', 'fp32'], got {bounds!r}")
    if algorithm not in ("auto", "rejection", "plain"):
        raise ValueError(f"algorithm must be one of ['auto', 'plain', 'rejection'], got {algorithm!r}")
    if refresh_every is not None and not (isinstance(refresh_every, (int, np.integer)) and refresh_every >= 1):
        raise ValueError(f"refresh_every must be None or an int >= 1, got {refresh_every!r}")
    if not (isinstance(min_accept, (int, float)) and 0.0 < min_accept <= 1.0):
        raise ValueError(f"min_accept must be a float in (0, 1], got {min_accept!r}")
    if not (isinstance(max_buffer, (int, np.integer)) and max_buffer >= 1):
        raise ValueError(f"max_buffer must be an int >= 1, got {max_buffer!r}")
    if trials is not None:
        return _kmeanspp_greedy(points, k, generator, first, trials, bounds)
    if algorithm == "plain":
        return _kmeanspp_plain(points, k, generator, first)
    return _kmeanspp_rejection(points, k, generator, first, refresh_every, min_accept, int(max_buffer), bounds)


# ----------------------------------------------------------------------------------------------
# k-center, Lloyd + nearest, random
# ----------------------------------------------------------------------------------------------


def _select_kcenter(points: Points, k: int, generator, first: int | None = None) -> list[int]:
    """Greedy farthest-point traversal (Gonzalez 1985; core-set, Sener & Savarese 2018).

    One fused distance update per pick; chosen entries are held at -1 so that argmax never
    returns them (the running minimum keeps them there).  Once every unchosen candidate is at
    distance 0, the rest is filled uniformly.
    """
    chosen = [_first(points, first, generator)]
    d = _exact_d2(points, chosen[0])
    d[chosen[0]] = -1.0
    return _farthest_picks(points, k, generator, chosen, d)


def _farthest_picks(points: Points, k: int, generator, chosen: list[int], d: torch.Tensor) -> list[int]:
    """Continue the farthest-point traversal from ``chosen`` (held at -1 in ``d``) until k picks."""
    while len(chosen) < k:
        i = int(d.argmax().item())
        if d[i] <= 0:
            return _fill_uniform(chosen, points.n, k, generator)
        chosen.append(i)
        d = points.min_update(points.take([i]), d)
        d[i] = -1.0
    return chosen


def _lloyd_dense(x: torch.Tensor, centroids: torch.Tensor, iters: int) -> torch.Tensor:
    """Lloyd iterations until the assignment repeats, at most ``iters``: the final (K, D) centroids.

    Assignment: one (N, D) @ (D, K) product; update: ``index_add_`` of the rows into their
    centroid's sum.  An empty cluster keeps its previous centroid.
    """
    xn = (x * x).sum(dim=1)
    previous = None
    for _ in range(iters):
        cn = (centroids * centroids).sum(dim=1)
        dist = kernels.sqdist_dense(x, xn, centroids, cn)  # (N, D) @ (D, K) -> (N, K)
        assign = dist.argmin(dim=1)
        if previous is not None and torch.equal(assign, previous):
            break  # converged: the update would reproduce the same centroids exactly
        previous = assign
        counts = torch.bincount(assign, minlength=centroids.shape[0]).to(x.dtype)  # (K,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (K, D)
        keep = counts == 0
        centroids = torch.where(keep[:, None], centroids, sums / counts.clamp_min(1)[:, None])
    return centroids


def _lloyd_factored(g: torch.Tensor, h: torch.Tensor, init: torch.Tensor, iters: int,
                    chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd on outer products g_i (x) h_i.  A mean of outer products is not rank one, so the
    centroids are materialised as (K, D, H) matrices; <g_i h_i^T, C_j> = g_i^T C_j h_i.

    Returns the (K, D, H) centroids and the (N, K) squared distances of the candidates to them.
    Cost O(iters * K * N * D * H): fine for the pool sizes CM-ACC uses with BADGE embeddings,
    but the dense (key_grad / feature) path is the fast one.
    """
    sqnorm = (g * g).sum(dim=1) * (h * h).sum(dim=1)  # (N,) |g_i h_i^T|_F^2
    centroids = g[init][:, :, None] * h[init][:, None, :]  # (K, D, 1) * (K, 1, H) -> (K, D, H)

    def distances(c: torch.Tensor) -> torch.Tensor:
        cols = []
        for s in range(0, c.shape[0], chunk):
            cj = c[s : s + chunk]  # (c, D, H)
            gc = torch.einsum("nd,cdh->nch", g, cj)  # (N, D) x (c, D, H) -> (N, c, H)
            cols.append(torch.einsum("nch,nh->nc", gc, h))  # (N, c, H) x (N, H) -> (N, c)
        inner = torch.cat(cols, dim=1)  # (N, K)
        cn = (c * c).sum(dim=(1, 2))  # (K,)
        return (sqnorm[:, None] + cn[None, :] - 2.0 * inner).clamp_min_(0.0)

    previous = None
    for _ in range(iters):
        assign = distances(centroids).argmin(dim=1)
        if previous is not None and torch.equal(assign, previous):
            break  # converged: the update would reproduce the same centroids exactly
        previous = assign
        counts = torch.bincount(assign, minlength=centroids.shape[0]).to(g.dtype)
        onehot = torch.zeros(g.shape[0], centroids.shape[0], dtype=g.dtype, device=g.device)
        onehot[torch.arange(g.shape[0], device=g.device), assign] = 1.0
        sums = torch.einsum("nk,nd,nh->kdh", onehot, g, h)  # sum of member outer products (K, D, H)
        keep = counts == 0
        centroids = torch.where(keep[:, None, None], centroids, sums / counts.clamp_min(1)[:, None, None])
    return centroids, distances(centroids)


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator | None = None,
           iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of the rows of ``x`` (N, D): k-means++ seeds (exact D^2 sampling), then Lloyd.

    Returns the (N,) cluster of every row and the (k, D) centroids.  Used for pseudo-labels
    (label-aware sampling without ground truth); the same seed gives the same clusters.
    """
    seeds = select(x, k, "kmeanspp", generator=generator)  # (k,)
    centroids = _lloyd_dense(x, x[seeds].clone(), iterations)  # (k, D)
    xn, cn = (x * x).sum(dim=1), (centroids * centroids).sum(dim=1)
    assign = kernels.sqdist_dense(x, xn, centroids, cn).argmin(dim=1)  # (N, D) @ (D, k) -> (N, k) -> (N,)
    return assign, centroids


def _nearest_untaken(dist: torch.Tensor, sqnorm: torch.Tensor, centroid_sqnorm: torch.Tensor, dim: int) -> list[int]:
    """For each centroid in order, the nearest candidate not taken by an earlier centroid.

    ``dist`` (N, K) squared distances computed as |x|^2 + |c|^2 - 2 x.c from ``sqnorm`` (N,) and
    ``centroid_sqnorm`` (K,) in ``dim`` dimensions.  K masked argmins over N (the loop is over
    centroids, not points).  Tie rule: two distances closer than 4x the rounding bound of that formula
    (dim * eps * (|x_a|^2 + |x_b|^2 + 2 |c|^2)) are tied, and the lowest index wins.  Ties are
    structural here, not rare: a two-member cluster's centroid is their midpoint, equidistant from
    both, so without a rule the pick follows the rounding (and differs between one and two
    processes, or between CPUs).
    """
    eps = torch.finfo(dist.dtype).eps
    dist = dist.clone()
    picks = []
    for j in range(dist.shape[1]):
        column = dist[:, j]  # (N,)
        best = int(column.argmin().item())
        tolerance = 4 * dim * eps * (sqnorm + sqnorm[best] + 2 * centroid_sqnorm[j])  # (N,)
        tied = column <= column[best] + tolerance
        i = int(torch.nonzero(tied)[0].item())  # the lowest tied index
        picks.append(i)
        dist[i, :] = float("inf")
    return picks


def _seed_by_distance(points: Points, k: int, generator) -> list[int]:
    """k seeds: the first uniform, each next one with probability proportional to the plain (not
    squared) distance to the nearest seed so far -- the seeding of the official CM-ACC code's k-means."""
    chosen = [_first(points, None, generator)]
    d = _exact_d2(points, chosen[0])  # (N,) squared distances
    while len(chosen) < k:
        weight = d.double().clamp_min(0).sqrt()
        cum = weight.cumsum(0)
        total = cum[-1].item()
        if total <= 0.0:
            return _fill_uniform(chosen, points.n, k, generator)
        i = int(kernels.inverse_cdf(cum, _rand(1, generator, points.device) * total).item())
        if weight[i] <= 0:  # a zero-width interval hit by rounding: draw again
            continue
        chosen.append(i)
        d = points.min_update(points.take([i]), d)
        d[i] = 0.0
    return chosen


def _select_lloyd_nearest(points: Points, k: int, generator, lloyd_iters: int = 100,
                          seeding: str = "distance") -> list[int]:
    """The official CM-ACC selection, vectorised: k-means then the nearest untaken candidate.

    As the official code runs it: seeds by plain distance (``seeding="distance"``), then Lloyd to
    convergence.  The cap ``lloyd_iters`` is ours (the official loop has none); at the pool sizes
    used here (<= 4 x 256 candidates) convergence takes far fewer than 100 iterations.
    """
    if not (isinstance(lloyd_iters, (int, np.integer)) and lloyd_iters >= 0):
        raise ValueError(f"lloyd_iters must be an int >= 0, got {lloyd_iters!r}")
    if seeding not in ("distance", "d2"):
        raise ValueError(f"seeding must be 'distance' (the official code's) or 'd2' (k-means++), got {seeding!r}")
    seeds = _seed_by_distance(points, k, generator) if seeding == "distance" else _kmeanspp_rejection(points, k, generator)
    init = torch.as_tensor(seeds, device=points.device)
    if points.is_factored:
        centroids, dist = _lloyd_factored(points.g, points.h, init, int(lloyd_iters))
        centroid_sqnorm = (centroids * centroids).sum(dim=(1, 2))  # (K,)
        dim = points.g.shape[1] * points.h.shape[1]
    else:
        centroids = _lloyd_dense(points.x, points.x[init], int(lloyd_iters))
        centroid_sqnorm = (centroids * centroids).sum(dim=1)  # (K,)
        dist = kernels.sqdist_dense(points.x, points.sqnorm, centroids, centroid_sqnorm)  # (N, D) @ (D, K) -> (N, K)
        dim = points.x.shape[1]
    return _nearest_untaken(dist, points.sqnorm, centroid_sqnorm, dim)


def _select_random(points: Points, k: int, generator) -> list[int]:
    perm = torch.randperm(points.n, generator=generator, device=_gen_device(generator))
    return perm[:k].tolist()


SELECTORS: dict[str, Callable[..., list[int]]] = {
    "kmeanspp": _select_kmeanspp,
    "kcenter": _select_kcenter,
    "lloyd_nearest": _select_lloyd_nearest,
    "random": _select_random,
}

_OPTIONS = {
    "kmeanspp": ["algorithm", "bounds", "first", "greedy_trials", "max_buffer", "min_accept", "refresh_every"],
    "kcenter": ["first"],
    "lloyd_nearest": ["lloyd_iters", "seeding"],
    "random": [],
}


# ----------------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------------


def _as_float(name: str, t, n_expected: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if n_expected is not None and t.shape[0] != n_expected:
        raise ValueError(f"embeddings=(g, h): g and h must have the same number of rows, got {n_expected} and {t.shape[0]}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(t.shape)}")
    t = t.detach()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.contiguous()


def _check_finite(name: str, sqnorm: torch.Tensor) -> None:
    # a nan/inf anywhere in a row makes its squared norm non-finite: one (N,) check, no extra pass
    if not bool(torch.isfinite(sqnorm).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf, or values whose squares overflow)")


def _points(embeddings) -> Points:
    if isinstance(embeddings, torch.Tensor):
        points = Points.dense(_as_float("embeddings", embeddings))
        _check_finite("embeddings", points.sqnorm)
        return points
    if isinstance(embeddings, Sequence) and len(embeddings) == 2:
        g = _as_float("embeddings[0] (g)", embeddings[0])
        h = _as_float("embeddings[1] (h)", embeddings[1], n_expected=g.shape[0])
        if g.device != h.device:
            raise ValueError(f"embeddings=(g, h) must be on one device, got {g.device} and {h.device}")
        if g.dtype != h.dtype:
            common = torch.promote_types(g.dtype, h.dtype)
            g, h = g.to(common), h.to(common)
        points = Points.factored(g, h)
        _check_finite("embeddings[0] (g)", torch.linalg.vecdot(g, g))
        _check_finite("embeddings[1] (h)", torch.linalg.vecdot(h, h))
        return points
    raise ValueError(
        "embeddings must be an (N, D) float tensor or a pair (g, h) of (N, D) and (N, H) tensors, "
        f"got {type(embeddings).__name__}"
    )


def select(embeddings, k: int, selector: str = "kmeanspp", generator: torch.Generator | None = None,
           centers=None, **options) -> torch.Tensor:
    """Pick k distinct candidates out of N; returns a LongTensor (k,) of indices (pick order).

    Args:
        embeddings: (N, D) float tensor, or a pair ``(g, h)`` of (N, D) and (N, H) tensors standing
            for the never-materialised outer products ``g_i (x) h_i`` (BADGE embeddings).
        k: how many, 1 <= k <= N.
        selector: one of ``kmeanspp`` (default), ``kcenter``, ``lloyd_nearest``, ``random``.
        generator: a ``torch.Generator``; the same seed gives the same selection.  Without one,
            torch's default generator is used.
        centers: points already chosen (dictionary-aware selection, beyond the paper): (M, D), or
            the pair (M, D), (M, H) for factored embeddings.  ``kmeanspp`` then draws every pick,
            the first included, with probability proportional to the squared distance to the
            nearest of ``centers`` and the picks so far (exact conditional D^2 sampling), and
            ``kcenter`` takes the farthest from them; a duplicate of a centre (distance 0) is never
            picked while any candidate is at a positive distance.  Only ``kmeanspp`` and
            ``kcenter`` take it.  Why: per-step seeding spreads the picks among themselves but not
            away from what the dictionary already holds.
        **options: per selector --
            kmeanspp: ``greedy_trials`` (None = exact D^2 sampling; int or "auto" = 2 + ln k,
            scikit-learn's greedy variant), ``algorithm`` ("auto" = "rejection", or "plain"),
            ``refresh_every`` (None, or refresh the bounds at least every b picks),
            ``min_accept`` (refresh when the acceptance rate drops below it, default 0.5),
            ``max_buffer`` (proposals per round, default 256), ``bounds`` ("auto", "bf16" or
            "fp32": precision of the bounds refresh, never of the result), ``first`` (index of the first centre);
            kcenter: ``first``; lloyd_nearest: ``lloyd_iters`` (cap on the Lloyd iterations, run to
            convergence, default 100) and ``seeding`` ("distance", the official code's, default; or "d2");
            random: none.

    Raises:
        ValueError: bad ``embeddings`` (shape, dtype, non-finite), ``k``, ``selector`` or option.
    """
    if selector not in SELECTORS:
        raise ValueError(f"unknown selector={selector!r}; valid choices: {sorted(SELECTORS)}")
    unknown = sorted(set(options) - set(_OPTIONS[selector]))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for selector={selector!r}; valid options: {_OPTIONS[selector]}")
    points = _points(embeddings)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an int in [1, N={points.n}], got {k!r}")
    if not 1 <= k <= points.n:
        raise ValueError(f"k must be in [1, N={points.n}], got k={k}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    with torch.no_grad():
        if centers is not None:
            picks = _select_beside(points, _centre_points(centers, points), int(k), selector, generator, options)
        else:
            picks = SELECTORS[selector](points, int(k), generator, **options)
    out = torch.as_tensor(picks, dtype=torch.long, device=points.device)
    assert out.shape == (k,) and len(set(picks)) == k, "internal error: picks are not k distinct indices"
    return out


def _centre_points(centers, points: Points) -> Points:
    """``centers`` as :class:`Points` of the same kind (dense or factored) and device as ``points``."""
    centre_points = _points(centers) if not (isinstance(centers, torch.Tensor) and centers.shape[0] == 0) else None
    if centre_points is None:
        return points.take([])
    if centre_points.is_factored != points.is_factored:
        raise ValueError("centers must be of the embeddings' kind: an (M, D) tensor for dense embeddings, "
                         "the pair (g, h) for factored ones")
    return centre_points


def _select_beside(points: Points, centres: Points, k: int, selector: str, generator, options: dict) -> list[int]:
    """k picks conditional on the already chosen ``centres`` (dictionary-aware k-means++ / k-center)."""
    if selector not in ("kmeanspp", "kcenter") or options:
        raise ValueError(f"centers= works with selector='kmeanspp' or 'kcenter' and no options; got "
                         f"selector={selector!r}, options {sorted(options)}")
    if centres.n == 0:
        return SELECTORS[selector](points, k, generator)
    inf = torch.full((points.n,), float("inf"), dtype=points.dtype, device=points.device)
    d = points.min_update(centres, inf)  # (N,) squared distance to the nearest centre
    if selector == "kcenter":
        return _farthest_picks(points, k, generator, [], d)
    return _d2_picks(points, k, generator, [], d)


def kmeanspp_potential(embeddings, indices: torch.Tensor) -> float:
    """Sum over candidates of the squared distance to the nearest selected one (float64)."""
    points = _points(embeddings)
    return points.potential(torch.as_tensor(indices, dtype=torch.long))
