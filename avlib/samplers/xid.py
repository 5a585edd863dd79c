"""``sampler=xid`` and ``sampler=robust_xid``: memory-bank cross-modal instance discrimination.

xID (Morgado, Vasconcelos, Misra: AVID, CVPR 2021, Sec. 3): each modality has a memory bank with one
slot per clip; a video query is scored against its own clip's audio key and ``bank_negatives`` audio
slots drawn uniformly from the training clips (and vice versa).  Positives are the momentum key
encoder's keys of the same clip, as for every sampler in this project, so that methods differ only
in their negatives and targets; the banks are updated with those keys after each step.

The batch's other keys are negatives too, as in the queue samplers.  Measured without them (60 clips per
class, ``faulty_pair_rate=0.3``, 60 epochs): every negative came from the past (a slot is
rewritten once per epoch), nothing kept the current embeddings apart, and training chased its own
bank -- top-1 rose to 0.89 by epoch 15, then fell to 0.13 and the video probe ended below random init
(0.37 vs 0.54).

Robust xID (Morgado, Misra, Vasconcelos, CVPR 2021) adds, after ``robust_warmup_epochs`` of plain xID
(Sec. 4: the embeddings must first be meaningful for agreement and neighbours to be):

* ``robust_weights`` -- faulty positives: each pair's loss is weighted by its audio-visual agreement
  (Sec. 3.2).  ``robust_weight_source="bank"`` scores a clip as the paper does, by the cosine of its
  own video and audio memory-bank slots, standardised by the mean and std of that cosine over every
  training clip's slots, recomputed from the banks each step
  (:func:`avlib.losses.instance.bank_agreement_weights`); ``"batch"`` (this project's first version)
  standardises the online . momentum agreement of the step's pairs by the global batch's mean and
  std (:func:`avlib.losses.instance.agreement_weights`);
* ``robust_soft_targets`` -- faulty negatives: the target spreads ``soft_target_mix`` of its mass over
  each clip's ``soft_target_neighbors`` nearest clips in the banks (within-modal, cross-modal or both
  similarities, ``soft_target_space``), which join the query's candidates
  (:func:`avlib.losses.instance.neighbour_targets`, Sec. 3.3).

The last weight of every training clip is kept, and so is its last batch score (the standardised
online . momentum agreement, for every memory-bank sampler), so the end of the run can say how well
each score singles out the dataset's corrupted pairs (``summary.json``: ``weight_auroc`` of the weights
used, ``bank_agreement_auroc`` and ``batch_agreement_auroc`` of the two scores; the corrupted flags
are never used in training).
"""

from __future__ import annotations

import time

import torch

from avlib.dictionary.memory_bank import MemoryBank
from avlib.losses.instance import (agreement_weights, bank_agreement_weights, instance_nce, neighbour_targets,
                                   standardised_agreement)
from avlib.samplers.base import ClipFacts, Sampler, StepBatch, register


