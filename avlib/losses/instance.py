"""Instance discrimination with per-query candidates, positive weights and soft targets (pure functions).

The general form behind xID, robust xID and the label-aware methods: query i is scored against its
positive and a set of negatives (shared by all queries, or drawn per query), with

    loss_i = - sum_c t_ic * log softmax_c(q_i . k_c / tau)            (soft cross-entropy)
    loss   = sum_i w_i * loss_i / sum_i w_i                            (weighted mean)

One-hot targets and unit weights give plain InfoNCE / xID (Morgado et al. 2021, eq. 1).  Robust xID
(Morgado, Misra, Vasconcelos, CVPR 2021) changes exactly two things: ``weights`` down-weight faulty
positives (Sec. 3.2, :func:`agreement_weights`; from the memory banks as the paper does,
:func:`bank_agreement_weights`) and ``targets`` spread mass over each instance's
neighbours to soften faulty negatives (Sec. 3.3, :func:`neighbour_targets`).  The weighted mean is
normalised by the weights' sum, so a uniform scaling of all weights (e.g. every weight at the floor)
leaves the loss unchanged: the weights only redistribute the gradient between pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def instance_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    *,
    targets: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    negative_labels: torch.Tensor | None = None,
    weight_total: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Soft-target, weighted cross-entropy of each query over [its positive ; its negatives].

    Args:
        queries: (B, D) L2-normalised.
        positives: (B, D) L2-normalised; row i is query i's positive (candidate column 0).
        negatives: (K, D) shared by all queries, or (B, M, D) one set per query (columns 1..).
        temperature: tau.
        targets: optional (B, 1 + K) rows summing to 1, zero on masked columns (default: one-hot on
            the positive).
        weights: optional (B,) non-negative, not all zero (default: all ones).
        negative_mask: optional (B, K) bool, True where a negative must not count for that query
            (its own clip, a same-class key, ...).  A query whose negatives are all masked has a
            zero loss (its softmax has one candidate) -- it still counts in the weighted mean.
        query_labels, negative_labels: optional (B,) and (K,) or (B, M) class indices (-1 unknown),
            only for the diagnostic ``same_class_neg`` (share of counted negatives of the query's class).
        weight_total: the weighted mean's denominator (default ``weights.sum()``).  Under data
            parallelism, this rank's share of the global batch's weight sum (sum x B / G), so that
            the ranks' average loss is the global batch's weighted mean.

    Returns:
        (loss, diagnostics): pos_sim, neg_sim (over counted negatives), top1 (positive ranked first),
        weight_mean / weight_min / weight_max, masked_neg (share of negatives masked), same_class_neg
        where labels are given, and ``uniform_loss``: the loss of a uniform guess over each query's
        unmasked candidates, ln(1 + counted negatives), in the loss's weighted mean (whatever the
        targets, a uniform prediction over n candidates costs ln n).
    """
    batch, dim = queries.shape
    assert positives.shape == (batch, dim), "one positive per query"
    if negatives.dim() == 2:
        assert negatives.shape[1] == dim, "negatives share the embedding dimension"
        negative_sim = queries @ negatives.T  # (B, D) @ (D, K) -> (B, K)
    else:
        assert negatives.shape[0] == batch and negatives.shape[2] == dim, "per-query negatives must be (B, M, D)"
        negative_sim = torch.einsum("bd,bmd->bm", queries, negatives)  # (B, D) x (B, M, D) -> (B, M)
    positive_sim = (queries * positives).sum(dim=1, keepdim=True)  # (B, 1)
    logits = torch.cat([positive_sim, negative_sim], dim=1) / temperature  # (B, 1 + K)
    if negative_mask is not None:
        assert negative_mask.shape == negative_sim.shape, "negative_mask must be (B, K)"
        full_mask = torch.cat([torch.zeros_like(positive_sim, dtype=torch.bool), negative_mask], dim=1)
        logits = logits.masked_fill(full_mask, float("-inf"))
    log_probs = F.log_softmax(logits, dim=1)  # (B, 1 + K)
    if targets is None:
        per_query = -log_probs[:, 0]  # (B,)
    else:
        assert targets.shape == logits.shape, "targets must be (B, 1 + K)"
        if negative_mask is not None:
            assert not (targets[:, 1:] > 0)[negative_mask].any(), "a soft target puts mass on a masked negative"
        # masked columns hold -inf log-probabilities and zero targets: take 0 * (-inf) as 0
        per_query = -(targets * log_probs.masked_fill(targets == 0, 0.0)).sum(dim=1)  # (B,)
    if weights is None:
        weights = torch.ones(batch, device=queries.device)
    assert weights.shape == (batch,) and bool((weights >= 0).all()) and float(weights.sum()) > 0, \
        "weights must be (B,), non-negative and not all zero"
    loss = (weights * per_query).sum() / (weights.sum() if weight_total is None else weight_total)

    with torch.no_grad():
        counted = ~negative_mask if negative_mask is not None else torch.ones_like(negative_sim, dtype=torch.bool)
        diagnostics = {
            "pos_sim": positive_sim.mean().item(),
            "neg_sim": negative_sim[counted].mean().item() if counted.any() else float("nan"),
            "top1": (logits.argmax(dim=1) == 0).float().mean().item(),
            "weight_mean": weights.mean().item(),
            "weight_min": weights.min().item(),
            "weight_max": weights.max().item(),
            "masked_neg": 1.0 - counted.float().mean().item() if counted.numel() else 0.0,
            # (B,) ln(1 + counted negatives) per query, in the loss's weighted mean over queries
            "uniform_loss": ((weights * (1 + counted.sum(dim=1)).double().log()).sum() / weights.sum()).item(),
        }
        if query_labels is not None and negative_labels is not None:
            same = same_class(query_labels, negative_labels) & counted  # (B, K)
            diagnostics["same_class_neg"] = same.sum().item() / max(1, int(counted.sum()))
    return loss, diagnostics


