"""Batch slots in shared memory that each DataLoader worker fills and the trainer empties, reused every step.

Why (issue 30): a DataLoader worker hands each batch over in *fresh* shared memory.  torch creates a new
shared file for every tensor of every batch, the kernel supplies and zeroes new pages as the worker
writes them, and the trainer maps them again when it unpickles the batch.  For decode-only 128-px
windows that was 0.71 ms of the worker's CPU per window to collate and 0.30 ms of the trainer's to
receive, beside a 3.7-ms decode (``bench/bench_data.py --only stages``): the loader could not reach 80%
of two cores' decode floor.

Here each worker owns ``slots`` sets of shared tensors, made the first time it needs them.  It stacks a
batch straight into a free slot and sends the slot's number (the tensors travel once, with the slot's
first batch, so the trainer can map them).  The trainer copies the batch out, into page-locked memory
when it trains on a GPU (the copy the DataLoader's pin thread makes anyway), and marks the slot free.

Ownership is one flag per slot in shared memory, written by both processes: 0 free (only the worker may
write the slot's tensors), 1 full (only the trainer may read them).  The worker writes a slot only while
it is free; with none free it hands the batch over the usual way, so a slow trainer costs speed, never
correctness.  Every yielded batch is the trainer's own copy, never a view of a slot, so a caller may keep
batches for as long as it likes.  Nothing changes in a single process (``num_workers=0``): the collate
function is called as it is.

Cost: shared memory for ``slots`` batches per worker, made once and held for the whole pass, where torch's
hand-over holds at most its prefetch (2 batches per worker) at a time: 1.5x the shared memory at the
defaults (``/dev/shm`` must hold ``workers x 3`` batches, e.g. 14 workers x 3 x 616 MB for 256 windows of 16
112-px float frames).

Use both halves together: ``DataLoader(..., collate_fn=SlotCollate(collate))`` (or the collate function
of an iterable dataset) wrapped by :class:`SlotLoader`, which receives the batches.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import torch
from torch.utils.data import get_worker_info

#: the key of a collated batch that carries its slot (:class:`SlotMessage`) from worker to trainer
SLOT_KEY = "_slot"
#: slots per worker: the DataLoader's default prefetch (2 batches a worker) plus the batch the trainer is
#: copying out when the worker starts its next one; ``bench/bench_data.py`` counts the fallbacks
DEFAULT_SLOTS = 3


class SlotMessage:
    """What a batch in a slot sends in place of its tensors: where they are and how many rows.

    A plain class (not a tuple, mapping or tensor), so the DataLoader's pin thread passes it untouched:
    ``new_buffers`` are the slot's shared tensors themselves (sent once), not copies to pin."""

    def __init__(self, ring: str, slot: int, rows: dict[str, int], new_buffers: dict[str, torch.Tensor],
                 flags: torch.Tensor | None):
        self.ring, self.slot, self.rows = ring, slot, rows
        self.new_buffers, self.flags = new_buffers, flags


class _WorkerSlots:
    """One worker's slots: per slot, one shared tensor per batch field, with room for the most rows a batch
    has put in it (a larger batch remakes it)."""

    def __init__(self, slots: int):
        self.ring = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.flags = torch.zeros(slots, dtype=torch.int32).share_memory_()  # 0 free, 1 full
        self.flag_view = self.flags.numpy()  # the same shared memory, read without a tensor op
        self.buffers: list[dict[str, torch.Tensor]] = [{} for _ in range(slots)]
        self.flags_sent = False
        self.next = 0

    def claim(self) -> int | None:
        """A free slot (taken round-robin), or None when the trainer still holds every slot."""
        count = len(self.buffers)
        for k in range(count):
            slot = (self.next + k) % count
            if self.flag_view[slot] == 0:
                self.next = (slot + 1) % count
                return slot
        return None

    def buffer(self, slot: int, field: str, shape: tuple, dtype: torch.dtype, new: dict) -> torch.Tensor:
        """The first ``shape[0]`` rows of the slot's tensor for ``field``, (re)made when it has no room
        (a first batch, a larger one, another shape); a new tensor is put in ``new``, to be sent."""
        held = self.buffers[slot].get(field)
        if held is None or held.dtype != dtype or held.shape[1:] != shape[1:] or held.shape[0] < shape[0]:
            held = torch.empty(shape, dtype=dtype).share_memory_()
            self.buffers[slot][field] = held
            new[field] = held
        return held[:shape[0]]


