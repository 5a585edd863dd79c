"""The test split's share of a comparison's spread over seeds (issue 31, "lower variance where it is free"):
per-clip correctness packs into summary.json and back, and a comparison's noise is split exactly from it where
the runs record it, else from the two parts of the test split every run records (tail classes and the rest)."""

import math
from pathlib import Path

import numpy as np
import pytest

from avlib.eval.probe import ProbeResult, clip_correctness, pack_flags, unpack_flags
from avlib.study import CONDITIONS
from avlib.study.findings import Comparison, compare
from avlib.study.noise import (CLIP_RECORD, FACTORS, NOISE_TITLE, ArmNoise, CellNoise, arm_noise, comparison_noise,
                               mixed_split_se, noise_section, tail_share)
from avlib.study.results import ConditionResults, RunResult
from avlib.study.stats import NoiseSplit, noise_from_clips, noise_from_halves, pool_noise

CLIPS, CLASSES = 180, 10
LABELS = np.arange(CLIPS) // (CLIPS // CLASSES)  # balanced: 18 clips a class, the tail classes are 7, 8, 9


def test_per_clip_correctness_packs_into_a_few_hex_characters_and_back():
    flags = np.random.default_rng(0).random(CLIPS) < 0.7
    text = pack_flags(flags)
    assert len(text) == 2 * 23 and (unpack_flags(text, CLIPS) == flags).all()  # 180 bits in 23 bytes
    with pytest.raises(ValueError, match="not 170 flags"):
        unpack_flags(text, 170)
    predictions = np.where(flags, LABELS, (LABELS + 1) % CLASSES)
    result = ProbeResult(float(flags.mean()), predictions, {})
    details = {m: {"linear": result, "knn": result, "test_labels": LABELS} for m in ("video", "audio")}
    record = clip_correctness(details)
    assert record["clips"] == CLIPS and (unpack_flags(record["audio"]["knn"], CLIPS) == flags).all()


def runs_of(condition, correct: dict, with_clips: bool) -> ConditionResults:
    """RunResults whose summaries hold what a run records: accuracy, balanced accuracy, tail accuracy (the
    last three classes), the class names, and with ``with_clips`` the per-clip correctness."""
    runs = []
    for (name, seed), flags in correct.items():
        accuracy, tail = float(flags.mean()), float(flags[LABELS >= 7].mean())
        probe = {m: {k: accuracy for k in ("linear", "knn", "linear_balanced", "knn_balanced")} |
                 {"linear_tail": tail, "knn_tail": tail} for m in ("video", "audio")}
        summary = {"probe": probe, "classes": [f"c{i}" for i in range(CLASSES)]}
        if with_clips:
            summary[CLIP_RECORD] = {"clips": CLIPS, **{m: {"linear": pack_flags(flags), "knn": pack_flags(flags)}
                                                       for m in ("video", "audio")}}
        runs.append(RunResult(condition.variant(name), seed, Path("."), {"seed": seed, "clips_per_class": 60},
                              summary, {}, {}, None))
    return ConditionResults(condition, runs, [])


def test_a_comparisons_noise_is_exact_from_per_clip_records_and_split_half_without_them():
    """Method and baseline differ on a random fifth of the clips of each seed and nothing else (no seed is
    better on many clips at once): the whole spread is the test clips'; both estimates say so."""
    rng = np.random.default_rng(1)
    condition = CONDITIONS["sources"]
    correct = {}
    for seed in range(30):
        base = rng.random(CLIPS) < 0.7
        correct[("random_src8", seed)], correct[("active_src8", seed)] = base, base ^ (rng.random(CLIPS) < 0.2)
    differences = 100.0 * np.array([correct[("active_src8", s)].astype(float) - correct[("random_src8", s)]
                                    for s in range(30)])  # (seeds, clips)
    recorded = runs_of(condition, correct, with_clips=True)
    assert tail_share(recorded) == pytest.approx(0.3)
    comparison = compare(recorded, "random", "active", 8.0, "video linear", True)
    assert comparison.paired
    exact = comparison_noise(recorded, comparison, CLIPS)
    expected = noise_from_clips(differences)
    assert (exact.observed_var, exact.clip_var) == pytest.approx((expected.observed_var, expected.clip_var))
    assert exact.share == pytest.approx(1.0, abs=0.3)
    unrecorded = runs_of(condition, correct, with_clips=False)
    comparison = compare(unrecorded, "random", "active", 8.0, "video linear", True)
    halves = comparison_noise(unrecorded, comparison, CLIPS)
    expected = noise_from_halves(differences.mean(axis=1), differences[:, LABELS >= 7].mean(axis=1), 0.3, CLIPS)
    assert (halves.observed_var, halves.clip_var) == pytest.approx((expected.observed_var, expected.clip_var))
    assert halves.share == pytest.approx(1.0, abs=0.4)
    # a test split that is not balanced (balanced accuracy != accuracy) has no split-half estimate
    for run in unrecorded.runs:
        run.summary["probe"]["video"]["linear_balanced"] -= 0.01
    assert comparison_noise(unrecorded, comparison, CLIPS) is None


