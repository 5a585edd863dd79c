"""Dataset adapters: the official split / metadata files of public benchmarks -> avlib manifests.

Each adapter reads a benchmark's metadata in the format users download it in (nothing is
reformatted by hand) and writes a manifest CSV (``data_manifests/README.md``) whose relative paths
resolve against the user's copy of the media (``root``).  Multi-split benchmarks keep every official
split in one manifest, one column per split, so their clips are decoded once:

=================  ================================================  =========================
dataset            official metadata read                            manifest extras
=================  ================================================  =========================
``ucf101``         ``classInd.txt``, ``trainlist0{1,2,3}.txt``,      ``split_1..3`` (train/test),
                   ``testlist0{1,2,3}.txt`` (Soomro et al. 2012)     ``group`` (``<class>_gNN``)
``hmdb51``         ``<class>_test_split<k>.txt``, lines              ``split_1..3``
                   ``<video> <0|1|2>`` (Kuehne et al. 2011)          (train/test/unused)
``esc50``          ``meta/esc50.csv`` (Piczak 2015)                  ``fold`` 1..5, ``esc10``
``kinetics_sounds``a Kinetics CSV ``label,youtube_id,time_start,     ``youtube_id``
                   time_end,split``, filtered to the L3 class list
``vggsound``       ``vggsound.csv`` (``ytid,start,label,split``) or  ``youtube_id``, ``yt_start``
                   ``test.csv``/``train.csv`` (``<ytid>_<start>.mp4,label``)
``audioset``       segment CSVs (``# YTID, start_seconds,            ``youtube_id``, ``labels``
                   end_seconds, positive_labels``)                   (``;``-joined MIDs)
=================  ================================================  =========================

Every manifest has the required ``path``, ``label``, ``split`` plus ``clip_id`` and ``video`` (the
video a clip comes from; downstream video-level accuracy averages over clips of one video).  The
``split`` column mirrors the first official split (HMDB51's unused videos as ``val``; ESC-50's fold
5 as ``test``) so the manifest also works with tools that know only one split.

Errors are :class:`~avlib.data.manifest.ManifestError` naming the file, the line and what was
expected.
"""
from __future__ import annotations

import csv
import io
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from avlib.data.manifest import ManifestError

__all__ = [
    "BENCHMARKS", "Benchmark", "KINETICS_SOUNDS_CLASSES", "KINETICS_SOUNDS_ALIASES", "audioset_rows",
    "build_manifest", "default_metadata_dir", "esc50_rows", "hmdb51_rows", "kinetics_sounds_rows",
    "ucf101_rows", "vggsound_rows", "write_manifest",
]

#: The project's copies of the official metadata (with SOURCE.md provenance), one folder per dataset.
MANIFESTS_DIR = Path(__file__).resolve().parents[3] / "data_manifests"

