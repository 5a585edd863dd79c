"""Running a condition: one papermill execution of ``02_pretrain`` per run, ``04_downstream`` for the
first seed of every variant, ``03_negative_diversity`` over the condition, all resumable.

The notebooks are executed by ``python -m papermill`` in subprocesses (one kernel per job, each run
with one torch thread), never in this process: a run can then be killed and resumed like any
``make pretrain``, and two jobs never share an interpreter.  The datasets the runs need are
generated and decoded first, one at a time (:func:`prepare_datasets`).  What is skipped and why:

* a run whose ``summary.json`` exists is finished; one with a checkpoint but no summary is
  executed again and the training loop resumes it from ``checkpoints/last.pt``;
* a run's downstream probes are finished when ``downstream/run/results.json`` exists;
* a condition's diversity notebook is skipped when ``inputs.json`` beside its outputs names the
  same runs with the same summaries;
* a run whose result-changing parameters (all but ``run_dir`` and what a resume may change)
  equal those of a finished run of another condition under the same runs root is not trained
  again: its folder becomes a symbolic link to that run (:func:`link_twins`).  The conditions
  share such runs by design: ``imbalance`` at 1, ``sources`` at 1 and ``sync`` at 1 are each the
  study base, and ``label_free``'s ``random`` is the base's ``random``.  A twin is the same
  computation with the same seed, so a second copy would only re-measure float noise at the cost
  of a base-run unit.

Each run folder also gets ``study_run.json`` (written by this module, not by the loop): the
condition, variant and seed, and per attempt its start and end time, the git commit, the machine
and the locked package versions.  The report's provenance comes from these files, so that it
describes the runs and not the moment the report was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from avlib.config import ConfigError, DataConfig, PretrainConfig
from avlib.train import check_names
from avlib.train.run_folder import RESUMABLE_CHANGES
from avlib.study.conditions import STUDY_BASE, Condition, Variant

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
RECORD = "study_run.json"
#: packages whose locked versions the provenance lists
PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "scikit-learn", "papermill", "av")
#: parameters the study itself sets per run; ``--set`` may not change them
STUDY_SET = {"sampler", "seed", "run_dir", "progress"}


class StudyError(RuntimeError):
    """A notebook of the study failed; the message names the run and its log."""


@dataclass(frozen=True)
class PlannedRun:
    condition: str
    variant: Variant
    seed: int
    run_dir: Path
    parameters: dict  # the 02_pretrain parameters, exactly as papermill passes them
    downstream: bool  # also run 04_downstream (the first seed of each variant)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def finished(self) -> bool:
        return (self.run_dir / "summary.json").is_file()

    @property
    def downstream_finished(self) -> bool:
        return (self.run_dir / "downstream" / "run" / "results.json").is_file()


def parse_overrides(items: list[str]) -> dict:
    """``["epochs=2", "max_steps=None"]`` -> ``{"epochs": 2, "max_steps": None}``: each value typed
    by :meth:`PretrainConfig.parse_value`, the same parser as ``python -m avlib.train``'s flags."""
    known = set(PretrainConfig.__dataclass_fields__)
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE with NAME a PretrainConfig parameter")
        if name not in known:
            raise PretrainConfig.unknown_parameter_error([name], f"in --set {item!r}")
        overrides[name] = PretrainConfig.parse_value(name, text)
    return overrides


def plan_runs(condition: Condition, runs_root: Path, seeds, variant_names=None, overrides=None,
              downstream: bool = True) -> list[PlannedRun]:
    """Every run of ``condition`` (seed-major: all variants of the first seed come first, so a
    study stopped early still compares every method), validated before anything is launched.
    ``downstream=False`` skips notebook 04 (every run's ``summary.json`` has its probes anyway)."""
    overrides = dict(overrides or {})
    variants = [condition.variant(name) for name in variant_names] if variant_names else list(condition.variants)
    seeds = sorted(set(seeds))
    if not seeds:
        raise ConfigError("parameter seeds is empty: give at least one seed")
    for variant in variants:
        clash = sorted((set(variant.params) | STUDY_SET) & set(overrides))
        if clash:
            raise ConfigError(f"--set {clash} would change what condition {condition.name!r} sets itself "
                              f"(variant {variant.name!r}); choose another condition or variant")
    runs = []
    for seed in seeds:
        for variant in variants:
            run_dir = runs_root / condition.name / f"{variant.name}_seed{seed}"
            parameters = {**STUDY_BASE, **overrides, **variant.params, "seed": seed, "run_dir": str(run_dir), "progress": False}
            check_names(PretrainConfig.from_dict(parameters))  # a bad value or name fails here, naming the parameter
            runs.append(PlannedRun(condition.name, variant, seed, run_dir, parameters,
                                   downstream=downstream and seed == seeds[0]))
    return runs


def same_run_parameters(config: dict) -> dict:
    """The parameters that make two runs the same computation: the training loop's result-changing
    parameters (``avlib.train.run_folder.RESUMABLE_CHANGES`` left out), less the folder.  A parameter
    added after a run was made is absent from its ``config.json``: the run ran at its default (as
    ``avlib.train.run_folder.check_same_run`` reads it), so a finished run stays finished and a twin."""
    full = {**PretrainConfig().to_dict(), **config}
    return {k: v for k, v in full.items() if k not in RESUMABLE_CHANGES and k != "run_dir"}


