"""CSV manifests: which media files make a dataset, their labels and splits.

Why a manifest: the embedded synthetic dataset and a user's own videos are described the same way,
so everything after this module (decoding, cache, windows, training) is dataset-agnostic.  The
format is documented in ``data_manifests/README.md``; in short, a CSV with a header and

* required columns ``path``, ``label``, ``split`` (``train`` / ``val`` / ``test``);
* optional columns, e.g. ``clip_id``, ``start`` / ``end`` (seconds, to cut a clip out of a longer
  file), ``fold``, ``group``, ``duration``; any extra column is kept and readable via
  :meth:`Manifest.column` (the synthetic dataset adds ``corrupted`` and ``audio_source``).

Paths resolve relative to the manifest's folder, or to ``root`` when one is given (point ``root``
at your own copy of a dataset); absolute paths are used as they are.

Row numbers: data rows are numbered from 1 (the header is not a row), so row ``r`` is on line
``r + 1`` of the file.  Errors name both.

pandas is deliberately not used (not a dependency): the csv module is plenty for this.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avlib.data.decode import DecodeError, probe_media

__all__ = ["ManifestError", "Manifest", "ValidationReport", "load_manifest", "validate_manifest", "no_rows_left",
           "REQUIRED_COLUMNS", "VALID_SPLITS"]

REQUIRED_COLUMNS = ("path", "label", "split")
VALID_SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest (or a row's media) is unusable; the message names the file, row and problem.

    ``skipped_rows``: (row, resolved path, reason) of every row left out, when the error is that none
    is left (:func:`no_rows_left`); a run writes them to its ``skipped_clips.csv`` before it stops."""

    def __init__(self, message: str, skipped_rows=()):
        super().__init__(message)
        self.skipped_rows = sorted(skipped_rows)


@dataclass
class Manifest:
    """Rows of a manifest.  ``rows`` are dicts of the raw CSV strings; ``row_numbers`` are the
    rows' 1-based numbers in the ORIGINAL file (kept through :meth:`select` and validation).

    ``class_names`` is fixed at load time from the whole file and kept by :meth:`select`, so label
    indices mean the same thing in every split."""

    source: Path  # the manifest file
    root: Path  # folder relative paths resolve against
    columns: list[str]
    rows: list[dict[str, str]]
    row_numbers: list[int]
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def paths(self) -> list[Path]:
        """Absolute media paths."""
        return [_resolve(self.root, r["path"]) for r in self.rows]

    @property
    def labels(self) -> list[str]:
        return [r["label"] for r in self.rows]

    @property
    def splits(self) -> list[str]:
        return [r["split"] for r in self.rows]

    @property
    def label_index(self) -> np.ndarray:
        """int64 (N,) index of each row's label in ``class_names``."""
        lookup = {name: i for i, name in enumerate(self.class_names)}
        return np.array([lookup[r["label"]] for r in self.rows], dtype=np.int64)

    @property
    def clip_ids(self) -> list[str]:
        """``clip_id`` column if present, else the path as written in the manifest (+ @start)."""
        if "clip_id" in self.columns:
            return [r["clip_id"] for r in self.rows]
        return [r["path"] + (f"@{r['start']}" if r.get("start") else "") for r in self.rows]

    @property
    def starts(self) -> list[float | None]:
        return [_opt_float(r.get("start")) for r in self.rows]

    @property
    def ends(self) -> list[float | None]:
        return [_opt_float(r.get("end")) for r in self.rows]

    def column(self, name: str) -> list[str]:
        """Raw string values of any column."""
        if name not in self.columns:
            raise KeyError(f"{self.source}: no column {name!r}; columns are {self.columns}")
        return [r[name] for r in self.rows]

    def subset(self, indices) -> "Manifest":
        """Rows at the given positions (original row numbers and class names kept)."""
        idx = [int(i) for i in indices]
        return Manifest(self.source, self.root, list(self.columns), [self.rows[i] for i in idx],
                        [self.row_numbers[i] for i in idx], list(self.class_names))

    def select(self, split: str) -> "Manifest":
        """Rows of one split."""
        if split not in VALID_SPLITS:
            raise ValueError(f"split must be one of {VALID_SPLITS}, got {split!r}")
        return self.subset([i for i, r in enumerate(self.rows) if r["split"] == split])


