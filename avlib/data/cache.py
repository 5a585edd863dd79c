"""Decoded cache: decode every clip of a manifest once, then memory-map the arrays forever after.

Why: H.264/AAC decoding dominates the cost of small-model training on short clips; after the first
epoch nothing should be decoded again.  All clips are cut (or rejected if too short) to ONE fixed
length ``clip_seconds`` so they stack into two dense arrays that ``np.load(mmap_mode="r")`` reopens
instantly and that worker processes share through the page cache.

Layout of ``<cache_dir>/<key>/``::

    video.npy   uint8   (N, T, H, W, 3)   T = round(clip_seconds * fps), H = W = frame_size
    audio.npy   float32 (N, S)            S = round(clip_seconds * sample_rate)
    index.json  format version, key, decode params, the manifest's columns and class names, the
                kept rows (manifest row number, clip id, label, split, every raw column) and the
                skipped rows with their reasons.

Clip ``i`` is the span [start, start + clip_seconds) of its file, ``start`` from the manifest's
``start`` column (0 if absent); frame 0 and audio sample 0 are that start (see
:mod:`avlib.data.decode` for the exact conventions).

Clips of any length (``min_clip_seconds`` < ``clip_seconds``): real datasets hold clips shorter than
the length a run asks for (2-s clips against ``clip_seconds=3``), and a clip that is at least as long
as the training windows is as good a training example as a long one.  Such a cache keeps a clip of
``min_clip_seconds <= L < clip_seconds`` as it is: its arrays are zero-padded to the dense shape and
``index.json`` records each kept clip's valid ``frames`` and ``samples``
(:attr:`DecodedCache.frame_counts` / ``sample_counts``), which the windows
(:class:`avlib.data.dataset.AVWindows`) stay inside.  Only then does ``min_clip_seconds`` enter the
params (so the key); a fixed-length cache (the default) is stored exactly as before, which is why the
format version is unchanged: every clip of a cache without the counts is full length.

The ``key`` hashes the manifest rows (every column, the resolved paths and each file's size and
mtime), the decode parameters and :data:`CACHE_FORMAT_VERSION`, so any change rebuilds.  A build
writes into a sibling folder ``.partial-<key>`` that is renamed into place only when complete, so a
killed build never leaves a cache that looks complete; the partial folder records which rows are
decoded (``status.npy``), so building again resumes where the killed build stopped.  A lock file
makes a second process wait for (and then reuse) a build in progress.

Single-modality datasets (``modality="video"`` or ``"audio"``, see :mod:`avlib.data.decode`) keep
the same layout with an empty time axis for the missing modality: ``audio.npy`` (N, 0) or
``video.npy`` (N, 0, H, W, 3).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from avlib.data.decode import MODALITIES, DecodeError, decode_clip
from avlib.data.manifest import Manifest, ManifestError

__all__ = ["CACHE_FORMAT_VERSION", "DecodedCache", "cache_key"]

CACHE_FORMAT_VERSION = 1


def cache_key(manifest: Manifest, *, fps: float, frame_size: int, sample_rate: int,
              clip_seconds: float, modality: str = "both",
              min_clip_seconds: float | None = None) -> str:
    """sha256 (hex, 24 chars) of the manifest rows + media file stats, decode params, version."""
    rows = []
    for n, row, path in zip(manifest.row_numbers, manifest.rows, manifest.paths):
        try:
            st = path.stat()
            stat = [st.st_size, st.st_mtime_ns]
        except OSError:
            stat = None
        rows.append([n, sorted(row.items()), str(path), stat])
    payload = {"version": CACHE_FORMAT_VERSION, "rows": rows, "class_names": manifest.class_names,
               "params": _params(fps, frame_size, sample_rate, clip_seconds, modality,
                                 min_clip_seconds)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _params(fps, frame_size, sample_rate, clip_seconds, modality="both",
            min_clip_seconds=None) -> dict:
    params = {"fps": float(fps), "frame_size": int(frame_size), "sample_rate": int(sample_rate),
              "clip_seconds": float(clip_seconds)}
    if modality != "both":  # absent for audio-visual caches, so their keys stay what they were
        params["modality"] = modality
    if min_clip_seconds is not None and min_clip_seconds < clip_seconds:  # clips of any length
        params["min_clip_seconds"] = float(min_clip_seconds)
    return params


def _lengths(p: dict) -> tuple[int, int]:
    """(frames T, samples S) of one cached clip; 0 for the modality a single-modality cache lacks."""
    modality = p.get("modality", "both")
    T = int(round(p["clip_seconds"] * p["fps"])) if modality != "audio" else 0
    S = int(round(p["clip_seconds"] * p["sample_rate"])) if modality != "video" else 0
    return T, S


def _pool_context():
    """fork where available: it works from scripts and notebooks without a ``__main__`` guard, and
    the workers only use numpy and PyAV (never torch/OpenMP), so forking a threaded parent is safe.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _decode_row(job: tuple) -> tuple[int, np.ndarray | None, np.ndarray | None, str | None]:
    """Worker: decode one row to at most (T, H, W, 3) / (S,) (exactly, for a fixed-length cache),
    or return the reason it cannot."""
    i, path, start, end, p = job
    t0 = start or 0.0
    least = p.get("min_clip_seconds", p["clip_seconds"])
    name = "min_clip_seconds" if "min_clip_seconds" in p else "clip_seconds"
    if end is not None and end - t0 < least - 1e-6:
        return i, None, None, (f"too short: start..end spans {end - t0:.3f}s < {name}={least:g}")
    T, S = _lengths(p)
    stop = t0 + p["clip_seconds"] if end is None else min(end, t0 + p["clip_seconds"])
    try:
        clip = decode_clip(path, fps=p["fps"], frame_size=p["frame_size"],
                           sample_rate=p["sample_rate"], start=start,
                           end=stop, modality=p.get("modality", "both"))
    except DecodeError as exc:
        return i, None, None, exc.reason
    T_least = int(round(least * p["fps"])) if T else 0
    S_least = int(round(least * p["sample_rate"])) if S else 0
    if len(clip.frames) < T_least or len(clip.audio) < S_least:
        got = len(clip.frames) / p["fps"] if T else len(clip.audio) / p["sample_rate"]
        return i, None, None, f"too short: {got:.3f}s decoded < {name}={least:g}"
    return i, clip.frames[:T], clip.audio[:S], None


