"""Cross-modal MoCo pretraining in this process: the loop composes data, model, sampler and optimiser.

Read it top to bottom, one stage a function:

    train(cfg, world, device)                  the whole run, stage by stage:
      prepare_run_folder / load_training_data  the run folder (avlib.train.run_folder) and the clips
      build_training(...) -> Training          models, method (sampler), optimiser, how passes run
      restore(...)                             resume from checkpoints/last.pt
      run_steps(...)                           for each step of step_loader(...):
        train_step(training, batch, step)        queries, keys, the method's loss, the update
        update_dictionaries(training, ...)       the method's dictionary update (what enters)
        RunRecords.write / save_checkpoint       bookkeeping (rank 0)
      summarise(...)                           probes and summary.json

Every source of randomness after initialisation is a function of (seed, step): batches and their
augmentations come from ``StepBatches``, a sampler's own draws from ``StepBatch.generator``.  So a run
killed at any point and resumed from its last checkpoint replays the same steps bit for bit.
Launching several processes (``nproc_per_node``) is :mod:`avlib.train.launch`'s job.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import signal
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from avlib.active import EMBEDDINGS, SELECTORS
from avlib.config import ConfigError, PretrainConfig, choose
from avlib.data.cache import DecodedCache
from avlib.data.dataset import (SAMPLER_STREAM, SHUFFLE_STREAM, AVWindows, StepBatches, collate, derive_seed,
                                stratified_subset)
from avlib.data.manifest import ManifestError, skip_reasons, write_skipped_rows
from avlib.data.ring import SlotCollate, SlotLoader
from avlib.data.sources import ShardBatches, open_clips
from avlib.eval.probe import KnnMonitor, clip_correctness, run_probes
from avlib.models.encoders import AUDIO_ENCODERS, VIDEO_ENCODERS, AVModel, Embeddings, momentum_update
from avlib.models.export import ENCODERS_FILE, export_encoders
from avlib.losses.intra import objective_loss
from avlib.samplers import SAMPLERS, Sampler, StepBatch, build_sampler, clip_facts
from avlib.samplers.intra import IntraDictionaries, needs_second_window
from avlib.train import distributed
from avlib.train.console import ProgressLines, duration_text
from avlib.train.run_folder import (MetricsLog, has_checkpoint, load_checkpoint, prepare_run_folder,
                                    read_metrics, read_random_init_probes, save_checkpoint_file,
                                    shared_random_init_path, write_json_atomic, write_random_init_probes)
from avlib.train.learning_signal import LearningSignalMonitor, learning_signal_summary
from avlib.train.memory import PeakTreeRSS
from avlib.train.snapshots import DictionaryRecorder
from avlib.train.tensorboard import TensorBoardLog

# ----------------------------------------------------------------------------- small pieces


def check_names(cfg: PretrainConfig) -> None:
    """Every name in ``cfg`` that a registry resolves (method, encoders, active selection), checked
    before any work with the registries' own message; ``config.py`` cannot see the registries."""
    choose("sampler", cfg.sampler, SAMPLERS)
    choose("video_encoder", cfg.video_encoder, VIDEO_ENCODERS)
    choose("audio_encoder", cfg.audio_encoder, AUDIO_ENCODERS)
    choose("active_embedding", cfg.active_embedding, EMBEDDINGS)
    choose("active_selector", cfg.active_selector, SELECTORS)


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


def say(cfg: PretrainConfig, world: distributed.World, text: str) -> None:
    """A stage of the run on stdout (rank 0, with ``progress``): the terminal of ``make pretrain`` is never
    silent for minutes (data generation, probes), and the notebook keeps the same lines."""
    if cfg.progress and world.is_main:
        print(text, flush=True)


# ----------------------------------------------------------------------------- set-up


