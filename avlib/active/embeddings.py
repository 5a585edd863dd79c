"""Candidate embeddings for active selection: pure functions, tensors in, embeddings out.

CM-ACC (Ma et al., ICLR 2021, Sec. 3.2) chooses which candidate keys enter the dictionary by
running k-means++-style seeding on "gradient embeddings", following BADGE (Ash et al., ICLR 2020,
Sec. 3): a candidate whose gradient is large is uncertain / informative, and spreading the picks
over gradient space makes them diverse.  Three embeddings, each an input to
:func:`avlib.active.select`:

* :func:`key_grad` -- what the official CM-ACC code computes: the gradient of the in-batch
  InfoNCE w.r.t. each pool key used as a negative.
* :func:`badge` -- BADGE proper: the gradient of a pseudo-labelled cross-entropy w.r.t. the last
  layer's weights, as the pair (g, h) standing for the outer product g (x) h.
* :func:`feature` -- the key itself (the diversity-only ablation: no uncertainty term).

No autograd anywhere (the tests check the closed forms against autograd); everything runs under
``torch.no_grad`` semantics on detached inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from avlib import kernels

__all__ = ["EMBEDDINGS", "badge", "candidate_embedding", "feature", "key_grad"]


def key_grad(queries: torch.Tensor, positive_keys: torch.Tensor, pool_keys: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Gradient of the SUMMED InfoNCE of the batch w.r.t. each pool candidate key: (N, D).

    The official CM-ACC code embeds a candidate negative by how strongly the current queries
    would push against it (Ma et al. 2021, Sec. 3.2: the gradient of the contrastive loss w.r.t.
    the negative).  The dictionary is the B positive keys of the batch followed by the N pool
    candidates; query i scores ``p_ij = softmax_j(q_i . d_j / tau)`` over it and its target is
    ``y_ij = 1`` iff j = i (its own positive, among the first B).  For the summed loss
    ``L = sum_i CE(q_i D^T / tau, i)``,

        dL/d(pool_j) = sum_i (p_ij - y_ij) q_i / tau = sum_i p_ij q_i / tau    (y = 0 on the pool).

    The SUM is used (the mean's gradient is this / B): a global scale leaves k-means++
    probabilities, k-center and Lloyd choices unchanged.  Keys are taken as given (typically
    L2-normalised momentum keys, which carry no gradient in MoCo; the embedding is the gradient
    the loss WOULD send, a score, not a training signal).

    Args:
        queries: (B, D).  positive_keys: (B, D), row i positive for query i.  pool_keys: (N, D).
        temperature: tau.
    """
    _check_2d(queries=queries, positive_keys=positive_keys, pool_keys=pool_keys)
    if queries.shape != positive_keys.shape or pool_keys.shape[1] != queries.shape[1]:
        raise ValueError(
            f"key_grad: queries {tuple(queries.shape)}, positive_keys {tuple(positive_keys.shape)} and "
            f"pool_keys {tuple(pool_keys.shape)} must be (B, D), (B, D), (N, D)"
        )
    tau = _check_temperature(temperature)
    q = queries.detach()
    dictionary = torch.cat([positive_keys.detach(), pool_keys.detach()], dim=0)  # (B + N, D)
    logits = (q @ dictionary.T) / tau  # (B, D) @ (D, B + N) -> (B, B + N)
    p_pool = torch.softmax(logits, dim=1)[:, q.shape[0]:]  # (B, N): p_ij over the pool entries
    return (p_pool.T @ q) / tau  # (N, B) @ (B, D) -> (N, D)


