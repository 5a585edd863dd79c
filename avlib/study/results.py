"""The study's results as the report reads them: each condition's finished runs and their numbers.

A run is read from its folder (``config.json``, ``summary.json``, ``study_run.json``, and the
dictionary diversity from ``metrics.csv``), or from the copies kept beside the report under
``reports/study/runs/<condition>/<run>/`` (:data:`KEPT`), which hold the same three files and
``diversity.json`` (the end-of-training diversity rows, written when the report is built from the
run folders; runs kept before it existed lack it).  The kept copies let the report be rebuilt
without the run folders (``python -m avlib.study --report-only --from-kept``): a run that two
conditions share (:func:`avlib.study.run.link_twins`) is kept once under the condition that
trained it, so :func:`collect` with ``twins=True`` finds it for the other condition by its
parameters, as ``link_twins`` does.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlib.config import PretrainConfig
from avlib.study.conditions import Condition, Variant
from avlib.study.kept import DIVERSITY_RECORD, RECORD, write_if_changed  # write_if_changed: for findings
from avlib.study.run import finished_by_parameters, plan_runs, same_run_parameters

MODALITIES = ("video", "audio")
PROBES = ("linear", "knn")
#: the linear probe on 5 labelled clips a class (``avlib.eval.probe.low_shot_probe``), in runs since it exists
LOW_SHOT_PROBE = "linear_5shot"
PROBE_NAMES = {"linear": "linear", "knn": "kNN", LOW_SHOT_PROBE: "linear 5-shot"}
#: in a condition's kept folder: its runs that are another condition's (run name -> "<condition>/<run>"),
#: so that a condition made only of such runs has a kept folder too
LINKS = "links.json"
_RUN_NAME = re.compile(r"^(?P<variant>.+)_seed(?P<seed>\d+)$")


@dataclass
class RunResult:
    variant: Variant
    seed: int
    run_dir: Path  # the folder the files are read from (a kept copy: the origin's, for a twin)
    config: dict
    summary: dict
    record: dict  # study_run.json ({} for a run the study command did not launch)
    diversity: dict  # modality -> avlib.analysis.diversity.end_of_training row ({} where not kept)
    downstream: dict | None  # (modality, protocol) -> clip-level accuracy of notebook 04, or None
    # "<condition>/<run>" this run stands for when it is another condition's run found by its parameters
    # (kept copies, twins=True); None when it was read from its own folder (or a link to a twin's)
    twin_of: str | None = None

    @property
    def name(self) -> str:
        return f"{self.variant.name}_seed{self.seed}"

    @property
    def linked(self) -> bool:
        """Another condition's run (a symbolic link made by link_twins, or a twin found in the kept copies)."""
        return self.twin_of is not None or self.run_dir.is_symlink()

    @property
    def origin(self) -> str:
        """``<condition>/<run>`` of the folder that trained it."""
        resolved = self.run_dir.resolve()
        return f"{resolved.parent.name}/{resolved.name}"

    def probe(self, modality: str, kind: str) -> float:
        return float(self.summary["probe"][modality][kind])

    def probe_or_none(self, modality: str, key: str) -> float | None:
        """A probe result that runs before it existed lack (``linear_balanced``, ``knn_tail``, ...)."""
        value = self.summary.get("probe", {}).get(modality, {}).get(key)
        return None if value is None else float(value)


@dataclass
class ConditionResults:
    condition: Condition
    runs: list[RunResult]
    incomplete: list[str]  # run folders without summary.json

    def of(self, variant: Variant) -> list[RunResult]:
        return [r for r in self.runs if r.variant == variant]

    def method_at(self, method: str, level) -> list[RunResult]:
        return [r for r in self.runs if r.variant.method == method and r.variant.level == level]

    @property
    def variants(self) -> list[Variant]:
        present = {r.variant for r in self.runs}
        return [v for v in self.condition.variants if v in present]

    @property
    def has_diversity(self) -> bool:
        return any(r.diversity for r in self.runs)


def _read_downstream(run_dir: Path) -> dict | None:
    path = run_dir / "downstream" / "run" / "results.json"
    if not path.is_file():
        return None
    table = json.loads(path.read_text())["table"]
    return {(row["modality"], row["protocol"]): row["clip_mean"] for row in table if row["encoder"] == "pretrained"}


