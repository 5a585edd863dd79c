"""``reports/REPORT.md`` and its figures, rebuilt from the run folders of every condition present.

Every number in the report is read from a run folder (``summary.json``, ``metrics.csv``,
``downstream/run/results.json``, ``study_run.json``, ``config.json``) or ``uv.lock``-derived
versions recorded there; nothing depends on when the report is written, so rebuilding it from the
same runs gives the same bytes, and files whose bytes would not change are not rewritten.

The findings apply one explicit rule to each comparison of a method B against its baseline A on a
metric (test accuracy of a probe): ``gain = mean(B) - mean(A)`` over seeds, ``pooled std =
sqrt((std(A)^2 + std(B)^2) / 2)`` (sample stds over seeds); *supported* when gain > pooled std,
*contradicted* when gain < -pooled std, *unresolved* otherwise, *untested* with fewer than two
seeds on a side.  A claim's verdict combines its primary comparisons (listed per claim below):
supported when most of them are supported and none contradicted, contradicted the other way
round, mixed when both occur, unresolved otherwise.
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
from avlib.study.conditions import CONDITIONS, Condition, Variant
from avlib.study.run import PACKAGES, RECORD, copy_if_changed

MODALITIES = ("video", "audio")
PROBES = ("linear", "knn")
PROBE_NAMES = {"linear": "linear", "knn": "kNN"}
#: parameters that differ between any two runs for bookkeeping only
BOOKKEEPING = {"run_dir", "progress"}
_RUN_NAME = re.compile(r"^(?P<variant>.+)_seed(?P<seed>\d+)$")


# ----------------------------------------------------------------------------- reading the runs


@dataclass
class RunResult:
    variant: Variant
    seed: int
    run_dir: Path
    config: dict
    summary: dict
    record: dict  # study_run.json ({} for a run the study command did not launch)
    diversity: dict  # modality -> avlib.analysis.diversity.end_of_training row
    downstream: dict | None  # (modality, protocol) -> clip-level accuracy of notebook 04, or None

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


def _read_downstream(run_dir: Path) -> dict | None:
    path = run_dir / "downstream" / "run" / "results.json"
    if not path.is_file():
        return None
    table = json.loads(path.read_text())["table"]
    return {(row["modality"], row["protocol"]): row["clip_mean"] for row in table if row["encoder"] == "pretrained"}


def collect(condition: Condition, runs_root: Path) -> ConditionResults:
    """The condition's finished runs (every seed present), in the condition's variant order."""
    from avlib.analysis.diversity import end_of_training

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
        record_path = run_dir / RECORD
        runs.append(RunResult(
            by_name[match["variant"]], int(match["seed"]), run_dir,
            json.loads((run_dir / "config.json").read_text()), json.loads((run_dir / "summary.json").read_text()),
            json.loads(record_path.read_text()) if record_path.is_file() else {},
            {m: end_of_training(run_dir, m) for m in MODALITIES}, _read_downstream(run_dir)))
    order = {v.name: i for i, v in enumerate(condition.variants)}
    runs.sort(key=lambda r: (order[r.variant.name], r.seed))
    return ConditionResults(condition, runs, incomplete)


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


def _level_text(level) -> str:
    """A level as a table shows it: a number with ``:g``, a name (``label_source``'s) as it is."""
    return level if isinstance(level, str) else f"{level:g}"


def _level(condition: Condition, level) -> str:
    return "" if level is None else f"{condition.swept}={_level_text(level)}"


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _table(header: list[str], rows: list[list[str]], align_from: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * align_from + "---:|" * (len(header) - align_from)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- per-condition tables


def _row_label(results: ConditionResults, variant: Variant) -> list[str]:
    cells = [f"`{variant.method}`"]
    return ([_level_text(variant.level)] if results.condition.swept else []) + cells


def _first_columns(results: ConditionResults) -> list[str]:
    return ([results.condition.swept] if results.condition.swept else []) + ["method", "seeds"]


def probe_table(results: ConditionResults) -> str:
    """Linear and kNN test accuracy (%) per variant, and the random-init encoders per level."""
    header = _first_columns(results) + [f"{m} {PROBE_NAMES[k]}" for m in MODALITIES for k in PROBES]
    rows = []
    levels = results.condition.levels or [None]
    for level in levels:
        level_runs = []
        for variant in results.variants:
            if variant.level != level:
                continue
            runs = results.of(variant)
            level_runs += runs
            rows.append(_row_label(results, variant) + [str(len(runs))] +
                        [fmt([r.probe(m, k) for r in runs], 100) for m in MODALITIES for k in PROBES])
        first_per_seed = {r.seed: r for r in reversed(level_runs)}  # same encoders for every method of a seed
        if first_per_seed:
            baseline = list(first_per_seed.values())
            rows.append(([_level_text(level)] if level is not None else []) + ["*random init*", str(len(baseline))] +
                        [fmt([r.summary["probe_random_init"][m][k] for r in baseline], 100)
                         for m in MODALITIES for k in PROBES])
    return _table(header, rows, align_from=len(_first_columns(results)) - 1)


def class_table(results: ConditionResults) -> str:
    """Balanced accuracy (mean per-class recall) and tail accuracy (mean recall of the rarest third of
    the classes by training clips; ``avlib.eval.probe.tail_classes``) per variant, beside the accuracy."""
    header = _first_columns(results) + [f"{m} {PROBE_NAMES[k]} {name}" for m in MODALITIES for k in PROBES
                                        for name in ("acc.", "balanced", "tail")]
    rows = []
    for variant in results.variants:
        runs = results.of(variant)
        cells = []
        for m in MODALITIES:
            for k in PROBES:
                cells += [fmt([r.probe(m, k) for r in runs], 100),
                          fmt([r.probe_or_none(m, f"{k}_balanced") for r in runs], 100),
                          fmt([r.probe_or_none(m, f"{k}_tail") for r in runs], 100)]
        rows.append(_row_label(results, variant) + [str(len(runs))] + cells)
    return _table(header, rows, align_from=len(_first_columns(results)) - 1)


def pseudo_label_table(results: ConditionResults) -> str:
    """End-of-training purity of the k-means pseudo-labels per variant (``label_purity`` in
    ``summary.json``: the share of clips whose cluster's majority class is their class; logged, never
    used): what the label-free methods had to work with.  Empty where no run used k-means labels."""
    rows = []
    for variant in results.variants:
        runs = [r for r in results.of(variant) if r.config.get("label_source") == "kmeans"]
        if runs:
            purity = fmt([r.summary.get("label_purity") for r in runs], 100)
            clusters = ", ".join(sorted({str(r.summary.get("label_clusters")) for r in runs}))
            rows.append(_row_label(results, variant) + [str(len(runs)), purity, clusters])
    if not rows:
        return ""
    return _table(_first_columns(results) + ["label purity (%)", "clusters"], rows,
                  align_from=len(_first_columns(results)) - 1)


def diversity_table(results: ConditionResults) -> str:
    """End-of-training dictionary diversity (mean over the last epoch, then over seeds)."""
    header = _first_columns(results) + [f"{m} dict. {name}" for m in MODALITIES
                                        for name in ("class entropy (nats)", "distinct classes", "biased-key rate")]
    rows = []
    for variant in results.variants:
        runs = results.of(variant)
        cells = []
        for m in MODALITIES:
            cells += [fmt([r.diversity[m]["entropy"] for r in runs], digits=3),
                      fmt([r.diversity[m]["classes"] for r in runs], digits=1),
                      fmt([r.diversity[m]["biased"] for r in runs], digits=3)]
        rows.append(_row_label(results, variant) + [str(len(runs))] + cells)
    return _table(header, rows, align_from=len(_first_columns(results)) - 1)


def time_table(results: ConditionResults) -> str:
    """Wall time per run and the dictionary update's share of a step (the active selection for
    ``active``; the queue or memory-bank update for the others)."""
    header = _first_columns(results) + ["run wall (min)", "training (min)", "step (ms)", "dictionary update (ms)",
                                        "update share of step (%)", "update share of run wall (%)"]
    rows = []
    for variant in results.variants:
        runs = results.of(variant)
        rows.append(_row_label(results, variant) + [str(len(runs)),
                    fmt([r.summary["wall_s"] for r in runs], 1 / 60),
                    fmt([r.summary["train_wall_s"] for r in runs], 1 / 60),
                    fmt([r.summary["mean_step_s"] for r in runs], 1000),
                    fmt([r.summary["mean_select_s"] for r in runs], 1000, digits=2),
                    fmt([r.summary["mean_select_s"] / r.summary["mean_step_s"] for r in runs], 100),
                    fmt([r.summary["mean_select_s"] * r.summary["steps"] / r.summary["wall_s"] for r in runs], 100)])
    return _table(header, rows, align_from=len(_first_columns(results)) - 1)


def downstream_table(results: ConditionResults, report_dir: Path) -> str | None:
    """Notebook 04's probes (first seed of each variant), beside the same run's summary.json."""
    rows = []
    for variant in results.variants:
        runs = [r for r in results.of(variant) if r.downstream]
        if not runs:
            continue
        run = runs[0]
        cells = []
        for m in MODALITIES:
            for k in PROBES:
                value = run.downstream.get((m, k))
                cells.append("–" if value is None else f"{100 * value:.1f} ({100 * run.probe(m, k):.1f})")
        notebook = run.run_dir / "04_downstream.ipynb"
        rows.append(_row_label(results, variant) + [f"[{run.seed}]({_rel(notebook, report_dir)})"] + cells)
    if not rows:
        return None
    header = ([results.condition.swept] if results.condition.swept else []) + ["method", "seed"] + \
        [f"{m} {PROBE_NAMES[k]}" for m in MODALITIES for k in PROBES]
    return _table(header, rows, align_from=len(header) - 4)


# ----------------------------------------------------------------------------- figures


def probe_figure(results: ConditionResults):
    """Samplers: linear-probe accuracy per method (bars: mean, whiskers: std over seeds)."""
    import matplotlib.pyplot as plt

    variants = results.variants
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    for ax, modality in zip(axes, MODALITIES):
        stats = [mean_std([r.probe(modality, "linear") for r in results.of(v)]) for v in variants]
        means = [100 * s[0] for s in stats]
        stds = [0.0 if math.isnan(s[1]) else 100 * s[1] for s in stats]
        ax.bar(range(len(variants)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        baseline = mean_std([r.summary["probe_random_init"][modality]["linear"] for r in results.runs])[0]
        ax.axhline(100 * baseline, color="grey", linestyle="--", label="random init")
        ax.set_xticks(range(len(variants)), [v.method for v in variants], rotation=35, ha="right")
        ax.set_title(f"{modality}: linear probe, test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_figure(results: ConditionResults):
    """Sweeps: linear-probe accuracy and the video dictionary's diversity against the swept value."""
    import matplotlib.pyplot as plt

    condition = results.condition
    panels = [("probe", "video", "linear probe, video (%)"), ("probe", "audio", "linear probe, audio (%)"),
              ("entropy", "video", "video dict. class entropy (nats)"), ("biased", "video", "video dict. biased-key rate")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for ax, (quantity, modality, title) in zip(axes, panels):
        for index, method in enumerate(condition.methods):
            color = f"C{index % 10}"  # one colour per method in every panel
            xs, means, stds = [], [], []
            for level in condition.levels:
                runs = results.method_at(method, level)
                if not runs:
                    continue
                if quantity == "probe":
                    values = [100 * r.probe(modality, "linear") for r in runs]
                else:
                    values = [r.diversity[modality][quantity] for r in runs]
                mean, std, _ = mean_std(values)
                xs.append(level)
                means.append(mean)
                stds.append(0.0 if math.isnan(std) else std)
            if xs and condition.single_level_of(method) is not None:  # the baseline of every level: a band
                ax.axhline(means[0], color=color, linestyle="--", linewidth=1, label=f"{method} (all levels)")
                ax.axhspan(means[0] - stds[0], means[0] + stds[0], color=color, alpha=0.12)
            elif xs:
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=color, label=method)
        ax.set_xlabel(condition.swept)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- findings


@dataclass
class Comparison:
    condition: str
    level: float | None
    baseline: str
    method: str
    metric: str  # e.g. "video linear"
    primary: bool
    gain: float = math.nan  # points of accuracy (or of the diversity measure, sign: higher is better)
    pooled: float = math.nan
    seeds: tuple[int, int] = (0, 0)

    @property
    def verdict(self) -> str:
        if min(self.seeds) < 2:
            return "untested (fewer than 2 seeds)"
        if self.gain > self.pooled:
            return "supported"
        if self.gain < -self.pooled:
            return "contradicted"
        return "unresolved"

    def seeds_to_resolve(self) -> str:
        """Seeds per method for the observed gain to exceed two standard errors of the difference
        of means (2 * pooled * sqrt(2/n)): n > 8 pooled^2 / gain^2."""
        if math.isnan(self.pooled):
            return "–"
        if self.gain == 0:
            return "∞ (equal means)"
        return str(max(2, math.ceil(8 * self.pooled ** 2 / self.gain ** 2)))


def _values(results: ConditionResults, method: str, level, metric: str) -> list[float]:
    runs = results.method_at(method, level)
    modality, kind = metric.split()
    if kind in PROBES:
        return [100 * r.probe(modality, kind) for r in runs]
    if kind.split("_")[0] in PROBES:  # linear_tail, knn_balanced, ...: runs made before them lack them
        values = [r.probe_or_none(modality, kind) for r in runs]
        return [100 * v for v in values if v is not None]
    sign = -1.0 if kind == "biased" else 1.0  # fewer biased keys is the claimed improvement
    return [sign * r.diversity[modality][kind] for r in runs]


def compare(results: ConditionResults, baseline: str, method: str, level, metric: str, primary: bool,
            baseline_level="same") -> Comparison:
    """``method`` against ``baseline`` at ``level`` (the baseline's runs at ``baseline_level`` where a
    condition runs its baseline at one level only, e.g. label_free's ``random``)."""
    at = level if baseline_level == "same" else baseline_level
    a, b = _values(results, baseline, at, metric), _values(results, method, level, metric)
    (ma, sa, na), (mb, sb, nb) = mean_std(a), mean_std(b)
    pooled = math.sqrt((sa ** 2 + sb ** 2) / 2) if na > 1 and nb > 1 else math.nan
    return Comparison(results.condition.name, level, baseline, method, metric, primary, mb - ma, pooled, (na, nb))


@dataclass(frozen=True)
class Claim:
    title: str
    statement: str
    # (condition, baseline method, method, levels, metrics, primary[, baseline level]); levels: "all",
    # "nonzero", "last" (the condition's last level: the most redundant, imbalanced or faulty), a level
    # value, or None (a condition without levels)
    comparisons: tuple
    missing_hint: str


LINEAR = ("video linear", "audio linear")
KNN = ("video knn", "audio knn")
TAIL = ("video linear_tail", "audio linear_tail")
CLAIMS = (
    Claim("CM-ACC (Ma et al., ICLR 2021)",
          "an actively sampled dictionary gives better representations than a random (FIFO) one",
          (("sources", "random", "active", "last", LINEAR, True),
           ("imbalance", "random", "active", "last", LINEAR, True),
           ("imbalance", "random", "active", "last", TAIL, False),
           ("sources", "random", "active_aware", "last", LINEAR, False),
           ("sources", "random", "active_official", "last", LINEAR, False),
           ("imbalance", "random", "active_aware", "last", LINEAR, False),
           ("imbalance", "random", "active_official", "last", LINEAR, False),
           ("sync", "random", "active", "all", LINEAR, False),
           ("samplers", "random", "active", None, LINEAR, False),
           ("samplers", "random", "active", None, KNN, False),
           ("samplers", "random", "active_official", None, LINEAR, False),
           ("samplers", "random", "active", None, ("video entropy", "audio entropy", "video biased", "audio biased"),
            False),
           ("redundancy", "random", "active", "all", LINEAR, False),
           ("dictionary_size", "random", "active", "all", LINEAR, False)),
          "`make study CONDITION=sources` and `make study CONDITION=imbalance`"),
    Claim("Robust xID (Morgado et al., CVPR 2021)",
          "down-weighting faulty positives and soft targets for faulty negatives beat plain xID, "
          "especially when pairs are faulty",
          (("faulty_clean", "xid", "robust_xid", "nonzero", LINEAR, True),
           ("faulty_pair_rate", "xid", "robust_xid", "nonzero", LINEAR, False),
           ("samplers", "xid", "robust_xid", None, LINEAR, False),
           ("samplers", "xid", "robust_xid", None, KNN, False),
           ("faulty_pair_rate", "xid", "robust_xid", "nonzero", KNN, False)),
          "`make study CONDITION=faulty_clean`"),
    Claim("Label-aware sampling (Wang et al., 2024)",
          "label-aware positives and negatives (soft positives, class-aware and hard negatives) beat random sampling",
          (("label_free", "random", "soft_positive", "kmeans", LINEAR, True, "ground_truth"),
           ("label_free", "random", "class_aware", "kmeans", LINEAR, True, "ground_truth"),
           ("label_free", "random", "hard_negative", "kmeans", LINEAR, True, "ground_truth"),
           ("label_free", "random", "soft_positive", "ground_truth", LINEAR, False),
           ("label_free", "random", "class_aware", "ground_truth", LINEAR, False),
           ("label_free", "random", "hard_negative", "ground_truth", LINEAR, False),
           ("samplers", "random", "soft_positive", None, LINEAR, False),
           ("samplers", "random", "class_aware", None, LINEAR, False),
           ("samplers", "random", "hard_negative", None, LINEAR, False),
           ("subset_fraction", "random", "soft_positive", "all", LINEAR, False)),
          "`make study CONDITION=label_free`"),
)


def claim_comparisons(claim: Claim, available: dict[str, ConditionResults]) -> list[Comparison]:
    comparisons = []
    for condition_name, baseline, method, levels, metrics, primary, *baseline_level in claim.comparisons:
        results = available.get(condition_name)
        if results is None:
            continue
        all_levels = list(results.condition.levels)
        if levels is None:
            chosen = [None]
        elif levels == "all":
            chosen = all_levels
        elif levels == "nonzero":
            chosen = [level for level in all_levels if level != 0]
        elif levels == "last":
            chosen = all_levels[-1:]
        else:
            chosen = [levels]
        for level in chosen:
            for metric in metrics:
                comparison = compare(results, baseline, method, level, metric, primary, *baseline_level)
                if min(comparison.seeds) > 0:
                    comparisons.append(comparison)
    return comparisons


def combine(verdicts: list[str]) -> str:
    supported, contradicted = verdicts.count("supported"), verdicts.count("contradicted")
    if supported and contradicted:
        return "mixed"
    if supported > len(verdicts) / 2:
        return "supported"
    if contradicted > len(verdicts) / 2:
        return "contradicted"
    return "not resolved"


def _describe(c: Comparison) -> str:
    where = c.condition if c.level is None else _level(CONDITIONS[c.condition], c.level)
    return f"`{c.method}` vs `{c.baseline}`, {c.metric} ({where})"


def findings_section(available: dict[str, ConditionResults]) -> str:
    parts = ["## Findings", "",
             "Generated by the rule in `avlib/study/report.py`: for each comparison of a method with its baseline, "
             "gain = difference of the means over seeds (accuracy points; for the dictionary measures, entropy "
             "gain and biased-key rate reduction), pooled std = sqrt((std_A² + std_B²) / 2) over seeds; "
             "**supported** if gain > pooled std, **contradicted** if gain < -pooled std, **unresolved** "
             "otherwise. A claim's verdict combines its primary comparisons (marked ●): supported when most are "
             "supported and none contradicted, contradicted the other way round, mixed when both occur. "
             "\"Seeds to resolve\" is the number of seeds per method at which the observed gain would exceed two "
             "standard errors of the difference (8·std²/gain²).", ""]
    scale = _scale_note(available)
    for claim in CLAIMS:
        comparisons = claim_comparisons(claim, available)
        parts += [f"### {claim.title}", "", f"Claim: {claim.statement}.", ""]
        primary = [c for c in comparisons if c.primary]
        rows = [["●" if c.primary else "", _describe(c), f"{c.gain:+.2f}",
                 "–" if math.isnan(c.pooled) else f"{c.pooled:.2f}", f"{c.seeds[1]}/{c.seeds[0]}", c.verdict,
                 c.seeds_to_resolve()] for c in comparisons]
        table = _table(["", "comparison", "gain", "pooled std", "seeds (B/A)", "verdict", "seeds to resolve"],
                       rows, align_from=2)
        if not primary:
            parts += [f"**Not tested**: no finished runs of its primary comparisons; run {claim.missing_hint}."
                      + (" The secondary comparisons that have runs:" if comparisons else ""), ""]
            parts += [table, ""] if comparisons else []
            continue
        verdict = combine([c.verdict for c in primary])
        parts.append(f"**Verdict at this scale: {verdict}** ({sum(c.verdict == 'supported' for c in primary)} of "
                     f"{len(primary)} primary comparisons supported, "
                     f"{sum(c.verdict == 'contradicted' for c in primary)} contradicted).")
        parts.append("")
        parts += [table, ""]
        parts += [_what_would_change(primary, verdict, claim), ""]
        for condition_name, baseline, method in claim_trends(claim):
            parts += [_trend(available, condition_name, baseline, method), ""]
        if claim.title.startswith("Label-aware"):
            parts += [_label_source_note(available), ""]
    parts += [scale, ""]
    return "\n".join(parts)


LABEL_AWARE = {"soft_positive", "class_aware", "hard_negative"}


def _label_source_note(available: dict[str, ConditionResults]) -> str:
    """Which labels the label-aware runs used: ground truth is supervision a random queue never sees."""
    sources = sorted({r.config.get("label_source", "ground_truth") for results in available.values()
                      for r in results.runs if r.config.get("sampler") in LABEL_AWARE})
    if sources == ["ground_truth"]:
        return ("Labels: every label-aware run used `label_source=ground_truth`, the same class labels the probes "
                "score, so these gains include supervision that `random` never sees; with pseudo-labels "
                "(`make study STUDY_ARGS='--set label_source=kmeans --runs-root runs/study_kmeans --reports-dir "
                "reports/study_kmeans'`) the comparison is label-free.")
    purities = [r.summary.get("label_purity") for results in available.values() for r in results.runs
                if r.config.get("sampler") in LABEL_AWARE and r.config.get("label_source") == "kmeans"]
    mean, std, n = mean_std(purities)
    purity = (f" The k-means pseudo-labels ended with a purity of {100 * mean:.1f} ± {100 * std:.1f}% over {n} runs "
              "(per variant in the condition's pseudo-label table): the label-free runs' gain is what labels of "
              "that quality give." if n > 1 else "")
    return "Labels: the label-aware runs used `label_source` " + ", ".join(f"`{s}`" for s in sources) + "." + purity


def _what_would_change(primary: list[Comparison], verdict: str, claim: Claim) -> str:
    resolved = [c for c in primary if c.verdict in ("supported", "contradicted")]
    open_ = [c for c in primary if c.verdict == "unresolved"]
    sentences = []
    if resolved:
        margins = ", ".join(f"{_describe(c)}: {abs(c.gain) - c.pooled:.2f} points" for c in resolved)
        sentences.append(f"The resolved comparisons would become unresolved if more seeds moved their gain toward "
                         f"zero by more than their margin over the pooled std ({margins}).")
    if open_:
        needs = ", ".join(f"{_describe(c)}: {c.seeds_to_resolve()} seeds" for c in open_)
        sentences.append(f"If the observed gains are real, resolving the open comparisons needs about {needs}.")
    untested = [c for c in primary if c.verdict.startswith("untested")]
    if untested:
        sentences.append("Comparisons with fewer than two seeds per method cannot be judged: run more seeds.")
    return "What would change the conclusion: " + " ".join(sentences)


def claim_trends(claim: Claim) -> list[tuple[str, str, str]]:
    """(condition, baseline, method) of a claim's swept comparisons, each once: the trends to report."""
    seen = []
    for condition_name, baseline, method, levels, *_ in claim.comparisons:
        if levels is not None and CONDITIONS[condition_name].swept and (condition_name, baseline, method) not in seen:
            seen.append((condition_name, baseline, method))
    return seen


def _trend(available: dict[str, ConditionResults], condition_name: str, baseline: str, method: str) -> str:
    """Per level, ``method``'s gain over ``baseline`` (mean of the video and audio linear probes): does it
    grow from the condition's first level to its last (more redundant, imbalanced, faulty, unsynced)?"""
    results = available.get(condition_name)
    name = f"Trend over `{CONDITIONS[condition_name].swept}` ({condition_name}), `{method}` vs `{baseline}`"
    if results is None:
        return f"{name}: not tested (run `make study CONDITION={condition_name}`)."
    # a baseline planned at one level only (label_free's ``random``) is the baseline of every level, as in
    # the claim's comparisons
    single = results.condition.single_level_of(baseline)
    at = "same" if single is None else single
    gains = []
    for level in results.condition.levels:
        c = compare(results, baseline, method, level, "video linear", False, at)
        d = compare(results, baseline, method, level, "audio linear", False, at)
        if min(c.seeds) > 0 and min(d.seeds) > 0:
            gains.append((level, (c.gain + d.gain) / 2))
    if len(gains) < 2:
        return f"{name}: needs runs at two levels or more."
    listed = ", ".join(f"{g:+.2f} at {_level_text(level)}" for level, g in gains)
    grows = gains[-1][1] > gains[0][1]
    return (f"{name} (gain, mean of the video and audio linear probes, points): {listed}; the gain "
            f"{'grows' if grows else 'does not grow'} from the first level to the last.")


def _scale_note(available: dict[str, ConditionResults]) -> str:
    runs = [r for results in available.values() for r in results.runs]
    encoders = sorted({(r.config["video_encoder"], r.config["audio_encoder"]) for r in runs})
    clips = sorted({r.summary["num_clips"] for r in runs})
    epochs = sorted({r.config["epochs"] for r in runs})
    return ("Scale: every verdict is about this study's setting (encoders "
            f"{', '.join(f'`{v}`/`{a}`' for v, a in encoders)}; datasets of {', '.join(map(str, clips))} clips; "
            f"{', '.join(map(str, epochs))} epochs). The seed papers trained R(2+1)D/ResNet encoders on "
            "Kinetics-scale data; a verdict here says what holds at this scale, not whether the paper's result "
            "reproduces at theirs.")


# ----------------------------------------------------------------------------- provenance


def _non_defaults(config: dict) -> dict:
    defaults = PretrainConfig().to_dict()
    return {k: v for k, v in sorted(config.items()) if k not in BOOKKEEPING and defaults.get(k) != v}


def _params_text(params: dict) -> str:
    return ", ".join(f"`{k}={v!r}`" for k, v in params.items()) or "(none)"


def provenance_section(available: dict[str, ConditionResults], report_dir: Path) -> str:
    runs = [r for results in available.values() for r in results.runs]
    attempts = [a for r in runs for a in r.record.get("attempts", [])]
    parts = ["## Provenance", ""]
    commits: dict[str, int] = {}
    for r in runs:
        last = r.record.get("attempts", [{}])[-1]
        key = f"`{last.get('commit', 'unknown')}`" + (" (uncommitted changes)" if last.get("dirty") else
                                                      " (clean)" if last.get("dirty") is False else "")
        commits[key] = commits.get(key, 0) + 1
    parts.append("- Code (git commit when each run was last launched; reports/ and runs/ not counted as changes): " +
                 "; ".join(f"{k}: {n} run(s)" for k, n in sorted(commits.items())))
    versions = sorted({json.dumps(a.get("packages", {}), sort_keys=True) for a in attempts})
    for text in versions:
        versions = json.loads(text)
        parts.append("- Packages (uv.lock): " + ", ".join(f"{k} {versions[k]}" for k in PACKAGES if k in versions))
    machines = sorted({json.dumps(a.get("machine", {}), sort_keys=True) for a in attempts})
    for text in machines:
        m = json.loads(text)
        parts.append(f"- Machine: {m.get('cpu')}, {m.get('cores')} cores, GPU: {m.get('gpu') or 'none'}, "
                     f"Python {m.get('python')}")
    jobs = sorted({a.get("jobs") for a in attempts if a.get("jobs")})
    threads = sorted({r.summary.get("num_threads") for r in runs})
    parts.append(f"- Parallel jobs: {', '.join(map(str, jobs)) or '?'}; torch threads per run: "
                 f"{', '.join(map(str, threads))}")
    started = [a["started"] for a in attempts if a.get("started")]
    finished = [a["finished"] for a in attempts if a.get("finished")]
    trained = {r.run_dir.resolve(): r for r in runs}  # a linked run (link_twins) is another's folder
    if started and finished:
        parts.append(f"- Study time (UTC, from the runs' `{RECORD}`): first run started {min(started)}, last run "
                     f"finished {max(finished)}; summed run wall time "
                     f"{sum(r.summary['wall_s'] for r in trained.values()) / 3600:.2f} h over {len(trained)} "
                     f"trained runs")
    linked = [r for r in runs if r.run_dir.is_symlink()]
    if linked:
        parts.append(f"- {len(linked)} run(s) of one condition are the same configuration and seed as a run of "
                     "another and link to its folder instead of training again: "
                     + ", ".join(f"{r.run_dir.parent.name}/{r.run_dir.name} = "
                                 f"{r.run_dir.resolve().parent.name}/{r.run_dir.resolve().name}" for r in linked))
    parts += ["", "Parameters of every run (differences from `PretrainConfig`'s defaults; the link opens a copy "
              "of the run's `config.json`, kept with its `summary.json` and `study_run.json` under `study/runs/`):", ""]
    for name, results in available.items():
        if not results.runs:
            continue
        per_run = [_non_defaults(r.config) for r in results.runs]
        common = {k: v for k, v in per_run[0].items() if all(p.get(k) == v for p in per_run)}
        parts += [f"**{name}** — common to all its runs: {_params_text(common)}", ""]
        rows = [[f"[{r.run_dir.name}]({_rel(_kept_run_dir(r, report_dir / 'study') / 'config.json', report_dir)})",
                 _params_text({"seed": r.config["seed"], **{k: r.config[k] for k in r.variant.params},
                               **{k: v for k, v in p.items() if k not in common}})]
                for r, p in zip(results.runs, per_run)]
        parts += [_table(["run", "its own parameters (seed, the variant's, others not common)"], rows,
                         align_from=2), ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the whole report


def _condition_section(results: ConditionResults, report_dir: Path, study_dir: Path) -> str:
    condition = results.condition
    folder = study_dir / condition.name
    planned = len(condition.variants) * len(condition.seeds)  # its default plan (a command may name other seeds)
    of_planned = (f" of the {planned} it plans ({len(condition.variants)} variants x {len(condition.seeds)} seeds)"
                  if len(results.runs) < planned else "")
    parts = [f"## Condition `{condition.name}`", "", f"{condition.description.capitalize()}. "
             f"{len(results.runs)} finished runs{of_planned}"
             + (f", {len(results.incomplete)} unfinished ({', '.join(results.incomplete)})" if results.incomplete else "")
             + f"; run folders under `{_rel(results.runs[0].run_dir.parent, report_dir)}/`.", ""]
    parts += ["### Probe accuracy (test split, %)", "",
              "Linear probe (logistic regression, C chosen on the val split) and kNN on frozen backbone features, "
              "mean ± std over seeds, from each run's `summary.json`; *random init* is the same encoders before "
              "training.", "", probe_table(results), "",
              "Per class (%): accuracy, balanced accuracy (mean per-class recall) and tail accuracy (mean recall of "
              "the rarest third of the classes by training clips, ties to the higher class index, so with balanced "
              "classes the last third), mean ± std over seeds; – where a run predates them.", "",
              class_table(results), ""]
    pseudo_labels = pseudo_label_table(results)
    if pseudo_labels:
        parts += ["Pseudo-labels at the end of training (`summary.json`: `label_purity`, the share of training clips "
                  "whose k-means cluster's majority class is their own; ground-truth labels score 100%), mean ± std "
                  "over seeds:", "", pseudo_labels, ""]
    if condition.swept:
        figure = folder / f"sweep_{condition.swept}.png"
        write_if_changed(figure, _figure_bytes(sweep_figure(results)))
        parts += [f"![accuracy and diversity against {condition.swept}]({_rel(figure, report_dir)})", ""]
    else:
        figure = folder / "probe_accuracy.png"
        write_if_changed(figure, _figure_bytes(probe_figure(results)))
        parts += [f"![linear probe accuracy per method]({_rel(figure, report_dir)})", ""]
    parts += ["### Dictionary diversity at the end of training", "",
              "From `metrics.csv` (mean over the last epoch, then mean ± std over seeds): the `video` dictionary "
              "holds the negatives of audio queries, the `audio` dictionary those of video queries "
              "(memory-bank methods: the sampled negatives). Class entropy is at most ln(classes); the "
              "biased-key rate is the share of a query's negatives from its own class.", "",
              diversity_table(results), ""]
    diversity_dir = folder / "diversity"
    figures = [p for p in (diversity_dir / "negative_diversity_curves_video.png",
                           diversity_dir / "negative_diversity_umap_video.png") if p.is_file()]
    if figures:
        level = f" at {_level(condition, condition.focus_level)}" if condition.focus_level is not None else ""
        parts += [f"Notebook 03 on the first seed of every method{level}: "
                  + ", ".join(f"[{p.stem.replace('negative_diversity_', '')}]({_rel(p, report_dir)})" for p in figures)
                  + f", [table]({_rel(diversity_dir / 'negative_diversity.md', report_dir)}).", ""]
        parts += [f"![]({_rel(p, report_dir)})" for p in figures] + [""]
    parts += ["### Time", "", "Per run, mean ± std over seeds (`summary.json`: `wall_s`, `train_wall_s`, "
              "`mean_step_s`, `mean_select_s`): the dictionary update is the active selection for `active`.", "",
              time_table(results), ""]
    downstream = downstream_table(results, report_dir)
    if downstream:
        parts += ["### Downstream probes (notebook 04)", "",
                  "`04_downstream.ipynb` with `dataset=\"run\"`, `protocol=\"probes\"` on the first seed of each "
                  "method, clip-level test accuracy (%); in brackets the same run's `summary.json` probe. The seed links "
                  "the executed notebook in the run folder.", "",
                  downstream, ""]
    notebooks = sorted((study_dir / "notebooks" / condition.name).glob("*.ipynb"))
    if notebooks:
        parts += ["Executed notebooks: " + ", ".join(f"[{p.name}]({_rel(p, report_dir)})" for p in notebooks), ""]
    return "\n".join(parts)


def _kept_run_dir(run: RunResult, study_dir: Path) -> Path:
    """Where a run's config.json, summary.json and study_run.json are kept beside the report: a
    linked run (link_twins) is its origin's folder, so it is kept once, under the origin's name."""
    origin = run.run_dir.resolve()  # runs_root/<condition>/<run>
    return study_dir / "runs" / origin.parent.name / origin.name


def keep_notebooks(results: ConditionResults, runs_root: Path, study_dir: Path) -> None:
    """Copies of each run's config.json, summary.json and study record (a few kB, so that the
    report's links and provenance survive without runs/), and of executed notebooks next to the report: the condition's 03 (~1 MB: figures and the
    inspector's media) and, for ``samplers`` only, the 02 of each method's first seed (~20 kB each).
    The rest stay in their run folders, linked from the run table, to keep reports/ at a few MB:
    the 04 notebooks (~160 kB each: confusion matrices; their numbers are in the report) and the
    sweeps' 02 notebooks."""
    for run in results.runs:  # the run's record travels with the report (runs/ is not committed)
        for name in ("config.json", "summary.json", RECORD):
            if (run.run_dir / name).is_file():
                copy_if_changed(run.run_dir / name, _kept_run_dir(run, study_dir) / name)
    target = study_dir / "notebooks" / results.condition.name
    executed = runs_root / results.condition.name / "03_negative_diversity.ipynb"
    if executed.is_file():
        copy_if_changed(executed, target / executed.name)
    if results.condition.swept:
        return
    first_seed = {}
    for run in results.runs:
        first_seed.setdefault(run.variant.name, run)
    for run in first_seed.values():
        executed = run.run_dir / "02_pretrain.ipynb"
        if executed.is_file():
            copy_if_changed(executed, target / f"{run.run_dir.name}_{executed.name}")


def write_report(runs_root: Path, reports_dir: Path) -> Path:
    """``reports_dir/REPORT.md`` (and ``reports_dir/study/``) from every condition with finished runs."""
    report_path = reports_dir / "REPORT.md"
    study_dir = reports_dir / "study"
    available = {}
    for name, condition in CONDITIONS.items():
        results = collect(condition, runs_root)
        if results.runs:
            available[name] = results
    parts = ["# Study report", "",
             "Generated by `make study` (`python -m avlib.study`, `avlib/study/`) from the run folders under "
             f"`{_rel(runs_root, reports_dir)}/`; every number is read from them. Do not edit: run the command "
             "again (finished runs are skipped) to rebuild it.", ""]
    if not available:
        parts += ["No finished runs yet.", ""]
    else:
        parts += ["Conditions: " + ", ".join(f"[`{n}`](#condition-{n})" for n in available)
                  + ", then [findings](#findings) and [provenance](#provenance).", ""]
        for results in available.values():
            keep_notebooks(results, runs_root, study_dir)
            parts.append(_condition_section(results, reports_dir, study_dir))
        parts.append(findings_section(available))
        parts.append(provenance_section(available, reports_dir))
    write_if_changed(report_path, ("\n".join(parts).rstrip() + "\n").encode())
    return report_path