@dataclass
class Training:
    """Everything the steps of one run share, built once by :func:`build_training`."""

    cfg: PretrainConfig
    world: distributed.World
    device: str
    model: AVModel  # the online encoders and heads: what the optimiser trains
    momentum_model: AVModel  # the key encoders: an exponential moving average of `model`
    sampler: Sampler  # the method: its dictionaries (state) and its loss
    optimizer: torch.optim.Optimizer
    online: nn.Module  # `model` as the forward pass runs it (DDP averages gradients; torch.compile)
    keys_model: nn.Module  # `momentum_model` as the key pass runs it
    key_groups: int  # shuffle_bn: groups of the global batch whose keys get their own BN statistics
    steps_per_epoch: int
    total_steps: int
    seen: torch.Tensor | None = None  # (N,) bool: clips that gave at least one training window
    intra: IntraDictionaries | None = None  # objective joint/intra: the intra-modal queues (avlib.samplers.intra)

    def autocast(self):
        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                              enabled=self.cfg.precision == "bf16")


def check_world(cfg: PretrainConfig, world: distributed.World) -> int:
    """The global batch must split evenly over the processes (and the shuffled-BN groups); returns the
    number of key groups."""
    if cfg.batch_size % world.size:
        raise ConfigError(f"parameter batch_size={cfg.batch_size} (the global batch) must be a multiple of "
                          f"the {world.size} training processes")
    key_groups = cfg.key_bn_groups or world.size
    if cfg.shuffle_bn and (key_groups % world.size or cfg.batch_size % key_groups):
        raise ConfigError(f"parameter key_bn_groups={cfg.key_bn_groups} must be a multiple of the {world.size} "
                          f"training processes and divide batch_size={cfg.batch_size}")
    return key_groups


def load_training_data(cfg: PretrainConfig, world: distributed.World):
    """The clips (rank 0 builds the cache or validates the manifest, the others wait and open it; see
    :func:`avlib.data.sources.open_clips`) and the training clips.  A manifest whose every row is skipped
    stops the run with its rows in ``skipped_clips.csv`` all the same (the message says where)."""
    if world.is_main:
        skipped_path = Path(cfg.run_dir) / "skipped_clips.csv"
        try:
            cache = open_clips(cfg, progress=cfg.progress)
        except ManifestError as error:
            if not error.skipped_rows:
                raise
            write_skipped_rows(error.skipped_rows, skipped_path)
            raise ManifestError(f"{error}. All {len(error.skipped_rows)} skipped rows with their reasons: "
                                f"{skipped_path.resolve()}", skipped_rows=error.skipped_rows) from None
        write_skipped_rows(cache.skipped_rows, skipped_path)
    distributed.barrier(world)
    if not world.is_main:
        cache = open_clips(cfg, progress=False)
    if cache.source == "shards" and cfg.subset_fraction < 1.0:
        raise ConfigError(f"parameter subset_fraction={cfg.subset_fraction} cannot thin a shard stream (every "
                          "shard sample is read each epoch): write shards of the subset's manifest instead")
    train_indices = stratified_subset(cache.select("train"), cache.labels, cfg.subset_fraction, cfg.seed)
    return cache, train_indices


def build_training(cfg: PretrainConfig, world: distributed.World, device: str, cache: DecodedCache,
                   train_indices, key_groups: int) -> Training:
    """Seeded models, the method and the optimiser, and the wrappers the passes run through."""
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
    intra = IntraDictionaries(cfg).to(device) if needs_second_window(cfg.objective) else None
    optimizer = build_optimizer(model, cfg)

    online, keys_model = model, momentum_model
    if world.distributed:
        online = DistributedDataParallel(model, device_ids=[world.local_rank] if device.startswith("cuda") else None)
    if cfg.compile:
        online, keys_model = torch.compile(online), torch.compile(momentum_model)
    return Training(cfg=cfg, world=world, device=device, model=model, momentum_model=momentum_model,
                    sampler=sampler, optimizer=optimizer, online=online, keys_model=keys_model,
                    key_groups=key_groups, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                    seen=torch.zeros(len(cache), dtype=torch.bool), intra=intra)


def save_checkpoint(t: Training, step: int, wall_s: float) -> None:
    """Rank 0 writes ``checkpoints/last.pt`` atomically; every rank waits for it."""
    if t.world.is_main:
        save_checkpoint_file({
            "step": step, "wall_s": wall_s, "config": t.cfg.to_dict(), "world_size": t.world.size,
            "model": t.model.state_dict(), "momentum_model": t.momentum_model.state_dict(),
            "sampler": t.sampler.state_dict(), "optimizer": t.optimizer.state_dict(),
            "data_seen": None if t.seen is None else t.seen.clone(),
            "intra": None if t.intra is None else t.intra.state_dict(),
        }, t.cfg.run_dir)
    distributed.barrier(t.world)


