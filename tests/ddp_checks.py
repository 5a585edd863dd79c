"""Checks that need two processes, run by ``tests/test_distributed.py`` under ``torchrun --nproc_per_node=2``.

Each rank holds half of a batch; every check compares with what ONE process computes on the whole
batch (which every rank can compute locally: the inputs are seeded).
"""

import copy
import sys

import torch
from torch import nn

from avlib.dictionary.queue import KeyQueue
from avlib.models.encoders import AVModel
from avlib.train import distributed


def check_global_batch_norm(world: distributed.World) -> None:
    """Output, input gradient and parameter gradient equal single-process BatchNorm on the whole batch."""
    torch.manual_seed(0)
    x = torch.randn(8, 5, 3, 4) * 3 + 1  # (B, C, H, W), the whole batch
    upstream = torch.randn_like(x)  # d loss / d output
    reference = nn.BatchNorm2d(5)
    reference.weight.data.uniform_(0.5, 1.5)
    reference.bias.data.uniform_(-1, 1)
    synced = distributed.global_batch_norm(nn.Sequential(copy.deepcopy(reference)))[0]
    assert isinstance(synced, distributed.GlobalBatchNorm)

    whole = x.clone().requires_grad_(True)
    expected = reference(whole)
    (expected * upstream).sum().backward()
    rows = slice(4 * world.rank, 4 * (world.rank + 1))
    mine = x[rows].clone().requires_grad_(True)
    out = synced(mine)
    (out * upstream[rows]).sum().backward()
    weight_grad = distributed.gather(synced.weight.grad[None], world).sum(0)  # DDP would sum (and average) these
    torch.testing.assert_close(out, expected[rows].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.grad, whole.grad[rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weight_grad, reference.weight.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(synced.running_var, reference.running_var, atol=1e-5, rtol=1e-5)


def check_rank_hash(world: distributed.World) -> None:
    """The same dictionary passes; a dictionary that differs on one rank is caught and named."""
    queue = KeyQueue(6, 3)
    queue.enqueue(torch.ones(2, 3), torch.tensor([0, 1]), step=0)
    distributed.check_same_on_every_rank(queue, "video dictionary", 0, world)
    queue.enqueue(torch.full((1, 3), float(world.rank)), torch.tensor([2]), step=1)
    try:
        distributed.check_same_on_every_rank(queue, "video dictionary", 1, world)
    except RuntimeError as error:
        assert "step 1: the video dictionary differs across ranks" in str(error), error
    else:
        raise AssertionError("a dictionary that differs between ranks went unnoticed")


def check_shuffled_keys(world: distributed.World) -> None:
    """MoCo's shuffling BN across 2 ranks = one process encoding the same random groups one by one."""
    torch.manual_seed(0)
    model = AVModel().train()
    video, audio = torch.randn(8, 3, 4, 24, 24), torch.randn(8, 1, 32, 24)  # the global batch
    rows = slice(4 * world.rank, 4 * (world.rank + 1))
    keys = distributed.shuffled_keys(model, video[rows], audio[rows], 2, torch.Generator().manual_seed(5), world)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = torch.empty(8, keys.video.shape[1])
        for group in order.view(2, 4):
            expected[group] = model(video[group], audio[group]).video
    torch.testing.assert_close(keys.video, expected[rows], atol=1e-5, rtol=1e-5)


def check_mixed_checkpoints_are_refused(world: distributed.World) -> None:
    """Ranks that restored the same state pass; a rank that read another checkpoint (a torn copy, a
    node-local run_dir) stops the group with every rank's file named."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    distributed.check_same_checkpoint({"model": model}, 6, "/shared/run/checkpoints/last.pt", world)
    if world.rank == 1:
        with torch.no_grad():
            model.weight += 1
    path = "/shared/run/checkpoints/" + ("last.pt" if world.rank == 0 else "previous.pt")
    try:
        distributed.check_same_checkpoint({"model": model}, 6 - 3 * world.rank, path, world)
    except RuntimeError as error:
        assert "resumed from different checkpoints" in str(error) and "previous.pt" in str(error), error
        assert "rank 0: step 6 from /shared/run/checkpoints/last.pt" in str(error), error
    else:
        raise AssertionError("ranks resuming from different checkpoints went unnoticed")


if __name__ == "__main__":
    torch.set_num_threads(1)
    world, _ = distributed.start("cpu")
    assert world.size == 2, "run under torchrun --nproc_per_node=2"
    for check in (check_global_batch_norm, check_rank_hash, check_shuffled_keys, check_mixed_checkpoints_are_refused):
        check(world)
        print(f"rank {world.rank}: {check.__name__} ok", flush=True)
    distributed.stop(world)
    sys.exit(0)
