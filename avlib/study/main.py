"""The study command: ``python -m avlib.study --condition samplers --jobs 2``.

Order: runs of which a finished copy with the same parameters is kept under REPORTS_DIR/study/runs/ (from
an earlier session: runs/ is not committed) get their folder back from it (``restore_kept``); runs that
repeat a finished run of another condition are linked to it (``link_twins``);
every other pretraining run of the condition (02, and 04 on each variant's first seed unless
``--no-downstream``), ``jobs`` at a time; then notebook 03 over the condition; then the report
over every condition whose run folders exist under ``--runs-root``.  Failed runs do not stop the
others; the command then exits non-zero, naming them, after writing the report from what finished.

``--executor submitit-local|slurm|debug`` runs each unfinished pretraining run as one submitit job
instead (``slurm``: a job array with the ``--slurm-*`` requests; logs in RUNS_ROOT/<condition>/submitit/);
this command waits for them, then goes on as above.  Run it again to resubmit what a killed job left.
``--plan`` prints what the command would do (finished, restored, linked, to train, and the hours) and
changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avlib.config import ConfigError
from avlib.study.conditions import CONDITIONS, DEFAULT_CONDITION, get_condition
from avlib.study.kept import KEPT
from avlib.study.report import write_report
from avlib.study.run import (EXECUTORS, JobOptions, execute_diversity, execute_runs, link_twins, parse_overrides,
                             plan_runs, restore_kept, submit_runs)


def bf16_note(runs, native: bool | None = None) -> str | None:
    """A line for the log when runs autocast to bf16 (``dictionary_size``) on a machine without CUDA whose
    CPU has no native bf16 (avx512_bf16 / AMX): they give the same answer there (``bench/precision_check.py``)
    but are slower than in fp32, not ~1.8x faster (``reports/bench_precision.md``)."""
    import torch  # here: the study command imports no torch until it trains

    from avlib.kernels import native_bf16

    bf16 = [run for run in runs if run.parameters.get("precision") == "bf16" and not run.finished]
    if not bf16 or torch.cuda.is_available():
        return None
    if native is None:
        native = native_bf16()
    if native:
        return None
    return (f"note: {len(bf16)} run(s) use precision=bf16 (their condition sets it to save CPU time) but this CPU "
            "has no native bf16 (avx512_bf16 / AMX): they will run slower than in fp32 here, where bf16 is emulated; "
            "a CUDA machine or a CPU with bf16 runs them faster.")


def run_study(condition: str = DEFAULT_CONDITION, *, jobs: int = 2, runs_root: str | Path = "runs/study",
              reports_dir: str | Path = "reports", seeds=None, variants=None, overrides=None,
              umap: bool = True, downstream: bool = True, executor: str = "local",
              job_options: JobOptions | None = None, log=print) -> tuple[Path, list[str]]:
    """Run (or finish) ``condition`` and rebuild the report; returns the report's path and the failures.
    ``seeds`` default to the condition's own (``Condition.seeds``); ``executor`` is one of
    :data:`~avlib.study.run.EXECUTORS` (``local``: ``jobs`` threads here; else one submitit job per run)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not valid; valid choices: {list(EXECUTORS)}")
    chosen = get_condition(condition)
    seeds = chosen.seeds if seeds is None else seeds
    runs_root, reports_dir = Path(runs_root), Path(reports_dir)
    runs = plan_runs(chosen, runs_root, seeds, variants, overrides, downstream=downstream)
    restore_kept(runs, runs_root, reports_dir / KEPT, log=log)
    link_twins(runs, runs_root, log=log)
    where = f"{jobs} job(s)" if executor == "local" else f"executor {executor}"
    log(f"condition {condition}: {len(runs)} runs under {runs_root / condition} "
        f"({sum(r.finished for r in runs)} already finished), {where}")
    note = bf16_note(runs) if executor == "local" else None
    if note:
        log(note)
    if executor == "local":
        failures = execute_runs(runs, reports_dir / "study", jobs, log=log)
    else:
        failures = submit_runs(runs, reports_dir / "study", executor, jobs=jobs, options=job_options, log=log)
    try:
        execute_diversity(chosen, runs_root, reports_dir / "study", umap, log=log)
    except Exception as error:  # the report is still worth writing from the runs that finished
        failures.append(str(error))
        log(f"{condition}: diversity notebook FAILED\n{error}")
    report = write_report(runs_root, reports_dir)
    log(f"report: {report}")
    return report, failures


def plan_study(condition: str = DEFAULT_CONDITION, *, jobs: int = 2, runs_root: str | Path = "runs/study",
               reports_dir: str | Path = "reports", seeds=None, variants=None, overrides=None) -> str:
    """What :func:`run_study` would do with the same arguments, as text, changing nothing: the line it would
    print ("N runs ... (K already finished)"), each run's state and the hours left (:mod:`avlib.study.plan`)."""
    from avlib.study.plan import finished_walls, plan_states, plan_text, planned_elsewhere

    chosen = get_condition(condition)
    seeds = chosen.seeds if seeds is None else seeds
    runs_root, reports_dir = Path(runs_root), Path(reports_dir)
    runs = plan_runs(chosen, runs_root, seeds, variants, overrides, downstream=False)
    states = plan_states(runs, runs_root, reports_dir / KEPT, planned_elsewhere(condition, runs_root))
    return plan_text(condition, states, runs_root, finished_walls([runs_root, reports_dir / KEPT]), jobs)


