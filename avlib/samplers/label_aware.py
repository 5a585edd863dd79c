"""Label-aware sampling (Wang, Tripathy, Heittola, Mesaros 2024): ``soft_positive``, ``class_aware``, ``hard_negative``.

All three keep the random sampler's FIFO queues and change, with class labels, what counts as a
positive or a negative of each query:

* ``soft_positive`` -- with probability ``soft_positive_rate`` a query's positive is the other
  modality's key of ANOTHER clip of its class (the audio of one dog clip is a positive for the video
  of another); the query's own clip and the partner are then neither negatives nor the positive.
* ``class_aware`` -- keys of the query's class are removed from its negatives (masked out of the
  softmax denominator), so instances of one class are not pushed apart.
* ``hard_negative`` -- class-aware, and of the remaining negatives only the ``hard_negative_count``
  most similar to the query count: the ones that still confuse it.

Labels (``label_source``): the manifest's ground truth, or pseudo-labels from k-means (k-means++
seeds, Lloyd) on the latest keys of both modalities every ``pseudo_label_every`` steps -- no ground
truth involved; before the first clustering every label is unknown (-1) and the methods behave as
the random sampler.  For the first ``label_warmup_epochs`` they also behave as the random sampler,
as robust xID does: measured on the embedded dataset (20 epochs, no warm-up), k-means labels of
untrained keys had a purity of 0.22 and their soft positives left the video probe BELOW random init
(0.37 vs 0.54), and hard negatives chosen by an untrained encoder gained only +1.7 points.  The agreement of pseudo-labels with the ground truth is logged
(``label_purity``) but never used.  ``summary.json`` records the source.

Noisy labels (``label_noise``, ground truth only): Wang et al.'s effect depends on label quality
(their soft positives gain +6.7 linear points in-domain with ground truth, +2.4 with pseudo-labels,
+0.7 with 30% of the labels wrong), so the study can give the methods ground truth with a stated
share of the TRAINING clips' labels replaced by a uniformly random other class
(:func:`noisy_labels`, seeded by the run's seed, drawn from its own generator so that the data
order and initial weights stay those of the clean run).  Only the methods' labels change: the
probes, the diagnostics (``same_class_neg``) and ``label_purity`` (here the share of training clips
whose noisy label's majority class is their class, 1 - label_noise) read the true labels.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from avlib.active import kmeans
from avlib.config import ConfigError
from avlib.dictionary.memory_bank import MemoryBank
from avlib.losses.instance import instance_nce
from avlib.losses.label_aware import hard_negative_mask, same_class
from avlib.samplers.base import ClipFacts, QueueSampler, StepBatch, register


def purity(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of clips whose cluster's majority class is their class (1 = clusters refine classes)."""
    known = predicted >= 0
    if not bool(known.any()):
        return float("nan")
    predicted, truth = predicted[known], truth[known]
    counts = torch.zeros(int(predicted.max()) + 1, int(truth.max()) + 1, dtype=torch.long)
    counts.index_put_((predicted.cpu(), truth.cpu()), torch.ones_like(predicted.cpu()), accumulate=True)
    return float(counts.max(dim=1).values.sum()) / int(known.sum())


