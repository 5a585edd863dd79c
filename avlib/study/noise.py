"""How much of a comparison's spread over seeds is the test split's sampling of clips (issue 31, "lower
variance where it is free"), from the runs' ``summary.json`` alone.

The runs record one accuracy per probe, not which clips it got right; but they record two accuracies of
disjoint parts of the test split: the tail classes' (``linear_tail``, the rarest third of the classes) and,
where the test split is balanced (every testbed condition: imbalance touches the train split only), the
whole's, so the rest's follows.  :func:`avlib.study.stats.noise_from_halves` turns the per-seed difference
between the two parts into the clip part of the whole's variance (an upper bound: a seed's model that is
better on some classes than on others counts as clip noise too).  With per-clip correctness recorded
(``avlib.eval.probe.clip_correctness``), :func:`avlib.study.stats.noise_from_clips` gives the exact split.

:func:`noise_section` turns the cells (and their arms, :func:`arms_noise`) into the report's section "How much
of the spread is the test split": the pooled split, how it was estimated, and what it means for the verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from avlib.study.findings import CLAIMS, Comparison, claim_comparisons
from avlib.study.kept import KEPT_FILES
from avlib.study.results import ConditionResults, metric_values, table
from avlib.study.stats import NoiseSplit, StatsError, noise_from_clips, noise_from_halves, pool_noise
from avlib.train.run_folder import has_checkpoint

#: the testbed conditions' test split: 10 classes x 18 clips (0.3 of 60 clips per class)
TESTBED_TEST_CLIPS = 180
#: the key of ``summary.json`` holding :func:`avlib.eval.probe.clip_correctness` (runs that record it)
CLIP_RECORD = "probe_correct"


#: the test splits, in times the present one, whose expected sd the report gives
FACTORS = (2, 4, 10)
#: the report section's title, and its anchor (GitHub's: lower case, spaces as hyphens)
NOISE_TITLE = "How much of the spread is the test split"
NOISE_ANCHOR = NOISE_TITLE.lower().replace(" ", "-")


@dataclass(frozen=True)
class CellNoise:
    comparison: Comparison
    split: NoiseSplit  # of the paired differences B - A (points^2)
    exact: bool = False  # from the runs' per-clip correctness; else the split-half estimate (an upper bound)
    # every run of the cell has its checkpoint at hand, so its probes could be run again on a larger test split
    checkpointed: bool = False
    # the compared runs, ``(baseline origin, method origin)`` per seed: two claims' comparisons of the same runs
    # (a shared default level, linked twins) are one cell of the study, counted once in a pool
    runs: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class ArmNoise:
    """One arm (a method at a level, over seeds) on one metric: its own spread's split, without pairing."""

    condition: str
    method: str
    level: object
    metric: str
    split: NoiseSplit  # of the per-seed accuracies (points^2)
    accuracy: float  # mean over the seeds, a share of 1 (for the binomial bound)
    exact: bool = False
    runs: tuple = field(default=(), compare=False)  # the runs' origins, one per seed


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
    found = _comparison_noise(results, comparison, test_clips)
    return None if found is None else found[0]


def _comparison_noise(results: ConditionResults, comparison: Comparison,
                      test_clips: int) -> tuple[NoiseSplit, bool] | None:
    """:func:`comparison_noise` and whether it is exact (from per-clip records)."""
    modality, kind = comparison.metric.split()
    if comparison.paired and (differences := clip_differences(results, comparison)) is not None:
        return noise_from_clips(differences), True
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
        return noise_from_halves(whole, part, share, test_clips), False
    except StatsError:
        return None


def _arm_runs(results: ConditionResults, method: str, level, seeds: list[int]) -> list:
    by_seed = {r.seed: r for r in results.method_at(method, level)}
    return [by_seed[s] for s in seeds]


def claims_noise(available: dict[str, ConditionResults], test_clips: int = TESTBED_TEST_CLIPS) -> list[CellNoise]:
    """Every paired probe comparison of every claim with its noise split (primary ones first)."""
    cells = []
    for claim in CLAIMS:
        for comparison in claim_comparisons(claim, available):
            results = available[comparison.condition]
            found = _comparison_noise(results, comparison, test_clips)
            if found is not None:
                seeds = comparison.arms_seeds()
                pairs = list(zip(_arm_runs(results, comparison.baseline, comparison.baseline_level, seeds),
                                 _arm_runs(results, comparison.method, comparison.level, seeds)))
                checkpointed = all(has_checkpoint(run.run_dir) for pair in pairs for run in pair)
                cells.append(CellNoise(comparison, *found, checkpointed=checkpointed,
                                       runs=tuple((a.origin, b.origin) for a, b in pairs)))
    return sorted(cells, key=lambda c: not c.comparison.primary)


