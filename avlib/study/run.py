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

Where the runs execute (``--executor``): ``local``, ``jobs`` threads of this process, each driving one
papermill subprocess (:func:`execute_runs`); or one submitit job per run that is not finished
(:func:`submit_runs`): ``debug`` (in this process), ``submitit-local`` (processes on this machine) or
``slurm`` (a job array).  Both collect the same way and leave the same run folders; a job that was
killed leaves its run resumable like a killed ``make pretrain``, and a preempted one is requeued and
resumes itself (:class:`RunJob`).

Each run folder also gets ``study_run.json`` (written by this module, not by the loop): the
condition, variant and seed, and per attempt its start and end time, the git commit, the machine
and the locked package versions.  The report's provenance comes from these files, so that it
describes the runs and not the moment the report was written.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import submitit

from avlib.config import ConfigError, DataConfig, PretrainConfig
from avlib.study.conditions import STUDY_BASE, Condition, Variant
from avlib.study.kept import RECORD, is_restored, keep_run, record_bytes, restore_run
from avlib.train.run_folder import write_bytes_atomic

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
#: packages whose locked versions the provenance lists
PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "scikit-learn", "papermill", "av")
#: parameters the study itself sets per run; ``--set`` may not change them
STUDY_SET = {"sampler", "seed", "run_dir", "progress", "random_init_cache"}


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

    @property
    def restored(self) -> bool:
        """Its folder was restored from a kept copy (:func:`restore_kept`): finished, but without the
        checkpoint notebook 04 would probe."""
        return self.finished and is_restored(self.run_dir)

    @property
    def complete(self) -> bool:
        """Nothing left to do: trained, and probed by notebook 04 where it should be (a restored run has no
        checkpoint to probe: its summary.json's probes stand)."""
        return self.finished and (not self.downstream or self.downstream_finished or self.restored)


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
    from avlib.train import check_names  # here, not at the top: a submitit job imports this module to run a
    # notebook and needs none of avlib.train (importing it costs ~12 s of CPU on the 2-core machine)

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
            # runs of one seed share their random-init baseline where their initial weights and probe inputs
            # are the same (avlib.train.run_folder.shared_random_init_path): computed once, not per method
            parameters = {**STUDY_BASE, **overrides, **variant.params, "seed": seed, "run_dir": str(run_dir),
                          "progress": False, "random_init_cache": str(runs_root / "random_init_probes")}
            check_names(PretrainConfig.from_dict(parameters))  # a bad value or name fails here, naming the parameter
            runs.append(PlannedRun(condition.name, variant, seed, run_dir, parameters,
                                   downstream=downstream and seed == seeds[0]))
    return runs


def same_run_parameters(config: dict) -> dict:
    """The parameters that make two runs the same computation: the training loop's result-changing
    parameters (``avlib.train.run_folder.RESUMABLE_CHANGES`` left out), less the folder.  A parameter
    added after a run was made is absent from its ``config.json``: the run ran at its default (as
    ``avlib.train.run_folder.check_same_run`` reads it), so a finished run stays finished and a twin."""
    from avlib.train.run_folder import RESUMABLE_CHANGES  # lazily, as in plan_runs

    full = {**PretrainConfig().to_dict(), **config}
    return {k: v for k, v in full.items() if k not in RESUMABLE_CHANGES and k != "run_dir"}


def _planned_parameters(run: PlannedRun) -> dict:
    return same_run_parameters(PretrainConfig.from_dict(run.parameters).to_dict())


def parameters_key(config: dict) -> str:
    """:func:`same_run_parameters` of a ``config.json`` as one comparable string."""
    return json.dumps(same_run_parameters(config), sort_keys=True)


def finished_by_parameters(root: Path) -> dict[str, Path]:
    """Every finished run folder ``root/<condition>/<run>`` (a runs root, or the kept copies) by
    :func:`parameters_key` of its ``config.json``; symbolic links (twins) left out, the first in name order
    wins."""
    found = {}
    for summary in sorted(Path(root).glob("*/*/summary.json")):
        run_dir = summary.parent
        if run_dir.is_symlink() or not (run_dir / "config.json").is_file():
            continue
        found.setdefault(parameters_key(json.loads((run_dir / "config.json").read_text())), run_dir)
    return found


