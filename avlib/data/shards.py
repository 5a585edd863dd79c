"""A manifest's corpus as WebDataset tar shards, with an index for streaming and for random reads.

Why shards: training on several nodes reads the corpus as a few hundred large sequential files
instead of 200k small ones (issue 30, item 2), and a tar of ``<key>.mp4`` + ``<key>.json`` members
is what the WebDataset readers (``webdataset`` on PyPI) stream, split by rank and by worker.  The
index beside the shards lets evaluation read ONE sample without scanning a tar: each sample's
``.mp4`` member's data offset and size are recorded, so a read is one seek and one read
(:func:`read_sample_bytes`).

Command line::

    python -m avlib.data.shards MANIFEST OUT_DIR [--root DIR] [--samples-per-shard 256]
        [--min-seconds 1.5] [--short-side N --fps F --keyframe-interval-s S]
        [--on-error skip|raise] [--seed 0] [--workers 2]

What it does, in order:

1. Validation is :func:`avlib.data.manifest.validate_manifest` (the rules and messages a training
   run uses); rows it rejects, and files that fail while being re-encoded, are the index's
   ``skipped`` (``[row, path, reason]``) and ONE summary line is printed, the line
   :func:`avlib.data.dataset.open_dataset` prints.  ``workers`` > 1 validates chunks of rows in
   parallel, each chunk with that same function.
2. Each split's kept rows are put in a seeded permutation (``seed``) and cut into shards of
   ``samples_per_shard`` (the last of a split may hold fewer), so the classes of a manifest sorted
   by label mix in every shard and a reader that takes whole shards per rank still sees every class.
   Shards are per split (``train-000000.tar``, ``val-000000.tar``, ...): training reads only its own.
3. Media: copy mode stores the file's bytes as they are (a row with ``start``/``end`` keeps the
   whole file and records the span).  Re-encode mode (``reencode={"short_side", "fps",
   "keyframe_interval_s"}``) writes H.264 yuv420p + AAC of the row's span only, the short side
   scaled to ``short_side`` (aspect kept, even sizes), ``fps`` by sample-and-hold (output frame k
   is the latest source frame at or before ``start + k / fps``, the convention of
   :mod:`avlib.data.decode`), a keyframe exactly every ``keyframe_interval_s`` (what an approximate
   seek lands on), the audio at its own rate and channels.  That is how a user cuts a corpus of
   full-size video down for training at 112-128 px (``bytes_in`` / ``bytes_out`` in the index).
4. Every tar is read back with :mod:`tarfile` to record each ``.mp4`` member's ``offset_data``;
   then ``index.json`` is written LAST and atomically: a killed writer leaves no index, so
   :func:`read_index` refuses the folder instead of serving a partial corpus.  A re-run removes
   the old index first, then the old shards, and writes everything anew.

Index layout (``SHARD_FORMAT`` / ``SHARD_FORMAT_VERSION``; readers may rely on these keys, new ones
may be added)::

    {"format", "version", "source", "root", "class_names", "columns", "encoding", "seed",
     "samples_per_shard", "bytes_in", "bytes_out", "shards": [{"name", "split", "samples", "bytes"}],
     "counts": {split: n}, "samples": [{"key", "shard", "offset", "size", "clip_id", "label",
     "label_index", "split", "group", "duration_s", "start_s", "end_s", "row"}], "skipped"}

``samples`` are in shard order, and in tar order within a shard; a sample's key is its position in
that list, 8 digits (WebDataset splits a member name at its first dot, so keys hold none).
``duration_s`` is the seconds where both streams exist: validation's span (``start..end`` cut to
the file) in copy mode, the encoded span in re-encode mode (then ``start_s`` 0, ``end_s`` None).
``bytes_in`` sums the source files of the samples written (a whole file even where only a span is
re-encoded), ``bytes_out`` the media bytes stored for them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tarfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from avlib.data.cache import _pool_context
from avlib.data.manifest import (VALID_SPLITS, Manifest, ManifestError, ValidationReport, load_manifest,
                                 no_rows_left, skip_reasons, skipped_rows_explanation, validate_manifest)
from avlib.data.window import UNINDEXED_FORMATS, UNINDEXED_SEEK_MARGIN_S, decoded_after_seek

__all__ = ["SHARD_FORMAT", "SHARD_FORMAT_VERSION", "ShardError", "write_shards", "read_index",
           "read_sample_bytes", "main", "INDEX_NAME", "REENCODE_KEYS"]

SHARD_FORMAT = "avlib-shards"
SHARD_FORMAT_VERSION = 1
INDEX_NAME = "index.json"
KEY_DIGITS = 8  # sample keys "00000000" .. "99999999"
#: keys of ``write_shards(reencode=...)``: the three a user must choose, and the optional x264 quality
REENCODE_KEYS = ("short_side", "fps", "keyframe_interval_s")
REENCODE_OPTIONAL = {"crf": 23}  # libx264's own default quality
TAR_MTIME = 0  # fixed member times: the same corpus and settings give byte-identical shards
SHARD_NAME = re.compile(r"^(train|val|test)-\d{6}\.tar$")
# container names FFmpeg gives MP4-family files; copy mode stores members named .mp4
MP4_FORMATS = ("mp4", "mov")
# the index keys read_index needs, whatever else a later version adds
INDEX_KEYS = ("format", "version", "class_names", "encoding", "shards", "counts", "samples", "skipped")


class ShardError(ValueError):
    """A shard folder (or a request to write one) is unusable; the message names the file or parameter."""


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------
def _check_reencode(reencode: dict | None) -> dict | None:
    """The re-encode settings with defaults filled, or a ShardError naming the bad key."""
    if reencode is None:
        return None
    if not isinstance(reencode, dict):
        raise ShardError(f"reencode must be a dict with keys {list(REENCODE_KEYS)} or None, got {reencode!r}")
    unknown = sorted(set(reencode) - set(REENCODE_KEYS) - set(REENCODE_OPTIONAL))
    missing = [k for k in REENCODE_KEYS if k not in reencode]
    if unknown or missing:
        raise ShardError(f"reencode: unknown key(s) {unknown}, missing key(s) {missing}; expected "
                         f"{list(REENCODE_KEYS)} (optional: {sorted(REENCODE_OPTIONAL)})")
    settings = {**REENCODE_OPTIONAL, **reencode}
    short = settings["short_side"]
    if isinstance(short, bool) or not isinstance(short, (int, np.integer)) or short < 16 or short % 2:
        raise ShardError(f"reencode short_side={short!r}: expected an even number of pixels >= 16 "
                         "(H.264 yuv420p needs even sizes)")
    fps = settings["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 240:
        raise ShardError(f"reencode fps={fps!r}: expected frames per second in (0, 240]")
    interval = settings["keyframe_interval_s"]
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise ShardError(f"reencode keyframe_interval_s={interval!r}: expected seconds > 0")
    crf = settings["crf"]
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ShardError(f"reencode crf={crf!r}: expected an int in [0, 51] (x264's quality scale)")
    return {"short_side": int(short), "fps": float(fps), "keyframe_interval_s": float(interval),
            "crf": int(crf)}


def _check_parameters(samples_per_shard, min_duration_s, on_error, workers) -> None:
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, (int, np.integer)) \
            or samples_per_shard < 1:
        raise ShardError(f"samples_per_shard={samples_per_shard!r}: expected an int >= 1")
    if isinstance(min_duration_s, bool) or not isinstance(min_duration_s, (int, float)) or min_duration_s < 0:
        raise ShardError(f"min_duration_s={min_duration_s!r}: expected seconds >= 0")
    if on_error not in ("skip", "raise"):
        raise ShardError(f"on_error={on_error!r}: expected 'skip' or 'raise'")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ShardError(f"workers={workers!r}: expected an int >= 1")


# ----------------------------------------------------------------------------------------------
# Validation (validate_manifest, in chunks when parallel)
# ----------------------------------------------------------------------------------------------
def _validate_chunk(job: tuple) -> ValidationReport:
    """Worker: validate_manifest on one chunk of rows (its report; raises under on_error='raise')."""
    chunk, min_duration_s, on_error = job
    return validate_manifest(chunk, min_duration_s=min_duration_s, on_error=on_error, verbose=False,
                             length_parameter="min_duration_s (--min-seconds)")[1]


def _validate(manifest: Manifest, min_duration_s: float, on_error: str, workers: int) -> ValidationReport:
    """validate_manifest's report for the whole manifest; ``workers`` > 1 splits the rows into
    contiguous chunks (results taken in row order, so under on_error='raise' the first bad row of
    the manifest is the one reported, as serially)."""
    n = len(manifest)
    if workers <= 1 or n < 2:
        return _validate_chunk((manifest, min_duration_s, on_error))
    size = max(1, min(64, math.ceil(n / (4 * workers))))
    jobs = [(manifest.subset(range(i, min(n, i + size))), min_duration_s, on_error) for i in range(0, n, size)]
    problems, durations, kept = [], [], 0
    with _pool_context().Pool(min(workers, len(jobs))) as pool:
        for part in pool.imap(_validate_chunk, jobs):
            problems += part.problems
            durations += part.durations
            kept += part.kept
    return ValidationReport(checked=n, kept=kept, problems=problems, durations=durations)


def _mp4_problem(path: Path) -> str | None:
    """Copy mode stores members named ``.mp4``: the reason a file is not an MP4-family container."""
    import av  # local: only the copy mode's check opens containers here

    try:
        with av.open(str(path)) as container:
            names = container.format.name.split(",")
    except av.FFmpegError as exc:
        return f"not a readable media file ({exc})"
    if not any(name in MP4_FORMATS for name in names):
        return (f"not an MP4 container ({container.format.name}): copy mode stores MP4 bytes; "
                "re-encode it (--short-side, --fps, --keyframe-interval-s)")
    return None


# ----------------------------------------------------------------------------------------------
# Re-encoding
# ----------------------------------------------------------------------------------------------
def _audio_planes(frame) -> np.ndarray:
    """float32 (channels, samples) of one decoded audio frame, whatever its sample format."""
    data = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T  # (channels, n)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return data.astype(np.float32)


#: the layout an unordered channel count gets (AAC refuses "N channels"; it encodes at most 8)
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _encodable_layout(layout) -> tuple[str, int]:
    """(layout name, channels) the AAC encoder takes for a source's ``layout``.

    A PCM track in AVI, WAV or Matroska without a channel mask has an UNORDERED layout ("1 channels",
    "2 channels"), which the AAC encoder refuses (``avcodec_open2`` returned EINVAL, a skipped row);
    it gets the usual layout of that many channels."""
    channels = len(layout.channels)
    if layout.name.endswith(" channels"):
        if channels not in DEFAULT_LAYOUTS:
            raise ValueError(f"an unordered layout of {channels} audio channels (up to 8 can be re-encoded)")
        return DEFAULT_LAYOUTS[channels], channels
    return layout.name, channels


def _output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` and the aspect kept, both even."""
    scale = short_side / min(width, height)
    return (max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2)))


