"""``sampler=active``: CM-ACC's actively sampled dictionaries (Ma et al., ICLR 2021, Sec. 3.2).

Instead of enqueuing the newest batch of keys, each modality considers more CANDIDATE keys than
enter and at every step chooses which candidates enter its dictionary: each candidate is
represented by an embedding (``active_embedding``: ``key_grad``, ``badge`` or ``feature``) and a
selector (``active_selector``: ``kmeanspp``, ``kcenter``, ``lloyd_nearest`` or ``random``) picks a
diverse, informative subset (``avlib.active.select``).

Candidate sources (``active_candidates``).  The dictionary takes keys at the rate they arrive, so
by conservation a choice is only real if a step considers more candidates than it enqueues and the
rest do not enter later (the first sampler enqueued B of a backlog each step: 83% of all keys entered
with k-means++ and 85% with a random selector -- its choice was a delay).  Every source reports what
it does (``SelectionTally``: ``enter_share``, ``mean_age_steps``, ``unique_clip_share``,
``duplicate_share``), each candidate key counted once:

- ``batch`` (default): the candidates are the batch's B fresh keys; ``B // active_candidate_factor``
  of them enter, the others are dropped for good (enter_share = 1/factor, no extra encoding).  The
  dictionary then turns over ``factor`` times more slowly: its keys are that many steps older.
- ``fresh``: the batch's B keys plus ``(active_candidate_factor - 1) x B`` extra training clips drawn
  each step (seeded by (seed, step), the same on every rank) and encoded by the momentum encoder
  under ``no_grad``, as fresh as the batch; B of the ``factor x B`` candidates enter, the others are
  dropped (enter_share = 1/factor).  Cost: loading and encoding the extra clips.
- ``bank``: a dataset-size bank of every clip's latest momentum key (written when the clip is in a
  batch); the candidates are the batch's B keys plus ``(factor - 1) x B`` bank keys of other clips,
  and B enter.  No extra encoding, but bank keys are up to an epoch old (``mean_age_steps``) and a
  key rejected today can be drawn and enter later, so its enter_share is not bounded by 1/factor.
- ``backlog`` (the first sampler): a pool keeps P - B unchosen candidates (P = ``active_pool_factor``
  x B); each step the B new keys join them, candidates older than a dictionary key lives
  (``dictionary_size / B`` steps, at least P / B) are dropped, and the selector picks as many as keep
  the backlog at P - B.  Nothing enters while the backlog first fills.
- ``official`` (the official CM-ACC code's dynamics, the faithful comparison): a FIFO pool of the
  last ``active_pool_factor`` batches' keys, the new one included; B of them enter each step and the
  chosen keys STAY in the pool, so one key can enter the dictionary more than once
  (``duplicate_share``).  The study's ``active_official`` runs it with ``lloyd_nearest``.

``active_dictionary_aware`` (beyond the paper): the keys that stay in the dictionary after this
step's enqueue count as already-chosen centres of k-means++/k-center (``avlib.active.select(...,
centers=...)``), embedded like the candidates, so a candidate close to what the dictionary holds is
unlikely to be picked; per-step seeding alone spreads the picks among themselves, not away from the
dictionary.

The selection is cross-modal, as in the paper: audio candidates (the dictionary that serves VIDEO
queries) are embedded through the video->audio loss, i.e. against the batch's video queries, and
vice versa.  Where the official code runs k-means in Python loops inside the training step, the
selection here is vectorised (and uses Triton kernels on CUDA); its wall time is logged per step
as ``select_s`` (beside the random sampler's enqueue time) so its share is measured, not guessed.
"""

from __future__ import annotations

import torch

from avlib.active import candidate_embedding, select
from avlib.samplers.base import QueueSampler, StepBatch, register


class CandidatePool(torch.nn.Module):
    """Candidate keys kept between steps (``backlog``, ``official``), oldest first, with their
    projection-layer inputs, clip indices, arrival step and whether they entered the dictionary."""

    def __init__(self, capacity: int, dim: int, hidden_dim: int):
        super().__init__()
        self.capacity = capacity
        self.register_buffer("keys", torch.zeros(capacity, dim))  # (P, D)
        self.register_buffer("hidden", torch.zeros(capacity, hidden_dim))  # (P, H)
        self.register_buffer("pre_norm", torch.ones(capacity))  # (P,) |W h| before normalisation (badge)
        self.register_buffer("clip_index", torch.full((capacity,), -1, dtype=torch.long))  # (P,)
        self.register_buffer("step_added", torch.full((capacity,), -1, dtype=torch.long))  # (P,)
        self.register_buffer("entered", torch.zeros(capacity, dtype=torch.bool))  # (P,) entered once already
        self.register_buffer("size", torch.zeros((), dtype=torch.long))

    def keep(self, candidates: dict[str, torch.Tensor]) -> None:
        n = candidates["keys"].shape[0]
        assert n <= self.capacity, f"{n} candidates exceed the pool's capacity {self.capacity}"
        for name, values in candidates.items():
            getattr(self, name)[:n] = values
        self.size.fill_(n)