def _planned_parameters(run: PlannedRun) -> dict:
    return same_run_parameters(PretrainConfig.from_dict(run.parameters).to_dict())


def link_twins(runs: list[PlannedRun], runs_root: Path, log=print) -> int:
    """Link every planned run that has no folder yet to a finished run of the same configuration
    (:func:`same_run_parameters` of ``config.json`` equal) in another condition under ``runs_root``; returns
    how many were linked.  The link is relative (the runs root can move) and the report reads a
    linked folder like any other; the twin's ``study_run.json`` keeps the condition that trained it."""
    finished = {}
    for summary in sorted(runs_root.glob("*/*/summary.json")):
        run_dir = summary.parent
        if run_dir.is_symlink() or not (run_dir / "config.json").is_file():
            continue
        saved = same_run_parameters(json.loads((run_dir / "config.json").read_text()))
        finished.setdefault(json.dumps(saved, sort_keys=True), run_dir)
    linked = 0
    for run in runs:
        if run.run_dir.exists() or run.run_dir.is_symlink():
            continue
        twin = finished.get(json.dumps(_planned_parameters(run), sort_keys=True))
        if twin is None or twin.parent == run.run_dir.parent:
            continue
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        run.run_dir.symlink_to(os.path.relpath(twin, run.run_dir.parent), target_is_directory=True)
        log(f"{run.condition}/{run.name}: same configuration as {twin.parent.name}/{twin.name}, linked")
        linked += 1
    return linked


# ----------------------------------------------------------------------------- provenance of an attempt


def git_state() -> dict:
    """The commit and whether tracked code differs from it (reports/ and runs/ left out: the study
    writes them itself, and the flag must describe the code that ran)."""
    def git(*args):
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)reports", ":(exclude)runs")
    return {"commit": commit or "unknown (not a git checkout)", "dirty": bool(status) if status is not None else None}


def locked_versions(lock_path: Path = REPO / "uv.lock") -> dict:
    """Versions of :data:`PACKAGES` in ``uv.lock`` (the environment every run used)."""
    if not lock_path.is_file():
        return {}
    packages = tomllib.loads(lock_path.read_text()).get("package", [])
    versions = {p["name"]: p.get("version", "?") for p in packages if p.get("name") in PACKAGES}
    return {name: versions[name] for name in PACKAGES if name in versions}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version()}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AttemptRecord:
    """``study_run.json`` of one run folder: one entry per attempt, the last one updated when it ends."""

    def __init__(self, run: PlannedRun, context: dict):
        self.path = run.run_dir / RECORD
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {
            "condition": run.condition, "variant": run.variant.name, "method": run.variant.method,
            "seed": run.seed, "attempts": []}
        self.data["attempts"].append({"started": _now(), "finished": None, "status": "running", **context})
        self._write()

    def end(self, status: str) -> None:
        self.data["attempts"][-1].update(finished=_now(), status=status)
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


# ----------------------------------------------------------------------------- executing notebooks


def execute_notebook(name: str, output: Path, parameters: dict, log: Path) -> None:
    """``papermill notebooks/<name> <output>`` in a subprocess with one compute thread; its output
    goes to ``log``.  Raises :class:`StudyError` with the log's tail when the notebook fails."""
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / name), str(output),
               "-y", json.dumps(parameters), "--cwd", os.getcwd(), "--no-progress-bar"]
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise StudyError(f"{name} failed for {output.parent} (exit {result.returncode}); log: {log}\n{tail}")


def downstream_parameters(run: PlannedRun, reports_study: Path) -> dict:
    """Notebook 04 on the run's own dataset: linear and kNN probes of the pretrained encoders (the
    random-init baseline is already in every run's summary.json, so it is not computed again)."""
    return {"run_dir": str(run.run_dir), "dataset": "run", "protocol": "probes", "baseline": False,
            "num_threads": 1, "num_workers": 1, "progress": False,
            "reports_dir": str(reports_study / run.condition / "downstream")}


def execute_run(run: PlannedRun, reports_study: Path, context: dict) -> str:
    """Train (or resume) one run and probe it; returns what was done, for the progress log."""
    if run.finished and (not run.downstream or run.downstream_finished):
        return "skipped (finished)"
    record = AttemptRecord(run, context)
    started = time.perf_counter()
    done = []
    try:
        if not run.finished:
            action = "resumed" if (run.run_dir / "checkpoints" / "last.pt").is_file() else "trained"
            execute_notebook("02_pretrain.ipynb", run.run_dir / "02_pretrain.ipynb", run.parameters,
                             run.run_dir / "02_pretrain.log")
            done.append(action)
        if run.downstream and not run.downstream_finished:
            execute_notebook("04_downstream.ipynb", run.run_dir / "04_downstream.ipynb",
                             downstream_parameters(run, reports_study), run.run_dir / "04_downstream.log")
            done.append("probed (04)")
    except BaseException:
        record.end("failed")
        raise
    record.end("finished")
    return f"{' + '.join(done)} in {(time.perf_counter() - started) / 60:.1f} min"