def badge(pool_keys: torch.Tensor, pool_inputs: torch.Tensor, dictionary_keys: torch.Tensor,
          temperature: float, normalized: bool = True,
          pre_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE gradient embedding of each candidate, as the pair (g (N, D), h (N, H)).

    BADGE (Ash et al. 2020, Sec. 3) embeds an unlabelled example by the gradient of the
    cross-entropy w.r.t. the last layer's weights, with the model's own most likely class as the
    (pseudo-)label: the norm measures uncertainty and the direction what the example would teach.
    Here the "classes" are the dictionary items (as in CM-ACC, Sec. 3.2): logits
    ``z . d_m / tau``, pseudo-label ``y = argmax_m`` (first on ties), and

        g = dCE/dz = sum_m (p_m - y_m) d_m / tau = (softmax @ dictionary - d_y) / tau.

    The candidate's key is ``z = W h`` (L2-normalised, see below) with h = ``pool_inputs``, the
    input of the last projection layer; the gradient w.r.t. W is the outer product g (x) h, never
    materialised: :func:`avlib.active.select` works on the pair directly.

    L2 normalisation: keys are ``z = y / |y|`` with ``y = W h``.  With ``normalized=True`` (default)
    the chain rule through the normalisation is applied: g <- (I - z z^T) g / |y| (the projection
    onto the sphere's tangent plane; the radial part of g cannot change a normalised key).
    |y| is ``pre_norm`` (N,) if given, else taken as 1 (a per-candidate scale we do not know from
    normalised keys alone).  With ``normalized=False`` g is the gradient w.r.t. z itself.

    Args:
        pool_keys: (N, D) candidate keys z.  pool_inputs: (N, H) inputs h of the last layer.
        dictionary_keys: (M, D) the items the pseudo-label is chosen among.  temperature: tau.
    """
    _check_2d(pool_keys=pool_keys, pool_inputs=pool_inputs, dictionary_keys=dictionary_keys)
    if pool_inputs.shape[0] != pool_keys.shape[0] or dictionary_keys.shape[1] != pool_keys.shape[1]:
        raise ValueError(
            f"badge: pool_keys {tuple(pool_keys.shape)}, pool_inputs {tuple(pool_inputs.shape)} and "
            f"dictionary_keys {tuple(dictionary_keys.shape)} must be (N, D), (N, H), (M, D)"
        )
    if dictionary_keys.shape[0] == 0:
        raise ValueError("badge: dictionary_keys is empty; the pseudo-label needs at least one item")
    tau = _check_temperature(temperature)
    z = pool_keys.detach()
    if z.dtype not in (torch.float32, torch.float64):
        z = z.float()
    # softmax over the dictionary, minus the pseudo-label item (fused Triton kernel on GPU)
    g, _ = kernels.badge_grad(z, dictionary_keys.detach().to(z.dtype), tau)
    if normalized:
        radial = torch.linalg.vecdot(g, z)  # (N,) z . g
        g = g - radial[:, None] * z  # (I - z z^T) g: (N, D)
        if pre_norm is not None:
            if pre_norm.shape != (z.shape[0],):
                raise ValueError(f"badge: pre_norm must be (N,) = ({z.shape[0]},), got {tuple(pre_norm.shape)}")
            g = g / pre_norm.detach()[:, None]
    return g, pool_inputs.detach()


def feature(pool_keys: torch.Tensor) -> torch.Tensor:
    """The candidate key itself (N, D): the diversity-only ablation of CM-ACC's active sampling.

    k-means++ on raw keys spreads the picks over the key space without any uncertainty signal,
    which isolates what the gradient (norm and direction) adds in :func:`key_grad` / :func:`badge`.
    """
    _check_2d(pool_keys=pool_keys)
    return pool_keys.detach()


EMBEDDINGS: dict[str, Callable] = {"key_grad": key_grad, "badge": badge, "feature": feature}


def candidate_embedding(name: str, **tensors):
    """Dispatch by name: ``candidate_embedding("badge", pool_keys=..., pool_inputs=..., ...)``.

    Returns what the named function returns (an (N, D) tensor, or the pair (g, h) for badge).
    """
    if name not in EMBEDDINGS:
        raise ValueError(f"unknown candidate embedding name={name!r}; valid names: {sorted(EMBEDDINGS)}")
    try:
        return EMBEDDINGS[name](**tensors)
    except TypeError as err:  # wrong / missing keyword arguments
        raise ValueError(f"candidate_embedding({name!r}, ...): {err}") from err


def _check_2d(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 2-D floating-point tensor, got {shape}")


def _check_temperature(temperature) -> float:
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return float(temperature)