def cell(primary: bool, observed: float, clip: float, runs: str, exact: bool = False, checkpointed: bool = False):
    """A CellNoise of 5 seeds at 180 clips with the given variances (points^2); ``runs`` names its runs."""
    values = {seed: 0.0 for seed in range(5)}
    comparison = Comparison("sources", 8.0, "random", "active", "video linear", primary, 8.0, values, dict(values),
                            paired=True)
    return CellNoise(comparison, NoiseSplit(observed, clip, 5, CLIPS), exact, checkpointed,
                     runs=tuple((f"{runs}/a{s}", f"{runs}/b{s}") for s in range(5)))


def table_rows(section: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {row[0].strip(): [v.strip() for v in row[1:]] for row in rows[1:]}


def test_noise_section_tables_the_pooled_split_of_the_cells_it_is_given():
    """Every number of the section's table is the pool of the cells given (primary ones, every distinct set of
    runs once, the arms), and moves when a cell's split does."""
    cells = [cell(True, 25.0, 20.0, "p1"), cell(True, 16.0, 4.0, "p2", exact=True),
             cell(False, 36.0, 9.0, "s1"), cell(False, 36.0, 9.0, "s1")]  # the last: one set of runs, twice
    arms = [ArmNoise("sources", "random", 8.0, "video linear", NoiseSplit(30.0, 10.0, 5, CLIPS), 0.7, False,
                     ("a",))]
    section = noise_section(cells, arms)
    assert section.startswith(f"## {NOISE_TITLE}\n")
    rows = table_rows(section)
    primary = pool_noise([c.split for c in cells[:2]])
    expected = [str(2), str(10), f"{math.sqrt(primary.observed_var):.2f}", f"{math.sqrt(primary.clip_var):.2f}",
                f"{primary.share:.2f}"] + [f"{primary.sd_with(f):.2f}" for f in FACTORS] + ["1 of 2"]
    assert rows["primary comparisons, paired differences"] == expected
    assert primary.share == pytest.approx(24 / 41)
    every = pool_noise([c.split for c in cells[:3]])  # the repeated cell counted once
    assert rows["every paired comparison (each set of runs once), paired differences"][:5] == \
        ["3", "15", f"{math.sqrt(every.observed_var):.2f}", f"{math.sqrt(every.clip_var):.2f}", f"{every.share:.2f}"]
    assert rows["their arms on their own (each set of runs once), per-seed accuracy"][4] == f"{10 / 30:.2f}"
    assert f"{primary.share:.0%} of the variance" in section and "seeds 0-4" in section
    # a cell whose clip part came out above its variance counts as all of it in the capped row only
    high = noise_section([cell(True, 10.0, 40.0, "p1"), cell(True, 10.0, 0.0, "p2")], [])
    capped_row = table_rows(high)["the same, each cell's clip part capped at its observed variance (lower estimate)"]
    assert table_rows(high)["primary comparisons, paired differences"][4] == "2.00"
    assert capped_row[4] == "0.50"
    # checkpoints at hand: the section says the present seeds can be probed again instead of why not
    assert "no checkpoint" in section
    ready = noise_section([cell(True, 25.0, 20.0, "p1", checkpointed=True)], [])
    assert "no checkpoint" not in ready and "can be run again" in ready
    assert noise_section([], arms) == ""


def test_mixing_test_split_sizes_keeps_half_the_gain_at_equal_seed_counts():
    """The plain paired mean of n seeds at one split and n at a larger one has the average of the two
    all-same variances: half of what probing every seed on the larger split would remove."""
    split = NoiseSplit(20.0, 16.0, 5, CLIPS)
    present, mixed, larger = mixed_split_se(split, 5, 4)
    assert present ** 2 == pytest.approx(20.0 / 10) and larger ** 2 == pytest.approx((4.0 + 16.0 / 4) / 10)
    assert mixed ** 2 == pytest.approx((present ** 2 + larger ** 2) / 2)


def test_an_arms_noise_is_exact_from_per_clip_records_and_split_half_without_them():
    """One arm whose seeds differ only by which clips they get right (independently, at 0.7): its whole spread
    is the clips' -- the exact split says so from the records, the split-half from the tail and the rest."""
    rng, seeds = np.random.default_rng(2), 100
    condition = CONDITIONS["sources"]
    correct = {("active_src8", seed): rng.random(CLIPS) < 0.7 for seed in range(seeds)}
    matrix = 100.0 * np.array([correct[("active_src8", s)] for s in range(seeds)], dtype=float)  # (seeds, clips)
    recorded = runs_of(condition, correct, with_clips=True)
    arm = arm_noise(recorded, "active", 8.0, "video linear", list(range(seeds)), CLIPS)
    expected = noise_from_clips(matrix)
    assert arm.exact and (arm.split.observed_var, arm.split.clip_var) == pytest.approx(
        (expected.observed_var, expected.clip_var))
    assert arm.split.share == pytest.approx(1.0, abs=0.25)
    assert arm.accuracy == pytest.approx(matrix.mean() / 100)
    halves = arm_noise(runs_of(condition, correct, with_clips=False), "active", 8.0, "video linear",
                       list(range(seeds)), CLIPS)
    assert not halves.exact and halves.split.share == pytest.approx(1.0, abs=0.3)
    # a control: one seed's model better on every clip at once is training's, not the clips'
    shifted = {key: flags | (rng.random(CLIPS) < (0.5 if key[1] % 2 else 0.0)) for key, flags in correct.items()}
    for with_clips in (True, False):
        coherent = arm_noise(runs_of(condition, shifted, with_clips), "active", 8.0, "video linear",
                             list(range(seeds)), CLIPS)
        assert coherent.exact == with_clips and coherent.split.share < 0.3
