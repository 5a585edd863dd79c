"""From a dataset name or manifest to batches of temporally aligned audio-visual windows.

``open_dataset`` resolves the ``dataset`` parameter (the embedded dataset's name or a manifest
path), validates it and returns the decoded cache.  ``AVWindows`` cuts one window per modality
out of a cached clip, the two covering exactly the same time span, and augments them.
``StepBatches`` decides which clips and which random seeds make up step ``s``: a pure function of
(seed, s), so a resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from avlib.config import EMBEDDED_DATASET
from avlib.data.augment import AudioTransform, VideoTransform, seeded
from avlib.data.cache import DecodedCache
from avlib.data.decode import DecodeError
from avlib.data.manifest import (load_manifest, no_rows_left, skip_reasons, skipped_rows_explanation,
                                 validate_manifest)
from avlib.data.synthetic import SyntheticSpec, data_home, default_root, generate


def embedded_spec(cfg) -> SyntheticSpec:
    """The embedded dataset's spec from a notebook config (PretrainConfig or DataConfig)."""
    return SyntheticSpec(
        num_classes=cfg.num_classes, clips_per_class=cfg.clips_per_class, duration_s=cfg.clip_seconds,
        fps=cfg.fps, frame_size=cfg.frame_size, sample_rate=cfg.sample_rate,
        faulty_pair_rate=cfg.faulty_pair_rate, seed=cfg.dataset_seed, class_imbalance=float(cfg.class_imbalance),
        clips_per_source=cfg.clips_per_source, av_sync=cfg.av_sync,
    )


def resolve_manifest(cfg, *, progress: bool = True) -> Path:
    """The manifest behind ``cfg.dataset``: generate the embedded dataset (cached) or check the path."""
    if cfg.dataset == EMBEDDED_DATASET:
        spec = embedded_spec(cfg)
        return generate(default_root(spec), spec, workers=2, progress=progress)
    path = Path(cfg.dataset).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"parameter dataset={cfg.dataset!r} is neither the embedded dataset's name "
            f"({EMBEDDED_DATASET!r}) nor an existing manifest CSV file"
        )
    return path


def shortest_clip_seconds(cfg) -> float:
    """The shortest clip a run can train on: its longest window (video ``window_s`` or audio
    ``audio_window_s``), capped at ``clip_seconds``.  A config without windows (the data notebook's)
    uses the pretraining defaults' windows, so that it keeps the clips pretraining would keep."""
    from avlib.config import PretrainConfig

    windows = [getattr(cfg, name, getattr(PretrainConfig, name)) for name in ("window_s", "audio_window_s")]
    return min(float(cfg.clip_seconds), max(windows))


def open_dataset(cfg, *, progress: bool = True) -> DecodedCache:
    """Manifest -> validated rows -> decoded cache (built once, memory-mapped afterwards).

    Clips of any length: a row shorter than ``clip_seconds`` but at least as long as the training
    windows (:func:`shortest_clip_seconds`) is kept as it is, and the windows are placed inside it;
    only rows shorter than the windows are skipped (with an error naming the durations found and the
    parameter to change when none is left).  When every row lasts ``clip_seconds`` the cache is the
    fixed-length one it always was (same key).

    Every row left out, by validation or by decoding (recorded in the cache, so also on later runs
    over it), is in ``cache.skipped_rows`` as (row, path, reason), and one line with the totals is
    printed whatever ``progress`` is: the clips a run says it uses are the clips it trains on.
    """
    manifest = load_manifest(resolve_manifest(cfg, progress=progress), root=cfg.dataset_root)
    rows, report_source = len(manifest), manifest.source
    shortest = shortest_clip_seconds(cfg)
    parameter = "window_s / audio_window_s" if hasattr(cfg, "window_s") else "clip_seconds"
    manifest, report = validate_manifest(manifest, min_duration_s=shortest, on_error=cfg.on_bad_clip,
                                         verbose=False, length_parameter=parameter)
    if len(manifest) == 0:
        raise no_rows_left(report_source, report, shortest, parameter)
    if 2 * len(report.problems) > rows:
        print("warning: " + skipped_rows_explanation(report_source, report, shortest, parameter))
    any_short = any(d is not None and shortest - 1e-6 <= d < cfg.clip_seconds - 1e-6 for d in report.durations)
    cache = DecodedCache.build(
        manifest, data_home() / "cache", fps=cfg.fps, frame_size=cfg.frame_size, sample_rate=cfg.sample_rate,
        clip_seconds=cfg.clip_seconds, on_error=cfg.on_bad_clip, workers=2, progress=progress,
        min_clip_seconds=shortest if any_short else None,
    )
    cache.skipped_rows = sorted([*report.problems, *cache.skipped])
    print(f"dataset: {rows} manifest rows, {len(cache)} clips used, {len(cache.skipped_rows)} skipped"
          f"{skip_reasons(cache.skipped_rows)}")
    warn_small_classes(cache, getattr(cfg, "min_clips_per_class", 0))
    return cache