def restore(t: Training) -> tuple[int, float]:
    """Load the newest readable checkpoint into the run; returns (the step to continue from, wall time so far)."""
    state = load_checkpoint(t.cfg.run_dir, t.device)
    t.model.load_state_dict(state["model"])
    t.momentum_model.load_state_dict(state["momentum_model"])
    t.sampler.load_state_dict(state["sampler"])
    if t.intra is not None:
        t.intra.load_state_dict(state["intra"])
    t.optimizer.load_state_dict(state["optimizer"])
    if state.get("data_seen") is not None and t.seen is not None:
        t.seen.copy_(state["data_seen"])
    distributed.check_same_checkpoint({"model": t.model, "momentum model": t.momentum_model, "sampler": t.sampler},
                                      state["step"], state.get("loaded_from", "?"), t.world)
    return state["step"], state["wall_s"]


# ----------------------------------------------------------------------------- one step


@dataclass
class StepOutcome:
    lr: float
    diagnostics: dict[str, float]  # "loss" (mean over ranks) and the method's loss diagnostics
    global_batch: StepBatch  # what every rank's dictionary update sees: the global batch


def train_step(t: Training, batch: dict, step: int) -> StepOutcome:
    """One optimisation step on this rank's share of the global batch (MoCo, He et al. 2020, Alg. 1):
    queries from the online encoders, the momentum update, keys, the method's loss, the gradient step."""
    cfg, world, device = t.cfg, t.world, t.device
    lr = learning_rate(step, t.total_steps, cfg)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    local = cfg.batch_size // world.size  # this rank's B clips; rows after them are extra candidates
    pinned = batch["video"].is_pinned()  # the loader pins batches for a CUDA device (page-locked host memory)

    def to_device(tensor: torch.Tensor) -> torch.Tensor:
        """From pinned memory the copy is asynchronous: it overlaps the host's work until the first kernel
        that reads it (same stream), and the pinned pages are not reused before it ends (torch records it)."""
        return tensor.to(device, non_blocking=pinned)

    video, audio = to_device(batch["video"][:local]), to_device(batch["audio"][:local])
    if cfg.channels_last:
        video = video.contiguous(memory_format=torch.channels_last_3d)
        audio = audio.contiguous(memory_format=torch.channels_last)
    clip_index, labels = to_device(batch["clip_index"][:local]), to_device(batch["label"][:local])
    with t.autocast():
        queries = t.online(video, audio)
    with torch.no_grad():
        momentum_update(t.model, t.momentum_model, cfg.momentum)  # MoCo: update, then encode keys
        with t.autocast():
            keys = _encode_keys(t, video, audio, step)
    queries, keys = _float32(queries), _float32(keys)
    second_keys = _second_window_keys(t, batch, local, step)  # (B, ...) objective joint/intra, else None
    generator = torch.Generator().manual_seed(derive_seed(cfg.seed, SAMPLER_STREAM, step))

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        return distributed.gather(tensor, world)

    # under torchrun: the global batch's keys, for in-batch negatives and the dictionary update
    global_parts = dict(all_keys=distributed.gather_embeddings(keys, world), all_clip_index=gather(clip_index),
                        offset=world.rank * (cfg.batch_size // world.size),
                        gather=gather) if world.distributed else {}
    step_batch = StepBatch(step=step, clip_index=clip_index, queries=queries, keys=keys, labels=labels,
                           generator=generator, second_keys=second_keys, **global_parts)
    if world.distributed and second_keys is not None:
        step_batch.all_second_keys = distributed.gather_embeddings(second_keys, world)  # (G, ...)
    loss, diagnostics = t.sampler.loss(step_batch)
    if t.intra is not None:  # objective joint/intra: the intra-modal term
        loss, diagnostics = _with_intra_term(t, step_batch, loss, diagnostics)
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t.optimizer.step()
    global_batch = step_batch
    if world.distributed:
        global_batch = StepBatch(
            step=step, clip_index=step_batch.all_clip_index, queries=distributed.gather_embeddings(queries, world),
            keys=step_batch.all_keys, labels=gather(labels), generator=generator,
            second_keys=step_batch.all_second_keys)
    if batch["clip_index"].shape[0] > local:  # the method's extra candidates: momentum keys, as fresh as the batch
        with torch.no_grad(), t.autocast():
            candidates = t.keys_model(to_device(batch["video"][local:]), to_device(batch["audio"][local:]))
        global_batch.candidates = distributed.gather_embeddings(_float32(candidates), world)
        global_batch.candidate_clip_index = gather(to_device(batch["clip_index"][local:]))
    return StepOutcome(lr, distributed.mean_over_ranks({"loss": loss.item(), **diagnostics}, world), global_batch)


def _encode_keys(t: Training, video: torch.Tensor, audio: torch.Tensor, step: int) -> Embeddings:
    if t.cfg.shuffle_bn and t.key_groups > 1:
        shuffle = torch.Generator().manual_seed(derive_seed(t.cfg.seed, SHUFFLE_STREAM, step))
        return distributed.shuffled_keys(t.keys_model, video, audio, t.key_groups, shuffle, t.world)
    return t.keys_model(video, audio)


def _second_window_keys(t: Training, batch: dict, local: int, step: int) -> Embeddings | None:
    """(B, ...) momentum keys of the clips' second windows, the intra-modal positives (objective joint/intra:
    the loader's ``video2`` / ``audio2``, encoded like the first windows' keys); None for objective cross."""
    if t.intra is None:
        return None
    if "video2" not in batch:
        raise ValueError(f"objective={t.cfg.objective!r} needs the loader's second windows (video2/audio2): "
                         "the batch was not built by AVWindows with this objective")
    pinned = batch["video2"].is_pinned()
    video = batch["video2"][:local].to(t.device, non_blocking=pinned)  # (B, 3, T, crop, crop)
    audio = batch["audio2"][:local].to(t.device, non_blocking=pinned)  # (B, 1, n_mels, frames)
    if t.cfg.channels_last:
        video = video.contiguous(memory_format=torch.channels_last_3d)
        audio = audio.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), t.autocast():
        return _float32(_encode_keys(t, video, audio, step))


