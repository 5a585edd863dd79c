"""``avlib.data.ring``: batches built in reused shared-memory slots reach the trainer unchanged, a slot
is written only while free, a full ring falls back to torch's hand-over, and the shared memory is the
slots' (it does not grow with the batches read)."""

import multiprocessing
import os
import pickle
import signal
import time
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
import torch.utils.data._utils.worker as worker_state
from torch.utils.data import DataLoader, Dataset

from avlib.data.dataset import collate
from avlib.data.ring import SLOT_KEY, SlotCollate, SlotLoader
from avlib.train.loop import _single_threaded_worker


def item(k: int, frames: int = 4) -> dict:
    """An item like AVWindows' own: uint8 frames, float audio, numbers, a failure list."""
    g = torch.Generator().manual_seed(k)
    return {"video": torch.randint(0, 256, (frames, 6, 6, 3), dtype=torch.uint8, generator=g),
            "audio": torch.randn(1, 8, 5, generator=g), "clip_index": k, "label": k % 3,
            "window_start_s": k / 10, "failed": [(f"clip{k}", "broken")] if k % 7 == 3 else []}


class Items(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, k):
        return item(k)


def assert_same(batch: dict, want: dict, from_slot: bool = True) -> None:
    assert set(batch) == set(want)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
            # out of a slot: the trainer's own copy, never a view of the slot (handed over: torch's fresh shared memory)
            assert not batch[key].is_shared() or not from_slot, key
        else:
            assert batch[key] == value, key


class InWorker:
    """Runs the block as if in DataLoader worker 0 (where SlotCollate uses its slots)."""

    def __enter__(self):
        self.saved = worker_state._worker_info
        worker_state._worker_info = worker_state.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None)

    def __exit__(self, *exc):
        worker_state._worker_info = self.saved


def over_the_queue(batch):
    return pickle.loads(ForkingPickler.dumps(batch))


def test_two_workers_deliver_every_batch_unchanged_in_slots_that_are_reused():
    batches = [list(range(b, b + 4)) for b in range(0, 60, 4)] + [[60, 61]]  # 16 batches, the last one short
    loader = SlotLoader(DataLoader(Items(), batch_sampler=batches, collate_fn=SlotCollate(collate, slots=3),
                                   num_workers=2))
    delivered = list(loader)  # every batch kept: a slot reused under a delivered batch would change it
    assert len(delivered) == len(batches)
    for batch, rows in zip(delivered, batches):
        assert_same(batch, collate([item(k) for k in rows]))
    assert (loader.batches_in_slots, loader.batches_handed) == (16, 0)
    # the shared memory is the slots': 2 workers x 3 slots x 5 tensor fields, made once, whatever the batch count
    buffers = [tensor for _, _, slots in loader.rings.values() for held in slots.values() for tensor in held.values()]
    assert len(loader.rings) == 2 and len(buffers) == 2 * 3 * 5
    assert len({tensor.untyped_storage().data_ptr() for tensor in buffers}) == len(buffers)


def test_a_full_ring_falls_back_and_a_freed_slot_is_used_again():
    slots, loader, rings = SlotCollate(collate, slots=1), SlotLoader(None), {}
    with InWorker():
        first = over_the_queue(slots([item(k) for k in range(4)]))
        second = over_the_queue(slots([item(k) for k in range(4, 8)]))  # the only slot is full: handed over
    assert SLOT_KEY in first and SLOT_KEY not in second
    assert_same(loader.receive(first, rings), collate([item(k) for k in range(4)]))
    assert_same(loader.receive(second, rings), collate([item(k) for k in range(4, 8)]), from_slot=False)
    with InWorker():  # freed by the receive: the slot again, with no new tensors to send
        third = over_the_queue(slots([item(k) for k in range(8, 12)]))
    assert SLOT_KEY in third and third[SLOT_KEY].new_buffers == {}
    assert_same(loader.receive(third, rings), collate([item(k) for k in range(8, 12)]))
    assert (loader.batches_in_slots, loader.batches_handed) == (2, 1)


def test_a_slot_grows_for_a_larger_batch_and_serves_smaller_ones():
    slots, loader, rings = SlotCollate(collate, slots=1), SlotLoader(None), {}
    for rows, frames in ((range(3), 4), (range(3, 9), 4), (range(9, 11), 4), (range(11, 13), 2)):
        items = [item(k, frames) for k in rows]
        with InWorker():
            sent = over_the_queue(slots(items))
        message = sent[SLOT_KEY]
        made = set(message.new_buffers)
        # the first batch makes every field; a larger one remakes them; a smaller one reuses them; windows of
        # other frames remake the video alone
        if rows.start == 0 or rows.start == 3:
            assert made == {"video", "audio", "clip_index", "label", "window_start_s"}
        elif rows.start == 9:
            assert made == set()
        else:
            assert made == {"video"}
        assert_same(loader.receive(sent, rings), collate(items))


def test_in_one_process_the_collate_function_is_called_as_it_is():
    items = [item(k) for k in range(3)]
    batch = SlotCollate(collate)(items)
    assert SLOT_KEY not in batch
    assert_same(batch, collate(items))
    with pytest.raises(ValueError, match="slots must be >= 1"):
        SlotCollate(collate, slots=0)


def test_close_stops_workers_that_ignore_sigterm_while_the_iterator_is_still_held():
    """A training loop stops at its last step with the loader's iterator unfinished; where a reference cycle
    held it, its workers (deaf to SIGTERM, so that a scheduler's signal cannot kill them mid-step) outlived
    the run and Python's exit waited for them for good.  close() stops them although the iterator is held."""
    loader = SlotLoader(DataLoader(Items(), batch_size=4, collate_fn=SlotCollate(collate), num_workers=2,
                                   worker_init_fn=_single_threaded_worker))
    batches = iter(loader)
    next(batches)  # the workers run
    held = loader.iterator  # what a reference cycle would keep alive
    workers = list(held._workers)
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    os.kill(workers[0].pid, signal.SIGTERM)  # the control: torch's last resort, terminate(), is ignored
    time.sleep(0.5)
    assert workers[0].is_alive()
    loader.close()
    assert not any(w.is_alive() for w in workers) and loader.iterator is None
    assert not [c for c in multiprocessing.active_children() if c.pid in {w.pid for w in workers}]
    loader.close()  # twice: nothing left to stop