def link_twins(runs: list[PlannedRun], runs_root: Path, log=print) -> int:
    """Link every planned run that has no folder yet to a finished run of the same configuration
    (:func:`same_run_parameters` of ``config.json`` equal) in another condition under ``runs_root``; returns
    how many were linked.  The link is relative (the runs root can move) and the report reads a
    linked folder like any other; the twin's ``study_run.json`` keeps the condition that trained it."""
    finished = finished_by_parameters(runs_root)
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


def restore_sources(runs: list[PlannedRun], runs_root: Path, kept_root: Path) -> list[tuple[PlannedRun, Path, Path]]:
    """``(run, kept copy, folder to restore it to)`` for every planned run that has no folder, no finished run
    of its parameters under ``runs_root``, and a kept copy of a finished run with the same parameters under
    ``kept_root`` (:func:`parameters_key`, as :func:`link_twins` compares: parameters, not names).  The folder
    is the run's own when the copy is of the same condition, else the folder of the condition that trained
    it (``runs_root/<its condition>/<its run>``), which :func:`link_twins` then links the run to, as when
    both folders were there.  A pure look-up (nothing is written): the plan (``--plan``) reads it too."""
    kept = finished_by_parameters(kept_root) if Path(kept_root).is_dir() else {}
    if not kept:
        return []
    present = finished_by_parameters(runs_root)
    chosen, targets = [], set()
    for run in runs:
        if run.run_dir.exists() or run.run_dir.is_symlink():
            continue
        key = _planned_parameters_key(run)
        source = kept.get(key)
        if source is None or key in present:
            continue
        target = run.run_dir if source.parent.name == run.condition else runs_root / source.parent.name / source.name
        if target in targets or (target != run.run_dir and (target.exists() or target.is_symlink())):
            continue
        chosen.append((run, source, target))
        targets.add(target)
    return chosen


def _planned_parameters_key(run: PlannedRun) -> str:
    return json.dumps(_planned_parameters(run), sort_keys=True)


def restore_kept(runs: list[PlannedRun], runs_root: Path, kept_root: Path, log=print) -> int:
    """Restore the folders of :func:`restore_sources` from the kept copies (``reports/study/runs/``, committed;
    ``runs/`` is not, so a new session starts without run folders): ``config.json``, ``summary.json``,
    ``study_run.json`` (marked ``restored_from_kept``) and ``diversity.json``.  The run then counts as
    finished, the report, twins and findings read it like any finished run, and a session adds the seeds
    that are missing instead of training the finished ones again.  Returns how many folders were restored.

    What a restored folder lacks: checkpoints, ``metrics.csv`` and snapshots (notebook 04 is not run on it,
    :attr:`PlannedRun.complete`; notebook 03 is not run over it, :func:`execute_diversity`)."""
    restored = 0
    for run, source, target in restore_sources(runs, runs_root, kept_root):
        where = os.path.relpath(source, REPO) if source.resolve().is_relative_to(REPO) else str(source)
        restore_run(source, target, {"from": Path(where).as_posix(), "at": _now()})
        into = "" if target == run.run_dir else f" into {target.parent.name}/{target.name} (to link)"
        log(f"{run.condition}/{run.name}: restored from the kept copy {Path(where).as_posix()}{into}: same parameters, "
            "not trained again")
        restored += 1
    return restored


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
        write_bytes_atomic(record_bytes(self.data), self.path)


# ----------------------------------------------------------------------------- executing notebooks


def execute_notebook(name: str, output: Path, parameters: dict, log: Path, in_job: bool = False) -> None:
    """``papermill notebooks/<name> <output>`` in a subprocess with one compute thread; its output
    goes to ``log``.  Raises :class:`StudyError` with the log's tail when the notebook fails.
    ``in_job``: this process is a submitit job (:func:`bind_to_job`)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / name), str(output),
               "-y", json.dumps(parameters), "--cwd", os.getcwd(), "--no-progress-bar"]
    preexec = partial(bind_to_job, os.getpid()) if in_job else None
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise StudyError(f"{name} failed for {output.parent} (exit {result.returncode}); log: {log}\n{tail}")


def downstream_parameters(run: PlannedRun, reports_study: Path) -> dict:
    """Notebook 04 on the run's own dataset: linear and kNN probes of the pretrained encoders (the
    random-init baseline is already in every run's summary.json, so it is not computed again)."""
    return {"run_dir": str(run.run_dir), "dataset": "run", "protocol": "probes", "baseline": False,
            "num_threads": 1, "num_workers": 1, "progress": False,
            "reports_dir": str(reports_study / run.condition / "downstream")}


