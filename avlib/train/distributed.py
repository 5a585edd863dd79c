"""Data-parallel training under ``torchrun``: the process group, gathers, and batch normalisation.

The loop runs unchanged in one process and under ``torchrun --nproc_per_node=N`` (one process per
GPU with NCCL, or per CPU slot with gloo).  What makes N processes train exactly like one process
with the same global batch B:

* every rank reads its contiguous share (B / N clips) of the same seeded global batch
  (``StepBatches(..., shard=...)``), so data order and augmentations do not depend on N;
* the gradients are averaged by DistributedDataParallel; each rank's loss is the mean over its own
  queries, so the average is the mean over the global batch;
* the keys of all ranks are gathered (:func:`gather`) before the loss (in-batch negatives) and
  before the dictionary update, so every rank enqueues the same keys and holds the same dictionary
  (MoCo, He et al. 2020, Alg. 1 ``concat_all_gather``); the active sampler selects once over the
  gathered candidates with the same seeded generator on every rank, so it chooses the same keys;
* batch-norm statistics: with ``sync_batchnorm`` they span the global batch (:class:`GlobalBatchNorm`);
  with ``shuffle_bn`` the momentum encoders compute keys in ``key_bn_groups`` random groups of the
  global batch (MoCo's shuffling BN, Sec. 3.3) -- a definition that does not depend on N either.

:func:`check_same_on_every_rank` hashes a module's state on every rank and fails loudly if any
rank holds something else (the dictionary after each step, with ``check_ranks``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from avlib.models.encoders import Embeddings


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder (metrics, checkpoints, snapshots) and runs the probes."""
        return self.rank == 0


def start(device: str) -> tuple[World, str]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns the world and the device this rank trains on: ``cuda:LOCAL_RANK`` under torchrun with
    ``device="cuda"`` (one GPU per process), otherwise ``device`` itself.  The backend is NCCL on
    GPUs and gloo on CPUs.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    world = World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if restart and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun restarted the group (--max-restarts) and shares its rendezvous store with the workers:
            # the previous group's connection keys are still in it, and a plain init reads the dead ranks'
            # addresses (gloo: "connectFullMesh ... Connection refused"; pytorch/pytorch#135712).  Each
            # restart gets its own key space.  (Launchers can also export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.)
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size, is_master=False)
            dist.init_process_group(backend=backend, store=dist.PrefixStore(f"avlib/restart-{restart}", store),
                                    rank=world.rank, world_size=size)
        else:
            dist.init_process_group(backend=backend)
    return world, device


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