def auroc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``positives`` (Mann-Whitney U, ties = 1/2)."""
    scores, positives = scores.double(), positives.bool()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    greater = (scores[positives][:, None] > scores[~positives][None, :]).double()  # (P, N)
    ties = (scores[positives][:, None] == scores[~positives][None, :]).double()
    return float((greater + 0.5 * ties).mean())


def batch_agreement(batch: StepBatch) -> torch.Tensor:
    """(B,) each clip's online . momentum agreement of its two modalities, both directions averaged
    (no gradient): the batch score of ``robust_weight_source="batch"``."""
    q, k = batch.queries, batch.keys
    return 0.5 * ((q.video * k.audio).sum(1) + (q.audio * k.video).sum(1)).detach()


@register("xid")
class MemoryBankSampler(Sampler):
    """Plain xID: uniform negatives from the other modality's memory bank, one-hot targets, unit weights."""

    def __init__(self, cfg, facts: ClipFacts, hidden_dims: dict[str, int]):
        super().__init__(cfg, facts, hidden_dims)
        n, dim = facts.num_clips, cfg.embedding_dim
        self.video_bank = MemoryBank(n, dim, facts.train_index, cfg.bank_momentum, seed=cfg.seed)
        self.audio_bank = MemoryBank(n, dim, facts.train_index, cfg.bank_momentum, seed=cfg.seed + 1)
        self.warmup_steps = facts.epoch_steps(cfg.robust_warmup_epochs, cfg.batch_size)  # robust_xid only
        # the last positive weight of every clip (NaN = never weighted), for the end-of-run AUROC
        self.register_buffer("last_weight", torch.full((n,), float("nan")))
        # the last batch score of every clip (standardised online . momentum agreement; NaN = never seen)
        self.register_buffer("last_batch_score", torch.full((n,), float("nan")))

    def dictionaries(self) -> dict[str, MemoryBank]:
        return {"video": self.video_bank, "audio": self.audio_bank}

    # -- what robust_xid switches on --------------------------------------------------------------
    def robust_active(self, step: int) -> bool:
        return False

    def positive_weights(self, batch: StepBatch) -> torch.Tensor | None:
        return None

    def neighbours(self, clip_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    # -- the loss -----------------------------------------------------------------------------------
    def _direction(self, queries, positives, batch_keys, bank: MemoryBank, batch: StepBatch, drawn, weights,
                   weight_total, neighbours):
        """One direction: queries of one modality against the other modality's keys.

        Candidates per query: [neighbours (soft targets only) ; the global batch's keys ; bank
        draws].  A candidate of the query's own clip is masked (its positive is separate), and so is
        a second copy of a neighbour, whose target mass would otherwise be split.
        """
        size = queries.shape[0]
        keys = [batch_keys[None].expand(size, -1, -1), bank.keys_of(drawn)]  # (B, G, D), (B, M, D)
        clips = [batch.batch_clip_index[None, :].expand(size, -1), drawn]  # (B, G), (B, M)
        if neighbours is not None:
            neighbour_index, neighbour_sim = neighbours  # (B, k), (B, k)
            keys.insert(0, bank.keys_of(neighbour_index))
            clips.insert(0, neighbour_index)
        candidates, candidate_clips = torch.cat(keys, dim=1), torch.cat(clips, dim=1)  # (B, C, D), (B, C)
        mask = candidate_clips == batch.clip_index[:, None]  # (B, C)
        targets = None
        if neighbours is not None:
            k = neighbour_index.shape[1]
            mask[:, k:] |= (candidate_clips[:, k:, None] == neighbour_index[:, None, :]).any(dim=2)
            targets = neighbour_targets(neighbour_sim, self.cfg.soft_target_mix, self.cfg.temperature,
                                        num_candidates=1 + candidates.shape[1])
        labels = self.facts.labels.to(drawn.device)
        return instance_nce(queries, positives, candidates, self.cfg.temperature, targets=targets, weights=weights,
                            negative_mask=mask, query_labels=labels[batch.clip_index],
                            negative_labels=labels[candidate_clips], weight_total=weight_total)

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        q, k, everyone = batch.queries, batch.keys, batch.batch_keys
        size = everyone.video.shape[0]
        # one draw of clip indices per direction for the GLOBAL batch, from the step's own generator
        # (reproducible on resume, the same on every rank); this batch's queries take their rows
        drawn_audio = self.audio_bank.draw(size, self.cfg.bank_negatives, batch.generator)[batch.rows]  # (B, M)
        drawn_video = self.video_bank.draw(size, self.cfg.bank_negatives, batch.generator)[batch.rows]  # (B, M)
        robust = self.robust_active(batch.step)
        weights = self.positive_weights(batch) if robust else None
        weight_total = None
        if weights is not None:  # this batch's share of the global batch's weight sum (the whole sum in one process)
            weight_total = batch.gather(weights).sum() * (weights.shape[0] / size)
        neighbours = self.neighbours(batch.clip_index) if robust else None
        v2a_loss, v2a = self._direction(q.video, k.audio, everyone.audio, self.audio_bank, batch, drawn_audio,
                                        weights, weight_total, neighbours)
        a2v_loss, a2v = self._direction(q.audio, k.video, everyone.video, self.video_bank, batch, drawn_video,
                                        weights, weight_total, neighbours)
        loss = 0.5 * (v2a_loss + a2v_loss)
        diagnostics = {"v2a_loss": v2a_loss.item(), "a2v_loss": a2v_loss.item(), "robust": float(robust)}
        for name in ("pos_sim", "neg_sim", "top1", "same_class_neg", "uniform_loss"):
            diagnostics[name] = 0.5 * (v2a[name] + a2v[name])
        diagnostics.update(self.weight_diagnostics(batch, weights))
        return loss, diagnostics

    def weight_diagnostics(self, batch: StepBatch, weights: torch.Tensor | None) -> dict[str, float]:
        """Weight statistics for metrics.csv (the same columns every step; NaN while unweighted)."""
        nan = float("nan")
        stats = {"weight_mean": nan, "weight_std": nan, "weight_at_floor": nan,
                 "weight_corrupted": nan, "weight_clean": nan}
        if weights is None:
            return stats
        with torch.no_grad():
            stats["weight_mean"] = weights.mean().item()
            stats["weight_std"] = weights.std(unbiased=False).item()
            stats["weight_at_floor"] = (weights < self.cfg.weight_floor + 0.05 * (1 - self.cfg.weight_floor)).float().mean().item()
            if self.facts.corrupted is not None:  # scoring only: the flags never reach the loss
                corrupted = self.facts.corrupted.to(weights.device)[batch.clip_index]
                if corrupted.any():
                    stats["weight_corrupted"] = weights[corrupted].mean().item()
                if (~corrupted).any():
                    stats["weight_clean"] = weights[~corrupted].mean().item()
        return stats

    @torch.no_grad()
    def update(self, batch: StepBatch) -> dict[str, float]:
        """Write the batch's momentum keys into both banks (momentum average, re-normalised), and
        remember each clip's positive weight and batch score (state changes here, on the global
        batch, so that every rank holds the same).  The weight is taken before the banks change, so
        that bank-sourced weights are the ones the step's loss used."""
        started = time.perf_counter()
        weights = self.positive_weights(batch) if self.robust_active(batch.step) else None
        if weights is not None:
            self.last_weight[batch.clip_index] = weights.to(self.last_weight.dtype)
        score = standardised_agreement(batch_agreement(batch))  # (G,): the global batch is the reference
        self.last_batch_score[batch.clip_index] = score.to(self.last_batch_score.dtype)
        self.video_bank.update(batch.keys.video, batch.clip_index, batch.step)
        self.audio_bank.update(batch.keys.audio, batch.clip_index, batch.step)
        return {"select_s": time.perf_counter() - started}

    def summary(self) -> dict:
        """How well low agreement singles out the corrupted pairs (where the manifest flags them).

        ``weight_auroc``: AUROC of (1 - each training clip's last positive weight) for the corrupted
        flag (robust_xid with weights, of whichever ``robust_weight_source`` was used);
        ``bank_agreement_auroc``: the same for (1 - the cosine of the clip's video and audio memory
        slots) at the end of the run; ``batch_agreement_auroc``: the same for (- each clip's last batch
        score, the standardised online . momentum agreement).  Both scores are defined for plain xID
        too, so the two methods and the two weight sources compare.
        """
        result: dict = {}
        corrupted = self.facts.corrupted
        if corrupted is not None and not bool(corrupted[self.facts.train_index].any()):
            corrupted = None  # nothing to single out (an AUROC needs both kinds of pair)
        if corrupted is not None:
            train = self.facts.train_index
            video, audio = self.video_bank.keys_of(train), self.audio_bank.keys_of(train)  # (T, D)
            agreement = (video * audio).sum(dim=1).cpu()  # (T,)
            result["bank_agreement_auroc"] = auroc(-agreement, corrupted[train.cpu()])
            result["corrupted_clips"] = int(corrupted[train.cpu()].sum())
            scored = ~torch.isnan(self.last_batch_score.cpu())
            if bool(scored.any()):
                result["batch_agreement_auroc"] = auroc(-self.last_batch_score.cpu()[scored], corrupted[scored])
        weighted = ~torch.isnan(self.last_weight)
        if bool(weighted.any()):
            weights = self.last_weight[weighted].cpu()
            result.update(weight_final_mean=float(weights.mean()), weight_final_min=float(weights.min()),
                          weighted_clips=int(weighted.sum()))
            if corrupted is not None:
                result["weight_auroc"] = auroc(-weights, corrupted[weighted.cpu()])
        return result


@register("robust_xid")
class RobustXIDSampler(MemoryBankSampler):
    """xID with agreement-weighted positives and neighbour soft targets (each switchable)."""

    def robust_active(self, step: int) -> bool:
        enabled = self.cfg.robust_weights or self.cfg.robust_soft_targets
        return enabled and step >= self.warmup_steps

    def positive_weights(self, batch: StepBatch) -> torch.Tensor | None:
        if not self.cfg.robust_weights:
            return None
        floor, sharpness = self.cfg.weight_floor, self.cfg.weight_sharpness
        if self.cfg.robust_weight_source == "bank":
            # the paper's score: the clip's own video and audio slots, judged against every training
            # clip's (the banks are the same on every rank, so no gather is needed)
            train = self.facts.train_index.to(batch.clip_index.device)
            return bank_agreement_weights(self.video_bank.keys_of(batch.clip_index),
                                          self.audio_bank.keys_of(batch.clip_index),
                                          self.video_bank.keys_of(train), self.audio_bank.keys_of(train),
                                          floor, sharpness)
        agreement = batch_agreement(batch)  # (B,)
        # "typical" agreement is that of the global batch (all ranks), as in a single process
        return agreement_weights(agreement, floor, sharpness, reference=batch.gather(agreement))

    @torch.no_grad()
    def neighbours(self, clip_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each clip's ``soft_target_neighbors`` nearest training clips in the banks, with similarities."""
        if not self.cfg.robust_soft_targets:
            return None
        train = self.facts.train_index.to(clip_index.device)
        video, audio = self.video_bank.keys_of(clip_index), self.audio_bank.keys_of(clip_index)  # (B, D)
        video_train, audio_train = self.video_bank.keys_of(train), self.audio_bank.keys_of(train)  # (T, D)
        space = self.cfg.soft_target_space
        similarity = torch.zeros(clip_index.shape[0], train.shape[0], device=clip_index.device)  # (B, T)
        if space in ("within", "both"):  # (B, D) @ (D, T) -> (B, T), per modality
            similarity += 0.5 * (video @ video_train.T + audio @ audio_train.T)
        if space in ("cross", "both"):
            similarity += 0.5 * (video @ audio_train.T + audio @ video_train.T)
        if space == "both":
            similarity /= 2
        similarity.masked_fill_(clip_index[:, None] == train[None, :], float("-inf"))  # never oneself
        count = min(self.cfg.soft_target_neighbors, train.shape[0] - 1)
        top = similarity.topk(count, dim=1)
        return train[top.indices], top.values
