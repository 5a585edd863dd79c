"""avlib.study.stats on known answers: the four verdicts, Holm's step-down, why pairing matters, and
that "seeds needed" is the number of seeds that decides a cell; scipy's t-tests check the p-values."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from avlib.study.stats import (DELTA, Arms, StatsError, decide, decide_family, holm, holm_adjusted,
                               seeds_needed)


def arms(rng, n, shift, noise, spread=5.0, level=60.0):
    """Per-seed accuracies (points) of a baseline and a method that share each seed's swing
    (``spread``, as paired runs do) and differ by ``shift`` plus independent ``noise``."""
    seed_effect = rng.normal(0.0, spread, n)  # (n,) what seed k does to both arms
    baseline = level + seed_effect + rng.normal(0.0, noise, n)
    method = level + seed_effect + shift + rng.normal(0.0, noise, n)
    return baseline.tolist(), method.tolist()


def test_arms_three_deltas_apart_are_better_and_swapped_worse():
    rng = np.random.default_rng(0)
    baseline, method = arms(rng, 5, 3 * DELTA, noise=0.5)
    better = decide(baseline, method, DELTA)
    assert better.verdict == "better" and not better.within_margin
    assert better.mean == pytest.approx(np.mean(np.subtract(method, baseline)))
    assert better.ci95[0] > 0 and better.p_better < 0.001 and better.seeds_needed is None
    worse = decide(method, baseline, DELTA)
    assert worse.verdict == "worse" and worse.mean == pytest.approx(-better.mean)
    assert worse.p_worse == pytest.approx(better.p_better)


def test_identical_arms_with_small_noise_over_ten_seeds_are_equivalent():
    rng = np.random.default_rng(1)
    baseline, method = arms(rng, 10, 0.0, noise=0.5)
    decision = decide(baseline, method, DELTA)
    assert decision.verdict == "equivalent"
    assert -DELTA < decision.ci90[0] and decision.ci90[1] < DELTA  # TOST at 0.05 = the 90% interval inside
    assert decision.p_equivalent < 0.05 and decision.n == 10 and len(decision.differences) == 10
    # a margin the interval does not fit in: no longer equivalent
    assert decide(baseline, method, delta=0.05).verdict == "inconclusive"


def test_large_noise_is_inconclusive_and_says_how_many_seeds_would_decide():
    rng = np.random.default_rng(2)
    baseline, method = arms(rng, 5, 0.0, noise=8.0)
    decision = decide(baseline, method, DELTA)
    assert decision.verdict == "inconclusive"
    assert decision.ci95[0] < -DELTA and decision.ci95[1] > DELTA
    assert set(decision.seeds_needed) in ({"better", "equivalent"}, {"worse", "equivalent"})
    assert decision.seeds_needed["equivalent"] > 10


def test_a_significant_difference_inside_the_margin_is_better_and_flagged_within_margin():
    rng = np.random.default_rng(3)
    baseline, method = arms(rng, 10, 0.5, noise=0.1)
    decision = decide(baseline, method, DELTA)
    assert decision.verdict == "better" and decision.within_margin


def test_holm_on_a_hand_computed_example():
    # sorted: 0.005 * 4 = 0.02 <= 0.05 rejected; 0.01 * 3 = 0.03 rejected; 0.03 * 2 = 0.06 > 0.05 stops:
    # 0.03 and 0.04 stand, although 0.04 * 1 alone would pass (step-down, not one test per rank)
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p, 0.05) == [True, False, False, True]
    assert holm_adjusted(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Holm rejects what Bonferroni (0.05 / 2 each) would not: 0.04 is tested at 0.05 after 0.01 fell
    assert holm([0.01, 0.04], 0.05) == [True, True]
    assert holm([0.03, 0.04], 0.05) == [False, False]
    assert holm_adjusted([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    with pytest.raises(StatsError, match="p_values"):
        holm([0.5, 1.5])


def test_pairing_decides_strongly_correlated_arms_that_the_unpaired_test_cannot():
    rng = np.random.default_rng(4)
    baseline, method = arms(rng, 10, 1.5 * DELTA, noise=0.5, spread=8.0)
    assert np.corrcoef(baseline, method)[0, 1] > 0.95
    paired = decide(baseline, method, DELTA, paired=True)
    unpaired = decide(baseline, method, DELTA, paired=False)
    assert paired.verdict == "better" and paired.paired and paired.test == "paired t"
    assert unpaired.verdict == "inconclusive" and not unpaired.paired and unpaired.test == "Welch t (unpaired)"
    assert paired.mean == pytest.approx(unpaired.mean)  # same difference, different spread
    assert paired.sd < 1.5 and unpaired.sd[0] > 5.0 and unpaired.sd[1] > 5.0 and unpaired.differences == ()


def test_p_values_and_intervals_agree_with_scipys_t_tests():
    rng = np.random.default_rng(5)
    baseline, method = arms(rng, 7, 1.0, noise=2.0)
    a, b = np.array(baseline), np.array(method)
    d = decide(baseline, method, DELTA)
    assert d.p_better == pytest.approx(scipy_stats.ttest_rel(b, a, alternative="greater").pvalue, rel=1e-9)
    assert d.p_worse == pytest.approx(scipy_stats.ttest_rel(b, a, alternative="less").pvalue, rel=1e-9)
    tost = max(scipy_stats.ttest_rel(b + DELTA, a, alternative="greater").pvalue,
               scipy_stats.ttest_rel(b - DELTA, a, alternative="less").pvalue)
    assert d.p_equivalent == pytest.approx(tost, rel=1e-9)
    interval = scipy_stats.ttest_rel(b, a).confidence_interval(0.95)
    assert d.ci95 == pytest.approx((interval.low, interval.high), rel=1e-9)
    interval = scipy_stats.ttest_rel(b, a).confidence_interval(0.90)
    assert d.ci90 == pytest.approx((interval.low, interval.high), rel=1e-9)
    # unpaired: Welch, arms of different sizes
    u = decide(baseline, method[:5], DELTA, paired=False)
    welch = scipy_stats.ttest_ind(b[:5], a, equal_var=False)
    assert u.df == pytest.approx(welch.df, rel=1e-9)
    assert u.p_better == pytest.approx(scipy_stats.ttest_ind(b[:5], a, equal_var=False, alternative="greater").pvalue,
                                       rel=1e-9)
    interval = welch.confidence_interval(0.95)
    assert u.ci95 == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert (u.n_baseline, u.n_method, u.n) == (7, 5, 5)


def _redraw(rng, n, mean, sd):
    return rng.normal(mean, sd, n)


def test_an_inconclusive_cell_redrawn_with_the_seeds_needed_is_decided():
    rng = np.random.default_rng(8)
    baseline, method = arms(rng, 5, 2.0, noise=2.0)  # observed: mean +2.13, sd 2.49
    cell = decide(baseline, method, DELTA)
    assert cell.verdict == "inconclusive" and cell.mean > 0
    needed = cell.seeds_needed["better"]
    assert 5 < needed < 100
    # at the observed mean and spread exactly (the rescaled redraw), power 0.5 is the least n that passes
    exact = seeds_needed(cell.mean, cell.sd, DELTA, power=0.5)["better"]

    def rescaled(n):
        z = rng.normal(0.0, 1.0, n)
        return cell.mean + cell.sd * (z - z.mean()) / z.std(ddof=1)

    assert decide(np.zeros(exact), rescaled(exact)).verdict == "better"
    assert decide(np.zeros(exact - 1), rescaled(exact - 1)).verdict == "inconclusive"
    # redrawn from the observed mean and spread at the planned seeds (power 0.8): decided about 80% of the time
    decided = [decide(np.zeros(needed), _redraw(rng, needed, cell.mean, cell.sd)).verdict == "better"
               for _ in range(300)]
    assert 0.72 <= np.mean(decided) <= 0.88
    at_five = [decide(np.zeros(5), _redraw(rng, 5, cell.mean, cell.sd)).verdict == "better" for _ in range(300)]
    assert np.mean(at_five) < 0.5  # the original 5 seeds were too few
    # equivalence: if the true difference were 0, seeds_needed["equivalent"] seeds show it about 80% of the time
    n_equivalent = cell.seeds_needed["equivalent"]
    shown = [decide(np.zeros(n_equivalent), _redraw(rng, n_equivalent, 0.0, cell.sd)).verdict == "equivalent"
             for _ in range(300)]
    assert 0.72 <= np.mean(shown) <= 0.88


def test_seeds_needed_unpaired_counts_seeds_per_arm_and_gives_up_beyond_the_cap():
    # per-arm sds 3 and 4: se(n) = 5 / sqrt(n); a mean of 5 needs t(0.95, df) + t(0.8, df) <= sqrt(n)
    needed = seeds_needed(5.0, (3.0, 4.0), DELTA)["better"]
    assert needed == min(n for n in range(2, 100)
                         if 5.0 / (5.0 / math.sqrt(n)) >= scipy_stats.t.ppf(0.95, _df(n)) + scipy_stats.t.ppf(0.8, _df(n)))
    assert seeds_needed(0.0, 1.0, DELTA)["better"] is None  # no direction to decide at a zero mean
    assert seeds_needed(1e-6, 10.0, DELTA)["better"] is None  # more than MAX_SEEDS


def _df(n):
    a, b = 9.0 / n, 16.0 / n
    return (a + b) ** 2 / (a ** 2 / (n - 1) + b ** 2 / (n - 1))


def test_decide_family_applies_holm_over_three_hypotheses_per_comparison():
    rng = np.random.default_rng(7)
    # a moderate effect: better alone (p ~ 0.01-0.03), not after Holm over 4 comparisons x 3 hypotheses
    for _ in range(200):
        baseline, method = arms(rng, 5, 1.2, noise=1.0)
        lone = decide(baseline, method, DELTA)
        if lone.verdict == "better" and lone.p_better > 0.05 / 12:
            break
    clear = arms(rng, 10, 3 * DELTA, noise=0.5)
    null = [arms(rng, 5, 0.0, noise=6.0) for _ in range(2)]
    family = [Arms(baseline, method), Arms(*clear), *(Arms(*pair) for pair in null)]
    decisions = decide_family(family, DELTA)
    assert decisions[0].verdict == "inconclusive" and decisions[1].verdict == "better"
    raw = [getattr(decide(c.baseline, c.method, DELTA), f"p_{name}") for c in family
           for name in ("better", "worse", "equivalent")]
    adjusted = holm_adjusted(raw)
    assert [d.p_adjusted["better"] for d in decisions] == pytest.approx(adjusted[0::3])
    assert [d.p_adjusted["equivalent"] for d in decisions] == pytest.approx(adjusted[2::3])
    assert decisions[0].seeds_alpha == pytest.approx(0.05 / 12) and decisions[0].seeds_needed["better"] > 5
    assert decide_family([Arms(baseline, method)], DELTA)[0].p_adjusted["better"] == pytest.approx(
        holm_adjusted([lone.p_better, lone.p_worse, lone.p_equivalent])[0])


def test_bad_input_names_the_parameter():
    with pytest.raises(StatsError, match="paired=True needs one baseline value per method value"):
        decide([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(StatsError, match="parameter method: every per-seed value must be a finite number"):
        decide([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(StatsError, match="parameter baseline: needs at least 2 seeds"):
        decide([1.0], [1.0], paired=False)
    with pytest.raises(StatsError, match="delta"):
        decide([1.0, 2.0], [1.0, 2.0], delta=0.0)


# ----------------------------------------------------------------------------- the test split's share of the spread


def test_binomial_sd_is_what_a_bootstrap_over_one_runs_test_clips_gives():
    from avlib.study.stats import binomial_sd, bootstrap_sd

    assert binomial_sd(0.7, 180) == pytest.approx(math.sqrt(0.7 * 0.3 / 180))  # 3.4 points
    correct = np.array([1] * 126 + [0] * 54)  # 70% of 180 clips
    assert bootstrap_sd(correct, draws=4000) == pytest.approx(binomial_sd(0.7, 180), rel=0.05)
    # paired on the same clips: identical runs do not differ on any resample; disagreeing on 20% of the clips
    # (10% each way) gives sqrt(0.2 / 180) (the differences' mean is 0, their second moment 0.2)
    assert bootstrap_sd(correct, baseline=correct) == 0.0
    other = correct.copy()
    other[:18], other[-18:] = 0, 1
    assert bootstrap_sd(other, baseline=correct, draws=4000) == pytest.approx(math.sqrt(0.2 / 180), rel=0.05)
    # clips in groups of 8 that are right or wrong together: the group is the unit, the sd grows ~sqrt(8)
    grouped = np.repeat(np.array([1] * 16 + [0] * 7), 8)[:180]
    groups = np.arange(180) // 8
    clip_level = bootstrap_sd(grouped, draws=4000)
    assert bootstrap_sd(grouped, draws=4000, groups=groups) == pytest.approx(math.sqrt(8) * clip_level, rel=0.15)
    with pytest.raises(StatsError, match="same test clips"):
        bootstrap_sd(correct, baseline=correct[:-1])


def simulated_correctness(rng, seeds, clips, seed_sd):
    """(seeds, clips) 0/1: clip i is right at its own rate q_i, shifted for every clip of seed k by that seed's
    training luck (``seed_sd``, a share of 1), independently across clips otherwise."""
    difficulty = rng.uniform(0.3, 0.95, clips)  # (clips,)
    luck = rng.normal(0.0, seed_sd, (seeds, 1))  # (seeds, 1)
    return (rng.random((seeds, clips)) < np.clip(difficulty + luck, 0, 1)).astype(float)


def test_without_training_luck_the_spread_over_seeds_is_all_test_clips_and_with_it_the_rest_is_luck():
    from avlib.study.stats import noise_from_clips, noise_from_halves

    rng = np.random.default_rng(0)
    shares, halves = [], []
    for _ in range(40):
        correct = simulated_correctness(rng, 10, 180, seed_sd=0.0)
        shares.append(noise_from_clips(correct))
        accuracy = 100 * correct.mean(axis=1)
        halves.append(noise_from_halves(accuracy, 100 * correct[:, :54].mean(axis=1), 54 / 180, 180))
    assert np.mean([s.clip_var for s in shares]) == pytest.approx(np.mean([s.observed_var for s in shares]), rel=0.15)
    assert np.mean([s.clip_var for s in halves]) == pytest.approx(np.mean([s.observed_var for s in halves]), rel=0.25)
    # a seed that moves every clip by a 4-point sd: the observed variance gains ~16 points^2 that more clips keep
    lucky = [noise_from_clips(simulated_correctness(rng, 10, 180, seed_sd=0.04)) for _ in range(40)]
    observed = np.mean([s.observed_var for s in lucky]) * 1e4  # points^2
    clip = np.mean([s.clip_var for s in lucky]) * 1e4
    assert observed - clip == pytest.approx(16.0, rel=0.3) and clip == pytest.approx(
        np.mean([s.clip_var for s in shares]) * 1e4, rel=0.15)


def test_noise_split_predicts_the_sd_with_more_test_clips_and_pools_cells():
    from avlib.study.stats import NoiseSplit, pool_noise

    split = NoiseSplit(observed_var=10.0, clip_var=6.0, seeds=5, clips=180)
    assert split.share == pytest.approx(0.6)
    assert split.sd_with(1) == pytest.approx(math.sqrt(10.0))
    assert split.sd_with(4) == pytest.approx(math.sqrt(4.0 + 1.5))
    assert split.sd_with(1e9) == pytest.approx(2.0)  # the coherent part stays
    assert NoiseSplit(4.0, 9.0, 5, 180).sd_with(4) == pytest.approx(1.0)  # a clip part above the observed: all of it
    pooled = pool_noise([split, NoiseSplit(20.0, 2.0, 9, 180)])  # weights 4 and 8
    assert pooled.observed_var == pytest.approx((4 * 10 + 8 * 20) / 12) and pooled.clip_var == pytest.approx(
        (4 * 6 + 8 * 2) / 12) and pooled.seeds == 14
    with pytest.raises(StatsError, match="factor"):
        split.sd_with(0)
