"""How much of a comparison's spread over seeds is the test split's sampling of clips (issue 31, "lower
variance where it is free"), from the runs' ``summary.json`` alone.

The runs record one accuracy per probe, not which clips it got right; but they record two accuracies of
disjoint parts of the test split: the tail classes' (``linear_tail``, the rarest third of the classes) and,
where the test split is balanced (every testbed condition: imbalance touches the train split only), the
whole's, so the rest's follows.  :func:`avlib.study.stats.noise_from_halves` turns the per-seed difference
between the two parts into the clip part of the whole's variance (an upper bound: a seed's model that is
better on some classes than on others counts as clip noise too).  With per-clip correctness recorded
(``avlib.eval.probe.clip_correctness``), :func:`avlib.study.stats.noise_from_clips` gives the exact split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avlib.study.findings import CLAIMS, Comparison, claim_comparisons
from avlib.study.results import ConditionResults, metric_values
from avlib.study.stats import NoiseSplit, StatsError, noise_from_clips, noise_from_halves

#: the testbed conditions' test split: 10 classes x 18 clips (0.3 of 60 clips per class)
TESTBED_TEST_CLIPS = 180
#: the key of ``summary.json`` holding :func:`avlib.eval.probe.clip_correctness` (runs that record it)
CLIP_RECORD = "probe_correct"


@dataclass(frozen=True)
class CellNoise:
    comparison: Comparison
    split: NoiseSplit  # of the paired differences B - A (points^2)


def tail_share(results: ConditionResults) -> float | None:
    """The tail classes' share of a balanced test split (:func:`avlib.eval.probe.tail_classes`: a third of the
    classes, at least one), or None where a run's test split is not balanced (balanced accuracy differs from
    accuracy) or lacks the class count."""
    from avlib.eval.probe import tail_classes

    shares = set()
    for run in results.runs:
        classes = run.summary.get("classes")
        if not classes:
            return None
        for modality, probes in run.summary.get("probe", {}).items():
            for kind in ("linear", "knn"):
                balanced = probes.get(f"{kind}_balanced")
                if balanced is None or abs(balanced - probes[kind]) > 1e-9:
                    return None
        shares.add(len(tail_classes(np.zeros(0, dtype=np.int64), len(classes))) / len(classes))
    return shares.pop() if len(shares) == 1 else None


def clip_differences(results: ConditionResults, comparison: Comparison) -> np.ndarray | None:
    """``(seeds, clips)`` per-clip differences of correctness, method - baseline, in points (100 x -1/0/+1),
    where every run of the paired seeds records :data:`CLIP_RECORD` over the same number of clips; else None."""
    from avlib.eval.probe import unpack_flags

    modality, kind = comparison.metric.split()
    runs = {side: {r.seed: r.summary.get(CLIP_RECORD) for r in results.method_at(method, level)}
            for side, method, level in (("a", comparison.baseline, comparison.baseline_level),
                                        ("b", comparison.method, comparison.level))}
    seeds = comparison.arms_seeds()
    records = [(runs["a"].get(s), runs["b"].get(s)) for s in seeds]
    if len(seeds) < 2 or any(a is None or b is None for a, b in records):
        return None
    clips = {record["clips"] for pair in records for record in pair}
    if len(clips) != 1 or kind not in ("linear", "knn"):
        return None
    (n,) = clips
    return np.array([100.0 * (unpack_flags(b[modality][kind], n).astype(float) - unpack_flags(a[modality][kind], n))
                     for a, b in records])


def comparison_noise(results: ConditionResults, comparison: Comparison, test_clips: int) -> NoiseSplit | None:
    """The noise split of one paired comparison's per-seed differences: exact from the runs' per-clip
    correctness where they record it (:func:`clip_differences`), else split-half; None where neither applies
    (unpaired, no tail accuracy, an unbalanced test split, not a probe's accuracy, fewer than 2 seeds)."""
    modality, kind = comparison.metric.split()
    if comparison.paired and (differences := clip_differences(results, comparison)) is not None:
        return noise_from_clips(differences)
    share = tail_share(results)
    if not comparison.paired or kind not in ("linear", "knn") or share is None:
        return None
    tail = f"{modality} {kind}_tail"
    a_tail = metric_values(results, comparison.baseline, comparison.baseline_level, tail)
    b_tail = metric_values(results, comparison.method, comparison.level, tail)
    seeds = [s for s in comparison.arms_seeds() if s in a_tail and s in b_tail]
    whole = [comparison.method_values[s] - comparison.baseline_values[s] for s in seeds]
    part = [b_tail[s] - a_tail[s] for s in seeds]
    try:
        return noise_from_halves(whole, part, share, test_clips)
    except StatsError:
        return None


def claims_noise(available: dict[str, ConditionResults], test_clips: int = TESTBED_TEST_CLIPS) -> list[CellNoise]:
    """Every paired probe comparison of every claim with its split-half noise (primary ones first)."""
    cells = []
    for claim in CLAIMS:
        for comparison in claim_comparisons(claim, available):
            split = comparison_noise(available[comparison.condition], comparison, test_clips)
            if split is not None:
                cells.append(CellNoise(comparison, split))
    return sorted(cells, key=lambda c: not c.comparison.primary)
