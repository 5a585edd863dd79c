"""The run folder: what a run writes, written so that nothing is half-written or mixed up.

    run_dir/config.json          the PretrainConfig, verbatim (written first)
    run_dir/metrics.csv          one row per step: step, epoch, loss, lr, step_s, data_s, + diagnostics
    run_dir/summary.json         sampler, seed, steps, wall_s, final_loss, probe, probe_random_init, ...
    run_dir/probe_random_init.json   the random-init baseline (computed once, before step 0)
    run_dir/checkpoints/last.pt  model, momentum model, sampler state (queues), optimiser, step
    run_dir/snapshots/step_SSSSSS.npz   dictionary snapshots (avlib.dictionary.snapshots)

Files are replaced atomically (write, flush, fsync, rename), so a reader or a resumed run never sees a
torn file; ``metrics.csv`` is rewritten on resume without the rows after the last checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch

from avlib.config import ConfigError, PretrainConfig

CHECKPOINT = "last.pt"
# Parameters that may change between a run and its resumption without changing its results.
# (nproc_per_node: a preempted job may come back on fewer or more GPUs; data order and the dictionary
# do not depend on it, only which clips share batch-norm statistics without sync_batchnorm.)
RESUMABLE_CHANGES = {"resume", "progress", "num_workers", "probe", "device", "nproc_per_node", "check_ranks",
                     "compile"}


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / CHECKPOINT


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


def prepare_run_folder(cfg: PretrainConfig) -> bool:
    """Claim ``cfg.run_dir`` for this run (rank 0 only) and say whether it resumes a checkpoint.

    A folder with a checkpoint is resumed only with ``resume=True`` and only by a run with the same
    result-changing parameters; ``config.json`` is written before anything else.
    """
    run_dir, checkpoint = Path(cfg.run_dir), checkpoint_path(cfg.run_dir)
    resuming = cfg.resume and checkpoint.exists()
    if checkpoint.exists() and not cfg.resume:
        raise ConfigError(f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=False; "
                          "use a new run_dir, or resume=True to continue it")
    if resuming:
        check_same_run(run_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    return resuming


def check_same_run(run_dir: Path, cfg: PretrainConfig) -> None:
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