#: Kinetics-Sounds as defined by Arandjelović & Zisserman, "Look, Listen and Learn", ICCV 2017,
#: appendix A1 (arXiv:1705.08168): 34 Kinetics classes "potentially manifested both visually and
#: aurally".  Several of these names are not spelled as in the Kinetics-400 label list, which is why
#: lists of 31-34 classes circulate; see KINETICS_SOUNDS_ALIASES and :func:`kinetics_sounds_rows`.
KINETICS_SOUNDS_CLASSES = (
    "blowing nose", "bowling", "chopping wood", "ripping paper", "shuffling cards", "singing",
    "tapping pen", "typing", "blowing out", "dribbling ball", "laughing",
    "mowing the lawn by pushing lawnmower", "shoveling snow", "stomping", "tap dancing",
    "tapping guitar", "tickling", "fingerpicking", "patting", "playing accordion", "playing bagpipes",
    "playing bass guitar", "playing clarinet", "playing drums", "playing guitar", "playing harmonica",
    "playing keyboard", "playing organ", "playing piano", "playing saxophone", "playing trombone",
    "playing trumpet", "playing violin", "playing xylophone",
)
#: L3 names whose Kinetics label is spelled differently: looked up under the Kinetics name when the
#: L3 name itself is absent from the user's CSV.  Classes found under neither are reported.
KINETICS_SOUNDS_ALIASES = {
    "blowing out": "blowing out candles",
    "dribbling ball": "dribbling basketball",
    "mowing the lawn by pushing lawnmower": "mowing lawn",
}

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validate": "val", "validation": "val", "test": "test", "testing": "test",
               "eval": "test", "balanced_train": "train", "unbalanced_train": "train"}


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines; CRLF and a BOM are accepted."""
    if not path.is_file():
        raise ManifestError(f"metadata file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _stem(name: str) -> str:
    return Path(name).stem


# ------------------------------------------------------------------------------------ UCF101


def ucf101_rows(metadata_dir: str | os.PathLike) -> list[dict]:
    """UCF101's three official splits: ``classInd.txt`` (``<index> <Class>``), ``trainlist0k.txt``
    (``<Class>/v_<Class>_gXX_cYY.avi <index>``) and ``testlist0k.txt`` (path only).

    Paths stay as written in the lists (``<Class>/<file>.avi``), relative to the folder that holds
    the 101 class folders (``UCF-101/`` in the official archive).  Each split must cover every
    video exactly once, as the official lists do."""
    folder = Path(metadata_dir)
    classes: dict[int, str] = {}
    for n, line in _read_lines(folder / "classInd.txt"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ManifestError(f"{folder / 'classInd.txt'}: line {n}: expected '<index> <ClassName>', "
                                f"got {line!r}")
        classes[int(parts[0])] = parts[1]
    assignments: dict[str, dict[int, str]] = {}
    for k in (1, 2, 3):
        for kind in ("train", "test"):
            path = folder / f"{kind}list0{k}.txt"
            for n, line in _read_lines(path):
                parts = line.split()
                video = parts[0].replace("\\", "/")
                cls = video.split("/")[0]
                if "/" not in video or len(parts) != (2 if kind == "train" else 1):
                    expected = "'<Class>/<video>.avi <index>'" if kind == "train" else "'<Class>/<video>.avi'"
                    raise ManifestError(f"{path}: line {n}: expected {expected}, got {line!r}")
                if kind == "train" and classes.get(int(parts[1])) != cls:
                    raise ManifestError(f"{path}: line {n}: label {parts[1]} is "
                                        f"{classes.get(int(parts[1]))!r} in classInd.txt but the "
                                        f"video is in folder {cls!r}")
                if cls not in classes.values():
                    raise ManifestError(f"{path}: line {n}: class folder {cls!r} is not in classInd.txt")
                seen = assignments.setdefault(video, {})
                if k in seen:
                    raise ManifestError(f"{path}: line {n}: {video} is listed twice in split {k}")
                seen[k] = kind
    rows = []
    for video, splits in sorted(assignments.items()):
        missing = [k for k in (1, 2, 3) if k not in splits]
        if missing:
            raise ManifestError(f"{folder}: {video} is in neither the train nor the test list of "
                                f"split(s) {missing}")
        name = _stem(video)
        group = re.match(r"v_.+_(g\d+)_c\d+$", name)
        rows.append({"path": video, "label": video.split("/")[0], "split": splits[1],
                     "clip_id": name, "video": name,
                     "group": f"{video.split('/')[0]}_{group.group(1)}" if group else name,
                     **{f"split_{k}": splits[k] for k in (1, 2, 3)}})
    return rows


# ------------------------------------------------------------------------------------ HMDB51

_HMDB_IDS = {"0": "unused", "1": "train", "2": "test"}


def hmdb51_rows(metadata_dir: str | os.PathLike) -> list[dict]:
    """HMDB51's three official splits: per class and split a file ``<class>_test_split<k>.txt``
    with lines ``<video>.avi <id>``, id 1 = train, 2 = test, 0 = not used in that split.

    Paths are ``<class>/<video>.avi``, relative to the folder holding the 51 class folders (the
    official RAR archives unpack to one folder per class)."""
    folder = Path(metadata_dir)
    pattern = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")
    files = sorted(p for p in folder.glob("*_test_split*.txt") if pattern.match(p.name))
    if not files:
        raise ManifestError(f"{folder}: no HMDB51 split files '<class>_test_split<k>.txt' found")
    assignments: dict[tuple[str, str], dict[int, str]] = {}
    per_class: dict[str, set[int]] = {}
    for path in files:
        match = pattern.match(path.name)
        cls, k = match["cls"], int(match["k"])
        per_class.setdefault(cls, set()).add(k)
        for n, line in _read_lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in _HMDB_IDS:
                raise ManifestError(f"{path}: line {n}: expected '<video>.avi <0|1|2>', got {line!r}")
            seen = assignments.setdefault((cls, parts[0]), {})
            if k in seen:
                raise ManifestError(f"{path}: line {n}: {parts[0]} is listed twice")
            seen[k] = _HMDB_IDS[parts[1]]
    for cls, ks in per_class.items():
        if ks != {1, 2, 3}:
            raise ManifestError(f"{folder}: class {cls!r} has split files {sorted(ks)}, expected 1, 2 and 3")
    rows = []
    for (cls, video), splits in sorted(assignments.items()):
        missing = [k for k in (1, 2, 3) if k not in splits]
        if missing:
            raise ManifestError(f"{folder}: {cls}/{video} is missing from the split file(s) {missing}")
        rows.append({"path": f"{cls}/{video}", "label": cls,
                     "split": "val" if splits[1] == "unused" else splits[1],
                     "clip_id": _stem(video), "video": _stem(video),
                     **{f"split_{k}": splits[k] for k in (1, 2, 3)}})
    return rows


# ------------------------------------------------------------------------------------ ESC-50


def esc50_rows(metadata_dir: str | os.PathLike) -> list[dict]:
    """ESC-50's ``esc50.csv`` (header ``filename,fold,target,category,esc10,src_file,take``).

    Paths are ``audio/<filename>`` relative to the repository folder (``ESC-50-master/``), as
    cloned or unzipped.  The standard protocol is 5-fold cross-validation over ``fold``; clips cut
    from one source recording (``group`` = ``src_file``) share a fold by construction."""
    folder = Path(metadata_dir)
    path = folder / "esc50.csv" if (folder / "esc50.csv").is_file() else folder / "meta" / "esc50.csv"
    if not path.is_file():
        raise ManifestError(f"{folder}: no esc50.csv (looked in the folder and in meta/)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        needed = {"filename", "fold", "category"}
        if not needed <= set(reader.fieldnames or []):
            raise ManifestError(f"{path}: header {reader.fieldnames} lacks {sorted(needed)}")
        rows = []
        for n, raw in enumerate(reader, start=2):
            if raw["fold"] not in {"1", "2", "3", "4", "5"}:
                raise ManifestError(f"{path}: line {n}: fold {raw['fold']!r} is not one of 1..5")
            rows.append({"path": f"audio/{raw['filename']}", "label": raw["category"],
                         "split": "test" if raw["fold"] == "5" else "train",
                         "clip_id": _stem(raw["filename"]), "video": _stem(raw["filename"]),
                         "group": raw.get("src_file", ""), "fold": raw["fold"],
                         "esc10": raw.get("esc10", "")})
    return rows


# ------------------------------------------------------------------------------------ YouTube-based


def _youtube_path(template: str, youtube_id: str, start: float, end: float | None, label: str,
                  split: str) -> str:
    return template.format(youtube_id=youtube_id, start=int(round(start)),
                           end=int(round(end)) if end is not None else 0,
                           label=label, split=split)


def kinetics_sounds_rows(kinetics_csv: str | os.PathLike, *,
                         path_template: str = "{split}/{label}/{youtube_id}_{start:06d}_{end:06d}.mp4",
                         classes=KINETICS_SOUNDS_CLASSES, strict: bool = False) -> list[dict]:
    """Kinetics-Sounds clips from an official Kinetics CSV (header
    ``label,youtube_id,time_start,time_end,split[,is_cc]``), keeping the L3 classes.

    ``path_template`` places a clip in the user's copy; the default is the layout of the common
    Kinetics download scripts (``<split>/<label>/<id>_<start:06d>_<end:06d>.mp4``).  ``label`` in
    the manifest is the L3 class name.  Classes absent from the CSV under both their L3 name and
    their Kinetics alias are listed in the error (``strict=True``) or left out."""
    path = Path(kinetics_csv)
    if not path.is_file():
        raise ManifestError(f"Kinetics CSV not found: {path}")
    wanted = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        needed = {"label", "youtube_id", "time_start", "time_end", "split"}
        if not needed <= set(reader.fieldnames or []):
            raise ManifestError(f"{path}: header {reader.fieldnames} lacks {sorted(needed)} "
                                "(the official Kinetics CSV format)")
        records = list(enumerate(reader, start=2))
    present = {raw["label"] for _, raw in records}
    for name in classes:
        if name in present:
            wanted[name] = name
        elif KINETICS_SOUNDS_ALIASES.get(name) in present:
            wanted[KINETICS_SOUNDS_ALIASES[name]] = name
    absent = [name for name in classes if name not in wanted.values()]
    if absent and strict:
        raise ManifestError(f"{path}: Kinetics-Sounds classes not found (under the L3 name or the "
                            f"Kinetics alias): {absent}")
    rows = []
    for n, raw in records:
        if raw["label"] not in wanted:
            continue
        split = SPLIT_NAMES.get(raw["split"].strip().lower())
        if split is None:
            raise ManifestError(f"{path}: line {n}: unknown split {raw['split']!r}")
        try:
            start, end = float(raw["time_start"]), float(raw["time_end"])
        except ValueError:
            raise ManifestError(f"{path}: line {n}: time_start/time_end must be seconds, got "
                                f"{raw['time_start']!r}, {raw['time_end']!r}") from None
        clip = f"{raw['youtube_id']}_{int(start):06d}_{int(end):06d}"
        rows.append({"path": _youtube_path(path_template, raw["youtube_id"], start, end, raw["label"],
                                           raw["split"]),
                     "label": wanted[raw["label"]], "split": split, "clip_id": clip, "video": clip,
                     "youtube_id": raw["youtube_id"]})
    return rows


def vggsound_rows(csv_path: str | os.PathLike, *, split: str | None = None,
                  path_template: str = "{youtube_id}_{start:06d}.mp4") -> list[dict]:
    """VGGSound clips from ``vggsound.csv`` (no header; ``youtube_id,start_seconds,label,split``) or
    from the per-split lists ``test.csv`` / ``train.csv`` (``<youtube_id>_<start:06d>.mp4,label``).

    A VGGSound file is already the 10 s clip, so ``start`` stays empty and the YouTube start second
    goes to ``yt_start``.  The two-column lists carry no split: it comes from ``split`` or the file
    name (``test.csv`` -> test)."""
    path = Path(csv_path)
    if not path.is_file():
        raise ManifestError(f"VGGSound CSV not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        records = [(n, r) for n, r in enumerate(csv.reader(handle), start=1) if r]
    rows = []
    for n, record in records:
        if len(record) == 4:
            youtube_id, start_text, label, split_text = (x.strip() for x in record)
        elif len(record) == 2:
            name, label = record[0].strip(), record[1].strip()
            match = re.match(r"^(?P<id>.+)_(?P<start>\d+)(\.\w+)?$", name)
            if not match:
                raise ManifestError(f"{path}: line {n}: expected '<youtube_id>_<start>.mp4,label', "
                                    f"got {','.join(record)!r}")
            youtube_id, start_text = match["id"], match["start"]
            split_text = split or next((s for s in ("train", "test") if s in path.stem.lower()), "")
        else:
            raise ManifestError(f"{path}: line {n}: expected 4 fields 'youtube_id,start,label,split' "
                                f"or 2 fields '<id>_<start>.mp4,label', got {len(record)}")
        resolved = SPLIT_NAMES.get(split_text.lower())
        if resolved is None:
            raise ManifestError(f"{path}: line {n}: split {split_text!r} is unknown; pass split= for "
                                "a two-column list whose file name does not say train or test")
        try:
            start = float(start_text)
        except ValueError:
            raise ManifestError(f"{path}: line {n}: start {start_text!r} is not a number of seconds") from None
        clip = f"{youtube_id}_{int(start):06d}"
        rows.append({"path": _youtube_path(path_template, youtube_id, start, start + 10, label, resolved),
                     "label": label, "split": resolved, "clip_id": clip, "video": clip,
                     "youtube_id": youtube_id, "yt_start": f"{int(start)}"})
    return rows


def audioset_rows(segments_csv: str | os.PathLike, *, labels_csv: str | os.PathLike | None = None,
                  split: str | None = None,
                  path_template: str = "{youtube_id}_{start:06d}.mp4") -> list[dict]:
    """AudioSet segments from an official segment CSV (``balanced_train_segments.csv``, ...): ``#``
    comment lines, then ``YTID, start_seconds, end_seconds, "mid1,mid2,..."``.

    AudioSet is multi-label: ``labels`` keeps every MID (``;``-joined) and ``label`` is the first
    one's display name from ``class_labels_indices.csv`` (``index,mid,display_name``) when given,
    else the MID.  The split comes from ``split`` or the file name (``eval`` -> test, ``*train``
    -> train)."""
    path = Path(segments_csv)
    if not path.is_file():
        raise ManifestError(f"AudioSet segments CSV not found: {path}")
    names = {}
    if labels_csv is not None:
        with open(labels_csv, newline="", encoding="utf-8-sig") as handle:
            names = {r["mid"]: r["display_name"] for r in csv.DictReader(handle)}
    resolved = SPLIT_NAMES.get((split or "").lower()) or next(
        (v for k, v in SPLIT_NAMES.items() if k in ("eval", "balanced_train", "unbalanced_train")
         and k in path.stem.lower()), None)
    if resolved is None:
        raise ManifestError(f"{path}: cannot tell the split from the file name; pass split=")
    text = path.read_text(encoding="utf-8-sig")
    rows = []
    for n, record in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), start=1):
        if not record or record[0].startswith("#"):
            continue
        if len(record) != 4:
            raise ManifestError(f"{path}: line {n}: expected 'YTID, start_seconds, end_seconds, "
                                f"\"labels\"', got {len(record)} fields")
        youtube_id, start_text, end_text, mids = (x.strip() for x in record)
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise ManifestError(f"{path}: line {n}: start/end {start_text!r}, {end_text!r} are not seconds") from None
        labels = [m.strip() for m in mids.split(",") if m.strip()]
        if not labels:
            raise ManifestError(f"{path}: line {n}: no positive labels")
        clip = f"{youtube_id}_{int(start):06d}"
        rows.append({"path": _youtube_path(path_template, youtube_id, start, end, labels[0], resolved),
                     "label": names.get(labels[0], labels[0]), "split": resolved, "clip_id": clip,
                     "video": clip, "youtube_id": youtube_id, "labels": ";".join(labels)})
    return rows


# ------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Benchmark:
    """How a downstream benchmark is read and evaluated."""

    name: str
    modality: str  # the stream its protocol evaluates: "video" or "audio"
    evaluations: tuple[str, ...]  # columns holding the official splits, or ("fold",) for CV
    rows: Callable[[Path], list[dict]]
    paper: str


BENCHMARKS = {
    "ucf101": Benchmark("ucf101", "video", ("split_1", "split_2", "split_3"), ucf101_rows,
                        "Soomro, Zamir, Shah: UCF101, CRCV-TR-12-01, 2012"),
    "hmdb51": Benchmark("hmdb51", "video", ("split_1", "split_2", "split_3"), hmdb51_rows,
                        "Kuehne et al.: HMDB, ICCV 2011"),
    "esc50": Benchmark("esc50", "audio", ("fold",), esc50_rows,
                       "Piczak: ESC, ACM Multimedia 2015"),
}


def default_metadata_dir(dataset: str) -> Path:
    """The shipped official metadata of a benchmark: ``data_manifests/<dataset>/``."""
    return MANIFESTS_DIR / dataset


def write_manifest(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write rows as a manifest CSV (required columns first, then the others in first-seen order)."""
    if not rows:
        raise ManifestError(f"no rows to write to {path}")
    columns = ["path", "label", "split"]
    for row in rows:
        columns += [c for c in row if c not in columns]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's own temporary name: two study jobs may prepare one source's clip manifest at once
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def build_manifest(dataset: str, out_csv: str | os.PathLike,
                   metadata_dir: str | os.PathLike | None = None) -> Path:
    """Manifest of a downstream benchmark (``ucf101``, ``hmdb51``, ``esc50``) from its official
    metadata (default: the copy in ``data_manifests/<dataset>/``)."""
    if dataset not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {dataset!r}; known: {sorted(BENCHMARKS)} (Kinetics-Sounds, "
                         "VGGSound and AudioSet: call kinetics_sounds_rows/vggsound_rows/audioset_rows)")
    folder = Path(metadata_dir) if metadata_dir is not None else default_metadata_dir(dataset)
    if not folder.is_dir():
        raise ManifestError(f"metadata folder for {dataset} not found: {folder}; pass the folder holding "
                            f"its official split files (metadata=...)"
                            + (" -- HMDB51's split files are not shipped with avlib: use the folder "
                               "unpacked from test_train_splits.rar" if dataset == "hmdb51" else ""))
    return write_manifest(BENCHMARKS[dataset].rows(folder), out_csv)
