"""The MoCo queue (FIFO, wrap-around, clip indices) and the momentum (EMA) update."""

import pytest
import torch

from avlib.dictionary.queue import KeyQueue
from avlib.models.encoders import AVModel, momentum_update


def test_queue_fills_in_order_then_wraps_around_oldest_first():
    queue = KeyQueue(size=5, dim=2)
    assert len(queue) == 0 and queue.valid()[0].shape == (0, 2)
    for step in range(3):  # 3 batches of 2 keys into 5 slots
        keys = torch.full((2, 2), float(step))
        queue.enqueue(keys, torch.tensor([10 * step, 10 * step + 1]), step)
    assert len(queue) == 5 and int(queue.count) == 6 and int(queue.pointer) == 1
    # slot 0 was overwritten by the third batch's second key
    assert queue.clip_index.tolist() == [21, 1, 10, 11, 20]
    assert queue.step_added.tolist() == [2, 0, 1, 1, 2]
    assert queue.keys[0].tolist() == [2.0, 2.0]


def test_queue_rejects_a_batch_larger_than_itself():
    queue = KeyQueue(size=2, dim=2)
    with pytest.raises(AssertionError):
        queue.enqueue(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 0)


def test_queue_state_round_trips_through_state_dict():
    queue = KeyQueue(size=4, dim=3)
    queue.enqueue(torch.randn(3, 3), torch.tensor([1, 2, 3]), 7)
    other = KeyQueue(size=4, dim=3)
    other.load_state_dict(queue.state_dict())
    assert len(other) == 3 and int(other.pointer) == 3
    torch.testing.assert_close(other.keys, queue.keys)


def test_momentum_update_moves_every_element_of_every_parameter():
    torch.manual_seed(0)
    online, copy = AVModel(), AVModel()
    before = [p.detach().clone() for p in copy.parameters()]
    momentum_update(online, copy, 0.9)
    for old, new, target in zip(before, copy.parameters(), online.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * target)  # whole tensor, not a slice
    for online_buffer, copy_buffer in zip(online.buffers(), copy.buffers()):
        torch.testing.assert_close(copy_buffer, online_buffer)


def test_momentum_zero_copies_the_online_model():
    online, copy = AVModel(), AVModel()
    momentum_update(online, copy, 0.0)
    for a, b in zip(online.parameters(), copy.parameters()):
        torch.testing.assert_close(a, b)