def same_class(query_labels: torch.Tensor, key_labels: torch.Tensor) -> torch.Tensor:
    """(B, K) True where key k has query b's class; unknown labels (-1) never match.

    ``key_labels`` is (K,) for keys shared by all queries or (B, K) for per-query keys.
    """
    keys = key_labels[None, :] if key_labels.dim() == 1 else key_labels  # (1, K) or (B, K)
    return (query_labels[:, None] == keys) & (query_labels[:, None] >= 0) & (keys >= 0)  # (B, K)


def standardised_agreement(agreement: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """How many standard deviations each agreement lies above the mean of ``reference`` (default:
    the agreements themselves): ``(s - mean) / std``, std over the population, floored at 1e-6.

    Standardising makes a score independent of the similarity scale, which drifts during training;
    which population defines "typical" (one batch, or every training clip's memory-bank slots) is
    the caller's choice.  A single reference value has no spread: its std is taken as 1.
    """
    agreement = agreement.detach()
    reference = agreement if reference is None else reference.detach()
    mean = reference.mean()
    std = reference.std(unbiased=False).clamp_min(1e-6) if reference.numel() > 1 else agreement.new_tensor(1.0)
    return (agreement - mean) / std


def agreement_weights(agreement: torch.Tensor, floor: float, sharpness: float,
                      reference: torch.Tensor | None = None) -> torch.Tensor:
    """Weights of positive pairs from their audio-visual agreement (robust xID, Sec. 3.2).

    A faulty positive (audio that does not belong to the video) has a low cross-modal similarity
    compared with the other pairs, so the weight is a smooth, increasing function of how far a
    pair's agreement lies above or below the typical agreement:

        w = floor + (1 - floor) * sigmoid((s - mean) / (sharpness * std))

    with mean and std of ``reference`` (default: the agreements themselves).  The floor keeps every
    pair in the loss (a clean pair mistaken for a faulty one still teaches something); 0.3 leaves a
    suspicious pair a third of its influence.  ``sharpness`` = 1 spreads the weights over about
    +-2 standard deviations: a pair 1 std below the mean keeps 0.3 + 0.7 * 0.27 = 0.49.  Standardising
    makes the weight independent of the similarity scale, which drifts during training.

    Args:
        agreement: (B,) similarity of each pair's two modalities (no gradient is taken through it).
        floor: the least weight, in [0, 1].
        sharpness: > 0, the sigmoid's width in standard deviations.
        reference: optional (R,) agreements that define "typical" (e.g. the whole memory bank).
    """
    assert 0.0 <= floor <= 1.0 and sharpness > 0, "floor must lie in [0, 1] and sharpness be > 0"
    return floor + (1.0 - floor) * torch.sigmoid(standardised_agreement(agreement, reference) / sharpness)


def slot_agreement(video_slots: torch.Tensor, audio_slots: torch.Tensor) -> torch.Tensor:
    """(N,) cosine of each clip's video and audio memory-bank slots ((N, D) each, L2-normalised):
    how well the clip's own two modalities agree in the bank (robust xID, Sec. 3.2)."""
    assert video_slots.shape == audio_slots.shape, "one video and one audio slot per clip"
    return (video_slots * audio_slots).sum(dim=1).detach()


def bank_agreement_weights(video_slots: torch.Tensor, audio_slots: torch.Tensor, video_bank: torch.Tensor,
                           audio_bank: torch.Tensor, floor: float, sharpness: float) -> torch.Tensor:
    """Positive weights as robust xID computes them (Morgado, Misra, Vasconcelos, CVPR 2021, Sec. 3.2).

    The paper scores a pair by the agreement of the clip's MEMORY-BANK embeddings (video slot .
    audio slot) and judges that score against its distribution over the whole training set, not over
    one batch: a batch of 32 holds a handful of faulty pairs at best, so its mean and std move with
    the draw (at a faulty rate of 0.5 half the batch sets "typical"), while the bank's ~hundreds of
    slots give a stable reference.  The slots are momentum averages of past keys, so a clip's score
    also changes slowly, where the online . momentum agreement of one step is noisy.  The standardised
    score then goes through :func:`agreement_weights`' floored sigmoid, the same map as for the
    batch score, so that ``weight_floor`` and ``weight_sharpness`` mean the same for both sources
    (the sigmoid is this project's smooth increasing map, not checked against the paper's exact form).

    Args:
        video_slots, audio_slots: (B, D) the batch clips' video and audio bank slots.
        video_bank, audio_bank: (T, D) every training clip's slots, row t of each for the same clip
            (the population that defines the mean and std of agreement).
        floor, sharpness: as in :func:`agreement_weights`.

    Returns:
        (B,) weights in [floor, 1].
    """
    return agreement_weights(slot_agreement(video_slots, audio_slots), floor, sharpness,
                             reference=slot_agreement(video_bank, audio_bank))


def neighbour_targets(neighbour_similarity: torch.Tensor, mix: float, temperature: float,
                      num_candidates: int | None = None) -> torch.Tensor:
    """Soft targets over [positive ; k neighbours ; the rest] (robust xID, Sec. 3.3).

    A faulty negative is a different clip with the same content; pushing it away hurts.  So part of
    each instance's target mass moves from its own positive to its nearest neighbours in the memory
    banks, in proportion to their similarity:

        t_i = (1 - mix) * onehot(positive) + mix * softmax(neighbour_similarity_i / temperature)

    Args:
        neighbour_similarity: (B, k) similarity of each instance to its k neighbours (k >= 1).
        mix: in [0, 1]; 0 gives one-hot targets (plain xID).
        temperature: of the neighbour softmax.
        num_candidates: total columns C >= 1 + k; neighbours occupy columns 1..k and the rest get 0.

    Returns:
        (B, C) targets, each row summing to 1.
    """
    batch, k = neighbour_similarity.shape
    assert k >= 1 and 0.0 <= mix <= 1.0, "need at least one neighbour and mix in [0, 1]"
    columns = 1 + k if num_candidates is None else num_candidates
    assert columns >= 1 + k, "the candidates must include every neighbour"
    targets = neighbour_similarity.new_zeros(batch, columns)
    targets[:, 0] = 1.0 - mix
    targets[:, 1:1 + k] = mix * torch.softmax(neighbour_similarity.detach() / temperature, dim=1)
    return targets
