"""Where a run's clips come from: the decoded cache, the manifest's files, or WebDataset shards.

Why three: the decoded cache (:mod:`avlib.data.cache`) stores raw uint8 frames, which is the fastest
source for a few thousand short clips and impossible for a real corpus (10 s at 16 fps and 128 px is
7.9 MB a clip, ~1.6 TB for VGGSound's 200k clips, against tens of GB of H.264), and it keeps only the
first ``clip_seconds`` of each file.  A real corpus is read the way AVID-CMA's loader reads it: one
random window over the WHOLE clip each time the clip is drawn, decoded on the fly in the DataLoader
workers, so memory is bounded by the workers, not by the corpus.

Every source offers the same face to :class:`avlib.data.dataset.AVWindows`, the probes and the
methods: the clips' metadata (``labels``, ``class_names``, ``clip_ids``, ``splits``, ``select``,
``column``, ``skipped_rows``) and ``read(clip, frame_start, frames, sample_start, samples)``, one
window on the output grid (frame ``k`` is time ``k / fps`` from the clip's start, sample ``n`` is
``n / sample_rate``), with ``frame_counts`` / ``sample_counts`` the grid lengths of the span where both
streams exist.  :class:`~avlib.data.cache.DecodedCache` slices its arrays; :class:`StreamedClips`
decodes the window from the manifest's file and :class:`ShardedClips` from a shard sample's bytes
(:func:`avlib.data.window.decode_window`, torchcodec where it loads, else PyAV).  Because the window
positions are the same integers on every source, a window streamed from a file equals the same window
cut from the cache (``tests/test_stream.py``).

Training from shards streams them in order (:class:`ShardBatches`): each epoch's shard order is seeded
by (seed, epoch), each rank reads a contiguous share of that order and its DataLoader workers take its
batches in turn, so the union over ranks and workers of one epoch is every training sample once (bar
the incomplete last global batch, as in every epoch of :class:`~avlib.data.dataset.StepBatches`), and
a resumed run starts at the very sample it stopped at: batch ``j`` of epoch ``e`` is a pure function of
(seed, e, rank, world size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from avlib.config import EMBEDDED_DATASET, ConfigError
from avlib.data.dataset import (SAMPLE_STREAM, SHARD_STREAM, collate, derive_seed, open_dataset, resolve_manifest,
                                shortest_clip_seconds, warn_small_classes)
from avlib.data.decode import DecodeError
from avlib.data.manifest import (Manifest, ManifestError, load_manifest, no_rows_left, skip_reasons, skipped_rows_explanation,
                                 validate_manifest)

__all__ = ["ClipTable", "StreamedClips", "ShardedClips", "ShardBatches", "SHARD_SHUFFLE_BLOCK", "DATA_SOURCES",
           "data_source_of", "open_clips"]

#: values of the ``data_source`` parameter ("auto": shards for a shard folder, else the cache)
DATA_SOURCES = ("auto", "cache", "stream", "shards")


def is_shard_folder(dataset: str) -> bool:
    return (Path(dataset).expanduser() / "index.json").is_file()


def data_source_of(cfg) -> str:
    """The source a run reads: ``cfg.data_source``, with "auto" resolved by what ``cfg.dataset`` names
    (a folder written by ``python -m avlib.data.shards`` -> "shards"; the embedded dataset or a
    manifest -> "cache"), or a :class:`ConfigError` when the two disagree."""
    choice = getattr(cfg, "data_source", "auto")
    if choice not in DATA_SOURCES:
        raise ConfigError(f"parameter data_source={choice!r} is not valid; valid choices: {list(DATA_SOURCES)}")
    shards = cfg.dataset != EMBEDDED_DATASET and is_shard_folder(cfg.dataset)
    if choice == "auto":
        return "shards" if shards else "cache"
    if choice == "shards" and not shards:
        raise ConfigError(f"parameter data_source='shards' needs dataset to be a folder written by `python -m "
                          f"avlib.data.shards MANIFEST OUT_DIR` (with an index.json); dataset={cfg.dataset!r} is not")
    if choice != "shards" and shards:
        raise ConfigError(f"parameter dataset={cfg.dataset!r} is a shard folder: use data_source='shards' (or "
                          f"'auto'), not {choice!r}")
    return choice


def open_clips(cfg, *, progress: bool = True):
    """The clips a run reads: a :class:`~avlib.data.cache.DecodedCache`, :class:`StreamedClips` or
    :class:`ShardedClips`, by :func:`data_source_of`.  Every row left out is in ``skipped_rows`` and the
    totals are printed in one line, whatever the source (the same rules and messages as the cache's)."""
    source = data_source_of(cfg)
    if source == "cache":
        return open_dataset(cfg, progress=progress)
    from avlib.data.window import available_decoder

    decoder = available_decoder(getattr(cfg, "decoder", "auto"))
    if source == "shards":
        from avlib.data.shards import read_index

        index = read_index(cfg.dataset)
        clips = ShardedClips(cfg.dataset, index, fps=cfg.fps, frame_size=cfg.frame_size,
                             sample_rate=cfg.sample_rate, decoder=decoder)
        rows = len(clips) + len(clips.skipped_rows)
        shortest = shortest_clip_seconds(cfg)
        short = [i for i, d in enumerate(clips.durations) if d < shortest - 1e-6]
        if short:
            raise ManifestError(f"{cfg.dataset}: {len(short)} shard samples last less than the windows "
                                f"({shortest:g}s; e.g. {clips.describe(short[0])}: {clips.durations[short[0]]:.3f}s): "
                                f"lower window_s / audio_window_s or write the shards with a larger --min-seconds")
    else:
        manifest = load_manifest(resolve_manifest(cfg, progress=progress), root=cfg.dataset_root)
        rows, shortest = len(manifest), shortest_clip_seconds(cfg)
        parameter = "window_s / audio_window_s"
        kept, report = validate_manifest(manifest, min_duration_s=shortest, on_error=cfg.on_bad_clip,
                                         verbose=False, length_parameter=parameter)
        if len(kept) == 0:  # the rows go with the error: the run writes them to skipped_clips.csv
            raise no_rows_left(manifest.source, report, shortest, parameter)
        if 2 * len(report.problems) > rows:
            print("warning: " + skipped_rows_explanation(manifest.source, report, shortest, parameter))
        offered = dict(zip(manifest.row_numbers, report.durations))  # row -> seconds both streams offer
        clips = StreamedClips(kept, [offered[n] for n in kept.row_numbers], fps=cfg.fps, frame_size=cfg.frame_size,
                              sample_rate=cfg.sample_rate, decoder=decoder, skipped_rows=report.problems)
    print(f"dataset: {rows} manifest rows, {len(clips)} clips used, {len(clips.skipped_rows)} skipped"
          f"{skip_reasons(clips.skipped_rows)} ({source}, decoder {decoder})")
    warn_small_classes(clips, getattr(cfg, "min_clips_per_class", 0))
    return clips

#: Samples shuffled together within one rank's share of an epoch (:class:`ShardBatches`): big enough that
#: a batch mixes many shards' worth of classes, small enough that reads stay inside ~1 GB of 10-s clips.
SHARD_SHUFFLE_BLOCK = 1024


class ClipTable:
    """The metadata every clip source shares (N clips in a fixed order; arrays indexed by clip).

    ``labels`` int64 (N,), ``class_names``, ``clip_ids``, ``splits`` (N,) object, ``row_numbers``
    (1-based manifest rows), ``index["columns"]`` and :meth:`column` (any manifest column),
    ``frame_counts`` / ``sample_counts`` int64 (N,) (window grid lengths), ``durations`` float64 (N,)
    seconds, ``skipped_rows`` [(row, path, reason)] and ``params`` (fps, frame_size, sample_rate).
    """

    source = "table"
    decoder = "none"

    def __init__(self, *, labels, class_names, clip_ids, splits, row_numbers, columns: list[str],
                 raw_rows: list[dict], durations, fps: float, frame_size: int, sample_rate: int,
                 skipped_rows=()):
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,)
        self.class_names = list(class_names)
        self.clip_ids = list(clip_ids)
        self.splits = np.asarray(splits, dtype=object)  # (N,)
        self.row_numbers = np.asarray(row_numbers, dtype=np.int64)  # (N,)
        self.durations = np.asarray(durations, dtype=np.float64)  # (N,) seconds where both streams exist
        self.params = {"fps": float(fps), "frame_size": int(frame_size), "sample_rate": int(sample_rate)}
        # the last grid point inside the span: a window of w frames starting at k covers [k/fps, (k+w)/fps)
        self.frame_counts = np.floor(self.durations * fps + 1e-6).astype(np.int64)  # (N,)
        self.sample_counts = np.floor(self.durations * sample_rate + 1e-6).astype(np.int64)  # (N,)
        self._raw_rows = raw_rows
        self.index = {"columns": list(columns)}
        self.skipped = []  # rows left out at decoding (none: a streamed source decodes later)
        self.path: Path | None = None  # the manifest or shard folder the clips come from
        self.skipped_rows = sorted(skipped_rows)
        assert len(self.labels) == len(self.clip_ids) == len(self.splits) == len(self.durations) == len(raw_rows)

    fps = property(lambda self: self.params["fps"])
    frame_size = property(lambda self: self.params["frame_size"])
    sample_rate = property(lambda self: self.params["sample_rate"])

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, split: str) -> np.ndarray:
        """int64 indices of the clips in a split."""
        return np.flatnonzero(self.splits == split).astype(np.int64)

    def column(self, name: str) -> np.ndarray:
        """A manifest column as int64 if every value is an int, float64 if every value is a number, else str."""
        if name not in self.index["columns"]:
            raise KeyError(f"{self}: no column {name!r}; columns are {self.index['columns']}")
        raw = [row.get(name, "") for row in self._raw_rows]
        for kind in (int, float):
            try:
                return np.array([kind(v) for v in raw], dtype=np.int64 if kind is int else np.float64)
            except ValueError:
                pass
        return np.array(raw, dtype=object)

    def describe(self, clip: int) -> str:
        """Where clip ``clip`` lives, for messages."""
        return self.clip_ids[clip]

    def _decode(self, source, clip: int, offset_s: float, frame_start: int, frames: int, sample_start: int,
                samples: int) -> tuple[np.ndarray, np.ndarray]:
        from avlib.data.window import decode_window  # torchcodec loads FFmpeg: only where windows are read

        return decode_window(source, video_start_s=offset_s + frame_start / self.fps, num_frames=frames,
                             fps=self.fps, frame_size=self.frame_size,
                             audio_start_s=offset_s + sample_start / self.sample_rate, num_samples=samples,
                             sample_rate=self.sample_rate, decoder=self.decoder)


