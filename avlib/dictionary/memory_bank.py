"""The instance-discrimination dictionary: a memory bank with one slot per clip, per modality.

Where the MoCo queue (``queue.py``) holds the most recent keys, a memory bank holds one embedding
for EVERY clip of the dataset, refreshed whenever the clip is seen: slot <- normalise(m * slot +
(1 - m) * new embedding) (Wu et al. 2018, Sec. 3.2; AVID/xID, Morgado et al. 2021, Sec. 3.1).
Negatives are drawn from it uniformly, so a query meets the whole dataset over training, not only
the clips of the last few batches; robust xID also reads each clip's neighbours from it.

Slots start as random unit vectors (as in the papers), so draws are meaningful from step one; a
slot's ``step_added`` is -1 until the clip is first written.  The training clips occupy the first
T slots, so that ``valid()`` is a prefix, as for the queue (analyses pair ``keys[:n]``,
``clip_index[:n]`` and ``step_added[:n]``); ``slot_of`` maps a clip index to its slot.  Under
data-parallel training :meth:`update` receives the embeddings and clip indices of the global
batch, gathered from all ranks by the loop, so every rank holds the same bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



class MemoryBank(nn.Module):
    """``num_clips`` L2-normalised slots of dimension ``dim``, of which ``train_index`` may be drawn."""

    def __init__(self, num_clips: int, dim: int, train_index: torch.Tensor, momentum: float, seed: int = 0):
        super().__init__()
        assert num_clips > 0 and dim > 0, "a memory bank needs clips and a dimension"
        assert 0.0 <= momentum < 1.0, "the slot momentum must lie in [0, 1)"
        assert train_index.numel() > 0 and int(train_index.max()) < num_clips, "train indices must be slots"
        self.momentum = momentum
        train_index = train_index.clone().long()
        assert train_index.unique().numel() == train_index.numel(), "train indices must be distinct"
        others = torch.ones(num_clips, dtype=torch.bool)
        others[train_index] = False
        slot_clips = torch.cat([train_index, others.nonzero()[:, 0]])  # (N,) training clips first
        initial = torch.randn(num_clips, dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("keys", F.normalize(initial, dim=1))  # (N, D) in slot order
        self.register_buffer("clip_index", slot_clips)  # (N,) the clip each slot holds
        self.register_buffer("slot_of", torch.empty_like(slot_clips).scatter_(0, slot_clips, torch.arange(num_clips)))
        self.register_buffer("step_added", torch.full((num_clips,), -1, dtype=torch.long))  # (N,) last write
        self.train_count = int(train_index.numel())

    def __len__(self) -> int:
        return self.train_count

    @property
    def train_index(self) -> torch.Tensor:
        """(T,) the clips negatives come from (the first T slots)."""
        return self.clip_index[: self.train_count]

    def valid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The drawable dictionary: the training clips' slots (T, D) and their clip indices (T,)."""
        return self.keys[: self.train_count], self.train_index

    def keys_of(self, clip_index: torch.Tensor) -> torch.Tensor:
        """The slots of these clips, any shape (...,) -> (..., D)."""
        return self.keys[self.slot_of[clip_index]]

    def step_added_of(self, clip_index: torch.Tensor) -> torch.Tensor:
        """When each clip was last written (-1 = never), any shape."""
        return self.step_added[self.slot_of[clip_index]]

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, clip_index: torch.Tensor, step: int) -> None:
        """Momentum-average the clips' new embeddings into their slots and re-normalise.

        A slot written for the first time takes the embedding as it is (its random initial value
        carries no information worth averaging in).
        """
        assert embeddings.dim() == 2 and embeddings.shape[1] == self.keys.shape[1], "embeddings must be (B, D)"
        assert clip_index.shape == embeddings.shape[:1], "one clip index per embedding"
        slots = self.slot_of[clip_index]  # (B,)
        old = self.keys[slots]  # (B, D)
        first = (self.step_added[slots] < 0)[:, None]  # (B, 1)
        mixed = torch.where(first, embeddings, self.momentum * old + (1.0 - self.momentum) * embeddings)
        self.keys[slots] = F.normalize(mixed.to(self.keys.dtype), dim=1)
        self.step_added[slots] = step

    def draw(self, batch: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, count) clip indices drawn uniformly (with replacement) from the training slots."""
        positions = torch.randint(len(self), (batch, count), generator=generator)  # (B, M)
        return self.clip_index[positions.to(self.clip_index.device)]
