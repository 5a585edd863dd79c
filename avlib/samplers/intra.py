"""The intra-modal objective's dictionaries: one FIFO queue per modality of second-window momentum keys.

``objective`` (``PretrainConfig``) decides what the encoders are trained to tell apart:

- ``cross`` (default): the sampler's cross-modal loss alone (CM-ACC, AVID xID);
- ``joint``: cross-modal + ``intra_weight`` x intra-modal InfoNCE between two augmented windows of
  the same clip, per modality (AVID, Morgado et al. 2021, Sec. 3, "joint" instance discrimination);
- ``intra``: the intra-modal terms alone, the control that says what the cross-modal term adds.

The sampler keeps owning the cross-modal dictionaries (whatever its method chooses to enqueue); this
module owns the intra-modal ones, so every sampler works with every objective.  Each modality's queue
holds momentum keys of the clips' SECOND windows (``StepBatch.second_keys``), newest in, oldest out
(MoCo, He et al. 2020): they are the negatives of that modality's window-1 queries.  Active selection
for these queues is left out (the issue makes it optional).

    intra = IntraDictionaries(cfg)             built by the loop when cfg.objective != "cross"
    loss, diagnostics = intra.loss(step_batch)  after the sampler's loss, before backward
    diagnostics |= intra.update(global_batch)   after the optimiser step, like Sampler.update

Its state is in buffers, so a checkpoint holds it (``checkpoint["intra"]``) and a resumed run goes on
with the same queues; under data parallelism ``update`` sees the global batch and every rank holds
the same queues (checked by hash with ``check_ranks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from avlib.dictionary.queue import KeyQueue
from avlib.losses.infonce import same_clip_mask
from avlib.losses.intra import MODALITIES, intra_nce
from avlib.samplers.base import StepBatch

if TYPE_CHECKING:
    from avlib.config import PretrainConfig


def needs_second_window(objective: str) -> bool:
    """Whether ``objective`` trains on a second window of every clip (only ``cross`` does not)."""
    return objective != "cross"


class IntraDictionaries(nn.Module):
    """One :class:`KeyQueue` of ``dictionary_size`` second-window keys per modality."""

    def __init__(self, cfg: "PretrainConfig"):
        super().__init__()
        self.temperature, self.mask_same_clip = cfg.temperature, cfg.mask_same_clip
        self.video_queue = KeyQueue(cfg.dictionary_size, cfg.embedding_dim)  # (K, D) video window-2 keys
        self.audio_queue = KeyQueue(cfg.dictionary_size, cfg.embedding_dim)  # (K, D) audio window-2 keys

    def dictionaries(self) -> dict[str, KeyQueue]:
        return {"video": self.video_queue, "audio": self.audio_queue}

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The intra-modal InfoNCE of this batch's window-1 queries against the global batch's window-2
        keys and each modality's queue (:func:`avlib.losses.intra.intra_nce`)."""
        views = batch.batch_second_keys
        if views is None:
            raise ValueError("the intra-modal objective needs StepBatch.second_keys (the loader's second windows: "
                             "AVWindows returns them when cfg.objective is 'joint' or 'intra')")
        queries = {m: getattr(batch.queries, m) for m in MODALITIES}  # (B, D) each
        view_keys = {m: getattr(views, m) for m in MODALITIES}  # (G, D) each
        assert all(view_keys[m].shape[0] == batch.batch_clip_index.shape[0] for m in MODALITIES), \
            "one second-window key per clip of the global batch"
        queue_keys, masks = {}, {}
        for modality, queue in self.dictionaries().items():
            keys, clips = queue.valid()  # (K_m, D), (K_m,)
            queue_keys[modality] = keys
            masks[modality] = same_clip_mask(batch.clip_index, clips)  # (B, K_m)
        return intra_nce(queries, view_keys, queue_keys, self.temperature,
                         masks if self.mask_same_clip else None, positive_offset=batch.offset)

    @torch.no_grad()
    def update(self, batch: StepBatch) -> dict[str, float]:
        """Enqueue the global batch's second-window keys of each modality (FIFO); returns each queue's
        fill (``intra_{m}_keys``)."""
        views = batch.batch_second_keys
        assert views is not None, "update needs the global batch's second-window keys"
        row = {}
        for modality, queue in self.dictionaries().items():
            before = int(queue.count)
            keys = getattr(views, modality)  # (G, D)
            assert keys.shape[0] == batch.batch_clip_index.shape[0], "one key per clip of the global batch"
            queue.enqueue(keys, batch.batch_clip_index, batch.step)
            # invariants: every key counted once, the valid slots all hold a clip's key
            assert int(queue.count) == before + keys.shape[0], f"{modality} intra queue lost a key"
            assert bool((queue.valid()[1] >= 0).all()), f"{modality} intra queue has an empty slot among its valid ones"
            row[f"intra_{modality}_keys"] = len(queue)
        return row