def _reencode_file(path: Path, start: float, seconds: float, settings: dict, target: Path) -> float:
    """Write ``[start, start + seconds)`` of ``path`` to ``target`` (H.264 yuv420p + AAC, see the
    module docstring); return the seconds encoded (a whole number of output frames).

    Raises av.FFmpegError or ValueError on a file that cannot be re-encoded."""
    import av

    fps = settings["fps"]
    rate = Fraction(fps).limit_denominator(1001 * 1000)
    n_frames = max(1, int(math.floor(seconds * fps + 1e-6)))  # never past the validated span
    span = n_frames / fps
    targets = start + np.arange(n_frames) / fps  # (T,) output frame times in source seconds
    gop = max(1, int(round(settings["keyframe_interval_s"] * fps)))
    with av.open(str(path)) as source, av.open(str(target), "w", format="mp4",
                                               options={"movflags": "+faststart"}) as out:
        video_in = source.streams.video[0]
        audio_in = source.streams.audio[0]
        width, height = _output_size(video_in.codec_context.width, video_in.codec_context.height,
                                     settings["short_side"])
        video_out = out.add_stream("libx264", rate=rate, options={
            "crf": str(settings["crf"]), "preset": "fast", "threads": "1",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"})
        video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
        video_out.codec_context.gop_size = gop
        sample_rate = audio_in.codec_context.sample_rate
        layout, channels = _encodable_layout(audio_in.codec_context.layout)
        audio_out = out.add_stream("aac", rate=sample_rate, layout=layout)

        unindexed = source.format.name in UNINDEXED_FORMATS  # MPEG-TS/PS: seek a GOP early (avlib.data.window)
        written, held, held_scaled = 0, None, None

        def emit(frame) -> None:
            nonlocal written, held_scaled
            if held_scaled is None or held_scaled[0] is not frame:  # scale each source frame once
                held_scaled = (frame, frame.reformat(width=width, height=height, format="yuv420p",
                                                     interpolation="BILINEAR"))
            picture = held_scaled[1]
            picture.pts, picture.time_base = written, 1 / rate
            out.mux(video_out.encode(picture))
            written += 1

        # where a seek finds no keyframe before the end (an MPEG-TS with a long GOP), nothing decodes and
        # nothing was written: decode again from the start
        first_seek_s = max(0.0, start - (UNINDEXED_SEEK_MARGIN_S if unindexed else 0.0))
        for seek_s in ((first_seek_s, 0.0) if start > 0 else (0.0,)):
            if seek_s > 0:
                source.seek(int(seek_s / video_in.time_base), stream=video_in, backward=True)
            else:
                source.seek(0)
            for frame in source.decode(video_in):
                if frame.time is None:
                    raise ValueError("a video frame without a timestamp")
                while written < n_frames and targets[written] < frame.time - 1e-6:
                    emit(held if held is not None else frame)  # before the first frame: the first
                held = frame
                if written >= n_frames:
                    break
            if held is not None:
                break
        if held is None:
            raise ValueError("no video frame decoded")
        while written < n_frames:  # the last source frame holds to the span's end
            emit(held)
        out.mux(video_out.encode())

        total = int(round(span * sample_rate))
        sound = np.zeros((channels, total), np.float32)  # (C, S): sample n is time start + n / rate
        audio_from = max(0.0, start - 0.5)
        source.seek(int(audio_from / audio_in.time_base), stream=audio_in, backward=True)
        for frame in decoded_after_seek(source, audio_in, cut=audio_from > 0):
            if frame.time is None:
                raise ValueError("an audio frame without a timestamp")
            first = int(round((frame.time - start) * sample_rate))
            if first >= total:
                break
            data = _audio_planes(frame)  # (C, n)
            lo, hi = max(0, -first), min(data.shape[1], total - first)
            if hi > lo:
                sound[:, first + lo:first + hi] = data[:, lo:hi]
        block = av.AudioFrame.from_ndarray(sound, format="fltp", layout=layout)
        block.sample_rate, block.pts = sample_rate, 0
        out.mux(audio_out.encode(block))
        out.mux(audio_out.encode())
    return span


def _reencode_job(job: tuple) -> tuple[int, bytes | None, str | None, float]:
    """Worker: (position, encoded bytes or None, reason it failed or None, seconds encoded)."""
    import av

    position, path, start, seconds, settings, scratch = job
    target = Path(scratch) / f".tmp-reencode-{os.getpid()}-{position}.mp4"
    try:
        span = _reencode_file(Path(path), start, seconds, settings, target)
        return position, target.read_bytes(), None, span
    except (av.FFmpegError, ValueError, OSError) as exc:
        return position, None, f"re-encode failed: {type(exc).__name__}: {exc}", 0.0
    finally:
        target.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _clean_out_dir(out_dir: Path) -> None:
    """Make ``out_dir`` ready for a fresh write: the index goes first (so a run killed from here on
    leaves a folder read_index refuses), then every shard and temporary file a writer leaves."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / INDEX_NAME
    if index.is_file():
        try:
            previous = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or previous.get("format") != SHARD_FORMAT:
            raise ShardError(f"{index}: exists and is not an {SHARD_FORMAT} index; refusing to replace "
                             "another tool's files: choose another OUT_DIR")
        index.unlink()
    for entry in out_dir.iterdir():
        if SHARD_NAME.match(entry.name) or entry.name.startswith(".tmp-"):
            entry.unlink()


def _member_offsets(tar_path: Path) -> dict[str, tuple[int, int]]:
    """{member name: (byte offset of its data, size)} read back from a written tar."""
    with tarfile.open(tar_path, "r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers()}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _index_text(index: dict) -> str:
    """The index as JSON with one shard, sample or skipped row per line (readable, grep-able, and
    a fraction of the size of an indented dump for a corpus of 200k samples)."""
    parts = []
    for key, value in index.items():
        if key in ("shards", "samples", "skipped") and value:
            body = ",\n".join("  " + json.dumps(item) for item in value)
            parts.append(f" {json.dumps(key)}: [\n{body}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


class _SplitWriter:
    """Rolls the tars of one split: ``samples_per_shard`` samples each, written under a temporary
    name and renamed when complete; records each shard and its samples' offsets in the index."""

    def __init__(self, out_dir: Path, split: str, samples_per_shard: int, shards: list, samples: list):
        self.out_dir, self.split, self.per_shard = out_dir, split, samples_per_shard
        self.shards, self.samples = shards, samples  # the index's lists, appended to
        self.writer, self.pending, self.count = None, [], 0

    def write(self, media: bytes, record: dict, columns: dict) -> None:
        import webdataset

        if self.writer is None:
            self.name = f"{self.split}-{self.count:06d}.tar"
            self.tmp = self.out_dir / f".tmp-{self.name}"
            self.writer = webdataset.TarWriter(str(self.tmp), user="avlib", group="avlib",
                                               encoder=False, mtime=TAR_MTIME)
        key = f"{len(self.samples) + len(self.pending):0{KEY_DIGITS}d}"
        if len(key) > KEY_DIGITS:
            raise ShardError(f"more than {10 ** KEY_DIGITS - 1} samples: keys have {KEY_DIGITS} digits")
        meta = {**{k: record[k] for k in ("clip_id", "label", "label_index", "split", "group", "duration_s",
                                          "start_s", "end_s", "row")}, "columns": columns}
        self.writer.write({"__key__": key, "mp4": media,
                           "json": json.dumps(meta, sort_keys=True).encode("utf-8")})
        self.pending.append({"key": key, "shard": None, "offset": None, "size": len(media), **record})
        if len(self.pending) == self.per_shard:
            self.close()

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        final = self.out_dir / self.name
        os.replace(self.tmp, final)
        offsets = _member_offsets(final)
        shard = len(self.shards)
        for sample in self.pending:
            offset, size = offsets[f"{sample['key']}.mp4"]
            if size != sample["size"]:
                raise ShardError(f"{final}: member {sample['key']}.mp4 holds {size} bytes, {sample['size']} written")
            sample["shard"], sample["offset"] = shard, offset
        self.shards.append({"name": self.name, "split": self.split, "samples": len(self.pending),
                            "bytes": final.stat().st_size})
        self.samples += self.pending
        self.writer, self.pending, self.count = None, [], self.count + 1


def write_shards(manifest, out_dir, *, root=None, samples_per_shard: int = 256, min_duration_s: float = 1.5,
                 on_error: str = "skip", reencode: dict | None = None, seed: int = 0,
                 workers: int = 1, progress: bool = True) -> dict:
    """Validate ``manifest`` (a CSV path, or a loaded :class:`Manifest` when ``root`` is None) and
    write its usable rows as WebDataset shards plus ``out_dir/index.json``; return the index.

    ``min_duration_s``: the shortest row kept (a training run keeps rows as long as its windows);
    ``on_error``: ``"skip"`` reports bad rows, ``"raise"`` stops at the first with ManifestError;
    ``reencode``: None copies the files, else ``{"short_side", "fps", "keyframe_interval_s"}`` (and
    optionally ``"crf"``) re-encodes each row's span; ``seed``: the permutation within each split;
    ``workers``: processes for validation and re-encoding.  See the module docstring for the layout.
    """
    from tqdm.auto import tqdm

    _check_parameters(samples_per_shard, min_duration_s, on_error, workers)
    settings = _check_reencode(reencode)
    if isinstance(manifest, Manifest):
        if root is not None:
            raise ShardError("root: applies to a manifest given as a path; this Manifest already has "
                             f"root {manifest.root}")
    else:
        manifest = load_manifest(manifest, root=root)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ShardError(f"OUT_DIR {out_dir} exists and is not a folder")

    report = _validate(manifest, float(min_duration_s), on_error, int(workers))
    problems = list(report.problems)
    bad_rows = {row for row, _, _ in problems}
    kept = [i for i, n in enumerate(manifest.row_numbers) if n not in bad_rows]
    if settings is None:  # the members are named .mp4: other containers need the re-encode
        for i in list(kept):
            why = _mp4_problem(manifest.paths[i])
            if why is None:
                continue
            if on_error == "raise":
                n = manifest.row_numbers[i]
                raise ManifestError(f"{manifest.source}: row {n} (line {n + 1}), {manifest.paths[i]}: {why}")
            problems.append((manifest.row_numbers[i], str(manifest.paths[i]), why))
            kept.remove(i)
    parameter = "min_duration_s (--min-seconds)"
    if not kept:
        raise no_rows_left(manifest.source, ValidationReport(report.checked, 0, sorted(problems), report.durations),
                           min_duration_s, parameter)

    labels = manifest.label_index  # (N,) int64 index into class_names
    order = []  # manifest positions in write order: per split, a seeded permutation
    for code, split in enumerate(VALID_SPLITS):
        members = np.array([i for i in kept if manifest.rows[i]["split"] == split], dtype=np.int64)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), code]))
        order += [(split, int(i)) for i in members[rng.permutation(len(members))]]  # (n_split,) shuffled

    _clean_out_dir(out_dir)
    shards, samples, bytes_in = [], [], 0
    ids, paths = manifest.clip_ids, manifest.paths
    if settings is None:
        def media_stream():
            for _, i in order:
                yield i, paths[i].read_bytes(), None, report.durations[i]
    else:
        jobs = [(i, str(paths[i]), manifest.starts[i] or 0.0, float(report.durations[i]), settings,
                 str(out_dir)) for _, i in order]

        def media_stream():
            if workers > 1 and len(jobs) > 1:
                with _pool_context().Pool(min(int(workers), len(jobs))) as pool:
                    yield from pool.imap(_reencode_job, jobs)
            else:
                yield from map(_reencode_job, jobs)

    writers = {split: _SplitWriter(out_dir, split, int(samples_per_shard), shards, samples)
               for split in VALID_SPLITS}
    split_of = dict((i, split) for split, i in order)
    bar = tqdm(total=len(order), disable=not progress, desc="writing shards", unit="clip")
    current = None
    for i, media, failure, seconds in media_stream():
        bar.update()
        split = split_of[i]
        if split != current and current is not None:
            writers[current].close()  # splits come one after the other: finish the last one's tar
        current = split
        n, row = manifest.row_numbers[i], manifest.rows[i]
        if failure is not None:
            if on_error == "raise":
                bar.close()
                raise ManifestError(f"{manifest.source}: row {n} (line {n + 1}), {paths[i]}: {failure}")
            problems.append((n, str(paths[i]), failure))
            continue
        start = manifest.starts[i]
        record = {"clip_id": ids[i], "label": row["label"], "label_index": int(labels[i]), "split": split,
                  "group": row.get("group", ""), "duration_s": float(seconds),
                  "start_s": float(start or 0.0) if settings is None else 0.0,
                  "end_s": manifest.ends[i] if settings is None else None, "row": n}
        writers[split].write(media, record, dict(row))
        bytes_in += paths[i].stat().st_size
    bar.close()
    if current is not None:
        writers[current].close()
    if not samples:
        raise no_rows_left(manifest.source, ValidationReport(report.checked, 0, sorted(problems), report.durations),
                           min_duration_s, parameter)

    problems.sort()
    rows = len(manifest)
    print(f"dataset: {rows} manifest rows, {len(samples)} clips used, {len(problems)} skipped"
          f"{skip_reasons(problems)}")
    if 2 * len(problems) > rows:
        print("warning: " + skipped_rows_explanation(manifest.source, ValidationReport(
            rows, len(samples), problems, report.durations), min_duration_s, parameter))
    encoding = {"mode": "copy"} if settings is None else {"mode": "reencode", **settings}
    index = {
        "format": SHARD_FORMAT, "version": SHARD_FORMAT_VERSION, "source": str(manifest.source),
        "root": str(manifest.root), "class_names": list(manifest.class_names), "columns": list(manifest.columns),
        "encoding": encoding, "seed": int(seed), "samples_per_shard": int(samples_per_shard),
        "bytes_in": int(bytes_in), "bytes_out": int(sum(s["size"] for s in samples)),
        "shards": shards, "counts": {split: sum(s["split"] == split for s in samples) for split in VALID_SPLITS},
        "samples": samples, "skipped": [[row, path, why] for row, path, why in problems],
    }
    _atomic_write(out_dir / INDEX_NAME, _index_text(index))
    return index


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def read_index(out_dir) -> dict:
    """``out_dir/index.json``, checked: its format and version, every shard present with the size
    recorded, and the sample counts consistent.  A folder without an index (a writer killed before
    it finished, or not a shard folder) is refused with a ShardError naming the file."""
    out_dir = Path(out_dir).expanduser()
    if not out_dir.is_dir():
        raise ShardError(f"shard folder {out_dir} not found (expected the OUT_DIR of python -m avlib.data.shards)")
    path = out_dir / INDEX_NAME
    if not path.is_file():
        tars = sorted(p.name for p in out_dir.glob("*.tar"))
        found = (f"it holds {len(tars)} .tar file(s) but no index: the writer did not finish (the index "
                 "is written last)" if tars else "it holds no shards")
        raise ShardError(f"{path} not found: {found}; run python -m avlib.data.shards MANIFEST {out_dir} again")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ShardError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != SHARD_FORMAT:
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ShardError(f"{path}: format {got!r}, expected {SHARD_FORMAT!r}: not an avlib shard index")
    if index.get("version") != SHARD_FORMAT_VERSION:
        raise ShardError(f"{path}: version {index.get('version')!r}, this avlib reads version "
                         f"{SHARD_FORMAT_VERSION}: rewrite the shards with this avlib")
    missing = [k for k in INDEX_KEYS if k not in index]
    if missing:
        raise ShardError(f"{path}: missing key(s) {missing}")
    for shard in index["shards"]:
        file = out_dir / shard["name"]
        if not file.is_file():
            raise ShardError(f"{path}: shard {file} is missing")
        size = file.stat().st_size
        if size != shard["bytes"]:
            raise ShardError(f"{path}: shard {file} holds {size} bytes, the index recorded {shard['bytes']}: "
                             "it was changed or cut off after writing")
    per_shard = [0] * len(index["shards"])
    for sample in index["samples"]:
        if not 0 <= sample["shard"] < len(per_shard):
            raise ShardError(f"{path}: sample {sample['key']} names shard {sample['shard']}, "
                             f"the index has {len(per_shard)}")
        per_shard[sample["shard"]] += 1
    recorded = [shard["samples"] for shard in index["shards"]]
    if per_shard != recorded:
        raise ShardError(f"{path}: samples per shard {per_shard} differ from the shards' counts {recorded}")
    return index


