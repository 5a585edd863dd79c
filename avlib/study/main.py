"""The study command: ``python -m avlib.study --condition samplers --jobs 2``.

Order: runs that repeat a finished run of another condition are linked to it (``link_twins``);
every other pretraining run of the condition (02, and 04 on each variant's first seed unless
``--no-downstream``), ``jobs`` at a time; then notebook 03 over the condition; then the report
over every condition whose run folders exist under ``--runs-root``.  Failed runs do not stop the
others; the command then exits non-zero, naming them, after writing the report from what finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avlib.config import ConfigError
from avlib.study.conditions import CONDITIONS, DEFAULT_CONDITION, get_condition
from avlib.study.report import write_report
from avlib.study.run import execute_diversity, execute_runs, link_twins, parse_overrides, plan_runs


def run_study(condition: str = DEFAULT_CONDITION, *, jobs: int = 2, runs_root: str | Path = "runs/study",
              reports_dir: str | Path = "reports", seeds=None, variants=None, overrides=None,
              umap: bool = True, downstream: bool = True, log=print) -> tuple[Path, list[str]]:
    """Run (or finish) ``condition`` and rebuild the report; returns the report's path and the failures.
    ``seeds`` default to the condition's own (``Condition.seeds``)."""
    chosen = get_condition(condition)
    seeds = chosen.seeds if seeds is None else seeds
    runs_root, reports_dir = Path(runs_root), Path(reports_dir)
    runs = plan_runs(chosen, runs_root, seeds, variants, overrides, downstream=downstream)
    link_twins(runs, runs_root, log=log)
    log(f"condition {condition}: {len(runs)} runs under {runs_root / condition} "
        f"({sum(r.finished for r in runs)} already finished), {jobs} job(s)")
    failures = execute_runs(runs, reports_dir / "study", jobs, log=log)
    try:
        execute_diversity(chosen, runs_root, reports_dir / "study", umap, log=log)
    except Exception as error:  # the report is still worth writing from the runs that finished
        failures.append(str(error))
        log(f"{condition}: diversity notebook FAILED\n{error}")
    report = write_report(runs_root, reports_dir)
    log(f"report: {report}")
    return report, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--condition", default=DEFAULT_CONDITION, choices=list(CONDITIONS),
                        help=f"which sweep to run (default {DEFAULT_CONDITION}); see avlib/study/conditions.py")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each (default 2)")
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
    parser.add_argument("--from-kept", action="store_true",
                        help="with --report-only: read the copies of each run's small files kept under "
                             "REPORTS_DIR/study/runs/ instead of RUNS_ROOT (where the run folders are gone)")
    args = parser.parse_args(argv)
    if args.from_kept and not args.report_only:
        parser.error("--from-kept only rebuilds the report: add --report-only")
    try:
        if args.report_only:
            print(f"report: {write_report(Path(args.runs_root), Path(args.reports_dir), kept=args.from_kept)}")
            return 0
        _, failures = run_study(args.condition, jobs=args.jobs, runs_root=args.runs_root,
                                reports_dir=args.reports_dir, seeds=args.seeds, variants=args.variants,
                                overrides=parse_overrides(args.overrides), umap=args.umap,
                                downstream=args.downstream)
    except ConfigError as error:
        parser.error(str(error))
    if failures:
        print(f"{len(failures)} failure(s); the report covers the runs that finished:", file=sys.stderr)
        for failure in failures:
            print(" -", failure.splitlines()[0], file=sys.stderr)
        return 1
    return 0
