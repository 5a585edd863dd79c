"""Cross-modal MoCo pretraining: the loop composes data, model, sampler and optimiser; nothing more.

Run folder contract (notebooks, later analyses and users rely on it):

    run_dir/config.json          the PretrainConfig, verbatim
    run_dir/metrics.csv          one row per step: step, epoch, loss, lr, step_s, data_s, + diagnostics
    run_dir/summary.json         sampler, seed, steps, wall_s, final_loss, probe, probe_random_init, ...
    run_dir/probe_random_init.json   the random-init baseline (computed once, before step 0)
    run_dir/checkpoints/last.pt  model, momentum model, sampler state (queues), optimiser, step
    run_dir/snapshots/step_SSSSSS.npz   dictionary snapshots (avlib.dictionary.snapshots), every snapshot_every steps

Every source of randomness after initialisation is a function of (seed, step): batches and their
augmentations come from ``StepBatches``, a sampler's own draws from ``StepBatch.generator``.  So a run
killed at any point and resumed from its last checkpoint replays the same steps bit for bit.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import signal
import threading
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from avlib.config import ConfigError, PretrainConfig
from avlib.data.dataset import (SAMPLER_STREAM, SHUFFLE_STREAM, AVWindows, StepBatches, collate, derive_seed,
                                open_dataset, stratified_subset)
from avlib.eval.probe import run_probes
from avlib.models.encoders import AVModel, Embeddings, momentum_update
from avlib.samplers import StepBatch, build_sampler, clip_facts
from avlib.train import distributed
from avlib.train.snapshots import DictionaryRecorder

CHECKPOINT = "last.pt"
# Parameters that may change between a run and its resumption without changing its results.
# (nproc_per_node: a preempted job may come back on fewer or more GPUs; data order and the dictionary
# do not depend on it, only which clips share batch-norm statistics without sync_batchnorm.)
RESUMABLE_CHANGES = {"resume", "progress", "num_workers", "probe", "device", "nproc_per_node", "check_ranks",
                     "compile"}


# ----------------------------------------------------------------------------- small pieces


def learning_rate(step: int, total_steps: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``cfg.lr`` over ``warmup_steps``, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def save_atomic(state: dict, path: Path) -> None:
    """Write-then-rename: a reader (or a resumed run) never sees a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(data: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class MetricsLog:
    """``metrics.csv``, one row per step, flushed as written.

    On resume, rows at or after the resumed step (written after the last checkpoint by the killed
    run) are dropped first, so the file ends up as if the run had never stopped.
    """

    def __init__(self, path: Path, start_step: int):
        self.path = path
        rows: list[dict] = []
        if path.exists() and start_step > 0:
            with open(path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) < start_step]
        self.fieldnames: list[str] | None = list(rows[0].keys()) if rows else None
        self.handle = open(path, "w", newline="")
        self.writer: csv.DictWriter | None = None
        if self.fieldnames:
            self._start_writer(self.fieldnames)
            self.writer.writerows(rows)
            self.handle.flush()

    def _start_writer(self, fieldnames: list[str]) -> None:
        self.writer = csv.DictWriter(self.handle, fieldnames=fieldnames, extrasaction="raise")
        self.writer.writeheader()

    def write(self, row: dict) -> None:
        if self.writer is None:
            self._start_writer(list(row.keys()))
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.csv as a list of dicts with float values (``step``/``epoch`` as int)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: (int(v) if k in ("step", "epoch") else float(v)) for k, v in row.items()} for row in rows]


def _check_same_run(run_dir: Path, cfg: PretrainConfig) -> None:
    """Refuse to resume a run folder that holds a run with other (result-changing) parameters."""
    saved = json.loads((run_dir / "config.json").read_text())
    differences = {k: (saved.get(k), v) for k, v in cfg.to_dict().items()
                   if k not in RESUMABLE_CHANGES and saved.get(k) != v}
    if differences:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(differences.items()))
        raise ConfigError(
            f"run_dir={str(run_dir)!r} holds a run with other parameters ({listed}); "
            "use a new run_dir, or the same parameters to resume it"
        )