def _with_intra_term(t: Training, step_batch: StepBatch, cross_loss: torch.Tensor, diagnostics: dict):
    """The objective's loss (:func:`avlib.losses.intra.objective_loss`) and the diagnostics with the
    cross-modal loss (``cross_loss``, what the learning-signal check reads) and the intra-modal ones."""
    intra_loss, intra_diagnostics = t.intra.loss(step_batch)
    loss = objective_loss(t.cfg.objective, cross_loss, intra_loss, t.cfg.intra_weight)
    return loss, {**diagnostics, "cross_loss": cross_loss.item(), "intra_loss": intra_loss.item(), **intra_diagnostics}


def update_dictionaries(t: Training, global_batch: StepBatch, recorder: DictionaryRecorder | None) -> dict:
    """The method's dictionary update (what enters the queues or banks), with the recorder's metrics of
    the dictionaries the queries met before it; every rank must end with the same dictionaries."""
    diagnostics: dict[str, float] = {}
    if recorder is not None:
        diagnostics.update(recorder.before_update(t.sampler, global_batch))
    diagnostics.update(t.sampler.update(global_batch))
    if t.intra is not None:  # objective joint/intra: the intra-modal queues take the second windows' keys
        diagnostics.update(t.intra.update(global_batch))
    if recorder is not None:
        recorder.after_update(t.sampler, global_batch)
    if t.cfg.check_ranks:
        distributed.check_same_on_every_rank(t.sampler, "sampler state (dictionaries)", global_batch.step, t.world)
        if t.intra is not None:
            distributed.check_same_on_every_rank(t.intra, "intra-modal queues", global_batch.step, t.world)
    return diagnostics


# ----------------------------------------------------------------------------- bookkeeping