class StreamedClips(ClipTable):
    """The clips of a validated manifest, each window decoded from its file when it is read.

    ``durations``: the seconds each row offers where both streams exist (``start``..``end`` cut to the
    file), as :func:`avlib.data.manifest.validate_manifest` measured them; windows range over all of it.
    """

    source = "stream"

    def __init__(self, manifest: Manifest, durations, *, fps: float, frame_size: int, sample_rate: int,
                 decoder: str, skipped_rows=()):
        super().__init__(labels=manifest.label_index, class_names=manifest.class_names,
                         clip_ids=manifest.clip_ids, splits=manifest.splits, row_numbers=manifest.row_numbers,
                         columns=manifest.columns, raw_rows=manifest.rows, durations=durations, fps=fps,
                         frame_size=frame_size, sample_rate=sample_rate, skipped_rows=skipped_rows)
        self.decoder, self.path = decoder, manifest.source
        self.paths = [str(p) for p in manifest.paths]
        self.starts = [float(s or 0.0) for s in manifest.starts]  # (N,) seconds into each file

    def __repr__(self) -> str:
        return f"StreamedClips({len(self)} clips from {len(set(self.paths))} files, decoder {self.decoder})"

    def describe(self, clip: int) -> str:
        return f"{self.paths[clip]} (clip {self.clip_ids[clip]})"

    def read(self, clip: int, frame_start: int, frames: int, sample_start: int, samples: int):
        """uint8 (frames, H, W, 3) and float32 (samples,): the window on the clip's output grid."""
        return self._decode(self.paths[clip], clip, self.starts[clip], frame_start, frames, sample_start, samples)