def read_sample_bytes(out_dir, index: dict, i: int) -> bytes:
    """Sample ``i``'s media bytes (the ``.mp4`` member), read at its recorded offset: one seek and one
    read, without scanning the tar."""
    samples = index["samples"]
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(samples):
        raise IndexError(f"sample {i!r}: expected an int in [0, {len(samples)})")
    sample = samples[int(i)]
    path = Path(out_dir).expanduser() / index["shards"][sample["shard"]]["name"]
    with open(path, "rb") as handle:
        handle.seek(sample["offset"])
        data = handle.read(sample["size"])
    if len(data) != sample["size"]:
        raise ShardError(f"{path}: sample {sample['key']} should hold {sample['size']} bytes at offset "
                         f"{sample['offset']}, the file ends after {len(data)}")
    return data


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.data.shards", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="manifest CSV (path, label, split, ...)")
    parser.add_argument("out_dir", help="folder for the shards and index.json (replaced if it holds shards)")
    parser.add_argument("--root", help="folder relative paths resolve against (default: the manifest's folder)")
    parser.add_argument("--samples-per-shard", type=int, default=256)
    parser.add_argument("--min-seconds", type=float, default=1.5, help="shortest row kept (seconds)")
    parser.add_argument("--short-side", type=int, help="re-encode at this short side (pixels, even)")
    parser.add_argument("--fps", type=float, help="re-encode at this frame rate")
    parser.add_argument("--keyframe-interval-s", type=float, help="re-encode with a keyframe every S seconds")
    parser.add_argument("--crf", type=int, default=REENCODE_OPTIONAL["crf"], help="re-encode quality (x264 CRF)")
    parser.add_argument("--on-error", choices=("skip", "raise"), default="skip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    chosen = {"--short-side": args.short_side, "--fps": args.fps, "--keyframe-interval-s": args.keyframe_interval_s}
    given = [name for name, value in chosen.items() if value is not None]
    if given and len(given) < len(chosen):
        parser.error(f"re-encoding needs all of {list(chosen)}; missing {[n for n in chosen if n not in given]}")
    reencode = None if not given else {"short_side": args.short_side, "fps": args.fps,
                                       "keyframe_interval_s": args.keyframe_interval_s, "crf": args.crf}
    try:
        index = write_shards(args.manifest, args.out_dir, root=args.root, samples_per_shard=args.samples_per_shard,
                             min_duration_s=args.min_seconds, on_error=args.on_error, reencode=reencode,
                             seed=args.seed, workers=args.workers)
    except (ManifestError, ShardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{split} {n}" for split, n in index["counts"].items())
    print(f"wrote {len(index['shards'])} shards ({counts} samples) and {INDEX_NAME} to {args.out_dir}: "
          f"{index['bytes_in'] / 1e6:.1f} MB of media in, {index['bytes_out'] / 1e6:.1f} MB stored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