# ----------------------------------------------------------------------------- the run


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGTERM/SIGINT after writing a checkpoint; the same call resumes it."""

    def __init__(self, step: int, signum: int, run_dir: Path):
        self.step, self.signum = step, signum
        super().__init__(f"{signal.Signals(signum).name}: checkpoint written at step {step} in "
                         f"{str(run_dir)!r}; run the same command again to resume")


class StopSignals:
    """Turns SIGTERM and SIGINT into a flag that the loop reads after each step (preemption).

    A scheduler's SIGTERM (or Ctrl-C) then costs no work: the step finishes, a checkpoint is written
    and training stops cleanly.  Handlers are only installed in the main thread (where Python allows
    them) and are restored on exit.
    """

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def pretrain(cfg: PretrainConfig) -> dict:
    """Train (or resume) the run described by ``cfg`` and return its summary (also in summary.json).

    In one process, ``nproc_per_node > 1`` launches ``torchrun`` with that many processes
    (:func:`avlib.train.launch.launch`) and returns the run's summary; under ``torchrun`` each process
    trains its share of every batch (``avlib.train.distributed``) and rank 0 writes the run folder.
    """
    if cfg.nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        from avlib.train.launch import launch

        return launch(cfg)
    world, device = distributed.start(cfg.device)
    try:
        return _pretrain(cfg, world, device)
    finally:
        distributed.stop(world)


def _pretrain(cfg: PretrainConfig, world: distributed.World, device: str) -> dict:
    run_started = time.perf_counter()
    torch.set_num_threads(cfg.num_threads)
    run_dir = Path(cfg.run_dir)
    checkpoint_path = run_dir / "checkpoints" / CHECKPOINT
    resuming = cfg.resume and checkpoint_path.exists()
    if cfg.batch_size % world.size:
        raise ConfigError(f"parameter batch_size={cfg.batch_size} (the global batch) must be a multiple of "
                          f"the {world.size} training processes")
    key_groups = cfg.key_bn_groups or world.size
    if cfg.shuffle_bn and (key_groups % world.size or cfg.batch_size % key_groups):
        raise ConfigError(f"parameter key_bn_groups={cfg.key_bn_groups} must be a multiple of the {world.size} "
                          f"training processes and divide batch_size={cfg.batch_size}")
    if world.is_main:  # rank 0 owns the run folder; the others wait for it (and for the dataset) below
        if checkpoint_path.exists() and not cfg.resume:
            raise ConfigError(f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=False; "
                              "use a new run_dir, or resume=True to continue it")
        if resuming:
            _check_same_run(run_dir, cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
        cache = open_dataset(cfg, progress=cfg.progress)
    distributed.barrier(world)
    if not world.is_main:
        cache = open_dataset(cfg, progress=False)
    train_indices = stratified_subset(cache.select("train"), cache.labels, cfg.subset_fraction, cfg.seed)
    steps_per_epoch = len(train_indices) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"parameter batch_size={cfg.batch_size} exceeds the {len(train_indices)} training clips")
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    torch.manual_seed(cfg.seed)
    model = AVModel(cfg.video_encoder, cfg.audio_encoder, cfg.embedding_dim).to(device)
    if cfg.channels_last:
        model.video_backbone.to(memory_format=torch.channels_last_3d)
        model.audio_backbone.to(memory_format=torch.channels_last)
    momentum_model = copy.deepcopy(model).requires_grad_(False)
    if world.distributed and cfg.sync_batchnorm:
        distributed.global_batch_norm(model)
        if not cfg.shuffle_bn:  # shuffled keys are normalised per group, on one rank
            distributed.global_batch_norm(momentum_model)
    hidden_dims = {"video": model.video_head.last.in_features, "audio": model.audio_head.last.in_features}
    sampler = build_sampler(cfg, clip_facts(cache, train_indices), hidden_dims).to(device)
    optimizer = build_optimizer(model, cfg)

    # The baseline: the very same encoders before any training.
    random_init_path = run_dir / "probe_random_init.json"
    if cfg.probe and world.is_main and not random_init_path.exists():
        write_json_atomic(run_probes(model, cache, cfg, device=device), random_init_path)
    distributed.barrier(world)

    start_step, previous_wall_s = 0, 0.0
    if resuming:
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        momentum_model.load_state_dict(state["momentum_model"])
        sampler.load_state_dict(state["sampler"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, previous_wall_s = state["step"], state["wall_s"]

    def checkpoint(step: int) -> None:
        if world.is_main:
            save_atomic({
                "step": step, "wall_s": previous_wall_s + time.perf_counter() - run_started,
                "config": cfg.to_dict(), "world_size": world.size, "model": model.state_dict(),
                "momentum_model": momentum_model.state_dict(), "sampler": sampler.state_dict(),
                "optimizer": optimizer.state_dict(),
            }, checkpoint_path)
        distributed.barrier(world)

    # what runs the forward passes: DDP averages gradients over ranks; compile and autocast are options
    online = model
    if world.distributed:
        online = DistributedDataParallel(model, device_ids=[world.local_rank] if device.startswith("cuda") else None)
    keys_model = momentum_model
    if cfg.compile:
        online, keys_model = torch.compile(online), torch.compile(momentum_model)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.precision == "bf16")

    def encode_keys(video: torch.Tensor, audio: torch.Tensor, step: int) -> Embeddings:
        if cfg.shuffle_bn and key_groups > 1:
            shuffle = torch.Generator().manual_seed(derive_seed(cfg.seed, SHUFFLE_STREAM, step))
            return distributed.shuffled_keys(keys_model, video, audio, key_groups, shuffle, world)
        return keys_model(video, audio)

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        return distributed.gather(tensor, world)

    batches = StepBatches(len(train_indices), cfg.batch_size, cfg.seed, total_steps, start_step,
                          shard=(world.rank, world.size))
    loader = DataLoader(
        AVWindows(cache, train_indices, cfg, train=True), batch_sampler=batches, collate_fn=collate,
        num_workers=cfg.num_workers, worker_init_fn=_single_threaded_worker,
    )
    metrics = MetricsLog(run_dir / "metrics.csv", start_step) if world.is_main else None
    # diversity metrics and snapshots, on rank 0 (the dictionaries are the same on every rank)
    recorder = DictionaryRecorder(run_dir, cfg.snapshot_every, total_steps) if world.is_main else None
    progress = _progress_bar(cfg, start_step, total_steps) if world.is_main else None
    model.train()
    momentum_model.train()
    local_batch = cfg.batch_size // world.size
    try:
        with StopSignals() as stop_signals:
            iteration_started = time.perf_counter()
            for step, batch in zip(range(start_step, total_steps), loader):
                data_s = time.perf_counter() - iteration_started
                lr = learning_rate(step, total_steps, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                video, audio = batch["video"].to(device), batch["audio"].to(device)  # this rank's B clips
                if cfg.channels_last:
                    video = video.contiguous(memory_format=torch.channels_last_3d)
                    audio = audio.contiguous(memory_format=torch.channels_last)
                clip_index, labels = batch["clip_index"].to(device), batch["label"].to(device)
                with autocast:
                    queries = online(video, audio)
                with torch.no_grad():
                    momentum_update(model, momentum_model, cfg.momentum)  # MoCo: update, then encode keys
                    with autocast:
                        keys = encode_keys(video, audio, step)
                queries, keys = _float32(queries), _float32(keys)
                generator = torch.Generator().manual_seed(derive_seed(cfg.seed, SAMPLER_STREAM, step))
                # under torchrun: the global batch's keys, for in-batch negatives and the dictionary update
                global_parts = dict(all_keys=distributed.gather_embeddings(keys, world),
                                    all_clip_index=gather(clip_index), offset=world.rank * local_batch,
                                    gather=gather) if world.distributed else {}
                step_batch = StepBatch(step=step, clip_index=clip_index, queries=queries, keys=keys, labels=labels,
                                       generator=generator, **global_parts)
                loss, diagnostics = sampler.loss(step_batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                global_batch = step_batch
                if world.distributed:  # what every rank's dictionary update sees: the global batch
                    global_batch = StepBatch(
                        step=step, clip_index=step_batch.all_clip_index,
                        queries=distributed.gather_embeddings(queries, world), keys=step_batch.all_keys,
                        labels=gather(labels), generator=generator)
                diagnostics = distributed.mean_over_ranks({"loss": loss.item(), **diagnostics}, world)
                if recorder is not None:  # the dictionaries the queries met
                    diagnostics.update(recorder.before_update(sampler, global_batch))
                diagnostics.update(sampler.update(global_batch))
                if recorder is not None:
                    recorder.after_update(sampler, global_batch)
                if cfg.check_ranks:
                    distributed.check_same_on_every_rank(sampler, "sampler state (dictionaries)", step, world)
                stopping = distributed.any_rank(stop_signals.signum is not None, world)
                step_s = time.perf_counter() - iteration_started
                mean_loss = diagnostics.pop("loss")  # over the global batch
                if metrics is not None:
                    metrics.write({"step": step, "epoch": step // steps_per_epoch, "loss": mean_loss, "lr": lr,
                                   "step_s": step_s, "data_s": data_s, **diagnostics})
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total_steps or stopping:
                    checkpoint(step + 1)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{mean_loss:.3f}", top1=f"{diagnostics.get('top1', 0):.2f}")
                if stopping:
                    raise Interrupted(step + 1, stop_signals.signum or signal.SIGTERM, run_dir)
                iteration_started = time.perf_counter()
    finally:
        if metrics is not None:
            metrics.close()
        if progress is not None:
            progress.close()
    train_wall_s = previous_wall_s + time.perf_counter() - run_started
    if not world.is_main:
        distributed.barrier(world)  # rank 0 probes and writes the summary
        return json.loads((run_dir / "summary.json").read_text())

    rows = read_metrics(run_dir)
    last_epoch = rows[-steps_per_epoch:] if rows else []
    summary = {
        "sampler": cfg.sampler, "seed": cfg.seed, "steps": total_steps, "steps_per_epoch": steps_per_epoch,
        "train_clips": len(train_indices), "num_clips": len(cache), "classes": list(cache.class_names),
        "final_loss": sum(r["loss"] for r in last_epoch) / max(1, len(last_epoch)),
        "mean_step_s": sum(r["step_s"] for r in rows) / max(1, len(rows)),
        # the dictionary update's own time (the active selection), and its share of the step
        "mean_select_s": sum(r.get("select_s", 0.0) for r in rows) / max(1, len(rows)),
        "num_threads": cfg.num_threads, "num_workers": cfg.num_workers, "world_size": world.size,
        "device": device, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        **sampler.summary(),
    }
    if cfg.probe:
        probe_started = time.perf_counter()
        summary["probe"] = run_probes(model, cache, cfg, device=device)
        summary["probe_random_init"] = json.loads(random_init_path.read_text())
        summary["probe_s"] = time.perf_counter() - probe_started
    summary["wall_s"] = previous_wall_s + time.perf_counter() - run_started
    summary["train_wall_s"] = train_wall_s
    write_json_atomic(summary, run_dir / "summary.json")
    distributed.barrier(world)
    return summary


def _float32(embeddings: Embeddings) -> Embeddings:
    """Losses and dictionaries work in float32 (bf16 autocast only speeds up the encoders)."""
    return embeddings if embeddings.video.dtype == torch.float32 else embeddings.map(torch.Tensor.float)


def _single_threaded_worker(_worker_id: int) -> None:
    """A data-loading worker: one thread, and deaf to stop signals.

    A scheduler (or Ctrl-C in a terminal) may signal the whole process group; a worker killed by
    that SIGTERM would make the training process fail mid-step instead of checkpointing.  Workers
    stop with their loader (or when the training process is gone) either way.
    """
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _progress_bar(cfg: PretrainConfig, start_step: int, total_steps: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, initial=start_step, desc=f"pretrain[{cfg.sampler}]", unit="step")