class SlotCollate:
    """A collate function that, in a DataLoader worker, builds each batch in one of the worker's slots.

    ``collate(items, stack=...)`` must build the batch dict calling ``stack(field, tensors)`` for its
    stacked fields (``avlib.data.dataset.collate`` does); its other tensor fields (labels, window starts)
    are copied into the slot after it.  Fields that are not tensors travel as they are."""

    def __init__(self, collate, slots: int = DEFAULT_SLOTS):
        if slots < 1:
            raise ValueError(f"SlotCollate: slots must be >= 1, got {slots}")
        self.collate, self.slots = collate, slots
        self._worker: _WorkerSlots | None = None  # made in each worker, on its first batch

    def __getstate__(self):  # a spawned worker makes its own slots
        return {**self.__dict__, "_worker": None}

    def __call__(self, items):
        if get_worker_info() is None:  # one process: nothing to hand over
            return self.collate(items)
        if self._worker is None:
            self._worker = _WorkerSlots(self.slots)
        worker = self._worker
        slot = worker.claim()
        if slot is None:  # the trainer holds every slot: the usual hand-over (fresh shared memory)
            return self.collate(items)
        new: dict[str, torch.Tensor] = {}
        rows: dict[str, int] = {}

        def stack(field: str, tensors: list[torch.Tensor]) -> None:
            out = worker.buffer(slot, field, (len(tensors), *tensors[0].shape), tensors[0].dtype, new)
            torch.stack(tensors, out=out)  # (n, ...) straight into the slot
            rows[field] = len(tensors)

        batch = self.collate(items, stack=stack)
        for field, value in list(batch.items()):
            if field in rows:
                batch[field] = None  # filled in by SlotLoader.receive
            elif isinstance(value, torch.Tensor) and value.dim() > 0:
                worker.buffer(slot, field, tuple(value.shape), value.dtype, new).copy_(value)
                rows[field] = len(value)
                batch[field] = None
        flags = None if worker.flags_sent else worker.flags
        worker.flags_sent = True
        worker.flag_view[slot] = 1  # full: the trainer's until it copies the batch out
        batch[SLOT_KEY] = SlotMessage(worker.ring, slot, rows, new, flags)
        return batch


class SlotLoader:
    """Iterates a DataLoader whose batches may sit in worker slots, yielding each as the trainer's own
    tensors (page-locked when ``pin``) and freeing the slot.  ``batches_in_slots`` and ``batches_handed``
    count how each batch arrived (the second: the usual hand-over, when no slot was free or in one process)."""

    def __init__(self, loader, pin: bool = False):
        self.loader, self.pin = loader, pin
        self.batches_in_slots = self.batches_handed = 0
        self.iterator = None  # the DataLoader's iterator of the pass under way (its workers: ``_workers``)
        # the pass's workers' slots as mapped here: ring -> (flags, their numpy view, slot -> field -> tensor)
        self.rings: dict[str, tuple[torch.Tensor, np.ndarray, dict[int, dict[str, torch.Tensor]]]] = {}

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.rings = {}  # new workers, new slots
        self.iterator = iter(self.loader)
        for batch in self.iterator:
            yield self.receive(batch)

    def receive(self, batch: dict, rings: dict | None = None) -> dict:
        """``batch`` as the trainer's own tensors, its slot (if it came in one) freed; ``rings``: the workers'
        slots mapped so far (default: this pass's, :attr:`rings`)."""
        rings = self.rings if rings is None else rings
        message = batch.pop(SLOT_KEY, None) if isinstance(batch, dict) else None
        if message is None:
            self.batches_handed += 1
            return batch
        if message.flags is not None:  # a worker's first batch: its flags
            rings[message.ring] = (message.flags, message.flags.numpy(), {})
        _, flag_view, buffers = rings[message.ring]  # (the flags tensor is held there to keep it mapped)
        held = buffers.setdefault(message.slot, {})
        held.update(message.new_buffers)
        assert flag_view[message.slot] == 1, "a batch arrived in a slot its worker had not marked full"
        for field, rows in message.rows.items():
            source = held[field][:rows]
            copy = torch.empty(source.shape, dtype=source.dtype, pin_memory=self.pin)
            batch[field] = copy.copy_(source)
        flag_view[message.slot] = 0  # copied out: the worker may write it again
        self.batches_in_slots += 1
        return batch

    def close(self) -> None:
        """Stop this pass's workers now.

        Why: torch stops a DataLoader's workers when its iterator is freed, but a training loop that stops
        at its last step leaves the iterator unfinished, and where a reference cycle holds it (measured: a
        run whose corpus had a damaged file) it is freed only by a later garbage collection, or never:
        at exit Python joins its child processes, and our workers ignore SIGTERM (a scheduler's signal to
        the process group must not kill them mid-step), so torch's last resort, ``terminate()``, left the
        process waiting for them for good.  Here the workers get torch's own shutdown (an end-of-work
        message, then a join), and any still alive after it is killed."""
        iterator, self.iterator, self.rings = self.iterator, None, {}
        if iterator is None:
            return
        shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's (private) orderly stop
        if shutdown is not None:
            shutdown()
        for worker in getattr(iterator, "_workers", ()):
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=10)