class RunRecords:
    """What rank 0 keeps of the steps: ``metrics.csv``, the dictionary recorder, the online kNN
    monitor, TensorBoard and the progress lines on stdout (:class:`avlib.train.console.ProgressLines`)."""

    def __init__(self, t: Training, cache: DecodedCache, start_step: int):
        cfg, run_dir = t.cfg, Path(t.cfg.run_dir)
        self.metrics = MetricsLog(run_dir / "metrics.csv", start_step)
        self.recorder = DictionaryRecorder(run_dir, cfg.snapshot_every, t.total_steps)
        self.monitor = KnnMonitor(cache, cfg, clips=cfg.monitor_clips, device=t.device) if cfg.monitor_every else None
        self.monitor_every = t.steps_per_epoch if cfg.monitor_every == -1 else cfg.monitor_every
        self.tensorboard = TensorBoardLog(run_dir, start_step, list(cache.class_names), cache.labels,
                                          cache.clip_ids) if cfg.tensorboard else None
        self.progress = (ProgressLines(f"pretrain[{cfg.sampler}]", start_step, t.total_steps)
                         if cfg.progress else None)
        # warns once when the loss has not fallen below a uniform guess (rows kept by a resumed run replayed)
        self.learning_signal = LearningSignalMonitor(cfg.objective, t.steps_per_epoch, t.total_steps,
                                                     read_metrics(run_dir) if start_step else [])

    def monitored(self, t: Training, step: int) -> dict[str, float]:
        """The kNN monitor's columns (NaN on the steps between monitors, so every row has them)."""
        if self.monitor is None or not self.monitor.enabled:
            return {}
        if (step + 1) % self.monitor_every and step + 1 != t.total_steps:
            return {"knn_video": math.nan, "knn_audio": math.nan, "monitor_s": math.nan}
        started = time.perf_counter()
        accuracies = self.monitor(t.model)
        return {**accuracies, "monitor_s": time.perf_counter() - started}

    def write(self, row: dict) -> None:
        self.metrics.write(row)
        self.learning_signal.observe(row)
        if self.tensorboard is not None:
            self.tensorboard.scalars(row)
            if self.recorder.snapshot_due(row["step"]):
                self.tensorboard.dictionaries(row["step"])
        if self.progress is not None:
            self.progress.step(row)

    def close(self) -> None:
        self.metrics.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


# ----------------------------------------------------------------------------- the run


def train(cfg: PretrainConfig, world: distributed.World, device: str) -> dict:
    """Train (or resume) ``cfg`` in this process (one rank of ``world``); returns the summary."""
    run_started = time.perf_counter()
    torch.set_num_threads(cfg.num_threads)
    key_groups = check_world(cfg, world)
    resuming = cfg.resume and has_checkpoint(cfg.run_dir)
    if world.is_main:  # rank 0 owns the run folder; the others wait for it (and for the dataset)
        resuming = prepare_run_folder(cfg)
    say(cfg, world, f"data: opening {cfg.dataset!r} (a new dataset is generated or decoded once, then cached)")
    cache, train_indices = load_training_data(cfg, world)
    t = build_training(cfg, world, device, cache, train_indices, key_groups)

    # The baseline: the very same encoders before any training (computed again if the folder's was
    # computed with other parameters).
    if cfg.probe and world.is_main and read_random_init_probes(cfg.run_dir, cfg) is None:
        probe_started = time.perf_counter()
        shared = shared_random_init_path(cfg, t.model)  # None without cfg.random_init_cache
        if shared is not None and shared.is_file():
            write_random_init_probes(cfg.run_dir, cfg, json.loads(shared.read_text())["probes"])
            say(cfg, world, f"probes: the random-init baseline of these initial weights, from {shared}")
        else:
            say(cfg, world, "probes: the random-init baseline (the encoders before training)")
            probes = run_probes(t.model, cache, cfg, device=device)
            write_random_init_probes(cfg.run_dir, cfg, probes)
            if shared is not None:
                shared.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic({"probes": probes, "computed_by": str(cfg.run_dir)}, shared)
            say(cfg, world, f"probes: random-init baseline done in {duration_text(time.perf_counter() - probe_started)}")
    distributed.barrier(world)

    start_step, previous_wall_s = restore(t) if resuming else (0, 0.0)
    if resuming and world.is_main:
        print(f"resuming {cfg.run_dir} at step {start_step} of {t.total_steps}", flush=True)
    say(cfg, world, f"training: {t.total_steps} steps ({t.steps_per_epoch} per epoch, global batch {cfg.batch_size}, "
                    f"sampler {cfg.sampler}, {world.size} process(es) on {device}); a line every "
                    f"~5% of the steps or 30 s")
    with PeakTreeRSS() as memory:  # this process and its loader workers, while they train
        run_steps(t, cache, train_indices, start_step, lambda: previous_wall_s + time.perf_counter() - run_started)
    train_wall_s = previous_wall_s + time.perf_counter() - run_started
    if not world.is_main:
        distributed.barrier(world)  # rank 0 probes and writes the summary
        return json.loads((Path(cfg.run_dir) / "summary.json").read_text())
    say(cfg, world, "probes: the trained encoders" if cfg.probe else "training done")
    summary = summarise(t, cache, train_indices, peak_rss_mb=memory.peak_mb)
    export_encoders(t.model, cfg, Path(cfg.run_dir) / ENCODERS_FILE)  # plain state dicts to take away
    if cfg.tensorboard:
        log = TensorBoardLog(cfg.run_dir)
        log.finish(t.total_steps, cfg.to_dict(), summary.get("probe"), summary.get("probe_random_init"))
        log.close()
    summary["wall_s"] = previous_wall_s + time.perf_counter() - run_started
    summary["train_wall_s"] = train_wall_s
    write_json_atomic(summary, Path(cfg.run_dir) / "summary.json")
    distributed.barrier(world)
    return summary