def execute_run(run: PlannedRun, reports_study: Path, context: dict, in_job: bool = False) -> str:
    """Train (or resume) one run and probe it; returns what was done, for the progress log.
    ``in_job``: called by a submitit job (:class:`RunJob`), passed on to :func:`execute_notebook`."""
    if run.complete:
        return f"skipped (finished){run_numbers(run.run_dir)}"
    record = AttemptRecord(run, context)
    started = time.perf_counter()
    done = []
    try:
        if not run.finished:
            action = "resumed" if (run.run_dir / "checkpoints" / "last.pt").is_file() else "trained"
            execute_notebook("02_pretrain.ipynb", run.run_dir / "02_pretrain.ipynb", run.parameters,
                             run.run_dir / "02_pretrain.log", in_job)
            done.append(action)
        if run.downstream and not run.downstream_finished:
            execute_notebook("04_downstream.ipynb", run.run_dir / "04_downstream.ipynb",
                             downstream_parameters(run, reports_study), run.run_dir / "04_downstream.log", in_job)
            done.append("probed (04)")
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or a submitit job preempted and requeued (RunJob.checkpoint)
        record.end("interrupted")
        raise
    except BaseException:
        record.end("failed")
        raise
    record.end("finished")
    keep_run(run.run_dir, reports_study)  # now, not only with the report: a killed session keeps what finished
    return f"{' + '.join(done)} in {(time.perf_counter() - started) / 60:.1f} min{run_numbers(run.run_dir)}"


def run_numbers(run_dir: Path) -> str:
    """A finished run's key numbers for its line in the study's log (``summary.json``): the probes,
    trained (random init), the final loss and the run's wall time; empty when there is no summary."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text())
    parts = []
    probe, baseline = summary.get("probe"), summary.get("probe_random_init") or {}
    if probe:
        def pair(modality: str, kind: str) -> str:
            base = baseline.get(modality, {}).get(kind)
            return f"{kind} {probe[modality][kind]:.3f}" + (f" ({base:.3f})" if base is not None else "")
        parts.append("probes trained (random init): " + ", ".join(
            f"{modality} {pair(modality, 'linear')} {pair(modality, 'knn')}" for modality in ("video", "audio")))
    if "final_loss" in summary:
        parts.append(f"final loss {summary['final_loss']:.3f}")
    if "wall_s" in summary:
        parts.append(f"{summary.get('steps', '?')} steps, {1000 * summary.get('mean_step_s', 0):.0f} ms/step, "
                     f"wall {summary['wall_s'] / 60:.1f} min")
    return ": " + "; ".join(parts) if parts else ""


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


# ----------------------------------------------------------------------------- one job per run (submitit)

#: where the runs execute: ``local`` is this process's thread pool (:func:`execute_runs`); the others
#: submit every run that is not finished as one submitit job (:func:`submit_runs`): ``debug`` in this
#: process, one at a time (a crash opens pdb), ``submitit-local`` as processes on this machine, ``slurm``
#: as a SLURM job array
EXECUTORS = ("local", "debug", "submitit-local", "slurm")
SUBMITIT_EXECUTORS = EXECUTORS[1:]
#: seconds a stopped notebook gets to checkpoint before it is killed (submitit signals a SLURM job 90 s
#: before it kills it, its default ``signal_delay_s``)
STOP_GRACE_S = 60.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class JobOptions:
    """What each job asks of SLURM (``--slurm-*``), with defaults from this project's measurements.

    ``time_min`` also limits a submitit-local job, which submitit would otherwise stop after 2 minutes;
    past it a job is signalled, checkpointed and requeued as on SLURM.  120 minutes is 12x the longest
    committed study run (9.5 min on the 2-core machine, ``reports/study/runs``); a ``dictionary_size``
    run takes 1.9-4.9 h there (its plan), so SLURM checkpoints and requeues it once to three times.
    16 GB is ~6x the 2.5 GB peak RSS of
    a study-base run's process tree (``python -m avlib.train --clips_per_class 60 --epochs 60
    --max_steps 40``: ``data.peak_rss_mb`` in its summary.json).  2 CPUs: a run's torch thread
    (``num_threads=1``) and its data-loading process (``num_workers=1``).  ``gpus_per_node`` None: a
    SLURM job asks for none and a submitit-local job sees this machine's GPUs (submitit hides them
    otherwise); ``partition`` None: the cluster's default; ``array_parallelism`` None: every run at once."""

    partition: str | None = None
    gpus_per_node: int | None = None
    time_min: int = 120
    cpus_per_task: int = 2
    mem_gb: float = 16.0
    array_parallelism: int | None = None

    def check(self) -> "JobOptions":
        lowest = {"gpus_per_node": 0, "time_min": 1, "cpus_per_task": 1, "array_parallelism": 1}
        for name, low in lowest.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"--slurm-{name.replace('_', '-')}={value!r}: expected an integer >= {low}")
        if not self.mem_gb > 0:
            raise ConfigError(f"--slurm-mem-gb={self.mem_gb!r}: expected a number of GB > 0")
        if self.partition is not None and not self.partition.strip():
            raise ConfigError("--slurm-partition is empty: give a partition name, or leave the option out")
        return self