class ShardedClips(ClipTable):
    """The samples of a shard folder (``python -m avlib.data.shards``), read by byte offset.

    Random access serves evaluation (the probes' deterministic windows) and, in training, each batch's
    samples in :class:`ShardBatches`' streaming order; the media bytes of one sample are read with one
    seek, so a rank reads only the shards of its share.
    """

    source = "shards"

    def __init__(self, folder, index: dict, *, fps: float, frame_size: int, sample_rate: int, decoder: str):
        samples = index["samples"]
        class_names = index["class_names"]
        lookup = {name: k for k, name in enumerate(class_names)}
        super().__init__(labels=[lookup[s["label"]] for s in samples], class_names=class_names,
                         clip_ids=[s["clip_id"] for s in samples], splits=[s["split"] for s in samples],
                         row_numbers=[s["row"] for s in samples], columns=index["columns"],
                         raw_rows=[s.get("columns", {}) for s in samples],
                         durations=[s["duration_s"] for s in samples], fps=fps, frame_size=frame_size,
                         sample_rate=sample_rate, skipped_rows=[tuple(s) for s in index.get("skipped", [])])
        self.folder, self.index_data, self.decoder = Path(folder), index, decoder
        self.path = self.folder
        self.shard_names = [s["name"] for s in index["shards"]]
        self.sample_shard = np.array([s["shard"] for s in samples], dtype=np.int64)  # (N,) shard of each sample
        self.keys = [s["key"] for s in samples]
        self.offsets = np.array([s["offset"] for s in samples], dtype=np.int64)  # (N,) byte offset of the media
        self.sizes = np.array([s["size"] for s in samples], dtype=np.int64)  # (N,) media bytes
        self.starts = [float(s.get("start_s") or 0.0) for s in samples]
        self._handles: dict[int, object] = {}  # shard -> open file, per process (reopened after a fork)
        self._pid = None

    def __repr__(self) -> str:
        return f"ShardedClips({len(self)} samples in {len(self.shard_names)} shards at {self.folder})"

    def __getstate__(self):  # DataLoader workers get their own file handles
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = {}, None
        return state

    def describe(self, clip: int) -> str:
        return f"{self.folder / self.shard_names[self.sample_shard[clip]]}:{self.keys[clip]}"

    def media_bytes(self, clip: int) -> bytes:
        """Sample ``clip``'s media file, read from its shard at its recorded offset."""
        import os

        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        shard = int(self.sample_shard[clip])
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = open(self.folder / self.shard_names[shard], "rb")
        handle.seek(int(self.offsets[clip]))
        data = handle.read(int(self.sizes[clip]))
        if len(data) != self.sizes[clip]:
            raise DecodeError(self.describe(clip), f"shard ends after {len(data)} of {self.sizes[clip]} bytes")
        return data

    def read(self, clip: int, frame_start: int, frames: int, sample_start: int, samples: int):
        """uint8 (frames, H, W, 3) and float32 (samples,): the window decoded from the sample's bytes."""
        return self._decode(self.media_bytes(clip), clip, self.starts[clip], frame_start, frames, sample_start,
                            samples)