def step_loader(t: Training, cache: DecodedCache, train_indices, start_step: int) -> SlotLoader:
    """This rank's share of every step's seeded global batch, from ``start_step`` on: map-style over the
    cache or the streamed files (:class:`StepBatches`), or streamed from shards (:class:`ShardBatches`).
    Workers build their batches in reused shared-memory slots (``avlib.data.ring``)."""
    cfg, world = t.cfg, t.world
    windows = AVWindows(cache, train_indices, cfg, train=True)
    pin = t.device.startswith("cuda")  # page-locked batches, so the copies to the GPU can be asynchronous
    if cache.source == "shards":
        if t.sampler.extra_candidates():
            raise ConfigError(f"parameter active_candidates={cfg.active_candidates!r} draws extra clips at random, "
                              "which a shard stream cannot serve: use 'batch' (the default) or data_source='stream'")
        stream = ShardBatches(windows, cache, cfg.batch_size, cfg.seed, t.total_steps, start_step,
                              shard=(world.rank, world.size), collate_batch=SlotCollate(collate))
        return SlotLoader(DataLoader(stream, batch_size=None, num_workers=cfg.num_workers, pin_memory=pin,
                                     worker_init_fn=_single_threaded_worker), pin)
    batches = StepBatches(len(train_indices), cfg.batch_size, cfg.seed, t.total_steps, start_step,
                          shard=(world.rank, world.size), candidates=t.sampler.extra_candidates())
    return SlotLoader(DataLoader(windows, batch_sampler=batches, collate_fn=SlotCollate(collate),
                                 num_workers=cfg.num_workers, pin_memory=pin,
                                 worker_init_fn=_single_threaded_worker), pin)


def data_columns(t: Training, batch: dict, step: int) -> dict[str, float]:
    """What the loader delivered at this step, over the global batch: where the training windows start
    (seconds into their clips) and how many windows failed to decode (each logged with its file, shard
    and key in ``run_dir/data_failures.csv``, appended by every rank); rank 0 marks the clips seen."""
    local = t.cfg.batch_size // t.world.size
    starts = distributed.gather(batch["window_start_s"][:local].to(t.device), t.world)  # (B,) seconds
    failures = batch.get("failed", [])
    if failures:
        path = Path(t.cfg.run_dir) / "data_failures.csv"
        with open(path, "a", encoding="utf-8") as log:
            for where, reason in failures:
                log.write(f"{step},{t.world.rank},{json.dumps(where)},{json.dumps(reason)}\n")
    failed = distributed.gather(torch.tensor([len(failures)], device=t.device), t.world)  # (W,)
    clips = distributed.gather(batch["clip_index"][:local].to(t.device), t.world)  # (B,)
    t.seen[clips.cpu()] = True
    # the global batch's clips in slot order, as one number: two runs read the same samples iff these agree
    digest = zlib.crc32(clips.cpu().numpy().astype("<i8").tobytes())
    return {"window_start_min": float(starts.min()), "window_start_mean": float(starts.mean()),
            "window_start_max": float(starts.max()), "data_failures": int(failed.sum()), "batch_digest": digest}


