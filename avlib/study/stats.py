"""Decisions, not only means: the statistics the study's findings apply to each comparison.

A *comparison* is a method B against its baseline A on one metric (a probe's test accuracy, in
points), over the seeds both ran.  The study's runs are paired by seed: seed k of every method at a
level starts from the same initial weights, reads the same dataset and the same data order
(``avlib.study.conditions``), so the per-seed differences ``B_k - A_k`` carry the comparison and
the seed-to-seed swing both arms share cancels (issue 31: over the committed runs the two arms
correlate +0.6 to +0.9; ``imbalance`` at 5, video: pooled std 5.67, std of the paired differences
2.47).  Where the two arms did not run at the same level with the same seeds (a baseline planned
at one level only), the comparison is unpaired and uses Welch's t (unequal variances); the result
says which (``Decision.paired``).

Every comparison gets one of four verdicts, each a one-sided t-test on the mean difference ``mu``
(t with n - 1 degrees of freedom paired, Welch-Satterthwaite's unpaired):

* **better** -- ``H0: mu <= 0`` rejected (``p_better <= alpha``);
* **worse** -- ``H0: mu >= 0`` rejected (``p_worse <= alpha``);
* **equivalent** (within ``+-delta``) -- two one-sided tests (TOST, Schuirmann 1987): ``H0: mu <=
  -delta`` and ``H0: mu >= +delta`` both rejected; ``p_equivalent`` is the larger of their
  p-values.  At ``alpha = 0.05`` this is "the 90% interval lies inside (-delta, +delta)";
* **inconclusive** -- none of the above: the seeds cannot tell an effect from no effect worth
  having.

"Better" and "worse" come first: a difference that is significant and smaller than ``delta`` is
reported as better (or worse) with ``within_margin`` set, so a reader sees both facts.

``delta`` is one stated number per metric, :data:`DELTA` (argued there).  Across a claim's primary
comparisons, :func:`decide_family` applies Holm's step-down correction (:func:`holm`) so that the
chance of any wrong verdict among them stays at ``alpha``.

For an inconclusive comparison, :attr:`Decision.seeds_needed` says how many seeds a decision would
need at the observed spread (:func:`seeds_needed`, formula there).  Pure functions of lists of
numbers; numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy import stats as _scipy_stats

#: The equivalence margin for probe accuracies, in accuracy points.  Two points separates the label-aware
#: paper's own gains (Wang et al. 2024, in-domain linear probe: +6.7 points with ground truth, +2.4 with
#: pseudo-labels, +0.7 with 30% of the labels wrong; issue 31) into the effects it reports as remaining
#: (2.4 and up) and the one it reports as vanished (0.7).  And it is small against what one run's test
#: split resolves: one of the study's 180 test clips moves a probe by 0.56 points, and an accuracy near
#: 70% over 180 clips carries a binomial sampling sd of sqrt(0.7 x 0.3 / 180) = 3.4 points, so a
#: difference inside +-2 points is one a user choosing a sampler would not see in a run of their own.
DELTA = 2.0
#: the tests' level: one-sided 5% (the equivalence test's 90% interval)
ALPHA = 0.05
#: the default odds :func:`seeds_needed` plans for (the usual 80% power)
POWER = 0.8
#: :func:`seeds_needed` gives up beyond this many seeds (returns None: "more than MAX_SEEDS")
MAX_SEEDS = 10_000
VERDICTS = ("better", "worse", "equivalent", "inconclusive")


class StatsError(ValueError):
    """Input the statistics cannot use (too few seeds, unequal pairs, NaN); the message names it."""


@dataclass(frozen=True)
class Decision:
    """The verdict on one comparison and every number behind it (accuracy points, method - baseline)."""

    verdict: str  # one of VERDICTS
    paired: bool  # True: per-seed differences, t with n - 1 df; False: Welch's t
    mean: float  # mean difference (paired) or difference of the means (unpaired)
    ci95: tuple[float, float]  # two-sided 95% t interval of the mean difference
    ci90: tuple[float, float]  # two-sided 90% t interval: TOST's interval at alpha = 0.05
    p_better: float  # one-sided p of H0: mean difference <= 0
    p_worse: float  # one-sided p of H0: mean difference >= 0
    p_equivalent: float  # TOST: max of the one-sided p-values against -delta and +delta
    sd: float | tuple[float, float]  # paired: sd of the differences; unpaired: (sd baseline, sd method)
    se: float  # standard error of the mean difference
    df: float  # degrees of freedom of the t distribution
    n: int  # paired: differences; unpaired: the smaller arm
    n_baseline: int
    n_method: int
    delta: float
    alpha: float  # the level the verdict used (Holm-adjusted p-values are compared with it in a family)
    differences: tuple[float, ...] = ()  # paired: method_k - baseline_k per seed; unpaired: ()
    within_margin: bool = False  # better/worse AND the equivalence test rejects: significant but < delta
    # the Holm-adjusted p-values the verdict came from (decide_family), None for a lone comparison
    p_adjusted: dict[str, float] | None = None
    # inconclusive only: {"better" or "worse": seeds at the observed mean, "equivalent": seeds if the true
    # difference were 0}; a value None means more than MAX_SEEDS (or no direction at a zero mean)
    seeds_needed: dict[str, int | None] | None = None
    seeds_power: float = POWER  # the odds seeds_needed plans for
    seeds_alpha: float = ALPHA  # the level seeds_needed plans for

    @property
    def test(self) -> str:
        return "paired t" if self.paired else "Welch t (unpaired)"


def _clean(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)  # (n,)
    if array.ndim != 1:
        raise StatsError(f"parameter {name}: expected a flat list of per-seed values, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise StatsError(f"parameter {name}: every per-seed value must be a finite number, got {array.tolist()}")
    if len(array) < 2:
        raise StatsError(f"parameter {name}: needs at least 2 seeds for a spread, got {len(array)}")
    return array


def _welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom (the smaller arm's n - 1 where both variances vanish)."""
    a, b = var_a / n_a, var_b / n_b
    if a + b == 0:
        return float(min(n_a, n_b) - 1)
    return (a + b) ** 2 / (a ** 2 / (n_a - 1) + b ** 2 / (n_b - 1))


