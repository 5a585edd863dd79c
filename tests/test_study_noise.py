"""The test split's share of a comparison's spread over seeds (issue 31, "lower variance where it is free"):
per-clip correctness packs into summary.json and back, and a comparison's noise is split exactly from it where
the runs record it, else from the two parts of the test split every run records (tail classes and the rest)."""

from pathlib import Path

import numpy as np
import pytest

from avlib.eval.probe import ProbeResult, clip_correctness, pack_flags, unpack_flags
from avlib.study import CONDITIONS
from avlib.study.findings import compare
from avlib.study.noise import CLIP_RECORD, comparison_noise, tail_share
from avlib.study.results import ConditionResults, RunResult
from avlib.study.stats import noise_from_clips, noise_from_halves

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