def run_steps(t: Training, cache: DecodedCache, train_indices, start_step: int, wall_s) -> None:
    """Steps ``start_step`` .. ``total_steps - 1``, with checkpoints every ``checkpoint_every`` steps, at the
    end, and on SIGTERM/SIGINT (then :class:`Interrupted` is raised); ``wall_s()`` is the run's wall time."""
    cfg, world = t.cfg, t.world
    loader = step_loader(t, cache, train_indices, start_step)
    if world.is_main:  # steps replayed after a resume log their failures again
        _drop_failures_from(Path(cfg.run_dir) / "data_failures.csv", start_step)
    distributed.barrier(world)
    # metrics, dictionary diversity and snapshots on rank 0 (the dictionaries are the same on every rank)
    records = RunRecords(t, cache, start_step) if world.is_main else None
    t.model.train()
    t.momentum_model.train()
    try:
        with StopSignals() as stop_signals:
            iteration_started = time.perf_counter()
            for step, batch in zip(range(start_step, t.total_steps), loader):
                data_s = time.perf_counter() - iteration_started
                loaded = data_columns(t, batch, step)
                outcome = train_step(t, batch, step)
                diagnostics = outcome.diagnostics
                diagnostics.update(update_dictionaries(t, outcome.global_batch, records and records.recorder))
                stopping = distributed.any_rank(stop_signals.signum is not None, world)
                step_s = time.perf_counter() - iteration_started
                mean_loss = diagnostics.pop("loss")  # over the global batch
                if records is not None:  # (the monitor's time is its own column, not part of step_s)
                    records.write({"step": step, "epoch": step // t.steps_per_epoch, "loss": mean_loss,
                                   "lr": outcome.lr, "step_s": step_s, "data_s": data_s, **loaded, **diagnostics,
                                   **records.monitored(t, step)})
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == t.total_steps or stopping:
                    save_checkpoint(t, step + 1, wall_s())
                if stopping:
                    raise Interrupted(step + 1, stop_signals.signum or signal.SIGTERM, Path(cfg.run_dir))
                iteration_started = time.perf_counter()
    finally:
        loader.close()  # its workers stop here, not whenever the iterator is freed (SlotLoader.close)
        if records is not None:
            records.close()


def data_summary(t: Training, cache, train_indices, rows: list[dict], peak_rss_mb: float | None) -> dict:
    """``summary["data"]``: what the loader read.  ``clips_seen`` counts the training clips that gave at
    least one window (so it shows clips lost to failed decodes), ``data_wait_share`` the share of step
    time spent waiting for the next batch, ``window_start_s`` where in their clips the windows started
    (``span_share``: max - min over the mean training clip's length, how much of a clip training reaches)
    and ``peak_rss_mb`` the peak resident memory of the training process and its loader workers in this
    session (:mod:`avlib.train.memory`)."""
    durations = (np.asarray(cache.durations)[np.asarray(train_indices)] if hasattr(cache, "durations")
                 else np.asarray(cache.frame_counts)[np.asarray(train_indices)] / cache.fps)
    starts = [r for r in rows if not math.isnan(r.get("window_start_mean", math.nan))]
    failures = _read_failures(Path(t.cfg.run_dir) / "data_failures.csv")
    reasons: dict[str, int] = {}
    for _, _, reason in failures:
        reasons[reason] = reasons.get(reason, 0) + 1
    window = {"min": min(r["window_start_min"] for r in starts), "mean": sum(r["window_start_mean"] for r in starts) /
              len(starts), "max": max(r["window_start_max"] for r in starts)} if starts else None
    mean_clip_s = float(durations.mean()) if len(durations) else 0.0
    return {
        "source": cache.source, "decoder": cache.decoder, "train_clips": len(train_indices),
        "clips_seen": int(t.seen.sum()), "windows": len(rows) * t.cfg.batch_size,
        "skipped": {"rows": len(cache.skipped_rows), "row_reasons": skip_reasons(cache.skipped_rows).strip(" ()"),
                    "failed_windows": len(failures), "failed_window_reasons": reasons,
                    "failed_examples": [f"step {step}: {where}: {reason}" for step, where, reason in failures[:5]]},
        "data_wait_share": sum(r["data_s"] for r in rows) / max(1e-9, sum(r["step_s"] for r in rows)),
        "peak_rss_mb": peak_rss_mb,
        "window_start_s": window, "mean_clip_s": mean_clip_s,
        "span_share": (window["max"] - window["min"]) / mean_clip_s if window and mean_clip_s else None,
    }