def _upper_tail(t: float, df: float) -> float:
    """P(T >= t) for Student's t with ``df`` degrees of freedom (t may be +-inf)."""
    return float(_scipy_stats.t.sf(t, df))


def _t_from(mean: float, se: float, null: float) -> float:
    """The t statistic of ``mean`` against ``null``; with no spread (se 0) it is +-inf, or 0 at the null."""
    if se > 0:
        return (mean - null) / se
    return 0.0 if mean == null else math.copysign(math.inf, mean - null)


def decide(baseline: Sequence[float], method: Sequence[float], delta: float = DELTA, paired: bool = True,
           alpha: float = ALPHA, power: float = POWER) -> Decision:
    """The verdict on ``method`` against ``baseline`` (per-seed values; paired: seed k at index k in
    both).  ``delta``: the equivalence margin in the values' units; ``alpha``: the one-sided level of
    each test (module docstring).  Inconclusive results carry :func:`seeds_needed` at ``alpha`` and
    ``power``."""
    if not delta > 0:
        raise StatsError(f"parameter delta={delta!r}: the equivalence margin must be > 0")
    if not 0 < alpha < 0.5:
        raise StatsError(f"parameter alpha={alpha!r} must lie in (0, 0.5)")
    a, b = _clean(baseline, "baseline"), _clean(method, "method")
    if paired:
        if len(a) != len(b):
            raise StatsError(f"paired=True needs one baseline value per method value (the same seeds), got "
                             f"{len(a)} baseline and {len(b)} method values; pass paired=False for unpaired arms")
        differences = b - a  # (n,)
        n = len(differences)
        mean, sd = float(differences.mean()), float(differences.std(ddof=1))
        se, df, spread = sd / math.sqrt(n), float(n - 1), sd
    else:
        differences = np.empty(0)
        mean = float(b.mean() - a.mean())
        sd_a, sd_b = float(a.std(ddof=1)), float(b.std(ddof=1))
        se = math.sqrt(sd_a ** 2 / len(a) + sd_b ** 2 / len(b))
        df, n, spread = _welch_df(sd_a ** 2, len(a), sd_b ** 2, len(b)), min(len(a), len(b)), (sd_a, sd_b)
    p_better = _upper_tail(_t_from(mean, se, 0.0), df)  # H0: mu <= 0
    p_worse = _upper_tail(-_t_from(mean, se, 0.0), df)  # H0: mu >= 0
    p_above_lower = _upper_tail(_t_from(mean, se, -delta), df)  # H0: mu <= -delta
    p_below_upper = _upper_tail(-_t_from(mean, se, delta), df)  # H0: mu >= +delta
    p_equivalent = max(p_above_lower, p_below_upper)
    decision = Decision(
        verdict="inconclusive", paired=paired, mean=mean, ci95=_interval(mean, se, df, 0.95),
        ci90=_interval(mean, se, df, 0.90), p_better=p_better, p_worse=p_worse, p_equivalent=p_equivalent,
        sd=spread, se=se, df=df, n=n, n_baseline=len(a), n_method=len(b), delta=float(delta), alpha=alpha,
        differences=tuple(float(d) for d in differences), seeds_power=power, seeds_alpha=alpha)
    return _with_verdict(decision, {"better": p_better, "worse": p_worse, "equivalent": p_equivalent}, alpha)


