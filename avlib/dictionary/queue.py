"""The MoCo dictionary: a FIFO queue of keys, one per modality, remembering which clip each key is.

The queue owns its buffer and its write pointer.  Every key keeps its clip index and the step it
entered, because analyses need key -> clip -> label and key age, and because a query must not
meet a stale copy of its own clip among its negatives.  Under data-parallel training the loop
hands ``Sampler.update`` the keys of the GLOBAL batch, gathered from every rank
(``avlib.train.distributed.gather``, MoCo's ``concat_all_gather``), so every rank enqueues the
same keys and holds the same dictionary; the active sampler needs the gathered candidates before
it chooses, which is why the gather happens once, in the loop, rather than inside ``enqueue``.
"""

from __future__ import annotations

import torch
from torch import nn


class KeyQueue(nn.Module):
    """Ring buffer of ``size`` L2-normalised keys of dimension ``dim``.

    Slots fill in order; before the queue is full only the first ``len(self)`` slots are valid
    (no random initial keys: an empty slot is simply not a negative).
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        assert size > 0 and dim > 0, "queue size and key dimension must be positive"
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))  # (K, D)
        self.register_buffer("clip_index", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("step_added", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # keys ever enqueued

    def __len__(self) -> int:
        return int(min(int(self.count), self.size))

    def valid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid keys (n, D) and their clip indices (n,), n = len(self)."""
        n = len(self)
        return self.keys[:n], self.clip_index[:n]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, clip_index: torch.Tensor, step: int) -> None:
        """Write a batch of keys at the pointer, wrapping around (oldest keys are overwritten)."""
        batch = keys.shape[0]
        assert keys.dim() == 2 and keys.shape[1] == self.keys.shape[1], f"bad key shape {tuple(keys.shape)}"
        assert clip_index.shape == (batch,), "one clip index per key"
        assert batch <= self.size, f"a batch of {batch} keys does not fit a queue of {self.size}"
        slots = (int(self.pointer) + torch.arange(batch, device=keys.device)) % self.size  # (B,)
        self.keys[slots] = keys.detach().to(self.keys.dtype)
        self.clip_index[slots] = clip_index.to(self.clip_index.device)
        self.step_added[slots] = step
        self.pointer.fill_((int(self.pointer) + batch) % self.size)
        self.count.add_(batch)