def distinct(items: list) -> list:
    """``items`` (cells or arms) with each set of runs on one metric once, the first kept (a primary cell before
    a secondary one of the same runs): two claims comparing the same runs measure one spread, not two."""
    seen, kept = set(), []
    for item in items:
        metric = item.comparison.metric if isinstance(item, CellNoise) else item.metric
        key = (metric, item.runs) if item.runs else id(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def arm_noise(results: ConditionResults, method: str, level, metric: str, seeds: list[int],
              test_clips: int) -> ArmNoise | None:
    """One arm's split over ``seeds``: exact where every run records per-clip correctness, else split-half
    (tail classes against the rest); None where neither applies."""
    modality, kind = metric.split()
    if kind not in ("linear", "knn") or len(seeds) < 2:
        return None
    from avlib.eval.probe import unpack_flags

    whole = metric_values(results, method, level, metric)
    if any(s not in whole for s in seeds):
        return None
    accuracy = float(np.mean([whole[s] for s in seeds])) / 100.0
    runs = {r.seed: r for r in results.method_at(method, level)}
    origins = tuple(runs[s].origin for s in seeds)
    records = [runs[s].summary.get(CLIP_RECORD) for s in seeds]
    if all(records) and len({r["clips"] for r in records}) == 1:
        n = records[0]["clips"]
        correct = np.array([100.0 * unpack_flags(r[modality][kind], n) for r in records])  # (seeds, clips)
        return ArmNoise(results.condition.name, method, level, metric, noise_from_clips(correct), accuracy, True,
                        origins)
    share = tail_share(results)
    tail = metric_values(results, method, level, f"{modality} {kind}_tail")
    if share is None or any(s not in tail for s in seeds):
        return None
    try:
        split = noise_from_halves([whole[s] for s in seeds], [tail[s] for s in seeds], share, test_clips)
    except StatsError:
        return None
    return ArmNoise(results.condition.name, method, level, metric, split, accuracy, False, origins)


def arms_noise(available: dict[str, ConditionResults], cells: list[CellNoise],
               test_clips: int = TESTBED_TEST_CLIPS) -> list[ArmNoise]:
    """The two arms of every cell on its own (each set of runs once), over the seeds the cell pairs: what the
    spread would be without pairing."""
    arms = []
    for cell in cells:
        c = cell.comparison
        results = available[c.condition]
        for method, level in ((c.baseline, c.baseline_level), (c.method, c.level)):
            arm = arm_noise(results, method, level, c.metric, c.arms_seeds(), test_clips)
            if arm is not None:
                arms.append(arm)
    return distinct(arms)


# ----------------------------------------------------------------------------- the report's section


def capped(split: NoiseSplit) -> NoiseSplit:
    """``split`` with its clip part clipped to [0, observed]: a lower pooled estimate than the raw one (it trims
    only the cells whose estimate came out above their observed variance, by chance at a few seeds or because the
    split-half estimate is an upper bound), where the raw pool is unbiased for the split-half's target."""
    return NoiseSplit(split.observed_var, min(max(split.clip_var, 0.0), split.observed_var), split.seeds, split.clips)


def _row(name: str, splits: list[NoiseSplit], exact: int, factors) -> list[str]:
    pooled = pool_noise(splits)
    return ([name, str(len(splits)), str(pooled.seeds), f"{math.sqrt(pooled.observed_var):.2f}",
             f"{math.sqrt(max(pooled.clip_var, 0.0)):.2f}", f"{pooled.share:.2f}"]
            + [f"{pooled.sd_with(f):.2f}" for f in factors] + [f"{exact} of {len(splits)}"])


def _ratio(a: float, b: float) -> float:
    """a / b, NaN where b is 0 (cells whose seeds all agree: nothing to split)."""
    return a / b if b > 0 else math.nan


def mixed_split_se(split: NoiseSplit, seeds: int, factor: float) -> tuple[float, float, float]:
    """The standard error of a paired mean over ``2 x seeds`` seeds of variance ``split``: all at the present
    test split; ``seeds`` of them at it and ``seeds`` new ones at ``factor`` times it (the plain mean, as the
    paired t-test takes it); all at the larger one (the present seeds trained again)."""
    present, larger = split.observed_var, split.sd_with(factor) ** 2
    total = 2 * seeds
    return (math.sqrt(present / total), math.sqrt((seeds * present + seeds * larger) / total ** 2),
            math.sqrt(larger / total))


def noise_section(cells: list[CellNoise], arms: list[ArmNoise], factors=FACTORS) -> str:
    """The report's section on the test split's share of the spread over seeds, from :func:`claims_noise`'s
    cells and :func:`arms_noise`'s arms (every number computed from them); "" without cells."""
    if not cells:
        return ""
    factors = sorted(factors)
    primary = [c for c in cells if c.comparison.primary]
    paired = distinct(cells)
    head = primary or paired  # the cells the verdicts rest on
    what = "primary comparisons" if primary else "paired comparisons"
    clips = pool_noise([c.split for c in cells]).clips
    rows = []
    if primary:
        rows += [_row("primary comparisons, paired differences", [c.split for c in primary],
                      sum(c.exact for c in primary), factors),
                 _row("the same, each cell's clip part capped at its observed variance (lower estimate)",
                      [capped(c.split) for c in primary], sum(c.exact for c in primary), factors)]
    rows.append(_row("every paired comparison (each set of runs once), paired differences",
                     [c.split for c in paired], sum(c.exact for c in paired), factors))
    if arms:
        rows.append(_row("their arms on their own (each set of runs once), per-seed accuracy",
                         [a.split for a in arms], sum(a.exact for a in arms), factors))
    header = (["Cells", "n", "seed values", "observed sd", "test-clip sd", "share of variance"]
              + [f"sd at {f}x test clips" for f in factors] + ["exact"])

    pooled, low = pool_noise([c.split for c in head]), pool_noise([capped(c.split) for c in head])
    shares = sorted(c.split.share for c in head)
    n_seeds = min(c.split.seeds for c in head)
    folds = [_ratio(pooled.observed_var, pooled.sd_with(f) ** 2) for f in factors]
    low_folds = [_ratio(low.observed_var, low.sd_with(f) ** 2) for f in factors]
    mid = factors[len(factors) // 2]
    all_present, mixed, all_larger = mixed_split_se(pooled, n_seeds, mid)
    kept_gain = _ratio(all_present ** 2 - mixed ** 2, all_present ** 2 - all_larger ** 2)
    inexact_seeds = sorted({s for c in paired if not c.exact for s in c.comparison.arms_seeds()})
    frozen = [c for c in head if not c.checkpointed]
    frozen_seeds = sorted({s for c in frozen for s in c.comparison.arms_seeds()})
    exact_paired = sum(c.exact for c in paired)

    intro = ("Generated by `avlib/study/noise.py` (`claims_noise`, `arms_noise`, `noise_section`) with "
             f"`avlib/study/stats.py`. A probe's accuracy is a mean over the test split's {clips} clips, so part of "
             "its spread over seeds is which clips each seed's model happens to get right: that part shrinks as "
             "1 / (test clips), and shrinking it costs no training. The rest, a seed's model being better or "
             "worse on many clips at once, is training's, and only more seeds average it out. For each paired "
             "comparison of the findings (a probe's accuracy), the variance over seeds of the differences B − A "
             "splits into the two; the table pools the cells (variances averaged with seeds − 1 as weights, "
             "`stats.pool_noise`) and gives the sd over seeds that a test split "
             + ", ".join(f"{f}x" for f in factors) + " as large would leave (the clip part divided by the "
             "factor, training's part unchanged: `NoiseSplit.sd_with`).")
    legend = ("*n*: cells (comparisons or arms); *seed values*: the per-seed values pooled; sds in accuracy "
              "points; *share of variance*: the test clips' part of the observed variance; *exact*: cells whose "
              "runs all record which test clips each probe got right.")
    how = ("**How it was estimated.** Exact where every run of a cell records its per-clip correctness "
           f"(`summary.json` `{CLIP_RECORD}`, which runs write since it was added): the variance over seeds of a "
           "mean over clips is the sum of each clip's own variance over seeds (the test clips' part) and of the "
           "clips' covariances (training's part), `stats.noise_from_clips`. Elsewhere split-half "
           "(`stats.noise_from_halves`): every run records the accuracy of the tail classes (a third of the "
           "classes) and of the whole test split, hence of the rest; the two are disjoint clips, so the per-seed "
           "difference between them cancels what training does to every clip alike and leaves the two parts' "
           "clip noise, which scales to the whole's. It is an upper bound: a seed's model that is better on some "
           "classes than on others counts as clip noise too. "
           f"Here {exact_paired} of the {len(paired)} distinct paired cells and {sum(a.exact for a in arms)} of the "
           f"{len(arms)} arms are exact"
           + (f" (the runs of seeds {_seeds_text(inexact_seeds)} predate the per-clip record)" if inexact_seeds
              else "")
           + f". One cell's split rests on {n_seeds} seeds ({n_seeds - 1} degrees of freedom), so the cells "
           f"scatter: the {what}' shares range from {shares[0]:.2f} to {shares[-1]:.2f} (median "
           f"{float(np.median(shares)):.2f}), {sum(s > 1 for s in shares)} of {len(shares)} above 1. The raw "
           "pool is the estimate (unbiased for what the split-half measures; it weighs the cells with the "
           "largest spread most); capping each cell's clip part at its own observed variance trims only the high "
           "estimates, so the capped row is biased low and shows how much the raw share rests on the cells "
           "above 1." + _arm_text(arms, pool_noise([c.split for c in paired]), clips))
    if frozen:
        why = ("Why the conditions' test split is not enlarged yet: the runs of "
               + (f"all {len(head)}" if len(frozen) == len(head) else f"{len(frozen)} of the {len(head)}")
               + f" {what} (seeds {_seeds_text(frozen_seeds)}) have no checkpoint at hand (their kept copies hold "
               + " and ".join(f"`{name}`" for name in KEPT_FILES) + "), so their probes cannot be recomputed on a "
               "larger test split without training them again; and ")
    else:
        why = ("Every run of these cells has its checkpoint, so their probes can be run again on a larger test "
               "split; enlarging it for new seeds only would not do: ")
    means = ("**What it means for the verdicts.** At "
             f"{clips} test clips, {pooled.share:.0%} of the variance over seeds of the {what}' paired "
             f"differences is which test clips were drawn ({low.share:.0%} with each cell capped; observed sd "
             f"{math.sqrt(pooled.observed_var):.2f} points, of which {math.sqrt(max(pooled.clip_var, 0.0)):.2f} "
             f"the clips', capped {math.sqrt(max(low.clip_var, 0.0)):.2f}"
             + ("; an upper bound while the estimate is split-half" if exact_paired < len(paired) else "")
             + "). A larger test split is the cheaper lever: the variance falls "
             + ", ".join(f"{lo:.1f} to {hi:.1f}-fold with {f}x the test clips"
                         for f, lo, hi in zip(factors, low_folds, folds))
             + f" (capped to raw pool), so {mid}x the test clips does what "
             f"{low_folds[factors.index(mid)]:.1f} to {folds[factors.index(mid)]:.1f}x the seeds would, for the cost "
             "of probing more clips (more test clips per class, the train split unchanged) instead of training "
             "more runs. " + why
             + f"mixing them with new seeds probed on a larger split keeps only {kept_gain:.0%} of the gain: at "
             f"{2 * n_seeds} seeds per cell, {n_seeds} of them new, the paired mean's standard error would be "
             f"{all_present:.2f} points with all at {clips} clips, {mixed:.2f} with the new ones at {mid}x the "
             f"clips, and {all_larger:.2f} with all at {mid}x (raw pool); and the paired t-test assumes that every "
             "seed's difference has the same variance, which a mixed split breaks. The new seeds record their "
             "per-clip correctness, so their cells' split is exact: if it confirms a large share, the next seeds "
             "should come with a larger test split (and the present ones be retrained on it); if the exact share "
             "is well below the split-half bound, seeds are the lever.")
    return "\n".join([f"## {NOISE_TITLE}", "", intro, "", table(header, rows), "", legend, "", how, "", means, ""])


def _seeds_text(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _arm_text(arms: list[ArmNoise], paired: NoiseSplit, clips: int) -> str:
    """What one arm's spread is made of, and what pairing the arms removes of each part."""
    if not arms:
        return ""
    weights = [a.split.seeds - 1 for a in arms]
    binomial = 100 * math.sqrt(np.average([a.accuracy * (1 - a.accuracy) / clips for a in arms], weights=weights))
    pooled = pool_noise([a.split for a in arms])
    arm_clip = min(max(pooled.clip_var, 0.0), pooled.observed_var)
    pair_clip = min(max(paired.clip_var, 0.0), paired.observed_var)
    text = (f" For one arm on its own, the binomial sd of an accuracy over {clips} clips at the arms' mean "
            f"accuracies ({binomial:.2f} points, pooled) bounds the clip part from above; the estimate is "
            f"{math.sqrt(max(pooled.clip_var, 0.0)):.2f}, and the arms' observed sd {math.sqrt(pooled.observed_var):.2f}.")
    if pooled.observed_var > arm_clip and arm_clip > 0:
        training_removed = 1 - (paired.observed_var - pair_clip) / (2 * (pooled.observed_var - arm_clip))
        clip_removed = 1 - pair_clip / (2 * arm_clip)
        text += (f" Against two independent arms, pairing (seed k of both shares its initial weights, data order "
                 f"and dataset) removes {training_removed:.0%} of training's part of a difference's variance and "
                 f"{clip_removed:.0%} of the clips' (a clip hard for one arm is often hard for the other), so "
                 f"that {min(pair_clip / paired.observed_var, 1.0):.0%} of what is left is the clips'.")
    return text
