"""``sampler=active``: CM-ACC's actively sampled dictionaries (Ma et al., ICLR 2021, Sec. 3.2).

Instead of enqueuing the newest batch of keys, each modality considers more CANDIDATE keys than
enter and at every step chooses which candidates enter its dictionary: each candidate is
represented by an embedding (``active_embedding``: ``key_grad``, ``badge`` or ``feature``) and a
selector (``active_selector``: ``kmeanspp``, ``kcenter``, ``lloyd_nearest`` or ``random``) picks a
diverse, informative subset (``avlib.active.select``).

Candidate sources (``active_candidates``).  The dictionary takes B keys a step (B = the batch), so
by conservation a choice is only real if more than B candidates arrive per step and the rest are
rejected for good.

- ``fresh``: the batch's B keys plus ``(active_candidate_factor - 1) x B`` extra training
  clips drawn each step (seeded by (seed, step), the same on every rank) and encoded by the momentum
  encoder under ``no_grad``, as fresh as the batch; B of the ``factor x B`` candidates enter and the
  others are dropped, so at most 1/factor of all considered keys enter (``enter_share``).  Cost: the
  extra clips' loading and momentum forward passes.
- ``backlog`` (default until the main job's gains are measured with ``fresh``): the dynamics below.  Measured (issue 16): 83% of arriving keys entered with
  k-means++ and 85% with ``active_selector=random``: what is not chosen waits and mostly enters
  later, so the choice there is a delay more than a selection.

``active_dictionary_aware`` (beyond the paper): the keys already in the dictionary count as chosen
centres of k-means++/k-center (``avlib.active.select(..., centers=...)``), so a candidate close to
what the dictionary holds is unlikely to be picked; per-step seeding alone spreads the picks among
themselves but not away from the dictionary.

Pool dynamics (``backlog``).  A key that enters the dictionary leaves the pool (no key is enqueued twice), so a
real choice needs a backlog: the pool keeps P - B unchosen candidates (P = ``active_pool_factor`` x
batch B).  Each step the B new keys join them, candidates older than the dictionary's own key
lifetime (``dictionary_size / B`` steps, at least P / B) are dropped as stale, and the selector picks as many as
keep the backlog at P - B: B out of P in the steady state (fewer when stale keys were dropped).
While the backlog first fills (the first P/B - 1 steps) nothing is enqueued and the loss uses the
in-batch negatives only, as any queue does while it warms up.

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
    """Unchosen candidate keys with their projection-layer inputs, clip indices and arrival step."""

    def __init__(self, capacity: int, dim: int, hidden_dim: int):
        super().__init__()
        self.capacity = capacity
        self.register_buffer("keys", torch.zeros(capacity, dim))  # (P, D)
        self.register_buffer("hidden", torch.zeros(capacity, hidden_dim))  # (P, H)
        self.register_buffer("pre_norm", torch.ones(capacity))  # (P,) |W h| before normalisation (badge)
        self.register_buffer("clip_index", torch.full((capacity,), -1, dtype=torch.long))  # (P,)
        self.register_buffer("step_added", torch.full((capacity,), -1, dtype=torch.long))  # (P,)
        self.register_buffer("size", torch.zeros((), dtype=torch.long))

    def with_batch(self, keys, hidden, pre_norm, clip_index, step: int) -> dict[str, torch.Tensor]:
        """The current candidates followed by a new batch (n + B rows each)."""
        n = int(self.size)
        return {
            "keys": torch.cat([self.keys[:n], keys]),
            "hidden": torch.cat([self.hidden[:n], hidden]),
            "pre_norm": torch.cat([self.pre_norm[:n], pre_norm]),
            "clip_index": torch.cat([self.clip_index[:n], clip_index]),
            "step_added": torch.cat([self.step_added[:n], torch.full_like(clip_index, step)]),
        }

    def keep(self, candidates: dict[str, torch.Tensor]) -> None:
        n = candidates["keys"].shape[0]
        assert n <= self.capacity, f"{n} candidates exceed the pool's capacity {self.capacity}"
        for name, values in candidates.items():
            getattr(self, name)[:n] = values
        self.size.fill_(n)


@register("active")
class ActiveQueueSampler(QueueSampler):
    def __init__(self, cfg, facts, hidden_dims: dict[str, int]):
        super().__init__(cfg, facts, hidden_dims)
        self.backlog = (cfg.active_pool_factor - 1) * cfg.batch_size  # P - B unchosen candidates kept
        # a candidate is dropped once older than a dictionary key lives (never before the backlog can fill)
        self.max_age = max(cfg.active_pool_factor, cfg.dictionary_size // cfg.batch_size)
        if cfg.active_candidates == "backlog":
            self.video_pool = CandidatePool(self.backlog, cfg.embedding_dim, hidden_dims["video"])
            self.audio_pool = CandidatePool(self.backlog, cfg.embedding_dim, hidden_dims["audio"])
        # the last update's candidates and choice per modality (for snapshots; not state: never checkpointed)
        self.last_selection: dict[str, dict[str, torch.Tensor]] = {}
        self._entered_ages: dict[str, torch.Tensor] = {}
        self._considered: dict[str, int] = {}

    def considered_this_step(self, batch: StepBatch, modality: str) -> tuple[int, torch.Tensor]:
        """New candidates this step (fresh: all F of them; backlog: the batch's B, which then wait in
        the pool), each counted once, and the ages of those that entered."""
        return self._considered.pop(modality), self._entered_ages.pop(modality)

    def selection_record(self) -> dict | None:
        return self.last_selection or None

    def extra_candidates(self) -> int:
        return (self.cfg.active_candidate_factor - 1) * self.cfg.batch_size if self.cfg.active_candidates == "fresh" else 0

    def keys_to_enqueue(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidates of ``modality`` that enter its dictionary this step."""
        if self.cfg.active_candidates == "fresh":
            return self._choose_fresh(batch, modality)
        return self._choose_from_backlog(batch, modality)

    def _choose_fresh(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """B of the batch's keys and the step's extra candidates enter; the rest are rejected."""
        keys = torch.cat([getattr(batch.keys, modality), getattr(batch.candidates, modality)])  # (F, D)
        candidates = {
            "keys": keys, "hidden": torch.cat([getattr(batch.keys, f"{modality}_hidden"),
                                               getattr(batch.candidates, f"{modality}_hidden")]),
            "pre_norm": torch.cat([_pre_norm(batch.keys, modality), _pre_norm(batch.candidates, modality)]),
            "clip_index": torch.cat([batch.clip_index, batch.candidate_clip_index]),
            "step_added": torch.full((keys.shape[0],), batch.step, dtype=torch.long, device=keys.device),
        }
        count = batch.keys.video.shape[0]
        chosen = self._select(batch, modality, candidates, count)
        entered = torch.zeros(keys.shape[0], dtype=torch.bool, device=keys.device)
        entered[chosen] = True
        self._remember(modality, candidates, entered)
        self._considered[modality] = keys.shape[0]
        self._entered_ages[modality] = torch.zeros(count)
        return keys[chosen], candidates["clip_index"][chosen]

    def _choose_from_backlog(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidates of ``modality`` (pool + new batch) that enter its dictionary this step."""
        pool = self.video_pool if modality == "video" else self.audio_pool
        candidates = pool.with_batch(getattr(batch.keys, modality), getattr(batch.keys, f"{modality}_hidden"),
                                     _pre_norm(batch.keys, modality), batch.clip_index, batch.step)
        fresh = batch.step - candidates["step_added"] < self.max_age
        candidates = {name: values[fresh] for name, values in candidates.items()}
        count = candidates["keys"].shape[0] - self.backlog
        self._considered[modality] = batch.keys.video.shape[0]
        if count <= 0:  # the backlog is still filling: nothing enters yet
            self._remember(modality, candidates, torch.zeros_like(candidates["clip_index"], dtype=torch.bool))
            self._entered_ages[modality] = torch.zeros(0)
            pool.keep(candidates)
            return candidates["keys"][:0], candidates["clip_index"][:0]
        chosen = self._select(batch, modality, candidates, count)
        keys = candidates["keys"]
        remaining = torch.ones(keys.shape[0], dtype=torch.bool, device=keys.device)
        remaining[chosen] = False
        self._remember(modality, candidates, ~remaining)
        self._entered_ages[modality] = (batch.step - candidates["step_added"][chosen]).cpu()
        pool.keep({name: values[remaining] for name, values in candidates.items()})
        return keys[chosen], candidates["clip_index"][chosen]

    def _select(self, batch: StepBatch, modality: str, candidates: dict[str, torch.Tensor], count: int):
        """``count`` indices into the candidates: their embeddings (``active_embedding``), then the
        selector, beside the dictionary's keys as centres when ``active_dictionary_aware``."""
        other = "audio" if modality == "video" else "video"
        queries = getattr(batch.queries, other).detach()  # (B, D): the queries this dictionary serves
        keys, hidden = candidates["keys"], candidates["hidden"]
        aware = self.cfg.active_dictionary_aware and self.cfg.active_selector in ("kmeanspp", "kcenter")
        held = self.dictionaries()[modality].valid()[0] if aware else keys[:0]  # (M, D)
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
        n = keys.shape[0]
        if not aware:
            return select(embedding, count, self.cfg.active_selector, generator=batch.generator)  # (count,)
        return select(embedding[:n], count, self.cfg.active_selector, generator=batch.generator,
                      centers=embedding[n:])

    def _remember(self, modality: str, candidates: dict[str, torch.Tensor], chosen: torch.Tensor) -> None:
        self.last_selection[modality] = {"keys": candidates["keys"], "clip_index": candidates["clip_index"],
                                         "step_added": candidates["step_added"], "chosen": chosen}


def _pre_norm(embeddings, modality: str) -> torch.Tensor:
    """The head's output norm before normalisation (B,); 1 where the embeddings do not carry it."""
    value = getattr(embeddings, f"{modality}_pre_norm")
    return value if value is not None else torch.ones_like(getattr(embeddings, modality)[:, 0])