class ShardBatches(IterableDataset):
    """This rank's training batches for steps ``start_step .. total_steps - 1``, streamed from shards.

    Epoch ``e``: the training shards in an order seeded by (seed, e), their samples in tar order; rank
    ``r`` of ``W`` takes the contiguous share ``[r n, (r + 1) n)``, ``n = N // W`` (so it reads about 1/W of
    the shards), shuffled within consecutive blocks of :data:`SHARD_SHUFFLE_BLOCK` samples (seeded by
    (seed, e, r), so reads stay local), and its batch ``j`` is samples ``[j b, (j + 1) b)`` of that share
    (``b`` = batch_size / W).  Every rank runs
    ``N // batch_size`` steps an epoch, the same count as the cache's :class:`StepBatches`.  Batch ``q`` of
    this loader (step ``start_step + q``) is built by DataLoader worker ``q mod K``, the order in which a
    DataLoader collects an iterable dataset's workers, so the batches arrive in step order whatever K.

    ``windows`` is an :class:`~avlib.data.dataset.AVWindows` over the training clips of a
    :class:`ShardedClips` (positions into ``windows.indices``); ``collate`` builds one batch.
    """

    def __init__(self, windows, clips: ShardedClips, batch_size: int, seed: int, total_steps: int,
                 start_step: int = 0, shard: tuple[int, int] = (0, 1), collate_batch=None):
        rank, world_size = shard
        assert 0 <= rank < world_size and batch_size % world_size == 0, "the batch must split evenly over ranks"
        self.windows, self.clips, self.seed = windows, clips, seed
        self.batch_size, self.total_steps, self.start_step = batch_size, total_steps, start_step
        self.rank, self.world_size, self.share = rank, world_size, batch_size // world_size
        self.num_items = len(windows.indices)
        if self.num_items < batch_size:
            raise ValueError(f"batch_size={batch_size} is larger than the {self.num_items} training samples")
        self.steps_per_epoch = self.num_items // batch_size
        self.collate = collate_batch or collate
        shard_of = clips.sample_shard[windows.indices]  # (N,) shard of each training position
        self.shards = np.unique(shard_of)  # training shards, in index order
        # positions of each shard's samples, in tar order (the index lists every shard's samples in tar order)
        self.members = {int(s): np.flatnonzero(shard_of == s) for s in self.shards}
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def epoch_sequence(self, epoch: int) -> np.ndarray:
        """int64 (N,) positions of every training sample in epoch ``epoch``'s shard order (all ranks):
        the training shards permuted by (seed, epoch), each shard's samples in tar order."""
        rng = np.random.default_rng(derive_seed(self.seed, SHARD_STREAM, epoch))
        order = self.shards[rng.permutation(len(self.shards))]
        return np.concatenate([self.members[int(s)] for s in order])  # (N,)

    def rank_share(self, epoch: int) -> np.ndarray:
        """int64 (N // W,) this rank's contiguous share of the epoch's sequence, shuffled within consecutive
        blocks of :data:`SHARD_SHUFFLE_BLOCK` samples (seeded by (seed, epoch, rank)): batches mix many
        samples while the reads stay inside a few neighbouring shards."""
        if self._cached is None or self._cached[0] != epoch:
            n = self.num_items // self.world_size
            share = self.epoch_sequence(epoch)[self.rank * n:(self.rank + 1) * n].copy()
            rng = np.random.default_rng(derive_seed(self.seed, SHARD_STREAM, epoch, 1 + self.rank))
            for begin in range(0, n, SHARD_SHUFFLE_BLOCK):
                block = share[begin:begin + SHARD_SHUFFLE_BLOCK]
                share[begin:begin + SHARD_SHUFFLE_BLOCK] = block[rng.permutation(len(block))]
            self._cached = (epoch, share)
        return self._cached[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(position, sample seed)`` items of step ``step``; slot numbers are global, as in
        :class:`StepBatches`, so a sample's augmentation depends on (seed, step, slot) only."""
        epoch, j = divmod(step, self.steps_per_epoch)
        positions = self.rank_share(epoch)[j * self.share:(j + 1) * self.share]
        first_slot = self.rank * self.share
        return [(int(p), derive_seed(self.seed, SAMPLE_STREAM, step, first_slot + k))
                for k, p in enumerate(positions)]

    def plan(self, worker: int = 0, num_workers: int = 1):
        """(step, items) of the batches worker ``worker`` of ``num_workers`` builds, in order."""
        for q, step in enumerate(range(self.start_step, self.total_steps)):
            if q % num_workers == worker:
                yield step, self.batch(step)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for _step, items in self.plan(worker, workers):
            yield self.collate([self.windows[item] for item in items])

