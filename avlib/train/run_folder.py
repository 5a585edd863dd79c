"""The run folder: what a run writes, written so that nothing is half-written or mixed up.

    run_dir/config.json          the PretrainConfig, verbatim (written first)
    run_dir/metrics.csv          one row per step: step, epoch, loss, lr, step_s, data_s, + diagnostics
    run_dir/summary.json         sampler, seed, steps, wall_s, final_loss, probe, probe_random_init, ...
    run_dir/probe_random_init.json   the random-init baseline and the parameters it was computed with
    run_dir/skipped_clips.csv    every manifest row left out (row, path, reason), validation and decoding
    run_dir/checkpoints/last.pt  model, momentum model, sampler state (queues), optimiser, step
    run_dir/checkpoints/previous.pt  the checkpoint before last.pt (a torn last.pt loses one interval)
    run_dir/snapshots/step_SSSSSS.npz   dictionary snapshots (avlib.dictionary.snapshots)
    run_dir/.lock                the PID of the run that owns the folder (while it runs)

Files are replaced atomically (write, flush, fsync, rename; the temporary file is removed when a write
fails), so a reader or a resumed run never sees a torn file; ``metrics.csv`` is rewritten on resume
without the rows after the last checkpoint.  One run at a time owns a folder (:class:`RunFolderLock`),
and everything in it must belong to that run: a folder holding another run's ``config.json`` is
refused whether or not it has a checkpoint yet.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import pickle
import secrets
import platform
import sys
import time
import zipfile
from pathlib import Path

import torch

from avlib.config import ConfigError, PretrainConfig

CHECKPOINT, PREVIOUS_CHECKPOINT = "last.pt", "previous.pt"
# Parameters that may change between a run and its resumption without changing its results.
# (nproc_per_node: a preempted job may come back on fewer or more GPUs; data order and the dictionary
# do not depend on it, only which clips share batch-norm statistics without sync_batchnorm.)
RESUMABLE_CHANGES = {"resume", "progress", "num_workers", "probe", "device", "nproc_per_node", "check_ranks",
                     "compile", "tensorboard", "random_init_cache"}
#: parameters that change what a run trains but neither its encoders at random init nor what its probes
#: read: runs that differ only in these (and in their folder) share one random-init baseline (the study's
#: dictionary_size runs: the sampler, the dictionary, the active selection; and the optimisation, which
#: acts only through the updates the baseline precedes)
TRAINING_ONLY = {"run_dir", "sampler", "dictionary_size", "momentum", "temperature", "lr", "weight_decay",
                 "warmup_steps", "epochs", "max_steps", "shuffle_bn", "key_bn_groups", "objective", "intra_weight"}


def checkpoint_path(run_dir: str | Path, name: str = CHECKPOINT) -> Path:
    return Path(run_dir) / "checkpoints" / name


def has_checkpoint(run_dir: str | Path) -> bool:
    """A checkpoint to resume from: last.pt, or previous.pt alone (a write stopped between the two renames)."""
    return any(checkpoint_path(run_dir, name).exists() for name in (CHECKPOINT, PREVIOUS_CHECKPOINT))


def _write_atomic(path: Path, write) -> None:
    """``write(handle)`` into a temporary file beside ``path``, fsync, rename over ``path``; on any
    failure (a full disk, an interrupt) the temporary file is removed and ``path`` is left as it was.

    The temporary name is the writer's own (PID and a random suffix): two processes may write one
    path at once (the study's jobs of one seed both fill the shared random-init cache), and with a
    common ``path.tmp`` the second rename found the file already moved and failed its run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def save_atomic(state: dict, path: Path) -> None:
    """Write-then-rename: a reader (or a resumed run) never sees a half-written checkpoint."""
    _write_atomic(path, lambda handle: torch.save(state, handle))


def save_checkpoint_file(state: dict, run_dir: str | Path) -> None:
    """``checkpoints/last.pt``, keeping the one before it as ``previous.pt``: if the newest is ever
    unreadable (a torn copy, a full disk elsewhere), resuming loses at most one checkpoint interval."""
    last, previous = checkpoint_path(run_dir), checkpoint_path(run_dir, PREVIOUS_CHECKPOINT)
    tmp = last.with_name(last.name + ".new")
    _write_atomic(tmp, lambda handle: torch.save(state, handle))
    if last.exists():
        os.replace(last, previous)
    os.replace(tmp, last)


def load_checkpoint(run_dir: str | Path, device: str) -> dict:
    """The newest readable checkpoint: last.pt, else previous.pt (said loudly on stderr); a clear
    error naming both paths when neither can be read."""
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = checkpoint_path(run_dir, name)
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
            problems.append(f"{path}: unreadable ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
            continue
        state["loaded_from"] = str(path)  # not saved again: which file this rank resumed from
        if problems:
            print(f"warning: {'; '.join(problems)}; resuming from {path} (step {state['step']}) instead: the "
                  "steps after it are trained again, with the same results", file=sys.stderr)
        return state
    raise ConfigError(f"run_dir={str(run_dir)!r} has no readable checkpoint ({'; '.join(problems)}); "
                      "start afresh with resume=False in a new run_dir, or delete the checkpoints folder")


def write_json_atomic(data: dict, path: Path) -> None:
    text = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    _write_atomic(path, lambda handle: handle.write(text))


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """``data`` to ``path`` all at once or not at all, however many processes write it (see
    :func:`_write_atomic`): the study's records and reports, which two study commands may share."""
    _write_atomic(Path(path), lambda handle: handle.write(data))


class RunFolderLock:
    """One run at a time in a run folder: an exclusive ``flock`` on ``run_dir/.lock``, which holds
    the owner's PID, host and start time.

    The kernel releases the lock when its process ends, however it ends (SIGKILL included), so a
    lock left by a dead run never blocks the next one; a second live run on the folder gets a
    :class:`ConfigError` at once, naming the folder and the holder's PID.  ``held=False`` (the
    ranks other than 0 under torchrun) makes it a no-op.
    """

    def __init__(self, run_dir: str | Path, held: bool = True):
        self.path, self.held, self.handle = Path(run_dir) / ".lock", held, None

    def __enter__(self) -> "RunFolderLock":
        if not self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise ConfigError(f"run_dir={str(self.path.parent)!r} is in use by another run ({holder}); wait for "
                              "it to finish, or use another run_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} on {platform.node()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.seek(0)
            self.handle.truncate()
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


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

    A folder that already holds a run (its ``config.json``) is continued only by a run with the same
    result-changing parameters, checkpoint or not: a run killed before its first checkpoint leaves
    files (the random-init probes, metrics) that belong to its parameters.  A checkpoint is resumed
    only with ``resume=True``; ``config.json`` is written before anything else.
    """
    run_dir = Path(cfg.run_dir)
    resuming = cfg.resume and has_checkpoint(run_dir)
    if has_checkpoint(run_dir) and not cfg.resume:
        raise ConfigError(f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=False; "
                          "use a new run_dir, or resume=True to continue it")
    if (run_dir / "config.json").is_file():
        check_same_run(run_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    return resuming


def result_parameters(cfg: PretrainConfig) -> dict:
    """The parameters that change a run's results (all but :data:`RESUMABLE_CHANGES`)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES}


def check_same_run(run_dir: Path, cfg: PretrainConfig) -> None:
    """Refuse a run folder that holds a run with other (result-changing) parameters."""
    saved = json.loads((run_dir / "config.json").read_text())
    # a parameter added after the run was made is absent from its config.json: it ran at the default
    defaults = PretrainConfig().to_dict()
    differences = {k: (saved.get(k, defaults.get(k)), v) for k, v in result_parameters(cfg).items()
                   if saved.get(k, defaults.get(k)) != v}
    if differences:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(differences.items()))
        raise ConfigError(
            f"run_dir={str(run_dir)!r} holds a run with other parameters ({listed}); "
            "use a new run_dir, or the same parameters to resume it"
        )


def read_random_init_probes(run_dir: str | Path, cfg: PretrainConfig) -> dict | None:
    """``probe_random_init.json`` if it was computed with ``cfg``'s result-changing parameters, else
    None (to be recomputed): the baseline must belong to this run, not to an earlier one in the folder."""
    path = Path(run_dir) / "probe_random_init.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("parameters") != json.loads(json.dumps(result_parameters(cfg))):
        return None
    return saved["probes"]


def shared_random_init_path(cfg: PretrainConfig, model: torch.nn.Module) -> Path | None:
    """Where runs with these initial weights and probe inputs keep their random-init baseline, under
    ``cfg.random_init_cache`` (None when it is ""): a file named by the hash of the model's weights at
    init and of every result-changing parameter but :data:`TRAINING_ONLY` and ``active_*`` (with the
    device, whose numerics differ).

    Why: the baseline probes the encoders before any update, so runs of one seed that differ only in
    their method compute the same numbers; in the study's ``dictionary_size`` condition (30,000 clips,
    3 windows each) that is ~6 of a run's ~22 minutes.  The weights are hashed rather than trusted to
    the seed: a method whose model draws other weights at init misses the cache instead of sharing."""
    if not cfg.random_init_cache:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    inputs = {k: v for k, v in result_parameters(cfg).items()
              if k not in TRAINING_ONLY and not k.startswith("active_")}
    digest.update(json.dumps({"parameters": inputs, "device": cfg.device}, sort_keys=True, default=str).encode())
    return Path(cfg.random_init_cache).expanduser() / f"{digest.hexdigest()[:40]}.json"


def write_random_init_probes(run_dir: str | Path, cfg: PretrainConfig, probes: dict) -> None:
    write_json_atomic({"probes": probes, "parameters": result_parameters(cfg)},
                      Path(run_dir) / "probe_random_init.json")
