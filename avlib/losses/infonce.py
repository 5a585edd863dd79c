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
) -> tuple[torch.Tensor, dict[str, float]]:
    """InfoNCE of B queries against [B batch keys ; K queue keys]; query i's positive is batch key i.

    Args:
        queries: (B, D) L2-normalised.
        batch_keys: (B, D) L2-normalised keys of the same clips (other modality); row i is positive.
        queue_keys: (K, D) L2-normalised negatives (K may be 0).
        temperature: tau in exp(q.k / tau).
        queue_mask: optional (B, K) bool, True where a queue key must NOT count as a negative of
            that query (e.g. a stale copy of the query's own clip).

    Returns:
        The mean loss over queries, and diagnostics: mean positive / negative cosine similarity
        and the top-1 accuracy of picking the positive.
    """
    assert queries.shape == batch_keys.shape, "one positive key per query"
    assert queue_keys.shape[1:] == queries.shape[1:], "keys and queries share the embedding dimension"
    batch = queries.shape[0]
    batch_sim = queries @ batch_keys.T  # (B, D) @ (D, B) -> (B, B); the diagonal holds positives
    queue_sim = queries @ queue_keys.T  # (B, D) @ (D, K) -> (B, K)
    logits = torch.cat([batch_sim, queue_sim], dim=1) / temperature  # (B, B + K)
    if queue_mask is not None:
        assert queue_mask.shape == queue_sim.shape, "queue_mask must be (B, K)"
        full_mask = torch.cat([torch.zeros_like(batch_sim, dtype=torch.bool), queue_mask], dim=1)
        logits = logits.masked_fill(full_mask, float("-inf"))
    targets = torch.arange(batch, device=queries.device)
    loss = F.cross_entropy(logits, targets)

    with torch.no_grad():
        positive = batch_sim.diagonal()
        off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=queries.device)
        negatives = [batch_sim[off_diagonal]]
        if queue_sim.numel():
            negatives.append(queue_sim[~queue_mask] if queue_mask is not None else queue_sim.flatten())
        negative = torch.cat(negatives)
        diagnostics = {
            "pos_sim": positive.mean().item(),
            "neg_sim": negative.mean().item() if negative.numel() else float("nan"),
            "top1": (logits.argmax(dim=1) == targets).float().mean().item(),
        }
    return loss, diagnostics


def same_clip_mask(query_clip_index: torch.Tensor, queue_clip_index: torch.Tensor) -> torch.Tensor:
    """(B, K) True where queue key k comes from the same clip as query b."""
    return query_clip_index[:, None] == queue_clip_index[None, :]  # (B, 1) == (1, K) -> (B, K)
