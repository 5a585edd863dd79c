"""The findings: each seed paper's claim, decided per comparison by :mod:`avlib.study.stats`.

A claim lists its comparisons (:class:`Spec`): a method against its baseline, in one condition, at
some of its levels, on some metrics; the *primary* ones decide the claim, the others describe it.
For each comparison, the per-seed values of the two arms go to :func:`avlib.study.stats.decide`:

* **paired** when both arms ran with the same seeds on the same dataset: at the same level of the
  condition, or against the condition's one-level baseline (``Condition.single_level_of``: a
  method that ignores the swept parameter runs at one level and is the baseline of every level,
  as ``label_free``'s ``random``, which never reads ``label_source``), checked per seed from the
  runs' ``config.json`` (the dataset parameters and the seed equal).  Seed k of two methods then
  shares its initial weights, data order and dataset, and the per-seed differences remove the
  swing both share.  Seeds only one arm has are left out of a paired comparison;
* **unpaired** (Welch's t) otherwise, and the table says so.

Across a claim's primary comparisons, Holm's correction (:func:`avlib.study.stats.decide_family`:
three hypotheses per comparison) keeps the chance of any wrong verdict among them at alpha; the
secondary comparisons are decided one by one at alpha (uncorrected: descriptive).  Each metric has
one stated margin :data:`DELTAS` (accuracy: :data:`avlib.study.stats.DELTA` = 2 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from avlib.config import DataConfig
from avlib.study.conditions import CONDITIONS
from avlib.study.results import (LOW_SHOT_PROBE, MODALITIES, PROBES, ConditionResults, figure_bytes, level_label,
                                 level_text, mean_std, metric_values, rel, table, write_if_changed)
from avlib.study.stats import ALPHA, DELTA, POWER, MAX_SEEDS, Arms, Decision, StatsError, decide, decide_family

#: the equivalence margin of each kind of metric (the last word of a metric name, its prefix for
#: probes): accuracy points for every probe (stats.DELTA, argued there); for the dictionary
#: measures, 0.05 nats of class entropy (2% of ln 10, the balanced 10-class maximum) and 0.01 of the
#: biased-key rate (one point of the share of same-class negatives, a tenth of its balanced 10-class
#: value 0.1): below these the dictionaries' class make-up differs by less than a class's share
DELTAS = {"probe": DELTA, "entropy": 0.05, "biased": 0.01, "classes": 0.5}


def delta_of(metric: str) -> float:
    kind = metric.split()[1]
    if kind.split("_")[0] in PROBES:
        return DELTAS["probe"]
    if kind not in DELTAS:
        raise StatsError(f"metric {metric!r} has no stated equivalence margin; add it to DELTAS")
    return DELTAS[kind]


# ----------------------------------------------------------------------------- what a claim compares


@dataclass(frozen=True)
class Spec:
    """Comparisons of ``method`` with ``baseline`` in ``condition``.  ``levels``: "all", "nonzero",
    "last" (the condition's last level: the most redundant, imbalanced, faulty or largest), a level
    value, a tuple of them, or None (a condition without levels)."""

    condition: str
    baseline: str
    method: str
    levels: object
    metrics: tuple[str, ...]
    primary: bool
    baseline_level: object = "same"  # "same", or the one level the baseline ran at
    # left out once this condition has runs: it holds the same cells (its runs are these, linked, and more seeds)
    replaced_by: str | None = None


@dataclass(frozen=True)
class Claim:
    title: str
    slug: str  # the figure's file name
    statement: str
    specs: tuple[Spec, ...]
    missing_hint: str


@dataclass
class Comparison:
    condition: str
    level: object
    baseline: str
    method: str
    metric: str  # e.g. "video linear"
    primary: bool
    baseline_level: object  # where the baseline's runs are (the level itself unless one-level)
    baseline_values: dict[int, float] = field(default_factory=dict)  # seed -> value (points)
    method_values: dict[int, float] = field(default_factory=dict)
    paired: bool = False
    pairing: str = ""  # what the test column says
    decision: Decision | None = None
    holm: bool = False  # the decision is Holm-corrected across the claim's primary comparisons

    @property
    def seeds(self) -> tuple[int, int]:
        """(method, baseline) seeds the decision used."""
        if self.decision is None:
            return len(self.method_values), len(self.baseline_values)
        return self.decision.n_method, self.decision.n_baseline

    @property
    def verdict(self) -> str:
        return "untested (fewer than 2 seeds)" if self.decision is None else self.decision.verdict

    def arms_seeds(self) -> list[int]:
        """The seeds of a paired comparison's differences, in their order."""
        return sorted(set(self.baseline_values) & set(self.method_values))

    def arms(self) -> Arms:
        if self.paired:
            seeds = sorted(set(self.baseline_values) & set(self.method_values))
            return Arms([self.baseline_values[s] for s in seeds], [self.method_values[s] for s in seeds], True)
        return Arms(list(self.baseline_values.values()), list(self.method_values.values()), False)


def _same_data(results: ConditionResults, baseline: str, at, method: str, level, seed: int) -> bool:
    """Whether seed ``seed`` of the two arms ran on the same dataset with the same training seed."""
    fields = list(DataConfig.__dataclass_fields__)
    (a,) = [r for r in results.method_at(baseline, at) if r.seed == seed]
    (b,) = [r for r in results.method_at(method, level) if r.seed == seed]
    return a.config.get("seed") == b.config.get("seed") and all(a.config.get(k) == b.config.get(k) for k in fields)


def compare(results: ConditionResults, baseline: str, method: str, level, metric: str, primary: bool,
            baseline_level="same") -> Comparison:
    """``method`` against ``baseline`` at ``level`` (the baseline's runs at ``baseline_level`` where the
    condition runs it at one level only), decided alone at alpha (claim_comparisons corrects primaries)."""
    at = level if baseline_level == "same" else baseline_level
    a = metric_values(results, baseline, at, metric)
    b = metric_values(results, method, level, metric)
    common = sorted(set(a) & set(b))
    one_level = at != level and results.condition.single_level_of(baseline) == at
    paired = len(common) >= 2 and (at == level or one_level) and all(
        _same_data(results, baseline, at, method, level, s) for s in common)
    if paired:
        left_out = len(set(a) | set(b)) - len(common)
        pairing = "paired" + (f" (baseline at {level_text(at)}: same data and seeds)" if at != level else "")
        pairing += f", {left_out} unmatched seed(s) left out" if left_out else ""
    else:
        pairing = "Welch (unpaired)" + (f", baseline at {level_text(at)}" if at != level else "")
    comparison = Comparison(results.condition.name, level, baseline, method, metric, primary, at, a, b, paired,
                            pairing)
    arms = comparison.arms()
    if min(len(arms.baseline), len(arms.method)) >= 2:
        comparison.decision = decide(arms.baseline, arms.method, delta_of(metric), paired, ALPHA, POWER)
    return comparison


def _chosen_levels(results: ConditionResults, levels) -> list:
    all_levels = list(results.condition.levels)
    if levels is None:
        return [None]
    if levels == "all":
        return all_levels
    if levels == "nonzero":
        return [level for level in all_levels if level != 0]
    if levels == "last":
        return all_levels[-1:]
    return list(levels) if isinstance(levels, tuple) else [levels]


def claim_comparisons(claim: Claim, available: dict[str, ConditionResults]) -> list[Comparison]:
    """Every comparison of ``claim`` with runs, each cell once (the first spec naming it wins), the
    primary ones decided together with Holm's correction."""
    comparisons, seen = [], set()
    for spec in claim.specs:
        results = available.get(spec.condition)
        if results is None or (spec.replaced_by and spec.replaced_by in available):
            continue
        for level in _chosen_levels(results, spec.levels):
            for metric in spec.metrics:
                key = (spec.condition, level, spec.baseline, spec.method, metric)
                if key in seen:
                    continue
                comparison = compare(results, spec.baseline, spec.method, level, metric, spec.primary,
                                     spec.baseline_level)
                if min(len(comparison.baseline_values), len(comparison.method_values)) > 0:
                    comparisons.append(comparison)
                    seen.add(key)
    family = [c for c in comparisons if c.primary and c.decision is not None]
    deltas = {delta_of(c.metric) for c in family}
    if family:
        if len(deltas) > 1:
            raise StatsError(f"claim {claim.title!r}: primary comparisons mix metrics of different margins {deltas}")
        for comparison, decision in zip(family, decide_family([c.arms() for c in family], deltas.pop(), ALPHA, POWER)):
            comparison.decision, comparison.holm = decision, True
    return comparisons


def claim_trends(claim: Claim, available: dict | None = None) -> list[tuple[str, str, str]]:
    """(condition, baseline, method) of a claim's swept comparisons, each once: the trends to report
    (a spec replaced by a condition in ``available`` left out, as in claim_comparisons)."""
    seen = []
    for spec in claim.specs:
        key = (spec.condition, spec.baseline, spec.method)
        if spec.replaced_by and available is not None and spec.replaced_by in available:
            continue
        if spec.levels is not None and CONDITIONS[spec.condition].swept and key not in seen:
            seen.append(key)
    return seen


LINEAR = ("video linear", "audio linear")
KNN = ("video knn", "audio knn")
TAIL = ("video linear_tail", "audio linear_tail")
#: the linear probe with 5 labels a class (avlib.eval.probe.low_shot_probe): dictionary_size's full-label linear
#: probe saturates (99.6-99.8% for random and active at seed 0), so its comparisons read this one
LOW_SHOT = tuple(f"{m} {LOW_SHOT_PROBE}" for m in MODALITIES)
CLAIMS = (
    Claim("CM-ACC (Ma et al., ICLR 2021)", "cm_acc",
          "an actively sampled dictionary gives better representations than a random (FIFO) one",
          (Spec("sources", "random", "active", "last", LINEAR, True),
           Spec("imbalance", "random", "active", "last", LINEAR, True),
           # CM-ACC's own axis: random dictionaries get redundant as they grow (the largest size decides), read
           # with 5 labels a class (the full-label probe saturates there; it stays as a description)
           Spec("dictionary_size", "random", "active", "last", LOW_SHOT, True),
           Spec("dictionary_size", "random", "active_official", "last", LOW_SHOT, True),
           Spec("dictionary_size", "random", "active", "all", LOW_SHOT, False),
           Spec("dictionary_size", "random", "active_official", "all", LOW_SHOT, False),
           Spec("dictionary_size", "random", "active", "last", LINEAR, False),
           Spec("imbalance", "random", "active", "last", TAIL, False),
           Spec("sources", "random", "active_aware", "last", LINEAR, False),
           Spec("sources", "random", "active_official", "last", LINEAR, False),
           Spec("imbalance", "random", "active_aware", "last", LINEAR, False),
           Spec("imbalance", "random", "active_official", "last", LINEAR, False),
           Spec("sources", "random", "active", "all", LINEAR, False),
           Spec("imbalance", "random", "active", "all", LINEAR, False),
           Spec("sync", "random", "active", "all", LINEAR, False),
           Spec("samplers", "random", "active", None, LINEAR, False),
           Spec("samplers", "random", "active", None, KNN, False),
           Spec("samplers", "random", "active_official", None, LINEAR, False),
           Spec("samplers", "random", "active", None, ("video entropy", "audio entropy", "video biased",
                                                       "audio biased"), False),
           Spec("redundancy", "random", "active", "all", LINEAR, False)),
          "`make study CONDITION=dictionary_size`, `make study CONDITION=sources` and "
          "`make study CONDITION=imbalance`"),
    Claim("Robust xID (Morgado et al., CVPR 2021)", "robust_xid",
          "down-weighting faulty positives and soft targets for faulty negatives beat plain xID, "
          "especially when pairs are faulty",
          (Spec("faulty_clean", "xid", "robust_xid", "nonzero", LINEAR, True),
           Spec("faulty_clean", "xid", "robust_xid", "all", LINEAR, False),
           Spec("faulty_pair_rate", "xid", "robust_xid", "nonzero", LINEAR, False),
           Spec("samplers", "xid", "robust_xid", None, LINEAR, False),
           Spec("samplers", "xid", "robust_xid", None, KNN, False),
           Spec("faulty_pair_rate", "xid", "robust_xid", "nonzero", KNN, False)),
          "`make study CONDITION=faulty_clean`"),
    Claim("Label-aware sampling (Wang et al., 2024)", "label_aware",
          "label-aware positives and negatives (soft positives, class-aware and hard negatives) beat random sampling",
          # Wang et al.'s own axis, label quality, where the labels are not the probes' own: 30% of them wrong,
          # or k-means pseudo-labels; with ground truth the gain includes the probes' supervision (secondary)
          (Spec("label_quality", "random", "soft_positive", ("noise0.3", "kmeans"), LINEAR, True, "ground_truth"),
           Spec("label_quality", "random", "class_aware", ("noise0.3", "kmeans"), LINEAR, True, "ground_truth"),
           Spec("label_free", "random", "soft_positive", "kmeans", LINEAR, True, "ground_truth",
                replaced_by="label_quality"),
           Spec("label_free", "random", "class_aware", "kmeans", LINEAR, True, "ground_truth",
                replaced_by="label_quality"),
           Spec("label_free", "random", "hard_negative", "kmeans", LINEAR, True, "ground_truth"),
           Spec("label_quality", "random", "soft_positive", "ground_truth", LINEAR, False),
           Spec("label_quality", "random", "class_aware", "ground_truth", LINEAR, False),
           Spec("label_free", "random", "soft_positive", "ground_truth", LINEAR, False, replaced_by="label_quality"),
           Spec("label_free", "random", "class_aware", "ground_truth", LINEAR, False, replaced_by="label_quality"),
           Spec("label_free", "random", "hard_negative", "ground_truth", LINEAR, False),
           Spec("samplers", "random", "soft_positive", None, LINEAR, False),
           Spec("samplers", "random", "class_aware", None, LINEAR, False),
           Spec("samplers", "random", "hard_negative", None, LINEAR, False),
           Spec("subset_fraction", "random", "soft_positive", "all", LINEAR, False)),
          "`make study CONDITION=label_quality` and `make study CONDITION=label_free`"),
)


# ----------------------------------------------------------------------------- text


def describe(c: Comparison) -> str:
    where = c.condition if c.level is None else level_label(CONDITIONS[c.condition], c.level)
    return f"`{c.method}` vs `{c.baseline}`, {c.metric} ({where})"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def interval_text(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _sd_text(d: Decision) -> str:
    if isinstance(d.sd, tuple):
        return f"{d.sd[0]:.2f} / {d.sd[1]:.2f}"
    return f"{d.sd:.2f}"


def _p_text(d: Decision) -> str:
    p = d.p_adjusted or {"better": d.p_better, "worse": d.p_worse, "equivalent": d.p_equivalent}

    def one(value: float) -> str:
        return f"{value:.3f}" if value >= 0.001 else "<0.001"

    return f"{one(p['better'])} / {one(p['worse'])} / {one(p['equivalent'])}"


def seeds_text(d: Decision | None) -> str:
    if d is None or d.seeds_needed is None:
        return "–"
    parts = []
    for name, n in d.seeds_needed.items():
        label = "equiv." if name == "equivalent" else name
        parts.append(f"{'>' + str(MAX_SEEDS) if n is None else n} ({label})")
    return ", ".join(parts)


def _verdict_text(c: Comparison) -> str:
    if c.decision is None:
        return c.verdict
    text = f"**{c.verdict}**" if c.primary else c.verdict
    return text + (" (within ±δ)" if c.decision.within_margin else "")


def comparison_table(comparisons: list[Comparison]) -> str:
    rows = []
    for c in comparisons:
        d = c.decision
        rows.append(["●" if c.primary else "", describe(c), c.pairing, f"{c.seeds[0]}/{c.seeds[1]}",
                     "–" if d is None else _signed(d.mean), "–" if d is None else interval_text(d.ci95),
                     "–" if d is None else _sd_text(d), "–" if d is None else _p_text(d), _verdict_text(c),
                     seeds_text(d)])
    return table(["", "comparison", "test", "seeds (B/A)", "mean diff.", "95% CI", "sd", "p better / worse / equiv.",
                  "verdict", "seeds needed"], rows, align_from=3)


def _advice(claim: Claim, primary: list[Comparison]) -> str:
    """What the primary verdicts tell a user choosing a method, per method and its baseline."""
    sentences = []
    for method, baseline in dict.fromkeys((c.method, c.baseline) for c in primary):
        mine = [c for c in primary if (c.method, c.baseline) == (method, baseline)]
        by = {v: [c for c in mine if c.verdict == v] for v in ("better", "worse", "equivalent", "inconclusive")}

        def where(items):
            return ", ".join(f"{c.metric} at {level_label(CONDITIONS[c.condition], c.level) or c.condition}"
                             for c in items)

        if by["better"] and not by["worse"]:
            lead = f"use `{method}` over `{baseline}` where it was better ({where(by['better'])})"
        elif by["worse"] and not by["better"]:
            lead = f"prefer `{baseline}`: `{method}` was worse ({where(by['worse'])}) and nowhere better"
        elif by["better"] and by["worse"]:
            lead = (f"`{method}` against `{baseline}` depends on the setting: better at {where(by['better'])}, "
                    f"worse at {where(by['worse'])}")
        elif by["equivalent"] and not by["inconclusive"]:
            lead = (f"`{method}` and `{baseline}` are equivalent within ±δ on every primary comparison: "
                    "choose the cheaper (Time tables)")
        else:
            lead = f"the study cannot yet tell `{method}` from `{baseline}`"
        extra = []
        if by["equivalent"] and (by["inconclusive"] or by["better"] or by["worse"]):
            extra.append(f"equivalent within ±δ at {where(by['equivalent'])}")
        if by["inconclusive"]:
            needs = "; ".join(f"{c.metric} at {level_label(CONDITIONS[c.condition], c.level) or c.condition}: "
                              f"{seeds_text(c.decision)}" for c in by["inconclusive"])
            extra.append(f"inconclusive at {where(by['inconclusive'])} (seeds a decision would need: {needs})")
        sentences.append(lead + ("; " + "; ".join(extra) if extra else "") + ".")
    return "What this tells a user: " + " ".join(s[0].upper() + s[1:] for s in sentences)


def _trend(available: dict[str, ConditionResults], condition_name: str, baseline: str, method: str) -> str:
    """Per level, ``method`` - ``baseline`` on each linear probe (mean, 95% interval, verdict alone), and
    whether the difference changes from the first level to the last: does the gain grow toward the
    more redundant, imbalanced, faulty or larger end?  The change is tested on the two levels'
    per-seed differences: paired where both levels share the baseline's runs (a one-level baseline:
    the change is then the method's own per-seed change), Welch's t otherwise (other datasets)."""
    results = available.get(condition_name)
    name = f"Trend over `{CONDITIONS[condition_name].swept}` ({condition_name}), `{method}` − `{baseline}`"
    if results is None:
        return f"{name}: not tested (run `make study CONDITION={condition_name}`)."
    # a baseline planned at one level only (label_free's ``random``) is the baseline of every level
    single = results.condition.single_level_of(baseline)
    at = "same" if single is None else single
    parts = []
    for metric in LINEAR:
        cells = []
        for level in results.condition.levels:
            c = compare(results, baseline, method, level, metric, False, at)
            if c.decision is not None:
                cells.append((level, c))
        if len(cells) < 2:
            continue
        listed = ", ".join(f"{_signed(c.decision.mean)} {interval_text(c.decision.ci95)} {c.verdict} at "
                           f"{level_text(level)}" for level, c in cells)
        (first_level, first), (last_level, last) = cells[0], cells[-1]
        change = ""
        if first.paired and last.paired:
            shared = single is not None and sorted(first.arms_seeds()) == sorted(last.arms_seeds())
            d = decide(first.decision.differences, last.decision.differences, delta_of(metric), paired=shared)
            direction = {"better": "grows", "worse": "falls", "equivalent": "stays within ±δ",
                         "inconclusive": "changes by an undecided amount"}[d.verdict]
            change = (f"; from {level_text(first_level)} to {level_text(last_level)} the difference {direction} "
                      f"({_signed(d.mean)} {interval_text(d.ci95)}, {d.test} over the per-seed differences)")
        parts.append(f"{metric}: {listed}{change}")
    if not parts:
        return f"{name}: needs runs at two levels or more."
    return f"{name} (points, mean [95% CI], verdict alone at each level) — " + "; ".join(parts) + "."


def claim_figure(claim: Claim, comparisons: list[Comparison]):
    """The paired differences of a claim's linear-probe comparisons: per-seed differences (dots), the
    95% (thin) and 90% (thick) intervals of the mean, and the ±δ band."""
    import matplotlib.pyplot as plt

    shown = [c for c in comparisons if c.decision is not None and c.metric in LINEAR]
    colours = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "inconclusive": "tab:grey"}
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(shown) + 1.6))
    delta = DELTAS["probe"]
    ax.axvspan(-delta, delta, color="tab:blue", alpha=0.10, label=f"±δ = ±{delta:g} points")
    ax.axvline(0.0, color="black", linewidth=0.8)
    for row, c in enumerate(shown):
        y = len(shown) - 1 - row
        d = c.decision
        colour = colours[d.verdict]
        if d.paired:
            ax.scatter(d.differences, [y] * len(d.differences), s=9, color="0.55", zorder=2)
        ax.plot(d.ci95, [y, y], color=colour, linewidth=1.2, zorder=3)
        ax.plot(d.ci90, [y, y], color=colour, linewidth=4.0, alpha=0.6, zorder=3)
        ax.scatter([d.mean], [y], color=colour, marker="D" if c.primary else "o", s=30, zorder=4)
    ax.set_yticks(range(len(shown)), [("● " if c.primary else "") + describe(c).replace("`", "") +
                                      ("" if c.decision.paired else " [unpaired]") for c in reversed(shown)],
                  fontsize=7)
    for verdict, colour in colours.items():
        ax.plot([], [], color=colour, linewidth=3, label=verdict)
    ax.set_xlabel("method − baseline, test accuracy (points): dots per seed, thin 95% / thick 90% interval")
    ax.set_title(f"{claim.title}: paired differences (● primary, Holm-corrected)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


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
    aware = {(r.run_dir.resolve(), r.variant.name, r.seed): r for results in available.values() for r in results.runs
             if r.config.get("sampler") in LABEL_AWARE}  # a run two conditions share counted once
    mean, std, n = mean_std([r.summary.get("label_purity") for r in aware.values()
                             if r.config.get("label_source") == "kmeans"])
    purity = (f" The k-means pseudo-labels ended with a purity of {100 * mean:.1f} ± {100 * std:.1f}% over {n} runs "
              "(per variant in the condition's pseudo-label table): the label-free runs' gain is what labels of "
              "that quality give." if n > 1 else "")
    noises = sorted({r.config["label_noise"] for r in aware.values() if r.config.get("label_noise")})
    for noise in noises:
        mean, std, n = mean_std([r.summary.get("label_purity") for r in aware.values()
                                 if r.config.get("label_noise") == noise])
        purity += (f" With `label_noise={noise:g}` ({100 * noise:g}% of the training labels moved to a random other "
                   f"class) the labels' purity was {100 * mean:.1f}% over {n} runs.")
    return "Labels: the label-aware runs used `label_source` " + ", ".join(f"`{s}`" for s in sources) + "." + purity


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


def _sd_summary(primary: list[Comparison]) -> str:
    paired = [c.decision.sd for c in primary if c.decision is not None and c.decision.paired]
    if not paired:
        return ""
    return (f" The paired differences' standard deviations over seeds: {min(paired):.2f} to {max(paired):.2f} "
            f"points (median {sorted(paired)[len(paired) // 2]:.2f}).")


def findings_section(available: dict[str, ConditionResults], report_dir: Path, study_dir: Path) -> str:
    parts = ["## Findings", "",
             f"Generated by `avlib/study/findings.py` with the tests of `avlib/study/stats.py`. For each comparison "
             "of a method B with its baseline A on a metric, over the seeds: the **mean difference** B − A (paired: "
             "the mean of the per-seed differences; seed k of every method shares its initial weights, data order "
             "and dataset) with its 95% t interval, and a verdict: **better** (one-sided t-test of mean > 0 rejects), "
             "**worse** (mean < 0 rejects), **equivalent** within ±δ (two one-sided tests: the 90% interval lies "
             "inside (−δ, +δ)), else **inconclusive**, each at "
             f"α = {ALPHA:g} (one-sided: better or worse when the 90% interval excludes 0, so a 95% interval may "
             f"still touch 0). **δ = {DELTAS['probe']:g} accuracy points** for every probe (argued in "
             "`avlib/study/stats.py`: it separates Wang et al.'s remaining gains from their vanished one, and is "
             "3.6 of the 180 test clips); dictionary measures: δ = "
             f"{DELTAS['entropy']:g} nats of class entropy, {DELTAS['biased']:g} of the biased-key rate. A claim's "
             "primary comparisons (●, verdict in bold) are decided together with Holm's correction over their "
             "three hypotheses each (p-values in the table Holm-adjusted); the others are decided one by one "
             "(uncorrected, descriptive). *Test*: paired t on the per-seed differences where both arms ran with "
             "the same seeds on the same data, Welch's t otherwise. *sd*: of the paired differences (unpaired: of "
             "each arm, A / B). *Seeds needed* (inconclusive only): seeds per arm for a one-sided test to "
             f"decide the direction with probability {POWER:g} if the observed mean and spread were the truth, and "
             f"for the equivalence test to show equivalence with probability {POWER:g} if the true difference were "
             "0 (t-based, `stats.seeds_needed`; primaries at Holm's strictest level α/3m).", ""]
    figures_dir = study_dir / "findings"
    for claim in CLAIMS:
        comparisons = claim_comparisons(claim, available)
        parts += [f"### {claim.title}", "", f"Claim: {claim.statement}.", ""]
        primary = [c for c in comparisons if c.primary]
        if not primary:
            parts += [f"**Not tested**: no finished runs of its primary comparisons; run {claim.missing_hint}."
                      + (" The secondary comparisons that have runs:" if comparisons else ""), ""]
            parts += [comparison_table(comparisons), ""] if comparisons else []
            continue
        counts = {v: sum(c.verdict == v for c in primary) for v in ("better", "worse", "equivalent", "inconclusive")}
        untested = len(primary) - sum(counts.values())
        decided = [c for c in primary if c.decision is not None]
        parts.append(f"**Verdicts at this scale** (δ = {DELTAS['probe']:g} points, Holm over {3 * len(decided)} "
                     f"hypotheses of {len(decided)} primary comparisons): "
                     + ", ".join(f"{n} {v}" for v, n in counts.items())
                     + (f", {untested} untested" if untested else "") + "." + _sd_summary(primary))
        parts += ["", comparison_table(comparisons), ""]
        figure = figures_dir / f"{claim.slug}.png"
        write_if_changed(figure, figure_bytes(claim_figure(claim, comparisons)))
        parts += [f"![paired differences, {claim.title}]({rel(figure, report_dir)})", ""]
        parts += [_advice(claim, primary), ""]
        for condition_name, baseline, method in claim_trends(claim, available):
            parts += [_trend(available, condition_name, baseline, method), ""]
        if claim.slug == "label_aware":
            parts += [_label_source_note(available), ""]
    parts += [_scale_note(available), ""]
    return "\n".join(parts)