@torch.no_grad()
def gather(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, in rank order (no gradient)."""
    if not world.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def gather_embeddings(embeddings: Embeddings, world: World) -> Embeddings:
    """Every field of ``embeddings`` gathered across ranks (detached)."""
    return embeddings.map(lambda tensor: gather(tensor.detach(), world))


def mean_over_ranks(values: dict[str, float], world: World) -> dict[str, float]:
    """The mean of each scalar over ranks (one all-reduce); every rank passes the same keys in the same order."""
    if not world.distributed:
        return values
    stacked = torch.tensor([float(v) for v in values.values()], dtype=torch.float64)
    dist.all_reduce(stacked)
    return {name: float(v) / world.size for name, v in zip(values, stacked.tolist())}


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if ``flag`` is True on any (e.g. a stop signal that reached one process)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def state_digest(module: nn.Module) -> str:
    """SHA-256 of every tensor in ``module.state_dict()`` (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_same_on_every_rank(module: nn.Module, what: str, step: int, world: World) -> None:
    """Raise if ``module``'s state differs between ranks (compared by hash)."""
    if not world.distributed:
        return
    digests: list[str | None] = [None] * world.size
    dist.all_gather_object(digests, state_digest(module))
    if len(set(digests)) != 1:
        listed = ", ".join(f"rank {r}: {d[:12]}" for r, d in enumerate(digests))
        raise RuntimeError(f"step {step}: the {what} differs across ranks ({listed}); "
                           "every rank must update it with the same gathered batch")


def check_same_checkpoint(modules: dict[str, nn.Module], step: int, source: str, world: World) -> None:
    """Raise unless every rank restored the same state (the same step and the same digest of every
    module in ``modules``), naming the checkpoint file each rank read.

    Why: a resumed group must never train on mixed states.  Every rank reads the checkpoint rank 0
    wrote; when ``run_dir`` is not one path every node sees (a node-local disk), or one rank's copy is
    torn and it falls back to ``previous.pt``, the ranks would load different states, and DDP would
    average their gradients without noticing."""
    if not world.distributed:
        return
    mine = (step, source, "/".join(state_digest(module)[:12] for module in modules.values()))
    restored: list[tuple | None] = [None] * world.size
    dist.all_gather_object(restored, mine)
    if len({(s, digest) for s, _, digest in restored}) != 1:
        listed = "; ".join(f"rank {r}: step {s} from {path} (state {digest})" for r, (s, path, digest) in
                           enumerate(restored))
        raise RuntimeError(f"the ranks resumed from different checkpoints ({listed}); every rank must read the "
                           "same checkpoint: put run_dir on a path every node sees, and delete a torn checkpoint")


# ----------------------------------------------------------------------------- batch normalisation


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    total = tensor.clone()
    if dist.is_initialized():
        dist.all_reduce(total)
    return total


class _SumOverRanks(torch.autograd.Function):
    """y = sum over ranks of x; the gradient of a sum of every rank's loss w.r.t. x is the sum of theirs."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return _sum_over_ranks(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _sum_over_ranks(grad)


def differentiable_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(tensor)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics span every rank's batch (SyncBatchNorm for any backend).

    torch's ``SyncBatchNorm`` accepts GPU tensors only; this one works with gloo on CPUs too, so the
    2-process tests run in CI.  Mean and variance are two differentiable all-reduces (sum, then sum
    of squared deviations: the two-pass form, as accurate as a single process's), so gradients flow
    through the statistics to every rank as in a single process.  Parameters and buffers are those
    of ``BatchNorm*d``: checkpoints do not depend on the number of processes.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self.training:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dtype, x = input.dtype, input.float()  # statistics in float32, also under bf16 autocast
        dims = [0] + list(range(2, x.dim()))  # every dim but the channel
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = differentiable_all_reduce(torch.tensor([x.numel() / x.shape[1]], device=x.device))
        mean = differentiable_all_reduce(x.sum(dim=dims)) / count  # (C,)
        centred = x - mean.reshape(shape)
        var = differentiable_all_reduce((centred * centred).sum(dim=dims)) / count  # (C,) biased
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out.to(dtype)


def global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` in ``module`` by a :class:`GlobalBatchNorm` with the same state."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement.to(next(child.buffers()).device))
        else:
            global_batch_norm(child)
    return module


@torch.no_grad()
def shuffled_keys(momentum_model: nn.Module, video: torch.Tensor, audio: torch.Tensor, groups: int,
                  generator: torch.Generator, world: World) -> Embeddings:
    """Keys of this rank's clips, computed with MoCo's shuffling BN (He et al. 2020, Sec. 3.3).

    The global batch (all ranks' clips) is permuted with ``generator`` (the same on every rank) and
    cut into ``groups`` equal groups; each rank encodes ``groups / world.size`` of them, each group
    normalised by its own statistics; the keys are gathered and put back in batch order.  A query's
    positive key is thus normalised with other clips than the query was, so batch statistics cannot
    tell the positive apart (the "leak" of intra-batch communication).  The result does not depend
    on the number of processes, only on ``groups``.
    """
    all_video, all_audio = gather(video, world), gather(audio, world)  # (G, ...) the global batch
    total = all_video.shape[0]
    assert total % groups == 0 and groups % world.size == 0, "groups must divide the batch and be a multiple of ranks"
    order = torch.randperm(total, generator=generator).to(all_video.device)  # (G,)
    per_rank = groups // world.size
    mine = order.view(groups, total // groups)[world.rank * per_rank:(world.rank + 1) * per_rank]  # (g, G/groups)
    parts = [momentum_model(all_video[rows], all_audio[rows]) for rows in mine]
    local = Embeddings.cat(parts)
    gathered = gather_embeddings(local, world)  # rows in the order of `order`
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(total, device=order.device)
    size = video.shape[0]
    rows = inverse[world.rank * size:(world.rank + 1) * size]  # this rank's clips, in batch order
    return gathered.map(lambda tensor: tensor[rows])