def prepare_datasets(runs: list[PlannedRun], log=print) -> None:
    """Generate and decode every dataset the unfinished runs need, one at a time, before any run
    starts: two runs of a new dataset launched together would otherwise both generate it (the
    embedded dataset's generator is not safe against a concurrent generator of the same files)."""
    from avlib.data.dataset import open_dataset

    fields = [name for name in DataConfig.__dataclass_fields__ if name != "show_clips"]
    prepared = set()
    for run in runs:
        if run.finished:
            continue
        cfg = PretrainConfig.from_dict(run.parameters)
        key = tuple(getattr(cfg, name) for name in fields)
        if key not in prepared:
            cache = open_dataset(cfg, progress=False)
            log(f"dataset ready: {len(cache)} clips ({', '.join(f'{n}={v}' for n, v in zip(fields, key))})")
            prepared.add(key)


def check_existing_folders(runs: list[PlannedRun]) -> None:
    """Refuse, before anything runs, a run folder that holds a run of another configuration (e.g. a
    pilot at other ``--set`` values under the same runs root): its summary would otherwise count as
    this run finished, and the report would mix configurations under one name."""
    for run in runs:
        saved = run.run_dir / "config.json"
        if not saved.is_file():
            continue
        have, want = same_run_parameters(json.loads(saved.read_text())), _planned_parameters(run)
        differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        if differ:
            details = ", ".join(f"{k}={have.get(k)!r} there, {want.get(k)!r} planned" for k in differ)
            raise ConfigError(f"run folder {run.run_dir} holds a run of another configuration ({details}); "
                              f"choose another --runs-root or move that folder away")


def execute_runs(runs: list[PlannedRun], reports_study: Path, jobs: int, log=print) -> list[str]:
    """All runs, ``jobs`` at a time; returns the failures (the other runs go on regardless)."""
    if jobs < 1:
        raise ConfigError(f"parameter jobs={jobs!r} must be >= 1")
    check_existing_folders(runs)
    prepare_datasets(runs, log)
    context = {**git_state(), "machine": machine(), "packages": locked_versions(), "jobs": jobs}
    failures = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(execute_run, run, reports_study, context): run for run in runs}
        try:
            for count, future in enumerate(as_completed(futures), start=1):
                run = futures[future]
                try:
                    log(f"[{count}/{len(runs)}] {run.condition}/{run.name}: {future.result()}")
                except StudyError as error:
                    failures.append(str(error))
                    log(f"[{count}/{len(runs)}] {run.condition}/{run.name}: FAILED\n{error}")
        except BaseException:  # Ctrl-C: start nothing new; the running notebooks stop with it and resume later
            for future in futures:
                future.cancel()
            raise
    return failures


# ----------------------------------------------------------------------------- the diversity notebook


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def diversity_runs(condition: Condition, runs_root: Path) -> list[Path]:
    """The finished runs notebook 03 compares: the lowest seed of every variant at the focus level."""
    chosen = []
    for variant in condition.variants:
        if condition.focus_level is not None and variant.level != condition.focus_level:
            continue
        finished = sorted(runs_root.glob(f"{condition.name}/{variant.name}_seed*/summary.json"),
                          key=lambda p: int(p.parent.name.rsplit("_seed", 1)[1]))
        if finished:
            chosen.append(finished[0].parent)
    return chosen


def execute_diversity(condition: Condition, runs_root: Path, reports_study: Path, umap: bool, log=print) -> None:
    """Notebook 03 over :func:`diversity_runs`, its figures and table into ``reports/study/<condition>/
    diversity/``; skipped when ``inputs.json`` there already names the same finished runs."""
    run_dirs = diversity_runs(condition, runs_root)
    if not run_dirs:
        return
    output_dir = reports_study / condition.name / "diversity"
    inputs = {"run_dirs": [str(p) for p in run_dirs], "umap": umap,
              "summaries": {str(p): _file_hash(p / "summary.json") for p in run_dirs}}
    stamp = output_dir / "inputs.json"
    executed = runs_root / condition.name / "03_negative_diversity.ipynb"
    if stamp.is_file() and json.loads(stamp.read_text()) == inputs and executed.is_file():
        log(f"{condition.name}: diversity notebook skipped (same runs as before)")
        return
    started = time.perf_counter()
    execute_notebook("03_negative_diversity.ipynb", executed,
                     {"run_dirs": inputs["run_dirs"], "output_dir": str(output_dir), "umap": umap, "num_threads": 1},
                     runs_root / condition.name / "03_negative_diversity.log")
    stamp.write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
    log(f"{condition.name}: diversity notebook over {len(run_dirs)} runs in {time.perf_counter() - started:.0f} s")


def copy_if_changed(source: Path, target: Path) -> None:
    """Copy unless ``target`` already holds the same bytes (a finished study leaves reports/ untouched)."""
    if target.is_file() and target.read_bytes() == source.read_bytes():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