def _interval(mean: float, se: float, df: float, confidence: float) -> tuple[float, float]:
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, df)) * se
    return mean - half, mean + half


def _with_verdict(decision: Decision, p: dict[str, float], level: float, adjusted: bool = False) -> Decision:
    """``decision`` with the verdict the p-values ``p`` give at ``level`` (and its seeds_needed)."""
    equivalent = p["equivalent"] <= level
    if p["better"] <= level:
        verdict = "better"
    elif p["worse"] <= level:
        verdict = "worse"
    elif equivalent:
        verdict = "equivalent"
    else:
        verdict = "inconclusive"
    needed = None
    if verdict == "inconclusive":
        needed = seeds_needed(decision.mean, decision.sd, decision.delta, decision.seeds_alpha, decision.seeds_power)
    return replace(decision, verdict=verdict, within_margin=verdict in ("better", "worse") and equivalent,
                   p_adjusted=dict(p) if adjusted else None, seeds_needed=needed)


def _se_at(sd: float | tuple[float, float], n: int) -> tuple[float, float]:
    """Standard error and degrees of freedom at ``n`` seeds (paired: n differences; unpaired: n per arm)."""
    if isinstance(sd, tuple):
        var_a, var_b = sd[0] ** 2, sd[1] ** 2
        return math.sqrt((var_a + var_b) / n), _welch_df(var_a, n, var_b, n)
    return sd / math.sqrt(n), float(n - 1)


