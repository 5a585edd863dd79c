"""The sampler interface: a method decides which keys are negatives (and positives) and scores them.

The training loop knows methods only through this interface and the registry:

    sampler = build_sampler(cfg, clip_facts(cache), hidden_dims)
    loss, diagnostics = sampler.loss(step_batch)      # before backward
    diagnostics |= sampler.update(step_batch)         # after the optimiser step: dictionary update
    summary |= sampler.summary()                      # end of run: the method's own results

A new method is one module that subclasses :class:`Sampler` (or :class:`QueueSampler`) and
registers itself with ``@register("name")``; its state (queues, banks, pools) lives in the
module's buffers so that checkpoints capture it, and its math lives in ``avlib.losses``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

import torch
from torch import nn

from avlib.config import choose
from avlib.dictionary.queue import KeyQueue
from avlib.losses.infonce import info_nce, same_clip_mask
from avlib.models.encoders import Embeddings

if TYPE_CHECKING:
    from avlib.config import PretrainConfig


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass
class StepBatch:
    """Everything a sampler may look at in one training step (B clips).

    Under data-parallel training (``avlib.train.distributed``) ``loss`` sees this rank's B queries
    and keys and, in ``all_keys`` / ``all_clip_index``, the keys of the whole global batch (G =
    B x ranks, this rank's rows starting at ``offset``): in-batch negatives and every random draw
    are taken over the global batch, so that the loss is the one a single process would compute.
    ``update`` is handed the global batch itself (G queries and keys, offset 0), so every rank
    changes its dictionaries in the same way.  ``gather`` concatenates a (detached) tensor over
    ranks, for a method whose loss needs a statistic of the global batch.  In one process the
    global batch is the batch.
    """

    step: int
    clip_index: torch.Tensor  # (B,) index of each clip in the dataset (cache order)
    queries: Embeddings  # online encoders, with grad
    keys: Embeddings  # momentum encoders, no grad
    labels: torch.Tensor | None = None  # (B,) class indices where a method may use them
    generator: torch.Generator | None = None  # the step's own RNG (seeded by (seed, step)) for a method's draws
    all_keys: Embeddings | None = None  # (G, ...) keys of the global batch (None: this batch is the global one)
    all_clip_index: torch.Tensor | None = None  # (G,)
    offset: int = 0  # this batch's first row in the global batch
    gather: Callable[[torch.Tensor], torch.Tensor] = _identity  # concatenate over ranks (identity in one process)
    candidates: Embeddings | None = None  # (C, ...) momentum keys of the step's extra candidate clips (global)
    candidate_clip_index: torch.Tensor | None = None  # (C,)
    # objective joint/intra (avlib.samplers.intra): momentum keys of each clip's second window, this batch's
    # and the global batch's (None: the objective needs no second window, or this batch is the global one)
    second_keys: Embeddings | None = None  # (B, ...)
    all_second_keys: Embeddings | None = None  # (G, ...)

    @property
    def batch_keys(self) -> Embeddings:
        """The keys of the global batch: the in-batch negatives of every query."""
        return self.keys if self.all_keys is None else self.all_keys

    @property
    def batch_clip_index(self) -> torch.Tensor:
        """(G,) the clips of the global batch."""
        return self.clip_index if self.all_clip_index is None else self.all_clip_index

    @property
    def batch_second_keys(self) -> Embeddings | None:
        """The second-window keys of the global batch: the intra-modal positives and in-batch negatives."""
        return self.second_keys if self.all_second_keys is None else self.all_second_keys

    @property
    def rows(self) -> slice:
        """This batch's rows of the global batch."""
        return slice(self.offset, self.offset + self.clip_index.shape[0])


@dataclass
class ClipFacts:
    """What a method may know about the dataset's clips up front (N = all clips, in cache order).

    Label-aware methods read ``labels`` only when their label source is the ground truth; the
    ``corrupted`` flags (embedded dataset: clips whose audio comes from another clip) are never
    used for training, only to score a method afterwards (e.g. the AUROC of robust weights).
    """

    labels: torch.Tensor  # (N,) int64 class index per clip
    train_index: torch.Tensor  # (T,) int64 indices of the training clips
    corrupted: torch.Tensor | None = None  # (N,) bool, where the manifest marks faulty pairs

    @property
    def num_clips(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.numel() else 0

    def epoch_steps(self, epochs: int, batch_size: int) -> int:
        """Training steps in ``epochs`` epochs (the loop runs len(train) // batch_size steps an epoch);
        methods turn their warm-up parameters, given in epochs, into steps with it."""
        return epochs * max(1, int(self.train_index.numel()) // batch_size)


def clip_facts(cache, train_index=None) -> ClipFacts:
    """The facts of a :class:`~avlib.data.cache.DecodedCache` (``train_index``: the clips trained on,
    default its whole train split)."""
    corrupted = None
    if "corrupted" in cache.index["columns"]:
        corrupted = torch.as_tensor(cache.column("corrupted").astype(bool))
    if train_index is None:
        train_index = cache.select("train")
    return ClipFacts(labels=torch.as_tensor(cache.labels), train_index=torch.as_tensor(train_index),
                     corrupted=corrupted)


SAMPLERS: dict[str, type["Sampler"]] = {}


def register(name: str):
    """Class decorator: make a sampler selectable as ``sampler=name``."""

    def wrap(cls: type[Sampler]) -> type[Sampler]:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice ({SAMPLERS[name].__name__}, {cls.__name__})")
        cls.name = name
        SAMPLERS[name] = cls
        return cls

    return wrap


def build_sampler(cfg: "PretrainConfig", facts: ClipFacts | int, hidden_dims: dict[str, int]) -> "Sampler":
    """The method ``cfg.sampler``; ``hidden_dims`` = width of each projection head's last-layer input.

    ``facts`` may be a bare clip count (tests, methods that need no labels): every clip is then a
    training clip of class 0.
    """
    method = choose("sampler", cfg.sampler, SAMPLERS)
    if isinstance(facts, int):
        facts = ClipFacts(labels=torch.zeros(facts, dtype=torch.long), train_index=torch.arange(facts))
    return method(cfg, facts, hidden_dims)


class Sampler(nn.Module):
    """Base class: owns the dictionaries of one method; subclasses implement ``loss`` and ``update``."""

    name: ClassVar[str] = "?"

    def __init__(self, cfg: "PretrainConfig", facts: ClipFacts, hidden_dims: dict[str, int]):
        super().__init__()
        self.cfg = cfg
        self.facts = facts
        self.hidden_dims = hidden_dims

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, batch: StepBatch) -> dict[str, float]:
        raise NotImplementedError

    def dictionaries(self) -> dict[str, KeyQueue]:
        """The per-modality dictionaries, for analysis (``{"video": ..., "audio": ...}``)."""
        return {}

    def extra_candidates(self) -> int:
        """Clips beyond the batch whose momentum keys the method considers each step (global count): the
        loop loads and encodes them and hands them to ``update`` as ``StepBatch.candidates``."""
        return 0

    def summary(self) -> dict:
        """Method-specific results merged into ``summary.json`` at the end of a run (JSON values)."""
        return {}

    def selection_record(self) -> dict | None:
        """The last update's choice, for dictionary snapshots: ``{modality: {"keys" (P, D), "clip_index"
        (P,), "step_added" (P,), "chosen" (P,) bool}}`` over the candidates considered; None for
        methods that enqueue without choosing."""
        return None


class SelectionTally(nn.Module):
    """What one dictionary's updates let in, counted over the run (buffers: checkpointed, so a resumed
    run counts on exactly).  CM-ACC is about *choosing* what enters; these are the quantities that say
    whether a method chose (Ma et al. 2021, Sec. 3.2; the issue that found 83% of keys entering anyway):

    - ``enter_share``: of all candidate keys ever considered, each counted once, the share that entered
      (1 for a FIFO queue, which considers only what it enqueues);
    - ``mean_age_steps``: how many steps old a key was when it entered (0 = as fresh as the batch);
    - ``unique_clip_share`` / ``duplicate_share`` of the dictionary: distinct clips per key, and the
      share of keys whose clip has another key in the dictionary.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("considered", torch.zeros((), dtype=torch.long))
        self.register_buffer("entered", torch.zeros((), dtype=torch.long))
        self.register_buffer("age_sum", torch.zeros((), dtype=torch.float64))

    def record(self, considered: int, entered_ages: torch.Tensor) -> None:
        self.considered.add_(considered)
        self.entered.add_(entered_ages.numel())
        self.age_sum.add_(entered_ages.double().sum().cpu())

    def measures(self, dictionary: "KeyQueue") -> dict[str, float]:
        _, clips = dictionary.valid()
        distinct, counts = torch.unique(clips, return_counts=True) if len(clips) else (clips, clips)
        nan = float("nan")
        return {
            "enter_share": int(self.entered) / int(self.considered) if int(self.considered) else nan,
            "mean_age_steps": float(self.age_sum) / int(self.entered) if int(self.entered) else nan,
            "unique_clip_share": len(distinct) / len(clips) if len(clips) else nan,
            "duplicate_share": float(counts[counts > 1].sum()) / len(clips) if len(clips) else nan,
        }


class QueueSampler(Sampler):
    """Cross-modal MoCo: one key queue per modality, InfoNCE in both directions.

    The audio queue holds negatives for video queries and the video queue for audio queries
    (CM-ACC, Ma et al. 2021, Sec. 3.1; AVID xID, Morgado et al. 2021, Sec. 3).  Subclasses choose
    WHICH keys enter the queues by overriding :meth:`keys_to_enqueue`.
    """

    def __init__(self, cfg: "PretrainConfig", facts: ClipFacts, hidden_dims: dict[str, int]):
        super().__init__(cfg, facts, hidden_dims)
        self.video_queue = KeyQueue(cfg.dictionary_size, cfg.embedding_dim)
        self.audio_queue = KeyQueue(cfg.dictionary_size, cfg.embedding_dim)
        self.video_tally, self.audio_tally = SelectionTally(), SelectionTally()

    def dictionaries(self) -> dict[str, KeyQueue]:
        return {"video": self.video_queue, "audio": self.audio_queue}

    def _direction(self, queries, batch_keys, queue: KeyQueue, batch: StepBatch):
        queue_keys, queue_clips = queue.valid()
        mask = same_clip_mask(batch.clip_index, queue_clips) if self.cfg.mask_same_clip else None
        return info_nce(queries, batch_keys, queue_keys, self.cfg.temperature, mask, positive_offset=batch.offset)

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        q, k = batch.queries, batch.batch_keys
        v2a_loss, v2a = self._direction(q.video, k.audio, self.audio_queue, batch)
        a2v_loss, a2v = self._direction(q.audio, k.video, self.video_queue, batch)
        loss = 0.5 * (v2a_loss + a2v_loss)
        diagnostics = {
            "v2a_loss": v2a_loss.item(),
            "a2v_loss": a2v_loss.item(),
            "pos_sim": 0.5 * (v2a["pos_sim"] + a2v["pos_sim"]),
            "neg_sim": 0.5 * (v2a["neg_sim"] + a2v["neg_sim"]),
            "batch_neg_sim": 0.5 * (v2a["batch_neg_sim"] + a2v["batch_neg_sim"]),
            "queue_neg_sim": 0.5 * (v2a["queue_neg_sim"] + a2v["queue_neg_sim"]),
            "top1": 0.5 * (v2a["top1"] + a2v["top1"]),
            "uniform_loss": 0.5 * (v2a["uniform_loss"] + a2v["uniform_loss"]),
        }
        return loss, diagnostics

    def keys_to_enqueue(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys (n, D), clip indices (n,)) of ``modality`` that enter its queue this step."""
        raise NotImplementedError
    def considered_this_step(self, batch: StepBatch, modality: str) -> tuple[int, torch.Tensor]:
        """(candidate keys first considered this step, ages in steps of the keys that entered) for the
        tally; a FIFO queue considers exactly what it enqueues, the batch's fresh keys."""
        size = batch.keys.video.shape[0]
        return size, torch.zeros(size)

    @torch.no_grad()
    def update(self, batch: StepBatch) -> dict[str, float]:
        """Enqueue each modality's chosen keys; ``select_s`` is the wall time of choosing + enqueuing.
        Adds the selection measures (:class:`SelectionTally`) as ``{m}_sel_*`` columns."""
        started = time.perf_counter()
        for modality, queue in self.dictionaries().items():
            keys, clip_index = self.keys_to_enqueue(batch, modality)
            queue.enqueue(keys, clip_index, batch.step)
            self.tallies()[modality].record(*self.considered_this_step(batch, modality))
        row = {"select_s": time.perf_counter() - started}
        for modality, queue in self.dictionaries().items():
            row.update({f"{modality}_sel_{name}": value for name, value in self.tallies()[modality].measures(queue).items()})
        return row

    def tallies(self) -> dict[str, SelectionTally]:
        return {"video": self.video_tally, "audio": self.audio_tally}

    def summary(self) -> dict:
        """``selection``: the tallies' measures at the end of the run, per modality."""
        return {"selection": {modality: {name: None if value != value else value  # JSON has no NaN
                                         for name, value in self.tallies()[modality].measures(queue).items()}
                              for modality, queue in self.dictionaries().items()}}