class DecodedCache:
    """Memory-mapped decoded clips of one manifest at fixed decode parameters.

    Attributes: ``video`` uint8 (N, T, H, W, 3), ``audio`` float32 (N, S) (both read-only
    memmaps), ``labels`` int64 (N,), ``class_names``, ``clip_ids``, ``splits``, ``row_numbers``
    (int64, 1-based manifest rows), ``skipped`` [(row, path, reason)], ``params`` and ``path``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index_file = self.path / "index.json"
        if not index_file.is_file():
            raise FileNotFoundError(f"{self.path}: not a complete decoded cache (no index.json)")
        self.index = json.loads(index_file.read_text())
        if self.index.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"{self.path}: cache format {self.index.get('format_version')} "
                             f"!= {CACHE_FORMAT_VERSION}; rebuild it")
        self.params: dict = self.index["params"]
        self.video = np.load(self.path / "video.npy", mmap_mode="r")  # (N, T, H, W, 3) uint8
        self.audio = np.load(self.path / "audio.npy", mmap_mode="r")  # (N, S) float32
        rows = self.index["rows"]
        self.class_names: list[str] = list(self.index["class_names"])
        self.labels = np.array([r["label_index"] for r in rows], dtype=np.int64)  # (N,)
        self.clip_ids: list[str] = [r["clip_id"] for r in rows]
        self.splits = np.array([r["split"] for r in rows], dtype=object)  # (N,)
        self.row_numbers = np.array([r["row"] for r in rows], dtype=np.int64)  # (N,)
        T, S = self.video.shape[1], self.audio.shape[1]
        # valid frames / samples of each clip (a clip shorter than clip_seconds is zero-padded)
        self.frame_counts = np.array([r.get("frames", T) for r in rows], dtype=np.int64)  # (N,)
        self.sample_counts = np.array([r.get("samples", S) for r in rows], dtype=np.int64)  # (N,)
        self.skipped: list[tuple[int, str, str]] = [tuple(s) for s in self.index["skipped"]]  # at decoding
        self.skipped_rows = list(self.skipped)  # open_dataset adds the rows validation left out
        if len(self.video) != len(rows) or len(self.audio) != len(rows):
            raise ValueError(f"{self.path}: arrays hold {len(self.video)}/{len(self.audio)} clips "
                             f"but index.json lists {len(rows)}")

    # -- convenience --------------------------------------------------------------------------
    fps = property(lambda self: self.params["fps"])
    frame_size = property(lambda self: self.params["frame_size"])
    sample_rate = property(lambda self: self.params["sample_rate"])
    clip_seconds = property(lambda self: self.params["clip_seconds"])

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"DecodedCache({len(self)} clips, video {tuple(self.video.shape)}, audio "
                f"{tuple(self.audio.shape)}, {len(self.class_names)} classes, "
                f"{len(self.skipped)} skipped, at {self.path})")

    #: what :mod:`avlib.data.sources` calls this kind of clip source (summary.json's ``data.source``)
    source = "cache"
    decoder = "pyav"  # the cache is decoded once, with PyAV (avlib.data.decode)

    def read(self, clip: int, frame_start: int, frames: int, sample_start: int, samples: int):
        """(frames (frames, H, W, 3) uint8, audio (<= samples,) float32): one window, sliced out of the
        arrays (the interface every clip source offers, :mod:`avlib.data.sources`)."""
        return (self.video[clip, frame_start:frame_start + frames],
                self.audio[clip, sample_start:sample_start + samples])

    def describe(self, clip: int) -> str:
        return f"{self.clip_ids[clip]} (cache {self.path})"

    def select(self, split: str) -> np.ndarray:
        """int64 indices of the clips in a split."""
        return np.flatnonzero(self.splits == split).astype(np.int64)

    def column(self, name: str) -> np.ndarray:
        """Any manifest column as an array: int64 if every value is an int, float64 if every value
        is a number, else str objects."""
        if name not in self.index["columns"]:
            raise KeyError(f"{self.path}: no column {name!r}; columns are {self.index['columns']}")
        raw = [r["columns"][name] for r in self.index["rows"]]
        for kind in (int, float):
            try:
                return np.array([kind(v) for v in raw], dtype=np.int64 if kind is int else
                                np.float64)
            except ValueError:
                pass
        return np.array(raw, dtype=object)

    # -- build ----------------------------------------------------------------------------------
    @classmethod
    def build(cls, manifest: Manifest, cache_dir: str | os.PathLike, *, fps: float,
              frame_size: int, sample_rate: int, clip_seconds: float, on_error: str = "raise",
              workers: int = 1, progress: bool = True, modality: str = "both",
              min_clip_seconds: float | None = None) -> "DecodedCache":
        """Open the cache for (manifest, params) under ``cache_dir``, decoding it first if absent.

        ``on_error="raise"``: a row that cannot be decoded or is shorter than ``clip_seconds``
        raises ManifestError naming the row and path.  ``"skip"``: it is left out and listed in
        ``skipped`` (also when reopening).  ``workers > 1`` decodes in a process pool.  An
        interrupted build resumes from its decoded rows.  ``modality``: "both" (default), or
        "video" / "audio" for datasets with only that stream (see the module docstring).
        ``min_clip_seconds`` (< ``clip_seconds``): keep clips at least this long as they are,
        zero-padded, their valid lengths in ``frame_counts`` / ``sample_counts``; None: every clip
        must last ``clip_seconds``.
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if clip_seconds <= 0 or fps <= 0 or frame_size <= 0 or sample_rate <= 0:
            raise ValueError("fps, frame_size, sample_rate and clip_seconds must be positive")
        if len(manifest) == 0:
            raise ManifestError(f"{manifest.source}: no rows to cache")
        if min_clip_seconds is not None and not 0 < min_clip_seconds:
            raise ValueError(f"min_clip_seconds must be positive, got {min_clip_seconds}")
        key = cache_key(manifest, fps=fps, frame_size=frame_size, sample_rate=sample_rate,
                        clip_seconds=clip_seconds, modality=modality,
                        min_clip_seconds=min_clip_seconds)
        final = Path(cache_dir) / key
        if not (final / "index.json").is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            lock_path = final.parent / f".partial-{key}.lock"
            with open(lock_path, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another process building it: wait, then reuse
                try:
                    if not (final / "index.json").is_file():
                        cls._build_into(final, key, manifest, _params(fps, frame_size, sample_rate,
                                                                      clip_seconds, modality,
                                                                      min_clip_seconds),
                                        on_error, workers, progress)
                except ManifestError:  # bad data, not an interruption: nothing to resume
                    shutil.rmtree(final.parent / f".partial-{key}", ignore_errors=True)
                    lock_path.unlink(missing_ok=True)
                    raise
                lock_path.unlink(missing_ok=True)
        cache = cls(final)
        if on_error == "raise" and cache.skipped:
            n, path, why = cache.skipped[0]
            raise ManifestError(f"{manifest.source}: row {n} (line {n + 1}), {path}: {why} "
                                f"(cache at {final} was built with on_error='skip')")
        return cache

    @staticmethod
    def _build_into(final: Path, key: str, manifest: Manifest, params: dict, on_error: str,
                    workers: int, progress: bool) -> None:
        """Decode into ``.partial-<key>`` (resuming what it already holds), compact, rename."""
        from tqdm.auto import tqdm

        partial = final.parent / f".partial-{key}"
        partial.mkdir(parents=True, exist_ok=True)
        N = len(manifest)
        T, S = _lengths(params)
        size = params["frame_size"]
        jobs = [(i, str(p), s, e, params) for i, (p, s, e) in
                enumerate(zip(manifest.paths, manifest.starts, manifest.ends))]
        t_start = time.perf_counter()

        def memmap(name: str, dtype, shape) -> np.ndarray:
            path = partial / f"{name}.npy"
            if path.is_file():  # resuming: same key, so same shapes
                return np.load(path, mmap_mode="r+")
            return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

        # status: 0 = not decoded yet, 1 = decoded, 2 = skipped (reason in skipped.json)
        video = memmap("video.full", np.uint8, (N, T, size, size, 3))
        audio = memmap("audio.full", np.float32, (N, S))
        status = memmap("status", np.int8, (N,))
        counts = memmap("counts", np.int64, (N, 2))  # valid (frames, samples) of each decoded row
        skipped_file = partial / "skipped.json"
        reasons = {int(i): why for i, why in json.loads(skipped_file.read_text()).items()} \
            if skipped_file.is_file() else {}

        def persist() -> None:  # data first, then the status that vouches for it
            video.flush()
            audio.flush()
            counts.flush()
            skipped_file.write_text(json.dumps(reasons))
            status.flush()

        todo = [jobs[i] for i in np.flatnonzero(status == 0)]
        pool = None
        if workers > 1 and len(todo) > 1:
            pool = _pool_context().Pool(min(workers, len(todo)))
            results = pool.imap(_decode_row, todo, chunksize=2)
        else:
            results = map(_decode_row, todo)
        flush_every = max(16, N // 50)
        try:
            for done, (i, frames, sound, why) in enumerate(
                    tqdm(results, total=N, initial=N - len(todo), disable=not progress,
                         desc="decoding clips", unit="clip"), start=1):
                if why is not None:
                    if on_error == "raise":
                        n = manifest.row_numbers[i]
                        raise ManifestError(f"{manifest.source}: row {n} (line {n + 1}), "
                                            f"{jobs[i][1]}: {why}")
                    reasons[i] = why
                    status[i] = 2
                else:
                    video[i, :len(frames)] = frames
                    video[i, len(frames):] = 0
                    audio[i, :len(sound)] = sound
                    audio[i, len(sound):] = 0
                    counts[i] = (len(frames), len(sound))
                    status[i] = 1
                if done % flush_every == 0:
                    persist()
        finally:
            if pool is not None:
                pool.terminate()
            persist()  # what was decoded before an interruption is kept for the next build

        kept = [int(i) for i in np.flatnonzero(status == 1)]
        skipped = [[manifest.row_numbers[i], jobs[i][1], reasons[i]] for i in
                   np.flatnonzero(status == 2)]
        K = len(kept)
        for name, arr in (("video", video), ("audio", audio)):
            if K == N:
                del arr
                os.replace(partial / f"{name}.full.npy", partial / f"{name}.npy")
            else:  # rows were skipped: copy the kept rows into a right-sized file
                out = np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+",
                                                dtype=arr.dtype, shape=(K, *arr.shape[1:]))
                for a in range(0, K, 64):
                    out[a : a + 64] = arr[kept[a : a + 64]]
                out.flush()
                del out, arr
                (partial / f"{name}.full.npy").unlink()
        variable = "min_clip_seconds" in params
        lengths = {i: (int(counts[i, 0]), int(counts[i, 1])) for i in kept}
        del video, audio, status, counts
        (partial / "status.npy").unlink()
        (partial / "counts.npy").unlink()
        skipped_file.unlink()

        lookup = {c: j for j, c in enumerate(manifest.class_names)}
        ids = manifest.clip_ids
        index = {
            "format_version": CACHE_FORMAT_VERSION, "key": key, "params": params,
            "manifest": str(manifest.source), "columns": manifest.columns,
            "class_names": manifest.class_names,
            "rows": [{"row": manifest.row_numbers[i], "clip_id": ids[i],
                      "label": manifest.rows[i]["label"],
                      "label_index": lookup[manifest.rows[i]["label"]],
                      "split": manifest.rows[i]["split"], "columns": manifest.rows[i],
                      **({"frames": lengths[i][0], "samples": lengths[i][1]} if variable else {})}
                     for i in kept],
            "skipped": skipped,
            "build_seconds": round(time.perf_counter() - t_start, 2),
        }
        (partial / "index.json").write_text(json.dumps(index, indent=1))
        os.rename(partial, final)  # atomic; the lock in build() keeps other builders out
        if skipped and progress:
            print(f"decoded cache: kept {K} of {N} rows, skipped {len(skipped)}: "
                  + "; ".join(f"row {n}: {why}" for n, _, why in skipped[:5])
                  + (" ..." if len(skipped) > 5 else ""))