def seeds_needed(mean: float, sd: float | tuple[float, float], delta: float = DELTA, alpha: float = ALPHA,
                 power: float = POWER) -> dict[str, int | None]:
    """Seeds a decision would need at the observed spread ``sd`` (paired: the differences' sd, seeds
    = pairs; unpaired: ``(sd_baseline, sd_method)``, seeds per arm).

    t-based, iterating n = 2, 3, ... up to :data:`MAX_SEEDS` (None beyond, or for a direction at a
    zero mean), with ``se(n) = sd / sqrt(n)`` (unpaired: ``sqrt((sd_a^2 + sd_b^2) / n)``, Welch df):

    * ``"better"`` (``"worse"`` for a negative mean): the least n with
      ``|mean| / se(n) >= t(1 - alpha, df) + t(power, df)`` -- if the true difference is the observed
      mean, a one-sided test at ``alpha`` decides the direction with probability about ``power``;
      ``power = 0.5`` gives the plain "observed t would pass the critical t";
    * ``"equivalent"``: the least n with ``delta / se(n) >= t(1 - alpha, df) + t((1 + power) / 2, df)``
      -- if the true difference were 0, both of TOST's one-sided tests reject with probability about
      ``power`` (each side may miss, hence the ``(1 + power) / 2`` quantile).
    """
    spreads = sd if isinstance(sd, tuple) else (sd,)
    if not all(s >= 0 for s in spreads) or not delta > 0:
        raise StatsError(f"seeds_needed: sd={sd!r} must be >= 0 and delta={delta!r} > 0")

    def enough(effect: float, quantile: float, n: int) -> bool:
        se, df = _se_at(sd, n)
        return se == 0 or effect / se >= _scipy_stats.t.ppf(1 - alpha, df) + _scipy_stats.t.ppf(quantile, df)

    def least(effect: float, quantile: float) -> int | None:
        # effect / se(n) grows with n and the quantiles shrink with df, so "enough" is monotone in n:
        # bisection finds the least n (the same n as trying 2, 3, ... in turn)
        if not enough(effect, quantile, MAX_SEEDS):
            return None
        low, high = 1, MAX_SEEDS  # enough(high); low is "not enough" or below the least n = 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if enough(effect, quantile, middle) else (middle, high)
        return high

    direction = "better" if mean >= 0 else "worse"
    return {direction: least(abs(mean), power) if mean != 0 else None,
            "equivalent": least(delta, (1 + power) / 2)}


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): with the m p-values sorted ascending,
    ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` (i, j from 1), returned in the input order.
    A hypothesis is rejected at family level alpha iff its adjusted p-value is <= alpha."""
    p = np.asarray(list(p_values), dtype=float)  # (m,)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise StatsError(f"parameter p_values: expected p-values in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")  # (m,) ascending
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])  # (m,) (m - j + 1) p_(j), j from 1
    adjusted = np.maximum.accumulate(scaled)  # (m,) step-down: never below an earlier one
    result = np.empty(m)
    result[order] = adjusted
    return result.tolist()


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm-Bonferroni step-down: which hypotheses are rejected at family-wise level ``alpha``.
    Sorted ascending, p_(1) is tested at alpha / m, p_(2) at alpha / (m - 1), ...; the first that
    fails stops the procedure and it and every larger p-value stand.  In the input order."""
    return [a <= alpha for a in holm_adjusted(p_values)]


@dataclass(frozen=True)
class Arms:
    """One comparison's per-seed values for :func:`decide_family`."""

    baseline: Sequence[float]
    method: Sequence[float]
    paired: bool = True
    label: str = field(default="", compare=False)  # for the caller's tables


def decide_family(comparisons: Sequence[Arms], delta: float = DELTA, alpha: float = ALPHA,
                  power: float = POWER) -> list[Decision]:
    """Verdicts on a claim's primary comparisons with Holm's correction across them.

    How the three hypotheses per comparison enter the family: each of the m comparisons brings
    its three one-sided nulls -- ``mu <= 0`` (rejected: better), ``mu >= 0`` (worse) and TOST's
    ``|mu| >= delta`` (equivalent) -- so Holm runs over 3m p-values and the family-wise error (any
    wrong "better", "worse" or "equivalent" among the claim's comparisons) stays at ``alpha``.
    All three are counted because any two of them can hold at once (at mu = 0 both directional
    nulls do; beyond +-delta a directional null and the equivalence null do), so none can be
    dropped from Holm's count; p_better + p_worse = 1, so the one pointing against the observed
    sign never rejects and only costs its place in the count.  Each verdict then follows
    :func:`decide`'s rule with the Holm-adjusted p-values against ``alpha``
    (``Decision.p_adjusted``).  Seeds needed for an inconclusive comparison are planned at the
    Bonferroni level ``alpha / 3m`` (Holm's first step, the strictest a comparison may face).
    """
    comparisons = list(comparisons)
    if not comparisons:
        return []
    m = len(comparisons)
    lone = [decide(c.baseline, c.method, delta, c.paired, alpha, power) for c in comparisons]
    lone = [replace(d, seeds_alpha=alpha / (3 * m)) for d in lone]
    names = ("better", "worse", "equivalent")
    raw = [getattr(d, f"p_{name}") for d in lone for name in names]  # (3m,) comparison-major
    adjusted = holm_adjusted(raw)
    decisions = []
    for index, d in enumerate(lone):
        p = {name: adjusted[3 * index + k] for k, name in enumerate(names)}
        decisions.append(_with_verdict(d, p, alpha, adjusted=True))
    return decisions


# ----------------------------------------------------------------------------- the test split's share of the spread
#
# A probe's accuracy is a mean over the test clips, so part of its spread over seeds is which clips each
# seed's model happens to get right, and that part shrinks as 1 / (test clips); the rest -- a seed's model
# being better or worse on many clips at once -- is training's, and no evaluation split removes it.  With
# per-clip correctness (seeds x clips) the split is exact algebra (:func:`noise_from_clips`): the variance
# over seeds of a mean over clips is the sum of the clips' own variances over seeds (the clip part) plus
# their covariances (the coherent part).  Without it, two disjoint parts of the test split whose accuracy
# every run records (the tail classes' and the others') give the split-half estimate
# (:func:`noise_from_halves`): their per-seed difference cancels the coherent part.


@dataclass(frozen=True)
class NoiseSplit:
    """The variance over seeds of one quantity (an accuracy, or a paired difference; points^2), and the
    part of it that is the test split's sampling of clips (``clip_var``), at ``clips`` test clips."""

    observed_var: float  # sample variance over the seeds (ddof 1)
    clip_var: float  # the test clips' part (estimated; may exceed observed_var by chance at few seeds)
    seeds: int
    clips: int

    @property
    def share(self) -> float:
        """The clip part's share of the observed variance (NaN when nothing varies)."""
        return self.clip_var / self.observed_var if self.observed_var > 0 else math.nan

    def sd_with(self, factor: float) -> float:
        """The sd over seeds expected with ``factor`` times as many test clips: the coherent part stays, the
        clip part shrinks by ``factor`` (both clipped to the observed variance, so factor 1 gives the observed
        sd and a clip part estimated above it counts as all of it)."""
        if factor <= 0:
            raise StatsError(f"factor={factor!r}: expected a number of times the test clips > 0")
        clip = min(max(self.clip_var, 0.0), self.observed_var)
        return math.sqrt(self.observed_var - clip + clip / factor)


def binomial_sd(accuracy: float, clips: int) -> float:
    """The sd of an accuracy over ``clips`` test clips under resampling of the clips: sqrt(p (1 - p) / n),
    in the accuracy's unit (a share of 1).  It is what a bootstrap over one run's test clips gives
    (:func:`bootstrap_sd`), and an upper bound on the clip part of the spread over seeds of one arm."""
    if not 0.0 <= accuracy <= 1.0 or clips < 1:
        raise StatsError(f"accuracy={accuracy!r}, clips={clips!r}: expected a share in [0, 1] and clips >= 1")
    return math.sqrt(accuracy * (1.0 - accuracy) / clips)


def bootstrap_sd(correct: Sequence[float], draws: int = 2000, seed: int = 0, groups: Sequence[int] | None = None,
                 baseline: Sequence[float] | None = None) -> float:
    """The bootstrap sd of a run's accuracy (the mean of ``correct``, one 0/1 per test clip), or with
    ``baseline`` of the paired difference mean(correct) - mean(baseline) on the same clips: ``draws``
    resamples of the test clips with replacement -- of whole ``groups`` when given (clips cut from one
    source share their look and sound, so a source, not a clip, is the unit the test split samples)."""
    values = _clean(correct, "correct")
    if baseline is not None:
        other = _clean(baseline, "baseline")
        if len(other) != len(values):
            raise StatsError(f"baseline has {len(other)} clips, correct {len(values)}: a paired difference needs "
                             "the same test clips")
        values = values - other
    rng = np.random.default_rng(seed)
    if groups is None:
        picks = rng.integers(0, len(values), size=(draws, len(values)))  # (draws, n)
        return float(values[picks].mean(axis=1).std(ddof=1))
    groups = np.asarray(groups)
    if len(groups) != len(values):
        raise StatsError(f"groups has {len(groups)} entries for {len(values)} clips")
    names, index = np.unique(groups, return_inverse=True)
    sums, sizes = np.bincount(index, weights=values), np.bincount(index).astype(float)  # (G,)
    picks = rng.integers(0, len(names), size=(draws, len(names)))  # (draws, G)
    return float((sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)).std(ddof=1))


def noise_from_clips(correct: np.ndarray) -> NoiseSplit:
    """The exact split from per-clip values, ``(seeds, clips)``: correctness 0/1 of one arm, or the paired
    difference of two arms' correctness (-1, 0, +1) on the same clips.  Observed: the variance over seeds of
    the per-seed mean over clips; clip part: the sum over clips of each clip's variance over seeds / n^2
    (what the spread would be if every clip were right or wrong independently of the others, at its own
    rate); the remainder is the clips' covariance, a seed's model being better on many clips at once."""
    values = np.asarray(correct, dtype=float)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 1 or np.isnan(values).any():
        raise StatsError(f"correct has shape {values.shape}: expected (seeds >= 2, clips >= 1) without NaN")
    seeds, clips = values.shape
    observed = float(values.mean(axis=1).var(ddof=1))
    clip = float(values.var(axis=0, ddof=1).sum() / clips ** 2)
    return NoiseSplit(observed, clip, seeds, clips)


def noise_from_halves(whole: Sequence[float], part: Sequence[float], part_share: float, clips: int) -> NoiseSplit:
    """The split-half estimate from per-seed values of the whole test split and of one part of it (``part``:
    the mean over ``part_share`` of the clips; the rest is ``(whole - share x part) / (1 - share)``), in the
    same unit (points, or the paired differences' points).

    The part and the rest are disjoint clips: their per-seed difference carries no coherent (training) part,
    only the two parts' clip noise, var(part - rest) = s^2 (1/n_part + 1/n_rest); the whole's clip part is
    s^2 / n = share x (1 - share) x var(part - rest).  It assumes a clip's noise is the same in both parts;
    where the parts are classes (the tail classes against the others), a seed's model being better on some
    classes than on others counts as clip noise too, so the estimate is an upper bound of what more test
    clips of the same classes would remove."""
    whole_values, part_values = _clean(whole, "whole"), _clean(part, "part")
    if len(whole_values) != len(part_values) or len(whole_values) < 2:
        raise StatsError(f"whole ({len(whole_values)}) and part ({len(part_values)}): expected as many values, >= 2")
    if not 0.0 < part_share < 1.0:
        raise StatsError(f"part_share={part_share!r}: expected the part's share of the clips, in (0, 1)")
    rest = (whole_values - part_share * part_values) / (1.0 - part_share)
    clip = part_share * (1.0 - part_share) * float(np.var(part_values - rest, ddof=1))
    return NoiseSplit(float(np.var(whole_values, ddof=1)), clip, len(whole_values), clips)


def pool_noise(splits: Sequence[NoiseSplit]) -> NoiseSplit:
    """Several cells' splits as one (variances averaged with their degrees of freedom as weights): one cell's
    split rests on a handful of seeds; the pool says what the study's cells share."""
    splits = list(splits)
    if not splits:
        raise StatsError("no splits to pool")
    weights = np.array([s.seeds - 1 for s in splits], dtype=float)
    observed = float(np.average([s.observed_var for s in splits], weights=weights))
    clip = float(np.average([s.clip_var for s in splits], weights=weights))
    return NoiseSplit(observed, clip, int(sum(s.seeds for s in splits)), int(round(np.mean([s.clips for s in splits]))))