def warn_small_classes(cache: DecodedCache, min_clips: int) -> list[str]:
    """Warn about each class with fewer than ``min_clips`` training clips, naming its nearest other
    label: a misspelt label (``dgo`` beside ``dog``) silently makes a one-clip class otherwise."""
    train = cache.select("train")
    counts = np.bincount(cache.labels[train], minlength=len(cache.class_names))
    messages = []
    for index, name in enumerate(cache.class_names):
        if counts[index] >= min_clips:
            continue
        others = [other for other in cache.class_names if other != name]
        nearest = difflib.get_close_matches(name, others, n=1, cutoff=0.6)  # a near spelling, if any
        hint = (f"; the nearest other label is {nearest[0]!r} ({int(counts[cache.class_names.index(nearest[0])])} "
                f"clips): a misspelling?") if nearest else ""
        messages.append(f"class {name!r} has {int(counts[index])} training clip(s), fewer than "
                        f"min_clips_per_class={min_clips}{hint}")
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return messages


# Stream tags for derive_seed: each kind of randomness draws from its own independent stream.
SAMPLE_STREAM, EPOCH_STREAM, SAMPLER_STREAM, SUBSET_STREAM, SHUFFLE_STREAM, CANDIDATE_STREAM, SHARD_STREAM = range(7)
SECOND_WINDOW_STREAM = 7  # objective joint/intra: the second window of an item, from the item's own seed


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for the stream (seed, *keys), e.g. (seed, SAMPLE_STREAM, step, slot)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def stratified_subset(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded share ``fraction`` of ``indices``, the same share of every class (at least one clip each).

    Used for data-size studies (``subset_fraction``): soft positives need same-class clips, so a
    subset must keep every class rather than be a plain random cut.
    """
    if fraction >= 1.0:
        return indices
    rng = np.random.default_rng(derive_seed(seed, SUBSET_STREAM))
    kept = []
    for label in np.unique(labels[indices]):
        members = indices[labels[indices] == label]
        count = max(1, int(round(fraction * len(members))))
        kept.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(kept))


class AVWindows(Dataset):
    """Paired (video, audio) windows of the clips ``indices`` of a decoded cache.

    The two windows share their centre; the audio window may be longer (``audio_window_s``), as in
    AVID where 2 s of audio accompany a shorter video clip, so that rhythm is audible.  In training
    the audio centre moves by a random offset of at most ``audio_offset_s`` (uniform, per item; kept
    inside the clip; default 0, aligned).  Why the option: with exactly aligned windows, WHERE the
    onsets fall inside the audio window equals where the visual events fall inside the video
    window, an instance-level cue that can solve the cross-modal InfoNCE without class-relevant
    audio features; an offset keeps what the windows share as a clip property (tempo, rhythm,
    class) and removes the exact phase.  Measured on the embedded dataset at 60 clips per class
    (``sampler=active``, 60 epochs; audio linear-probe gain over random init at seeds 0/1/2), it
    does not help reliably: offset 0.5 s gave +1.7/+10.6/+8.3 points against +14.4/+3.3/-5.0
    aligned, and 1.0 s gave +13.9/-2.8 at seeds 1/2.  Evaluation windows are always aligned.

    Items are ``(position, seed)`` pairs.  Training: the window start is random (drawn from
    ``seed``) and both modalities are augmented.  Evaluation: ``seed`` is read as the window number
    k of ``eval_windows`` evenly spaced windows, without augmentation.

    With ``cfg.objective`` "joint" or "intra" (the intra-modal objective, ``avlib.samplers.intra``) a
    training item also holds a SECOND pair of windows of the same clip, ``video2`` / ``audio2``: another
    random start and other augmentations, drawn from ``derive_seed(seed, SECOND_WINDOW_STREAM)`` -- a
    function of the item's seed, so a resumed run replays it exactly, and independent of the first
    window, which stays what it is without a second one.  "cross" reads no second window (no cost).
    """

    def __init__(self, cache: DecodedCache, indices, cfg, *, train: bool, eval_windows: int = 1):
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64)
        self.train = train
        self.eval_windows = eval_windows
        self.fps, self.sample_rate = cfg.fps, cfg.sample_rate
        self.window_frames, self.window_samples = cfg.window_frames, cfg.window_samples
        self.audio_offset_s = float(cfg.audio_offset_s) if train else 0.0
        # valid lengths per clip: windows stay inside a clip shorter than clip_seconds (see cache), or range
        # over the whole clip when it is streamed (avlib.data.sources)
        self.frame_counts = np.asarray(cache.frame_counts)
        self.sample_counts = np.asarray(cache.sample_counts)
        self.total_frames = int(self.frame_counts.max()) if len(self.frame_counts) else 0
        assert self.window_frames <= self.total_frames or not len(self.indices), "window longer than the clips"
        self.video_transform = VideoTransform(cfg.crop_size, train, getattr(cfg, "hue_space", "hsv"),
                                              getattr(cfg, "video_augment", "light"),
                                              getattr(cfg, "video_normalize", "dataset"))
        self.audio_transform = AudioTransform(cfg.sample_rate, cfg.n_mels, train)
        # the intra-modal objective's second window (configs without an objective, e.g. the data notebook's, train none)
        self.second_window = train and getattr(cfg, "objective", "cross") != "cross"

    def __len__(self) -> int:
        return len(self.indices)

    def window_starts(self, seed: int, position: int = 0) -> tuple[int, int]:
        """(first video frame, first audio sample) of the windows of item ``(position, seed)``; call
        inside ``seeded(seed)``.

        The audio window shares the video window's centre, up to a random offset in training (see
        the class docstring), and is moved inside the clip at its ends (the clip's valid length,
        which may be shorter than ``clip_seconds``)."""
        clip = int(self.indices[position]) if len(self.indices) else 0
        frames = int(self.frame_counts[clip]) if len(self.frame_counts) else self.total_frames
        samples = int(self.sample_counts[clip])
        last = max(0, frames - self.window_frames)
        if self.train:
            start = int(torch.randint(0, last + 1, ()).item())  # inside the seeded scope
        elif self.eval_windows > 1:
            start = int(round(seed * last / (self.eval_windows - 1)))
        else:
            start = last // 2
        centre_s = (start + self.window_frames / 2) / self.fps
        if self.audio_offset_s > 0:
            centre_s += float(torch.empty(()).uniform_(-self.audio_offset_s, self.audio_offset_s))
        audio_start = int(round(centre_s * self.sample_rate)) - self.window_samples // 2
        audio_start = max(min(audio_start, samples - self.window_samples), 0)
        return start, audio_start

    def __getitem__(self, item: tuple[int, int]) -> dict:
        """The windows of item ``(position, seed)``.

        A training window that cannot be decoded (a streamed file or shard sample broken after
        validation) is replaced by the next position's window, with the same seed, so the batch keeps its
        size on every rank; the item's ``failed`` list names each one left out and why.  Evaluation
        windows are never replaced (a probe feature must be its own clip's): the error is raised.
        """
        position, seed = item
        failed: list[tuple[str, str]] = []
        for attempt in range(len(self.indices)):
            where = (position + attempt) % len(self.indices)
            clip = int(self.indices[where])
            try:
                video, audio, start = self._window(seed, where, clip)
                second = None
                if self.second_window:
                    second = self._window(derive_seed(seed, SECOND_WINDOW_STREAM), where, clip)
            except DecodeError as exc:
                if not self.train:
                    raise
                failed.append((self.cache.describe(clip), exc.reason))
                continue
            item = {"video": video, "audio": audio, "clip_index": clip, "label": int(self.cache.labels[clip]),
                    "window_start_s": start / self.fps, "failed": failed}
            if second is not None:
                item["video2"], item["audio2"] = second[0], second[1]  # (3, T, crop, crop), (1, n_mels, frames)
            return item
        raise DecodeError(self.cache.describe(int(self.indices[position])),
                          f"no training window of the {len(self.indices)} clips could be decoded "
                          f"(first failure: {failed[0][1] if failed else 'none'})")

    def _window(self, seed: int, position: int, clip: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(video (3, T, crop, crop), audio (1, n_mels, frames), first frame) of the windows drawn from ``seed``
        at ``position`` (clip ``clip``); raises :class:`DecodeError` when the clip cannot be read there."""
        with seeded(seed):
            start, audio_start = self.window_starts(seed, position)
            frames, waveform = self.cache.read(clip, start, self.window_frames, audio_start,
                                               self.window_samples)  # (T, H, W, 3), (S,)
            if waveform.shape[0] < self.window_samples:  # rounding at the very end of a clip
                waveform = np.pad(waveform, (0, self.window_samples - waveform.shape[0]))
            return self.video_transform(frames), self.audio_transform(waveform), start


class StepBatches(torch.utils.data.Sampler):
    """Yields, for steps ``start_step .. total_steps-1``, the list of ``(position, sample seed)`` items.

    Each epoch is a fresh permutation seeded by (seed, epoch); the last incomplete batch of an epoch
    is dropped so that every step has the same batch size.  Under data-parallel training, ``shard``
    = (rank, world size) yields only that rank's contiguous share of each (global) batch, so the
    union over ranks is exactly the single-process batch, augmentation seeds included.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, total_steps: int, start_step: int = 0,
                 shard: tuple[int, int] = (0, 1), candidates: int = 0):
        if num_items < batch_size:
            raise ValueError(f"batch_size={batch_size} is larger than the {num_items} training clips")
        rank, world_size = shard
        assert 0 <= rank < world_size and batch_size % world_size == 0, "the batch must split evenly over ranks"
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.total_steps, self.start_step = total_steps, start_step
        self.steps_per_epoch = num_items // batch_size
        share = batch_size // world_size
        self.rows = slice(rank * share, (rank + 1) * share)
        # extra candidate clips per step (the active sampler's fresh candidates), this rank's share after
        # its batch rows: drawn uniformly without replacement from (seed, step), the same on every rank
        assert candidates % world_size == 0, "the candidates must split evenly over ranks"
        self.candidates = candidates
        candidate_share = candidates // world_size
        self.candidate_rows = slice(rank * candidate_share, (rank + 1) * candidate_share)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, EPOCH_STREAM, epoch))
        return torch.randperm(self.num_items, generator=generator)

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        positions = self.epoch_order(epoch)[offset * self.batch_size:(offset + 1) * self.batch_size]
        return [(int(p), derive_seed(self.seed, SAMPLE_STREAM, step, slot)) for slot, p in enumerate(positions)]

    def candidate_batch(self, step: int) -> list[tuple[int, int]]:
        """The step's extra candidate clips: ``candidates`` positions drawn without replacement."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, CANDIDATE_STREAM, step))
        positions = torch.randperm(self.num_items, generator=generator)[:self.candidates]
        return [(int(p), derive_seed(self.seed, CANDIDATE_STREAM, step, slot)) for slot, p in enumerate(positions)]

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            extra = self.candidate_batch(step)[self.candidate_rows] if self.candidates else []
            yield self.batch(step)[self.rows] + extra


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)``; inside a DataLoader worker, stacked straight into shared memory.

    Why: a worker's batch reaches the main process through shared memory; a batch stacked into
    ordinary memory is copied once more when it is sent (``share_memory_``): stacking then sending
    cost 1.2 ms CPU per decode-only 128-px window (a 5.4-ms decode), stacking into shared memory
    0.8 ms, most of it the kernel providing fresh shared pages (``bench/bench_data.py --only stages``).
    The training loop's workers stack into reused slots instead (``avlib.data.ring``, 0.08 ms); this
    is their fallback and every other caller's path."""
    return default_collate(tensors)  # a list of tensors: torch.stack, into shared memory in a worker


def collate(items: list[dict], stack=None) -> dict:
    """One batch of :meth:`AVWindows.__getitem__` items.  ``stack(field, tensors)``, when given, stacks
    the windows itself and returns None (``avlib.data.ring.SlotCollate`` stacks them into a reused
    shared slot); by default they are stacked with :func:`_stack`."""
    stacked = (lambda field, tensors: _stack(tensors)) if stack is None else stack
    return {
        "video": stacked("video", [it["video"] for it in items]),  # (B, 3, T, crop, crop)
        "audio": stacked("audio", [it["audio"] for it in items]),  # (B, 1, n_mels, frames)
        "clip_index": torch.tensor([it["clip_index"] for it in items], dtype=torch.long),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "window_start_s": torch.tensor([it.get("window_start_s", 0.0) for it in items], dtype=torch.float64),
        "failed": [failure for it in items for failure in it.get("failed", ())],  # (where, reason) left out
        **({"video2": stacked("video2", [it["video2"] for it in items]),  # (B, 3, T, crop, crop) second windows
            "audio2": stacked("audio2", [it["audio2"] for it in items])}  # (B, 1, n_mels, frames)
           if items and "video2" in items[0] else {}),
    }
