"""Cross-modal InfoNCE as pure functions: tensors in, ``(loss, diagnostics)`` out.

The dictionary a query is scored against is the other modality's in-batch keys followed by its
queue (Oord et al. 2018; MoCo, He et al. 2020, eq. 1; AVID/xID, Morgado et al. 2021, eq. 1).  The
in-batch keys make the loss meaningful from step one, while the queue is still empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    queries: torch.Tensor,
    batch_keys: torch.Tensor,
    queue_keys: torch.Tensor,
    temperature: float,
    queue_mask: torch.Tensor | None = None,
    positive_offset: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """InfoNCE of B queries against [G batch keys ; K queue keys]; query i's positive is batch key offset + i.

    Args:
        queries: (B, D) L2-normalised.
        batch_keys: (G, D) L2-normalised keys (other modality) of the global batch, G >= B: G = B in
            one process; under data parallelism every rank's keys, this rank's at ``positive_offset``.
        queue_keys: (K, D) L2-normalised negatives (K may be 0).
        temperature: tau in exp(q.k / tau).
        queue_mask: optional (B, K) bool, True where a queue key must NOT count as a negative of
            that query (e.g. a stale copy of the query's own clip).
        positive_offset: row of ``batch_keys`` holding query 0's positive.

    Returns:
        The mean loss over queries, and diagnostics: mean positive / negative cosine similarity (the
        negatives also split into the batch's fresh keys, ``batch_neg_sim``, and the queue's, ``queue_neg_sim``),
        the top-1 accuracy of picking the positive, and ``uniform_loss``: the loss of a uniform guess
        over the candidates each query sees, mean over queries of ln(G + unmasked queue keys) -- the
        level a loss that has learned nothing stays at (it grows as the queue fills).
    """
    batch = queries.shape[0]
    assert batch_keys.shape[1:] == queries.shape[1:] and 0 <= positive_offset <= batch_keys.shape[0] - batch, \
        "one positive key per query, at rows positive_offset .. positive_offset + B of batch_keys"
    assert queue_keys.shape[1:] == queries.shape[1:], "keys and queries share the embedding dimension"
    batch_sim = queries @ batch_keys.T  # (B, D) @ (D, G) -> (B, G); positives at (i, offset + i)
    queue_sim = queries @ queue_keys.T  # (B, D) @ (D, K) -> (B, K)
    logits = torch.cat([batch_sim, queue_sim], dim=1) / temperature  # (B, G + K)
    if queue_mask is not None:
        assert queue_mask.shape == queue_sim.shape, "queue_mask must be (B, K)"
        full_mask = torch.cat([torch.zeros_like(batch_sim, dtype=torch.bool), queue_mask], dim=1)
        logits = logits.masked_fill(full_mask, float("-inf"))
    targets = positive_offset + torch.arange(batch, device=queries.device)  # (B,)
    loss = F.cross_entropy(logits, targets)

    with torch.no_grad():
        is_positive = F.one_hot(targets, batch_sim.shape[1]).bool()  # (B, G)
        positive = batch_sim[is_positive]
        # the fresh negatives (this step's keys) apart from the dictionary's (keys of earlier steps, none without
        # a queue): a query far less similar to the dictionary's keys than to the fresh ones tells old keys from
        # new by when they were made, a shortcut that lowers the loss without learning what a clip holds
        fresh = batch_sim[~is_positive]
        stale = queue_sim[~queue_mask] if queue_mask is not None else queue_sim.flatten()
        candidates = torch.isfinite(logits).sum(dim=1)  # (B,) unmasked columns: G + unmasked queue keys
        # one host sync for every diagnostic (the mean of an empty set is nan)
        values = torch.stack([positive.mean().double(), torch.cat([fresh, stale]).mean().double(),
                              fresh.mean().double(), stale.mean().double(),
                              (logits.argmax(dim=1) == targets).double().mean(),
                              candidates.double().log().mean()]).tolist()
        diagnostics = dict(zip(("pos_sim", "neg_sim", "batch_neg_sim", "queue_neg_sim", "top1", "uniform_loss"),
                               values))
    return loss, diagnostics


def same_clip_mask(query_clip_index: torch.Tensor, queue_clip_index: torch.Tensor) -> torch.Tensor:
    """(B, K) True where queue key k comes from the same clip as query b."""
    return query_clip_index[:, None] == queue_clip_index[None, :]  # (B, 1) == (1, K) -> (B, K)
