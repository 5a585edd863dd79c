"""``sampler=random``: plain MoCo FIFO queues, the baseline every other method is compared with.

The newest batch of momentum keys enters each queue unconditionally, so the dictionary is a random
sample of recent clips (CM-ACC, Ma et al. 2021, Sec. 3.1, "random sampling" baseline).
"""

from __future__ import annotations

import torch

from avlib.samplers.base import QueueSampler, StepBatch, register


@register("random")
class RandomQueueSampler(QueueSampler):
    def keys_to_enqueue(self, batch: StepBatch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        keys = batch.keys.video if modality == "video" else batch.keys.audio
        return keys, batch.clip_index