def noisy_labels(labels: torch.Tensor, train_index: torch.Tensor, num_classes: int, share: float,
                 seed: int) -> torch.Tensor:
    """(N,) ``labels`` with ``round(share x T)`` of the T training clips (``train_index``) -- chosen
    uniformly without replacement -- given a uniformly random OTHER class: ``(label + U{1, C-1}) mod C``.
    Clips outside ``train_index`` keep theirs.  Deterministic in ``seed`` (its own generator)."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"parameter label_noise={share!r} must lie in [0, 1)")
    if num_classes < 2:
        raise ConfigError(f"parameter label_noise={share!r} needs at least 2 classes to move a label to, "
                          f"got {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    count = round(share * train_index.numel())
    flipped = train_index[torch.randperm(train_index.numel(), generator=generator)[:count]]  # (count,)
    offset = torch.randint(1, num_classes, (count,), generator=generator)  # (count,) never 0: another class
    noisy = labels.clone()  # (N,)
    noisy[flipped] = (labels[flipped] + offset.to(labels.device)) % num_classes
    return noisy


class ClipLabels(nn.Module):
    """The class label of every clip as a method sees it (-1 = unknown)."""

    def __init__(self, cfg, facts: ClipFacts):
        super().__init__()
        self.source = cfg.label_source
        self.every = cfg.pseudo_label_every
        self.clusters = cfg.pseudo_label_clusters or max(2, facts.num_classes)
        self.truth = facts.labels
        initial = facts.labels.clone() if self.source == "ground_truth" else torch.full_like(facts.labels, -1)
        self.noise = cfg.label_noise
        if self.noise and self.source != "ground_truth":
            raise ConfigError(f"parameter label_noise={self.noise!r} replaces ground-truth labels; with "
                              f"label_source={self.source!r} set label_noise=0")
        if self.noise:
            initial = noisy_labels(facts.labels, facts.train_index, facts.num_classes, self.noise, cfg.seed)
        self.register_buffer("labels", initial)  # (N,)
        start = purity(initial[facts.train_index], facts.labels[facts.train_index]) if self.noise else 1.0
        self.register_buffer("purity", torch.tensor(float("nan") if self.source == "kmeans" else start))

    @torch.no_grad()
    def refresh(self, step: int, banks: tuple[MemoryBank, MemoryBank], generator: torch.Generator) -> None:
        """k-means pseudo-labels of the clips seen so far, every ``pseudo_label_every`` steps."""
        if self.source != "kmeans" or (step + 1) % self.every:
            return
        video, audio = banks
        seen = video.train_index[video.step_added_of(video.train_index) >= 0]  # (S,)
        if seen.numel() < 2 * self.clusters:
            return
        features = torch.cat([video.keys_of(seen), audio.keys_of(seen)], dim=1)  # (S, 2D): both modalities' keys
        assign, _ = kmeans(features, self.clusters, generator=generator)
        self.labels.fill_(-1)
        self.labels[seen] = assign
        self.purity.fill_(purity(self.labels[seen], self.truth.to(seen.device)[seen]))


class LabelAwareSampler(QueueSampler):
    """FIFO queues (as ``random``) plus per-clip labels and the latest key of every clip."""

    def __init__(self, cfg, facts: ClipFacts, hidden_dims: dict[str, int]):
        super().__init__(cfg, facts, hidden_dims)
        self.clip_labels = ClipLabels(cfg, facts)
        self.warmup_steps = facts.epoch_steps(cfg.label_warmup_epochs, cfg.batch_size)
        # the latest momentum key of every clip (momentum 0): soft positives and k-means read them
        self.video_keys = MemoryBank(facts.num_clips, cfg.embedding_dim, facts.train_index, 0.0, seed=cfg.seed)
        self.audio_keys = MemoryBank(facts.num_clips, cfg.embedding_dim, facts.train_index, 0.0, seed=cfg.seed + 1)

    # -- what each method changes --------------------------------------------------------------
    def partners(self, batch: StepBatch) -> torch.Tensor:
        """(B,) the clip whose other-modality key is each query's positive (default: its own clip)."""
        return batch.clip_index

    def extra_mask(self, similarity, query_labels, negative_labels, excluded) -> torch.Tensor:
        """(B, K) more negatives to mask beyond ``excluded`` (the query's own and partner clips)."""
        return excluded

    # -- the loss ---------------------------------------------------------------------------------
    def _direction(self, queries, batch_keys, positives, queue, batch: StepBatch, partner):
        queue_keys, queue_clips = queue.valid()
        negatives = torch.cat([batch_keys, queue_keys])  # (K, D), K = G + Q: the global batch's keys, the queue
        negative_clips = torch.cat([batch.batch_clip_index, queue_clips])  # (K,)
        size = batch_keys.shape[0]
        own = negative_clips[None, :] == batch.clip_index[:, None]  # (B, K)
        if not self.cfg.mask_same_clip:  # stale queue copies of the own clip stay negatives
            own[:, size:] = False
        excluded = own | (negative_clips[None, :] == partner[:, None])  # the partner is the positive
        labels = self.clip_labels.labels
        mask = excluded
        if batch.step >= self.warmup_steps:
            with torch.no_grad():
                similarity = queries.detach() @ negatives.T  # (B, D) @ (D, K) -> (B, K)
            mask = self.extra_mask(similarity, labels[batch.clip_index], labels[negative_clips], excluded)
        truth = self.facts.labels.to(negatives.device)
        return instance_nce(queries, positives, negatives, self.cfg.temperature, negative_mask=mask,
                            query_labels=truth[batch.clip_index], negative_labels=truth[negative_clips])

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        q, k = batch.queries, batch.keys
        partner = self.partners(batch) if batch.step >= self.warmup_steps else batch.clip_index  # (B,)
        swapped = partner != batch.clip_index  # (B,)
        # a swapped positive is the partner's latest key of the other modality, else the fresh key
        audio_positive = torch.where(swapped[:, None], self.audio_keys.keys_of(partner), k.audio)  # (B, D)
        video_positive = torch.where(swapped[:, None], self.video_keys.keys_of(partner), k.video)  # (B, D)
        everyone = batch.batch_keys
        v2a_loss, v2a = self._direction(q.video, everyone.audio, audio_positive, self.audio_queue, batch, partner)
        a2v_loss, a2v = self._direction(q.audio, everyone.video, video_positive, self.video_queue, batch, partner)
        loss = 0.5 * (v2a_loss + a2v_loss)
        diagnostics = {"v2a_loss": v2a_loss.item(), "a2v_loss": a2v_loss.item(),
                       "soft_positives": swapped.float().mean().item(),
                       "label_purity": float(self.clip_labels.purity)}
        for name in ("pos_sim", "neg_sim", "top1", "masked_neg", "same_class_neg", "uniform_loss"):
            diagnostics[name] = 0.5 * (v2a[name] + a2v[name])
        return loss, diagnostics

    def keys_to_enqueue(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(batch.keys, modality), batch.clip_index

    @torch.no_grad()
    def update(self, batch: StepBatch) -> dict[str, float]:
        """FIFO enqueue, remember every clip's latest keys, and re-cluster when pseudo-labels are due."""
        diagnostics = super().update(batch)
        started = time.perf_counter()
        self.video_keys.update(batch.keys.video, batch.clip_index, batch.step)
        self.audio_keys.update(batch.keys.audio, batch.clip_index, batch.step)
        self.clip_labels.refresh(batch.step, (self.video_keys, self.audio_keys), batch.generator)
        diagnostics["select_s"] += time.perf_counter() - started
        return diagnostics

    def summary(self) -> dict:
        purity = float(self.clip_labels.purity)  # NaN until k-means first ran: JSON has no NaN, so null
        return {**super().summary(), "label_source": self.cfg.label_source,
                "label_purity": None if purity != purity else purity,
                "label_clusters": self.clip_labels.clusters if self.cfg.label_source == "kmeans" else None}


@register("soft_positive")
class SoftPositiveSampler(LabelAwareSampler):
    def partners(self, batch: StepBatch) -> torch.Tensor:
        """For a ``soft_positive_rate`` share of queries, a random already-seen training clip of the same class.

        The draws are made for the global batch (the same on every rank) and this batch takes its rows.
        """
        labels = self.clip_labels.labels
        clips = batch.batch_clip_index  # (G,)
        train = self.facts.train_index.to(clips.device)
        seen = self.video_keys.step_added_of(train) >= 0  # (T,) a partner needs a stored key
        query_labels = labels[clips]  # (G,)
        candidates = ((labels[train][None, :] == query_labels[:, None]) & (query_labels[:, None] >= 0)
                      & seen[None, :] & (train[None, :] != clips[:, None]))  # (G, T)
        draw = torch.rand(clips.shape[0], generator=batch.generator).to(candidates.device)  # (G,)
        swap = (draw < self.cfg.soft_positive_rate) & candidates.any(dim=1)
        partner = clips.clone()
        if bool(swap.any()):
            choice = torch.multinomial(candidates[swap].float().cpu(), 1, generator=batch.generator)[:, 0]
            partner[swap] = train[choice.to(train.device)]
        return partner[batch.rows]


@register("class_aware")
class ClassAwareSampler(LabelAwareSampler):
    def extra_mask(self, similarity, query_labels, negative_labels, excluded) -> torch.Tensor:
        return excluded | same_class(query_labels, negative_labels)


@register("hard_negative")
class HardNegativeSampler(LabelAwareSampler):
    def extra_mask(self, similarity, query_labels, negative_labels, excluded) -> torch.Tensor:
        excluded = excluded | same_class(query_labels, negative_labels)
        return hard_negative_mask(similarity, excluded, self.cfg.hard_negative_count)