class KeyBank(torch.nn.Module):
    """Every clip's latest momentum key (``bank`` source), with its projection input and write step."""

    def __init__(self, clips: int, dim: int, hidden_dim: int):
        super().__init__()
        self.register_buffer("keys", torch.zeros(clips, dim))  # (N, D)
        self.register_buffer("hidden", torch.zeros(clips, hidden_dim))  # (N, H)
        self.register_buffer("pre_norm", torch.ones(clips))  # (N,)
        self.register_buffer("step_added", torch.full((clips,), -1, dtype=torch.long))  # (N,) -1 = never written
        self.register_buffer("entered", torch.zeros(clips, dtype=torch.bool))  # (N,) this version entered already

    def draw(self, count: int, exclude: torch.Tensor, generator) -> torch.Tensor:
        """Up to ``count`` distinct written clips not in ``exclude``, uniformly (the step's generator)."""
        eligible = self.step_added >= 0
        eligible[exclude] = False
        clips = torch.nonzero(eligible).flatten()  # (E,)
        order = torch.randperm(clips.numel(), generator=generator,
                               device=generator.device if generator is not None else "cpu").to(clips.device)
        return clips[order[:count]]

    def rows(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"keys": self.keys[clips], "hidden": self.hidden[clips], "pre_norm": self.pre_norm[clips],
                "clip_index": clips, "step_added": self.step_added[clips], "entered": self.entered[clips]}

    def write(self, candidates: dict[str, torch.Tensor]) -> None:
        clips = candidates["clip_index"]
        for name in ("keys", "hidden", "pre_norm", "step_added", "entered"):
            getattr(self, name)[clips] = candidates[name].to(getattr(self, name).dtype)