def _resolve(root: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else (root / path).resolve()


def _opt_float(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


def load_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Manifest:
    """Read and check a manifest CSV.  ``root``: folder relative paths resolve against (default:
    the manifest's folder)."""
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise ManifestError(f"manifest not found: {source}")
    base = Path(root).expanduser().resolve() if root is not None else source.parent
    try:
        text = source.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        looks = " (it looks like UTF-16: it starts with a UTF-16 byte-order mark)" if source.read_bytes()[:2] in (
            b"\xff\xfe", b"\xfe\xff") else ""
        raise ManifestError(f"{source}: not UTF-8 text{looks}: byte {exc.start} cannot be decoded; save the "
                            "manifest as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8 old.csv > new.csv`, or 'CSV UTF-8' "
                            "in a spreadsheet)") from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ManifestError(f"{source}: missing required column(s) {missing}; the header has "
                                f"{columns} (required: {list(REQUIRED_COLUMNS)})")
        reader.fieldnames = columns
        rows, numbers = [], []
        for n, raw in enumerate(reader, start=1):
            if None in raw:
                raise ManifestError(f"{source}: row {n} (line {n + 1}) has more fields than the "
                                    f"header ({len(columns)} columns)")
            row = {k: (v or "").strip() for k, v in raw.items()}
            if not any(row.values()):
                continue  # blank line
            rows.append(row)
            numbers.append(n)
    if not rows:
        raise ManifestError(f"{source}: the manifest has no data rows")

    seen: dict[tuple[str, str], int] = {}
    for n, row in zip(numbers, rows):
        where = f"{source}: row {n} (line {n + 1})"
        for col in REQUIRED_COLUMNS:
            if not row[col]:
                raise ManifestError(f"{where}: empty {col!r}")
        if row["split"] not in VALID_SPLITS:
            raise ManifestError(f"{where}: invalid split {row['split']!r}; valid splits are "
                                f"{list(VALID_SPLITS)}")
        for col in ("start", "end"):
            try:
                _opt_float(row.get(col))
            except ValueError:
                raise ManifestError(f"{where}: {col}={row[col]!r} is not a number of seconds")
        s, e = _opt_float(row.get("start")), _opt_float(row.get("end"))
        if (s is not None and s < 0) or (s is not None and e is not None and e <= s):
            raise ManifestError(f"{where}: need 0 <= start < end, got start={s}, end={e}")
        key = (str(_resolve(base, row["path"])), row.get("start") or "")
        if key in seen:
            raise ManifestError(f"{where}: duplicate path+start {row['path']!r} "
                                f"(start={key[1] or 'none'}), first seen at row {seen[key]}")
        seen[key] = n
    class_names = sorted({r["label"] for r in rows})
    return Manifest(source, base, columns, rows, numbers, class_names)


@dataclass
class ValidationReport:
    """Result of :func:`validate_manifest`: rows checked, kept, and (row, path, reason) dropped."""

    checked: int
    kept: int
    problems: list[tuple[int, str, str]]
    # seconds each checked row offers (start..end cut to the file), None where the media could not be
    # read; the error for a manifest whose rows are mostly too short quotes the shortest and longest
    durations: list[float | None] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"validated {self.checked} rows: {self.kept} ok, {len(self.problems)} skipped" + skip_reasons(self.problems)

    def __str__(self) -> str:
        return self.summary


def skip_reasons(problems: list[tuple[int, str, str]]) -> str:
    """`` (2x too short, 1x file not found)`` for a list of (row, path, reason); empty for none."""
    if not problems:
        return ""
    reasons: dict[str, int] = {}
    for _, _, why in problems:
        key = why.split(":")[0].split("(")[0].strip()
        reasons[key] = reasons.get(key, 0) + 1
    return " (" + ", ".join(f"{v}x {k}" for k, v in sorted(reasons.items())) + ")"


#: rows named in a message about skipped rows; the rest are counted (all of them are in skipped_clips.csv)
NAMED_ROWS = 5


def name_rows(problems: list[tuple[int, str, str]], first: int = NAMED_ROWS) -> str:
    """``row 1 (line 2) /data/a.mp4: file not found; ...; and 37 more``: the first ``first`` rows of
    (row, path, reason), each with its resolved path and reason, and the count of the others."""
    ordered = sorted(problems)
    text = "; ".join(f"row {n} (line {n + 1}) {path}: {why}" for n, path, why in ordered[:first])
    if len(ordered) > first:
        text += f"; and {len(ordered) - first} more"
    return text


def no_rows_left(source, report: "ValidationReport", min_duration_s: float, length_parameter: str) -> ManifestError:
    """The error for a manifest whose every row was skipped: :func:`skipped_rows_explanation` (which names
    the first rows, their paths and reasons), with all the rows attached for ``skipped_clips.csv``."""
    return ManifestError(skipped_rows_explanation(source, report, min_duration_s, length_parameter),
                         skipped_rows=report.problems)


def write_skipped_rows(problems: list[tuple[int, str, str]], path: Path) -> None:
    """The rows left out, one per line (manifest row number, media path, reason), as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "path", "reason"])
        writer.writerows(sorted(problems))


def _check_media(path: Path, start: float | None, end: float | None,
                 min_duration_s: float) -> tuple[str | None, float | None]:
    """(the problem with one row's media or None, the seconds the row offers or None).  Metadata,
    plus a demux of the last second (no decoding) so an MP4 whose data was cut off after an intact
    header is caught."""
    try:
        info = probe_media(path)
    except DecodeError as exc:
        return exc.reason, None
    if not info.has_video:
        return "no video stream", None
    if not info.has_audio:
        return "no audio stream: audio-visual training needs both", None
    if info.duration <= 0:
        return "unknown or zero duration in the container metadata", None
    s = start or 0.0
    available = (min(end, info.duration) if end is not None else info.duration) - s
    if available < min_duration_s - 1e-6:
        return (f"too short: {available:.3f}s available (start={s:g}, end={end}, "
                f"file {info.duration:.3f}s) < min_duration_s={min_duration_s:g}"), available
    # the audio track can end before the video (decoding would then drop the clip, unseen here):
    # the row offers what both streams hold
    audio_available = None if info.audio_duration is None else (
        (min(end, info.audio_duration) if end is not None else info.audio_duration) - s)
    if audio_available is not None and audio_available < min_duration_s - 1e-6:
        return (f"too short: the audio track lasts {info.audio_duration:.3f}s (the video {info.duration:.3f}s), "
                f"{audio_available:.3f}s available < min_duration_s={min_duration_s:g}"), audio_available
    if audio_available is not None:
        available = min(available, audio_available)
    reached = _demux_tail(path, info.duration)
    if isinstance(reached, str):
        return reached, available
    frame = 1.0 / info.fps if info.fps else 0.1
    if reached < info.duration - 2 * frame:
        return (f"truncated: media data ends at {reached:.3f}s but the metadata claims "
                f"{info.duration:.3f}s"), available
    return None, available


def _demux_tail(path: Path, duration: float) -> float | str:
    """End time of the last demuxable video packet (seeking to ~1 s before the end)."""
    import av  # local: only validation needs demuxing

    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            if duration > 1.5:
                c.seek(int((duration - 1.0) / v.time_base), stream=v, backward=True)
            end = 0.0
            for pkt in c.demux(v):
                if pkt.pts is None or pkt.size == 0:
                    continue
                end = max(end, float((pkt.pts + (pkt.duration or 0)) * v.time_base))
            return end
    except av.FFmpegError as exc:
        return f"corrupt or truncated media data ({exc})"


def validate_manifest(manifest: Manifest, min_duration_s: float, on_error: str = "raise",
                      verbose: bool = True, length_parameter: str = "min_duration_s"
                      ) -> tuple[Manifest, ValidationReport]:
    """Probe every row's media: exists, opens, has video and audio, lasts ``min_duration_s``.

    ``on_error="raise"``: the first problem raises ManifestError naming the row, path and problem.
    ``on_error="skip"``: bad rows are dropped; the report lists (row, path, reason) for each and
    its one-line ``summary`` is printed when ``verbose``; when most (not all) rows are dropped, a
    warning from :func:`skipped_rows_explanation` (reasons, the durations found and, for rows too
    short, ``length_parameter``: the parameter that sets ``min_duration_s``) is printed too.  A
    caller that cannot go on without rows raises with that text.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    keep, problems, durations = [], [], []
    for i, (n, path, s, e) in enumerate(zip(manifest.row_numbers, manifest.paths,
                                            manifest.starts, manifest.ends)):
        why, available = _check_media(path, s, e, min_duration_s)
        durations.append(available)
        if why is None:
            keep.append(i)
            continue
        if on_error == "raise":
            raise ManifestError(f"{manifest.source}: row {n} (line {n + 1}), {path}: {why}")
        problems.append((n, str(path), why))
    report = ValidationReport(checked=len(manifest), kept=len(keep), problems=problems,
                              durations=durations)
    if verbose and on_error == "skip":
        print(report.summary)
    if verbose and keep and 2 * len(problems) > len(manifest):
        print("warning: " + skipped_rows_explanation(manifest.source, report, min_duration_s,
                                                     length_parameter))
    return manifest.subset(keep), report


def skipped_rows_explanation(source, report: ValidationReport, min_duration_s: float,
                             length_parameter: str) -> str:
    """Why most rows of a manifest were dropped, and what to change: the reasons by count, the
    shortest and longest durations found, and the parameter that sets the length asked for."""
    known = [d for d in report.durations if d is not None]
    text = (f"{source}: {len(report.problems)} of {report.checked} rows skipped "
            f"({report.summary.split('skipped', 1)[1].strip(' ()') or 'no reason'})")
    if known:
        text += f"; the rows last {min(known):.3f}s to {max(known):.3f}s"
    if any(why.startswith("too short") for _, _, why in report.problems):
        text += (f"; rows must last at least {min_duration_s:g}s: lower parameter "
                 f"{length_parameter} (or supply longer clips)")
    if report.problems:
        text += f". Skipped: {name_rows(report.problems)}"
    return text
