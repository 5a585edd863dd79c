"""What the study command would do for a condition, without doing it (``python -m avlib.study --plan``).

Each planned run is, in the order the command settles it: **finished** (its folder holds ``summary.json``,
or is a link to a finished twin), **restore** (a kept copy of a finished run with the same parameters
exists under ``reports/study/runs/``: :func:`avlib.study.run.restore_kept`), **link** (another
condition's finished run, or kept copy, has the same parameters: :func:`avlib.study.run.link_twins`),
**resume** (its folder holds a checkpoint) or **train**.  The command's own line, "N runs under ... (K
already finished)", counts the first three, since it is printed after restoring and linking.

The hours are the run time of what is left to train, estimated per variant from the finished runs'
``summary.json`` ``wall_s`` (kept copies and run folders): of the runs with the same parameters but the
seed; else of those that differ in one more parameter (named in the plan, e.g. ``label_noise`` for
``label_quality``'s noisy variants, estimated at their ground-truth twins'); else no estimate.  The runs'
``wall_s`` were measured at the ``jobs`` their record names (two runs sharing two cores for the committed
ones): the estimate is run time at that load, and the study's wall time is about run time / jobs.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from avlib.config import PretrainConfig
from avlib.study.kept import RECORD
from avlib.study.run import PlannedRun, finished_by_parameters, restore_sources, same_run_parameters

#: the states of a planned run, in the order the study command settles them
STATES = ("finished", "restore", "link", "resume", "train")


@dataclass
class PlannedState:
    run: PlannedRun
    state: str  # one of STATES
    source: Path | None = None  # the folder or kept copy it is restored from or linked to
    # to train, but the same parameters as a run another condition plans ("<condition>/<run>"): whichever of
    # the two conditions runs first trains it, the other links it
    planned_twin: str | None = None


def _key(run: PlannedRun) -> str:
    return json.dumps(same_run_parameters(PretrainConfig.from_dict(run.parameters).to_dict()), sort_keys=True)


def planned_elsewhere(condition: str, runs_root: Path) -> dict[str, str]:
    """``parameters key -> "<condition>/<run>"`` of every run the other conditions plan at their own seeds."""
    from avlib.study.conditions import CONDITIONS
    from avlib.study.run import plan_runs

    found = {}
    for name, other in CONDITIONS.items():
        if name != condition:
            for run in plan_runs(other, runs_root, other.seeds, downstream=False):
                found.setdefault(_key(run), f"{name}/{run.name}")
    return found


def plan_states(runs: list[PlannedRun], runs_root: Path, kept_root: Path,
                elsewhere: dict[str, str] | None = None) -> list[PlannedState]:
    """The state of every planned run (nothing is written); ``elsewhere``: :func:`planned_elsewhere`, to name
    the runs to train that another condition plans too."""
    restores = {id(run): source for run, source, _ in restore_sources(runs, runs_root, kept_root)}
    in_folders = finished_by_parameters(runs_root)
    kept = finished_by_parameters(kept_root) if Path(kept_root).is_dir() else {}
    states = []
    for run in runs:
        key = _key(run)
        if run.finished:
            states.append(PlannedState(run, "finished", run.run_dir.resolve() if run.run_dir.is_symlink() else None))
        elif id(run) in restores:
            source = restores[id(run)]
            state = "restore" if source.parent.name == run.condition else "link"
            states.append(PlannedState(run, state, source))
        elif not run.run_dir.exists() and (twin := next(
                (t for t in (in_folders.get(key), kept.get(key)) if t is not None and t.parent.name != run.condition),
                None)) is not None:
            states.append(PlannedState(run, "link", twin))
        elif (run.run_dir / "checkpoints" / "last.pt").is_file():
            states.append(PlannedState(run, "resume"))
        else:
            states.append(PlannedState(run, "train", planned_twin=(elsewhere or {}).get(key)))
    return states


def finished_walls(roots: list[Path]) -> list[tuple[dict, float, int | None]]:
    """``(parameters, wall_s, jobs)`` of every finished run under ``roots`` (a run in two roots counted once,
    by its parameters)."""
    seen, found = set(), []
    for root in roots:
        for key, run_dir in (finished_by_parameters(root) if Path(root).is_dir() else {}).items():
            if key in seen:
                continue
            seen.add(key)
            summary = json.loads((run_dir / "summary.json").read_text())
            if "wall_s" not in summary:
                continue
            record_path = run_dir / RECORD
            attempts = json.loads(record_path.read_text()).get("attempts", []) if record_path.is_file() else []
            jobs = attempts[-1].get("jobs") if attempts else None
            found.append((json.loads(key), float(summary["wall_s"]), jobs))
    return found


def estimate_wall(run: PlannedRun, finished: list[tuple[dict, float, int | None]]) -> tuple[float | None, str]:
    """Mean ``wall_s`` of the finished runs nearest in parameters (seed aside: the same, or one more
    parameter different), and what the estimate is based on."""
    want = same_run_parameters(PretrainConfig.from_dict(run.parameters).to_dict())
    by_distance: dict[int, list[tuple[float, tuple[str, ...], int | None]]] = {}
    for have, wall_s, jobs in finished:
        differ = tuple(sorted(k for k in set(want) | set(have) if k != "seed" and want.get(k) != have.get(k)))
        if len(differ) <= 1:
            by_distance.setdefault(len(differ), []).append((wall_s, differ, jobs))
    for distance in (0, 1):
        rows = by_distance.get(distance)
        if not rows:
            continue
        if distance == 1:  # the runs that differ in the most common single parameter
            name = Counter(r[1] for r in rows).most_common(1)[0][0]
            rows = [r for r in rows if r[1] == name]
        jobs = sorted({r[2] for r in rows if r[2]})
        at = f" at {'/'.join(map(str, jobs))} job(s)" if jobs else ""
        basis = (f"{len(rows)} finished run(s) of its parameters{at}" if distance == 0 else
                 f"{len(rows)} finished run(s) differing in {rows[0][1][0]}{at}")
        return sum(r[0] for r in rows) / len(rows), basis
    return None, "no finished run within one parameter"


def plan_text(condition: str, states: list[PlannedState], runs_root: Path, finished: list, jobs: int) -> str:
    """The plan as the command prints it: its usual first line (with the count it would report), the states,
    and per variant the runs left to train with their estimated hours."""
    counts = Counter(s.state for s in states)
    already = counts["finished"] + counts["restore"] + counts["link"]
    lines = [f"condition {condition}: {len(states)} runs under {runs_root / condition} ({already} already finished)",
             "  " + ", ".join(f"{counts[state]} {state}" for state in STATES)
             + " (finished: folders with summary.json; restore: kept copies of this condition; link: another "
             "condition's run of the same parameters, restored first where only its kept copy exists)"]
    todo: dict[str, list[PlannedState]] = {}
    for s in states:
        if s.state in ("train", "resume"):
            todo.setdefault(s.run.variant.name, []).append(s)
    total, unknown = 0.0, []
    for variant, items in todo.items():
        wall_s, basis = estimate_wall(items[0].run, finished)
        seeds = ",".join(str(s.run.seed) for s in items)
        if wall_s is None:
            unknown.append(variant)
            lines.append(f"  {variant}: {len(items)} to train (seeds {seeds}), no estimate ({basis})")
            continue
        total += wall_s * len(items)
        lines.append(f"  {variant}: {len(items)} to train (seeds {seeds}), {wall_s / 60:.1f} min a run ({basis}): "
                     f"{wall_s * len(items) / 3600:.2f} h")
    to_train = counts["train"] + counts["resume"]
    shared = [s for s in states if s.planned_twin]
    if shared:
        others = sorted({s.planned_twin.split("/")[0] for s in shared})
        lines.append(f"  of those, {len(shared)} are the same runs as {', '.join(others)} plan(s) (e.g. {shared[0].run.name} = "
                     f"{shared[0].planned_twin}): trained once, by whichever condition runs first, and linked by the other")
    lines.append(f"  to train: {to_train} runs, {total / 3600:.2f} h of run time"
                 + (f" plus {len(unknown)} variant(s) without an estimate ({', '.join(unknown)})" if unknown else "")
                 + f"; about {total / 3600 / max(jobs, 1):.2f} h of wall time with --jobs {jobs} if the runs' load "
                 "matches their estimates'")
    return "\n".join(lines)