@register("active")
class ActiveQueueSampler(QueueSampler):
    SOURCES = ("batch", "fresh", "bank", "backlog", "official")

    def __init__(self, cfg, facts, hidden_dims: dict[str, int]):
        super().__init__(cfg, facts, hidden_dims)
        self.source = cfg.active_candidates
        assert self.source in self.SOURCES, self.source  # validated by PretrainConfig
        # backlog / official: candidates kept between steps (P - B of them)
        self.backlog = (cfg.active_pool_factor - 1) * cfg.batch_size
        # backlog: a candidate is dropped once older than a dictionary key lives (never before the backlog can fill)
        self.max_age = max(cfg.active_pool_factor, cfg.dictionary_size // cfg.batch_size)
        if self.source in ("backlog", "official"):
            self.video_pool = CandidatePool(self.backlog, cfg.embedding_dim, hidden_dims["video"])
            self.audio_pool = CandidatePool(self.backlog, cfg.embedding_dim, hidden_dims["audio"])
        if self.source == "bank":
            self.video_bank = KeyBank(facts.num_clips, cfg.embedding_dim, hidden_dims["video"])
            self.audio_bank = KeyBank(facts.num_clips, cfg.embedding_dim, hidden_dims["audio"])
        # the last update's candidates and choice per modality (for snapshots; not state: never checkpointed)
        self.last_selection: dict[str, dict[str, torch.Tensor]] = {}
        self._entered_ages: dict[str, torch.Tensor] = {}
        self._considered: dict[str, int] = {}

    def considered_this_step(self, batch: StepBatch, modality: str) -> tuple[int, torch.Tensor]:
        """Candidate keys first considered this step (fresh: all F of them; the other sources: the
        batch's B, the only new keys), and the ages of the keys that entered for the first time."""
        return self._considered.pop(modality), self._entered_ages.pop(modality)

    def selection_record(self) -> dict | None:
        return self.last_selection or None

    def extra_candidates(self) -> int:
        return (self.cfg.active_candidate_factor - 1) * self.cfg.batch_size if self.source == "fresh" else 0

    def keys_to_enqueue(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidates of ``modality`` that enter its dictionary this step (module docstring)."""
        new = _batch_candidates(batch.keys, modality, batch.clip_index, batch.step)
        size = new["keys"].shape[0]
        factor = self.cfg.active_candidate_factor
        self._considered[modality] = size
        if self.source == "batch":
            return self._choose(batch, modality, new, max(1, size // factor))
        if self.source == "fresh":
            extra = _batch_candidates(batch.candidates, modality, batch.candidate_clip_index, batch.step)
            candidates = {name: torch.cat([new[name], extra[name]]) for name in new}
            self._considered[modality] = candidates["keys"].shape[0]
            return self._choose(batch, modality, candidates, size)
        if self.source == "bank":
            bank = self.video_bank if modality == "video" else self.audio_bank
            drawn = bank.rows(bank.draw((factor - 1) * size, batch.clip_index, batch.generator))
            candidates = {name: torch.cat([new[name], drawn[name]]) for name in new}
            return self._choose(batch, modality, candidates, size, keep=bank)
        pool = self.video_pool if modality == "video" else self.audio_pool
        candidates = {name: torch.cat([getattr(pool, name)[: int(pool.size)], new[name]]) for name in new}
        if self.source == "official":  # B of the pool + batch from the first step on; chosen keys stay
            return self._choose(batch, modality, candidates, min(size, candidates["keys"].shape[0]), keep=pool)
        recent = batch.step - candidates["step_added"] < self.max_age  # backlog: drop stale candidates
        candidates = {name: values[recent] for name, values in candidates.items()}
        return self._choose(batch, modality, candidates, candidates["keys"].shape[0] - self.backlog, keep=pool)

    def _choose(self, batch: StepBatch, modality: str, candidates: dict[str, torch.Tensor], count: int,
                keep=None):
        """Select ``count`` candidates, record what entered (first entries only), update the source's
        state (``keep``: the pool or bank) and return the chosen (keys, clip indices)."""
        keys = candidates["keys"]
        chosen = torch.zeros(keys.shape[0], dtype=torch.bool, device=keys.device)
        if count > 0:
            chosen[self._select(batch, modality, candidates, count)] = True
        first_entry = chosen & ~candidates["entered"]
        self._entered_ages[modality] = (batch.step - candidates["step_added"][first_entry]).cpu()
        self.last_selection[modality] = {"keys": keys, "clip_index": candidates["clip_index"],
                                         "step_added": candidates["step_added"], "chosen": chosen}
        candidates = dict(candidates, entered=candidates["entered"] | chosen)
        if self.source == "backlog":  # the chosen leave the pool, the rest wait
            keep.keep({name: values[~chosen] for name, values in candidates.items()})
        elif self.source == "official":  # everything stays; the oldest batch leaves (FIFO of batches)
            keep.keep({name: values[-self.backlog:] for name, values in candidates.items()})
        elif self.source == "bank":  # the batch's new versions and the drawn keys' entered flags
            keep.write(candidates)
        return keys[chosen], candidates["clip_index"][chosen]

    def _surviving_dictionary(self, modality: str, count: int) -> torch.Tensor:
        """The keys of ``modality``'s dictionary that an enqueue of ``count`` keys leaves in place (M, D)."""
        queue = self.dictionaries()[modality]
        keys, _ = queue.valid()
        n = keys.shape[0]
        if n + count <= queue.size:
            return keys
        overwritten = (int(queue.pointer) + torch.arange(count, device=keys.device)) % queue.size
        survives = torch.ones(n, dtype=torch.bool, device=keys.device)
        survives[overwritten[overwritten < n]] = False
        return keys[survives]

    def _select(self, batch: StepBatch, modality: str, candidates: dict[str, torch.Tensor], count: int):
        """``count`` indices into the candidates: their embeddings (``active_embedding``), then the
        selector, beside the surviving dictionary keys as centres when ``active_dictionary_aware``."""
        other = "audio" if modality == "video" else "video"
        queries = getattr(batch.queries, other).detach()  # (B, D): the queries this dictionary serves
        keys, hidden = candidates["keys"], candidates["hidden"]
        aware = self.cfg.active_dictionary_aware and self.cfg.active_selector in ("kmeanspp", "kcenter")
        held = self._surviving_dictionary(modality, count) if aware else keys[:0]  # (M, D)
        if aware and self.cfg.active_embedding == "badge":
            raise ValueError("active_dictionary_aware needs the dictionary keys' projection inputs for badge; "
                             "use active_embedding='key_grad' or 'feature'")
        points = torch.cat([keys, held])  # centres are embedded in the same space as the candidates
        name = self.cfg.active_embedding
        if name == "key_grad":
            # The new batch's keys are both the positives of the loss and (the first B) candidates, so
            # they appear twice in key_grad's dictionary; that splits their softmax mass in two, a
            # small bias on those candidates' embeddings that this implementation accepts.
            embedding = candidate_embedding(name, queries=queries, positive_keys=getattr(batch.keys, modality),
                                            pool_keys=points, temperature=self.cfg.temperature)
        elif name == "badge":
            # the true last-layer gradient: |W h| before normalisation scales each candidate's g
            embedding = candidate_embedding(name, pool_keys=keys, pool_inputs=hidden, dictionary_keys=queries,
                                            temperature=self.cfg.temperature, pre_norm=candidates["pre_norm"])
        else:
            embedding = candidate_embedding(name, pool_keys=points)
        n = keys.shape[0]  # embedding rows: the n candidates, then the M held keys (M = 0 unless aware)
        centers = {"centers": embedding[n:]} if held.shape[0] else {}
        return select(embedding[:n], count, self.cfg.active_selector, generator=batch.generator, **centers)  # (count,)


def _batch_candidates(embeddings, modality: str, clip_index: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """One batch of momentum keys as candidates (B rows each), none of them entered yet."""
    keys = getattr(embeddings, modality)
    return {"keys": keys, "hidden": getattr(embeddings, f"{modality}_hidden"), "pre_norm": _pre_norm(embeddings, modality),
            "clip_index": clip_index, "step_added": torch.full_like(clip_index, step),
            "entered": torch.zeros_like(clip_index, dtype=torch.bool)}


def _pre_norm(embeddings, modality: str) -> torch.Tensor:
    """The head's output norm before normalisation (B,); 1 where the embeddings do not carry it."""
    value = getattr(embeddings, f"{modality}_pre_norm")
    return value if value is not None else torch.ones_like(getattr(embeddings, modality)[:, 0])