#: --slurm-* options that submitit-local also applies; the others ask only SLURM
LOCAL_JOB_OPTIONS = {"gpus_per_node", "time_min"}


def _job_options(args, parser) -> JobOptions:
    """The ``--slurm-*`` options given, checked against ``--executor`` (an option the executor would
    ignore is refused, not dropped silently)."""
    names = [name for name in JobOptions.__dataclass_fields__ if getattr(args, f"slurm_{name}") is not None]
    allowed = {"slurm": set(names), "submitit-local": LOCAL_JOB_OPTIONS}.get(args.executor, set())
    ignored = [name for name in names if name not in allowed]
    if ignored:
        flags = ", ".join(f"--slurm-{name.replace('_', '-')}" for name in ignored)
        parser.error(f"{flags} would be ignored by --executor {args.executor}: "
                     + ("they ask SLURM only (use --executor slurm)" if args.executor == "submitit-local"
                        else "use --executor slurm (or submitit-local for --slurm-time-min, --slurm-gpus-per-node)"))
    return JobOptions(**{name: getattr(args, f"slurm_{name}") for name in names}).check()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--condition", default=DEFAULT_CONDITION, choices=list(CONDITIONS),
                        help=f"which sweep to run (default {DEFAULT_CONDITION}); see avlib/study/conditions.py")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs at a time, one torch thread each (default 2); also submitit-local's limit")
    parser.add_argument("--executor", default="local", choices=EXECUTORS,
                        help="local: --jobs threads here (default); submitit-local: one local process per run; "
                             "slurm: one SLURM job per run (an array); debug: submitit's, in this process")
    slurm = parser.add_argument_group("SLURM requests of each job (--executor slurm; the two marked * also "
                                      "apply to submitit-local)")
    slurm.add_argument("--slurm-partition", help="partition (default: the cluster's)")
    slurm.add_argument("--slurm-gpus-per-node", type=int,
                       help="* GPUs per job (SLURM default 0; submitit-local default: every GPU here); "
                            "pass --set device=cuda for the runs to use them")
    slurm.add_argument("--slurm-time-min", type=int,
                       help=f"* time limit per job in minutes (default {JobOptions.time_min}); a job that "
                            "reaches it is checkpointed and requeued")
    slurm.add_argument("--slurm-cpus-per-task", type=int, help=f"CPUs per job (default {JobOptions.cpus_per_task})")
    slurm.add_argument("--slurm-mem-gb", type=float, help=f"memory per job in GB (default {JobOptions.mem_gb:g})")
    slurm.add_argument("--slurm-array-parallelism", type=int,
                       help="jobs of the array running at once (default: all)")
    parser.add_argument("--runs-root", default="runs/study", help="run folders go to RUNS_ROOT/<condition>/<variant>_seed<k>")
    parser.add_argument("--reports-dir", default="reports", help="REPORT.md and study/ (figures, notebooks) go here")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds (default: the condition's, 0 1 2 or 0..4; see avlib/study/conditions.py)")
    parser.add_argument("--variants", nargs="+", help="only these variants of the condition (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="a PretrainConfig parameter for every run, e.g. --set epochs=20 (repeatable)")
    parser.add_argument("--no-downstream", dest="downstream", action="store_false",
                        help="skip notebook 04 on the first seeds (the runs' summary.json has their probes)")
    parser.add_argument("--no-umap", dest="umap", action="store_false", help="skip notebook 03's UMAP figure")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the run folders")
    parser.add_argument("--plan", action="store_true",
                        help="print what the command would do (finished, restored from kept copies, linked, to "
                             "train) and the hours left, and stop: nothing is trained or written")
    parser.add_argument("--from-kept", action="store_true",
                        help="with --report-only: read the copies of each run's small files kept under "
                             "REPORTS_DIR/study/runs/ instead of RUNS_ROOT (where the run folders are gone)")
    args = parser.parse_args(argv)
    if args.from_kept and not args.report_only:
        parser.error("--from-kept only rebuilds the report: add --report-only")
    if args.plan and args.report_only:
        parser.error("--plan prints the runs' plan; --report-only rebuilds the report: give one of them")
    try:
        job_options = _job_options(args, parser)
        if args.plan:
            print(plan_study(args.condition, jobs=args.jobs, runs_root=args.runs_root, reports_dir=args.reports_dir,
                             seeds=args.seeds, variants=args.variants, overrides=parse_overrides(args.overrides)))
            return 0
        if args.report_only:
            print(f"report: {write_report(Path(args.runs_root), Path(args.reports_dir), kept=args.from_kept)}")
            return 0
        _, failures = run_study(args.condition, jobs=args.jobs, runs_root=args.runs_root,
                                reports_dir=args.reports_dir, seeds=args.seeds, variants=args.variants,
                                overrides=parse_overrides(args.overrides), umap=args.umap,
                                downstream=args.downstream, executor=args.executor, job_options=job_options)
    except ConfigError as error:
        parser.error(str(error))
    if failures:
        print(f"{len(failures)} failure(s); the report covers the runs that finished:", file=sys.stderr)
        for failure in failures:
            print(" -", failure.splitlines()[0], file=sys.stderr)
        return 1
    return 0