def _read_diversity(run_dir: Path) -> dict:
    """End-of-training diversity per modality: from metrics.csv, else the kept diversity.json, else {}."""
    if (run_dir / "metrics.csv").is_file():
        from avlib.analysis.diversity import end_of_training

        return {m: end_of_training(run_dir, m) for m in MODALITIES}
    kept = run_dir / DIVERSITY_RECORD
    return json.loads(kept.read_text()) if kept.is_file() else {}


def _read_run(variant: Variant, seed: int, run_dir: Path, twin_of: str | None = None) -> RunResult:
    record_path = run_dir / RECORD
    return RunResult(variant, seed, run_dir, json.loads((run_dir / "config.json").read_text()),
                     json.loads((run_dir / "summary.json").read_text()),
                     json.loads(record_path.read_text()) if record_path.is_file() else {},
                     _read_diversity(run_dir), _read_downstream(run_dir), twin_of)


def collect(condition: Condition, runs_root: Path, twins: bool = False) -> ConditionResults:
    """The condition's finished runs, in the condition's variant order, then by seed.

    ``twins=True`` (the kept copies of a condition that ran, i.e. has a folder): a planned run of the
    condition's own seeds without a folder is another condition's finished run of the same
    parameters, if there is one -- the run ``link_twins`` linked when the condition ran."""
    folder = runs_root / condition.name
    by_name = {v.name: v for v in condition.variants}
    runs, incomplete = [], []
    for run_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _RUN_NAME.match(run_dir.name)
        if not run_dir.is_dir() or not match or match["variant"] not in by_name:
            continue
        if not (run_dir / "summary.json").is_file():
            incomplete.append(run_dir.name)
            continue
        runs.append(_read_run(by_name[match["variant"]], int(match["seed"]), run_dir))
    if twins and folder.is_dir():
        have = {(r.variant.name, r.seed) for r in runs}
        seeds = sorted(set(condition.seeds) | {r.seed for r in runs})
        finished = None
        for planned in plan_runs(condition, runs_root, seeds, downstream=False):
            if (planned.variant.name, planned.seed) in have:
                continue
            if finished is None:
                finished = finished_by_parameters(runs_root)
            key = json.dumps(same_run_parameters(PretrainConfig.from_dict(planned.parameters).to_dict()),
                             sort_keys=True)
            twin = finished.get(key)
            if twin is not None and twin.parent.name != condition.name:
                runs.append(_read_run(planned.variant, planned.seed, twin,
                                      twin_of=f"{twin.parent.name}/{twin.name}"))
    order = {v.name: i for i, v in enumerate(condition.variants)}
    runs.sort(key=lambda r: (order[r.variant.name], r.seed))
    return ConditionResults(condition, runs, incomplete)


def metric_values(results: ConditionResults, method: str, level, metric: str) -> dict[int, float]:
    """``seed -> value`` of ``metric`` ("video linear", "audio linear_tail", "video entropy", ...) for the
    runs of ``method`` at ``level``, in points for probes (a probe a run predates is left out).  The
    dictionary measures are signed so that higher is the claimed improvement (fewer biased keys)."""
    runs = results.method_at(method, level)
    modality, kind = metric.split()
    if kind in PROBES:
        return {r.seed: 100 * r.probe(modality, kind) for r in runs}
    if kind.split("_")[0] in PROBES:  # linear_tail, knn_balanced, ...: runs made before them lack them
        values = {r.seed: r.probe_or_none(modality, kind) for r in runs}
        return {seed: 100 * v for seed, v in values.items() if v is not None}
    sign = -1.0 if kind == "biased" else 1.0  # fewer biased keys is the claimed improvement
    return {r.seed: sign * r.diversity[modality][kind] for r in runs if r.diversity}


# ----------------------------------------------------------------------------- numbers and their text


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample std (NaN with one value) and count, NaN values left out."""
    values = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan, len(values)


def fmt(values, scale: float = 1.0, digits: int = 1) -> str:
    mean, std, n = mean_std(values)
    if n == 0:
        return "–"
    text = f"{scale * mean:.{digits}f}"
    return text if n == 1 else f"{text} ± {scale * std:.{digits}f}"


def level_text(level) -> str:
    """A level as a table shows it: a number with ``:g``, a name (``label_source``'s) as it is."""
    return level if isinstance(level, str) else f"{level:g}"


def level_label(condition: Condition, level) -> str:
    return "" if level is None else f"{condition.swept}={level_text(level)}"


def rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def table(header: list[str], rows: list[list[str]], align_from: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * align_from + "---:|" * (len(header) - align_from)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