def make_executor(name: str, folder: Path, options: JobOptions, job_name: str):
    """The submitit executor ``name`` writing its job files and logs into ``folder``."""
    if name == "debug":
        return submitit.DebugExecutor(folder=folder)
    if name == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        gpus = options.gpus_per_node
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count()
        executor.update_parameters(timeout_min=options.time_min, gpus_per_node=gpus)
        return executor
    if name == "slurm":
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as error:  # submitit looks for srun on PATH
            raise ConfigError(f"--executor slurm: {error} (no `srun` on PATH): run the study command on a "
                              "SLURM login node, or use --executor submitit-local on this machine") from None
        parameters = {"timeout_min": options.time_min, "cpus_per_task": options.cpus_per_task,
                      "mem_gb": options.mem_gb, "name": job_name, "tasks_per_node": 1, "nodes": 1}
        if options.gpus_per_node:
            parameters["gpus_per_node"] = options.gpus_per_node
        if options.partition:
            parameters["slurm_partition"] = options.partition
        if options.array_parallelism:
            parameters["slurm_array_parallelism"] = options.array_parallelism
        executor.update_parameters(**parameters)
        return executor
    raise ConfigError(f"executor={name!r} is not valid; valid choices: {list(SUBMITIT_EXECUTORS)}")


