"""Intra-modal InfoNCE between two augmented windows of the same clip, per modality (pure functions).

Cross-modal contrast (:mod:`avlib.losses.infonce`) gives an encoder a signal only once the other
modality's encoder carries information that the first can match.  Where sound and picture share only
meaning (spoken digit names over handwritten digits, ``reports/real_media.md``), the video encoder got
no usable signal at a few hundred clips.  AVID (Morgado, Vasconcelos, Misra, CVPR 2021, Sec. 3)
compares three instance-discrimination objectives: within-modal (a clip's video against its other
video views), cross-modal, and their sum ("joint").  The within-modal term asks each encoder to tell
clips apart from its own modality alone:

    query  = online embedding of window 1 of clip i (modality m)
    key    = momentum embedding of window 2 of clip i (another random start, other augmentations)
    negatives = the other clips' window-2 keys of the batch, then modality m's own queue

    intra_nce = mean over m in (video, audio) of InfoNCE_m

which is InfoNCE (Oord et al. 2018; MoCo, He et al. 2020, eq. 1) with both sides in one modality, so
each modality's term is :func:`avlib.losses.infonce.info_nce` on those keys.  The intra queues hold
only window-2 keys of the same modality: a video query never meets an audio key here.
"""

from __future__ import annotations

import torch

from avlib.losses.infonce import info_nce

MODALITIES = ("video", "audio")


def intra_nce(
    queries: dict[str, torch.Tensor],
    view_keys: dict[str, torch.Tensor],
    queue_keys: dict[str, torch.Tensor],
    temperature: float,
    queue_masks: dict[str, torch.Tensor] | None = None,
    positive_offset: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Intra-modal InfoNCE of each modality's window-1 queries against window-2 keys of the same modality.

    Args:
        queries: {"video", "audio"} -> (B, D) L2-normalised online embeddings of the first windows.
        view_keys: {"video", "audio"} -> (G, D) L2-normalised momentum embeddings of the global batch's
            second windows (G = B in one process); query i's positive is row ``positive_offset + i``.
        queue_keys: {"video", "audio"} -> (K_m, D) that modality's queued second-window keys (K_m may be 0).
        temperature: tau in exp(q.k / tau).
        queue_masks: optional {"video", "audio"} -> (B, K_m) bool, True where a queue key must not count
            as a negative of that query (a stale key of the query's own clip).
        positive_offset: row of ``view_keys`` holding query 0's positive (this rank's first row).

    Returns:
        The mean of the two modalities' losses, and diagnostics: per modality ``intra_{m}_loss``,
        ``intra_{m}_top1`` (the clip's own other window ranked first among its candidates) and
        ``intra_{m}_pos_sim``; ``intra_uniform_loss``, the mean over modalities of a uniform guess's loss
        over the candidates each query sees (see :func:`~avlib.losses.infonce.info_nce`).
    """
    missing = [m for m in MODALITIES if m not in queries or m not in view_keys or m not in queue_keys]
    assert not missing, f"queries, view_keys and queue_keys need both modalities, missing {missing}"
    losses, diagnostics, uniform = [], {}, []
    for modality in MODALITIES:
        assert queries[modality].shape[1:] == view_keys[modality].shape[1:] == queue_keys[modality].shape[1:], \
            f"{modality}: queries, second-window keys and queue share the embedding dimension"
        mask = None if queue_masks is None else queue_masks[modality]
        loss, parts = info_nce(queries[modality], view_keys[modality], queue_keys[modality], temperature, mask,
                               positive_offset=positive_offset)  # (B, D) vs [(G, D) ; (K_m, D)]
        losses.append(loss)
        diagnostics[f"intra_{modality}_loss"] = loss.item()
        diagnostics[f"intra_{modality}_top1"] = parts["top1"]
        diagnostics[f"intra_{modality}_pos_sim"] = parts["pos_sim"]
        uniform.append(parts["uniform_loss"])
    diagnostics["intra_uniform_loss"] = sum(uniform) / len(uniform)
    return 0.5 * (losses[0] + losses[1]), diagnostics


def objective_loss(objective: str, cross_loss: torch.Tensor, intra_loss: torch.Tensor | None,
                   intra_weight: float) -> torch.Tensor:
    """The loss the optimiser minimises for ``objective`` (``PretrainConfig.objective``).

    ``cross``: the cross-modal loss; ``joint``: cross + intra_weight x intra (AVID's joint objective,
    the weight balancing the two terms); ``intra``: the intra-modal loss alone, unweighted (there is no
    second term to balance) -- the control that says what the cross-modal term adds.
    """
    if objective == "cross":
        return cross_loss
    assert intra_loss is not None, f"objective={objective!r} needs the intra-modal loss"
    if objective == "joint":
        return cross_loss + intra_weight * intra_loss
    assert objective == "intra", f"unknown objective {objective!r}"
    return intra_loss