def _read_failures(path: Path) -> list[tuple[int, str, str]]:
    """(step, where, reason) of each logged failed window, once per (step, where) even if a resume replayed it."""
    if not path.is_file():
        return []
    seen, failures = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        step, _rank, rest = line.split(",", 2)
        where, reason = json.loads("[" + rest + "]")
        if (int(step), where) not in seen:
            seen.add((int(step), where))
            failures.append((int(step), where, reason))
    return failures


def _drop_failures_from(path: Path, start_step: int) -> None:
    """Forget the failures logged at steps >= ``start_step`` (a resumed run replays them)."""
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if int(line.split(",", 1)[0]) < start_step]
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def summarise(t: Training, cache: DecodedCache, train_indices, peak_rss_mb: float | None = None) -> dict:
    """The run's summary: what ran, how fast, what the loader read, the method's own results and the probes."""
    cfg = t.cfg
    rows = read_metrics(cfg.run_dir)
    last_epoch = rows[-t.steps_per_epoch:] if rows else []
    summary = {
        "sampler": cfg.sampler, "objective": cfg.objective, "seed": cfg.seed, "steps": t.total_steps,
        "steps_per_epoch": t.steps_per_epoch,
        "train_clips": len(train_indices), "num_clips": len(cache), "classes": list(cache.class_names),
        "final_loss": sum(r["loss"] for r in last_epoch) / max(1, len(last_epoch)),
        # the loss against a uniform guess over the candidates (avlib.train.learning_signal)
        **learning_signal_summary(rows, t.steps_per_epoch, t.total_steps, cfg.objective),
        "mean_step_s": sum(r["step_s"] for r in rows) / max(1, len(rows)),
        # the dictionary update's own time (the active selection), and its share of the step
        "mean_select_s": sum(r.get("select_s", 0.0) for r in rows) / max(1, len(rows)),
        "num_threads": cfg.num_threads, "num_workers": cfg.num_workers, "world_size": t.world.size,
        "device": t.device, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        **t.sampler.summary(),
        "data": data_summary(t, cache, train_indices, rows, peak_rss_mb),
    }
    monitored = [r for r in rows if not math.isnan(r.get("monitor_s", math.nan))]
    if monitored:  # the online kNN monitor: its last values and its cost beside training's
        summary["monitor"] = {"knn_video": monitored[-1]["knn_video"], "knn_audio": monitored[-1]["knn_audio"],
                              "calls": len(monitored), "mean_s": sum(r["monitor_s"] for r in monitored) / len(monitored),
                              "share_of_training": sum(r["monitor_s"] for r in monitored) /
                              max(1e-9, sum(r["step_s"] for r in rows))}
    if cfg.probe:
        probe_started = time.perf_counter()
        summary["probe"], details = run_probes(t.model, cache, cfg, device=t.device, return_details=True)
        # which test clips each probe got right (a few dozen hex characters): the study tells the test
        # split's share of a probe's spread over seeds from training's with it (avlib.study.noise)
        summary["probe_correct"] = clip_correctness(details)
        summary["probe_random_init"] = read_random_init_probes(cfg.run_dir, cfg)
        summary["probe_s"] = time.perf_counter() - probe_started
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