def bind_to_job(job_pid: int) -> None:
    """Run in a notebook's process between fork and exec (``preexec_fn``), when a submitit job runs it.

    The notebook dies with the job (Linux ``PR_SET_PDEATHSIG``; its kernel follows within a second,
    ipykernel's parent poller), as every process of a killed SLURM job does: a SIGKILLed local job
    would otherwise leave its notebook training, holding the run folder's lock against the job that
    resubmits the run.  And the notebook ignores submitit's preemption signal (USR2), which SLURM may
    send to every process of the job: the job handles it (:meth:`RunJob.checkpoint`), while USR2's
    default action would kill the kernel before it writes a checkpoint."""
    signal.signal(submitit.JobEnvironment._usr_sig(), signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != job_pid:  # the job died before prctl took effect
            os._exit(1)


def process_children(pid: int) -> dict[int, list[int]]:
    """Every live process's children, read from /proc (Linux; empty elsewhere); zombies left out."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError, IndexError):  # the process ended meanwhile
            continue
        if state != "Z":
            children.setdefault(int(parent), []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid``, parents before their children."""
    children, found, frontier = process_children(pid), [], [pid]
    while frontier:
        below = children.get(frontier.pop(0), [])
        found += below
        frontier += below
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_notebooks(job_pid: int, grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop the job's notebook as a scheduler stops a training: SIGTERM to the kernel and what runs under
    it (not to papermill, the job's child, which would die and take the kernel with it before the
    checkpoint), so the training loop finishes its step, writes ``checkpoints/last.pt`` and exits
    (``avlib.train.loop``); papermill then ends by itself.  Whatever still lives after ``grace_s`` is
    killed.  Returns the processes that were stopped."""
    below = descendants(job_pid)
    direct = set(process_children(job_pid).get(job_pid, []))
    for pid in below:
        if pid not in direct:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    while any(_alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in below:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return below


class RunJob(submitit.helpers.Checkpointable):
    """One planned run as one submitit job.

    A module-level class, so that the job pickles by reference: its process imports this module, which
    is light (the notebook's kernel imports avlib.train, not the job).  It returns ``("finished" |
    "failed", message)``: a failed notebook is a result to report, like in :func:`execute_runs`, not a
    crashed job.

    Preemption and time limits: submitit signals the job (USR2, 90 s before SLURM's time limit, or when
    the cluster preempts it with that signal) and calls :meth:`checkpoint`, which stops the notebook
    the way the training loop expects (:func:`stop_notebooks`: the loop writes a checkpoint at the
    step it is at) and hands submitit the same call to requeue.  The requeued job calls
    :func:`execute_run` again, which finds ``checkpoints/last.pt`` and resumes the run, to the same
    results as an uninterrupted one.  A job that ends without being requeued (killed outright,
    cancelled, requeued too often) leaves its run unfinished; the study command run again submits it."""

    def __init__(self, run: PlannedRun, reports_study: Path, context: dict):
        self.run, self.reports_study, self.context = run, Path(reports_study), dict(context)

    def __call__(self) -> tuple[str, str]:
        environment = submitit.JobEnvironment()
        context = {**self.context, "job_id": environment.job_id, "host": environment.hostname}
        if environment.hostname != self.context.get("submitted_from"):
            context["machine"] = machine()  # a cluster node, not the machine that submitted the job
        try:
            return "finished", execute_run(self.run, self.reports_study, context, in_job=True)
        except StudyError as error:
            return "failed", str(error)

    def checkpoint(self, *args, **kwargs):
        started = time.monotonic()
        stopped = stop_notebooks(os.getpid())
        # the requeued attempt overwrites the notebook's log: keep how it stopped in the job's own log
        logs = [p for p in (self.run.run_dir / "02_pretrain.log", self.run.run_dir / "04_downstream.log") if p.is_file()]
        tail = "\n".join(max(logs, key=lambda p: p.stat().st_mtime).read_text().splitlines()[-6:]) if logs else ""
        print(f"{self.run.condition}/{self.run.name}: preempted; stopped {len(stopped)} notebook process(es) in "
              f"{time.monotonic() - started:.1f} s; the notebook's log ended with:\n{tail}", flush=True)
        return super().checkpoint(*args, **kwargs)  # the same call: the run resumes from its own checkpoint


def _job_failure(run: PlannedRun, job, error: Exception) -> str:
    """A job that gave no result (killed, out of requeues, crashed outside the notebook)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    head = lines[0] if lines else type(error).__name__
    return (f"{run.condition}/{run.name}: job {job.job_id} ended without a result ({head}); logs: "
            f"{job.paths.stdout}, {job.paths.stderr}; run the study command again to resume the run\n"
            + "\n".join(lines[-12:]))


def submit_array(executor, runs: list[PlannedRun], reports_study: Path, context: dict) -> dict:
    """``runs`` as one job array of ``executor`` (one ``sbatch`` on SLURM); returns job -> run."""
    with executor.batch():
        submitted = [executor.submit(RunJob(run, reports_study, context)) for run in runs]
    return dict(zip(submitted, runs))


def submit_runs(runs: list[PlannedRun], reports_study: Path, executor: str, jobs: int = 2,
                options: JobOptions | None = None, log=print, poll_s: float | None = None) -> list[str]:
    """Every run that is not finished as one submitit job each (:class:`RunJob`), waited for and
    collected as :func:`execute_runs` collects its threads: the same progress lines, the same failures
    list (the other runs go on).  Job files and logs go to ``RUNS_ROOT/<condition>/submitit/``.

    ``submitit-local`` runs at most ``jobs`` at once (submitit's local executor starts every job it is
    given); ``slurm`` submits one job array, ``options.array_parallelism`` at a time; ``debug`` runs
    them here, one after the other.  The runs are validated and their datasets prepared here first,
    as for the thread pool (on a cluster the data home must be on a filesystem every node sees)."""
    if executor not in SUBMITIT_EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not valid for submit_runs; valid choices: "
                          f"{list(SUBMITIT_EXECUTORS)} ('local' is execute_runs)")
    if jobs < 1:
        raise ConfigError(f"parameter jobs={jobs!r} must be >= 1")
    options = (options or JobOptions()).check()
    check_existing_folders(runs)
    prepare_datasets(runs, log)
    todo = [run for run in runs if not run.complete]
    limit = {"debug": 1, "submitit-local": jobs, "slurm": options.array_parallelism or max(len(todo), 1)}[executor]
    context = {**git_state(), "machine": machine(), "packages": locked_versions(), "jobs": limit,
               "executor": executor, "submitted_from": platform.node()}
    failures, count = [], 0
    for run in runs:
        if run.complete:
            count += 1
            log(f"[{count}/{len(runs)}] {run.condition}/{run.name}: skipped (finished)")
    if not todo:
        return failures
    executors = {}
    for run in todo:  # one folder per condition (the runs of one study command share it)
        folder = run.run_dir.parent / "submitit"
        if folder not in executors:
            executors[folder] = make_executor(executor, folder, options, job_name=f"avlib-{run.condition}")
    poll_s = poll_s if poll_s is not None else (15.0 if executor == "slurm" else 0.5)
    waiting, running = list(todo), {}
    if executor == "slurm":  # one array per condition; SLURM keeps array_parallelism of it running
        for folder, ex in executors.items():
            group = [run for run in waiting if run.run_dir.parent / "submitit" == folder]
            submitted = submit_array(ex, group, reports_study, context)
            running.update(submitted)
            log(f"submitted {len(group)} job(s) to SLURM: {', '.join(job.job_id for job in submitted)} "
                f"(logs: {folder})")
        waiting = []
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                run = waiting.pop(0)
                job = executors[run.run_dir.parent / "submitit"].submit(RunJob(run, reports_study, context))
                if executor == "submitit-local":
                    job._results_timeout_s = 2  # submitit waits 15 s for a late result file on a cluster's filesystem
                running[job] = run
            for job, run in list(running.items()):
                if not job.done():
                    continue
                del running[job]
                count += 1
                try:
                    status, message = job.result()
                except Exception as error:  # submitit's UncompletedJobError / FailedJobError
                    status, message = "failed", _job_failure(run, job, error)
                if status == "finished":
                    log(f"[{count}/{len(runs)}] {run.condition}/{run.name}: {message}")
                else:
                    failures.append(message)
                    log(f"[{count}/{len(runs)}] {run.condition}/{run.name}: FAILED\n{message}")
            if running:
                time.sleep(poll_s)
    except BaseException:  # Ctrl-C: local jobs stop with this command (their runs resume later); SLURM's go on
        if executor == "slurm" and running:
            log(f"{len(running)} SLURM job(s) still queued or running ({' '.join(j.job_id for j in running)}): "
                "scancel them, or run the same command again once they are done to collect them")
        else:
            for job in running:
                job.cancel(check=False)
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
    diversity/``; skipped when ``inputs.json`` there already names the same finished runs, and when one of
    them was restored from a kept copy (the notebook reads metrics.csv and snapshots, which are not kept:
    the figures already under ``reports/study/<condition>/diversity/`` are from when the runs ran)."""
    run_dirs = diversity_runs(condition, runs_root)
    if not run_dirs:
        return
    restored = [p for p in run_dirs if is_restored(p)]
    if restored:
        log(f"{condition.name}: diversity notebook skipped: {', '.join(p.name for p in restored)} restored from "
            "kept copies (no metrics.csv or snapshots)")
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
