"""The copies of each finished run's small files kept beside the report (``reports/study/runs/<condition>/<run>/``,
:data:`KEPT`): ``config.json``, ``summary.json``, ``study_run.json`` and ``diversity.json`` (the end-of-training
dictionary diversity read from ``metrics.csv``, which is megabytes and stays in the run folder).

Why they exist: run folders live under ``runs/`` (gitignored) and are lost when a session ends; the kept copies
are committed.  They serve twice:

* the report rebuilds from them where the run folders are gone (``--report-only --from-kept``,
  :mod:`avlib.study.results`);
* the study command treats a planned run as finished when a kept copy of a finished run with the same
  parameters exists: it restores the run's folder from the copy instead of training it again
  (:func:`avlib.study.run.restore_kept`), so that a new session adds seeds instead of redoing them.

A run is kept as soon as it finishes (:func:`avlib.study.run.execute_run` calls :func:`keep_run`), not only
when the report is written at the end of a condition: a session killed in the middle of a condition then
loses at most the runs in flight.

This module reads and writes files only; it imports nothing from the rest of the study, so that the
module that executes runs can call it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from avlib.train.run_folder import write_bytes_atomic

#: the study's own record in each run folder (condition, variant, seed, attempts: ``avlib.study.run``)
RECORD = "study_run.json"
#: a run's end-of-training dictionary diversity, kept beside its config.json
DIVERSITY_RECORD = "diversity.json"
#: the run folder's files that are kept as they are (the record is kept without :data:`RESTORED`)
KEPT_FILES = ("config.json", "summary.json")
#: where the report keeps each run's small files, relative to the report's folder
KEPT = Path("study") / "runs"
#: the key of ``study_run.json`` that marks a folder restored from a kept copy: a list of
#: ``{"from": <kept folder>, "at": <UTC time>}``, one per restoration.  It describes this folder, not the
#: run, so it is left out of the kept copy (which then keeps the bytes the run was finished with).
RESTORED = "restored_from_kept"


def kept_dir(run_dir: Path, study_dir: Path) -> Path:
    """Where a run's small files are kept: ``study_dir/runs/<condition>/<run>`` of the folder that trained
    it (a folder linked by ``link_twins`` resolves to its origin, so a shared run is kept once)."""
    origin = Path(run_dir).resolve()  # runs_root/<condition>/<run>
    return Path(study_dir) / "runs" / origin.parent.name / origin.name


def write_if_changed(path: Path, data: bytes) -> None:
    """Write unless ``path`` already holds these bytes (a finished study leaves reports/ untouched)."""
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes_atomic(data, path)


def record_bytes(data: dict) -> bytes:
    """``study_run.json``'s bytes as ``avlib.study.run.AttemptRecord`` writes them."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def diversity_rows(run_dir: Path) -> dict:
    """End-of-training diversity per modality from the run's ``metrics.csv``, without the folder's path
    (the row's ``run``), as ``diversity.json`` holds it."""
    from avlib.analysis.diversity import end_of_training  # lazily: it imports torch

    rows = {m: end_of_training(run_dir, m) for m in ("video", "audio")}
    return {m: {k: v for k, v in row.items() if k != "run"} for m, row in rows.items()}


def keep_run(run_dir: Path, study_dir: Path, diversity: dict | None = None) -> Path:
    """Copy a finished run's small files to :func:`kept_dir`; returns that folder.  ``diversity``: the rows of
    :func:`diversity_rows` if the caller has them already (else read from ``metrics.csv`` when it exists).
    Files whose bytes would not change are not rewritten."""
    run_dir = Path(run_dir)
    target = kept_dir(run_dir, study_dir)
    for name in KEPT_FILES:
        if (run_dir / name).is_file():
            write_if_changed(target / name, (run_dir / name).read_bytes())
    if (run_dir / RECORD).is_file():
        data = json.loads((run_dir / RECORD).read_text())
        data.pop(RESTORED, None)
        write_if_changed(target / RECORD, record_bytes(data))
    if (run_dir / "metrics.csv").is_file():
        rows = diversity if diversity is not None else diversity_rows(run_dir)
        write_if_changed(target / DIVERSITY_RECORD, (json.dumps(rows, indent=2, sort_keys=True) + "\n").encode())
    return target


def is_restored(run_dir: Path) -> bool:
    """The folder was restored from a kept copy (it has no checkpoint, metrics or snapshots)."""
    path = Path(run_dir) / RECORD
    return path.is_file() and RESTORED in json.loads(path.read_text())


def restore_run(source: Path, target: Path, stamp: dict) -> None:
    """Make ``target`` a finished run folder from the kept copy ``source``: its kept files, the record marked
    with ``stamp`` under :data:`RESTORED`.  Written into a temporary folder that is renamed at the end, so a
    killed restore leaves no half folder (a folder with config.json but no summary.json would be resumed)."""
    target = Path(target)
    staging = target.with_name(target.name + ".restoring")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in (*KEPT_FILES, DIVERSITY_RECORD):
        if (source / name).is_file():
            shutil.copyfile(source / name, staging / name)
    record = json.loads((source / RECORD).read_text()) if (source / RECORD).is_file() else {"attempts": []}
    record.setdefault(RESTORED, []).append(stamp)
    (staging / RECORD).write_bytes(record_bytes(record))
    os.replace(staging, target)
